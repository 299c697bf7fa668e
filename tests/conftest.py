"""Shared fixtures: a real, offline AgentSession with the simulated sink, LLM and TTS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from livekit.agents import NOT_GIVEN, Agent, AgentSession, llm, tts
from livekit.agents.version import __version__ as livekit_version

import playback_hooks as ph
from playback_hooks.testing import EventCollector, ScriptedLLM, SimulatedSink, SineTTS


@dataclass
class Offline:
    """A started session, its sink, its tracker and a collector of its events."""

    session: AgentSession[Any]
    sink: SimulatedSink
    tracker: ph.PlaybackTracker
    events: EventCollector


StartSession = Callable[..., Awaitable[Offline]]

LIVEKIT = tuple(int(part) for part in livekit_version.split(".")[:3])
"""The installed livekit-agents release, e.g. ``(1, 8, 9)`` (``make compat`` runs them all)."""


@pytest.fixture
async def start_session() -> AsyncIterator[StartSession]:
    """Start real AgentSessions offline; everything is closed at teardown."""
    started: list[Offline] = []

    async def _start(
        agent: Agent,
        *,
        llm_model: llm.LLM[Any] | llm.RealtimeModel | None = None,
        tts_model: tts.TTS[Any] | None = None,
        sink: SimulatedSink | None = None,
        attach: bool = True,
        no_tts: bool = False,
        **session_kwargs: Any,
    ) -> Offline:
        sink = sink or SimulatedSink()
        tts_arg: tts.TTS[Any] | None = None
        if not no_tts:
            tts_arg = tts_model if tts_model is not None else SineTTS()
        session: AgentSession[Any] = AgentSession(
            llm=llm_model if llm_model is not None else ScriptedLLM([]),
            tts=tts_arg or NOT_GIVEN,
            **session_kwargs,
        )
        session.output.audio = sink
        # attached before start(), as the docs teach; events are collected from the start
        tracker = ph.attach(session) if attach else None
        events = EventCollector(session)
        await session.start(agent, record=False)
        off = Offline(session, sink, tracker, events)  # type: ignore[arg-type]
        started.append(off)
        return off

    yield _start
    for off in started:
        off.events.close()
        await off.session.aclose()
        if off.tracker is not None:
            await off.tracker.aclose()
        await off.sink.aclose()
