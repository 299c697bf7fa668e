"""``PlaybackTracker``: the façade and lifecycle of one session's playback reporting."""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, overload

from livekit.agents import Agent, AgentSession
from livekit.agents.llm import AgentHandoff
from livekit.agents.voice.events import ConversationItemAddedEvent, SpeechCreatedEvent
from livekit.agents.voice.io import AudioOutput
from livekit.agents.voice.speech_handle import SpeechHandle

from . import _livekit
from ._dispatch import Dispatcher
from ._ledger import Ledger
from ._log import guarded, logger
from ._output import TrackingOutput
from ._realtime import RealtimeTaps
from ._words import WordTap
from .events import (
    Event,
    MessagePlaybackFinished,
    MessagePlaybackProgressed,
    MessagePlaybackStarted,
)
from .ids import check_message_id, check_metadata
from .markers import watch_untracked
from .signals import has_receivers, message_playback_progressed

__all__ = ["MessageNotPlayed", "PlaybackTracker", "TrackerStats", "attach", "tracker_for"]

# How many messages wait_for() remembers after their events (oldest forgotten first).
_HISTORY_SIZE = 1024

_trackers: weakref.WeakKeyDictionary[AgentSession[Any], PlaybackTracker] = (
    weakref.WeakKeyDictionary()
)

Kind = Literal["started", "finished"]


class MessageNotPlayed(Exception):
    """``wait_for(..., "started")``: the message finished without ever starting (skipped).

    Attributes:
        event: The message's ``MessagePlaybackFinished`` (``played == "skipped"``).
    """

    def __init__(self, event: MessagePlaybackFinished) -> None:
        super().__init__(
            f"message {event.message_id!r} of speech {event.speech_id} finished as "
            f"{event.played} without starting"
        )
        self.event = event


@dataclass(frozen=True, slots=True)
class TrackerStats:
    """How much state a tracker holds right now, for diagnostics and leak checks.

    Attributes:
        speeches: Speeches being reported that are not over yet.
        unreleased_messages: Messages bound to audio whose finished event is not out yet.
        open_segments: Segments handed to the sink whose end it has not reported yet.
        waiters: ``wait_for()`` calls waiting.
        history: Messages ``wait_for()`` remembers.
        handler_tasks: Async handler tasks running.
    """

    speeches: int
    unreleased_messages: int
    open_segments: int
    waiters: int
    history: int
    handler_tasks: int


@dataclass(eq=False)
class _Waiter:
    speech_id: str | None
    future: asyncio.Future[Event]


