"""The realtime tap: learns each item of a realtime response, in order, with its id."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, TypeVar

from livekit.agents import Agent, AgentSession, llm
from livekit.agents.utils import is_given

from . import _livekit
from ._ledger import Ledger
from ._listeners import listener
from ._log import guarded
from ._messages import Announced
from .events import EMPTY_METADATA

__all__ = ["RealtimeTaps"]

T = TypeVar("T")

# How long to look for the realtime session of an agent after a handoff, and how often.
_HANDOFF_WATCH_SECONDS = 60.0
_HANDOFF_POLL_SECONDS = 0.005


class RealtimeTaps:
    """Taps every realtime session the tracked session's agents use.

    livekit's agent activity reads ``GenerationCreatedEvent.message_stream`` only later,
    inside the speech task; the tap replaces it with a stream that announces each
    ``MessageGeneration`` to the ledger (id == ``message_id``) as livekit pulls it, and
    tells the ledger when livekit starts processing an item (first pull of its audio or
    text), so items that never produce a segment end as skipped in their place.
    """

    def __init__(self, session: AgentSession[Any], ledger: Ledger) -> None:
        self._session = session
        self._ledger = ledger
        self._sessions: weakref.WeakSet[llm.RealtimeSession[Any]] = weakref.WeakSet()
        self._watch: asyncio.Task[None] | None = None
        self._closed = False
        self._on_generation = listener(self._on_generation_created)

    def tap(self, agent: Agent) -> None:
        """Tap ``agent``'s realtime session, if it has one not tapped yet."""
        if self._closed or not self.uses_realtime_model(agent):
            return  # (asked at every speech: no exception raised and caught for the others)
        try:
            rt_session = agent.realtime_llm_session
        except RuntimeError:
            return  # its activity is not running (yet)
        if rt_session in self._sessions:
            return
        self._sessions.add(rt_session)
        rt_session.on("generation_created", self._on_generation)

    def watch_handoff(self) -> None:
        """After a handoff, tap the new agent's realtime session as soon as it exists."""
        if self._closed or (self._watch is not None and not self._watch.done()):
            return
        self._watch = asyncio.ensure_future(self._watch_for_session())

    async def _watch_for_session(self) -> None:
        # livekit offers no event between creating the new agent's realtime session and
        # using it, so look for it at a short interval until it exists
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _HANDOFF_WATCH_SECONDS
        known = set(self._sessions)
        while loop.time() < deadline and not self._closed:
            with contextlib.suppress(RuntimeError):  # no agent running yet
                self.tap(self._session.current_agent)
            try:
                agent: Agent | None = self._session.current_agent
            except RuntimeError:
                agent = None  # no agent yet: keep looking
            if set(self._sessions) - known or (agent and not self.uses_realtime_model(agent)):
                return
            await asyncio.sleep(_HANDOFF_POLL_SECONDS)

    def uses_realtime_model(self, agent: Agent) -> bool:
        """Whether ``agent`` runs on a realtime model (its own, else the session's)."""
        model = agent.llm
        if not is_given(model):
            model = self._session.llm
        return isinstance(model, llm.RealtimeModel)

    def close(self) -> None:
        """Untap every session and stop watching."""
        self._closed = True
        for rt_session in list(self._sessions):
            rt_session.off("generation_created", self._on_generation)
        self._sessions = weakref.WeakSet()
        if self._watch is not None:
            self._watch.cancel()

    def _on_generation_created(self, ev: llm.GenerationCreatedEvent) -> None:
        if self._closed:
            return
        ev.message_stream = self._messages(ev.message_stream)

    async def _messages(
        self, stream: AsyncIterable[llm.MessageGeneration]
    ) -> AsyncIterator[llm.MessageGeneration]:
        # Announces the items of a reported speech to its end, also after detach(): the
        # ledger takes announcements for the speeches it reports only.
        async for item in stream:
            handle = _livekit.current_speech()
            if handle is not None:
                queued = guarded(
                    self._ledger.announce,
                    handle,
                    item.message_id,
                    EMPTY_METADATA,
                    "realtime",
                    has_segment=True,
                )
                if queued is not None:

                    def begins(handle: Any = handle, queued: Announced = queued) -> None:
                        guarded(self._ledger.item_begins, handle, queued)

                    item.audio_stream = _on_first_pull(item.audio_stream, begins)
                    item.text_stream = _on_first_pull(item.text_stream, begins)
            yield item


async def _on_first_pull(
    stream: AsyncIterable[T], callback: Callable[[], None]
) -> AsyncIterator[T]:
    callback()
    async for value in stream:
        yield value
