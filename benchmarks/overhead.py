"""Benchmark 2a: what the tracker adds to the audio path, per frame and per segment.

Two chains in real, started ``AgentSession``s of one process: RoomIO's chain (the
transcription synchronizer over the participant output on the native ``rtc.AudioSource``)
and the bare participant output (RoomIO with transcription disabled), each in two groups
of ``sessions`` sessions. In every round the sessions of one group of each chain have a
tracker and the other group's have none; the roles swap from round to round (``attach()``
/ ``aclose()`` between rounds), so whatever makes one session faster than another cancels
out over the rounds.

Segments are driven into each session's ``output.audio`` as livekit's forwarding does it,
inside a real speech's context: the segment's text to ``output.transcription`` (RoomIO
chain), every ``capture_frame`` (20 ms frames), one ``flush()``, then ``wait_for_playout()``
while the native source plays the audio in real time. Every session's segment is open at
once and the frames are interleaved one by one across a chain's sessions (a1 b1 a2 b2,
then the reverse), so both sides see the same moments of the machine.

Timed with ``perf_counter_ns`` around calls that run to completion without yielding:

- steady-state frame: each ``capture_frame`` after a segment's first;
- per segment: the speech's creation (``speech_created``, where the tracker admits it), the
  first ``capture_frame`` (capture start: the tracker binds the segment to its message),
  ``flush()``, and the travel of the sink's ``playback_started``, ``playback_progressed``
  and ``playback_finished`` up the whole chain (timed inside the sink around livekit's
  ``emit``: every listener of every layer above it).

Each round gives the ratio tracked / untracked of the median steady-state frame. After the
rounds, one more segment per chain, tracked, counts the calls into the tracker's code during
its steady-state frames (a profiling hook, outside any timing): livekit's forwarding reaches
the output below the tracker's directly, so there must be none. livekit's ``EventEmitter``
(which calls ``inspect.signature`` on every listener for every event) is also timed on its
own, with a bound method (what livekit's own layers register), a plain function, and the
listener the tracker registers (a function carrying its precomputed signature), to split
the added per-event cost between livekit and the tracker.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc
from livekit.agents import Agent
from livekit.agents.voice.io import AudioOutput, PlaybackStartedEvent
from livekit.agents.voice.speech_handle import SpeechHandle

import playback_hooks as ph
from playback_hooks import _listeners

from .common import (
    CHAIN_KINDS,
    CHAIN_NAMES,
    Chain,
    ChainKind,
    ProbedRoomOutput,
    chain_ratio_targets,
    check_target,
    end_speech,
    in_speech,
    new_speech,
    own_call_sites,
    pcm_frame,
    ratio,
    round_table,
    spread,
    start_chain,
    tracker_calls,
)

TITLE = "CPU cost of the tracker in the audio path (per frame, per segment)"
PARTS = (
    "speech_created",
    "capture_start",
    "flush",
    "playback_started",
    "playback_progressed",
    "playback_finished",
)
TEXT = "Part one of the answer."


@dataclass(frozen=True)
class Sizes:
    """How much one run measures."""

    rounds: int
    sessions: int  # per chain and side
    segments: int  # per round and session
    frames: int  # 20 ms frames per segment
    emitter_calls: int


FULL = Sizes(rounds=12, sessions=2, segments=20, frames=10, emitter_calls=20_000)
QUICK = Sizes(rounds=2, sessions=1, segments=2, frames=4, emitter_calls=200)


@dataclass
class _Open:
    """A segment being pushed into one session."""

    chain: Chain
    tracked: bool
    handle: SpeechHandle
    out: AudioOutput
    marks: tuple[int, int, int]  # lengths of the sink's timing lists when it began
    steady: list[int] = field(default_factory=list)
    parts: dict[str, int] = field(default_factory=dict)
    progressed_events: int = 0


async def _open(chain: Chain, tracked: bool, frame: rtc.AudioFrame) -> _Open:
    session = chain.session
    sink = chain.sink
    assert isinstance(sink, ProbedRoomOutput)
    marks = (len(sink.started_ns), len(sink.progressed_ns), len(sink.finished_ns))
    t0 = time.perf_counter_ns()
    handle = new_speech(session)
    created = time.perf_counter_ns() - t0
    out = session.output.audio
    assert out is not None
    seg = _Open(chain, tracked, handle, out, marks, parts={"speech_created": created})
    with in_speech(handle):
        if chain.kind == "roomio":
            text = session.output.transcription
            assert text is not None
            await text.capture_text(TEXT)
            text.flush()
        t0 = time.perf_counter_ns()
        await out.capture_frame(frame)
        seg.parts["capture_start"] = time.perf_counter_ns() - t0
    return seg


async def _frame(seg: _Open, frame: rtc.AudioFrame) -> None:
    with in_speech(seg.handle):
        t0 = time.perf_counter_ns()
        await seg.out.capture_frame(frame)
        seg.steady.append(time.perf_counter_ns() - t0)


def _flush(seg: _Open) -> None:
    with in_speech(seg.handle):
        t0 = time.perf_counter_ns()
        seg.out.flush()
        seg.parts["flush"] = time.perf_counter_ns() - t0


def _reports(seg: _Open) -> None:
    sink = seg.chain.sink
    assert isinstance(sink, ProbedRoomOutput)
    ns, np_, nf = seg.marks
    seg.parts["playback_started"] = sum(sink.started_ns[ns:])
    seg.parts["playback_progressed"] = sum(sink.progressed_ns[np_:])
    seg.parts["playback_finished"] = sum(sink.finished_ns[nf:])
    seg.progressed_events = len(sink.progressed_ns) - np_


@dataclass(frozen=True)
class _Sites:
    """The calls into a session's output, through call sites of their own (see
    ``own_call_sites``): one set per chain and side, as if each ran in its own process."""

    open: Callable[[Chain, bool, rtc.AudioFrame], Awaitable[_Open]]
    frame: Callable[[_Open, rtc.AudioFrame], Awaitable[None]]
    flush: Callable[[_Open], None]


_SITES = {
    (kind, tracked): _Sites(own_call_sites(_open), own_call_sites(_frame), own_call_sites(_flush))
    for kind in CHAIN_KINDS
    for tracked in (True, False)
}


async def _calls_per_frame(chain: Chain, frame: rtc.AudioFrame, frames: int) -> float:
    """Calls into the tracker's code per steady-state frame of one tracked segment."""
    tracker = ph.attach(chain.session)
    calls = {"n": 0}

    def call() -> None:
        calls["n"] += 1

    try:
        seg = await _open(chain, True, frame)
        with tracker_calls(call):
            for _ in range(frames - 1):
                await seg.out.capture_frame(frame)
        _flush(seg)
        await seg.out.wait_for_playout()
        end_speech(seg.handle)
        await asyncio.sleep(0)
    finally:
        await tracker.aclose()
    return calls["n"] / (frames - 1)


