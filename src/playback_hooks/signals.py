"""The blinker signals, and the decorators that subscribe handlers to them."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, MutableSet
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from blinker import ANY, NamedSignal, Namespace, Signal
from livekit.agents import AgentSession

from .events import (
    Event,
    MessagePlaybackFinished,
    MessagePlaybackProgressed,
    MessagePlaybackStarted,
)
from .ids import check_message_id, check_session

__all__ = [
    "disconnect",
    "message_playback_finished",
    "message_playback_progressed",
    "message_playback_started",
    "on_message_finished",
    "on_message_played",
    "on_message_progress",
]


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
        new = _OrderedSet()
        new._items = self._items.copy()
        return new

    def __or__(self, other: Any) -> _OrderedSet:
        # blinker unites a signal's receivers for any sender with the sending session's at
        # every send: a dict union, not the Set mixin's element-by-element one
        if not isinstance(other, _OrderedSet):
            return NotImplemented
        new = _OrderedSet()
        new._items = self._items | other._items
        return new


class _OrderedSignal(NamedSignal):
    # blinker's documented way to call receivers in the order they were connected
    # (handlers for any session first, then those for the sending session)
    set_class = _OrderedSet  # type: ignore[assignment]  # blinker annotates it type[set]


class _Namespace(Namespace):
    """The package's own signals (Flask's idiom), each calling receivers in connect order."""

    def signal(self, name: str, doc: str | None = None) -> NamedSignal:
        return self.setdefault(name, _OrderedSignal(name, doc))


_signals = _Namespace()

message_playback_started: Signal = _signals.signal(
    "message_playback_started",
    """A message's first frame reached the sink.

    Sender: the ``AgentSession``. Receivers are called as ``fn(session, event=...)`` with a
    ``MessagePlaybackStarted``; they should accept ``**kwargs``. Receivers connected for any
    sender run first, then those connected for the sending session, each in the order they
    were connected.
    """,
)
message_playback_finished: Signal = _signals.signal(
    "message_playback_finished",
    """A message's playback ended (full, partial or skipped).

    Sender: the ``AgentSession``. Receivers are called as ``fn(session, event=...)`` with a
    ``MessagePlaybackFinished``; they should accept ``**kwargs``. Same order as
    ``message_playback_started``.
    """,
)

message_playback_progressed: Signal = _signals.signal(
    "message_playback_progressed",
    """A playing message's live progress: seconds heard, words shown, paused or not.

    Sender: the ``AgentSession``. Receivers are called as ``fn(session, event=...)`` with a
    ``MessagePlaybackProgressed``; they should accept ``**kwargs``. Same order as
    ``message_playback_started``. Every progress event of a message comes after its started
    event and before its finished event. While this signal has no receiver for a session
    (and its tracker has no ``progress_interval``), the tracker follows no progress for it:
    nothing at all per word or per played run the sink reports, no event made (and nothing
    per frame either way).
    """,
)

StartedHandlerT = TypeVar("StartedHandlerT", bound=Callable[[MessagePlaybackStarted], object])
ProgressHandlerT = TypeVar("ProgressHandlerT", bound=Callable[[MessagePlaybackProgressed], object])
FinishedHandlerT = TypeVar("FinishedHandlerT", bound=Callable[[MessagePlaybackFinished], object])
HandlerT = TypeVar("HandlerT", bound=Callable[..., object])


@dataclass(frozen=True, slots=True)
class _Subscription:
    signal: Signal
    receiver: Callable[..., Any]


class _Registry:
    """The receivers connected for each decorated handler, so ``disconnect()`` finds them.

    Keyed by the handler itself: a bound method passed again (a new bound-method object of
    the same method of the same object) compares equal and finds its subscriptions.
    Handlers that cannot be hashed are looked up by equality in a short list.
    """

    def __init__(self) -> None:
        self._hashable: dict[Any, list[_Subscription]] = {}
        self._unhashable: list[tuple[Any, list[_Subscription]]] = []

    def add(self, handler: Any, subscription: _Subscription) -> None:
        try:
            self._hashable.setdefault(handler, []).append(subscription)
        except TypeError:
            for known, subs in self._unhashable:
                if known == handler:
                    subs.append(subscription)
                    return
            self._unhashable.append((handler, [subscription]))

    def pop(self, handler: Any) -> list[_Subscription]:
        try:
            return self._hashable.pop(handler, [])
        except TypeError:
            for i, (known, subs) in enumerate(self._unhashable):
                if known == handler:
                    del self._unhashable[i]
                    return subs
            return []


_registry = _Registry()

# Receivers of decorator handlers, by kind: calling an async one only creates the handler's
# coroutine.
_async_receivers: set[Callable[..., Any]] = set()
_sync_receivers: set[Callable[..., Any]] = set()
# Receivers of cancel_on_partial handlers: their tasks are cancelled when the message they
# started for is not heard in full.
_cancel_on_partial: set[Callable[..., Any]] = set()


def starts_task(receiver: Callable[..., Any]) -> bool:
    """Whether calling ``receiver`` only makes a coroutine (an ``async def`` handler).

    Such a receiver runs no handler code when called, so its task can be created at once.
    """
    if receiver in _async_receivers:
        return True
    if receiver in _sync_receivers:
        return False
    return inspect.iscoroutinefunction(receiver)  # a receiver connected to the signal itself


def cancels_on_partial(receiver: Callable[..., Any]) -> bool:
    """Whether ``receiver``'s task is to be cancelled if its message is not heard in full."""
    return receiver in _cancel_on_partial


