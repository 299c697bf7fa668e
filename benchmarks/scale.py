"""Benchmark 3: many concurrent sessions in one process, with and without trackers.

Each round starts ``sessions`` real ``AgentSession``s at once, all over livekit's
transcription synchronizer, and has every one of them play ``speeches`` replies of
``messages`` short marked messages at the same time (the full pipeline: ``llm_node``,
TTS, the synchronizer, the sink), while a probe measures event-loop lag (how late a 5 ms
sleep wakes up). Rounds without and with trackers alternate in pairs (a b, b a, ...);
each pair gives the ratio of the two rounds' p99 lag. With trackers, every started and
finished event must arrive exactly once.

The sink under the synchronizer is the simulated one (``SimulatedSink``, real time), not
RoomIO's participant output: every native ``rtc.AudioSource`` call is a request to
livekit's native runtime, and at this scale those alone saturate the loop (measured by
``room_probe``: one untracked round of RoomIO's chain at ``room_sessions``).

Memory: one more pair of rounds of ``memory_sessions`` sessions under ``tracemalloc``
(traced memory once every session has played, sessions still open), giving memory per
session tracked - untracked.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass
from typing import Any

import playback_hooks as ph
from playback_hooks.testing import SineTTS

from .common import (
    Chain,
    LagMonitor,
    ReplyAgent,
    SinkKind,
    check_target,
    percentile,
    ratio,
    ratio_target,
    spread,
    start_chain,
)

TITLE = "Scale: concurrent sessions in one process"
TEXT = "Msg {part}."
START_BATCH = 50  # sessions started concurrently at a time


@dataclass(frozen=True)
class Sizes:
    """How much one run measures."""

    sessions: int
    pairs: int
    speeches: int  # per session and round
    messages: int  # per speech
    memory_sessions: int
    room_sessions: int  # 0: no RoomIO-chain probe


FULL = Sizes(sessions=500, pairs=4, speeches=1, messages=2, memory_sessions=200, room_sessions=100)
QUICK = Sizes(sessions=3, pairs=1, speeches=1, messages=2, memory_sessions=2, room_sessions=2)


async def _start(n: int, *, tracked: bool, sink: SinkKind, messages: int) -> list[Chain]:
    chains: list[Chain] = []
    for i in range(0, n, START_BATCH):
        chains += await asyncio.gather(
            *(
                start_chain(
                    ReplyAgent(messages, TEXT),
                    kind="roomio",
                    tracked=tracked,
                    sink=sink,
                    tts=SineTTS(latency=0.0),
                )
                for _ in range(min(START_BATCH, n - i))
            )
        )
    return chains


async def _play(chain: Chain, speeches: int) -> None:
    for _ in range(speeches):
        await chain.session.generate_reply()


async def _close(chains: list[Chain]) -> None:
    for chain in chains:
        await chain.aclose()


async def _round(
    *, tracked: bool, sessions: int, speeches: int, messages: int, sink: SinkKind = "simulated"
) -> dict[str, Any]:
    counts: Counter[tuple[int, str, str]] = Counter()

    def count(sender: Any, *, event: Any, **_: Any) -> None:
        kind = "started" if isinstance(event, ph.MessagePlaybackStarted) else "finished"
        counts[(id(sender), event.message_id, kind)] += 1

    ph.message_playback_started.connect(count, weak=False)
    ph.message_playback_finished.connect(count, weak=False)
    try:
        # sessions start first (livekit's start is heavy); the lag probe covers the playing
        chains = await _start(sessions, tracked=tracked, sink=sink, messages=messages)
        gc.collect()
        monitor = LagMonitor()
        probe = asyncio.ensure_future(monitor.run())
        c0, t0 = time.process_time(), time.perf_counter()
        try:
            await asyncio.gather(*(_play(c, speeches) for c in chains))
            # the last events are delivered on a later loop iteration
            await asyncio.sleep(0.05)
        finally:
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            monitor.stop()
            await probe
    finally:
        ph.message_playback_started.disconnect(count)
        ph.message_playback_finished.disconnect(count)
    result: dict[str, Any] = {
        "tracked": tracked,
        "sessions": sessions,
        "wall_s": wall,
        "process_cpu_s": cpu,
        "lag_p50_ms": percentile(monitor.samples, 50) * 1000,
        "lag_p99_ms": percentile(monitor.samples, 99) * 1000,
        "lag_samples": len(monitor.samples),
        "all_played": all(
            isinstance(c.session.current_agent, ReplyAgent)
            and c.session.current_agent.replies == speeches
            for c in chains
        ),
    }
    if tracked:
        expected = {
            (id(c.session), f"r{s}m{k}", kind)
            for c in chains
            for s in range(speeches)
            for k in range(messages)
            for kind in ("started", "finished")
        }
        result["events"] = sum(counts.values())
        result["expected_events"] = len(expected)
        result["exactly_once"] = set(counts) == expected and all(n == 1 for n in counts.values())
        states = [c.tracker.stats() for c in chains if c.tracker is not None]
        result["per_speech_state_empty"] = all(
            s.speeches == s.unreleased_messages == s.open_segments == s.waiters == 0 for s in states
        )
    await _close(chains)
    return result


async def _memory_round(*, tracked: bool, sessions: int, speeches: int, messages: int) -> float:
    """Traced bytes per session once every session has played (sessions still open)."""
    gc.collect()
    tracemalloc.start(1)
    try:
        before = tracemalloc.get_traced_memory()[0]
        chains = await _start(sessions, tracked=tracked, sink="simulated", messages=messages)
        await asyncio.gather(*(_play(c, speeches) for c in chains))
        await asyncio.sleep(0.05)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    await _close(chains)
    return (after - before) / sessions


async def run(sizes: Sizes) -> dict[str, Any]:
    """The lag rounds, the memory rounds and the RoomIO-chain probe."""
    rounds: list[dict[str, Any]] = []
    for i in range(sizes.pairs):
        order = (False, True) if i % 2 == 0 else (True, False)
        pair = {}
        for tracked in order:
            pair[tracked] = await _round(
                tracked=tracked,
                sessions=sizes.sessions,
                speeches=sizes.speeches,
                messages=sizes.messages,
            )
        rounds.append(
            {
                "untracked": pair[False],
                "tracked": pair[True],
                "lag_p99_ratio": ratio(pair[True]["lag_p99_ms"], pair[False]["lag_p99_ms"]),
                "cpu_ratio": ratio(pair[True]["process_cpu_s"], pair[False]["process_cpu_s"]),
            }
        )
    memory = {}
    for tracked in (False, True):
        memory["tracked" if tracked else "untracked"] = await _memory_round(
            tracked=tracked,
            sessions=sizes.memory_sessions,
            speeches=sizes.speeches,
            messages=sizes.messages,
        )
    room = None
    if sizes.room_sessions:
        room = await _round(
            tracked=False,
            sessions=sizes.room_sessions,
            speeches=sizes.speeches,
            messages=sizes.messages,
            sink="room",
        )
    tracked_rounds = [p["tracked"] for p in rounds]
    untracked_rounds = [p["untracked"] for p in rounds]
    return {
        "sessions": sizes.sessions,
        "messages_per_session": sizes.speeches * sizes.messages,
        "pairs": rounds,
        "lag_p99_ratio": spread([p["lag_p99_ratio"] for p in rounds]),
        "cpu_ratio": spread([p["cpu_ratio"] for p in rounds]),
        "lag_p99_ms": {
            "untracked": statistics.median(r["lag_p99_ms"] for r in untracked_rounds),
            "tracked": statistics.median(r["lag_p99_ms"] for r in tracked_rounds),
        },
        "exactly_once": all(r["exactly_once"] for r in tracked_rounds),
        "all_played": all(r["all_played"] for p in rounds for r in (p["tracked"], p["untracked"])),
        "per_speech_state_empty": all(r["per_speech_state_empty"] for r in tracked_rounds),
        "memory": {
            "sessions": sizes.memory_sessions,
            "bytes_per_session": memory,
            "tracker_bytes_per_session": memory["tracked"] - memory["untracked"],
        },
        "room_probe": room,
    }


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Exactly once, and loop lag tracked / untracked."""
    n = res["sessions"]
    events = sum(p["tracked"]["events"] for p in res["pairs"])
    return [
        check_target(
            f"events delivered exactly once, {n} concurrent sessions",
            "every event, once",
            events,
            "events",
            res["exactly_once"] and res["all_played"] and res["per_speech_state_empty"],
        ),
        ratio_target(
            f"event-loop lag p99, {n} concurrent sessions, tracked / untracked",
            1.05,
            res["lag_p99_ratio"]["rounds"],
        ),
    ]


