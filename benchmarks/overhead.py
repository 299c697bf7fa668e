"""Benchmark 2: what the tracker adds to the audio path, per 20 ms frame.

Two real, started ``AgentSession``s in one process, identical except that one has a
``PlaybackTracker`` attached. The same 20 ms PCM frames are pushed into each session's
``output.audio`` as livekit's audio forwarding does: ``capture_frame`` for every frame and
``flush()`` per segment, inside the speech's context (so the tracker binds segments to
messages as in production), with the sink reporting ``playback_started`` on a segment's
first frame and ``playback_finished`` on its flush. Repetitions alternate (a b b a ...);
every figure is a median over repetitions.

Three costs are timed separately, because they scale differently:

- per frame: every ``capture_frame`` after a segment's first (the steady state);
- per segment: the first ``capture_frame`` plus the ``flush()``, which carry the binding
  of the segment to its message and the sink's two playback events through the chain;
- all in: everything, divided by the frames, for 1-second segments (50 frames).

Two chain shapes. "sink": ``session.output.audio`` is a bare sink (the offline setup);
wrapping it makes livekit insert its ``_AudioSinkProxy`` below the tracker, and that cost
is counted as the tracker's. "wrapper > proxy > sink": a transparent wrapper already sits
above the sink (RoomIO's shape, where the transcript synchronizer wraps the room's audio
output), so the proxy is there with or without the tracker and only the tracker's own
layer differs. Delivery of events to handlers happens on a later loop iteration
(benchmark 3), off this path.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from dataclasses import dataclass
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


@dataclass
class _Sample:
    """One repetition: ns per in-segment frame, ns per segment, ns per frame all in."""

    frame: float
    segment: float
    all_in: float


async def _compare(
    *, wrapped: bool, repetitions: int, segments: int, frames_per_segment: int
) -> dict[str, Any]:
    untracked, untracked_sink = await _session(tracked=False, wrapped=wrapped)
    tracked, tracked_sink = await _session(tracked=True, wrapped=wrapped)
    frame = pcm_frame(0.02)
    samples: dict[bool, list[_Sample]] = {False: [], True: []}
    clock = time.perf_counter_ns

    async def push(session: AgentSession[Any]) -> _Sample:
        handle = new_speech(session)
        out = session.output.audio
        assert out is not None
        steady = edges = 0
        with in_speech(handle):
            for _ in range(segments):
                t0 = clock()
                await out.capture_frame(frame)
                t1 = clock()
                for _ in range(frames_per_segment - 1):
                    await out.capture_frame(frame)
                t2 = clock()
                out.flush()
                t3 = clock()
                steady += t2 - t1
                edges += (t1 - t0) + (t3 - t2)
        end_speech(handle)
        await asyncio.sleep(0)  # let deferred deliveries and done callbacks run
        await asyncio.sleep(0)
        return _Sample(
            frame=steady / (segments * (frames_per_segment - 1)),
            segment=edges / segments,
            all_in=(steady + edges) / (segments * frames_per_segment),
        )

    received = 0

    def count(sender: Any, **_: Any) -> None:
        nonlocal received
        received += 1

    ph.message_playback_started.connect(count, sender=tracked)
    try:
        for _ in range(max(1, repetitions // 20)):  # warm up both paths
            await push(untracked)
            await push(tracked)
        await asyncio.sleep(0)
        received = 0
        gc.collect()
        for i in range(repetitions):
            order = (False, True) if i % 2 == 0 else (True, False)
            for is_tracked in order:
                samples[is_tracked].append(await push(tracked if is_tracked else untracked))
        await asyncio.sleep(0)
    finally:
        ph.message_playback_started.disconnect(count, sender=tracked)
        tracker = ph.tracker_for(tracked)
        if tracker is not None:
            await tracker.aclose()
        await untracked.aclose()
        await tracked.aclose()

    def medians(field: str) -> dict[str, float]:
        a = [getattr(s, field) for s in samples[False]]
        b = [getattr(s, field) for s in samples[True]]
        return {
            "untracked_ns": statistics.median(a),
            "tracked_ns": statistics.median(b),
            "added_ns": statistics.median(y - x for x, y in zip(a, b, strict=True)),
            "ratio": statistics.median(b) / statistics.median(a),
        }

    return {
        "chain": "wrapper > proxy > sink" if wrapped else "sink",
        "frames_each": segments * frames_per_segment * repetitions,
        "frames_per_segment": frames_per_segment,
        "per_frame": medians("frame"),
        "per_segment": medians("segment"),
        "all_in_per_frame": medians("all_in"),
        "sink_frames_equal": untracked_sink.frames == tracked_sink.frames,
        "started_events": received,
        "expected_started_events": repetitions * segments,
    }


async def run(
    *, repetitions: int = 400, segments: int = 5, frames_per_segment: int = 50
) -> dict[str, Any]:
    """Compare both chain shapes: a bare sink, and a sink below a wrapper (RoomIO's shape)."""
    results: dict[str, Any] = {}
    for key, wrapped in (("bare_sink", False), ("wrapped_sink", True)):
        results[key] = await _compare(
            wrapped=wrapped,
            repetitions=repetitions,
            segments=segments,
            frames_per_segment=frames_per_segment,
        )
    return results
