"""The engine: messages announced, segments bound, and their events released in order.

One ``Ledger`` per tracked session. Announcers (``@track_messages``, the realtime tap,
``PlaybackTracker.label``) queue messages per speech; the output wrapper binds each segment
it forwards to the next queued message of its speech and reports what the sink said; the
ledger decides each message's outcome and hands the events to ``on_event`` strictly in
playback order. It knows nothing of signals, handlers or how the wrapper is installed.
"""

from __future__ import annotations

import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from livekit.agents.voice.speech_handle import SpeechHandle

from ._progress import Playhead
from .events import (
    EMPTY_METADATA,
    Event,
    MessagePlaybackFinished,
    MessagePlaybackProgressed,
    MessagePlaybackStarted,
    Played,
    Source,
)
from .ids import auto_message_id

__all__ = ["Ledger", "LedgerCounts", "Message", "ledger_for"]

# Which ledger reports on which speech: how @track_messages, running inside a speech's
# llm_node, finds where to announce. Keyed by the speech, not the session, so a speech
# still playing after detach() keeps its ledger even if a new tracker is attached.
_reporting: weakref.WeakKeyDictionary[SpeechHandle, Ledger] = weakref.WeakKeyDictionary()


def ledger_for(handle: SpeechHandle | None) -> Ledger | None:
    """Return the ledger that reports on ``handle``, if any."""
    return None if handle is None else _reporting.get(handle)


@dataclass(eq=False)
class Message:
    """One message of a speech, from its announcement to its finished event."""

    speech: Speech
    index: int
    message_id: str | None  # None: named when it gets its segment (label or automatic id)
    metadata: Mapping[str, Any]
    source: Source
    has_segment: bool = True  # False once it is known no segment will carry it
    truncated: bool = False  # its source (the TTS) was cut short
    started_at: float | None = None
    pending_started: MessagePlaybackStarted | None = None  # made, not yet released
    finished: MessagePlaybackFinished | None = None
    playhead: Playhead | None = None  # its segment's live position, once it has audio


@dataclass(eq=False)
class Speech:
    """A speech the ledger reports on, with its messages not yet bound to a segment."""

    handle: SpeechHandle
    source: Source = "llm"
    queue: deque[Message] = field(default_factory=deque)
    next_index: int = 0
    label: tuple[str, Mapping[str, Any]] | None = None
    label_used: bool = False
    auto_named: bool = False  # a message of it already got an automatic id


@dataclass(frozen=True, slots=True)
class LedgerCounts:
    """How much per-speech and per-message state the ledger holds right now."""

    speeches: int
    unreleased_messages: int


