"""The offline demo: a real AgentSession, per-message playback events, a timeline.

Runs with no API keys and no LiveKit server: the package's scripted LLM / realtime model,
sine-tone TTS and real-time simulated sink stand in for the providers and the room. It
plays four speeches through one ``AgentSession``:

1. ``say()`` of a greeting, labelled ``welcome``;
2. an ``llm_node`` reply with three ``MessageBoundary`` responses carrying metadata, each
   starting a background task from ``@on_message_played`` the moment it is heard;
3. a reply the user interrupts during its second response;
4. a realtime model (after a handoff) answering with a preamble item and an answer item.

Its output chain is the one RoomIO builds: livekit's transcription synchronizer over the
sink. It prints one row per message, then the words of each message as the user was shown
them with how much of the message had been heard at each (live progress), and writes the
audio that played (WAV) and a picture of the timeline (SVG) to ``demo-output/``. Run it
with ``make demo`` or ``python examples/demo.py [--out DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import logging
import sys
import time
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentSession, ModelSettings, llm
from livekit.agents.types import FlushSentinel
from livekit.agents.voice.events import AgentStateChangedEvent
from livekit.agents.voice.transcription import TranscriptSynchronizer

import playback_hooks as ph
from playback_hooks.testing import (
    EventCollector,
    RealtimeItem,
    ScriptedLLM,
    ScriptedRealtimeModel,
    SimulatedSink,
    SineTTS,
)

# -- the script ---------------------------------------------------------------------------

# (message id, metadata, text) per response of one llm_node reply
Reply = Sequence[tuple[str, dict[str, Any], str]]

PLAN_REPLY: Reply = [
    ("plan", {"step": 1, "task": "look up flights", "work": 0.4}, "First, I will look up flights."),
    ("hotel", {"step": 2, "task": "check hotels", "work": 0.4}, "Then I will check the hotels."),
    ("done", {"step": 3, "task": "send summary", "work": 0.4}, "Finally, a summary by email."),
]
INTERRUPTED_REPLY: Reply = [
    ("story-1", {"part": 1, "work": 0.3}, "Once upon a time there was a tiny robot."),
    ("story-2", {"part": 2, "work": 3.0}, "It wanted to learn every song in the whole world."),
    ("story-3", {"part": 3, "work": 0.3}, "So it listened to the radio day and night."),
]
REALTIME_RESPONSE = [
    RealtimeItem("item_preamble", "Let me check that for you.", audio_seconds=0.9),
    RealtimeItem("item_answer", "Your flight leaves at nine from gate twelve.", audio_seconds=1.8),
]
WELCOME = "Welcome to the playback hooks demo."
INTERRUPT_AFTER = 0.6  # seconds of story-2 the user hears before cutting in
TRANSPORT_DELAY = 0.12  # seconds between handing a segment's first frame over and hearing it
SECONDS_PER_CHAR = 0.05  # the sine TTS speaks about as fast as a person


# -- measuring what livekit does not tell --------------------------------------------------


class RemoteSink(SimulatedSink):
    """A simulated sink at the end of a transport, like an avatar or a jitter buffer.

    The first frame of each segment travels ``transport_delay`` seconds before the sink
    starts playing it, so "handed to the sink" and "started playing" differ. ``handed_at``
    records the hand-over time of each segment, parallel to ``segments``.
    """

    def __init__(self, *, transport_delay: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.transport_delay = transport_delay
        self.handed_at: list[float] = []
        self._between_segments = True

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        """Take a frame; a segment's first one arrives after the transport delay."""
        if self._between_segments:
            self._between_segments = False
            handed = time.time()
            await asyncio.sleep(self.transport_delay)
            await super().capture_frame(frame)
            self.handed_at.append(handed)
            return
        await super().capture_frame(frame)

    def flush(self) -> None:
        """End the current segment."""
        super().flush()
        self._between_segments = True

    def clear_buffer(self) -> None:
        """Drop what is buffered (an interruption)."""
        super().clear_buffer()
        self._between_segments = True


