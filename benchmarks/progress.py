"""Benchmark 5: what live progress costs on the per-frame and per-word paths.

Three started ``AgentSession``s in one process, identical but for the tracker: none
("untracked"), a tracker nobody asked for progress ("no receiver"), and a tracker with a
``message_playback_progressed`` receiver ("receiver"; the receiver only counts). Each
repetition measures the three, in a rotating order, on the same input; every figure is a
median over repetitions, and each ratio is the median (and the 10th to 90th percentile
spread) of the per-repetition ratios to the untracked session of that repetition.

- Per frame: 20 ms frames after a segment's first, pushed into ``session.output.audio`` in
  the speech's context as livekit's audio forwarding does, over livekit's transcription
  synchronizer above a counting sink (RoomIO's chain shape). With a receiver the tracker
  also counts the seconds handed to the sink, frame by frame.
- Per word: livekit's ``TranscriptSynchronizer`` is in the chain (RoomIO's), a message is
  playing, and words are handed to what the synchronizer's word forwarder calls for each
  word it releases: the text output under the synchronizer's text output (the tracker's
  tap, or the transcription output itself when untracked). With a receiver each word also
  makes a progress event (position computed, queued for delivery on a later loop
  iteration; delivery is benchmark 3's subject and is not in this figure).

Without a receiver and without ``progress_interval`` the tracker must not follow words
(``now_playing().heard_text`` stays None while words are shown: checked) and must make no
progress event; with one it must make exactly one per word (counted).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from dataclasses import dataclass
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.voice.io import TextOutput
from livekit.agents.voice.transcription import TranscriptSynchronizer

import playback_hooks as ph
from playback_hooks.testing import ScriptedLLM, SineTTS

from .common import (
    CountingSink,
    check_target,
    end_speech,
    in_speech,
    new_speech,
    pcm_frame,
    ratio_target,
)

TITLE = "Live progress: per frame and per word, without and with a progress receiver"


@dataclass(frozen=True)
class Sizes:
    """How much each comparison measures."""

    repetitions: int
    segments: int
    frames_per_segment: int
    words: int


FULL = Sizes(repetitions=300, segments=5, frames_per_segment=50, words=40)
QUICK = Sizes(repetitions=10, segments=2, frames_per_segment=10, words=8)
# The per-repetition ratios are grouped into this many consecutive rounds for the spread.
ROUNDS = 5

KINDS = ("untracked", "no receiver", "receiver")
WORDS = ("The ", "price ", "is ", "twelve ", "dollars ", "and ", "fifty ", "cents. ")


class CountingText(TextOutput):
    """The bottom of the text chain: counts what it gets, like a transcription output."""

    def __init__(self) -> None:
        super().__init__(label="CountingText", next_in_chain=None)
        self.pieces = 0
        self.flushes = 0

    async def capture_text(self, text: str) -> None:
        """Count a piece of text."""
        self.pieces += 1

    def flush(self) -> None:
        """Count a flush."""
        self.flushes += 1


class _Side:
    """One of the three sessions."""

    def __init__(self, kind: str, session: AgentSession[Any], sink: CountingSink) -> None:
        self.kind = kind
        self.session = session
        self.sink = sink
        self.synchronizer: TranscriptSynchronizer | None = None
        self.text: CountingText | None = None
        self.progressed = 0
        self.heard_text_seen: list[str | None] = []

    def receive(self, sender: Any, **_: Any) -> None:
        self.progressed += 1

    @property
    def output(self) -> Any:
        out = self.session.output.audio
        assert out is not None
        return out


async def _side(kind: str) -> _Side:
    sink = CountingSink()
    session: AgentSession[Any] = AgentSession(llm=ScriptedLLM([]), tts=SineTTS())
    side = _Side(kind, session, sink)
    side.text = CountingText()
    side.synchronizer = TranscriptSynchronizer(
        next_in_chain_audio=sink, next_in_chain_text=side.text
    )
    session.output.audio = side.synchronizer.audio_output
    session.output.transcription = side.synchronizer.text_output
    if kind != "untracked":
        ph.attach(session)
    await session.start(Agent(instructions="benchmark agent"), record=False)
    if kind == "receiver":
        ph.message_playback_progressed.connect(side.receive, sender=session)
    return side


async def _close(side: _Side) -> None:
    if side.kind == "receiver":
        ph.message_playback_progressed.disconnect(side.receive, sender=side.session)
    tracker = ph.tracker_for(side.session)
    if tracker is not None:
        await tracker.aclose()
    await side.session.aclose()
    if side.synchronizer is not None:
        await side.synchronizer.aclose()


async def _frames(side: _Side, frame: rtc.AudioFrame, segments: int, per_segment: int) -> float:
    """ns per frame after a segment's first."""
    clock = time.perf_counter_ns
    handle = new_speech(side.session)
    out = side.output
    steady = 0
    with in_speech(handle):
        for _ in range(segments):
            await out.capture_frame(frame)
            t0 = clock()
            for _ in range(per_segment - 1):
                await out.capture_frame(frame)
            steady += clock() - t0
            out.flush()
    end_speech(handle)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return steady / (segments * (per_segment - 1))


