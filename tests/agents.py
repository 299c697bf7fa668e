"""Agents whose llm_node yields a scripted stream, for the tests."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, Sequence
from typing import Any

from livekit.agents import Agent, ModelSettings, llm
from livekit.agents.types import FlushSentinel

import playback_hooks as ph

Item = str | FlushSentinel | float  # a float is a pause, in seconds


async def _play(scripts: list[list[Item]]) -> AsyncIterable[str | FlushSentinel]:
    script = scripts.pop(0) if scripts else []
    for item in script:
        if isinstance(item, float):
            await asyncio.sleep(item)
        else:
            yield item


class ScriptAgent(Agent):
    """Yields ``script`` from a ``@track_messages`` llm_node; floats are pauses."""

    def __init__(self, *scripts: Sequence[Item], **kwargs: Any) -> None:
        super().__init__(instructions="test agent", **kwargs)
        self.scripts = [list(s) for s in scripts]

    @ph.track_messages
    async def llm_node(
        self,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        model_settings: ModelSettings,
    ) -> AsyncIterable[str | FlushSentinel]:
        async for item in _play(self.scripts):
            yield item


class UntrackedAgent(ScriptAgent):
    """Like ScriptAgent, but its llm_node lacks ``@track_messages``."""

    llm_node = inspect.unwrap(ScriptAgent.llm_node)  # the same node, undecorated


def boundary(id: str, **metadata: Any) -> ph.MessageBoundary:
    """Shorthand for a marker with keyword metadata."""
    return ph.MessageBoundary(id, metadata=metadata or None)


# Three responses for the "full, partial (cut off in b), skipped" scenarios.
FULL_PARTIAL_SKIPPED: list[Item] = [
    boundary("a"),
    "The first response plays to the end.",
    boundary("b"),
    "The second response is cut off by the user halfway through it.",
    boundary("c"),
    "The third response is never heard.",
]
