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
them with how much of the message had been heard at each (live progress), and writes a
picture of the timeline (SVG) and the audio as the user heard it (WAV) to
``demo-output/``. The WAV runs on the picture's clock:
silence where nothing played, so the interruption is heard where the picture shows it.
Run it with ``make demo`` or ``python examples/demo.py [--out DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import logging
import sys
import time
import wave
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
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
TAIL = 0.3  # seconds the timeline runs on after its last event
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
    interrupted_at: float | None = None  # when the user cut in (session.interrupt())
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


@dataclass
class Timeline:
    """What the demo measured, on one clock (``time.time()``)."""

    rows: list[Row]
    t0: float
    """When the session started: 0 s on the timeline."""
    interrupted_at: float
    """When the user cut in (the demo called ``session.interrupt()``)."""
    sink: RemoteSink

    @property
    def span(self) -> float:
        """Seconds the timeline covers, from ``t0`` to just after its last event."""
        times = [self.interrupted_at]
        times += [t for r in self.rows for t in (r.generated, r.handed, r.started, r.finished) if t]
        return max(times) - self.t0 + TAIL


async def run() -> Timeline:
    """Play the four speeches; return the timeline."""
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
            notes.interrupted_at = time.time()
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

    assert notes.interrupted_at is not None
    return Timeline(rows=rows, t0=t0, interrupted_at=notes.interrupted_at, sink=sink)


# -- the table ----------------------------------------------------------------------------


def _at(t: float | None, t0: float) -> str:
    return "—" if t is None else f"{t - t0:7.3f}"


def render_table(timeline: Timeline) -> str:
    """The timeline as a text table; times are seconds since the session started."""
    rows, t0 = timeline.rows, timeline.t0
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
_GENERATED = "#3b6fd8"
_HANDED = "#555555"
_STARTED = "#111111"
_SPEAKING = "#d93025"
_INTERRUPTION = "#8e24aa"
_TASK = "#666666"


def _legend_item(
    kind: str, color: str, label: str, lx: float, cy: float
) -> tuple[list[str], float]:
    """One legend entry at ``lx``: its symbol and label, and the x of the next entry."""
    out: list[str] = []
    symbol = 16  # width of the symbol, before the label
    if kind == "circle":
        out.append(
            f'<circle cx="{lx + 5}" cy="{cy}" r="4" fill="#ffffff" stroke="{color}" '
            'stroke-width="2"/>'
        )
    elif kind == "tick":
        out.append(
            f'<line x1="{lx + 5}" y1="{cy - 6}" x2="{lx + 5}" y2="{cy + 6}" '
            f'stroke="{color}" stroke-width="2"/>'
        )
    elif kind == "started":
        out.append(
            f'<path d="M{lx} {cy - 5} L{lx + 10} {cy - 5} L{lx + 5} {cy + 3} Z" fill="{color}"/>'
        )
    elif kind == "speaking":
        out.append(
            f'<path d="M{lx} {cy + 4} L{lx + 10} {cy + 4} L{lx + 5} {cy - 4} Z" fill="{color}"/>'
        )
    elif kind == "interruption":
        out.append(
            f'<line x1="{lx + 5}" y1="{cy - 8}" x2="{lx + 5}" y2="{cy + 8}" stroke="{color}" '
            'stroke-width="2" stroke-dasharray="4 2"/>'
        )
    elif kind == "bar":
        out.append(f'<rect x="{lx}" y="{cy - 5}" width="16" height="10" fill="{color}"/>')
    elif kind == "word":
        out.append(f'<rect x="{lx}" y="{cy - 5}" width="16" height="10" fill="{color}"/>')
        out.append(
            f'<line x1="{lx + 8}" y1="{cy - 5}" x2="{lx + 8}" y2="{cy + 5}" '
            'stroke="#ffffff" stroke-width="1.5"/>'
        )
    else:  # a text sample, as the lanes show it
        out.append(
            f'<text x="{lx}" y="{cy + 4}" fill="{color}" font-size="10">{html.escape(kind)}</text>'
        )
        symbol = round(4.8 * len(kind))
    out.append(f'<text x="{lx + symbol + 6}" y="{cy + 4}">{html.escape(label)}</text>')
    return out, lx + symbol + 24 + 6.6 * len(label)


def render_svg(timeline: Timeline) -> str:
    """One lane per message: text generated, hand-over, started, playback bar and outcome,
    livekit's speaking event, the background task's end; and the moment the user cut in."""
    rows, t0 = timeline.rows, timeline.t0
    left, right, top, lane, bottom = 190, 30, 100, 32, 50
    end = timeline.span
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
    # legend: two rows, the markers above, the outcomes below
    legend = [
        [
            ("circle", _GENERATED, "text generated"),
            ("tick", _HANDED, "handed to sink"),
            ("started", _STARTED, "message_playback_started"),
            ("speaking", _SPEAKING, "agent_state_changed → speaking"),
            ("interruption", _INTERRUPTION, "the user cuts in"),
        ],
        [
            ("bar", _COLORS["full"], "played: full"),
            ("bar", _COLORS["partial"], "partial"),
            ("bar", _COLORS["skipped"], "skipped"),
            ("word", _COLORS["full"], "word shown"),
            (
                "task: done / cancelled",
                _TASK,
                "its background task (@on_message_played) ran to the end / was cancelled",
            ),
        ],
    ]
    out.append('<g class="legend">')
    for row, cy in zip(legend, (46, 68), strict=True):
        lx: float = 16
        for kind, color, label in row:
            items, lx = _legend_item(kind, color, label, lx, cy)
            out += items
    out.append("</g>")
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
                f'<rect class="played" x="{x(r.started):.1f}" y="{mid - 7}" '
                f'width="{max(1.0, (r.finished - r.started) * scale):.1f}" height="14" '
                f'rx="2" fill="{_COLORS[r.played]}"/>'
            )
            for at, _, _ in r.words:
                out.append(
                    f'<line class="word" x1="{x(at):.1f}" y1="{mid - 7}" x2="{x(at):.1f}" '
                    f'y2="{mid + 7}" stroke="#ffffff" stroke-width="1.5"/>'
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
                f'stroke="{_HANDED}" stroke-width="2"/>'
            )
        if r.generated is not None:
            out.append(
                f'<circle cx="{x(r.generated):.1f}" cy="{mid}" r="4" fill="#ffffff" '
                f'stroke="{_GENERATED}" stroke-width="2"/>'
            )
        # started above the bar, pointing down at it; speaking below it, pointing up: both
        # stay visible when livekit's event comes a moment after the sink's
        if r.started is not None:
            sx = x(r.started)
            out.append(
                f'<path class="started" d="M{sx - 5:.1f} {mid - 15} L{sx + 5:.1f} {mid - 15} '
                f'L{sx:.1f} {mid - 8} Z" fill="{_STARTED}"/>'
            )
        if r.speaking is not None:
            kx = x(r.speaking)
            out.append(
                f'<path class="speaking" d="M{kx - 5:.1f} {mid + 15} L{kx + 5:.1f} {mid + 15} '
                f'L{kx:.1f} {mid + 8} Z" fill="{_SPEAKING}"/>'
            )
        if r.task is not None and r.started is not None:
            out.append(
                f'<text class="task" x="{x(r.finished) + 6:.1f}" y="{mid + 4}" fill="{_TASK}" '
                f'font-size="10">task: {html.escape(r.task[1])}</text>'
            )
    # the moment the user cut in, across every lane
    ix = x(timeline.interrupted_at)
    out.append(
        f'<line class="interruption" x1="{ix:.1f}" y1="{top - 14}" x2="{ix:.1f}" y2="{axis_y}" '
        f'stroke="{_INTERRUPTION}" stroke-width="2" stroke-dasharray="4 2"/>'
    )
    out.append(
        f'<text x="{ix - 5:.1f}" y="{top - 4}" text-anchor="end" fill="{_INTERRUPTION}">'
        "the user cuts in</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


# -- the audio ----------------------------------------------------------------------------


def write_wav(timeline: Timeline, path: Path) -> float:
    """Write what the user heard on the timeline's clock; return its length in seconds.

    Sample 0 is the session's start; each segment's audio sits where the sink played it
    (from its ``started_at``, for the seconds it played), silence everywhere else. The
    file lasts ``timeline.span`` seconds, like the picture, so a listener hears the
    interruption where the picture shows it.
    """
    segments = [s for s in timeline.sink.segments if s.started_at is not None]
    rate = timeline.sink.sample_rate or segments[0].frames[0].sample_rate
    heard = np.zeros(round(timeline.span * rate), dtype=np.int16)
    for seg in segments:
        assert seg.started_at is not None
        if any(f.sample_rate != rate or f.num_channels != 1 for f in seg.frames):
            raise ValueError("write_wav: every frame must be mono at the sink's sample rate")
        pcm = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in seg.frames])
        played = pcm[: round(seg.position * rate)]
        at = round((seg.started_at - timeline.t0) * rate)
        played = played[: max(0, len(heard) - at)]
        heard[at : at + len(played)] = played
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(heard.tobytes())
    return len(heard) / rate


