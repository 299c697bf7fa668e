"""One offline session with the installed wheel; prints what happened as JSON.

Run by tests/test_packaging.py with the fresh environment's interpreter (``python -I``), so
everything it imports comes from that environment.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable
from typing import Any

from livekit.agents import Agent, AgentSession, ModelSettings, llm
from livekit.agents.types import FlushSentinel

import playback_hooks as ph
from playback_hooks import testing
from playback_hooks.testing import EventCollector, ScriptedLLM, SimulatedSink, SineTTS


class GreetingAgent(Agent):
    """Names the LLM's reply "greeting"."""

    def __init__(self) -> None:
        super().__init__(instructions="Greet the user.")

    @ph.track_messages
    async def llm_node(
        self,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        model_settings: ModelSettings,
    ) -> AsyncIterable[llm.ChatChunk | str | FlushSentinel]:
        """The scripted LLM's reply, as one message."""
        yield ph.MessageBoundary("greeting", metadata={"from": "wheel"})
        async for chunk in Agent.default.llm_node(self, chat_ctx, tools, model_settings):
            yield chunk


async def main() -> dict[str, Any]:
    """Play one reply; report the events and the sink's segments."""
    sink = SimulatedSink()
    session: AgentSession[Any] = AgentSession(
        llm=ScriptedLLM([["Hello from the installed wheel."]]), tts=SineTTS()
    )
    session.output.audio = sink
    await session.start(GreetingAgent(), record=False)
    tracker = ph.attach(session)
    try:
        with EventCollector(session) as events:
            session.generate_reply()
            (finished,) = await events.wait_finished(1, timeout=10)
    finally:
        await tracker.aclose()
        await session.aclose()
        await sink.aclose()
    (started,) = events.started
    return {
        "module": ph.__file__,
        "testing": testing.__file__,
        "timeline": events.timeline(),
        "metadata": dict(started.metadata),
        "started_at": started.started_at,
        "played": finished.played,
        "sink_started_at": [s.started_at for s in sink.segments],
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
