"""``PlaybackTracker``: the façade and lifecycle of one attachment to a session.

A tracker reports the speeches created while it is attached, whole: it admits each one into
the session's ledger with its ``_Reporter``, which takes the speech's events (for
``wait_for()``, interval progress and the handlers' tasks) until the speech is over, also
after ``detach()``. The parts it delegates to: ``_session`` (the session's ledger, delivery
queue and output, shared by its trackers), ``_waiters`` (``wait_for()``), ``_follow``
(progress), ``_dispatch`` (handler tasks), ``_realtime`` and ``markers`` (what the agents
announce).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, overload

from livekit.agents import Agent, AgentSession
from livekit.agents.llm import AgentHandoff
from livekit.agents.voice.events import ConversationItemAddedEvent, SpeechCreatedEvent
from livekit.agents.voice.speech_handle import SpeechHandle

from . import _livekit
from ._dispatch import Delivery, HandlerTasks
from ._follow import ProgressFollower
from ._ledger import Ledger
from ._listeners import listener
from ._log import guarded
from ._realtime import RealtimeTaps
from ._session import SessionPlayback, playback_for
from ._waiters import Kind, MessageNotPlayed, Waiters
from .events import (
    MessagePlaybackFinished,
    MessagePlaybackProgressed,
    MessagePlaybackStarted,
    Source,
)
from .ids import check_message_id, check_metadata, check_seconds, check_session, check_speech
from .markers import UntrackedNodes

__all__ = ["MessageNotPlayed", "PlaybackTracker", "TrackerStats", "attach", "tracker_for"]

_trackers: weakref.WeakKeyDictionary[AgentSession[Any], PlaybackTracker] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True, slots=True)
class TrackerStats:
    """How much state a tracker holds right now, for diagnostics and leak checks.

    Attributes:
        speeches: Speeches being reported that are not over yet.
        unreleased_messages: Messages bound to audio whose finished event is not out yet.
        open_segments: Segments of its speeches handed to the sink whose end it has not
            reported yet.
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


class _Reporter:
    """Where the ledger reports a tracker's speeches (the ledger's ``Reporter``)."""

    def __init__(
        self,
        session: AgentSession[Any],
        loop: asyncio.AbstractEventLoop,
        ledger: Ledger,
        delivery: Delivery,
        interval: float | None,
        on_done: Callable[[], None],
    ) -> None:
        self.waiters = Waiters(loop)
        self.tasks = HandlerTasks(loop)
        self.progress = ProgressFollower(session, loop, ledger.order, self, interval)
        self._session = session
        self._delivery = delivery
        self._on_done = on_done
        self._speeches = 0  # admitted and not reported yet
        self._admitting = True

    def admitted(self) -> None:
        """The ledger admitted a speech for this reporter."""
        self._speeches += 1

    def stop(self) -> None:
        """Admit nothing more; ``on_done`` once every admitted speech is reported."""
        self._admitting = False
        self.progress.stop()
        self._check_done()

    def wants_progress(self) -> bool:
        return self.progress.wanted()

    def started(self, event: MessagePlaybackStarted) -> None:
        self.waiters.seen(event)
        if self.progress.interval is not None:
            self.progress.message_started()
        self._delivery.send(self._session, event, self.tasks)

    def progressed(self, event: MessagePlaybackProgressed) -> None:
        if self._admitting:  # no progress events after detach()
            self._delivery.send(self._session, event, self.tasks)

    def finished(self, event: MessagePlaybackFinished) -> None:
        self.waiters.seen(event)
        if self.progress.interval is not None:
            self.progress.message_finished()
        self._delivery.send(self._session, event, self.tasks)

    def speech_reported(self) -> None:
        self._speeches -= 1
        self._check_done()

    def _check_done(self) -> None:
        if not self._admitting and self._speeches == 0:
            self._speeches = -1  # once
            self._on_done()