# -- main ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo, print the timeline and the paths of the WAV and the picture."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    clock = time.perf_counter()
    timeline = asyncio.run(run())
    args.out.mkdir(parents=True, exist_ok=True)
    wav = args.out / "demo.wav"
    seconds = write_wav(timeline, wav)
    svg = args.out / "timeline.svg"
    svg.write_text(render_svg(timeline), encoding="utf-8")
    took = time.perf_counter() - clock

    print("Per-message playback timeline (seconds since the session started)\n")
    print(render_table(timeline))
    print(
        "\n* agent_state_changed -> speaking: livekit's only native signal, once per speech."
        f"\n  'handed' is when the first frame reached the sink; it played {TRANSPORT_DELAY} s"
        "\n  later (a simulated transport); 'started' is the sink's own time."
        f"\n  The user cut in at {timeline.interrupted_at - timeline.t0:.3f} s."
    )
    print(
        "\nWhat the user was shown of each message, word by word, with the seconds of the"
        "\nmessage heard at each word (@on_message_progress):\n"
    )
    print(render_words(timeline.rows))
    print("\nBackground tasks started by @on_message_played(cancel_on_partial=True):")
    for r in timeline.rows:
        if r.task is not None and r.started is not None:
            began, outcome = r.task
            print(
                f"  {r.message_id:<8} started {began - r.started:+.3f} s after its audio, {outcome}"
            )
    print(f"\nAudio as heard, on the timeline's clock ({seconds:.1f} s): {wav}")
    print(f"Timeline picture:  {svg}")
    print(f"Finished in {took:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
