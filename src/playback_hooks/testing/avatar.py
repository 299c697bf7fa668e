"""livekit's own avatar worker on one side of a ``RoomPair``, with a trivial video.

An avatar worker is livekit's ``DataStreamAudioReceiver`` (the agent's audio, from the
room) feeding livekit's ``AvatarRunner``, which asks a ``VideoGenerator`` for frames, plays
them through its ``rtc.AVSynchronizer`` into a real ``rtc.AudioSource`` and
``rtc.VideoSource`` (so audio plays on a real clock) and reports ``lk.playback_started`` /
``lk.playback_finished`` back to the agent. ``AvatarWorker`` builds exactly that, the way
livekit's avatar examples do, with ``StillVideoGenerator`` as the video: plain frames, and
an adjustable delay before each segment starts, like a renderer that needs time to begin.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from livekit import rtc
from livekit.agents.voice.avatar import (
    AudioSegmentEnd,
    AvatarOptions,
    AvatarRunner,
    DataStreamAudioReceiver,
    VideoGenerator,
)

from .audio import SAMPLE_RATE
from .room import LinkedRoom

__all__ = [
    "AvatarReport",
    "AvatarSegment",
    "AvatarWorker",
    "StillVideoGenerator",
    "default_avatar_options",
]


def default_avatar_options() -> AvatarOptions:
    """Small video (16x16 at 10 fps) and the offline models' audio (24 kHz mono)."""
    return AvatarOptions(
        video_width=16,
        video_height=16,
        video_fps=10.0,
        audio_sample_rate=SAMPLE_RATE,
        audio_channels=1,
    )


@dataclass(frozen=True)
class AvatarReport:
    """A report livekit's ``AvatarRunner`` made through the receiver, when it made it.

    Attributes:
        kind: ``"started"`` (sent as ``lk.playback_started``) or ``"finished"`` (sent as
            ``lk.playback_finished``).
        at: When the runner made it (``time.time()``), before the RPC left.
        playback_position: The position a finished report carries (0 for a start).
        interrupted: The ``interrupted`` flag a finished report carries.
    """

    kind: Literal["started", "finished"]
    at: float
    playback_position: float = 0.0
    interrupted: bool = False


@dataclass
class AvatarSegment:
    """What the avatar's video generator did with one segment of the agent's audio.

    Attributes:
        arrived_at: When its first audio frame reached the generator (``time.time()``).
        started_at: When its first frame was handed to the runner, ``start_delay`` after it
            arrived (the runner reports ``lk.playback_started`` once it has queued that
            frame for playback); None if it was cleared before.
        received: Seconds of its audio that arrived.
        released: Seconds of its audio handed to the runner.
        ended_at: When its end (``AudioSegmentEnd``) arrived, None if it never did.
        cleared_at: When ``lk.clear_buffer`` discarded what was left of it, else None.
        pcm: Its audio as it arrived (with ``record=True``), at the worker's sample rate.
    """

    arrived_at: float
    started_at: float | None = None
    received: float = 0.0
    released: float = 0.0
    ended_at: float | None = None
    cleared_at: float | None = None
    pcm: bytearray = field(default_factory=bytearray, repr=False)