async def _step(
    groups: dict[ChainKind, tuple[tuple[Chain, ...], tuple[Chain, ...]]],
    tracked: dict[ChainKind, tuple[Chain, ...]],
    frame: rtc.AudioFrame,
    frames: int,
    step: int,
) -> list[_Open]:
    """One segment into every session, frames interleaved across a chain's sessions."""
    segs: dict[ChainKind, list[_Open]] = {}
    for kind, (a, b) in groups.items():
        # a1 b1 a2 b2 ..., reversed every other time: each group as often first as last
        order = [c for pair in zip(a, b, strict=True) for c in pair]
        order = order if step % 2 == 0 else order[::-1]
        segs[kind] = [
            await _SITES[kind, c in tracked[kind]].open(c, c in tracked[kind], frame) for c in order
        ]
    for k in range(frames - 1):
        for kind in CHAIN_KINDS:
            for seg in segs[kind] if k % 2 == 0 else segs[kind][::-1]:
                await _SITES[kind, seg.tracked].frame(seg, frame)
    everything = [seg for kind in CHAIN_KINDS for seg in segs[kind]]
    for seg in everything:
        _SITES[seg.chain.kind, seg.tracked].flush(seg)
    await asyncio.gather(*(seg.out.wait_for_playout() for seg in everything))
    for seg in everything:
        end_speech(seg.handle)
        _reports(seg)
    await asyncio.sleep(0)  # the speeches' done callbacks, deferred deliveries
    await asyncio.sleep(0)
    return everything


