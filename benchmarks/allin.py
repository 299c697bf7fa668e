"""Benchmark 2b: all-in CPU per second of audio, whole sessions, tracked / untracked.

Two chains, each in two groups of real, started ``AgentSession``s in one process: RoomIO's
chain (the transcription synchronizer over the participant output on the native
``rtc.AudioSource``) and the bare participant output (RoomIO with transcription
disabled). In every round the sessions of one group of each chain have trackers (and one
receiver counts every event) and the other group's have none; the roles swap from round
to round (``attach()`` / ``aclose()`` between rounds).

Each reply is a real ``generate_reply()``: the agent's ``@track_messages`` ``llm_node``
yields a few messages with markers, livekit synthesizes them (``SineTTS``), forwards the
audio and plays it in real time on the native source. A batch is one reply in every
session of a group at once; batches run one at a time, alternating between the groups
(a b b a), and each is charged the CPU time of the event-loop thread
(``time.thread_time()``: livekit's Python side and the tracker run there; the native
audio threads are left out, which makes the ratio stricter) from the replies' start until
they are done and their events delivered, divided by the seconds of audio the sinks
reported played. Each round gives the ratio tracked / untracked of its median batches.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from dataclasses import dataclass
from typing import Any

import playback_hooks as ph

from .common import (
    CHAIN_NAMES,
    Chain,
    ChainKind,
    ProbedRoomOutput,
    ReplyAgent,
    ratio,
    ratio_target,
    round_table,
    spread,
    start_chain,
)

TITLE = "CPU cost of the tracker, all in, per second of audio (whole sessions)"
KINDS: tuple[ChainKind, ...] = ("roomio", "bare")
SETTLE_S = 0.05  # after the replies are done: their last events are delivered on later iterations


@dataclass(frozen=True)
class Sizes:
    """How much one run measures."""

    rounds: int
    sessions: int  # per group: the sessions that play a batch of replies together
    batches: int  # per round, group and chain
    messages: int  # per reply
    text: str  # of each message, formatted with reply= and part=


SENTENCE = "Reply {reply}, part {part}: about as long as a spoken sentence."
FULL = Sizes(rounds=5, sessions=3, batches=3, messages=1, text=SENTENCE)
QUICK = Sizes(rounds=2, sessions=1, batches=1, messages=2, text="Hi {part}.")


async def _batch(chains: tuple[Chain, ...]) -> tuple[float, float]:
    """One reply in each session at once; return (loop-thread CPU s, seconds of audio)."""
    sinks: list[ProbedRoomOutput] = []
    for c in chains:
        assert isinstance(c.sink, ProbedRoomOutput)
        sinks.append(c.sink)
    marks = [len(s.positions) for s in sinks]
    # every batch starts from the same collector state: the collections its own
    # allocations cause are charged to it, not a full one that earlier batches built up
    gc.collect()
    c0 = time.thread_time()
    await asyncio.gather(*(c.session.generate_reply() for c in chains))
    await asyncio.sleep(SETTLE_S)
    cpu = time.thread_time() - c0
    played = sum(sum(s.positions[m:]) for s, m in zip(sinks, marks, strict=True))
    return cpu, played


async def run(sizes: Sizes) -> dict[str, Any]:
    """Play the speeches and return CPU per second of audio (see the module docstring)."""
    groups: dict[ChainKind, tuple[tuple[Chain, ...], tuple[Chain, ...]]] = {}
    for kind in KINDS:
        made: list[tuple[Chain, ...]] = []
        for _ in range(2):
            made.append(
                tuple(
                    [
                        await start_chain(
                            ReplyAgent(sizes.messages, sizes.text), kind=kind, tracked=False
                        )
                        for _ in range(sizes.sessions)
                    ]
                )
            )
        groups[kind] = (made[0], made[1])
    counts = {"started": 0, "finished": 0}

    def count(sender: Any, *, event: Any, **_: Any) -> None:
        counts["started" if isinstance(event, ph.MessagePlaybackStarted) else "finished"] += 1

    ph.message_playback_started.connect(count, weak=False)
    ph.message_playback_finished.connect(count, weak=False)
    rounds: dict[ChainKind, list[dict[str, list[float]]]] = {kind: [] for kind in KINDS}
    audio = {"tracked": 0.0, "untracked": 0.0}
    t0 = time.perf_counter()
    try:
        for r in range(-1, sizes.rounds):  # round -1 warms every path up, untracked
            trackers: list[ph.PlaybackTracker] = []
            tracked = {kind: pair[r % 2] for kind, pair in groups.items()}
            if r >= 0:
                trackers = [ph.attach(c.session) for group in tracked.values() for c in group]
            gc.collect()
            per_s: dict[ChainKind, dict[str, list[float]]] = {
                kind: {"tracked": [], "untracked": []} for kind in KINDS
            }
            for i in range(sizes.batches if r >= 0 else 1):
                for kind, pair in groups.items():
                    for group in pair if (i + r) % 2 == 0 else pair[::-1]:
                        cpu, played = await _batch(group)
                        side = "tracked" if r >= 0 and group is tracked[kind] else "untracked"
                        if r >= 0 and played > 0:
                            per_s[kind][side].append(cpu / played)
                            audio[side] += played
            for tracker in trackers:
                await tracker.aclose()
            if r >= 0:
                for kind in KINDS:
                    rounds[kind].append(per_s[kind])
        wall = time.perf_counter() - t0
    finally:
        ph.message_playback_started.disconnect(count)
        ph.message_playback_finished.disconnect(count)
        for pair in groups.values():
            for group in pair:
                for chain in group:
                    await chain.aclose()

    expected = sizes.rounds * sizes.batches * sizes.sessions * sizes.messages * len(KINDS)
    results: dict[str, Any] = {
        "wall_s": wall,
        "sessions_per_batch": sizes.sessions,
        "messages_per_speech": sizes.messages,
        "audio_s": audio,
        "events": counts,
        "expected_events_each": expected,
        "exactly_counted": counts["started"] == counts["finished"] == expected,
    }
    for kind in KINDS:
        per_round: list[dict[str, Any]] = []
        for coll in rounds[kind]:
            a = statistics.median(coll["untracked"])
            b = statistics.median(coll["tracked"])
            per_round.append(
                {
                    "batches": len(coll["untracked"]),
                    "cpu_ms_per_audio_s": {"untracked": a * 1000, "tracked": b * 1000},
                    "ratio": ratio(b, a),
                }
            )
        all_a = [v for coll in rounds[kind] for v in coll["untracked"]]
        all_b = [v for coll in rounds[kind] for v in coll["tracked"]]
        results[kind] = {
            "chain": CHAIN_NAMES[kind],
            "rounds": per_round,
            "ratio": spread([r["ratio"] for r in per_round]),
            "cpu_ms_per_audio_s": {
                "untracked": statistics.median(all_a) * 1000,
                "tracked": statistics.median(all_b) * 1000,
            },
            "batches_each": len(all_a),
        }
    return results


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """All-in CPU per second of audio, tracked / untracked, in both chains."""
    return [
        ratio_target(
            f"all-in CPU per second of audio, tracked / untracked, {res[kind]['chain']}",
            1.02,
            res[kind]["ratio"]["rounds"],
        )
        for kind in KINDS
    ]


def report(res: dict[str, Any]) -> list[str]:
    """The section's Markdown lines."""
    lines = [
        "Event-loop thread CPU per second of audio played, ms (median batch: "
        + (
            "one session playing"
            if res["sessions_per_batch"] == 1
            else f"{res['sessions_per_batch']} sessions playing together"
        )
        + f" a {res['messages_per_speech']}-message reply); per-round ratios below.",
        "",
        "| chain | untracked | tracked | added | ratio | batches per side |",
        "|---|---|---|---|---|---|",
    ]
    for kind in KINDS:
        c = res[kind]
        m = c["cpu_ms_per_audio_s"]
        lines.append(
            f"| {c['chain']} | {m['untracked']:.2f} | {m['tracked']:.2f} | "
            f"{m['tracked'] - m['untracked']:.2f} | {ratio(m['tracked'], m['untracked']):.3f} | "
            f"{c['batches_each']} |"
        )
    lines += round_table(res, KINDS, "ratio", "ratio")
    ev = res["events"]
    lines += [
        "",
        f"{res['audio_s']['tracked']:.1f} s of audio played tracked, "
        f"{res['audio_s']['untracked']:.1f} s untracked; the trackers delivered "
        f"{ev['started']} started and {ev['finished']} finished events "
        f"(expected {res['expected_events_each']} of each).",
    ]
    return lines