def has_receivers(signal: Signal, sender: object) -> bool:
    """Whether a live receiver of ``signal`` would be called for ``sender``.

    Unlike blinker's ``has_receivers_for()``, which still answers yes for a sender whose
    last receiver was disconnected, and for receivers that were garbage-collected.
    """
    return next(iter(signal.receivers_for(sender)), None) is not None


def handler_name(receiver: Callable[..., Any]) -> str:
    """The name logs give a handler or raw receiver."""
    return getattr(receiver, "__qualname__", None) or repr(receiver)


def _check_filters(
    decorator: str, session: object, message_id: object, cancel_on_partial: object
) -> None:
    if session is not None:
        check_session(session, decorator)
    if message_id is not None:
        check_message_id(message_id, decorator, "message_id", given=False)
    if not isinstance(cancel_on_partial, bool):
        raise TypeError(
            f"{decorator}: cancel_on_partial must be a bool, got {type(cancel_on_partial).__name__}"
        )


def _check_signature(decorator: str, fn: Callable[..., object]) -> None:
    # Refused here rather than failing at the first message, far from the mistake.
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # no signature to check (some builtins): trust the caller
    try:
        signature.bind(None)
    except TypeError:
        raise TypeError(
            f"{decorator}: handler {handler_name(fn)} must accept the event as its only "
            f"positional argument; its signature is {signature}"
        ) from None


def _subscribe(
    signal: Signal,
    decorator: str,
    fn: HandlerT,
    session: AgentSession[Any] | None,
    message_id: str | None,
    cancel_on_partial: bool,
) -> HandlerT:
    if not callable(fn):
        raise TypeError(f"{decorator}: the handler must be callable, got {type(fn).__name__}")
    _check_signature(decorator, fn)
    is_async = _is_async(fn)
    if cancel_on_partial and not is_async:
        raise TypeError(
            f"{decorator}: cancel_on_partial=True needs an async handler (async def); "
            f"{handler_name(fn)} is not one"
        )

    def receiver(sender: AgentSession[Any], *, event: Event, **_: Any) -> Any:
        if message_id is not None and event.message_id != message_id:
            return None
        return fn(event)

    receiver.__qualname__ = handler_name(fn)
    (_async_receivers if is_async else _sync_receivers).add(receiver)
    if cancel_on_partial:
        _cancel_on_partial.add(receiver)
    # Strong reference: a handler defined inside a function must not silently vanish.
    signal.connect(receiver, sender=ANY if session is None else session, weak=False)
    _registry.add(fn, _Subscription(signal, receiver))
    return fn


def _decorator(
    signal: Signal,
    decorator: str,
    fn: HandlerT | None,
    session: AgentSession[Any] | None,
    message_id: str | None,
    cancel_on_partial: bool = False,
) -> Any:
    """What the three decorators share: bare use, or filters first and the handler after."""
    _check_filters(decorator, session, message_id, cancel_on_partial)
    if fn is not None:
        return _subscribe(signal, decorator, fn, session, message_id, cancel_on_partial)

    def decorate(f: HandlerT) -> HandlerT:
        return _subscribe(signal, decorator, f, session, message_id, cancel_on_partial)

    return decorate