async def _words(side: _Side, frame: rtc.AudioFrame, words: int) -> float:
    """ns per word shown while a message plays."""
    assert side.synchronizer is not None
    clock = time.perf_counter_ns
    handle = new_speech(side.session)
    out = side.output
    below = side.synchronizer.text_output.next_in_chain
    assert below is not None
    with in_speech(handle):
        await out.capture_frame(frame)  # the message starts playing
        tracker = ph.tracker_for(side.session)
        t0 = clock()
        for i in range(words):
            await below.capture_text(WORDS[i % len(WORDS)])
        elapsed = clock() - t0
        if tracker is not None:
            now = tracker.now_playing()
            side.heard_text_seen.append(None if now is None else now.heard_text)
        below.flush()
        out.flush()
    end_speech(handle)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return elapsed / words


def _summary(samples: dict[str, list[float]]) -> dict[str, Any]:
    base = samples["untracked"]
    rows: dict[str, Any] = {}
    for kind in KINDS:
        values = samples[kind]
        ratios = sorted(v / b for v, b in zip(values, base, strict=True))
        rows[kind] = {
            "ns": statistics.median(values),
            "added_ns": statistics.median(v - b for v, b in zip(values, base, strict=True)),
            "ratio": statistics.median(ratios),
            "ratio_p10": ratios[len(ratios) // 10],
            "ratio_p90": ratios[min(len(ratios) - 1, len(ratios) * 9 // 10)],
            "round_ratios": _rounds(values, base),
        }
    return rows


def _rounds(values: list[float], base: list[float]) -> list[float]:
    """The median ratio of each of ``ROUNDS`` consecutive runs of repetitions."""
    n = max(1, len(values) // ROUNDS)
    chunks = [(values[i : i + n], base[i : i + n]) for i in range(0, len(values), n)]
    return [
        statistics.median(v / b for v, b in zip(vs, bs, strict=True)) for vs, bs in chunks if vs
    ][:ROUNDS]


async def _compare(*, per_word: bool, repetitions: int, **sizes: int) -> dict[str, Any]:
    sides = [await _side(kind) for kind in KINDS]
    frame = pcm_frame(0.02)
    samples: dict[str, list[float]] = {kind: [] for kind in KINDS}

    async def one(side: _Side) -> float:
        if per_word:
            return await _words(side, frame, sizes["words"])
        return await _frames(side, frame, sizes["segments"], sizes["frames_per_segment"])

    try:
        for side in sides:  # warm up
            for _ in range(max(1, repetitions // 20)):
                await one(side)
        for side in sides:
            side.progressed = 0
            side.heard_text_seen.clear()
        gc.collect()
        for i in range(repetitions):
            order = sides[i % 3 :] + sides[: i % 3]
            for side in order:
                samples[side.kind].append(await one(side))
        await asyncio.sleep(0)
    finally:
        for side in sides:
            await _close(side)
    by_kind = {side.kind: side for side in sides}
    result: dict[str, Any] = {"repetitions": repetitions, **sizes, "rows": _summary(samples)}
    if per_word:
        result["progress_events"] = {k: by_kind[k].progressed for k in KINDS}
        result["expected_progress_events"] = repetitions * sizes["words"]
        result["words_followed_without_receiver"] = any(
            h is not None for h in by_kind["no receiver"].heard_text_seen
        )
        receiver_texts = by_kind["receiver"].heard_text_seen
        result["words_followed_with_receiver"] = len(receiver_texts) == repetitions and all(
            h is not None and h.count(" ") == sizes["words"] for h in receiver_texts
        )
        text = by_kind["untracked"].text
        result["text_output_got_every_word"] = all(
            s.text is not None and s.text.pieces == text.pieces for s in sides if text is not None
        )
    else:
        result["progress_events"] = {k: by_kind[k].progressed for k in KINDS}
    return result


async def run(sizes: Sizes) -> dict[str, Any]:
    """Per-frame and per-word cost, untracked / tracked without and with progress receiver."""
    return {
        "per_frame": await _compare(
            per_word=False,
            repetitions=sizes.repetitions,
            segments=sizes.segments,
            frames_per_segment=sizes.frames_per_segment,
        ),
        "per_word": await _compare(per_word=True, repetitions=sizes.repetitions, words=sizes.words),
    }


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Nothing paid without a receiver; one event per word with one."""
    frame, word = res["per_frame"], res["per_word"]
    return [
        ratio_target(
            "live progress, per word, no progress receiver / untracked, RoomIO chain",
            1.01,
            word["rows"]["no receiver"]["round_ratios"],
            note="nothing paid when nobody listens",
        ),
        check_target(
            "live progress, no progress receiver: words followed, events made",
            "none",
            word["progress_events"]["no receiver"],
            "events",
            word["progress_events"]["no receiver"] == 0
            and not word["words_followed_without_receiver"],
        ),
        ratio_target(
            "live progress, per frame, no progress receiver / untracked, RoomIO chain "
            "(the tracker's own layer included, see the steady frame above)",
            1.01,
            frame["rows"]["no receiver"]["round_ratios"],
        ),
        check_target(
            "live progress, with a receiver: one event per word shown",
            f"{word['expected_progress_events']:,}",
            word["progress_events"]["receiver"],
            "events",
            word["progress_events"]["receiver"] == word["expected_progress_events"]
            and word["words_followed_with_receiver"],
        ),
    ]


def report(res: dict[str, Any]) -> list[str]:
    """The section's Markdown lines."""
    lines = [
        "| path | session | ns | added ns | ratio to untracked | ratio p10 … p90 |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in (("per_frame", "per frame"), ("per_word", "per word")):
        for kind, row in res[key]["rows"].items():
            lines.append(
                f"| {label} | {kind} | {row['ns']:,.1f} | {row['added_ns']:,.1f} | "
                f"{row['ratio']:.3f} | {row['ratio_p10']:.3f} … {row['ratio_p90']:.3f} |"
            )
    frame, word = res["per_frame"], res["per_word"]
    events = word["progress_events"]
    lines += [
        "",
        f"{frame['repetitions']} repetitions of {frame['segments']} segments x "
        f"{frame['frames_per_segment']} frames, and of {word['words']} words, per session, "
        "the three sessions measured in a rotating order. Per frame, the tracker's own "
        "layer is in both tracked figures; what progress adds on that path is one attribute "
        "test without a receiver, and the count of the seconds handed to the sink with one. "
        "Per word, without a receiver the tracker has put nothing in livekit's text chain "
        f"(progress events: {events['no receiver']}); with one, every word made one "
        f"progress event ({events['receiver']:,} of {word['expected_progress_events']:,}), "
        "whose delivery runs on a later loop iteration and is not in the figure.",
    ]
    return lines
