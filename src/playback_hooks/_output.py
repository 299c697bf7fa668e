"""The ``AudioOutput`` on top of the session's chain: feeds the ledger from the sink's reports."""

from __future__ import annotations

from collections import deque

from livekit import rtc
from livekit.agents.voice.io import AudioOutput, PlaybackFinishedEvent, PlaybackStartedEvent

from . import _livekit
from ._ledger import Ledger, Message
from ._log import guarded

__all__ = ["LABEL", "TrackingOutput"]

LABEL = "playback_hooks"
"""The output's ``label``, as livekit's chain dumps show it."""


class TrackingOutput(_livekit.TransparentOutput):
    """Forwards everything; tells the ledger which segment is which and what the sink said.

    Each segment it forwards is bound, on its first frame (or on a flush with no frame), to
    the next message of the speech whose task is capturing. Reports from below about a
    segment it never forwarded (one that went around it, e.g. of a speech that started
    before it was installed) are not passed up: livekit would count them twice.
    """

    def __init__(self, ledger: Ledger, below: AudioOutput) -> None:
        super().__init__(below, label=LABEL)
        self._ledger = ledger
        # segments handed below and not yet reported finished, oldest first; None stands for
        # a segment of a speech the ledger does not report
        self._segments: deque[Message | None] = deque()
        self._capturing: Message | None = None
        self._segment_open = False  # a frame of the current segment arrived
        self._counted = False  # the base class counted the current segment

    @property
    def open_segments(self) -> int:
        """Segments forwarded below whose end the sink has not reported yet."""
        return len(self._segments)

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        if self._segment_open:
            # the steady state: one attribute test, then the sink
            if not self._counted:
                self._counted = True
                await AudioOutput.capture_frame(self, frame)
            await self._below.capture_frame(frame)
            return
        self._segment_open = True
        msg = guarded(self._ledger.bind_segment, _livekit.current_speech(), has_audio=True)
        self._capturing = msg
        self._segments.append(msg)
        try:
            await self._below.capture_frame(frame)
        except BaseException:
            # The sink refused the segment's first frame, so it will never report this
            # segment: do not count it (livekit's wait_for_playout() would wait forever)
            # and end its message here.
            guarded(self._segment_refused, msg)
            raise
        # Counted once the sink accepted the frame, unlike the usual base-first order. The
        # base class (its bookkeeping only: the forwarding is done here) counts a segment on
        # its first frame, so later frames skip it.
        self._counted = True
        await AudioOutput.capture_frame(self, frame)

    def flush(self) -> None:
        AudioOutput.flush(self)
        if not self._segment_open:
            # a segment with no audio (interrupted before its first frame, or a TTS that
            # produced nothing): its message was never heard
            guarded(self._ledger.bind_segment, _livekit.current_speech(), has_audio=False)
        self._segment_open = False
        self._counted = False
        self._capturing = None
        self._below.flush()

    def _input_truncated(self) -> None:
        if self._capturing is not None:
            self._capturing.truncated = True

    def _below_started(self, ev: PlaybackStartedEvent) -> None:
        if not self._segments:
            return  # not a segment of ours
        super()._below_started(ev)
        msg = self._segments[0]
        if msg is not None:
            guarded(self._ledger.message_started, msg, ev.created_at)

    def _below_finished(self, ev: PlaybackFinishedEvent) -> None:
        if not self._segments:
            return  # not a segment of ours
        msg = self._segments.popleft()
        super()._below_finished(ev)
        if msg is not None:
            guarded(
                self._ledger.message_finished,
                msg,
                ev.playback_position,
                interrupted=ev.interrupted,
                transcript=ev.synchronized_transcript,
            )

    def _below_cancelled(self, ev: PlaybackFinishedEvent) -> None:
        if not self._segments:
            return
        msg = self._segments.popleft()
        super()._below_cancelled(ev)
        if msg is not None:
            guarded(self._ledger.message_finished, msg, 0.0, interrupted=True, transcript=None)

    def _below_progressed(self, ev: object) -> None:
        if self._segments:
            super()._below_progressed(ev)

    def _segment_refused(self, msg: Message | None) -> None:
        if self._segments and self._segments[-1] is msg:
            self._segments.pop()
        self._capturing = None
        if msg is not None:
            self._ledger.message_finished(msg, 0.0, interrupted=True, transcript=None)
