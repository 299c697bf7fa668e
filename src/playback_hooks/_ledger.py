"""The engine: messages announced, segments bound, and their events released in order.

One ``Ledger`` per session, shared by the trackers attached to it one after another. A
tracker admits the speeches created while it is attached, each with the ``Reporter`` its
events go to. Announcers (``@track_messages``, the realtime tap, ``PlaybackTracker.label``)
queue messages per speech; the output on top of the chain binds each segment it forwards to
the next queued message of its speech and passes on what the sink said; the ledger decides
each message's outcome and hands the events to their reporter strictly in playback order,
across trackers. It knows nothing of signals, handlers or how the output is installed.

A message goes announced -> bound -> started -> finished, or -> skipped: ``Announced``
while it waits in its speech's queue (its id may still be unknown), then a ``Message``,
which always has its id, in the ``State`` the sink's reports put it in.
"""

from __future__ import annotations

import enum
import time
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from livekit.agents.voice.speech_handle import SpeechHandle

from ._progress import Playhead
from .events import (
    EMPTY_METADATA,
    MessagePlaybackFinished,
    MessagePlaybackProgressed,
    MessagePlaybackStarted,
    Played,
    Source,
)
from .ids import auto_message_id

__all__ = ["Announced", "Ledger", "LedgerCounts", "Message", "Reporter", "State", "ledger_for"]

# Which ledger reports on which speech: how @track_messages and the realtime tap, running
# inside a speech's tasks, find where to announce.
_reporting: weakref.WeakKeyDictionary[SpeechHandle, Ledger] = weakref.WeakKeyDictionary()


def ledger_for(handle: SpeechHandle | None) -> Ledger | None:
    """Return the ledger that reports on ``handle``, if any."""
    return None if handle is None else _reporting.get(handle)


class Reporter(Protocol):
    """Where the events of a speech go: the tracker that admitted it, one method per kind."""

    def wants_progress(self) -> bool:
        """Whether a message whose audio begins now should have its progress followed."""

    def started(self, event: MessagePlaybackStarted) -> None:
        """A message started playing."""

    def progressed(self, event: MessagePlaybackProgressed) -> None:
        """A playing message played on."""

    def finished(self, event: MessagePlaybackFinished) -> None:
        """A message ended."""

    def speech_reported(self) -> None:
        """One of the reporter's speeches is over and every event of it is out."""


class State(enum.Enum):
    """Where a bound message is."""

    BOUND = "bound"  # its segment is forwarded to the sink
    STARTED = "started"  # the sink started playing it
    FINISHED = "finished"  # heard, in full or in part: its finished event is made
    SKIPPED = "skipped"  # never heard: its finished event is made


@dataclass(eq=False, slots=True)
class Announced:
    """A message queued for its speech's next segment."""

    index: int
    message_id: str | None  # None: named when it gets its segment (label or automatic id)
    metadata: Mapping[str, Any]
    source: Source
    has_segment: bool = True  # False once it is known no segment will carry it


@dataclass(eq=False, slots=True)
class Message:
    """A message whose segment was forwarded (or that was skipped), until its events are out.

    Changed only by the ledger; the output and the word tap hold it to name it in their
    reports.
    """

    speech: Speech
    index: int
    message_id: str
    metadata: Mapping[str, Any]
    source: Source
    state: State
    bound_at: float  # when its segment's first frame was handed over (time.time())
    playhead: Playhead | None = None  # None for a skipped message
    truncated: bool = False  # its source (the TTS) was cut short
    started_at: float | None = None
    started_at_estimated: bool = False
    # events made and not yet released (they leave in playback order)
    to_start: MessagePlaybackStarted | None = None
    to_finish: MessagePlaybackFinished | None = None
    started_out: bool = False  # its started event is released

    @property
    def followed(self) -> bool:
        """Whether its progress is followed (decided when its audio began)."""
        return self.playhead is not None and self.playhead.followed

    @property
    def words_kept(self) -> bool:
        """Whether the words shown of it are kept (for ``heard_text``)."""
        return self.playhead is not None and self.playhead.heard_text is not None