def _is_async(fn: Callable[..., object]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


@overload
def on_message_played(fn: StartedHandlerT, /) -> StartedHandlerT: ...
@overload
def on_message_played(
    *,
    session: AgentSession[Any] | None = None,
    message_id: str | None = None,
    cancel_on_partial: bool = False,
) -> Callable[[StartedHandlerT], StartedHandlerT]: ...
def on_message_played(
    fn: StartedHandlerT | None = None,
    /,
    *,
    session: AgentSession[Any] | None = None,
    message_id: str | None = None,
    cancel_on_partial: bool = False,
) -> StartedHandlerT | Callable[[StartedHandlerT], StartedHandlerT]:
    """Run ``fn(event)`` when a message starts playing (``MessagePlaybackStarted``).

    Use bare (``@on_message_played``) or with filters
    (``@on_message_played(session=s, message_id="answer")``). ``fn`` may be sync or async, a
    function, a bound method, a ``functools.partial`` or a callable object, taking the
    event as its one positional argument; async handlers run as tasks owned by the
    session's tracker. The handler is held strongly until ``disconnect(fn)``.

    With ``cancel_on_partial=True`` (async handlers only) the handler's task follows its
    message: it is cancelled when that message's playback ends without being heard in full
    (``played`` is ``"partial"``: the user cut it off, or, rarely, ``"skipped"`` after a
    remote sink cancelled it). A task still running after its message played in full
    carries on.

    Raises:
        TypeError: ``fn`` is not callable or cannot take the event as one positional
            argument, a filter has the wrong type, or ``cancel_on_partial=True`` is given
            for a handler that is not ``async def``.
        ValueError: ``message_id`` is empty.
    """
    return _decorator(  # type: ignore[no-any-return]
        message_playback_started, "on_message_played", fn, session, message_id, cancel_on_partial
    )


@overload
def on_message_finished(fn: FinishedHandlerT, /) -> FinishedHandlerT: ...
@overload
def on_message_finished(
    *, session: AgentSession[Any] | None = None, message_id: str | None = None
) -> Callable[[FinishedHandlerT], FinishedHandlerT]: ...
def on_message_finished(
    fn: FinishedHandlerT | None = None,
    /,
    *,
    session: AgentSession[Any] | None = None,
    message_id: str | None = None,
) -> FinishedHandlerT | Callable[[FinishedHandlerT], FinishedHandlerT]:
    """Run ``fn(event)`` when a message's playback ends (``MessagePlaybackFinished``).

    Same forms, handler kinds and errors as ``on_message_played``.
    """
    return _decorator(  # type: ignore[no-any-return]
        message_playback_finished, "on_message_finished", fn, session, message_id
    )


@overload
def on_message_progress(fn: ProgressHandlerT, /) -> ProgressHandlerT: ...
@overload
def on_message_progress(
    *, session: AgentSession[Any] | None = None, message_id: str | None = None
) -> Callable[[ProgressHandlerT], ProgressHandlerT]: ...
def on_message_progress(
    fn: ProgressHandlerT | None = None,
    /,
    *,
    session: AgentSession[Any] | None = None,
    message_id: str | None = None,
) -> ProgressHandlerT | Callable[[ProgressHandlerT], ProgressHandlerT]:
    """Run ``fn(event)`` as a message plays on (``MessagePlaybackProgressed``).

    Same forms, filters, handler kinds and errors as ``on_message_played`` (without
    ``cancel_on_partial``). It is called after the message's started handlers and before
    its finished handlers: each time livekit's transcription synchronizer shows a word of
    the message, the sink reports a played run, the output is paused or resumed, and every
    ``progress_interval`` seconds if the tracker has one. Connected while a message plays,
    it is served from the next message whose audio begins.
    """
    return _decorator(  # type: ignore[no-any-return]
        message_playback_progressed, "on_message_progress", fn, session, message_id
    )


def disconnect(fn: Callable[..., object]) -> None:
    """Unregister a handler added with ``on_message_played``, ``on_message_progress`` or
    ``on_message_finished``.

    ``fn`` is the handler as it was decorated; for a method, the same method of the same
    object (``disconnect(obj.method)``). Every registration of it is removed.

    Raises:
        TypeError: ``fn`` is not callable.
        ValueError: ``fn`` is not connected (never was, or already disconnected).
    """
    if not callable(fn):
        raise TypeError(f"disconnect(): the handler must be callable, got {type(fn).__name__}")
    subscriptions = _registry.pop(fn)
    if not subscriptions:
        raise ValueError(f"disconnect(): handler {handler_name(fn)} is not connected")
    for sub in subscriptions:
        sub.signal.disconnect(sub.receiver)
        _async_receivers.discard(sub.receiver)
        _sync_receivers.discard(sub.receiver)
        _cancel_on_partial.discard(sub.receiver)