def report(res: dict[str, Any]) -> list[str]:
    """The section's Markdown lines."""
    lines = [
        f"{res['sessions']} sessions per round, {res['messages_per_session']} messages each, "
        "all playing at once; the synchronizer over the simulated sink.",
        "",
        "| pair | trackers | playing wall s | process CPU s | loop lag p50 ms | "
        "loop lag p99 ms | events | exactly once | p99 ratio | CPU ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, p in enumerate(res["pairs"], 1):
        for key in ("untracked", "tracked") if i % 2 else ("tracked", "untracked"):
            r = p[key]
            events = f"{r['events']:,} / {r['expected_events']:,}" if r["tracked"] else "—"
            once = ("yes" if r["exactly_once"] else "**no**") if r["tracked"] else "—"
            ratio_cells = (
                f"{p['lag_p99_ratio']:.3f} | {p['cpu_ratio']:.3f}" if key == "tracked" else " | "
            )
            lines.append(
                f"| {i} | {'yes' if r['tracked'] else 'no'} | {r['wall_s']:.1f} | "
                f"{r['process_cpu_s']:.1f} | {r['lag_p50_ms']:.1f} | {r['lag_p99_ms']:.1f} | "
                f"{events} | {once} | {ratio_cells} |"
            )
    mem = res["memory"]
    b = mem["bytes_per_session"]
    per_message = statistics.median(p["untracked"]["process_cpu_s"] for p in res["pairs"]) / (
        res["sessions"] * res["messages_per_session"]
    )
    lines += [
        "",
        f"- Untracked, the process spends {per_message * 1000:.1f} ms of CPU per message "
        "played (median round; livekit's pipeline, the synchronizer and the sink, with the "
        "messages all starting together), so one event loop plays at most about "
        f"{1 / per_message:,.0f} messages per second: {res['sessions']} "
        "sessions speaking at once are held (every event arrives) but the loop is saturated, "
        "which is what the lag figures show.",
        f"- Memory per session (tracemalloc, {mem['sessions']} sessions, after playing): "
        f"{b['untracked'] / 1024:,.1f} KiB untracked, {b['tracked'] / 1024:,.1f} KiB tracked; "
        f"tracked - untracked {mem['tracker_bytes_per_session'] / 1024:,.1f} KiB.",
    ]
    room = res["room_probe"]
    if room is not None:
        room_per_message = room["process_cpu_s"] / (room["sessions"] * res["messages_per_session"])
        lines.append(
            f"- RoomIO's chain (participant output on the native `rtc.AudioSource`), "
            f"{room['sessions']} sessions, untracked, same workload: playing took "
            f"{room['wall_s']:.1f} s wall and {room['process_cpu_s']:.1f} s process CPU "
            f"({room_per_message * 1000:.1f} ms per message), loop lag p50 "
            f"{room['lag_p50_ms']:.1f} ms, p99 {room['lag_p99_ms']:.1f} ms."
        )
    return lines