@dataclass
class Notes:
    """What the demo measures itself: text generation, speaking state, background tasks."""

    generated: dict[str, float] = field(default_factory=dict)
    speaking: dict[str, float] = field(default_factory=dict)  # speech id -> time
    tasks: dict[str, tuple[float, str]] = field(default_factory=dict)  # id -> (start, end)
    # message id -> (when, seconds of the message heard, word) for each word shown
    words: dict[str, list[tuple[float, float, str]]] = field(default_factory=dict)


class PipelineAgent(Agent):
    """An agent whose ``llm_node`` yields scripted replies, one marker per response."""

    def __init__(self, notes: Notes, replies: Sequence[Reply]) -> None:
        super().__init__(instructions="An offline demo agent.")
        self.notes = notes
        self.replies = list(replies)

    @ph.track_messages
    async def llm_node(
        self,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        model_settings: ModelSettings,
    ) -> AsyncIterable[str | FlushSentinel]:
        """Yield the next scripted reply: a ``MessageBoundary`` before each response."""
        for message_id, metadata, text in self.replies.pop(0):
            await asyncio.sleep(0.05)  # a model takes a moment per response
            yield ph.MessageBoundary(message_id, metadata=metadata)
            self.notes.generated[message_id] = time.time()
            yield text


class RealtimeAgent(Agent):
    """An agent on a (scripted) realtime model; it answers as soon as it takes over."""

    def __init__(self, model: ScriptedRealtimeModel) -> None:
        super().__init__(instructions="An offline realtime agent.", llm=model)

    async def on_enter(self) -> None:
        """Answer right away, as a realtime agent greeting after a handoff would."""
        self.session.generate_reply()


# -- the run ------------------------------------------------------------------------------


@dataclass
class Row:
    """One message of the timeline."""

    message_id: str
    source: str
    generated: float | None
    handed: float | None
    started: float | None
    finished: float
    played: str
    position: float
    speaking: float | None
    task: tuple[float, str] | None
    words: list[tuple[float, float, str]] = field(default_factory=list)
    """(when, seconds of the message heard, word) for each word shown, from live progress."""
    transcript: str | None = None


