"""Delivers one session's events to the signals' receivers, outside the audio path."""

from __future__ import annotations

import asyncio
import inspect
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
    follows_message,
    handler_name,
    message_playback_finished,
    message_playback_progressed,
    message_playback_started,
)

__all__ = ["Dispatcher"]


class Dispatcher:
    """Sends events to the receivers of their signal, isolated, on a later loop iteration.

    Events are queued in the order the ledger releases them and delivered on a later loop
    iteration, so no receiver runs inside the sink's callback. Each receiver is isolated: an
    exception is logged with the event's ids and the next receiver still runs. A receiver
    that returns an awaitable (an ``async def`` handler) runs as a task this dispatcher owns.
    blinker's own ``Signal.send()`` is not used: it would propagate a receiver's exception.
    """

    def __init__(self, sender: AgentSession[Any], loop: asyncio.AbstractEventLoop) -> None:
        self._sender = sender
        self._loop = loop
        self._queue: list[Event] = []
        self._scheduled = False
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        # tasks of cancel_on_partial handlers, per message (speech id, index): a message id
        # may repeat, this pair cannot
        self._following: dict[tuple[str, int], list[asyncio.Task[Any]]] = {}

    @property
    def running_tasks(self) -> int:
        """Handler tasks still running."""
        return len(self._tasks)

    def send(self, event: Event) -> None:
        """Queue ``event``; delivery happens on a later loop iteration."""
        if self._closed:
            return
        self._queue.append(event)
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
        for event in queue:
            if self._closed:
                return
            if isinstance(event, MessagePlaybackFinished):
                self._end_following(event)
                self._deliver(message_playback_finished, event)
            elif isinstance(event, MessagePlaybackProgressed):
                self._deliver(message_playback_progressed, event)
            else:
                self._deliver(message_playback_started, event)

    def _deliver(self, signal: Signal, event: Event) -> None:
        for receiver in list(signal.receivers_for(self._sender)):
            try:
                result = receiver(self._sender, event=event)
            except Exception:
                _log_handler_error(event, receiver, None)
                continue
            if inspect.isawaitable(result):
                task = self._start_task(result, event, receiver)
                if isinstance(event, MessagePlaybackStarted) and follows_message(receiver):
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
                    "cancelling a handler of message %r, played %s",
                    event.message_id,
                    event.played,
                    extra=_log_extra(event, None),
                )
                task.cancel()

    def _start_task(self, awaitable: Any, event: Event, receiver: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(awaitable, loop=self._loop)
        self._tasks.add(task)

        def _done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and (exc := t.exception()) is not None:
                _log_handler_error(event, receiver, exc)

        task.add_done_callback(_done)
        return task


def _log_handler_error(event: Event, receiver: Any, exc: BaseException | None) -> None:
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
