"""Benchmark 3: from the sink's ``playback_started`` to the handler's first line.

A real, started ``AgentSession`` with a tracker over a sink that reports
``playback_started`` on a segment's first frame and records ``time.perf_counter()`` at
that moment. Frames are pushed in a speech's context as livekit's audio forwarding does;
the measured handler (``@on_message_played``, sync or async) records ``perf_counter()``
as its first statement. It is connected after 0, 1 or 10 other handlers of the same kind,
which run before it, so the figure is the latency of the last handler to run.

Each sample also records the process's CPU time over the same interval: on a shared
machine the OS sometimes takes the CPU away for a few milliseconds, and a sample whose
wall time exceeds its CPU time by more than ``OFF_CPU_MS`` is counted as descheduled.
The wall-clock figures are reported as measured, descheduled samples included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from livekit.agents import Agent, AgentSession

import playback_hooks as ph
from playback_hooks.testing import ScriptedLLM, SineTTS

from .common import CountingSink, end_speech, in_speech, new_speech, pcm_frame, percentile

OFF_CPU_MS = 0.5


async def _measure(
    session: AgentSession[Any], sink: CountingSink, *, is_async: bool, others: int, samples: int
) -> dict[str, Any]:
    out = session.output.audio
    assert out is not None
    loop = asyncio.get_running_loop()
    frame = pcm_frame(0.02)
    latencies: list[float] = []
    cpu: list[float] = []
    entered: asyncio.Future[tuple[float, float]] = loop.create_future()
    handlers: list[Callable[..., Any]] = []

    if is_async:
        for _ in range(others):

            async def other_async(event: ph.MessagePlaybackStarted) -> None:
                pass

            handlers.append(ph.on_message_played(session=session)(other_async))

        async def probe_async(event: ph.MessagePlaybackStarted) -> None:
            t = time.perf_counter(), time.process_time()
            if not entered.done():
                entered.set_result(t)

        handlers.append(ph.on_message_played(session=session)(probe_async))
    else:
        for _ in range(others):

            def other_sync(event: ph.MessagePlaybackStarted) -> None:
                pass

            handlers.append(ph.on_message_played(session=session)(other_sync))

        def probe_sync(event: ph.MessagePlaybackStarted) -> None:
            t = time.perf_counter(), time.process_time()
            if not entered.done():
                entered.set_result(t)

        handlers.append(ph.on_message_played(session=session)(probe_sync))

    try:
        for _ in range(samples):
            handle = new_speech(session)
            with in_speech(handle):
                entered = loop.create_future()
                await out.capture_frame(frame)
                t_sink, cpu_sink = sink.started_perf, sink.started_cpu
                t_entry, cpu_entry = await asyncio.wait_for(entered, 5)
                latencies.append(t_entry - t_sink)
                cpu.append(cpu_entry - cpu_sink)
                await out.capture_frame(frame)
                out.flush()
            end_speech(handle)
            await asyncio.sleep(0)
    finally:
        for h in handlers:
            ph.disconnect(h)
    ms = [v * 1000 for v in latencies]
    cpu_ms = [v * 1000 for v in cpu]
    return {
        "kind": "async" if is_async else "sync",
        "other_handlers": others,
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "cpu_p99_ms": percentile(cpu_ms, 99),
        "descheduled": sum(1 for w, c in zip(ms, cpu_ms, strict=True) if w - c > OFF_CPU_MS),
    }


async def run(*, samples: int = 500) -> dict[str, Any]:
    """Measure each configuration ``samples`` times."""
    sink = CountingSink()
    session: AgentSession[Any] = AgentSession(llm=ScriptedLLM([]), tts=SineTTS())
    session.output.audio = sink
    await session.start(Agent(instructions="benchmark agent"), record=False)
    tracker = ph.attach(session)
    rows = []
    try:
        await _measure(session, sink, is_async=False, others=0, samples=max(1, samples // 10))
        for is_async in (False, True):
            for others in (0, 1, 10):
                rows.append(
                    await _measure(session, sink, is_async=is_async, others=others, samples=samples)
                )
    finally:
        await tracker.aclose()
        await session.aclose()
    return {"rows": rows}
