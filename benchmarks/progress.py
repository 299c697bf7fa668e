"""Benchmark 5: what live progress costs on the per-frame and per-word paths.

Three started ``AgentSession``s in one process, identical but for the tracker: none
("untracked"), a tracker nobody asked for progress ("no receiver"), and a tracker with a
``message_playback_progressed`` receiver ("receiver"; the receiver only counts). The roles
rotate over the sessions from round to round (trackers attached and closed, the receiver
connected and disconnected, between rounds), so that what makes one session faster than
another cancels out: over ``ROUNDS`` rounds each session plays each role twice. Within a
round each repetition measures the three on the same input, in each of the six orders in
turn; every figure is a median over repetitions, each ratio the median of the per-repetition
ratios to the untracked session of that repetition (with their 10th to 90th percentile),
and a round's ratio the median of its repetitions'.

- Per frame: 20 ms frames after a segment's first, pushed into ``session.output.audio`` in
  the speech's context as livekit's audio forwarding does, over livekit's transcription
  synchronizer above a counting sink (RoomIO's chain shape).
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
import itertools
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
    own_call_sites,
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


# Per word, 200 words a window (about 35 µs): without a receiver the per-word path is the
# untracked one, and with 40 words (7 µs) its rounds still spread from 0.984 to 1.024 of it;
# with 200, from 0.989 to 1.009 (two runs each).
FULL = Sizes(repetitions=468, segments=5, frames_per_segment=50, words=200)
QUICK = Sizes(repetitions=12, segments=2, frames_per_segment=10, words=8)
# Rounds of repetitions, between which the roles rotate over the three sessions.
ROUNDS = 6

KINDS = ("untracked", "no receiver", "receiver")
# The orders a repetition measures the three sessions in: all six, so that each kind comes
# first, second and third equally often, and after each of the other two equally often (with
# rotations of one cycle only, each kind always came after the same other kind, and an
# untracked session measured in the receiver's place came out 0.5 % slower than untracked).
ORDERS = tuple(itertools.permutations(range(len(KINDS))))
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

    def take(self, kind: str) -> None:
        _take(self, kind)

    @property
    def output(self) -> Any:
        out = self.session.output.audio
        assert out is not None
        return out


async def _side(kind: str) -> _Side:
    sink = CountingSink()
    session: AgentSession[Any] = AgentSession(llm=ScriptedLLM([]), tts=SineTTS())
    side = _Side("untracked", session, sink)
    side.text = CountingText()
    side.synchronizer = TranscriptSynchronizer(
        next_in_chain_audio=sink, next_in_chain_text=side.text
    )
    session.output.audio = side.synchronizer.audio_output
    session.output.transcription = side.synchronizer.text_output
    await session.start(Agent(instructions="benchmark agent"), record=False)
    side.take(kind)
    return side


def _take(side: _Side, kind: str) -> None:
    """Give ``side`` the role ``kind``: attach a tracker and connect the receiver as needed."""
    side.kind = kind
    if kind != "untracked":
        ph.attach(side.session)
    if kind == "receiver":
        ph.message_playback_progressed.connect(side.receive, sender=side.session)


async def _leave(side: _Side) -> None:
    """Undo the side's role: the receiver disconnected, its tracker closed."""
    if side.kind == "receiver":
        ph.message_playback_progressed.disconnect(side.receive, sender=side.session)
    tracker = ph.tracker_for(side.session)
    if tracker is not None:
        await tracker.aclose()
    side.kind = "untracked"


async def _close(side: _Side) -> None:
    await _leave(side)
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
    with in_speech(handle):
        await out.capture_frame(frame)  # the message starts playing
        # (the tap under the synchronizer's text output goes in as it does, if followed)
        below = side.synchronizer.text_output.next_in_chain
        assert below is not None
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


