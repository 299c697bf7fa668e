"""``wait_for()``: the events of recent messages, and the calls waiting for one."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from .events import MessagePlaybackFinished, MessagePlaybackStarted

__all__ = ["HISTORY_SIZE", "Kind", "MessageNotPlayed", "Waiters"]

Kind = Literal["started", "finished"]

HISTORY_SIZE = 1024
"""How many messages are remembered after their events (oldest forgotten first)."""

Waited = MessagePlaybackStarted | MessagePlaybackFinished
"""An event `wait_for()` returns."""


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


@dataclass(eq=False)
class _Waiter:
    speech_id: str | None  # None: the message of any speech
    future: asyncio.Future[Waited]


class Waiters:
    """The started and finished events of the last ``HISTORY_SIZE`` messages, and the
    ``wait_for()`` calls waiting for an event not seen yet."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # per (speech id, message id): the events seen of that message
        self._history: OrderedDict[tuple[str, str], dict[Kind, Waited]] = OrderedDict()
        self._latest_speech: dict[str, str] = {}  # message id -> speech of its last event
        self._waiting: dict[tuple[str, Kind], list[_Waiter]] = {}

    @property
    def remembered(self) -> int:
        """Messages remembered."""
        return len(self._history)

    @property
    def waiting(self) -> int:
        """Calls waiting."""
        return sum(len(waiters) for waiters in self._waiting.values())

    def seen(self, event: Waited) -> None:
        """Remember ``event`` and wake the calls waiting for it."""
        kind: Kind = "started" if isinstance(event, MessagePlaybackStarted) else "finished"
        key = (event.speech_id, event.message_id)
        history = self._history
        seen = history.get(key)
        if seen is None:
            seen = history[key] = {}  # (a new key is the newest)
        else:
            if kind in seen or "finished" in seen:
                # An id may repeat within a speech (two markers with the same id): an event
                # of a kind already seen, or any event after a finished one, starts a new
                # message.
                seen = history[key] = {}
            history.move_to_end(key)
        seen[kind] = event
        self._latest_speech[event.message_id] = event.speech_id
        while len(history) > HISTORY_SIZE:
            (speech_id, message_id), _ = history.popitem(last=False)
            if self._latest_speech.get(message_id) == speech_id:
                del self._latest_speech[message_id]
        if not self._waiting:
            return  # nobody waits
        self._wake(event, kind, event)
        if isinstance(event, MessagePlaybackFinished) and event.played == "skipped":
            self._wake(event, "started", MessageNotPlayed(event))

    def recall(self, message_id: str, kind: Kind, speech_id: str | None) -> Waited | None:
        """The event if it was seen: of ``speech_id``'s message, else of the latest one.

        Raises:
            MessageNotPlayed: ``kind`` is ``"started"`` and the message ended skipped.
        """
        if speech_id is None:
            speech_id = self._latest_speech.get(message_id)
        seen = None if speech_id is None else self._history.get((speech_id, message_id))
        if seen is None:
            return None
        if kind in seen:
            return seen[kind]
        finished = seen.get("finished")
        if isinstance(finished, MessagePlaybackFinished):
            raise MessageNotPlayed(finished)
        return None

    async def wait(
        self, message_id: str, kind: Kind, speech_id: str | None, timeout: float | None
    ) -> Waited:
        """Wait for the event; ``TimeoutError`` after ``timeout`` seconds."""
        waiter = _Waiter(speech_id, self._loop.create_future())
        waiters = self._waiting.setdefault((message_id, kind), [])
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
                self._waiting.pop((message_id, kind), None)

    def fail_all(self, why: str) -> None:
        """Make every waiting call raise ``RuntimeError`` saying ``why`` about its message."""
        for (message_id, kind), waiters in self._waiting.items():
            for waiter in waiters:
                if not waiter.future.done():
                    waiter.future.set_exception(
                        RuntimeError(f"{why} before message {message_id!r} was {kind}")
                    )

    def _wake(self, event: Waited, kind: Kind, result: Waited | Exception) -> None:
        for waiter in self._waiting.get((event.message_id, kind), ()):
            if waiter.speech_id in (None, event.speech_id) and not waiter.future.done():
                if isinstance(result, Exception):
                    waiter.future.set_exception(result)
                else:
                    waiter.future.set_result(result)