async def run() -> tuple[list[Row], float, SimulatedSink]:
    """Play the four speeches; return the rows, the session's start time and the sink."""
    notes = Notes()
    sink = RemoteSink(transport_delay=TRANSPORT_DELAY, record=True)
    session: AgentSession[Any] = AgentSession(
        llm=ScriptedLLM([]), tts=SineTTS(seconds_per_char=SECONDS_PER_CHAR)
    )
    # RoomIO's chain: livekit's transcription synchronizer over the audio sink; it shows each
    # word when its audio plays (here to no screen: the demo reads the words from progress)
    synchronizer = TranscriptSynchronizer(next_in_chain_audio=sink, next_in_chain_text=None)
    session.output.audio = synchronizer.audio_output
    session.output.transcription = synchronizer.text_output
    t0 = time.time()
    realtime = ScriptedRealtimeModel([REALTIME_RESPONSE])
    await session.start(PipelineAgent(notes, [PLAN_REPLY, INTERRUPTED_REPLY]), record=False)
    tracker = ph.attach(session)

    def on_state(ev: AgentStateChangedEvent) -> None:
        speech = session.current_speech
        if ev.new_state == "speaking" and speech is not None:
            notes.speaking.setdefault(speech.id, ev.created_at)

    session.on("agent_state_changed", on_state)

    # A background task per response, started the moment the user hears it, cancelled if
    # the user cuts that response off (livekit/agents #4213).
    @ph.on_message_played(session=session, cancel_on_partial=True)
    async def background_task(event: ph.MessagePlaybackStarted) -> None:
        work = event.metadata.get("work")
        if work is None:
            return
        began = time.time()
        try:
            await asyncio.sleep(work)
        except asyncio.CancelledError:
            notes.tasks[event.message_id] = (began, "cancelled")
            raise
        notes.tasks[event.message_id] = (began, "done")

    # Live progress: each word of a message as the user is shown it, with how much of the
    # message had been heard then.
    @ph.on_message_progress(session=session)
    def word_shown(event: ph.MessagePlaybackProgressed) -> None:
        words = notes.words.setdefault(event.message_id, [])
        shown = "".join(w for _, _, w in words)
        if event.heard_text is not None and event.heard_text != shown:
            words.append((event.at, event.position, event.heard_text[len(shown) :]))

    with EventCollector(session) as events:
        try:
            greeting = session.say(WELCOME)
            tracker.label(greeting, "welcome", metadata={"kind": "greeting"})
            notes.generated["welcome"] = time.time()
            await greeting

            await session.generate_reply()

            session.generate_reply()
            await tracker.wait_for("story-2", "started", timeout=20)
            await asyncio.sleep(INTERRUPT_AFTER)
            await session.interrupt()

            session.update_agent(RealtimeAgent(realtime))
            await tracker.wait_for("item_answer", "finished", timeout=20)
            await events.wait_finished(9, timeout=10)
            for rt_session in realtime.sessions:
                notes.generated.update(rt_session.sent)
            # stop reporting; the background tasks have all ended by now (done or cancelled)
            await tracker.aclose()
        finally:
            ph.disconnect(background_task)
            ph.disconnect(word_shown)
            await session.aclose()
            await synchronizer.aclose()
            await sink.aclose()

    started_at = {e.message_id: e.started_at for e in events.started}
    handed_by_start = {
        seg.started_at: handed
        for seg, handed in zip(sink.segments, sink.handed_at, strict=False)
        if seg.started_at is not None
    }
    rows: list[Row] = []
    first_of_speech: set[str] = set()
    for f in events.finished:
        start = started_at.get(f.message_id)
        speaking = None
        if f.speech_id not in first_of_speech:
            first_of_speech.add(f.speech_id)
            speaking = notes.speaking.get(f.speech_id)
        rows.append(
            Row(
                message_id=f.message_id,
                source=f.source,
                generated=notes.generated.get(f.message_id),
                handed=handed_by_start.get(start) if start is not None else None,
                started=start,
                finished=f.finished_at,
                played=f.played,
                position=f.playback_position,
                speaking=speaking,
                task=notes.tasks.get(f.message_id),
                words=notes.words.get(f.message_id, []),
                transcript=f.transcript,
            )
        )

    return rows, t0, sink


# -- the table ----------------------------------------------------------------------------


def _at(t: float | None, t0: float) -> str:
    return "—" if t is None else f"{t - t0:7.3f}"


