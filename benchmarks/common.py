"""Shared pieces of the benchmarks: statistics, a counting sink, speech contexts."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents import AgentSession
from livekit.agents.voice.events import SpeechCreatedEvent
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities
from livekit.agents.voice.speech_handle import SpeechHandle

# Every private livekit name goes through playback_hooks._livekit, the benchmarks' too.
from playback_hooks import _livekit

SAMPLE_RATE = 24000


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def stats_ms(values_s: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / max of absolute values, seconds in, milliseconds out."""
    a = [abs(v) * 1000 for v in values_s]
    return {
        "n": len(a),
        "p50_ms": percentile(a, 50),
        "p99_ms": percentile(a, 99),
        "max_ms": max(a) if a else math.nan,
    }


def pcm_frame(seconds: float = 0.02, sample_rate: int = SAMPLE_RATE) -> rtc.AudioFrame:
    """A frame of a quiet sine tone (real PCM16 samples)."""
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    samples = (0.1 * 32767 * np.sin(2 * math.pi * 440 * t)).astype(np.int16)
    return rtc.AudioFrame(samples.tobytes(), sample_rate, 1, n)


class CountingSink(AudioOutput):
    """A sink that plays nothing: it counts frames and reports each segment at once.

    ``playback_started`` on a segment's first frame (``created_at`` = ``time.time()``;
    ``started_perf`` and ``started_cpu`` hold ``time.perf_counter()`` and
    ``time.process_time()`` of that moment), ``playback_finished`` on ``flush()``. Used
    where the benchmark measures the audio path, not a clock.
    """

    def __init__(self) -> None:
        super().__init__(
            label="CountingSink",
            capabilities=AudioOutputCapabilities(pause=True),
            sample_rate=SAMPLE_RATE,
        )
        self.frames = 0
        self.segments = 0
        self._open = False
        self._samples = 0
        self.started_perf = 0.0
        self.started_cpu = 0.0

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        self.frames += 1
        self._samples += frame.samples_per_channel
        if not self._open:
            self._open = True
            self.segments += 1
            self.started_cpu = time.process_time()
            self.started_perf = time.perf_counter()
            self.on_playback_started(created_at=time.time())

    def flush(self) -> None:
        super().flush()
        if self._open:
            self._open = False
            position, self._samples = self._samples / SAMPLE_RATE, 0
            self.on_playback_finished(playback_position=position, interrupted=False)

    def clear_buffer(self) -> None:
        pass

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass


class PassThrough(AudioOutput):
    """A transparent wrapper, like the transcript synchronizer RoomIO puts above its sink.

    Any wrapper above a bare sink makes livekit insert its ``_AudioSinkProxy`` in between,
    so this is the shape of a RoomIO chain before the tracker is added.
    """

    def __init__(self, sink: AudioOutput) -> None:
        super().__init__(
            label="PassThrough",
            capabilities=AudioOutputCapabilities(pause=True),
            next_in_chain=sink,
            sample_rate=sink.sample_rate,
        )

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        assert self.next_in_chain is not None
        await self.next_in_chain.capture_frame(frame)

    def flush(self) -> None:
        super().flush()
        assert self.next_in_chain is not None
        self.next_in_chain.flush()

    def clear_buffer(self) -> None:
        assert self.next_in_chain is not None
        self.next_in_chain.clear_buffer()


@contextlib.contextmanager
def in_speech(handle: SpeechHandle) -> Iterator[None]:
    """Run the block as livekit runs a speech's audio forwarding: with its speech context."""
    token = _livekit.speech_context.set(handle)
    try:
        yield
    finally:
        _livekit.speech_context.reset(token)


def new_speech(session: AgentSession[Any], *, recorded: bool = True) -> SpeechHandle:
    """A real ``SpeechHandle``, created and scheduled as livekit does for ``generate_reply()``.

    ``recorded=False``: the ``speech_created`` event reaches the session's listeners (the
    tracker) but not livekit's own record of the session's events (``AgentSession.emit``
    in 1.8.9 keeps every event it emits until the next ``start()``, for the session
    report), which would otherwise keep every speech of a long benchmark alive.
    """
    handle = SpeechHandle.create()
    event = SpeechCreatedEvent(speech_handle=handle, user_initiated=True, source="generate_reply")
    if recorded:
        session.emit("speech_created", event)
    else:
        super(AgentSession, session).emit("speech_created", event)
    _livekit.mark_scheduled(handle)
    return handle


def end_speech(handle: SpeechHandle) -> None:
    """Mark the speech done, as livekit does once its playout is over."""
    _livekit.mark_done(handle)


@dataclass
class LagMonitor:
    """Measures event-loop lag: how late a ``sleep(interval)`` wakes up, in seconds."""

    interval: float = 0.005

    def __post_init__(self) -> None:
        self.samples: list[float] = []
        self._stop = False

    async def run(self) -> None:
        """Sample until ``stop()``."""
        import asyncio

        while not self._stop:
            t0 = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, time.perf_counter() - t0 - self.interval))

    def stop(self) -> None:
        """Stop sampling after the current sleep."""
        self._stop = True
