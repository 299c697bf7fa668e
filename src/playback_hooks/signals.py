"""The blinker signals, the decorators that subscribe to them, and isolated dispatch."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable, Iterable, Iterator, MutableSet
from typing import Any, TypeVar, overload

from blinker import ANY, NamedSignal, Namespace, Signal
from livekit.agents import AgentSession

from .events import MessagePlaybackFinished, MessagePlaybackStarted

__all__ = [
    "disconnect",
    "message_playback_finished",
    "message_playback_started",
    "on_message_finished",
    "on_message_played",
]

logger = logging.getLogger("playback_hooks")


class _OrderedSet(MutableSet[Any]):
    """A set that iterates in insertion order, for blinker's ``set_class`` hook."""

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self._items = dict.fromkeys(items)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, value: Any) -> None:
        self._items[value] = None

    def discard(self, value: Any) -> None:
        self._items.pop(value, None)

    def copy(self) -> _OrderedSet:
        return _OrderedSet(self._items)


class _OrderedSignal(NamedSignal):
    # blinker's documented way to call receivers in the order they were connected
    # (handlers for any session first, then those for the sending session)
    set_class = _OrderedSet  # type: ignore[assignment]  # blinker annotates it type[set]


def _signal(name: str, doc: str) -> Signal:
    signal = _namespace[name] = _OrderedSignal(name, doc)
    return signal


_namespace = Namespace()

message_playback_started: Signal = _signal(
    "message_playback_started",
    """A message's first frame reached the sink.

    Sender: the ``AgentSession``. Receivers are called as ``fn(session, event=...)`` with a
    ``MessagePlaybackStarted``; they should accept ``**kwargs``. Receivers connected for any
    sender run first, then those connected for the sending session, each in the order they
    were connected.
    """,
)
message_playback_finished: Signal = _signal(
    "message_playback_finished",
    """A message's playback ended (full, partial or skipped).

    Sender: the ``AgentSession``. Receivers are called as ``fn(session, event=...)`` with a
    ``MessagePlaybackFinished``; they should accept ``**kwargs``. Same order as
    ``message_playback_started``.
    """,
)

Event = MessagePlaybackStarted | MessagePlaybackFinished
F = TypeVar("F", bound=Callable[..., Any])

# Attribute under which a decorated handler keeps the receivers connected for it, so that
# disconnect() can find them.
_RECEIVERS_ATTR = "__playback_hooks_receivers__"

# Set on a receiver whose async handler's task follows its message: the dispatcher cancels
# that task when the same message's finished event says it was not heard in full.
_FOLLOWS_ATTR = "__playback_hooks_follows_message__"


