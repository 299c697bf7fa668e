"""``PlaybackTracker``: turns the sink's per-segment playback events into message events."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeVar, overload

from livekit import rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.llm import AgentHandoff
from livekit.agents.voice.events import ConversationItemAddedEvent, SpeechCreatedEvent
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities
from livekit.agents.voice.speech_handle import SpeechHandle

from . import _livekit
from .events import MessagePlaybackFinished, MessagePlaybackStarted, Played, Source
from .ids import auto_message_id, check_message_id, check_metadata
from .markers import watch_untracked
from .signals import Dispatcher, Event, message_playback_finished, message_playback_started

__all__ = ["PlaybackTracker", "attach", "tracker_for"]

logger = logging.getLogger("playback_hooks")

_EMPTY: Mapping[str, Any] = MappingProxyType({})

# How many message ids wait_for() remembers after their events (oldest forgotten first).
_HISTORY_SIZE = 1024

_trackers: weakref.WeakKeyDictionary[AgentSession[Any], PlaybackTracker] = (
    weakref.WeakKeyDictionary()
)

_T = TypeVar("_T")

Announce = Callable[[str | None, Mapping[str, Any], bool], None]


@dataclass(eq=False)
class _Message:
    speech: _Speech
    index: int
    message_id: str | None  # None: named when it gets its segment (label or automatic id)
    metadata: Mapping[str, Any]
    source: Source
    has_segment: bool = True  # False once it is known no segment will carry it
    truncated: bool = False
    started: MessagePlaybackStarted | None = None
    started_at: float | None = None
    finished: MessagePlaybackFinished | None = None


@dataclass(eq=False)
class _Speech:
    handle: SpeechHandle
    source: Source = "llm"
    queue: deque[_Message] = field(default_factory=deque)  # announced, not yet bound
    next_index: int = 0
    label: tuple[str, Mapping[str, Any]] | None = None
    label_used: bool = False
    messages: int = 0  # messages created so far
    auto_named: bool = False  # a message of it already got an automatic id


def guarded(fn: Callable[..., _T], *args: Any) -> _T | None:
    """Run a step of the tracker's bookkeeping that runs inside livekit's audio path.

    Whatever goes wrong in it is logged, never raised into livekit: the audio goes on.
    """
    try:
        return fn(*args)
    except Exception:
        logger.exception(
            "playback_hooks internal error; playback events may be incomplete",
            extra={"step": getattr(fn, "__qualname__", repr(fn))},
        )
        return None


class _TrackingOutput(_livekit.HookedAudioOutput):
    """The transparent ``AudioOutput`` placed on top of the session's audio chain."""

    def __init__(self, tracker: PlaybackTracker, next_in_chain: AudioOutput) -> None:
        super().__init__(
            label=next_in_chain.label,
            capabilities=AudioOutputCapabilities(pause=True),
            next_in_chain=next_in_chain,
            sample_rate=None,
        )
        self._tracker: PlaybackTracker | None = tracker
        # segments handed to the sink and not yet reported finished, oldest first; None
        # stands for a segment no message was bound to
        self._segments: deque[_Message | None] = deque()
        self._capturing: _Message | None = None
        self._capturing_any = False  # a frame of the current segment arrived
        self._counted = False  # the base class counted the current segment
        # what is below us never changes (livekit swaps sinks beneath its proxy), so the
        # per-frame path skips the property lookup
        self._below: AudioOutput = self.next_in_chain

    @property
    def next_in_chain(self) -> AudioOutput:
        nxt = super().next_in_chain
        assert nxt is not None
        return nxt

    @property
    def sample_rate(self) -> int | None:
        return self._below.sample_rate

    def release(self) -> None:
        """Stop reporting; keep forwarding for speeches that still hold this output."""
        self._tracker = None
        self._segments.clear()
        self._capturing = None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        if self._capturing_any:
            # the steady state: one attribute test, then the sink
            if not self._counted:
                self._counted = True
                await super().capture_frame(frame)
            await self._below.capture_frame(frame)
            return
        self._capturing_any = True
        msg = self._guarded(self._bind, True)
        self._capturing = msg
        self._segments.append(msg)
        try:
            await self._below.capture_frame(frame)
        except BaseException:
            # The sink refused the segment's first frame, so it will never report this
            # segment: do not count it (livekit's wait_for_playout() would wait forever)
            # and end its message here.
            self._guarded(self._segment_refused, msg)
            raise
        # Counted once the sink accepted the frame, unlike the usual super()-first order.
        # The base class counts a segment on its first frame only, so later frames skip it.
        self._counted = True
        await super().capture_frame(frame)

    def flush(self) -> None:
        super().flush()
        if not self._capturing_any:
            # a segment with no audio (interrupted before its first frame, or a TTS that
            # produced nothing): its message was never heard
            self._guarded(self._bind, False)
        self._capturing_any = False
        self._counted = False
        self._capturing = None
        self._below.flush()

    def clear_buffer(self) -> None:
        self._below.clear_buffer()

    def on_playback_started(self, *, created_at: float) -> None:
        super().on_playback_started(created_at=created_at)
        self._guarded(self._segment_started, created_at)

    def on_playback_finished(
        self,
        *,
        playback_position: float,
        interrupted: bool,
        synchronized_transcript: str | None = None,
    ) -> None:
        super().on_playback_finished(
            playback_position=playback_position,
            interrupted=interrupted,
            synchronized_transcript=synchronized_transcript,
        )
        self._guarded(
            self._segment_finished, playback_position, interrupted, synchronized_transcript
        )

    def _on_input_truncated(self) -> None:
        if self._capturing is not None:
            self._capturing.truncated = True

    def _on_capture_cancelled(self) -> None:
        self._guarded(self._segment_finished, 0.0, True, None)

    def _guarded(self, fn: Callable[..., _T], *args: Any) -> _T | None:
        if self._tracker is None:
            return None
        return guarded(fn, *args)

    def _bind(self, has_audio: bool) -> _Message | None:
        assert self._tracker is not None
        return self._tracker._bind_segment(has_audio=has_audio)

    def _segment_started(self, created_at: float) -> None:
        if self._tracker is not None and self._segments:
            msg = self._segments[0]
            if msg is not None and msg.started_at is None:
                self._tracker._message_started(msg, created_at)

    def _segment_finished(self, position: float, interrupted: bool, transcript: str | None) -> None:
        if self._tracker is None or not self._segments:
            return
        msg = self._segments.popleft()
        if msg is not None:
            self._tracker._message_finished(msg, position, interrupted, transcript)

    def _segment_refused(self, msg: _Message | None) -> None:
        if self._segments and self._segments[-1] is msg:
            self._segments.pop()
        self._capturing = None
        if msg is not None and self._tracker is not None:
            self._tracker._message_finished(msg, 0.0, True, None)

    def _abandon(self, msg: _Message) -> None:
        # the speech ended without the sink reporting this segment: absorb the late report
        for i, seg in enumerate(self._segments):
            if seg is msg:
                self._segments[i] = None