async def _measure(sizes: Sizes) -> dict[str, Any]:
    groups: dict[ChainKind, tuple[tuple[Chain, ...], tuple[Chain, ...]]] = {}
    for kind in CHAIN_KINDS:
        made: list[tuple[Chain, ...]] = []
        for _ in range(2):
            made.append(
                tuple(
                    [
                        await start_chain(
                            Agent(instructions="benchmark agent"), kind=kind, tracked=False
                        )
                        for _ in range(sizes.sessions)
                    ]
                )
            )
        groups[kind] = (made[0], made[1])
    frame = pcm_frame(0.02)
    rounds: dict[ChainKind, list[dict[str, list[_Open]]]] = {kind: [] for kind in CHAIN_KINDS}
    started = {"events": 0}

    def count(sender: Any, **_: Any) -> None:
        started["events"] += 1

    ph.message_playback_started.connect(count, weak=False)
    step = 0
    calls_per_frame: dict[ChainKind, float] = {}
    try:
        for r in range(-1, sizes.rounds):  # round -1 warms every path up, untracked
            trackers = []
            tracked = {kind: group[r % 2] if r >= 0 else () for kind, group in groups.items()}
            for group in tracked.values():
                trackers += [ph.attach(chain.session) for chain in group]
            gc.collect()
            collected: dict[ChainKind, dict[str, list[_Open]]] = {
                kind: {"tracked": [], "untracked": []} for kind in CHAIN_KINDS
            }
            for _ in range(sizes.segments if r >= 0 else 2):
                for seg in await _step(groups, tracked, frame, sizes.frames, step):
                    collected[seg.chain.kind]["tracked" if seg.tracked else "untracked"].append(seg)
                step += 1
            for tracker in trackers:
                await tracker.aclose()
            if r >= 0:
                for kind in CHAIN_KINDS:
                    rounds[kind].append(collected[kind])
        for kind, (group, _) in groups.items():
            calls_per_frame[kind] = await _calls_per_frame(group[0], frame, sizes.frames)
    finally:
        ph.message_playback_started.disconnect(count)
        for pair in groups.values():
            for group in pair:
                for chain in group:
                    await chain.aclose()

    def steady(segs: list[_Open]) -> float:
        return statistics.median(v for s in segs for v in s.steady)

    def part(segs: list[_Open], name: str) -> float:
        return statistics.median(s.parts[name] for s in segs)

    results: dict[str, Any] = {
        "started_events": started["events"],
        "expected_started_events": sizes.rounds * sizes.segments * sizes.sessions * len(CHAIN_KINDS)
        + len(CHAIN_KINDS),  # the segment that counts the calls per frame
        "tracker_calls_per_frame": calls_per_frame,
    }
    for kind in CHAIN_KINDS:
        per_round: list[dict[str, Any]] = []
        for coll in rounds[kind]:
            a, b = coll["untracked"], coll["tracked"]
            per_round.append(
                {
                    "segments": len(a),
                    "steady_ns": {"untracked": steady(a), "tracked": steady(b)},
                    "steady_ratio": ratio(steady(b), steady(a)),
                }
            )
        all_a = [s for coll in rounds[kind] for s in coll["untracked"]]
        all_b = [s for coll in rounds[kind] for s in coll["tracked"]]
        results[kind] = {
            "chain": CHAIN_NAMES[kind],
            "frames_per_segment": sizes.frames,
            "segments_each": len(all_a),
            "rounds": per_round,
            "steady_ratio": spread([r["steady_ratio"] for r in per_round]),
            "steady_ns": {"untracked": steady(all_a), "tracked": steady(all_b)},
            "parts_ns": {
                name: {"untracked": part(all_a, name), "tracked": part(all_b, name)}
                for name in PARTS
            },
            "progressed_events_per_segment": statistics.median(s.progressed_events for s in all_b),
        }
    return results


def _emitter_events(name: str) -> float:
    """How many events a segment part passes through the listener the tracker adds below.

    The tracker's output listens below itself (or to the session, for ``speech_created``)
    once per event; livekit's listeners above move onto it rather than multiply. It does
    not listen to the sink's progress reports here: no message's progress is followed and
    nothing listens above it.
    """
    return 1.0 if name in ("speech_created", "playback_started", "playback_finished") else 0.0


class _Listener:
    """Stands for an output's bound-method listener, the kind livekit's chain registers."""

    def _below_started(self, ev: PlaybackStartedEvent) -> None:
        pass


def _emitter_costs(calls: int) -> dict[str, float]:
    """ns per event of livekit's ``EventEmitter.emit`` to one listener, by listener kind."""
    ev = PlaybackStartedEvent(created_at=time.time())
    listener = _Listener()

    def plain(ev: PlaybackStartedEvent) -> None:
        pass

    # what the tracker registers: a function carrying its precomputed signature, for which
    # inspect.signature() returns at once
    trackers = _listeners.listener(listener._below_started)

    def best_of(fn: Callable[[], None]) -> float:
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter_ns()
            for _ in range(calls):
                fn()
            best = min(best, (time.perf_counter_ns() - t0) / calls)
        return best

    def emitter(callback: Callable[[PlaybackStartedEvent], None] | None) -> Callable[[], None]:
        em: rtc.EventEmitter[str] = rtc.EventEmitter()
        if callback is not None:
            em.on("playback_started", callback)
        return lambda: em.emit("playback_started", ev)

    method = listener._below_started
    return {
        "emit_no_listener_ns": best_of(emitter(None)),
        "emit_bound_method_ns": best_of(emitter(method)),
        "emit_function_ns": best_of(emitter(plain)),
        "emit_tracker_listener_ns": best_of(emitter(trackers)),
        "direct_call_ns": best_of(lambda: method(ev)),
    }


