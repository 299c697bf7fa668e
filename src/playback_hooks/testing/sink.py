"""A sink that plays audio on a real clock, reporting like RoomIO's audio output."""

from __future__ import annotations

import asyncio
import contextlib
import time
import wave
from dataclasses import dataclass, field

from livekit import rtc
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities

from .audio import SAMPLE_RATE

__all__ = ["SimulatedSink", "SinkSegment"]


@dataclass
class SinkSegment:
    """What the simulated sink did with one segment.

    Attributes:
        started_at: The ``created_at`` it reported in ``playback_started`` (None if no frame
            arrived).
        captured: Seconds of audio it received.
        position: Seconds it played before the segment ended.
        interrupted: Whether ``clear_buffer()`` ended it.
        finished_at: When it reported ``playback_finished``.
    """

    started_at: float | None = None
    captured: float = 0.0
    position: float = 0.0
    interrupted: bool = False
    finished_at: float | None = None
    frames: list[rtc.AudioFrame] = field(default_factory=list, repr=False)
    flushed: bool = field(default=False, repr=False)
    cleared: bool = field(default=False, repr=False)


class SimulatedSink(AudioOutput):
    """A sink that plays audio on a real clock, like RoomIO's audio output.

    ``playback_started`` is reported when a segment's first frame is handed over (with that
    moment's ``time.time()`` as ``created_at``); one ``playback_finished`` per segment, with
    the seconds actually played, once all of it has played after ``flush()`` or at once on
    ``clear_buffer()``. It supports ``pause()``/``resume()``, keeps at most
    ``buffer_seconds`` of audio ahead of the play head (back-pressure, like
    ``rtc.AudioSource``) and can play faster than real time (``speed``) for long runs.

    Args:
        sample_rate: The rate it asks for (livekit resamples above it), None for any.
        speed: Seconds of audio played per second of wall time.
        buffer_seconds: How much audio ``capture_frame`` accepts ahead of the play head.
        record: Keep the frames, for ``write_wav()``.
    """

    def __init__(
        self,
        *,
        sample_rate: int | None = SAMPLE_RATE,
        speed: float = 1.0,
        buffer_seconds: float = 0.2,
        record: bool = False,
        label: str = "SimulatedSink",
    ) -> None:
        if speed <= 0:
            raise ValueError("SimulatedSink: speed must be > 0")
        super().__init__(
            label=label,
            capabilities=AudioOutputCapabilities(pause=True),
            sample_rate=sample_rate,
        )
        self._speed = speed
        self._buffer = buffer_seconds
        self._record = record
        self.segments: list[SinkSegment] = []
        """Every segment, in order (the last one may still be playing)."""
        self._current: SinkSegment | None = None
        self._queue: list[SinkSegment] = []
        self._position = 0.0  # play head within the segment at the front of the queue
        self._since = 0.0  # loop time the play head was last advanced
        self._paused = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # the play head -----------------------------------------------------------------------

    def _advance(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._queue and not self._paused:
            seg = self._queue[0]
            self._position = min(seg.captured, self._position + (now - self._since) * self._speed)
        self._since = now

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._play(), name="SimulatedSink")

    async def _play(self) -> None:
        while self._queue:
            self._advance()
            seg = self._queue[0]
            done = seg.cleared or (seg.flushed and self._position >= seg.captured - 1e-9)
            if done:
                self._finish(seg)
                continue
            self._wake.clear()
            timeout: float | None = None
            if not self._paused and self._position < seg.captured:
                timeout = (seg.captured - self._position) / self._speed
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _finish(self, seg: SinkSegment) -> None:
        self._queue.pop(0)
        seg.position = seg.captured if not seg.cleared else self._position
        seg.interrupted = seg.cleared
        seg.finished_at = time.time()
        self._position = 0.0
        if self._current is seg:
            self._current = None
        if seg.started_at is not None:
            self.on_playback_finished(playback_position=seg.position, interrupted=seg.interrupted)

    # AudioOutput --------------------------------------------------------------------------

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        """Queue a frame; the first of a segment reports ``playback_started``."""
        await super().capture_frame(frame)
        seg = self._current
        if seg is None:
            seg = self._current = SinkSegment()
            self.segments.append(seg)
            if not self._queue:
                self._position = 0.0
                self._since = asyncio.get_running_loop().time()
            self._queue.append(seg)
        first = seg.started_at is None
        seg.captured += frame.duration
        if self._record:
            seg.frames.append(frame)
        if first:
            seg.started_at = time.time()
            self.on_playback_started(created_at=seg.started_at)
        self._ensure_task()
        self._wake.set()
        # back-pressure: never more than buffer_seconds ahead of the play head
        while not seg.cleared and self._queue and self._queue[0] is seg:
            self._advance()
            ahead = seg.captured - self._position - self._buffer
            if ahead <= 0 or self._paused:
                break
            await asyncio.sleep(ahead / self._speed)

    def flush(self) -> None:
        """End the segment being captured; it finishes once all of it has played."""
        super().flush()
        if self._current is not None:
            self._current.flushed = True
            self._current = None
            self._wake.set()

    def clear_buffer(self) -> None:
        """Stop playing at once (an interruption): every queued segment ends interrupted."""
        self._advance()
        for seg in self._queue:
            seg.cleared = True
        self._current = None
        self._wake.set()

    def pause(self) -> None:
        """Hold the play head."""
        self._advance()
        self._paused = True
        self._wake.set()

    def resume(self) -> None:
        """Move the play head again."""
        self._advance()
        self._paused = False
        self._wake.set()

    async def aclose(self) -> None:
        """Stop the play-out task."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def write_wav(self, path: str) -> float:
        """Write what was played (``record=True``), segment after segment; return seconds."""
        if not self._record:
            raise RuntimeError("SimulatedSink.write_wav() needs record=True")
        rate = self.sample_rate or SAMPLE_RATE
        pcm = bytearray()
        for seg in self.segments:
            want = round(seg.position * rate) * 2
            data = b"".join(bytes(f.data.cast("B")) for f in seg.frames)
            pcm += data[:want]
        with wave.open(path, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            wav.writeframes(bytes(pcm))
        return len(pcm) / 2 / rate
