"""Benchmark 2: what the tracker adds to the audio path, per 20 ms frame.

Two real, started ``AgentSession``s in one process, identical except that one has a
``PlaybackTracker`` attached: (a) ``session.output.audio`` is the bare sink, (b) it is the
tracker's wrapper above the same kind of sink. The same 20 ms PCM frames are pushed into
each session's ``output.audio`` as livekit's audio forwarding does — ``capture_frame``
for every frame, ``flush()`` per segment, inside the speech's context so the tracker binds
segments to messages as in production, and the sink reporting ``playback_started`` /
``playback_finished`` — in interleaved repetitions (a b b a …). Reported: the median time
per frame of each, and the median of the paired differences.

Two chain shapes. "sink": ``session.output.audio`` is a bare sink (the offline setup);
wrapping it makes livekit insert its ``_AudioSinkProxy`` below the tracker, and that cost
is counted as the tracker's. "wrapper > proxy > sink": a transparent wrapper already sits
above the sink (RoomIO's shape, where the transcript synchronizer wraps the room's audio
output), so the proxy exists with or without the tracker and only the tracker's own layer
differs. Event delivery to handlers is
deferred to a later loop iteration (benchmark 3), so it is not on this path.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from typing import Any

from livekit.agents import Agent, AgentSession

import playback_hooks as ph
from playback_hooks.testing import ScriptedLLM, SineTTS

from .common import CountingSink, PassThrough, end_speech, in_speech, new_speech, pcm_frame


async def _session(tracked: bool, wrapped: bool) -> tuple[AgentSession[Any], CountingSink]:
    sink = CountingSink()
    session: AgentSession[Any] = AgentSession(llm=ScriptedLLM([]), tts=SineTTS())
    session.output.audio = PassThrough(sink) if wrapped else sink
    await session.start(Agent(instructions="benchmark agent"), record=False)
    if tracked:
        ph.attach(session)
    return session, sink


async def _compare(
    *, wrapped: bool, repetitions: int, segments: int, frames_per_segment: int
) -> dict[str, Any]:
    bare, bare_sink = await _session(tracked=False, wrapped=wrapped)
    tracked, tracked_sink = await _session(tracked=True, wrapped=wrapped)
    frame = pcm_frame(0.02)
    per_rep = segments * frames_per_segment
    times: dict[bool, list[float]] = {False: [], True: []}

    async def push(session: AgentSession[Any]) -> float:
        out = session.output.audio
        assert out is not None
        handle = new_speech()
        with in_speech(handle):
            t0 = time.perf_counter_ns()
            for _ in range(segments):
                for _ in range(frames_per_segment):
                    await out.capture_frame(frame)
                out.flush()
            elapsed = time.perf_counter_ns() - t0
        end_speech(handle)
        await asyncio.sleep(0)  # let deferred deliveries and done callbacks run
        await asyncio.sleep(0)
        return elapsed / per_rep

    received = 0

    def count(sender: Any, **_: Any) -> None:
        nonlocal received
        received += 1

    ph.message_playback_started.connect(count, sender=tracked)
    try:
        for _ in range(max(1, repetitions // 20)):  # warm up both paths
            await push(bare)
            await push(tracked)
        await asyncio.sleep(0)
        received = 0
        gc.collect()
        for i in range(repetitions):
            order = (False, True) if i % 2 == 0 else (True, False)
            for is_tracked in order:
                times[is_tracked].append(await push(tracked if is_tracked else bare))
        await asyncio.sleep(0)
    finally:
        ph.message_playback_started.disconnect(count, sender=tracked)
        tracker = ph.tracker_for(tracked)
        if tracker is not None:
            await tracker.aclose()
        await bare.aclose()
        await tracked.aclose()

    diffs = [b - a for a, b in zip(times[False], times[True], strict=True)]
    bare_ns = statistics.median(times[False])
    tracked_ns = statistics.median(times[True])
    return {
        "chain": "wrapper > proxy > sink" if wrapped else "sink",
        "frames_each": per_rep * repetitions,
        "untracked_ns_per_frame": bare_ns,
        "tracked_ns_per_frame": tracked_ns,
        "added_ns_per_frame": statistics.median(diffs),
        "ratio": tracked_ns / bare_ns,
        "sink_frames_equal": bare_sink.frames == tracked_sink.frames,
        "started_events": received,
        "expected_started_events": repetitions * segments,
    }


async def run(
    *, repetitions: int = 400, segments: int = 5, frames_per_segment: int = 50
) -> dict[str, Any]:
    """Compare both chain shapes: a bare sink, and a sink below a wrapper (RoomIO's shape)."""
    kwargs = {
        "repetitions": repetitions,
        "segments": segments,
        "frames_per_segment": frames_per_segment,
    }
    return {
        "bare_sink": await _compare(wrapped=False, **kwargs),
        "wrapped_sink": await _compare(wrapped=True, **kwargs),
    }
