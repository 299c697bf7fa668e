"""Live progress for one tracker: whether it is wanted, and the interval events."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from livekit.agents import AgentSession

from ._log import guarded
from ._messages import Reporter
from ._order import PlaybackOrder
from .signals import has_receivers, message_playback_progressed

__all__ = ["ProgressFollower"]


class ProgressFollower:
    """Says whether progress is wanted, and paces the interval progress events.

    Progress is wanted while the session's ``message_playback_progressed`` signal has a
    receiver or the tracker has an interval; asked once per message, when its audio begins,
    so that nobody pays for progress nobody follows. With an interval, one progress event
    every ``interval`` seconds while a message of the tracker plays, from its started event
    to its finished event.
    """

    def __init__(
        self,
        session: AgentSession[Any],
        loop: asyncio.AbstractEventLoop,
        order: PlaybackOrder,
        reporter: Reporter,
        interval: float | None,
    ) -> None:
        self._session = session
        self._loop = loop
        self._order = order
        self._reporter = reporter
        self.interval = interval
        self._tick: asyncio.TimerHandle | None = None
        self._stopped = False

    def wanted(self) -> bool:
        """Whether a message whose audio begins now should have its progress followed."""
        return not self._stopped and (
            self.interval is not None or has_receivers(message_playback_progressed, self._session)
        )

    def message_started(self) -> None:
        """A message of the tracker started playing: tick from now on."""
        self._cancel()
        if self.interval is not None and not self._stopped:
            self._tick = self._loop.call_later(self.interval, self._on_tick)

    def message_finished(self) -> None:
        """The message playing ended: no more ticks until the next one starts."""
        self._cancel()

    def stop(self) -> None:
        """Follow no more progress (the tracker detached)."""
        self._stopped = True
        self._cancel()

    def _cancel(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None

    def _on_tick(self) -> None:
        self._tick = None
        if self.interval is None or self._stopped or self._order.playing() is None:
            return
        guarded(self._order.tick, self._reporter, time.time())
        self._tick = self._loop.call_later(self.interval, self._on_tick)
