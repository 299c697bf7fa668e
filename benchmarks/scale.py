"""Benchmark 4: many sessions at once, memory per session, and one very long session.

- Concurrency: ``sessions`` real ``AgentSession``s in one process, all at once, each playing
  ``speeches`` x ``per_speech`` messages on a time-compressed ``SimulatedSink``. Rounds
  without and with trackers alternate; an event-loop lag probe runs through each round.
  With trackers, every started and finished event must arrive exactly once.
- Memory (tracemalloc, a separate round with trackers): traced memory per session once
  every session has played its messages, and the part of it allocated by playback_hooks.
- Long session: ``long_messages`` messages through one session's tracker. Frames, flushes
  and the sink's playback events follow livekit's order (capture inside the speech's
  context, one flush per segment, speech marked done after its playout) but come from the
  benchmark rather than from livekit's LLM/TTS pipeline, so 100,000 messages take seconds.
  Traced memory is compared after a warm-up and at the end, and the tracker's per-speech
  containers must be empty.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import statistics
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Any

from livekit.agents import Agent, AgentSession, ModelSettings, llm
from livekit.agents.types import FlushSentinel

import playback_hooks as ph
from playback_hooks._ledger import ledger_for
from playback_hooks.testing import ScriptedLLM, SimulatedSink, SineTTS

from .common import (
    CountingSink,
    LagMonitor,
    end_speech,
    in_speech,
    new_speech,
    pcm_frame,
    percentile,
)

PACKAGE_DIR = str(Path(ph.__file__).parent)
# the simulated sink keeps every segment it played: its memory is the test kit's, not the
# tracker's
TESTING_KIT = str(Path(ph.__file__).parent / "testing.py")


def _package_bytes(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes still allocated from playback_hooks' code, the simulated sink excluded."""
    return sum(
        stat.size
        for stat in snapshot.statistics("filename")
        if stat.traceback[0].filename.startswith(PACKAGE_DIR)
        and stat.traceback[0].filename != TESTING_KIT
    )


class ScaleAgent(Agent):
    """Each reply is one speech of ``per_speech`` short messages with markers."""

    def __init__(self, per_speech: int) -> None:
        super().__init__(instructions="benchmark agent")
        self._per_speech = per_speech
        self._speech = 0

    @ph.track_messages
    async def llm_node(
        self, chat_ctx: llm.ChatContext, tools: list[llm.Tool], model_settings: ModelSettings
    ) -> AsyncIterable[str | FlushSentinel]:
        s = self._speech
        self._speech += 1
        for k in range(self._per_speech):
            yield ph.MessageBoundary(f"s{s}m{k}")
            yield f"Msg {k}."


class _Played:
    """One session of a round, after its messages played."""

    def __init__(
        self, session: AgentSession[Any], sink: SimulatedSink, tracker: ph.PlaybackTracker | None
    ) -> None:
        self.session = session
        self.sink = sink
        self.tracker = tracker


async def _start_one(tracked: bool, per_speech: int, speed: float) -> _Played:
    sink = SimulatedSink(speed=speed)
    session: AgentSession[Any] = AgentSession(
        llm=ScriptedLLM([]), tts=SineTTS(seconds_per_char=0.01, latency=0.0)
    )
    session.output.audio = sink
    await session.start(ScaleAgent(per_speech), record=False)
    tracker = ph.attach(session) if tracked else None
    return _Played(session, sink, tracker)


async def _play(p: _Played, speeches: int, per_speech: int) -> None:
    for _ in range(speeches):
        await p.session.generate_reply()
    if p.tracker is not None:
        await p.tracker.wait_for(f"s{speeches - 1}m{per_speech - 1}", "finished", timeout=60)


async def _close(played: list[_Played]) -> None:
    for p in played:
        if p.tracker is not None:
            await p.tracker.aclose()
        await p.session.aclose()
        await p.sink.aclose()


def _tracker_state(tracker: ph.PlaybackTracker) -> dict[str, int]:
    """Sizes of the tracker's state (per-speech ones must be empty between speeches)."""
    return dataclasses.asdict(tracker.stats())


def _idle(state: dict[str, int]) -> bool:
    return state["speeches"] == state["unreleased_messages"] == state["open_segments"] == 0


async def _round(
    *, tracked: bool, sessions: int, speeches: int, per_speech: int, speed: float
) -> dict[str, Any]:
    counts: Counter[tuple[int, str, str]] = Counter()

    def count(sender: Any, *, event: Any, **_: Any) -> None:
        kind = "started" if isinstance(event, ph.MessagePlaybackStarted) else "finished"
        counts[(id(sender), event.message_id, kind)] += 1

    ph.message_playback_started.connect(count, weak=False)
    ph.message_playback_finished.connect(count, weak=False)
    # sessions start first (livekit's start is heavy); the lag probe covers the playing
    played = await asyncio.gather(
        *(_start_one(tracked, per_speech, speed) for _ in range(sessions))
    )
    gc.collect()
    monitor = LagMonitor()
    lag_task = asyncio.ensure_future(monitor.run())
    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(_play(p, speeches, per_speech) for p in played))
        wall = time.perf_counter() - t0
    finally:
        monitor.stop()
        await lag_task
        ph.message_playback_started.disconnect(count)
        ph.message_playback_finished.disconnect(count)
    messages = speeches * per_speech
    segments_ok = all(len(p.sink.segments) == messages for p in played)
    result: dict[str, Any] = {
        "tracked": tracked,
        "wall_s": wall,
        "lag_p50_ms": percentile(monitor.samples, 50) * 1000,
        "lag_p99_ms": percentile(monitor.samples, 99) * 1000,
        "lag_samples": len(monitor.samples),
        "all_segments_played": segments_ok,
    }
    if tracked:
        expected = {
            (id(p.session), f"s{s}m{k}", kind)
            for p in played
            for s in range(speeches)
            for k in range(per_speech)
            for kind in ("started", "finished")
        }
        result["events"] = sum(counts.values())
        result["expected_events"] = len(expected)
        result["exactly_once"] = set(counts) == expected and all(n == 1 for n in counts.values())
        states = [_tracker_state(p.tracker) for p in played if p.tracker is not None]
        result["per_speech_state_empty"] = all(
            s["speeches"] == s["unreleased_messages"] == s["open_segments"] == s["waiters"] == 0
            for s in states
        )
    await _close(played)
    return result


