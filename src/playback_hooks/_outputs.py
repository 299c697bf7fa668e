"""The ``AudioOutput`` on top of a session's chain: feeds the ledger from what the sink says.

``TransparentOutput`` forwards every call down and every report up, as if it were not
there; ``TrackingOutput`` adds the bookkeeping: which segment carries which message, and
what the sink said about it. One tracking output serves a session's chain for as long as
any speech may use it, whichever tracker reports that speech (see ``_session``).
"""

from __future__ import annotations

import operator
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from livekit import rtc
from livekit.agents.voice.io import (
    AudioOutput,
    AudioOutputCapabilities,
    PlaybackFinishedEvent,
    PlaybackProgressedEvent,
    PlaybackStartedEvent,
)

from . import _livekit
from ._ledger import Ledger
from ._listeners import listener
from ._log import LABEL, guarded, internal_error, logger
from ._messages import Message
from ._words import WordTap

__all__ = ["TrackingOutput", "TransparentOutput"]


class TransparentOutput(AudioOutput):
    """An ``AudioOutput`` on top of ``below`` that forwards every call and every report.

    Unlike a plain wrapper, it does not make livekit put its swap proxy under it when
    ``below`` is a bare sink (livekit's constructor does that for any wrapper, in every
    1.8.x release): the chain below is exactly what it was without it, and
    ``replace_audio_tail()`` does what it did. It listens to ``below``'s reports through
    the public events and hands them to ``_below_started`` / ``_below_finished`` /
    ``_below_cancelled`` / ``_below_progressed``, which subclasses extend; to the progress
    reports only once something wants them (``_hear_progress()``).
    """

    def __init__(self, below: AudioOutput, *, label: str) -> None:
        super().__init__(
            label=label,
            capabilities=AudioOutputCapabilities(pause=True),
            next_in_chain=None,
            sample_rate=None,
        )
        self._below = below
        below.on("playback_started", listener(lambda ev: self._below_started(ev)))
        below.on("playback_finished", listener(lambda ev: self._on_below_finished(ev)))
        self._hears_progress = False  # whether it listens to below's progress reports

    def on(self, event: Any, callback: Callable[..., Any] | None = None) -> Callable[..., Any]:
        # whoever listens to this output's progress reports (an output put above it, the
        # app) gets below's, passed up as they come
        if event == "playback_progressed":
            self._hear_progress()
        return super().on(event, callback)

    def _hear_progress(self) -> None:
        """Listen to below's progress reports from now on. Until then they cost livekit's
        emitter nothing: the sink reports runs at every underrun, often several times per
        message, and nobody may want them."""
        if not self._hears_progress:
            self._hears_progress = True
            self._below.on("playback_progressed", listener(lambda ev: self._below_progressed(ev)))

    @property
    def next_in_chain(self) -> AudioOutput:
        return self._below

    # livekit asks the output on top for its sample rate before each frame until the sink
    # reports the segment's start (RoomIO's output and avatars report it once the audio
    # plays): the answer is the output below's, looked up by CPython's own property and
    # attrgetter, with no code of this package in between.
    sample_rate = property(operator.attrgetter("_below.sample_rate"))

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        await self._below.capture_frame(frame)

    def flush(self) -> None:
        super().flush()
        self._below.flush()

    def clear_buffer(self) -> None:
        self._below.clear_buffer()

    def _mark_input_truncated(self) -> None:
        # livekit (1.8.6 - 1.8.9) calls this on the top output just before flush() when the
        # TTS failed mid-segment; the releases before never call it
        self._input_truncated()
        _livekit.forward_input_truncated(self._below)

    def _on_below_finished(self, ev: PlaybackFinishedEvent) -> None:
        if _livekit.is_capture_cancelled(ev):
            self._below_cancelled(ev)
        else:
            self._below_finished(ev)

    # -- for subclasses ---------------------------------------------------------------------

    def _below_started(self, ev: PlaybackStartedEvent) -> None:
        self.on_playback_started(created_at=ev.created_at)

    def _below_finished(self, ev: PlaybackFinishedEvent) -> None:
        self.on_playback_finished(
            playback_position=ev.playback_position,
            interrupted=ev.interrupted,
            synchronized_transcript=ev.synchronized_transcript,
        )

    def _below_cancelled(self, ev: PlaybackFinishedEvent) -> None:
        _livekit.pass_cancelled_up(self, ev)

    def _below_progressed(self, ev: PlaybackProgressedEvent) -> None:
        self.on_playback_progressed(
            started_at=ev.started_at, offset=ev.offset, duration=ev.duration
        )

    def _input_truncated(self) -> None:
        """The source of the segment being captured was cut short (TTS error)."""