def _summary(samples: dict[str, list[list[float]]]) -> dict[str, Any]:
    """``samples[kind][round]``: the per-repetition figures of each round."""
    rows: dict[str, Any] = {}
    for kind in KINDS:
        pairs = [
            (v, b)
            for values, base in zip(samples[kind], samples["untracked"], strict=True)
            for v, b in zip(values, base, strict=True)
        ]
        ratios = sorted(v / b for v, b in pairs)
        rows[kind] = {
            "ns": statistics.median(v for v, _ in pairs),
            "added_ns": statistics.median(v - b for v, b in pairs),
            "ratio": statistics.median(ratios),
            "ratio_p10": ratios[len(ratios) // 10],
            "ratio_p90": ratios[min(len(ratios) - 1, len(ratios) * 9 // 10)],
            "round_ratios": [
                statistics.median(v / b for v, b in zip(values, base, strict=True))
                for values, base in zip(samples[kind], samples["untracked"], strict=True)
            ],
        }
    return rows


async def _compare(*, per_word: bool, repetitions: int, **sizes: int) -> dict[str, Any]:
    sides = [await _side(kind) for kind in KINDS]
    frame = pcm_frame(0.02)
    samples: dict[str, list[list[float]]] = {kind: [] for kind in KINDS}
    events = {kind: 0 for kind in KINDS}
    heard_text_seen: dict[str, list[str | None]] = {kind: [] for kind in KINDS}

    # each role drives its sessions through call sites of its own (see own_call_sites)
    frames_of = {kind: own_call_sites(_frames) for kind in KINDS}
    words_of = {kind: own_call_sites(_words) for kind in KINDS}

    async def one(side: _Side) -> float:
        if per_word:
            return await words_of[side.kind](side, frame, sizes["words"])
        return await frames_of[side.kind](
            side, frame, sizes["segments"], sizes["frames_per_segment"]
        )

    # whole sets of the six orders
    per_round = max(1, repetitions // ROUNDS // len(ORDERS)) * len(ORDERS)
    try:
        for side in sides:  # warm up
            for _ in range(max(1, repetitions // 20)):
                await one(side)
        for r in range(ROUNDS):
            for j, side in enumerate(sides):
                await _leave(side)
                side.take(KINDS[(j + r) % len(KINDS)])
                side.progressed = 0
                side.heard_text_seen.clear()
            gc.collect()
            for kind in KINDS:
                samples[kind].append([])
            for i in range(per_round):
                for k in ORDERS[i % len(ORDERS)]:
                    side = sides[k]
                    samples[side.kind][-1].append(await one(side))
            await asyncio.sleep(0)
            for side in sides:
                events[side.kind] += side.progressed
                heard_text_seen[side.kind] += side.heard_text_seen
    finally:
        for side in sides:
            await _close(side)
    done = per_round * ROUNDS
    result: dict[str, Any] = {
        "repetitions": done,
        "rounds": ROUNDS,
        **sizes,
        "rows": _summary(samples),
        "progress_events": events,
    }
    if per_word:
        result["expected_progress_events"] = done * sizes["words"]
        result["words_followed_without_receiver"] = any(
            h is not None for h in heard_text_seen["no receiver"]
        )
        receiver_texts = heard_text_seen["receiver"]
        result["words_followed_with_receiver"] = len(receiver_texts) == done and all(
            h is not None and h.count(" ") == sizes["words"] for h in receiver_texts
        )
        pieces = {s.text.pieces for s in sides if s.text is not None}
        result["text_output_got_every_word"] = len(pieces) == 1
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
        ratio_target(
            "live progress, per frame, progress receiver / untracked, RoomIO chain",
            1.01,
            frame["rows"]["receiver"]["round_ratios"],
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
        f"{frame['frames_per_segment']} frames, and of {word['words']} words, per role, in "
        f"{frame['rounds']} rounds between which the roles rotate over the three sessions, "
        "the three measured in each of the six orders in turn within a round. Per frame, no "
        "code of the tracker runs after a segment's first frame, with or without a receiver. "
        "Per word, without a receiver the tracker has put nothing in livekit's text chain "
        f"(progress events: {events['no receiver']}); with one, every word made one "
        f"progress event ({events['receiver']:,} of {word['expected_progress_events']:,}), "
        "whose delivery runs on a later loop iteration and is not in the figure.",
    ]
    return lines