class Ledger:
    """Per-session message bookkeeping; see the module docstring.

    Only speeches that were ``admit()``-ted are reported: a speech the ledger never saw
    created (it began before the tracker was attached) is passed over whole, never half.
    """

    def __init__(self, on_event: Callable[[Event], None]) -> None:
        self._on_event = on_event
        self._speeches: dict[str, Speech] = {}
        # bound to a segment (or skipped), finished event not yet released, in playback order
        self._unreleased: deque[Message] = deque()
        self._accepting = True
        self._on_idle: Callable[[], None] | None = None
        self._progress = True  # progress events are sent (until detach)

    # -- speeches ---------------------------------------------------------------------------

    def admit(self, handle: SpeechHandle, source: Source) -> None:
        """Report on ``handle``, a speech created while the tracker is installed."""
        if not self._accepting or handle.done() or handle.id in self._speeches:
            return
        self._speeches[handle.id] = Speech(handle, source)
        _reporting[handle] = self
        handle.add_done_callback(self._on_speech_done)

    def admitted(self, handle: SpeechHandle) -> bool:
        """Whether the ledger reports on ``handle``."""
        return handle.id in self._speeches

    def stop_admitting(self, on_idle: Callable[[], None]) -> None:
        """Admit no new speech; call ``on_idle`` once every admitted speech is reported."""
        self._accepting = False
        self._on_idle = on_idle
        self._check_idle()

    def counts(self) -> LedgerCounts:
        """The sizes of the ledger's per-speech and per-message state."""
        return LedgerCounts(len(self._speeches), len(self._unreleased))

    # -- announcers -------------------------------------------------------------------------

    def announce(
        self,
        handle: SpeechHandle,
        message_id: str | None,
        metadata: Mapping[str, Any],
        source: Source,
        *,
        has_segment: bool,
    ) -> Message | None:
        """Queue a message of ``handle``; ``has_segment=False``: no audio will carry it."""
        speech = self._speeches.get(handle.id)
        if speech is None or handle.done():
            return None
        msg = self._new_message(speech, message_id, metadata, source)
        msg.has_segment = has_segment
        speech.queue.append(msg)
        if not has_segment:
            self._skip_segmentless(speech)
        return msg

    def item_begins(self, handle: SpeechHandle, msg: Message) -> None:
        """livekit started processing ``msg``: earlier queued items will get no segment."""
        speech = self._speeches.get(handle.id)
        if speech is None or msg not in speech.queue:
            return
        for earlier in speech.queue:
            if earlier is msg:
                break
            earlier.has_segment = False
        self._skip_segmentless(speech)

    def label(self, handle: SpeechHandle, message_id: str, metadata: Mapping[str, Any]) -> None:
        """Give ``message_id`` to the speech's first message without an id of its own.

        Raises:
            RuntimeError: the speech is not reported, or a message of it already played.
            ValueError: the speech was already labelled.
        """
        speech = self._speeches.get(handle.id)
        if speech is None:
            raise RuntimeError(
                f"speech {handle.id} is not reported: it was created before attach() "
                "or is already over"
            )
        if speech.label is not None:
            raise ValueError(f"speech {handle.id} is already labelled {speech.label[0]!r}")
        if speech.auto_named:
            raise RuntimeError(
                f"speech {handle.id} already started playing; "
                "label it right after say() / generate_reply()"
            )
        speech.label = (message_id, metadata)

    # -- the output wrapper -----------------------------------------------------------------

    def bind_segment(self, handle: SpeechHandle | None, *, has_audio: bool) -> Message | None:
        """The output forwards a new segment of ``handle``: return the message it carries.

        None for a speech the ledger does not report. ``has_audio=False``: the segment
        was flushed without a frame, so its message was never heard.
        """
        if handle is None:
            return None
        speech = self._speeches.get(handle.id)
        if speech is None:
            return None
        # A speech's done callback runs on a later loop iteration than the end of its
        # playback, so the next speech's first segment can arrive first: finish the speeches
        # already over now, or their messages would be released after this one.
        for other in list(self._speeches.values()):
            if other is not speech and other.handle.done():
                self._finish_speech(other)
        self._skip_segmentless(speech)
        if speech.queue:
            msg = speech.queue.popleft()
        else:
            msg = self._new_message(speech, None, EMPTY_METADATA, speech.source)
        if has_audio:
            self._name(msg)
            self._unreleased.append(msg)
        else:
            self._skip(msg)
        self._skip_segmentless(speech)
        return msg

    def message_started(self, msg: Message, created_at: float) -> None:
        """The sink started playing ``msg``'s segment at ``created_at``."""
        if msg.started_at is not None or msg.finished is not None:
            return
        assert msg.message_id is not None
        msg.started_at = created_at
        msg.pending_started = MessagePlaybackStarted(
            message_id=msg.message_id,
            speech_id=msg.speech.handle.id,
            index=msg.index,
            source=msg.source,
            metadata=msg.metadata,
            started_at=created_at,
        )
        self._release()

    def message_finished(
        self, msg: Message, position: float, *, interrupted: bool, transcript: str | None
    ) -> None:
        """The sink ended ``msg``'s segment (a late report after the speech ended is ignored)."""
        if msg.finished is not None:
            return
        played: Played
        if msg.started_at is None:
            played, position = "skipped", 0.0
            interrupted = interrupted or msg.speech.handle.interrupted
        elif interrupted or msg.truncated:
            played = "partial"
        else:
            played = "full"
        msg.finished = self._finished_event(msg, played, interrupted, position, transcript)
        self._release()

    # -- live progress ----------------------------------------------------------------------

    @staticmethod
    def playing(msg: Message) -> bool:
        """Whether ``msg``'s started event is released and its finished event is not."""
        return msg.started_at is not None and msg.pending_started is None and msg.finished is None

    def playing_message(self) -> Message | None:
        """The message playing now, as the released events tell it, if any."""
        if self._unreleased:
            head = self._unreleased[0]
            if self.playing(head):
                return head
        return None

    def progressed(self, msg: Message, now: float) -> None:
        """``msg`` played on or a word of it was shown: release its progress event.

        Only while it plays (its started event is out, its finished event is not), only if
        progress was wanted when its audio began; dropped otherwise.
        """
        playhead = msg.playhead
        if playhead is None or not playhead.measured or not self._progress:
            return
        if self.playing(msg):
            self._on_event(self.progress(msg, now))

    def progress(self, msg: Message, now: float) -> MessagePlaybackProgressed:
        """``msg``'s progress observed at ``now`` (its position never goes backwards)."""
        assert msg.message_id is not None
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

    def stop_progress(self) -> None:
        """Send no more progress events (started and finished events go on)."""
        self._progress = False

    # -- internals --------------------------------------------------------------------------

    def _new_message(
        self, speech: Speech, message_id: str | None, metadata: Mapping[str, Any], source: Source
    ) -> Message:
        msg = Message(speech, speech.next_index, message_id, metadata, source)
        speech.next_index += 1
        return msg

    def _skip_segmentless(self, speech: Speech) -> None:
        # Messages known to get no segment, at the head of the queue, end as skipped now;
        # _release() holds their events back until earlier messages have finished. Not
        # before the speech is scheduled: a discarded preemptive speech reports nothing.
        if not speech.handle.scheduled:
            return
        while speech.queue and not speech.queue[0].has_segment:
            self._skip(speech.queue.popleft())

    def _name(self, msg: Message) -> None:
        if msg.message_id is not None:
            return
        speech = msg.speech
        if speech.label is not None and not speech.label_used:
            speech.label_used = True
            msg.message_id, msg.metadata = speech.label
        else:
            speech.auto_named = True
            msg.message_id = auto_message_id(speech.handle.id, msg.index)

    def _skip(self, msg: Message) -> None:
        self._name(msg)
        msg.finished = self._finished_event(
            msg, "skipped", msg.speech.handle.interrupted, 0.0, None
        )
        self._unreleased.append(msg)
        self._release()

    @staticmethod
    def _finished_event(
        msg: Message, played: Played, interrupted: bool, position: float, transcript: str | None
    ) -> MessagePlaybackFinished:
        assert msg.message_id is not None
        return MessagePlaybackFinished(
            message_id=msg.message_id,
            speech_id=msg.speech.handle.id,
            index=msg.index,
            source=msg.source,
            metadata=msg.metadata,
            played=played,
            interrupted=interrupted,
            playback_position=max(0.0, float(position)),
            transcript=transcript,
            started_at=msg.started_at,
            finished_at=time.time(),
        )

    def _release(self) -> None:
        # Events leave strictly in playback order: a message's started event only once every
        # earlier message has finished, its finished event right after.
        while self._unreleased:
            head = self._unreleased[0]
            if head.pending_started is not None:
                started, head.pending_started = head.pending_started, None
                self._on_event(started)
            if head.finished is None:
                return
            self._unreleased.popleft()
            self._on_event(head.finished)

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
            self._report_unfinished(speech)
        # else: a discarded (preemptive) generation; nothing was ever going to play
        self._check_idle()

    def _report_unfinished(self, speech: Speech) -> None:
        for msg in list(self._unreleased):
            if msg.speech is speech and msg.finished is None:
                # the sink never reported the end of this segment
                self.message_finished(
                    msg, _estimated_position(msg), interrupted=True, transcript=None
                )
        while speech.queue:
            self._skip(speech.queue.popleft())
        if speech.label is not None and not speech.label_used and speech.next_index == 0:
            # The app named a message no audio ever came for (e.g. a say() whose TTS produced
            # nothing): report it as skipped, so a wait_for() on that id learns its fate.
            self._skip(self._new_message(speech, None, EMPTY_METADATA, speech.source))

    def _check_idle(self) -> None:
        if self._on_idle is not None and not self._speeches:
            on_idle, self._on_idle = self._on_idle, None
            on_idle()


def _estimated_position(msg: Message) -> float:
    if msg.started_at is None:
        return 0.0
    return max(0.0, time.time() - msg.started_at)
