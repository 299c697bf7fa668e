"""The ledger: the speeches being reported, their messages, and which segment carries which.

One ``Ledger`` per session, shared by the trackers attached to it one after another. A
tracker admits the speeches created while it is attached, each with the ``Reporter`` its
events go to. Announcers (``@track_messages``, the realtime tap, ``PlaybackTracker.label``)
queue messages per speech; the output on top of the chain binds each segment it forwards to
the next queued message of its speech, which then joins the session's ``PlaybackOrder``
(``ledger.order``), where what the sink says about it decides its end. The ledger knows
nothing of signals, handlers or how the output is installed.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping
from typing import Any

from livekit.agents.voice.speech_handle import SpeechHandle

from ._messages import Announced, Message, Reporter, Speech, State
from ._order import PlaybackOrder
from ._progress import Playhead
from .events import EMPTY_METADATA, Source
from .ids import auto_message_id

__all__ = ["Ledger", "ledger_for"]

# Which ledger reports on which speech: how @track_messages and the realtime tap, running
# inside a speech's tasks, find where to announce.
_reporting: weakref.WeakKeyDictionary[SpeechHandle, Ledger] = weakref.WeakKeyDictionary()


def ledger_for(handle: SpeechHandle | None) -> Ledger | None:
    """Return the ledger that reports on ``handle``, if any."""
    return None if handle is None else _reporting.get(handle)


class Ledger:
    """Per-session speech bookkeeping; see the module docstring."""

    def __init__(self) -> None:
        self.order = PlaybackOrder()
        self._speeches: dict[str, Speech] = {}  # admitted, not over

    def admit(self, handle: SpeechHandle, source: Source, reporter: Reporter) -> bool:
        """Report on ``handle``, a speech just created, to ``reporter``; False if it cannot
        be (already over, or already admitted)."""
        if handle.done() or handle.id in self._speeches:
            return False
        self._speeches[handle.id] = Speech(handle, reporter, source)
        _reporting[handle] = self
        handle.add_done_callback(self._on_speech_done)
        return True

    def speeches(self, reporter: Reporter) -> int:
        """How many speeches ``reporter`` is reporting that are not over."""
        return sum(1 for speech in self._speeches.values() if speech.reporter is reporter)

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

    def no_segment(self, handle: SpeechHandle, item: Announced) -> None:
        """No segment will carry ``item`` after all (no text followed its marker)."""
        speech = self._speeches.get(handle.id)
        if speech is not None and item in speech.queue:
            item.has_segment = False
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

    # -- the output ---------------------------------------------------------------------------

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
        self._close_ready(binding=speech)
        speech.begun = True
        self._skip_segmentless(speech)
        item = (
            speech.queue.popleft()
            if speech.queue
            else self._announced(speech, None, EMPTY_METADATA, speech.source)
        )
        if not has_audio:
            msg = self._skip(speech, item)
        else:
            followed = speech.reporter.wants_progress()
            playhead = Playhead(
                followed=followed, keep_words=followed and shows_words, paused_at=paused_at
            )
            msg = self._message(speech, item, State.BOUND, playhead)
            self.order.add(msg)
        self._skip_segmentless(speech)
        return msg

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

    def _close_ready(self, binding: Speech | None = None) -> None:
        # The speeches that can no longer play end here, in the order they were admitted
        # (dicts keep it), so that their last events take their place in playback order:
        # - a speech that is done (its done callback runs a loop iteration after the end
        #   of its playback, so the next speech's first segment can come first);
        # - what an interrupted speech that began playing still has queued, once another
        #   speech's segment is bound (``binding``): livekit moved on, it forwards nothing
        #   more;
        # - a speech that never began playing and is done (cut off before its turn) waits
        #   for the speeches admitted before it to be over: it would have played after them.
        if len(self._speeches) == 1 and binding is not None:
            return  # the binding speech alone: nothing else to end
        waiting = False  # a speech admitted before this one may still play
        for speech in list(self._speeches.values()):
            if speech.handle.done():
                if speech.begun or not waiting:
                    self._close(speech)
            else:
                moved_on = binding is not None and speech is not binding
                if moved_on and speech.begun and speech.handle.interrupted:
                    while speech.queue:
                        self._skip(speech, speech.queue.popleft())
                waiting = True

    def _skip(self, speech: Speech, item: Announced) -> Message:
        msg = self._message(speech, item, State.SKIPPED, None)
        self.order.skip(msg)
        return msg

    def _skip_segmentless(self, speech: Speech) -> None:
        # Messages known to get no segment, at the head of the queue, end as skipped now;
        # the order holds their events back until earlier messages have finished. Not
        # before the speech is scheduled: a discarded preemptive speech reports nothing.
        if not speech.handle.scheduled:
            return
        while speech.queue and not speech.queue[0].has_segment:
            self._skip(speech, speech.queue.popleft())

    def _on_speech_done(self, handle: SpeechHandle) -> None:
        if handle.id in self._speeches:
            self._close_ready()

    def _close(self, speech: Speech) -> None:
        del self._speeches[speech.handle.id]
        if _reporting.get(speech.handle) is self:
            del _reporting[speech.handle]
        speech.handle.remove_done_callback(self._on_speech_done)
        if speech.handle.scheduled:
            while speech.queue:
                self._skip(speech, speech.queue.popleft())
            if speech.label is not None and not speech.label_used and speech.next_index == 0:
                # The app named a message no audio ever came for (e.g. a say() whose TTS
                # produced nothing): report it skipped, so a wait_for() on it learns its fate.
                self._skip(speech, self._announced(speech, None, EMPTY_METADATA, speech.source))
        # else: a discarded (preemptive) generation; nothing was ever going to play
        self.order.speech_over(speech)