def render_table(rows: Sequence[Row], t0: float) -> str:
    """The timeline as a text table; times are seconds since the session started."""
    head = (
        "message",
        "source",
        "generated",
        "handed",
        "started",
        "finished",
        "played",
        "heard",
        "speaking*",
    )
    body = [
        (
            r.message_id,
            r.source,
            _at(r.generated, t0),
            _at(r.handed, t0),
            _at(r.started, t0),
            _at(r.finished, t0),
            r.played,
            f"{r.position:5.2f} s",
            _at(r.speaking, t0),
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in body]
    return "\n".join(lines)


def render_words(rows: Sequence[Row]) -> str:
    """Each message's words as the user was shown them, with the seconds heard at each."""
    lines: list[str] = []
    for r in rows:
        if r.started is None:
            lines.append(f"  {r.message_id:<13} (never heard)")
            continue
        words = "  ".join(f"{word.strip()} {position:.2f}" for _, position, word in r.words)
        lines.append(f"  {r.message_id:<13} {words}")
        shown = "".join(word for _, _, word in r.words)
        if r.played == "partial":
            lines.append(
                f"  {'':<13} cut off at {r.position:.2f} s: shown {shown.strip()!r}, "
                f"transcript {r.transcript!r}"
            )
        elif r.transcript is not None and shown != r.transcript:
            rest = r.transcript[len(shown) :].strip() if r.transcript.startswith(shown) else ""
            if rest:
                lines.append(f"  {'':<13} shown at once after the end: {rest!r}")
    return "\n".join(lines)


# -- the picture --------------------------------------------------------------------------

_COLORS = {"full": "#2e9e5b", "partial": "#e08a1e", "skipped": "#9aa0a6"}


def render_svg(rows: Sequence[Row], t0: float) -> str:
    """One lane per message: text generated, hand-over, playback bar, started marker."""
    left, right, top, lane, bottom = 190, 30, 88, 30, 50
    times = [t for r in rows for t in (r.generated, r.handed, r.started, r.finished) if t]
    end = max(times) - t0 + 0.3
    width = 1000
    scale = (width - left - right) / end
    height = top + lane * len(rows) + bottom

    def x(t: float) -> float:
        return left + (t - t0) * scale

    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" '
        'font-size="12">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        '<text x="16" y="22" font-size="15" font-weight="bold">playback_hooks: when each '
        "message was generated, and when the user heard it</text>",
    ]
    # legend
    lx = 16
    legend = [
        ("circle", "#3b6fd8", "text generated"),
        ("tick", "#555555", "handed to sink"),
        ("tri", "#111111", "message_playback_started"),
        ("bar", _COLORS["full"], "played: full"),
        ("bar", _COLORS["partial"], "partial"),
        ("bar", _COLORS["skipped"], "skipped"),
        ("line", "#d93025", "agent_state_changed → speaking"),
        ("word", "#ffffff", "word shown"),
    ]
    cy = 44
    for kind, color, label in legend:
        if lx + 34 + 7 * len(label) > width:  # the legend goes on on a second line
            lx, cy = 16, cy + 20
        if kind == "circle":
            out.append(
                f'<circle cx="{lx + 5}" cy="{cy}" r="4" fill="none" stroke="{color}" '
                'stroke-width="2"/>'
            )
        elif kind == "tick":
            out.append(
                f'<line x1="{lx + 5}" y1="{cy - 6}" x2="{lx + 5}" y2="{cy + 6}" '
                f'stroke="{color}" stroke-width="2"/>'
            )
        elif kind == "tri":
            out.append(
                f'<path d="M{lx} {cy - 6} L{lx + 10} {cy - 6} L{lx + 5} {cy + 2} Z" '
                f'fill="{color}"/>'
            )
        elif kind == "bar":
            out.append(f'<rect x="{lx}" y="{cy - 5}" width="16" height="10" fill="{color}"/>')
        elif kind == "word":
            out.append(f'<rect x="{lx}" y="{cy - 5}" width="16" height="10" fill="#2e9e5b"/>')
            out.append(
                f'<line x1="{lx + 8}" y1="{cy - 5}" x2="{lx + 8}" y2="{cy + 5}" '
                f'stroke="{color}" stroke-width="1.5"/>'
            )
        else:
            out.append(
                f'<line x1="{lx + 5}" y1="{cy - 7}" x2="{lx + 5}" y2="{cy + 7}" '
                f'stroke="{color}" stroke-width="2" stroke-dasharray="3 2"/>'
            )
        out.append(f'<text x="{lx + 22}" y="{cy + 4}">{html.escape(label)}</text>')
        lx += 34 + 7 * len(label)
    # time axis
    axis_y = top + lane * len(rows) + 8
    out.append(
        f'<line x1="{left}" y1="{axis_y}" x2="{width - right}" y2="{axis_y}" stroke="#888888"/>'
    )
    second = 0
    while second <= end:
        gx = x(t0 + second)
        out.append(
            f'<line x1="{gx:.1f}" y1="{top - 6}" x2="{gx:.1f}" y2="{axis_y}" stroke="#eeeeee"/>'
        )
        out.append(
            f'<text x="{gx:.1f}" y="{axis_y + 16}" text-anchor="middle" '
            f'fill="#555555">{second} s</text>'
        )
        second += 1
    out.append(
        f'<text x="{width - right}" y="{axis_y + 34}" text-anchor="end" '
        'fill="#555555">seconds since the session started</text>'
    )
    # lanes
    for i, r in enumerate(rows):
        y = top + i * lane
        mid = y + lane / 2
        if i % 2 == 0:
            out.append(f'<rect x="0" y="{y}" width="{width}" height="{lane}" fill="#f7f8fa"/>')
        out.append(
            f'<text x="16" y="{mid + 4}" font-weight="bold">{html.escape(r.message_id)}</text>'
        )
        out.append(
            f'<text x="{left - 10}" y="{mid + 4}" text-anchor="end" fill="#666666">'
            f"{html.escape(r.source)}</text>"
        )
        if r.generated is not None and r.started is not None:
            out.append(
                f'<line x1="{x(r.generated):.1f}" y1="{mid}" x2="{x(r.started):.1f}" '
                f'y2="{mid}" stroke="#b0b8c4" stroke-dasharray="4 3"/>'
            )
        if r.started is not None:
            out.append(
                f'<rect x="{x(r.started):.1f}" y="{mid - 7}" '
                f'width="{max(1.0, (r.finished - r.started) * scale):.1f}" height="14" '
                f'rx="2" fill="{_COLORS[r.played]}"/>'
            )
            sx = x(r.started)
            out.append(
                f'<path d="M{sx - 5:.1f} {mid - 14} L{sx + 5:.1f} {mid - 14} '
                f'L{sx:.1f} {mid - 6} Z" fill="#111111"/>'
            )
            for at, _, _ in r.words:
                out.append(
                    f'<line x1="{x(at):.1f}" y1="{mid - 7}" x2="{x(at):.1f}" y2="{mid + 7}" '
                    'stroke="#ffffff" stroke-width="1.5"/>'
                )
        else:
            fx = x(r.finished)
            out.append(
                f'<text x="{fx + 6:.1f}" y="{mid + 4}" fill="{_COLORS["skipped"]}">'
                "skipped (never heard)</text>"
            )
            out.append(f'<circle cx="{fx:.1f}" cy="{mid}" r="3" fill="{_COLORS["skipped"]}"/>')
        if r.handed is not None:
            hx = x(r.handed)
            out.append(
                f'<line x1="{hx:.1f}" y1="{mid - 8}" x2="{hx:.1f}" y2="{mid + 8}" '
                'stroke="#555555" stroke-width="2"/>'
            )
        if r.generated is not None:
            out.append(
                f'<circle cx="{x(r.generated):.1f}" cy="{mid}" r="4" fill="#ffffff" '
                'stroke="#3b6fd8" stroke-width="2"/>'
            )
        if r.speaking is not None:
            kx = x(r.speaking)
            out.append(
                f'<line x1="{kx:.1f}" y1="{y + 1}" x2="{kx:.1f}" y2="{y + lane - 1}" '
                'stroke="#d93025" stroke-width="2" stroke-dasharray="3 2"/>'
            )
        if r.task is not None and r.started is not None:
            label = f"task: {r.task[1]}"
            out.append(
                f'<text x="{x(r.finished) + 6:.1f}" y="{mid + 4}" fill="#666666" '
                f'font-size="10">{label}</text>'
            )
    out.append("</svg>")
    return "\n".join(out) + "\n"


