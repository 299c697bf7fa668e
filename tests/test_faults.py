"""Faults through a real AgentSession: the audio goes on and every message still ends once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable
from typing import Any

import pytest
from livekit.agents import Agent

import playback_hooks as ph
from playback_hooks._order import PlaybackOrder
from playback_hooks.testing import EventCollector, SimulatedSink

from .agents import ScriptAgent, boundary
from .chains import start_chain
from .conftest import StartSession
from .sinks import RefusingSink


class FailingNodeAgent(Agent):
    """Yields two messages, then its llm_node raises."""

    def __init__(self) -> None:
        super().__init__(instructions="failing node")

    @ph.track_messages
    async def llm_node(self, *args: Any, **kwargs: Any) -> AsyncIterable[Any]:
        yield boundary("one")
        yield "First message."
        yield boundary("two")
        yield "Second message."
        await asyncio.sleep(0.05)
        raise RuntimeError("llm_node failed")


class GreetingAgent(ScriptAgent):
    """Replies as soon as it becomes the session's agent."""

    async def on_enter(self) -> None:
        self.session.generate_reply()


class TestSinkFaults:
    """A sink raising in capture_frame never hangs livekit and skips only that message."""

    async def test_sink_refuses_second_segment(self, start_session: StartSession) -> None:
        sink = RefusingSink(refuse=2)
        agent = ScriptAgent(
            [boundary("a"), "First part.", boundary("b"), "Refused part.", boundary("c"), "Third."]
        )
        off = await start_session(agent, sink=sink)
        handle = off.session.generate_reply()
        await asyncio.wait_for(handle.wait_for_playout(), 15)
        finished = off.events.finished
        assert [(f.message_id, f.played) for f in finished][:2] == [
            ("a", "full"),
            ("b", "skipped"),
        ]
        # whatever livekit does after the failure, every message ends exactly once
        assert [f.message_id for f in finished] == ["a", "b", "c"]
        assert len({e.message_id for e in off.events.started}) == len(off.events.started)


class TestSourceFaults:
    """llm_node raising: what was said plays; nothing is lost or duplicated."""

    async def test_llm_node_raises_after_two_markers(self, start_session: StartSession) -> None:
        off = await start_session(FailingNodeAgent())
        handle = off.session.generate_reply()
        await asyncio.wait_for(handle.wait_for_playout(), 15)
        finished = await off.events.wait_finished(2)
        assert [(f.message_id, f.played) for f in finished] == [("one", "full"), ("two", "full")]
        assert off.events.timeline() == [
            ("started", "one"),
            ("finished", "one"),
            ("started", "two"),
            ("finished", "two"),
        ]