@dataclass(eq=False)
class Speech:
    """A speech the ledger reports on."""

    handle: SpeechHandle
    reporter: Reporter
    source: Source
    queue: deque[Announced] = field(default_factory=deque)
    next_index: int = 0
    label: tuple[str, Mapping[str, Any]] | None = None
    label_used: bool = False
    auto_named: bool = False  # a message of it already got an automatic id
    unreleased: int = 0  # its messages in the playback order
    over: bool = False  # its handle is done and every message of it has ended


@dataclass(frozen=True, slots=True)
class LedgerCounts:
    """How much per-speech and per-message state the ledger holds for one reporter."""

    speeches: int
    unreleased_messages: int
    open_segments: int


class Ledger:
    """Per-session message bookkeeping; see the module docstring."""

    def __init__(self) -> None:
        self._speeches: dict[str, Speech] = {}  # admitted, not over
        # bound or skipped messages whose events are not all out, in playback order
        self._order: deque[Message] = deque()
        self._releasing = False

    # -- speeches ---------------------------------------------------------------------------

    def admit(self, handle: SpeechHandle, source: Source, reporter: Reporter) -> bool:
        """Report on ``handle``, a speech just created, to ``reporter``; False if it cannot
        be (already over, or already admitted)."""
        if handle.done() or handle.id in self._speeches:
            return False
        self._speeches[handle.id] = Speech(handle, reporter, source)
        _reporting[handle] = self
        handle.add_done_callback(self._on_speech_done)
        return True

    def counts(self, reporter: Reporter) -> LedgerCounts:
        """The sizes of ``reporter``'s per-speech and per-message state."""
        mine = [m for m in self._order if m.speech.reporter is reporter]
        return LedgerCounts(
            speeches=sum(1 for s in self._speeches.values() if s.reporter is reporter),
            unreleased_messages=len(mine),
            open_segments=sum(1 for m in mine if m.state in (State.BOUND, State.STARTED)),
        )

    # -- announcers -------------------------------------------------------------------------

    def announce(
        self,
        handle: SpeechHandle,
        message_id: str | None,
        metadata: Mapping[str, Any],
        source: Source,
        *,
        has_segment: bool,
    ) -> Announced | None:
        """Queue a message of ``handle``; ``has_segment=False``: no audio will carry it."""
        speech = self._speeches.get(handle.id)
        if speech is None or handle.done():
            return None
        item = self._announced(speech, message_id, metadata, source)
        item.has_segment = has_segment
        speech.queue.append(item)
        if not has_segment:
            self._skip_segmentless(speech)
        return item

    def item_begins(self, handle: SpeechHandle, item: Announced) -> None:
        """livekit started processing ``item``: earlier queued items will get no segment."""
        speech = self._speeches.get(handle.id)
        if speech is None or item not in speech.queue:
            return
        for earlier in speech.queue:
            if earlier is item:
                break
            earlier.has_segment = False
        self._skip_segmentless(speech)

    def label(
        self,
        handle: SpeechHandle,
        reporter: Reporter,
        message_id: str,
        metadata: Mapping[str, Any],
    ) -> None:
        """Give ``message_id`` to the speech's first message without an id of its own.

        Raises:
            RuntimeError: ``reporter`` does not report the speech, or a message of it
                already played.
            ValueError: the speech was already labelled.
        """
        speech = self._speeches.get(handle.id)
        if speech is None or speech.reporter is not reporter:
            raise RuntimeError(
                f"speech {handle.id} is not reported by this tracker: it was created before "
                "attach() (or while another tracker was attached), or is already over"
            )
        if speech.label is not None:
            raise ValueError(f"speech {handle.id} is already labelled {speech.label[0]!r}")
        if speech.auto_named:
            raise RuntimeError(
                f"speech {handle.id} already started playing; "
                "label it right after say() / generate_reply()"
            )
        speech.label = (message_id, metadata)

    # -- the output: segments ---------------------------------------------------------------

    def bind_segment(
        self,
        handle: SpeechHandle | None,
        *,
        has_audio: bool,
        paused_at: float | None = None,
        shows_words: bool = False,
    ) -> Message | None:
        """The output forwards a new segment of ``handle``: return the message it carries.

        None for a speech the ledger does not report. ``has_audio=False``: the segment was
        flushed without a frame, so its message was never heard. ``paused_at``: the output
        is paused since then; ``shows_words``: the chain shows words (a transcription
        synchronizer), so they are kept if the message's progress is followed.
        """
        speech = None if handle is None else self._speeches.get(handle.id)
        if speech is None:
            return None
        # A speech's done callback runs on a later loop iteration than the end of its
        # playback, so the next speech's first segment can arrive first: finish the speeches
        # already over now, or their messages would be released after this one.
        for other in [s for s in self._speeches.values() if s is not speech and s.handle.done()]:
            self._finish_speech(other)
        self._skip_segmentless(speech)
        item = (
            speech.queue.popleft()
            if speech.queue
            else self._announced(speech, None, EMPTY_METADATA, speech.source)
        )
        if has_audio:
            followed = speech.reporter.wants_progress()
            playhead = Playhead(
                followed=followed, keep_words=followed and shows_words, paused_at=paused_at
            )
            msg = self._message(speech, item, State.BOUND, playhead)
            self._order.append(msg)
        else:
            msg = self._skip(speech, item)
        self._skip_segmentless(speech)
        return msg

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
                msg.to_finish = self._finished_event(msg, "skipped", None, 0.0, None, now)
                self._release()
                return
            self._start(msg, max(msg.bound_at, now - position), estimated=True)
        played: Played = "partial" if interrupted or msg.truncated else "full"
        msg.state = State.FINISHED
        msg.to_finish = self._finished_event(msg, played, interrupted, position, transcript, now)
        self._release()

    def segment_refused(self, msg: Message) -> None:
        """The sink refused ``msg``'s first frame: none of it will play."""
        self.segment_finished(msg, 0.0, interrupted=False, transcript=None)

    def truncated(self, msg: Message) -> None:
        """The source of ``msg``'s audio was cut short (the TTS failed mid-message)."""
        msg.truncated = True

    # -- the output: live progress ----------------------------------------------------------

    def pushed(self, msg: Message, seconds: float) -> None:
        """``seconds`` more of ``msg``'s audio were handed to the sink."""
        if msg.playhead is not None:
            msg.playhead.pushed += seconds

    def run_played(self, msg: Message, started_at: float, duration: float, now: float) -> None:
        """The sink reports a run of ``msg``'s audio that played."""
        if msg.playhead is not None:
            msg.playhead.run_played(started_at, duration, now)
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
        if self._order:
            head = self._order[0]
            if head.started_out and head.state is State.STARTED:
                return head
        return None

    def progress(self, msg: Message, now: float) -> MessagePlaybackProgressed:
        """``msg``'s progress observed at ``now`` (its position never goes backwards)."""
        playhead = msg.playhead
        return MessagePlaybackProgressed(
            message_id=msg.message_id,
            speech_id=msg.speech.handle.id,
            index=msg.index,
            source=msg.source,
            metadata=msg.metadata,
            position=0.0 if playhead is None else playhead.position(now),
            heard_text=None if playhead is None else playhead.heard_text,
            paused=False if playhead is None else playhead.paused,
            at=now,
        )

    # -- internals --------------------------------------------------------------------------

    def _announced(
        self, speech: Speech, message_id: str | None, metadata: Mapping[str, Any], source: Source
    ) -> Announced:
        item = Announced(speech.next_index, message_id, metadata, source)
        speech.next_index += 1
        return item

    def _message(
        self, speech: Speech, item: Announced, state: State, playhead: Playhead | None
    ) -> Message:
        message_id, metadata = item.message_id, item.metadata
        if message_id is None:
            if speech.label is not None and not speech.label_used:
                speech.label_used = True
                message_id, metadata = speech.label
            else:
                speech.auto_named = True
                message_id = auto_message_id(speech.handle.id, item.index)
        speech.unreleased += 1
        return Message(
            speech=speech,
            index=item.index,
            message_id=message_id,
            metadata=metadata,
            source=item.source,
            state=state,
            bound_at=time.time(),
            playhead=playhead,
        )

    def _skip(self, speech: Speech, item: Announced) -> Message:
        msg = self._message(speech, item, State.SKIPPED, None)
        msg.to_finish = self._finished_event(msg, "skipped", None, 0.0, None, time.time())
        self._order.append(msg)
        self._release()
        return msg

    def _skip_segmentless(self, speech: Speech) -> None:
        # Messages known to get no segment, at the head of the queue, end as skipped now;
        # _release() holds their events back until earlier messages have finished. Not
        # before the speech is scheduled: a discarded preemptive speech reports nothing.
        if not speech.handle.scheduled:
            return
        while speech.queue and not speech.queue[0].has_segment:
            self._skip(speech, speech.queue.popleft())

    def _start(self, msg: Message, started_at: float, *, estimated: bool) -> None:
        msg.state = State.STARTED
        msg.started_at = started_at
        msg.started_at_estimated = estimated
        if msg.playhead is not None:
            msg.playhead.started(started_at)
        msg.to_start = MessagePlaybackStarted(
            message_id=msg.message_id,
            speech_id=msg.speech.handle.id,
            index=msg.index,
            source=msg.source,
            metadata=msg.metadata,
            started_at=started_at,
            started_at_estimated=estimated,
        )

    @staticmethod
    def _finished_event(
        msg: Message,
        played: Played,
        interrupted: bool | None,
        position: float,
        transcript: str | None,
        now: float,
    ) -> MessagePlaybackFinished:
        return MessagePlaybackFinished(
            message_id=msg.message_id,
            speech_id=msg.speech.handle.id,
            index=msg.index,
            source=msg.source,
            metadata=msg.metadata,
            played=played,
            # a skipped message's follows its speech
            interrupted=msg.speech.handle.interrupted if interrupted is None else interrupted,
            playback_position=position,
            transcript=transcript,
            started_at=msg.started_at,
            finished_at=now,
            started_at_estimated=msg.started_at_estimated,
        )

    def _report_progress(self, msg: Message, now: float) -> None:
        # only while it plays (its started event is out, its finished event is not), only
        # if its progress is followed
        if msg.followed and msg.started_out and msg.state is State.STARTED:
            msg.speech.reporter.progressed(self.progress(msg, now))

    def _release(self) -> None:
        # Events leave strictly in playback order: a message's started event only once every
        # earlier message has finished, its finished event right after.
        if self._releasing:
            return  # a reporter's callback made another event: this loop releases it
        self._releasing = True
        try:
            while self._order:
                head = self._order[0]
                if head.to_start is not None:
                    started, head.to_start = head.to_start, None
                    head.started_out = True
                    head.speech.reporter.started(started)
                finished = head.to_finish
                if finished is None:
                    return
                self._order.popleft()
                head.speech.reporter.finished(finished)
                speech = head.speech
                speech.unreleased -= 1
                if speech.over and not speech.unreleased:
                    speech.reporter.speech_reported()
        finally:
            self._releasing = False

    def _on_speech_done(self, handle: SpeechHandle) -> None:
        speech = self._speeches.get(handle.id)
        if speech is not None:
            self._finish_speech(speech)

    def _finish_speech(self, speech: Speech) -> None:
        del self._speeches[speech.handle.id]
        if _reporting.get(speech.handle) is self:
            del _reporting[speech.handle]
        speech.handle.remove_done_callback(self._on_speech_done)
        if speech.handle.scheduled:
            self._end_unfinished(speech)
        # else: a discarded (preemptive) generation; nothing was ever going to play
        speech.over = True
        if not speech.unreleased:
            speech.reporter.speech_reported()

    def _end_unfinished(self, speech: Speech) -> None:
        now = time.time()
        for msg in [m for m in self._order if m.speech is speech]:
            if msg.state in (State.BOUND, State.STARTED):
                # the sink never reported the end of this segment
                played = 0.0 if msg.started_at is None else max(0.0, now - msg.started_at)
                self.segment_finished(msg, played, interrupted=True, transcript=None)
        while speech.queue:
            self._skip(speech, speech.queue.popleft())
        if speech.label is not None and not speech.label_used and speech.next_index == 0:
            # The app named a message no audio ever came for (e.g. a say() whose TTS produced
            # nothing): report it as skipped, so a wait_for() on that id learns its fate.
            self._skip(speech, self._announced(speech, None, EMPTY_METADATA, speech.source))