class PlaybackTracker:
    """Reports, per assistant message, when its audio started playing and how it ended.

    Get one with ``attach(session)``. The tracker puts a transparent ``AudioOutput`` on top
    of ``session.output.audio`` (without re-attaching livekit's chain below it) before each
    speech reads it, and reports every speech created after ``attach()``.
    """

    def __init__(
        self,
        session: AgentSession[Any],
        loop: asyncio.AbstractEventLoop,
        *,
        progress_interval: float | None = None,
    ) -> None:
        _check_interval(progress_interval)
        if _livekit.session_started(session) and session.output.audio is None:
            raise RuntimeError(
                "playback_hooks.attach(): the session has no audio output (it was started "
                "with audio output disabled or without one), so nothing can be heard"
            )
        self._session = session
        self._loop = loop
        self._attached = True
        self._ledger = Ledger(self._on_event)
        self._dispatcher = Dispatcher(session, loop)
        self._taps = RealtimeTaps(session, self._ledger)
        self._output: TrackingOutput | None = None  # the one on top of the chain
        self._outputs: list[TrackingOutput] = []  # every one installed, to unlink at the end
        # per (speech id, message id): the events wait_for() can return at once
        self._history: OrderedDict[tuple[str, str], dict[str, Event]] = OrderedDict()
        self._latest_speech: dict[str, str] = {}  # message id -> speech of its last event
        self._waiters: dict[tuple[str, Kind], list[_Waiter]] = {}
        self._closed: asyncio.Future[None] = loop.create_future()
        self._unwatch: dict[int, Callable[[], None]] = {}
        self._warned_untracked: set[type[Agent]] = set()
        self._progress_interval = progress_interval
        self._tick: asyncio.TimerHandle | None = None  # the next interval progress event
        self._word_taps: list[WordTap] = []  # under each transcription synchronizer seen
        self._words_looked_up: set[int] = set()  # ids of the outputs whose chain was searched

        session.on("speech_created", self._on_speech_created)
        session.on("conversation_item_added", self._on_conversation_item_added)
        session.on("close", self._on_session_close)
        if _livekit.session_started(session):
            self._install()
            self._watch_agent()
            self._taps.tap_current_agent()
        # else: RoomIO and the recorder install their outputs inside start(); the tracker
        # goes on top at the first speech (the greeting of on_enter, usually)

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
            RuntimeError: the tracker is detached, or the speech already started playing,
                is over, or was created before ``attach()``.
        """
        where = "PlaybackTracker.label()"
        if not isinstance(handle, SpeechHandle):
            raise TypeError(f"{where}: handle must be a SpeechHandle, got {type(handle).__name__}")
        check_message_id(id, where, "id")
        meta = MappingProxyType(dict(check_metadata(metadata, where)))
        if not self._attached:
            raise RuntimeError(f"{where}: the tracker is detached")
        if handle.done():
            raise RuntimeError(f"{where}: speech {handle.id} is already over")
        try:
            self._ledger.label(handle, id, meta)
        except (RuntimeError, ValueError) as e:
            raise type(e)(f"{where}: {e}") from None

    @overload
    async def wait_for(
        self,
        message_id: str,
        kind: Literal["started"] = ...,
        *,
        speech: SpeechHandle | None = ...,
        timeout: float | None = ...,
    ) -> MessagePlaybackStarted: ...
    @overload
    async def wait_for(
        self,
        message_id: str,
        kind: Literal["finished"],
        *,
        speech: SpeechHandle | None = ...,
        timeout: float | None = ...,
    ) -> MessagePlaybackFinished: ...
    async def wait_for(
        self,
        message_id: str,
        kind: Kind = "started",
        *,
        speech: SpeechHandle | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Wait for a message's started or finished event and return it.

        Returns at once with the event if it already happened (the last ``1024`` messages
        are remembered). Ids are matched exactly. Without ``speech``, the most recent
        message with that id counts, which may be an earlier turn's when ids repeat: pass
        ``speech=handle`` to wait for the message of that speech only (or use per-turn ids).

        Raises:
            MessageNotPlayed: ``kind`` is ``"started"`` and the message finished without
                starting (skipped); raised as soon as that is known.
            TimeoutError: no such event within ``timeout`` seconds.
            RuntimeError: the tracker is (or gets) detached before the event.
            TypeError: ``message_id`` is not a non-empty str, ``speech`` not a
                ``SpeechHandle``, or ``timeout`` not a number.
            ValueError: ``kind`` is not ``"started"`` or ``"finished"``, or ``timeout`` < 0.
        """
        where = "PlaybackTracker.wait_for()"
        if not isinstance(message_id, str) or not message_id:
            raise TypeError(f"{where}: message_id must be a non-empty str")
        if kind not in ("started", "finished"):
            raise ValueError(f"{where}: kind must be 'started' or 'finished', got {kind!r}")
        if speech is not None and not isinstance(speech, SpeechHandle):
            raise TypeError(
                f"{where}: speech must be a SpeechHandle or None, got {type(speech).__name__}"
            )
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError(f"{where}: timeout must be a number of seconds or None")
            if timeout < 0:
                raise ValueError(f"{where}: timeout must be >= 0")
        speech_id = speech.id if speech is not None else self._latest_speech.get(message_id)
        seen = self._history.get((speech_id, message_id)) if speech_id is not None else None
        if seen is not None:
            if kind in seen:
                return seen[kind]
            if isinstance(finished := seen.get("finished"), MessagePlaybackFinished):
                raise MessageNotPlayed(finished)
        if not self._attached:
            raise RuntimeError(f"{where}: the tracker is detached")
        waiter = _Waiter(speech.id if speech is not None else None, self._loop.create_future())
        waiters = self._waiters.setdefault((message_id, kind), [])
        waiters.append(waiter)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"message {message_id!r} was not {kind} within {timeout} s"
            ) from None
        finally:
            waiters.remove(waiter)
            if not waiters:
                self._waiters.pop((message_id, kind), None)

    @property
    def progress_interval(self) -> float | None:
        """Seconds between two interval progress events while a message plays (None: off)."""
        return self._progress_interval

    def now_playing(self) -> MessagePlaybackProgressed | None:
        """The message playing at this instant, with its live position; None if none is.

        "Playing" as the events tell it: its started event is out and its finished event is
        not. Cheap (no I/O, no waiting): call it from any handler or tool. ``position`` is
        computed now by the rule of ``MessagePlaybackProgressed.position`` and never less
        than in an earlier event or call for that message. ``heard_text`` is followed only
        while progress is wanted (a ``message_playback_progressed`` receiver for this
        session, or a ``progress_interval``) when the message's audio began; it is None
        otherwise, or without a transcription synchronizer. None once detached.
        """
        if not self._attached:
            return None
        msg = self._ledger.playing_message()
        if msg is None:
            return None
        return self._ledger.progress(msg, time.time())

    def stats(self) -> TrackerStats:
        """The sizes of the tracker's state (all zero but ``history`` once it is idle)."""
        counts = self._ledger.counts()
        return TrackerStats(
            speeches=counts.speeches,
            unreleased_messages=counts.unreleased_messages,
            open_segments=sum(output.open_segments for output in self._outputs),
            waiters=sum(len(waiters) for waiters in self._waiters.values()),
            history=len(self._history),
            handler_tasks=self._dispatcher.running_tasks,
        )

    def detach(self) -> None:
        """Stop reporting new speeches; finish reporting the ones in flight, then stop.

        The tracker's output leaves the top of the chain at once (the chain below is not
        touched), ``tracker_for(session)`` is None and ``attach()`` works again. Speeches
        already being reported still get every event; once they are over, waiting
        ``wait_for()`` calls fail and async handler tasks are cancelled (``aclose()``
        waits for that). Safe to call twice.
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
        if _trackers.get(session) is self:
            del _trackers[session]
        if self._output is not None and session.output.audio is self._output:
            _livekit.install_quietly(session.output, self._output.next_in_chain)
        self._stop_progress()
        self._ledger.stop_admitting(self._on_idle)

    async def aclose(self) -> None:
        """``detach()``, then wait until the speeches in flight are reported and every
        handler task has finished."""
        self.detach()
        await asyncio.shield(self._closed)

    def __repr__(self) -> str:
        state = "attached" if self._attached else "detached"
        return f"<PlaybackTracker {state} session={self._session!r}>"

    # -- installing -----------------------------------------------------------------------

    def _install(self) -> None:
        """Put a tracking output on top of the chain, unless one of ours is in it already."""
        top = self._session.output.audio
        if top is None or (self._output is not None and _in_chain(top, self._output)):
            return
        if self._output is not None:
            logger.info(
                "session.output.audio was replaced after attach(); tracking the new output",
                extra={"playback_hooks.audio_output": repr(top)},
            )
        self._output = TrackingOutput(self._ledger, top, wants_progress=self._wants_progress)
        self._outputs.append(self._output)
        _livekit.install_quietly(self._session.output, self._output)

    # -- events from the ledger -------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if isinstance(event, MessagePlaybackProgressed):
            self._dispatcher.send(event)
            return
        self._pace_progress(event)
        kind: Kind = "started" if isinstance(event, MessagePlaybackStarted) else "finished"
        key = (event.speech_id, event.message_id)
        seen = self._history.get(key)
        if seen is None or kind in seen or "finished" in seen:
            # An id may repeat within a speech (two markers with the same id): an event of a
            # kind already seen, or any event after a finished one, starts a new message.
            seen = self._history[key] = {}
        self._history.move_to_end(key)
        seen[kind] = event
        self._latest_speech[event.message_id] = event.speech_id
        while len(self._history) > _HISTORY_SIZE:
            (speech_id, message_id), _ = self._history.popitem(last=False)
            if self._latest_speech.get(message_id) == speech_id:
                del self._latest_speech[message_id]
        self._wake(event, kind)
        self._dispatcher.send(event)

    def _wake(self, event: Event, kind: Kind) -> None:
        for waiter in self._waiters.get((event.message_id, kind), ()):
            if waiter.speech_id in (None, event.speech_id) and not waiter.future.done():
                waiter.future.set_result(event)
        if isinstance(event, MessagePlaybackFinished) and event.played == "skipped":
            for waiter in self._waiters.get((event.message_id, "started"), ()):
                if waiter.speech_id in (None, event.speech_id) and not waiter.future.done():
                    waiter.future.set_exception(MessageNotPlayed(event))

    # -- session events -------------------------------------------------------------------

    def _on_speech_created(self, ev: SpeechCreatedEvent) -> None:
        # Emitted before the speech's task reads session.output.audio: the moment to be on
        # top of the chain, whatever RoomIO, the recorder or the app put there before.
        guarded(self._install)
        self._ledger.admit(ev.speech_handle, "say" if ev.source == "say" else "llm")
        self._watch_agent()
        self._taps.tap_current_agent()

    def _on_conversation_item_added(self, ev: ConversationItemAddedEvent) -> None:
        if isinstance(ev.item, AgentHandoff):
            self._taps.watch_handoff()

    def _on_session_close(self, _: Any) -> None:
        self.detach()

    def _on_idle(self) -> None:
        # Every speech reported: deliver what is queued (its callback was scheduled before
        # this one), then stop.
        self._loop.call_soon(self._close)

    def _close(self) -> None:
        self._dispatcher.deliver_pending()
        tasks = self._dispatcher.close()
        for (message_id, kind), waiters in self._waiters.items():
            for waiter in waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(
                        RuntimeError(
                            f"PlaybackTracker.wait_for(): the tracker was detached before "
                            f"message {message_id!r} was {kind}"
                        )
                    )
        top = self._session.output.audio
        for output in self._outputs:
            # one still in the chain (something was put on top of it) keeps forwarding
            if top is None or not _in_chain(top, output):
                output.unlink()

        def closed(_: Any = None) -> None:
            if not self._closed.done():
                self._closed.set_result(None)

        if tasks:
            asyncio.gather(*tasks, return_exceptions=True).add_done_callback(closed)
        else:
            closed()

    # -- agents: untracked markers, realtime sessions ---------------------------------------

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
        name = type(agent).__qualname__
        logger.warning(
            "%s.llm_node yields MessageBoundary markers but is not decorated with "
            "@playback_hooks.track_messages; the markers only split the audio and the "
            "messages get automatic ids",
            name,
            extra={"playback_hooks.agent": name},
        )

    # -- live progress --------------------------------------------------------------------

    def _wants_progress(self, output: TrackingOutput) -> bool:
        # asked once per segment, when its first frame is forwarded; the word tap goes in
        # the first time progress is wanted, so that nobody pays for words nobody follows
        wanted = self._progress_interval is not None or has_receivers(
            message_playback_progressed, self._session
        )
        if wanted and self._attached and id(output) not in self._words_looked_up:
            self._words_looked_up.add(id(output))
            self._tap_words(output)
        return wanted

    def _tap_words(self, output: TrackingOutput) -> None:
        """Listen to the words the chain's transcription synchronizer shows, if it has one.

        Safe between two segments as at any other moment: the words of the segment being
        shown go through the tap from the next one on.
        """
        synchronizer = _livekit.transcript_synchronizer(output.next_in_chain)
        if synchronizer is None:
            return
        for tap in self._word_taps:
            if tap.synchronizer is synchronizer and synchronizer.text_output.next_in_chain is tap:
                output.words = tap
                return
        if not _livekit.text_tap_supported(synchronizer):
            logger.info(
                "this livekit-agents release does not let playback_hooks see the words its "
                "transcription synchronizer shows; heard_text will be None"
            )
            return
        tap = WordTap(self._ledger, synchronizer, synchronizer.text_output.next_in_chain)
        _livekit.insert_text_tap(synchronizer, tap)
        self._word_taps.append(tap)
        output.words = tap

    def _pace_progress(self, event: MessagePlaybackStarted | MessagePlaybackFinished) -> None:
        # interval progress events: from each started event until its finished event
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        if (
            isinstance(event, MessagePlaybackStarted)
            and self._progress_interval is not None
            and self._attached
        ):
            self._tick = self._loop.call_later(self._progress_interval, self._on_tick)

    def _on_tick(self) -> None:
        self._tick = None
        msg = self._ledger.playing_message()
        if msg is None or self._progress_interval is None or not self._attached:
            return
        guarded(self._ledger.progressed, msg, time.time())
        self._tick = self._loop.call_later(self._progress_interval, self._on_tick)

    def _stop_progress(self) -> None:
        self._ledger.stop_progress()
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        for tap in self._word_taps:
            tap.close()
            _livekit.remove_text_tap(tap.synchronizer, tap)
        self._word_taps.clear()
        for output in self._outputs:
            output.words = None


def _check_interval(value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            "attach(): progress_interval must be a number of seconds or None, "
            f"got {type(value).__name__}"
        )
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"attach(): progress_interval must be > 0 seconds, got {value!r}")


def _in_chain(top: AudioOutput, output: AudioOutput) -> bool:
    node: AudioOutput | None = top
    while node is not None:
        if node is output:
            return True
        node = node.next_in_chain
    return False


def attach(
    session: AgentSession[Any], *, progress_interval: float | None = None
) -> PlaybackTracker:
    """Start reporting message playback for ``session``; returns its ``PlaybackTracker``.

    Call it before ``await session.start(...)`` (or any time after): the tracker goes on
    top of the final output chain (after RoomIO, the transcription synchronizer and the
    recorder) before the first speech reads it, so a greeting said in ``on_enter`` is
    reported. Speeches created before ``attach()`` are not reported at all, never in part.
    Idempotent: a second call returns the same tracker.

    Args:
        session: The session to report on.
        progress_interval: Also send a ``MessagePlaybackProgressed`` every this many
            seconds while a message plays (off by default: progress events then come with
            each word shown, each run the sink reports, each pause and resume).

    Raises:
        TypeError: ``session`` is not an ``AgentSession``, or ``progress_interval`` is not
            a number.
        ValueError: ``progress_interval`` is not > 0, or differs from the one of the tracker
            already attached.
        RuntimeError: the session was started without an audio output, or no event loop
            is running.
    """
    if not isinstance(session, AgentSession):
        raise TypeError(f"attach(): session must be an AgentSession, got {type(session).__name__}")
    _check_interval(progress_interval)
    existing = _trackers.get(session)
    if existing is not None and existing.attached:
        if progress_interval is not None and progress_interval != existing.progress_interval:
            raise ValueError(
                f"attach(): the session's tracker is already attached with "
                f"progress_interval={existing.progress_interval!r}; detach() it first"
            )
        return existing
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "attach() must be called from the event loop that runs the session"
        ) from None
    tracker = PlaybackTracker(session, loop, progress_interval=progress_interval)
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