class StillVideoGenerator(VideoGenerator):
    """A trivial ``VideoGenerator`` for ``AvatarRunner``: plain frames around the audio.

    While no audio waits it yields one still frame per video frame interval (the runner
    publishes its tracks on the first one). Audio frames are passed on with as many still
    frames as their duration calls for. The first frame of each segment is held until
    ``start_delay`` seconds after it arrived: the runner then starts playing the segment
    (and reports ``lk.playback_started``) that much later, like a renderer that takes time
    to begin. ``clear_buffer()`` drops everything not yet passed on.

    Args:
        options: The runner's options (its audio format and video size and rate); audio in
            another sample rate is resampled.
        start_delay: Seconds between the arrival of a segment's first frame and its start.
        record: Keep each segment's audio in ``AvatarSegment.pcm``.
    """

    def __init__(
        self, options: AvatarOptions, *, start_delay: float = 0.0, record: bool = False
    ) -> None:
        if start_delay < 0:
            raise ValueError("StillVideoGenerator: start_delay must be >= 0")
        self.options = options
        self.start_delay = start_delay
        self.segments: list[AvatarSegment] = []
        """Every segment that arrived, in order."""
        self._record = record
        self._frame = rtc.VideoFrame(
            options.video_width,
            options.video_height,
            rtc.VideoBufferType.RGBA,
            bytes(options.video_width * options.video_height * 4),
        )
        self._queue: asyncio.Queue[tuple[AvatarSegment | None, rtc.AudioFrame | AudioSegmentEnd]]
        self._queue = asyncio.Queue()
        self._arriving: AvatarSegment | None = None
        self._resampler: rtc.AudioResampler | None = None
        self._cleared = asyncio.Event()  # set by clear_buffer(), for a start being held
        self._clears = 0
        self._changed = asyncio.Event()  # a segment arrived, started, played on or ended

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        """Take the next frame of the agent's audio (or the end of a segment)."""
        seg = self._arriving
        if isinstance(frame, AudioSegmentEnd):
            if self._resampler is not None:
                for out in self._resampler.flush():
                    self._accept(seg, out)
                self._resampler = None
            if seg is not None:
                seg.ended_at = time.time()
                self._changed.set()
            self._arriving = None
            self._queue.put_nowait((seg, frame))
            return
        if seg is None:
            seg = self._arriving = AvatarSegment(arrived_at=time.time())
            self.segments.append(seg)
            self._changed.set()
        for out in self._resample(frame):
            self._accept(seg, out)

    def clear_buffer(self) -> None:
        """Drop the audio not passed on yet (``lk.clear_buffer``)."""
        now = time.time()
        while not self._queue.empty():
            seg, _ = self._queue.get_nowait()
            if seg is not None and seg.cleared_at is None:
                seg.cleared_at = now
        if self._arriving is not None and self._arriving.cleared_at is None:
            self._arriving.cleared_at = now
        self._arriving = None
        self._resampler = None
        self._clears += 1
        self._cleared.set()
        self._changed.set()

    async def wait_for_audio(
        self, segment: int, seconds: float = 0.0, *, timeout: float = 10.0
    ) -> AvatarSegment:
        """Wait until segment ``segment`` (0-based) started and ``seconds`` of it were handed
        to the runner; return it.

        Raises:
            TimeoutError: Not within ``timeout`` seconds (``asyncio.TimeoutError`` before
                Python 3.11).
        """

        def reached() -> bool:
            if len(self.segments) <= segment:
                return False
            seg = self.segments[segment]
            return seg.started_at is not None and seg.released >= seconds - 1e-9

        async def _wait() -> AvatarSegment:
            while not reached():
                self._changed.clear()
                await self._changed.wait()
            return self.segments[segment]

        return await asyncio.wait_for(_wait(), timeout)

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        interval = 1.0 / self.options.video_fps
        owed = 0.0  # seconds of audio passed on without their still frames yet
        while True:
            if self._queue.empty():
                try:
                    seg, item = await asyncio.wait_for(self._queue.get(), interval)
                except asyncio.TimeoutError:
                    yield self._frame  # idle
                    continue
            else:
                # no await between two frames of a segment: the runner is never left
                # waiting on the generator while audio is queued
                seg, item = self._queue.get_nowait()
            if isinstance(item, AudioSegmentEnd):
                yield item
                continue
            if seg is not None and seg.started_at is None:
                # hold the segment's first frame until start_delay after it arrived, with
                # still frames meanwhile, as a renderer getting ready would
                clears = self._clears
                while (wait := seg.arrived_at + self.start_delay - time.time()) > 0:
                    self._cleared.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._cleared.wait(), min(wait, interval))
                    if self._clears != clears or wait <= interval:
                        break
                    yield self._frame
                if self._clears != clears:
                    continue  # cleared while held: the frame is dropped with the rest
                seg.started_at = time.time()
                self._changed.set()
            owed += item.duration
            while owed > 0:
                yield self._frame
                owed -= interval
            if seg is not None:
                seg.released += item.duration
                self._changed.set()
            yield item

    def _resample(self, frame: rtc.AudioFrame) -> list[rtc.AudioFrame]:
        if frame.num_channels != self.options.audio_channels:
            raise ValueError(
                f"StillVideoGenerator: {frame.num_channels}-channel audio for a "
                f"{self.options.audio_channels}-channel avatar"
            )
        if frame.sample_rate == self.options.audio_sample_rate and self._resampler is None:
            return [frame]
        if self._resampler is None:
            self._resampler = rtc.AudioResampler(
                input_rate=frame.sample_rate,
                output_rate=self.options.audio_sample_rate,
                num_channels=frame.num_channels,
            )
        return self._resampler.push(frame)

    def _accept(self, seg: AvatarSegment | None, frame: rtc.AudioFrame) -> None:
        if seg is not None:
            seg.received += frame.duration
            if self._record:
                seg.pcm += bytes(frame.data.cast("B"))
        self._queue.put_nowait((seg, frame))