# -- main ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo, print the timeline and the paths of the WAV and the picture."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    clock = time.perf_counter()
    rows, t0, sink = asyncio.run(run())
    args.out.mkdir(parents=True, exist_ok=True)
    wav = args.out / "demo.wav"
    sink.write_wav(str(wav))
    svg = args.out / "timeline.svg"
    svg.write_text(render_svg(rows, t0), encoding="utf-8")
    took = time.perf_counter() - clock

    print("Per-message playback timeline (seconds since the session started)\n")
    print(render_table(rows, t0))
    print(
        "\n* agent_state_changed -> speaking: livekit's only native signal, once per speech."
        f"\n  'handed' is when the first frame reached the sink; it played {TRANSPORT_DELAY} s"
        "\n  later (a simulated transport); 'started' is the sink's own time."
    )
    print(
        "\nWhat the user was shown of each message, word by word, with the seconds of the"
        "\nmessage heard at each word (@on_message_progress):\n"
    )
    print(render_words(rows))
    print("\nBackground tasks started by @on_message_played(cancel_on_partial=True):")
    for r in rows:
        if r.task is not None and r.started is not None:
            began, outcome = r.task
            print(
                f"  {r.message_id:<8} started {began - r.started:+.3f} s after its audio, {outcome}"
            )
    print(f"\nAudio that played: {wav}")
    print(f"Timeline picture:  {svg}")
    print(f"Finished in {took:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