class PlaybackTracker:
    """Reports, per assistant message, when its audio started playing and how it ended.

    Get one with ``attach(session)``. The tracker is a façade: the ``AudioOutput`` it puts
    on top of ``session.output.audio`` is private and transparent.
    """

    def __init__(self, session: AgentSession[Any], loop: asyncio.AbstractEventLoop) -> None:
        audio = session.output.audio
        if audio is None:
            raise RuntimeError(
                "playback_hooks.attach(): the session has no audio output; "
                "call attach() after `await session.start(...)`"
            )
        self._session = session
        self._loop = loop
        self._attached = True
        self._previous = audio
        self._output = _TrackingOutput(self, audio)
        self._speeches: dict[str, _Speech] = {}
        self._bound: deque[_Message] = deque()  # bound, finished event not yet emitted
        self._history: OrderedDict[str, dict[str, Event]] = OrderedDict()
        self._waiters: dict[tuple[str, str], list[asyncio.Future[Event]]] = {}
        self._dispatcher = Dispatcher(session, loop)
        self._drain: asyncio.Future[Any] | None = None
        self._replaced_warned = False

        from .realtime import RealtimeTaps

        self._taps = RealtimeTaps(self)

        session.on("speech_created", self._on_speech_created)
        session.on("conversation_item_added", self._on_conversation_item_added)
        session.on("close", self._on_session_close)
        self._unwatch: dict[int, Callable[[], None]] = {}
        self._warned_untracked: set[type[Agent]] = set()

        session.output.audio = self._output
        self._watch_agent()
        self._taps.tap_current_agent()

    # -- public API ----------------------------------------------------------------------

    @property
    def session(self) -> AgentSession[Any]:
        """The session this tracker reports on."""
        return self._session

    @property
    def attached(self) -> bool:
        """False once ``detach()`` ran (or the session closed)."""
        return self._attached

    def label(
        self, handle: SpeechHandle, id: str, *, metadata: Mapping[str, Any] | None = None
    ) -> None:
        """Name the message of a ``say()`` / ``generate_reply()`` speech.

        The id and metadata go to the speech's first message that has no id of its own
        (no ``MessageBoundary`` or realtime item id). Call it right after creating the
        speech, before it plays.

        Raises:
            TypeError: ``handle`` is not a ``SpeechHandle``, ``id`` not a str, or
                ``metadata`` not a mapping.
            ValueError: ``id`` is empty or reserved, or the speech was already labelled.
            RuntimeError: the speech already started playing or is over.
        """
        if not isinstance(handle, SpeechHandle):
            raise TypeError(
                "PlaybackTracker.label(): handle must be a SpeechHandle, "
                f"got {type(handle).__name__}"
            )
        check_message_id(id, "PlaybackTracker.label()", "id")
        meta = MappingProxyType(dict(check_metadata(metadata, "PlaybackTracker.label()")))
        if not self._attached:
            raise RuntimeError("PlaybackTracker.label(): the tracker is detached")
        if handle.done():
            raise RuntimeError(f"PlaybackTracker.label(): speech {handle.id} is already over")
        speech = self._speech(handle)
        if speech.label is not None:
            raise ValueError(
                f"PlaybackTracker.label(): speech {handle.id} is already labelled "
                f"{speech.label[0]!r}"
            )
        if speech.auto_named:
            raise RuntimeError(
                f"PlaybackTracker.label(): speech {handle.id} already started playing; "
                "label it right after say() / generate_reply()"
            )
        speech.label = (id, meta)

    @overload
    async def wait_for(
        self, message_id: str, kind: Literal["started"] = ..., *, timeout: float | None = ...
    ) -> MessagePlaybackStarted: ...
    @overload
    async def wait_for(
        self, message_id: str, kind: Literal["finished"], *, timeout: float | None = ...
    ) -> MessagePlaybackFinished: ...
    async def wait_for(
        self,
        message_id: str,
        kind: Literal["started", "finished"] = "started",
        *,
        timeout: float | None = None,
    ) -> Any:
        """Wait for a message's started or finished event and return it.

        Returns at once with the event if it already happened (the last ``1024`` message
        ids are remembered). Ids are matched exactly; if an id repeats, the most recent
        event is returned.

        Raises:
            TimeoutError: no such event within ``timeout`` seconds.
            RuntimeError: the tracker is (or gets) detached before the event.
            TypeError: ``message_id`` is not a non-empty str, or ``timeout`` not a number.
            ValueError: ``kind`` is not ``"started"`` or ``"finished"``, or ``timeout`` < 0.
        """
        if not isinstance(message_id, str) or not message_id:
            raise TypeError("PlaybackTracker.wait_for(): message_id must be a non-empty str")
        if kind not in ("started", "finished"):
            raise ValueError(
                f"PlaybackTracker.wait_for(): kind must be 'started' or 'finished', got {kind!r}"
            )
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError(
                    "PlaybackTracker.wait_for(): timeout must be a number of seconds or None"
                )
            if timeout < 0:
                raise ValueError("PlaybackTracker.wait_for(): timeout must be >= 0")
        if (seen := self._history.get(message_id)) is not None and kind in seen:
            return seen[kind]
        if not self._attached:
            raise RuntimeError("PlaybackTracker.wait_for(): the tracker is detached")
        fut: asyncio.Future[Event] = self._loop.create_future()
        waiters = self._waiters.setdefault((message_id, kind), [])
        waiters.append(fut)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"message {message_id!r} was not {kind} within {timeout} s"
            ) from None
        finally:
            if fut in waiters:
                waiters.remove(fut)
            if not waiters:
                self._waiters.pop((message_id, kind), None)

    def detach(self) -> None:
        """Stop reporting at once, restore the previous output and cancel handler tasks.

        Safe to call twice. ``tracker_for(session)`` is None afterwards and ``attach()``
        works again.
        """
        if not self._attached:
            return
        self._attached = False
        session = self._session
        session.off("speech_created", self._on_speech_created)
        session.off("conversation_item_added", self._on_conversation_item_added)
        session.off("close", self._on_session_close)
        self._taps.close()
        for unwatch in self._unwatch.values():
            unwatch()
        self._unwatch.clear()
        # speeches that may still hold the wrapper keep playing through it
        in_flight = [s.handle for s in self._speeches.values() if not s.handle.done()]
        for speech in self._speeches.values():
            speech.handle.remove_done_callback(self._on_speech_done)
        self._speeches.clear()
        self._bound.clear()
        self._output.release()
        if session.output.audio is self._output:
            below = self._output.next_in_chain
            sink = _livekit.sink_behind_proxy(below) if below is not self._previous else None
            session.output.audio = sink if sink is not None else self._previous
            if sink is not None:
                # livekit put its swap proxy between us and a bare sink: unhook it once
                # no speech can still play through it
                self._unhook_when_done(below, in_flight)
        elif session.output.audio is not None and not self._replaced_warned:
            # (None: the session is closing)
            logger.warning(
                "playback_hooks: session.output.audio was replaced after attach(); "
                "detach() leaves it as it is",
                extra={"audio_output": repr(session.output.audio)},
            )
        tasks = self._dispatcher.close()
        for (message_id, kind), futs in self._waiters.items():
            for fut in futs:
                if not fut.done():
                    fut.set_exception(
                        RuntimeError(
                            f"PlaybackTracker.wait_for(): the tracker was detached before "
                            f"message {message_id!r} was {kind}"
                        )
                    )
        self._waiters.clear()
        if _trackers.get(session) is self:
            del _trackers[session]
        if tasks:
            self._drain = asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    def _unhook_when_done(proxy: AudioOutput, in_flight: list[SpeechHandle]) -> None:
        pending = set(in_flight)
        if not pending:
            _livekit.unhook_sink_proxy(proxy)
            return

        def on_done(handle: SpeechHandle) -> None:
            pending.discard(handle)
            if not pending:
                _livekit.unhook_sink_proxy(proxy)

        for handle in in_flight:
            handle.add_done_callback(on_done)

    async def aclose(self) -> None:
        """``detach()``, then wait until every handler task has finished."""
        self.detach()
        if self._drain is not None:
            await self._drain

    def __repr__(self) -> str:
        state = "attached" if self._attached else "detached"
        return f"<PlaybackTracker {state} output={self._output.label!r}>"

    # -- announcing messages (markers, realtime items) ----------------------------------

    def _speech(self, handle: SpeechHandle) -> _Speech:
        speech = self._speeches.get(handle.id)
        if speech is None:
            speech = self._speeches[handle.id] = _Speech(handle)
            handle.add_done_callback(self._on_speech_done)
        return speech

    def _announce(
        self,
        handle: SpeechHandle,
        message_id: str | None,
        metadata: Mapping[str, Any],
        source: Source,
        has_segment: bool,
    ) -> _Message | None:
        if not self._attached or handle.done():
            return None
        speech = self._speech(handle)
        msg = self._new_message(speech, message_id, metadata, source)
        msg.has_segment = has_segment
        speech.queue.append(msg)
        if not has_segment:
            self._release_segmentless(speech)
        return msg

    def _new_message(
        self, speech: _Speech, message_id: str | None, metadata: Mapping[str, Any], source: Source
    ) -> _Message:
        msg = _Message(speech, speech.next_index, message_id, metadata, source)
        speech.next_index += 1
        speech.messages += 1
        return msg

    def _realtime_item_begins(self, handle: SpeechHandle, msg: _Message) -> None:
        """livekit started processing ``msg``: earlier unbound items will get no segment."""
        speech = self._speeches.get(handle.id)
        if speech is None or msg not in speech.queue:
            return
        for earlier in speech.queue:
            if earlier is msg:
                break
            earlier.has_segment = False
        self._release_segmentless(speech)

    def _release_segmentless(self, speech: _Speech) -> None:
        # messages known to get no segment, at the head of the queue, end as skipped now;
        # _emit_ready() holds their events back until earlier messages have finished. Not
        # before the speech is scheduled: a discarded preemptive speech reports nothing.
        if not speech.handle.scheduled:
            return
        while speech.queue and not speech.queue[0].has_segment:
            self._skip(speech.queue.popleft())

    # -- binding segments to messages -----------------------------------------------------

    def _bind_segment(self, *, has_audio: bool) -> _Message | None:
        handle = _livekit.current_speech()
        if handle is None or not self._attached:
            return None
        for other in list(self._speeches.values()):
            if other.handle is not handle and other.handle.done():
                self._finish_speech(other)
        speech = self._speech(handle)
        self._release_segmentless(speech)
        if speech.queue:
            msg = speech.queue.popleft()
        else:
            msg = self._new_message(speech, None, _EMPTY, speech.source)
        if has_audio:
            self._name(msg)
            self._bound.append(msg)
        else:
            self._skip(msg)
        self._release_segmentless(speech)
        return msg

    def _name(self, msg: _Message) -> None:
        if msg.message_id is not None:
            return
        speech = msg.speech
        if speech.label is not None and not speech.label_used:
            speech.label_used = True
            msg.message_id, msg.metadata = speech.label
        else:
            speech.auto_named = True
            msg.message_id = auto_message_id(speech.handle.id, msg.index)

    # -- playback -------------------------------------------------------------------------

    def _message_started(self, msg: _Message, created_at: float) -> None:
        msg.started_at = created_at
        assert msg.message_id is not None
        msg.started = MessagePlaybackStarted(
            message_id=msg.message_id,
            speech_id=msg.speech.handle.id,
            index=msg.index,
            source=msg.source,
            metadata=msg.metadata,
            started_at=created_at,
        )
        self._emit_ready()

    def _message_finished(
        self, msg: _Message, position: float, interrupted: bool, transcript: str | None
    ) -> None:
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
        self._emit_ready()

    def _skip(self, msg: _Message) -> None:
        self._name(msg)
        msg.finished = self._finished_event(
            msg, "skipped", msg.speech.handle.interrupted, 0.0, None
        )
        self._bound.append(msg)
        self._emit_ready()

    def _finished_event(
        self,
        msg: _Message,
        played: Played,
        interrupted: bool,
        position: float,
        transcript: str | None,
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

    def _emit_ready(self) -> None:
        # Events leave strictly in playback order: a message's started event only once every
        # earlier message has finished, its finished event right after.
        while self._bound:
            head = self._bound[0]
            if head.started is not None:
                self._emit(message_playback_started, head.started)
                head.started = None
            if head.finished is None:
                return
            self._bound.popleft()
            self._emit(message_playback_finished, head.finished)

    def _emit(self, signal: Any, event: Event) -> None:
        kind = "started" if isinstance(event, MessagePlaybackStarted) else "finished"
        seen = self._history.get(event.message_id)
        if seen is None or (kind == "started" and "finished" in seen):
            seen = self._history[event.message_id] = {}
        self._history.move_to_end(event.message_id)
        seen[kind] = event
        while len(self._history) > _HISTORY_SIZE:
            self._history.popitem(last=False)
        for fut in self._waiters.get((event.message_id, kind), ()):
            if not fut.done():
                fut.set_result(event)
        self._dispatcher.send(signal, event)

    # -- speech lifecycle -----------------------------------------------------------------

    def _on_speech_created(self, ev: SpeechCreatedEvent) -> None:
        speech = self._speech(ev.speech_handle)
        if ev.source == "say":
            speech.source = "say"
        self._check_output()
        self._watch_agent()
        self._taps.tap_current_agent()

    def _on_speech_done(self, handle: SpeechHandle) -> None:
        speech = self._speeches.get(handle.id)
        if speech is not None:
            self._finish_speech(speech)

    def _finish_speech(self, speech: _Speech) -> None:
        self._speeches.pop(speech.handle.id, None)
        speech.handle.remove_done_callback(self._on_speech_done)
        if not speech.handle.scheduled:
            return  # a discarded (preemptive) generation: nothing was ever going to play
        for msg in list(self._bound):
            if msg.speech is speech and msg.finished is None:
                # the sink never reported the end of this segment
                self._output._abandon(msg)
                self._message_finished(msg, self._estimate_position(msg), True, None)
        while speech.queue:
            self._skip(speech.queue.popleft())
        if speech.label is not None and not speech.label_used and speech.messages == 0:
            self._skip(self._new_message(speech, None, _EMPTY, speech.source))

    @staticmethod
    def _estimate_position(msg: _Message) -> float:
        if msg.started_at is None:
            return 0.0
        return max(0.0, time.time() - msg.started_at)

    def _watch_agent(self) -> None:
        try:
            agent = self._session.current_agent
        except RuntimeError:
            return
        if id(agent) in self._unwatch:
            return
        unwatch = watch_untracked(agent, self._on_untracked_marker)
        if unwatch is not None:
            self._unwatch[id(agent)] = unwatch

    def _on_untracked_marker(self, agent: Agent) -> None:
        if type(agent) in self._warned_untracked:
            return
        self._warned_untracked.add(type(agent))
        logger.warning(
            "playback_hooks: an llm_node yields MessageBoundary markers but is not decorated "
            "with @playback_hooks.track_messages; the markers only split the audio and the "
            "messages get automatic ids",
            extra={"agent": type(agent).__qualname__},
        )

    def _on_conversation_item_added(self, ev: ConversationItemAddedEvent) -> None:
        if isinstance(ev.item, AgentHandoff):
            self._taps.watch_handoff()

    def _on_session_close(self, _: Any) -> None:
        # the session's speeches are over and their events emitted: hand them out, then stop
        self._dispatcher.deliver_pending()
        self.detach()

    def _check_output(self) -> None:
        audio = self._session.output.audio
        while audio is not None and audio is not self._output:
            audio = audio.next_in_chain
        if audio is None and not self._replaced_warned:
            self._replaced_warned = True
            logger.warning(
                "playback_hooks: session.output.audio was replaced after attach(); no "
                "playback events are reported until attach() is called again",
                extra={"audio_output": repr(self._session.output.audio)},
            )
            _trackers.pop(self._session, None)
            self.detach()


def attach(session: AgentSession[Any]) -> PlaybackTracker:
    """Start reporting message playback for ``session``; returns its ``PlaybackTracker``.

    Call it after ``await session.start(...)`` (RoomIO installs the audio output there).
    Idempotent: a second call returns the same tracker.

    Raises:
        TypeError: ``session`` is not an ``AgentSession``.
        RuntimeError: the session has no audio output yet, or no event loop is running.
    """
    if not isinstance(session, AgentSession):
        raise TypeError(f"attach(): session must be an AgentSession, got {type(session).__name__}")
    existing = _trackers.get(session)
    if existing is not None and existing.attached:
        return existing
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "attach() must be called from the event loop that runs the session"
        ) from None
    tracker = PlaybackTracker(session, loop)
    _trackers[session] = tracker
    return tracker


def tracker_for(session: AgentSession[Any]) -> PlaybackTracker | None:
    """Return the session's attached tracker, or None.

    Raises:
        TypeError: ``session`` is not an ``AgentSession``.
    """
    if not isinstance(session, AgentSession):
        raise TypeError(
            f"tracker_for(): session must be an AgentSession, got {type(session).__name__}"
        )
    return _trackers.get(session)


def announcer_for(agent: Agent | None, handle: SpeechHandle | None) -> Announce | None:
    """Return how ``@track_messages`` announces messages of ``handle``, or None if untracked."""
    if agent is None or handle is None:
        return None
    try:
        session = agent.session
    except RuntimeError:
        return None
    tracker = _trackers.get(session)
    if tracker is None:
        return None

    def announce(message_id: str | None, metadata: Mapping[str, Any], has_segment: bool) -> None:
        guarded(tracker._announce, handle, message_id, metadata, "llm", has_segment)

    return announce
