"""Records a session's message events in delivery order, for assertions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from blinker import Signal
from livekit.agents import AgentSession

from ..events import (
    Event,
    MessagePlaybackFinished,
    MessagePlaybackProgressed,
    MessagePlaybackStarted,
)
from ..signals import (
    message_playback_finished,
    message_playback_progressed,
    message_playback_started,
)

__all__ = ["EventCollector"]


class EventCollector:
    """Records a session's message events in the order they are delivered.

    Use as a context manager (or call ``close()``). ``events`` holds the started and
    finished events in order. With ``progress=True`` it also receives
    ``message_playback_progressed`` (which makes the tracker follow progress, as any
    receiver does): ``progressed`` holds those, ``delivered`` every event in order.
    """

    def __init__(self, session: AgentSession[Any], *, progress: bool = False) -> None:
        self.session = session
        self.events: list[MessagePlaybackStarted | MessagePlaybackFinished] = []
        self.progressed: list[MessagePlaybackProgressed] = []
        """The progress events, in order (only with ``progress=True``)."""
        self.delivered: list[Event] = []
        """Every event received, all kinds, in delivery order."""
        self._changed = asyncio.Event()
        self._signals: list[Signal] = [message_playback_started, message_playback_finished]
        if progress:
            self._signals.append(message_playback_progressed)
        for signal in self._signals:
            signal.connect(self._receive, sender=session, weak=False)

    def _receive(self, sender: Any, *, event: Any, **_: Any) -> None:
        self.delivered.append(event)
        if isinstance(event, MessagePlaybackProgressed):
            self.progressed.append(event)
        else:
            self.events.append(event)
        self._changed.set()

    @property
    def started(self) -> list[MessagePlaybackStarted]:
        """The started events, in order."""
        return [e for e in self.events if isinstance(e, MessagePlaybackStarted)]

    @property
    def finished(self) -> list[MessagePlaybackFinished]:
        """The finished events, in order."""
        return [e for e in self.events if isinstance(e, MessagePlaybackFinished)]

    def timeline(self) -> list[tuple[str, str]]:
        """``(kind, message_id)`` pairs in delivery order: the easiest thing to assert on."""
        return [
            ("started" if isinstance(e, MessagePlaybackStarted) else "finished", e.message_id)
            for e in self.events
        ]

    async def wait_finished(
        self, count: int, *, timeout: float = 30.0
    ) -> list[MessagePlaybackFinished]:
        """Wait until at least ``count`` finished events arrived; return them all."""

        async def _wait() -> None:
            while len(self.finished) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), timeout)
        return self.finished

    def progress_of(self, message_id: str) -> list[MessagePlaybackProgressed]:
        """The progress events of the message(s) with this id, in order."""
        return [p for p in self.progressed if p.message_id == message_id]

    async def wait_progress(
        self,
        predicate: Callable[[MessagePlaybackProgressed], bool],
        *,
        timeout: float = 30.0,
    ) -> MessagePlaybackProgressed:
        """Wait for a progress event for which ``predicate`` is true (one already received
        counts); return the first such event."""

        def found() -> MessagePlaybackProgressed | None:
            return next((p for p in self.progressed if predicate(p)), None)

        async def _wait() -> MessagePlaybackProgressed:
            while (event := found()) is None:
                self._changed.clear()
                await self._changed.wait()
            return event

        return await asyncio.wait_for(_wait(), timeout)

    def close(self) -> None:
        """Stop recording (the signals no longer hold the collector or its session)."""
        for signal in self._signals:
            # every sender: blinker keeps a strong receiver until it is disconnected from all
            signal.disconnect(self._receive)

    def __enter__(self) -> EventCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