class Dispatcher:
    """Delivers one session's events to the signals' receivers, outside the audio path.

    Events are queued in the order the tracker produces them and delivered on a later loop
    iteration, so no receiver runs inside the sink's callback. Each receiver is isolated: an
    exception is logged with the event's ids and the next receiver still runs. A receiver
    that returns an awaitable (an ``async def`` handler) runs as a task this dispatcher owns.
    """

    def __init__(self, sender: AgentSession[Any], loop: asyncio.AbstractEventLoop) -> None:
        self._sender = sender
        self._loop = loop
        self._queue: list[tuple[Signal, Event]] = []
        self._scheduled = False
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        # tasks of cancel_on_partial handlers, per message (speech id, index): a message id
        # may repeat, this pair cannot
        self._following: dict[tuple[str, int], list[asyncio.Task[Any]]] = {}

    @property
    def pending_tasks(self) -> int:
        """Handler tasks still running."""
        return len(self._tasks)

    def send(self, signal: Signal, event: Event) -> None:
        """Queue ``event`` for ``signal``'s receivers; delivery happens on a later iteration."""
        if self._closed:
            return
        self._queue.append((signal, event))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._deliver_queued)

    def deliver_pending(self) -> None:
        """Deliver the queued events now instead of on the next loop iteration."""
        if self._queue:
            self._deliver_queued()

    def close(self) -> list[asyncio.Task[Any]]:
        """Stop delivering, cancel running handler tasks and return them for awaiting."""
        self._closed = True
        self._queue.clear()
        self._following.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        return tasks

    def _deliver_queued(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        for signal, event in queue:
            if self._closed:
                return
            if isinstance(event, MessagePlaybackFinished):
                self._end_following(event)
            self._deliver(signal, event)

    def _deliver(self, signal: Signal, event: Event) -> None:
        for receiver in list(signal.receivers_for(self._sender)):
            try:
                result = receiver(self._sender, event=event)
            except Exception:
                logger.exception(
                    "playback handler raised",
                    extra=_log_extra(event, receiver),
                )
                continue
            if inspect.isawaitable(result):
                task = self._start_task(result, event, receiver)
                if isinstance(event, MessagePlaybackStarted) and getattr(
                    receiver, _FOLLOWS_ATTR, False
                ):
                    key = (event.speech_id, event.index)
                    self._following.setdefault(key, []).append(task)

    def _end_following(self, event: MessagePlaybackFinished) -> None:
        # Runs before the finished event's receivers, so they already see the cancellation.
        tasks = self._following.pop((event.speech_id, event.index), [])
        if event.played == "full":
            return
        for task in tasks:
            if not task.done():
                logger.debug(
                    "cancelling a handler of a message not heard in full",
                    extra={
                        "message_id": event.message_id,
                        "speech_id": event.speech_id,
                        "played": event.played,
                    },
                )
                task.cancel()

    def _start_task(
        self, awaitable: Any, event: Event, receiver: Callable[..., Any]
    ) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(awaitable, loop=self._loop)
        self._tasks.add(task)

        def _done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                return
            if (exc := t.exception()) is not None:
                logger.error(
                    "async playback handler raised",
                    exc_info=exc,
                    extra=_log_extra(event, receiver),
                )

        task.add_done_callback(_done)
        return task


def _log_extra(event: Event, receiver: Callable[..., Any]) -> dict[str, Any]:
    return {
        "message_id": event.message_id,
        "speech_id": event.speech_id,
        "handler": getattr(receiver, "__qualname__", repr(receiver)),
    }


def _check_filters(
    decorator: str, session: object, message_id: object, cancel_on_partial: object = False
) -> None:
    if session is not None and not isinstance(session, AgentSession):
        raise TypeError(
            f"{decorator}: session must be an AgentSession, got {type(session).__name__}"
        )
    if message_id is not None:
        if not isinstance(message_id, str):
            raise TypeError(
                f"{decorator}: message_id must be a str, got {type(message_id).__name__}"
            )
        if not message_id:
            raise ValueError(f"{decorator}: message_id must not be empty")
    if not isinstance(cancel_on_partial, bool):
        raise TypeError(
            f"{decorator}: cancel_on_partial must be a bool, got {type(cancel_on_partial).__name__}"
        )


def _subscribe(
    signal: Signal,
    decorator: str,
    fn: F,
    session: AgentSession[Any] | None,
    message_id: str | None,
    cancel_on_partial: bool = False,
) -> F:
    if not callable(fn):
        raise TypeError(f"{decorator}: the handler must be callable, got {type(fn).__name__}")
    _check_filters(decorator, session, message_id, cancel_on_partial)
    if cancel_on_partial and not _is_async(fn):
        raise TypeError(
            f"{decorator}: cancel_on_partial=True needs an async handler (async def); "
            f"{getattr(fn, '__qualname__', fn)!r} is not one"
        )

    def receiver(sender: AgentSession[Any], *, event: Event, **_: Any) -> Any:
        if message_id is not None and event.message_id != message_id:
            return None
        return fn(event)

    receiver.__qualname__ = getattr(fn, "__qualname__", receiver.__qualname__)
    if cancel_on_partial:
        setattr(receiver, _FOLLOWS_ATTR, True)
    # Strong reference: a handler defined inside a function must not silently vanish.
    signal.connect(receiver, sender=ANY if session is None else session, weak=False)
    receivers: list[tuple[Signal, Callable[..., Any]]] = getattr(fn, _RECEIVERS_ATTR, [])
    receivers.append((signal, receiver))
    # builtins and slotted callables cannot carry it: disconnect() cannot find them
    with contextlib.suppress(AttributeError):
        setattr(fn, _RECEIVERS_ATTR, receivers)
    return fn


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


@overload
def on_message_played(fn: F, /) -> F: ...
@overload
def on_message_played(
    *,
    session: AgentSession[Any] | None = None,
    message_id: str | None = None,
    cancel_on_partial: bool = False,
) -> Callable[[F], F]: ...
def on_message_played(
    fn: F | None = None,
    /,
    *,
    session: AgentSession[Any] | None = None,
    message_id: str | None = None,
    cancel_on_partial: bool = False,
) -> F | Callable[[F], F]:
    """Run ``fn(event)`` when a message starts playing (``MessagePlaybackStarted``).

    Use bare (``@on_message_played``) or with filters
    (``@on_message_played(session=s, message_id="answer")``). ``fn`` may be sync or async;
    async handlers run as tasks owned by the session's tracker. The handler is registered
    strongly and stays until ``disconnect(fn)``.

    With ``cancel_on_partial=True`` (async handlers only) the handler's task follows its
    message: it is cancelled when that message's playback ends without being heard in full
    (``played`` is ``"partial"``: the user cut it off, or, rarely, ``"skipped"`` after a
    remote sink cancelled it). A task still running after its message played in full
    carries on.

    Raises:
        TypeError: ``fn`` is not callable, a filter has the wrong type, or
            ``cancel_on_partial=True`` is given for a handler that is not ``async def``.
        ValueError: ``message_id`` is empty.
    """
    if fn is not None:
        return _subscribe(message_playback_started, "on_message_played", fn, session, message_id)
    _check_filters("on_message_played", session, message_id, cancel_on_partial)

    def decorate(f: F) -> F:
        return _subscribe(
            message_playback_started,
            "on_message_played",
            f,
            session,
            message_id,
            cancel_on_partial,
        )

    return decorate


@overload
def on_message_finished(fn: F, /) -> F: ...
@overload
def on_message_finished(
    *, session: AgentSession[Any] | None = None, message_id: str | None = None
) -> Callable[[F], F]: ...
def on_message_finished(
    fn: F | None = None,
    /,
    *,
    session: AgentSession[Any] | None = None,
    message_id: str | None = None,
) -> F | Callable[[F], F]:
    """Run ``fn(event)`` when a message's playback ends (``MessagePlaybackFinished``).

    Same forms and semantics as ``on_message_played``.
    """
    if fn is not None:
        return _subscribe(message_playback_finished, "on_message_finished", fn, session, message_id)
    _check_filters("on_message_finished", session, message_id)

    def decorate(f: F) -> F:
        return _subscribe(message_playback_finished, "on_message_finished", f, session, message_id)

    return decorate


def disconnect(fn: Callable[..., Any]) -> None:
    """Unregister a handler added with ``on_message_played`` / ``on_message_finished``.

    Raises:
        TypeError: ``fn`` is not callable.
    """
    if not callable(fn):
        raise TypeError(f"disconnect(): the handler must be callable, got {type(fn).__name__}")
    for signal, receiver in getattr(fn, _RECEIVERS_ATTR, []):
        signal.disconnect(receiver)
    with contextlib.suppress(AttributeError):
        setattr(fn, _RECEIVERS_ATTR, [])