async def _memory_round(
    *, sessions: int, speeches: int, per_speech: int, speed: float
) -> dict[str, Any]:
    gc.collect()
    tracemalloc.start(1)
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        played = await asyncio.gather(
            *(_start_one(True, per_speech, speed) for _ in range(sessions))
        )
        await asyncio.gather(*(_play(p, speeches, per_speech) for p in played))
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    ours = _package_bytes(snapshot)
    await _close(played)
    return {
        "sessions": sessions,
        "bytes_per_session": (after - before) / sessions,
        "playback_hooks_bytes_per_session": ours / sessions,
    }


async def _long_session(*, messages: int, per_speech: int, warmup: int) -> dict[str, Any]:
    sink = CountingSink()
    session: AgentSession[Any] = AgentSession(llm=ScriptedLLM([]), tts=SineTTS())
    session.output.audio = sink
    agent = Agent(instructions="benchmark agent")
    await session.start(agent, record=False)
    tracker = ph.attach(session)
    out = session.output.audio
    assert out is not None
    frame = pcm_frame(0.005)
    delivered = Counter[str]()

    def count(sender: Any, *, event: Any, **_: Any) -> None:
        delivered[type(event).__name__] += 1

    ph.message_playback_started.connect(count, sender=session, weak=False)
    ph.message_playback_finished.connect(count, sender=session, weak=False)
    speeches = messages // per_speech
    warm_speeches = warmup // per_speech
    memory: dict[str, int] = {}
    gc.collect()
    tracemalloc.start(1)
    t0 = time.perf_counter()
    try:
        for s in range(speeches):
            if s == warm_speeches:
                gc.collect()
                memory["warm"] = tracemalloc.get_traced_memory()[0]
            # livekit's own record of the session's events grows with every speech, with or
            # without a tracker: left out, so that the growth measured is the tracker's
            handle = new_speech(session, recorded=False)
            ledger = ledger_for(handle)
            assert ledger is not None
            for k in range(per_speech):  # what @track_messages does in llm_node
                ledger.announce(handle, f"s{s}m{k}", {}, "llm", has_segment=True)
            with in_speech(handle):
                for _ in range(per_speech):
                    await out.capture_frame(frame)
                    await out.capture_frame(frame)
                    out.flush()
            end_speech(handle)
            await asyncio.sleep(0)
        for _ in range(3):
            await asyncio.sleep(0)
        wall = time.perf_counter() - t0
        gc.collect()
        memory["end"] = tracemalloc.get_traced_memory()[0]
        memory["package"] = _package_bytes(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()
        ph.message_playback_started.disconnect(count, sender=session)
        ph.message_playback_finished.disconnect(count, sender=session)
    state = _tracker_state(tracker)
    await tracker.aclose()
    await session.aclose()
    total = speeches * per_speech
    return {
        "messages": total,
        "wall_s": wall,
        "started_events": delivered["MessagePlaybackStarted"],
        "finished_events": delivered["MessagePlaybackFinished"],
        "all_delivered": delivered["MessagePlaybackStarted"] == total
        and delivered["MessagePlaybackFinished"] == total,
        "memory_after_warmup_bytes": memory.get("warm", memory["end"]),
        "memory_at_end_bytes": memory["end"],
        "growth_bytes": memory["end"] - memory.get("warm", memory["end"]),
        "warmup_messages": warm_speeches * per_speech,
        "playback_hooks_bytes_at_end": memory["package"],
        "tracker_state": state,
        "no_per_speech_state": state["speeches"]
        == state["unreleased_messages"]
        == state["open_segments"]
        == 0
        and state["waiters"] == state["handler_tasks"] == 0,
    }


async def run(
    *,
    sessions: int = 200,
    speeches: int = 4,
    per_speech: int = 5,
    speed: float = 10.0,
    rounds: int = 2,
    long_messages: int = 100_000,
) -> dict[str, Any]:
    """Run the concurrency rounds, the memory round and the long session."""
    rows = []
    for i in range(rounds):
        order = (False, True) if i % 2 == 0 else (True, False)
        for tracked in order:
            rows.append(
                await _round(
                    tracked=tracked,
                    sessions=sessions,
                    speeches=speeches,
                    per_speech=per_speech,
                    speed=speed,
                )
            )
    untracked = [r for r in rows if not r["tracked"]]
    tracked_rows = [r for r in rows if r["tracked"]]
    return {
        "sessions": sessions,
        "messages_per_session": speeches * per_speech,
        "rounds": rows,
        "lag_p99_ms_untracked": statistics.median(r["lag_p99_ms"] for r in untracked),
        "lag_p99_ms_tracked": statistics.median(r["lag_p99_ms"] for r in tracked_rows),
        "exactly_once": all(r["exactly_once"] for r in tracked_rows),
        "per_speech_state_empty": all(r["per_speech_state_empty"] for r in tracked_rows),
        "memory": await _memory_round(
            sessions=sessions, speeches=speeches, per_speech=per_speech, speed=speed
        ),
        "long_session": await _long_session(
            messages=long_messages, per_speech=per_speech, warmup=min(10_000, long_messages // 10)
        ),
    }
