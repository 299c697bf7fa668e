"""A real STT-LLM-TTS agent whose ``llm_node`` yields two responses, each reported when heard.

The first response is an instant acknowledgement, the second the model's answer. A
background task starts the moment the user starts hearing the answer, and is cancelled if
the user cuts the answer off.

Needs ``OPENAI_API_KEY``. Talk to it in the terminal::

    python examples/pipeline_agent.py console

or run it as a worker for a LiveKit room (also needs ``LIVEKIT_URL``, ``LIVEKIT_API_KEY``,
``LIVEKIT_API_SECRET``)::

    python examples/pipeline_agent.py dev
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable
from typing import Any

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, ModelSettings, cli, llm
from livekit.agents.types import FlushSentinel
from livekit.plugins import openai

import playback_hooks as ph

logger = logging.getLogger("pipeline-agent")


class TwoPartAgent(Agent):
    """Acknowledges at once, then answers; each part is its own message."""

    def __init__(self) -> None:
        super().__init__(
            instructions="You are a helpful voice assistant. Answer in two or three sentences."
        )

    @ph.track_messages
    async def llm_node(
        self,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        model_settings: ModelSettings,
    ) -> AsyncIterable[llm.ChatChunk | str | FlushSentinel]:
        """Yield an acknowledgement (when the user spoke), then the model's answer."""
        messages = [item for item in chat_ctx.items if item.type == "message"]
        if messages and messages[-1].role == "user":
            yield ph.MessageBoundary("ack", metadata={"kind": "acknowledgement"})
            yield "Sure, let me think about that."
        yield ph.MessageBoundary("answer", metadata={"kind": "answer"})
        async for chunk in Agent.default.llm_node(self, chat_ctx, tools, model_settings):
            yield chunk


server = AgentServer()


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    """Start the session, attach the tracker and log every message's playback."""
    session: AgentSession[Any] = AgentSession(
        stt=openai.STT(),
        llm=openai.LLM(model="gpt-4.1-mini"),
        tts=openai.TTS(),
    )
    ph.attach(session)  # before start(): so the greeting of on_enter is reported too

    @ph.on_message_played(session=session, message_id="answer", cancel_on_partial=True)
    async def follow_answer(event: ph.MessagePlaybackStarted) -> None:
        # the background work of #4213: it starts when the answer is heard, not generated
        logger.info(
            "answer is playing: starting its background task", extra={"id": event.speech_id}
        )
        await asyncio.sleep(5)
        logger.info("background task done", extra={"id": event.speech_id})

    @ph.on_message_finished(session=session)
    def report(event: ph.MessagePlaybackFinished) -> None:
        logger.info(
            "message %s: %s, %.2f s heard",
            event.message_id,
            event.played,
            event.playback_position,
        )

    await session.start(agent=TwoPartAgent(), room=ctx.room)
    session.generate_reply(instructions="Greet the user and offer your help.")


if __name__ == "__main__":
    cli.run_app(server)