async def run(sizes: Sizes) -> dict[str, Any]:
    """Measure both chains, then livekit's emitter on its own."""
    results = await _measure(sizes)
    results["emitter"] = _emitter_costs(sizes.emitter_calls)
    return results


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Steady-state frame cost, tracked / untracked, in both chains; no tracker code there."""
    calls = res["tracker_calls_per_frame"]
    return [
        *chain_ratio_targets(
            res, "steady-state frame CPU, tracked / untracked", 1.01, "steady_ratio"
        ),
        check_target(
            "calls into the tracker's code per steady-state frame, both chains",
            "none",
            max(calls.values()),
            "calls",
            all(v == 0 for v in calls.values()),
        ),
    ]


def _us(ns: float) -> str:
    return f"{ns / 1000:,.1f}"


def report(res: dict[str, Any]) -> list[str]:
    """The section's Markdown lines."""
    em = res["emitter"]
    hop = em["emit_tracker_listener_ns"] - em["emit_no_listener_ns"]
    lines = [
        "Medians over all rounds, ns per frame and µs per segment; per-round ratios below. "
        "`added` = tracked - untracked; `livekit's emitter` = the part of it spent in "
        "livekit's `EventEmitter.emit` for the listener the tracker adds (one per event, "
        "estimated from the emitter's cost measured on its own, below).",
        "",
        "| chain | cost | untracked | tracked | added | of it livekit's emitter | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in CHAIN_KINDS:
        c = res[kind]
        s = c["steady_ns"]
        lines.append(
            f"| {c['chain']} | ns per steady-state frame | {s['untracked']:,.0f} | "
            f"{s['tracked']:,.0f} | {s['tracked'] - s['untracked']:,.0f} | 0 | "
            f"{ratio(s['tracked'], s['untracked']):.3f} |"
        )
        total = {"untracked": 0.0, "tracked": 0.0, "emitter": 0.0}
        for name in PARTS:
            p = c["parts_ns"][name]
            emitter = hop * _emitter_events(name)
            total["untracked"] += p["untracked"]
            total["tracked"] += p["tracked"]
            total["emitter"] += emitter
            lines.append(
                f"| {c['chain']} | µs per segment: {name.replace('_', ' ')} | "
                f"{_us(p['untracked'])} | {_us(p['tracked'])} | "
                f"{_us(p['tracked'] - p['untracked'])} | {_us(emitter)} | "
                f"{ratio(p['tracked'], p['untracked']):.2f} |"
            )
        lines.append(
            f"| {c['chain']} | µs per segment, the six parts | {_us(total['untracked'])} | "
            f"{_us(total['tracked'])} | {_us(total['tracked'] - total['untracked'])} | "
            f"{_us(total['emitter'])} | {ratio(total['tracked'], total['untracked']):.2f} |"
        )
    lines += round_table(res, CHAIN_KINDS, "steady frame ratio", "steady_ratio")
    first = res[CHAIN_KINDS[0]]
    lines += [
        "",
        f"{first['segments_each']} segments of {first['frames_per_segment']} frames (20 ms) "
        "per side and chain.",
        "",
        "livekit's `EventEmitter.emit` on its own, ns per event with one listener: "
        f"none {em['emit_no_listener_ns']:,.0f}; a bound method (what livekit's own layers "
        f"register below themselves, and what the tracker registered before) "
        f"{em['emit_bound_method_ns']:,.0f}; a plain function {em['emit_function_ns']:,.0f}; "
        f"the tracker's listener (a function carrying its precomputed `__signature__`) "
        f"{em['emit_tracker_listener_ns']:,.0f}; for scale, calling the method directly "
        f"{em['direct_call_ns']:,.0f}. The tracker listens once below its output and once "
        "on the session, so each event (speech created, playback started, finished; "
        "progressed only while progress is followed) pays about "
        f"{hop / 1000:,.1f} µs of livekit's emitter for it (it was "
        f"{(em['emit_bound_method_ns'] - em['emit_no_listener_ns']) / 1000:,.1f} µs with a "
        "bound method). Calls into the tracker's code per steady-state frame: "
        + ", ".join(f"{CHAIN_NAMES[k]} {v:g}" for k, v in res["tracker_calls_per_frame"].items())
        + ".",
    ]
    return lines