class TestSessionFaults:
    """Closing the session or switching agents mid-speech ends every pending message."""

    async def test_aclose_mid_playback(
        self, start_session: StartSession, recwarn: pytest.WarningsRecorder
    ) -> None:
        off = await start_session(
            ScriptAgent(
                [
                    boundary("a"),
                    "Short.",
                    boundary("b"),
                    "A much longer second part here.",
                    boundary("c"),
                    "Never.",
                ]
            )
        )
        running = asyncio.Event()

        @ph.on_message_played(session=off.session)
        async def background(event: ph.MessagePlaybackStarted) -> None:
            running.set()
            await asyncio.Event().wait()

        try:
            off.session.generate_reply()
            await off.tracker.wait_for("b", "started", timeout=10)
            await asyncio.wait_for(running.wait(), 5)
            await off.session.aclose()
            await off.tracker.aclose()
        finally:
            ph.disconnect(background)
        assert [(f.message_id, f.played, f.interrupted) for f in off.events.finished] == [
            ("a", "full", False),
            ("b", "partial", True),
            ("c", "skipped", True),
        ]
        assert off.tracker.stats().handler_tasks == 0
        assert not off.tracker.attached
        assert not [w for w in recwarn if "never awaited" in str(w.message)]

    async def test_update_agent_mid_speech(self, start_session: StartSession) -> None:
        first = ScriptAgent(
            [boundary("old1"), "Old agent talking.", boundary("old2"), "And still talking on."]
        )
        off = await start_session(first)
        off.session.generate_reply()
        await off.tracker.wait_for("old1", "started", timeout=10)
        off.session.update_agent(GreetingAgent([boundary("new1"), "New agent here."]))
        new1 = await off.tracker.wait_for("new1", "finished", timeout=15)
        assert new1.played == "full"
        ids = [f.message_id for f in off.events.finished]
        assert ids == ["old1", "old2", "new1"]
        assert len(off.events.started) == len({e.message_id for e in off.events.started})

    async def test_output_replaced_after_attach_is_tracked_from_the_next_speech(
        self, start_session: StartSession, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="playback_hooks")
        off = await start_session(
            ScriptAgent([boundary("w"), "Played on the first sink."], [boundary("x"), "New."])
        )
        await off.session.generate_reply()
        new_sink = SimulatedSink()
        try:
            off.session.output.audio = new_sink
            handle = off.session.generate_reply()
            top = off.session.output.audio
            assert top is not None and top.label == "playback_hooks"
            assert top.next_in_chain is new_sink
            finished = await off.tracker.wait_for("x", "finished", timeout=15)
            await asyncio.wait_for(handle.wait_for_playout(), 15)
        finally:
            await new_sink.aclose()
        notes = [r for r in caplog.records if "replaced after attach" in r.getMessage()]
        assert len(notes) == 1 and notes[0].levelname == "INFO"
        assert off.tracker.attached and ph.tracker_for(off.session) is off.tracker
        assert off.events.timeline() == [
            ("started", "w"),
            ("finished", "w"),
            ("started", "x"),
            ("finished", "x"),
        ]
        assert finished.played == "full"
        assert finished.started_at == new_sink.segments[0].started_at
        assert len(off.sink.segments) == len(new_sink.segments) == 1


class TestInternalErrors:
    """A failure in the tracker's own bookkeeping is logged; the audio is not affected."""

    async def test_bookkeeping_failure_never_reaches_livekit(
        self,
        start_session: StartSession,
        caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        off = await start_session(ScriptAgent([boundary("a"), "One.", boundary("b"), "Two."]))

        def broken(*args: Any) -> None:
            raise RuntimeError("bookkeeping bug")

        monkeypatch.setattr(PlaybackOrder, "segment_started", broken)
        handle = off.session.generate_reply()
        await asyncio.wait_for(handle.wait_for_playout(), 15)
        assert len(off.sink.segments) == 2
        assert [s.position == s.captured for s in off.sink.segments] == [True, True]
        errors = [r for r in caplog.records if "internal error" in r.getMessage()]
        assert len(errors) == 2
        assert all(r.exc_info is not None for r in errors)

    async def test_progress_bookkeeping_failure_never_reaches_livekit(
        self, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # RoomIO's participant output reports played runs (here: the end of each playout);
        # following them (for a message whose progress is followed) is guarded where it
        # runs, not through guarded()
        def broken(*args: Any) -> None:
            raise RuntimeError("bookkeeping bug")

        monkeypatch.setattr(PlaybackOrder, "run_played", broken)
        run = await start_chain(
            ScriptAgent([boundary("a"), "One.", boundary("b"), "Two."]), sink="room"
        )
        assert run.events is not None
        progress = EventCollector(run.session, progress=True)
        try:
            handle = run.session.generate_reply()
            await asyncio.wait_for(handle.wait_for_playout(), 15)
            await run.events.wait_finished(2, timeout=5)
        finally:
            progress.close()
            await run.aclose()
        runs = sum(len(segment) for segment in run.sink_reports.progressed)
        errors = [r for r in caplog.records if "internal error in" in r.getMessage()]
        assert runs >= 2 and len(errors) == runs
        assert all(r.exc_info is not None and r.exc_info[0] is RuntimeError for r in errors)
        assert [(e.message_id, e.played) for e in run.events.finished] == [
            ("a", "full"),
            ("b", "full"),
        ]
