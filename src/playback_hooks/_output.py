"""The ``AudioOutput`` on top of the session's chain: feeds the ledger from the sink's reports."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from livekit import rtc
from livekit.agents.voice.io import (
    AudioOutput,
    PlaybackFinishedEvent,
    PlaybackProgressedEvent,
    PlaybackStartedEvent,
)

from . import _livekit
from ._ledger import Ledger, Message
from ._log import guarded
from ._progress import Playhead
from ._words import WordTap

__all__ = ["LABEL", "TrackingOutput"]

LABEL = "playback_hooks"
"""The output's ``label``, as livekit's chain dumps show it."""


class TrackingOutput(_livekit.TransparentOutput):
    """Forwards everything; tells the ledger which segment is which and what the sink said.

    Each segment it forwards is bound, on its first frame (or on a flush with no frame), to
    the next message of the speech whose task is capturing. Reports from below about a
    segment it never forwarded (one that went around it, e.g. of a speech that started
    before it was installed) are not passed up: livekit would count them twice.

    For live progress it keeps each segment's ``Playhead``: the sink's played runs, the
    output's pauses and the interruption, always (they are rare); the seconds of audio
    handed below, frame by frame, and the words shown (``words``), only for a segment whose
    progress ``wants_progress(self)`` said was wanted when its first frame came (the
    tracker puts the word tap in place then, the first time).
    """

    def __init__(
        self,
        ledger: Ledger,
        below: AudioOutput,
        *,
        wants_progress: Callable[[TrackingOutput], bool] | None = None,
    ) -> None:
        super().__init__(below, label=LABEL)
        self._ledger = ledger
        self._wants_progress = wants_progress
        self.words: WordTap | None = None
        """The tap under the chain's transcription synchronizer, once progress is wanted."""
        # the capturing segment's playhead while its frames are counted, else None
        self._pushing: Playhead | None = None
        self._paused_at: float | None = None  # the output is paused since then
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
            if self._pushing is not None:
                self._pushing.pushed += frame.duration
            return
        self._segment_open = True
        msg = guarded(self._bind_with_audio)
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
        if self._pushing is not None:
            self._pushing.pushed += frame.duration
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
        self._pushing = None
        self._below.flush()

    def _input_truncated(self) -> None:
        if self._capturing is not None:
            self._capturing.truncated = True

    def _below_started(self, ev: PlaybackStartedEvent) -> None:
        if not self._segments:
            if self.words is not None:
                self.words.follow(None)
            return  # not a segment of ours
        # The ledger first, then the report goes up to livekit: both queue their callbacks
        # for the next loop iteration, so the app's handlers are not behind livekit's own
        # first-frame listener (agent_state_changed -> speaking).
        msg = self._segments[0]
        if msg is not None:
            guarded(self._segment_started, msg, ev.created_at)
        elif self.words is not None:
            self.words.follow(None)
        super()._below_started(ev)

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

    def _below_progressed(self, ev: PlaybackProgressedEvent) -> None:
        if self._segments:
            super()._below_progressed(ev)
            msg = self._segments[0]
            if msg is not None and msg.playhead is not None:
                guarded(self._run_played, msg, ev)

    def _segment_refused(self, msg: Message | None) -> None:
        if self._segments and self._segments[-1] is msg:
            self._segments.pop()
        self._capturing = None
        if msg is not None:
            self._ledger.message_finished(msg, 0.0, interrupted=True, transcript=None)

    # -- live progress ----------------------------------------------------------------------

    def clear_buffer(self) -> None:
        super().clear_buffer()
        if self._segments:
            guarded(self._stop_playheads)

    def pause(self) -> None:
        super().pause()
        # livekit pauses on every VAD inference while the user talks: the first call counts
        if self._paused_at is None:
            guarded(self._set_paused, True)

    def resume(self) -> None:
        super().resume()
        # livekit also resumes whenever a message's audio starts, paused or not
        if self._paused_at is not None:
            guarded(self._set_paused, False)

    def _bind_with_audio(self) -> Message | None:
        msg = self._ledger.bind_segment(_livekit.current_speech(), has_audio=True)
        if msg is not None:
            measured = self._wants_progress is not None and self._wants_progress(self)
            msg.playhead = Playhead(
                measured=measured,
                words=measured and self.words is not None,
                paused_at=self._paused_at,
            )
            self._pushing = msg.playhead if measured else None
        return msg

    def _segment_started(self, msg: Message, created_at: float) -> None:
        if msg.playhead is not None:
            msg.playhead.started(created_at)
        self._ledger.message_started(msg, created_at)
        if self.words is not None:
            self.words.follow(msg)

    def _run_played(self, msg: Message, ev: PlaybackProgressedEvent) -> None:
        assert msg.playhead is not None
        now = time.time()
        msg.playhead.run_played(ev.started_at, ev.duration, now)
        self._ledger.progressed(msg, now)

    def _set_paused(self, paused: bool) -> None:
        now = time.time()
        self._paused_at = now if paused else None
        for msg in list(self._segments):
            if msg is not None and msg.playhead is not None:
                if paused:
                    msg.playhead.pause(now)
                else:
                    msg.playhead.resume(now)
                self._ledger.progressed(msg, now)

    def _stop_playheads(self) -> None:
        now = time.time()
        for msg in self._segments:
            if msg is not None and msg.playhead is not None:
                msg.playhead.stop(now)