class _StrayStarts:
    """Tells a remote sink's stray start report after a clear from the next segment's start.

    livekit's avatar worker (``AvatarRunner``, behind ``DataStreamAudioOutput`` built with
    ``wait_playback_start=True``) may answer a clear that cut a playing segment with one
    more ``lk.playback_started``, for the segment it just cleared, and then send none for
    the next segment. The first start reported after such a clear, up to one round trip
    (as long as the clear took to be answered) plus ``MARGIN`` after the cleared segment's
    end, is taken for that stray report: the next message is then reported heard at its end,
    with an estimated start. A real start reported that early after an interruption is
    taken for a stray one too; its message gets the estimate.
    """

    MARGIN = 0.2  # the runner sends it 16 - 100 ms after the clear reaches it

    def __init__(self) -> None:
        self._cleared_at: float | None = None  # a clear cut a started segment then
        self._until: float | None = None  # a stray report may come until then

    def cleared(self, now: float) -> None:
        """The output was cleared while a segment that had started was open."""
        self._cleared_at, self._until = now, None

    def finished(self, now: float) -> None:
        """The sink reported a segment's end."""
        if self._cleared_at is not None and self._until is None:
            self._until = now + (now - self._cleared_at) + self.MARGIN

    def is_stray(self, now: float) -> bool:
        """Whether a start report arriving ``now`` is the stray one (expected once)."""
        if self._cleared_at is None:
            return False
        stray = self._until is None or now <= self._until
        self._cleared_at = self._until = None
        return stray


