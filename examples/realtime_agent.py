"""A GPT-Realtime agent that reports each item of its responses as the user hears it.

A realtime response can hold several assistant items (a short preamble, then the answer).
livekit reports the speech once; playback_hooks reports every item, with the item id that
later appears in the chat context, what was heard of it and whether the user cut it off.

Needs ``OPENAI_API_KEY``. Talk to it in the terminal::

    python examples/realtime_agent.py console

or run it as a worker for a LiveKit room (also needs ``LIVEKIT_URL``, ``LIVEKIT_API_KEY``,
``LIVEKIT_API_SECRET``)::

    python examples/realtime_agent.py dev
"""

from __future__ import annotations

import logging
from typing import Any

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli
from livekit.plugins import openai

import playback_hooks as ph

logger = logging.getLogger("realtime-agent")

server = AgentServer()


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    """Start a realtime session and log the playback of every item."""
    session: AgentSession[Any] = AgentSession(llm=openai.realtime.RealtimeModel())
    agent = Agent(
        instructions=(
            "You are a helpful voice assistant. Before a longer answer, say a short "
            "preamble such as 'Let me check.', then give the answer."
        )
    )
    ph.attach(session)  # before start(): the tracker goes on top of RoomIO's chain

    @ph.on_message_played(session=session)
    def started(event: ph.MessagePlaybackStarted) -> None:
        logger.info("item %s (#%d of its response) is playing", event.message_id, event.index)

    @ph.on_message_finished(session=session)
    def finished(event: ph.MessagePlaybackFinished) -> None:
        logger.info(
            "item %s: %s, %.2f s heard, transcript %r",
            event.message_id,
            event.played,
            event.playback_position,
            event.transcript,
        )

    await session.start(agent=agent, room=ctx.room)
    session.generate_reply(instructions="Greet the user.")


if __name__ == "__main__":
    cli.run_app(server)