class PlaybackTracker:
    """Reports, per assistant message, when its audio started playing and how it ended.

    Get one with ``attach(session)``. The tracker puts a transparent ``AudioOutput`` on top
    of ``session.output.audio`` (without re-attaching livekit's chain below it) before each
    speech reads it, and reports every speech created while it is attached, to its end.
    """

    def __init__(
        self,
        session: AgentSession[Any],
        loop: asyncio.AbstractEventLoop,
        *,
        progress_interval: float | None = None,
    ) -> None:
        if _livekit.session_started(session) and session.output.audio is None:
            raise RuntimeError(
                "playback_hooks.attach(): the session has no audio output (it was started "
                "with audio output disabled or without one), so nothing can be heard"
            )
        self._session = session
        self._loop = loop
        self._playback: SessionPlayback = playback_for(session, loop)
        self._attached = True
        self._when_closed: asyncio.Future[None] = loop.create_future()
        self._reporter = _Reporter(
            session,
            loop,
            self._playback.ledger,
            self._playback.delivery,
            progress_interval,
            self._reporting_done,
        )
        self._taps = RealtimeTaps(session, self._playback.ledger)
        self._untracked = UntrackedNodes()
        self._agent: Callable[[], Agent | None] = lambda: None  # the agent watched last
        self._listeners = {
            "speech_created": listener(lambda ev: self._on_speech_created(ev)),
            "conversation_item_added": listener(lambda ev: self._on_item_added(ev)),
            "close": listener(lambda ev: self.detach()),
        }
        for name, fn in self._listeners.items():
            session.on(name, fn)  # type: ignore[arg-type]
        self._playback.tracker_attached()
        if _livekit.session_started(session):
            self._playback.install(session)
            self._watch_agent()
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

    @property
    def progress_interval(self) -> float | None:
        """Seconds between two interval progress events while a message plays (None: off)."""
        return self._reporter.progress.interval

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
        check_speech(handle, where, "handle")
        check_message_id(id, where, "id", given=True)
        meta = check_metadata(metadata, where)
        if not self._attached:
            raise RuntimeError(f"{where}: the tracker is detached")
        if handle.done():
            raise RuntimeError(f"{where}: speech {handle.id} is already over")
        try:
            self._playback.ledger.label(handle, self._reporter, id, meta)
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
        After ``detach()`` it still waits for the messages of the speeches the tracker is
        finishing.

        Raises:
            MessageNotPlayed: ``kind`` is ``"started"`` and the message finished without
                starting (skipped); raised as soon as that is known.
            TimeoutError: no such event within ``timeout`` seconds.
            RuntimeError: the tracker closed (detached, and every speech it reports is
                over) before the event.
            TypeError: ``message_id`` is not a str, ``speech`` not a ``SpeechHandle``, or
                ``timeout`` not a number.
            ValueError: ``message_id`` is empty, ``kind`` is not ``"started"`` or
                ``"finished"``, or ``timeout`` < 0.
        """
        where = "PlaybackTracker.wait_for()"
        check_message_id(message_id, where, "message_id", given=False)
        if kind not in ("started", "finished"):
            raise ValueError(f"{where}: kind must be 'started' or 'finished', got {kind!r}")
        if speech is not None:
            check_speech(speech, where, "speech")
        if timeout is not None:
            check_seconds(timeout, where, "timeout", zero=True)
        speech_id = None if speech is None else speech.id
        waiters = self._reporter.waiters
        seen = waiters.recall(message_id, kind, speech_id)
        if seen is not None:
            return seen
        if self._when_closed.done():
            raise RuntimeError(f"{where}: the tracker is detached and closed")
        return await waiters.wait(message_id, kind, speech_id, timeout)

    def now_playing(self) -> MessagePlaybackProgressed | None:
        """The message playing at this instant, with its live position; None if none is.

        "Playing" as the events tell it: its started event is out and its finished event is
        not. Cheap (no I/O, no waiting): call it from any handler or tool. ``position`` is
        computed now and never less than in an earlier event or call for that message.
        Progress is followed for a message if it was wanted (a
        ``message_playback_progressed`` receiver for this session, or a
        ``progress_interval``) when its audio began: ``position`` then follows the rule of
        ``MessagePlaybackProgressed.position`` and ``heard_text`` the words shown (None
        without a transcription synchronizer). Otherwise ``position`` is the time since the
        message started, paused time left out (the sink's played runs are not followed), and
        ``heard_text`` is None. None once detached.
        """
        if not self._attached:
            return None
        msg = self._playback.ledger.order.playing()
        return None if msg is None else msg.progress_event(time.time())

    def stats(self) -> TrackerStats:
        """The sizes of the tracker's state (all zero but ``history`` once it is idle)."""
        ledger = self._playback.ledger
        waiting = ledger.order.waiting(self._reporter)
        return TrackerStats(
            speeches=ledger.speeches(self._reporter),
            unreleased_messages=waiting.unreleased,
            open_segments=waiting.open_segments,
            waiters=self._reporter.waiters.waiting,
            history=self._reporter.waiters.remembered,
            handler_tasks=self._reporter.tasks.running,
        )

    def detach(self) -> None:
        """Stop reporting new speeches; finish reporting the ones in flight, then close.

        ``tracker_for(session)`` is None at once and ``attach()`` works again. The speeches
        created while it was attached are reported to their end: they may read the output
        chain later (each step of a speech reads it when the step starts), so the tracker's
        output stays on top of the chain until they are over, and then leaves it (the chain
        below is never touched). Once they are reported, waiting ``wait_for()`` calls fail
        and async handler tasks are cancelled (``aclose()`` waits for that). Safe to call
        twice.
        """
        if not self._attached:
            return
        self._attached = False
        for name, fn in self._listeners.items():
            self._session.off(name, fn)  # type: ignore[arg-type]
        self._taps.close()
        self._untracked.close()
        if _trackers.get(self._session) is self:
            del _trackers[self._session]
        self._playback.tracker_detached()
        self._reporter.stop()

    async def aclose(self) -> None:
        """``detach()``, then wait until the speeches in flight are reported and every
        handler task has finished."""
        self.detach()
        await asyncio.shield(self._when_closed)

    def __repr__(self) -> str:
        state = "attached" if self._attached else "detached"
        return f"<PlaybackTracker {state} session={self._session!r}>"

    # -- session events -------------------------------------------------------------------

    def _on_speech_created(self, ev: SpeechCreatedEvent) -> None:
        # Emitted before the speech's task reads session.output.audio: the moment to be on
        # top of the chain, whatever RoomIO, the recorder or the app put there before.
        if self._session.output.audio is not self._playback.output:
            guarded(self._playback.install, self._session)
        source: Source = "say" if ev.source == "say" else "llm"
        if self._playback.ledger.admit(ev.speech_handle, source, self._reporter):
            self._reporter.admitted()
        self._watch_agent()

    def _on_item_added(self, ev: ConversationItemAddedEvent) -> None:
        if isinstance(ev.item, AgentHandoff):
            self._taps.watch_handoff()

    def _watch_agent(self) -> None:
        try:
            agent = self._session.current_agent
        except RuntimeError:
            return  # no agent running yet
        if agent is self._agent() and not self._taps.uses_realtime_model(agent):
            return  # asked at every speech: nothing new since the last one
        self._agent = weakref.ref(agent)
        self._untracked.watch(agent)
        self._taps.tap(agent)

    # -- closing ----------------------------------------------------------------------------

    def _reporting_done(self) -> None:
        # Every speech reported: the output may leave the chain's top at once (if no other
        # tracker uses it); what is queued is delivered, then the tracker closes.
        self._playback.tracker_closed(self._session)
        self._loop.call_soon(self._close)

    def _close(self) -> None:
        self._playback.delivery.deliver()
        tasks = self._reporter.tasks.close()
        self._reporter.waiters.fail_all("PlaybackTracker.wait_for(): the tracker was detached")

        def closed(_: Any = None) -> None:
            if not self._when_closed.done():
                self._when_closed.set_result(None)

        if tasks:
            asyncio.gather(*tasks, return_exceptions=True).add_done_callback(closed)
        else:
            closed()


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
    check_session(session, "attach()")
    if progress_interval is not None:
        check_seconds(progress_interval, "attach()", "progress_interval", zero=False)
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
    check_session(session, "tracker_for()")
    return _trackers.get(session)
