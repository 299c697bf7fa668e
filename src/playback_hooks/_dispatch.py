"""Delivers a session's events to the signals' receivers, in order, outside the audio path.

Events come from the ledger in playback order, usually inside livekit's audio callbacks.
``Delivery`` (one per session) routes each by its type to its signal and takes the
receivers it has for the session then. The receivers that run code when called (sync
handlers) are called on the next loop iteration, in order. Those that only create a
coroutine (``async def`` handlers) get their task at once: creating it runs none of the
handler's code, and its first step comes on the next loop iteration too, right after the
sync ones and before livekit's own listeners of the same report. Each receiver is
isolated: an exception is logged with the event's ids and the next receiver still runs.
blinker's own ``Signal.send()`` is not used: it would propagate a receiver's exception.

The tasks belong to the ``HandlerTasks`` of the tracker that reported the event, which
cancels them when it closes.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Callable
from typing import Any

from blinker import Signal
from livekit.agents import AgentSession

from ._log import logger
from .events import (
    Event,
    MessagePlaybackFinished,
    MessagePlaybackProgressed,
    MessagePlaybackStarted,
)
from .signals import (
    cancels_on_partial,
    handler_name,
    message_playback_finished,
    message_playback_progressed,
    message_playback_started,
    starts_task,
)

__all__ = ["Delivery", "HandlerTasks"]

# The one place an event's kind decides where it goes.
_SIGNAL_OF: dict[type[Event], Signal] = {
    MessagePlaybackStarted: message_playback_started,
    MessagePlaybackProgressed: message_playback_progressed,
    MessagePlaybackFinished: message_playback_finished,
}

Receiver = Callable[..., Any]


class HandlerTasks:
    """The async handler tasks started for one tracker's events."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._tasks: set[asyncio.Task[Any]] = set()
        # tasks of cancel_on_partial handlers, per message (speech id, index): a message id
        # may repeat, this pair cannot
        self._cancel_on_partial: dict[tuple[str, int], list[asyncio.Task[Any]]] = {}
        self._closed = False

    @property
    def running(self) -> int:
        """Handler tasks still running."""
        return len(self._tasks)

    @property
    def closed(self) -> bool:
        """Whether ``close()`` ran: no task is started any more."""
        return self._closed

    def start(self, awaitable: Any, event: Event, receiver: Receiver) -> None:
        """Run ``awaitable``, returned by ``receiver`` for ``event``, as a task of its own."""
        task: asyncio.Task[Any] = asyncio.ensure_future(awaitable, loop=self._loop)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and (exc := t.exception()) is not None:
                _log_handler_error(event, receiver, exc)

        task.add_done_callback(done)
        if isinstance(event, MessagePlaybackStarted) and cancels_on_partial(receiver):
            key = (event.speech_id, event.index)
            self._cancel_on_partial.setdefault(key, []).append(task)

    def message_ended(self, event: MessagePlaybackFinished) -> None:
        """Cancel the ``cancel_on_partial`` tasks of a message not heard in full."""
        tasks = self._cancel_on_partial.pop((event.speech_id, event.index), [])
        if event.played == "full":
            return
        for task in tasks:
            if not task.done():
                logger.debug(
                    "cancelling a handler of message %r, played %s",
                    event.message_id,
                    event.played,
                    extra=_log_extra(event, None),
                )
                task.cancel()

    def close(self) -> list[asyncio.Task[Any]]:
        """Start no more tasks; cancel the running ones and return them for awaiting."""
        self._closed = True
        self._cancel_on_partial.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        return tasks


class Delivery:
    """One session's events to their receivers, in the order they were sent."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # events whose receivers are to be called, with their sender, them and the tasks' owner
        self._queue: deque[tuple[AgentSession[Any], Event, list[Receiver], HandlerTasks]] = deque()
        self._scheduled = False

    def send(self, sender: AgentSession[Any], event: Event, tasks: HandlerTasks) -> None:
        """Route ``event`` to its signal's receivers for ``sender``; see the module doc."""
        if tasks.closed:
            return
        if isinstance(event, MessagePlaybackFinished):
            # before the finished event's receivers, so that they see the cancellation
            tasks.message_ended(event)
        now: list[Receiver] = []
        later: list[Receiver] = []
        for receiver in _SIGNAL_OF[type(event)].receivers_for(sender):
            (now if starts_task(receiver) else later).append(receiver)
        if later:
            self._queue.append((sender, event, later, tasks))
            if not self._scheduled:
                # scheduled before the tasks below: the sync receivers of what is sent in
                # this iteration run before the first step of any task started in it
                self._scheduled = True
                self._loop.call_soon(self.deliver)
        for receiver in now:
            self._call(sender, receiver, event, tasks)

    def deliver(self) -> None:
        """Call the receivers queued so far (normally on the loop iteration after sending)."""
        self._scheduled = False
        while self._queue:
            sender, event, receivers, tasks = self._queue.popleft()
            if tasks.closed:
                continue
            for receiver in receivers:
                self._call(sender, receiver, event, tasks)

    @staticmethod
    def _call(
        sender: AgentSession[Any], receiver: Receiver, event: Event, tasks: HandlerTasks
    ) -> None:
        try:
            result = receiver(sender, event=event)
        except Exception:
            _log_handler_error(event, receiver, None)
            return
        if inspect.isawaitable(result):
            tasks.start(result, event, receiver)


def _log_handler_error(event: Event, receiver: Receiver, exc: BaseException | None) -> None:
    name = handler_name(receiver)
    logger.error(
        "playback handler %s raised for message %r (speech %s)",
        name,
        event.message_id,
        event.speech_id,
        exc_info=exc if exc is not None else True,
        extra=_log_extra(event, name),
    )


def _log_extra(event: Event, handler: str | None) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "playback_hooks.message_id": event.message_id,
        "playback_hooks.speech_id": event.speech_id,
    }
    if handler is not None:
        extra["playback_hooks.handler"] = handler
    return extra
