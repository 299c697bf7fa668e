"""The playback order: what the sink says decides each message's end; events leave in order.

One ``PlaybackOrder`` per session (the ledger's), across its trackers. Every message bound to
a segment, or skipped, joins it in playback order. The output and the word tap report here
what the sink and livekit's synchronizer said about a message; that decides its state, its
progress and its outcome, and its events are handed to its speech's reporter strictly in
playback order: a message's started event once every earlier message has finished, its
finished event right after.
"""

from __future__ import annotations

import time
from collections import deque

from ._messages import Message, Reporter, Speech, State
from .events import Played

__all__ = ["PlaybackOrder", "Waiting"]


class Waiting:
    """How many messages of a reporter wait in the order, and how many of them play."""

    __slots__ = ("open_segments", "unreleased")

    def __init__(self) -> None:
        self.unreleased = 0  # messages whose finished event is not out
        self.open_segments = 0  # of them, segments whose end the sink has not reported


class PlaybackOrder:
    """The session's messages from their segment to their last event; see the module doc."""

    def __init__(self) -> None:
        self._messages: deque[Message] = deque()
        self._releasing = False

    def waiting(self, reporter: Reporter) -> Waiting:
        """The messages of ``reporter`` still in the order."""
        counts = Waiting()
        for msg in self._messages:
            if msg.speech.reporter is reporter:
                counts.unreleased += 1
                counts.open_segments += msg.state in (State.BOUND, State.STARTED)
        return counts

    # -- joining ------------------------------------------------------------------------------

    def add(self, msg: Message) -> None:
        """``msg``'s segment was forwarded: it takes its place in the order."""
        msg.speech.unreleased += 1
        self._messages.append(msg)

    def skip(self, msg: Message) -> None:
        """``msg`` will never be heard: it takes its place in the order, already ended."""
        msg.state = State.SKIPPED
        msg.to_finish = msg.finished_event("skipped", None, 0.0, None, time.time())
        self.add(msg)
        self._release()

    def speech_over(self, speech: Speech) -> None:
        """``speech`` is done: end what the sink never reported; its reporter hears when
        the last of its events is out."""
        now = time.time()
        for msg in [m for m in self._messages if m.speech is speech]:
            if msg.state in (State.BOUND, State.STARTED):
                played = 0.0 if msg.started_at is None else max(0.0, now - msg.started_at)
                self.segment_finished(msg, played, interrupted=True, transcript=None)
        speech.over = True
        if not speech.unreleased:
            speech.reporter.speech_reported()

    # -- what the sink says ---------------------------------------------------------------------

    def segment_started(self, msg: Message, created_at: float) -> None:
        """The sink started playing ``msg``'s segment at ``created_at``."""
        if msg.state is State.BOUND:
            self._start(msg, created_at, estimated=False)
            self._release()

    def segment_finished(
        self, msg: Message, position: float, *, interrupted: bool, transcript: str | None
    ) -> None:
        """The sink ended ``msg``'s segment after ``position`` seconds of it played.

        A segment that played (position above zero) was heard even if the sink never
        reported its start: the message then starts now, at an estimated time. A late
        report after the message ended is ignored.
        """
        if msg.state in (State.FINISHED, State.SKIPPED):
            return
        now = time.time()
        position = max(0.0, float(position))
        if msg.state is State.BOUND:
            if position <= 0:
                msg.state = State.SKIPPED
                msg.to_finish = msg.finished_event("skipped", None, 0.0, None, now)
                self._release()
                return
            self._start(msg, max(msg.bound_at, now - position), estimated=True)
        played: Played = "partial" if interrupted or msg.truncated else "full"
        msg.state = State.FINISHED
        msg.to_finish = msg.finished_event(played, interrupted, position, transcript, now)
        self._release()

    def segment_refused(self, msg: Message) -> None:
        """The sink refused ``msg``'s first frame: none of it will play."""
        self.segment_finished(msg, 0.0, interrupted=False, transcript=None)

    def truncated(self, msg: Message) -> None:
        """The source of ``msg``'s audio was cut short (the TTS failed mid-message)."""
        msg.truncated = True

    # -- live progress ------------------------------------------------------------------------

    def run_played(self, msg: Message, started_at: float, duration: float, now: float) -> None:
        """The sink reports a run of ``msg``'s audio that played."""
        playhead = msg.playhead
        if playhead is not None:
            playhead.run_played(started_at, duration, now)
            if playhead.followed:
                self._report_progress(msg, now)

    def paused(self, msg: Message, now: float) -> None:
        """The output was paused while ``msg``'s segment was open."""
        if msg.playhead is not None:
            msg.playhead.pause(now)
            self._report_progress(msg, now)

    def resumed(self, msg: Message, now: float) -> None:
        """The output was resumed while ``msg``'s segment was open."""
        if msg.playhead is not None:
            msg.playhead.resume(now)
            self._report_progress(msg, now)

    def cleared(self, msg: Message, now: float) -> None:
        """The output was cleared (an interruption): ``msg`` plays no further."""
        if msg.playhead is not None:
            msg.playhead.stop(now)

    def word_shown(self, msg: Message, text: str, now: float) -> None:
        """livekit's transcription synchronizer showed a word of ``msg``."""
        playhead = msg.playhead
        if msg.state is State.STARTED and playhead is not None and playhead.heard_text is not None:
            playhead.heard_text += text
            self._report_progress(msg, now)

    def tick(self, reporter: Reporter, now: float) -> None:
        """Release a progress event for the message playing now, if ``reporter``'s."""
        msg = self.playing()
        if msg is not None and msg.speech.reporter is reporter:
            self._report_progress(msg, now)

    def playing(self) -> Message | None:
        """The message playing now, as the released events tell it, if any."""
        if self._messages and self._messages[0].playing:
            return self._messages[0]
        return None

    # -- internals ----------------------------------------------------------------------------

    def _start(self, msg: Message, started_at: float, *, estimated: bool) -> None:
        msg.state = State.STARTED
        msg.started_at = started_at
        msg.started_at_estimated = estimated
        if msg.playhead is not None:
            msg.playhead.started(started_at)
        msg.to_start = msg.started_event(started_at, estimated=estimated)

    def _report_progress(self, msg: Message, now: float) -> None:
        # only while it plays, only if its progress is followed
        if msg.followed and msg.playing:
            msg.speech.reporter.progressed(msg.progress_event(now))

    def _release(self) -> None:
        if self._releasing:
            return  # a reporter's callback made another event: this loop releases it
        self._releasing = True
        try:
            while self._messages:
                head = self._messages[0]
                if head.to_start is not None:
                    started, head.to_start = head.to_start, None
                    head.started_out = True
                    head.speech.reporter.started(started)
                finished = head.to_finish
                if finished is None:
                    return
                self._messages.popleft()
                speech = head.speech
                speech.reporter.finished(finished)
                speech.unreleased -= 1
                if speech.over and not speech.unreleased:
                    speech.reporter.speech_reported()
        finally:
            self._releasing = False