class _Receiver(DataStreamAudioReceiver):
    """livekit's receiver, keeping what the runner reports through it (and when)."""

    def __init__(
        self,
        room: rtc.Room,
        *,
        sender_identity: str | None,
        sends_playback_started: bool,
        reports: list[AvatarReport],
    ) -> None:
        super().__init__(room, sender_identity=sender_identity)
        self._sends_playback_started = sends_playback_started
        self._reports = reports

    def notify_playback_started(self) -> None:
        self._reports.append(AvatarReport("started", time.time()))
        if self._sends_playback_started:
            super().notify_playback_started()

    def notify_playback_finished(self, playback_position: float, interrupted: bool) -> None:
        self._reports.append(AvatarReport("finished", time.time(), playback_position, interrupted))
        super().notify_playback_finished(playback_position, interrupted)


class AvatarWorker:
    """livekit's avatar worker (``DataStreamAudioReceiver`` + ``AvatarRunner``) on a room.

    Start it before the agent session, as livekit's avatar plugins do (``await
    worker.start()`` returns once the agent is in the room), and close it after the session.
    Usable as an async context manager.

    Args:
        room: The avatar's side of a ``RoomPair`` (or any room livekit's code accepts).
        sender_identity: The agent's identity; None takes the first agent participant.
        start_delay: Seconds between the arrival of a segment's first frame and the moment
            the worker starts playing it (``StillVideoGenerator``).
        sends_playback_started: False for a worker that never sends
            ``lk.playback_started`` (its receiver drops the runner's starts).
        options: The runner's options; ``default_avatar_options()`` when None.
        record: Keep the audio each segment brought (``AvatarSegment.pcm``).
    """

    def __init__(
        self,
        room: LinkedRoom | rtc.Room,
        *,
        sender_identity: str | None = None,
        start_delay: float = 0.0,
        sends_playback_started: bool = True,
        options: AvatarOptions | None = None,
        record: bool = False,
    ) -> None:
        rtc_room = room.as_rtc_room() if isinstance(room, LinkedRoom) else room
        self.options = options or default_avatar_options()
        self.reports: list[AvatarReport] = []
        """Every report the runner made, in order (a start is kept even when
        ``sends_playback_started=False`` keeps it from being sent)."""
        self.receiver: DataStreamAudioReceiver = _Receiver(
            rtc_room,
            sender_identity=sender_identity,
            sends_playback_started=sends_playback_started,
            reports=self.reports,
        )
        """livekit's receiver of the agent's audio."""
        self.video = StillVideoGenerator(self.options, start_delay=start_delay, record=record)
        """The video generator, with what it did with each segment (``video.segments``)."""
        self.runner = AvatarRunner(
            rtc_room, audio_recv=self.receiver, video_gen=self.video, options=self.options
        )
        """livekit's runner."""
        self.clears: list[float] = []
        """When the receiver obeyed each ``lk.clear_buffer`` (``time.time()``)."""
        self.receiver.on("clear_buffer", self._on_clear)

    @property
    def segments(self) -> list[AvatarSegment]:
        """Every segment of audio that reached the worker, in order."""
        return self.video.segments

    async def wait_for_audio(
        self, segment: int, seconds: float = 0.0, *, timeout: float = 10.0
    ) -> AvatarSegment:
        """Wait until segment ``segment`` (0-based) started and ``seconds`` of it were handed
        to the runner; return it (``StillVideoGenerator.wait_for_audio()``)."""
        return await self.video.wait_for_audio(segment, seconds, timeout=timeout)

    async def start(self) -> None:
        """Start receiving; returns once the agent participant is in the room."""
        await self.runner.start()

    async def aclose(self) -> None:
        """Stop the runner and the receiver."""
        await self.runner.aclose()

    async def __aenter__(self) -> AvatarWorker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _on_clear(self) -> None:
        self.clears.append(time.time())