class TrackingOutput(TransparentOutput):
    """Forwards everything; tells the ledger which segment is which and what the sink said.

    Each segment is bound, on its first frame (or on a flush with no frame), to the next
    message of the speech whose task is capturing, if the ledger reports that speech;
    otherwise it is forwarded and reported up like any other, and nothing else. Reports
    from below about a segment it never forwarded are not passed up: livekit would count
    them twice.

    After a segment's first frame, livekit's ``capture_frame`` calls for the rest of the
    segment reach the output below directly, until the segment's ``flush()``.
    """

    # livekit looks ``capture_frame`` up on this object for every frame. A slot holds what
    # it finds: this output's ``_first_frame`` until a segment's first frame arrived, then
    # the output below's ``capture_frame`` until the segment's flush. (A slot, not the
    # instance's dictionary: from Python 3.12 CPython specializes that lookup.)
    __slots__ = ("capture_frame",)
    capture_frame: Callable[[rtc.AudioFrame], Coroutine[Any, Any, None]]  # type: ignore[assignment]

    def __init__(self, ledger: Ledger, below: AudioOutput) -> None:
        super().__init__(below, label=LABEL)
        self._first = self._first_frame
        self.capture_frame = self._first
        self._ledger = ledger
        self._order = ledger.order
        # segments handed below whose end the sink has not reported, oldest first; None
        # stands for a segment of a speech the ledger does not report
        self._segments: deque[Message | None] = deque()
        self._capturing: Message | None = None  # the segment being captured, if ours
        self._segment_open = False  # a frame of the segment being captured arrived
        self._paused_at: float | None = None  # the output is paused since then
        # the words the chain's transcription synchronizer shows, once progress is followed
        self._synchronizer = _livekit.transcript_synchronizer(below)
        self._word_tap: WordTap | None = None
        self._head_started = False  # the sink reported the oldest open segment's start
        self._stray = _StrayStarts() if _livekit.reports_remote_starts(below) else None
        self._warned_start_not_reported = False

    @property
    def below(self) -> AudioOutput:
        """The output this one forwards to."""
        return self._below

    def report_to(self, ledger: Ledger) -> None:
        """Bind segments in ``ledger`` from now on: a session's new state takes this output
        over. The segments it follows stay as they are: those of the old ledger's messages
        have ended there, and what the sink says of them changes nothing any more."""
        self.remove_word_tap()  # it reports to the old order
        self._ledger = ledger
        self._order = ledger.order

    # -- the frame path ---------------------------------------------------------------------

    async def _first_frame(self, frame: rtc.AudioFrame) -> None:
        # the first frame of a segment: the rest go to the output below directly
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
            # livekit keeps the exception, whose traceback keeps this frame: not the message
            msg = None
            raise
        # Counted once the sink accepted the frame, unlike the usual base-first order (the
        # base class's bookkeeping only: the forwarding is done here).
        await AudioOutput.capture_frame(self, frame)
        # until the segment's flush, no code of the tracker runs per frame
        self.capture_frame = self._below.capture_frame

    def flush(self) -> None:
        self.capture_frame = self._first
        AudioOutput.flush(self)
        if not self._segment_open:
            # a segment with no audio (interrupted before its first frame, or a TTS that
            # produced nothing): its message was never heard
            guarded(self._ledger.bind_segment, _livekit.current_speech(), has_audio=False)
        self._segment_open = False
        self._capturing = None
        self._below.flush()

    def _bind_with_audio(self) -> Message | None:
        msg = self._ledger.bind_segment(
            _livekit.current_speech(),
            has_audio=True,
            paused_at=self._paused_at,
            shows_words=self._synchronizer is not None,
        )
        if msg is not None and msg.followed:
            self._hear_progress()
            if self._synchronizer is not None:
                self._tap_words()
        return msg

    def _tap_words(self) -> None:
        # the word tap goes in the first time a message's progress is followed, so that
        # nobody pays for words nobody follows
        if self._word_tap is not None or self._synchronizer is None:
            return
        if not _livekit.text_tap_supported(self._synchronizer):
            self._synchronizer = None
            return
        tap = WordTap(self._order, self._synchronizer)
        _livekit.insert_text_tap(self._synchronizer, tap)
        self._word_tap = tap

    def remove_word_tap(self) -> None:
        """Take the word tap out of livekit's text chain, if it is in."""
        if self._word_tap is not None:
            self._word_tap.close()
            _livekit.remove_text_tap(self._word_tap.synchronizer, self._word_tap)
            self._word_tap = None

    # -- what the sink says -----------------------------------------------------------------

    def _input_truncated(self) -> None:
        if self._capturing is not None:
            guarded(self._order.truncated, self._capturing)

    def _below_started(self, ev: PlaybackStartedEvent) -> None:
        stray = self._stray is not None and self._stray.is_stray(time.time())
        if not self._segments:
            return  # not a segment of ours
        if not stray:
            # The ledger first, then the report goes up to livekit: both queue their
            # callbacks for the next loop iteration, so the app's handlers are not behind
            # livekit's own first-frame listener (agent_state_changed -> speaking).
            self._head_started = True
            msg = self._segments[0]
            if msg is not None:
                guarded(self._order.segment_started, msg, ev.created_at)
            if self._word_tap is not None:
                self._word_tap.follow(msg)
        super()._below_started(ev)  # livekit takes it as it comes, stray or not

    def _below_finished(self, ev: PlaybackFinishedEvent) -> None:
        if not self._segments:
            return  # not a segment of ours
        msg = self._segments.popleft()
        if self._stray is not None:
            self._stray.finished(time.time())
            if not self._head_started and ev.playback_position > 0:
                self._start_not_reported()
        self._head_started = False
        super()._below_finished(ev)
        if msg is not None:
            guarded(
                self._order.segment_finished,
                msg,
                ev.playback_position,
                interrupted=ev.interrupted,
                transcript=ev.synchronized_transcript,
            )

    def _below_cancelled(self, ev: PlaybackFinishedEvent) -> None:
        if not self._segments:
            return
        msg = self._segments.popleft()
        self._head_started = False
        super()._below_cancelled(ev)
        if msg is not None:
            guarded(self._order.segment_finished, msg, 0.0, interrupted=True, transcript=None)

    def _below_progressed(self, ev: PlaybackProgressedEvent) -> None:
        # several times per message (RoomIO's output reports every buffer underrun): the
        # base class's step and the guard are written out
        segments = self._segments
        if not segments:
            return
        self.on_playback_progressed(
            started_at=ev.started_at, offset=ev.offset, duration=ev.duration
        )
        msg = segments[0]
        if msg is not None and msg.followed:
            try:
                self._order.run_played(msg, ev.started_at, ev.duration, time.time())
            except Exception:
                internal_error(self._order.run_played)

    def _start_not_reported(self) -> None:
        if self._warned_start_not_reported:
            return
        self._warned_start_not_reported = True
        logger.warning(
            "the avatar worker reported a segment played without reporting when it started "
            "(lk.playback_started); such messages are reported heard with an estimated "
            "started_at (started_at_estimated=True). If every message shows this, the "
            "worker never sends lk.playback_started: build DataStreamAudioOutput with "
            "wait_playback_start=False, or make the worker send it"
        )

    def _segment_refused(self, msg: Message | None) -> None:
        if self._segments and self._segments[-1] is msg:
            self._segments.pop()
        self._capturing = None
        if msg is not None:
            self._order.segment_refused(msg)

    # -- pause, resume, clear ---------------------------------------------------------------

    def clear_buffer(self) -> None:
        super().clear_buffer()
        if self._segments:
            guarded(self._each_segment, self._order.cleared)
            if self._stray is not None and self._head_started:
                self._stray.cleared(time.time())

    def pause(self) -> None:
        super().pause()
        # livekit pauses on every VAD inference while the user talks: the first call counts
        if self._paused_at is None:
            self._paused_at = time.time()
            guarded(self._each_segment, self._order.paused)

    def resume(self) -> None:
        super().resume()
        # livekit also resumes whenever a message's audio starts, paused or not
        if self._paused_at is not None:
            self._paused_at = None
            guarded(self._each_segment, self._order.resumed)

    def _each_segment(self, step: Callable[[Message, float], None]) -> None:
        now = time.time()
        for msg in list(self._segments):
            if msg is not None:
                step(msg, now)
