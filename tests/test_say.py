"""Naming say() and generate_reply() speeches with tracker.label()."""

from __future__ import annotations

import pytest

from .agents import ScriptAgent, boundary
from .conftest import StartSession


class TestLabel:
    """label() names a speech's first message without an id of its own."""

    async def test_labelled_say(self, start_session: StartSession) -> None:
        off = await start_session(ScriptAgent())
        handle = off.session.say("Welcome to the show!")
        off.tracker.label(handle, "welcome", metadata={"lang": "en"})
        started = await off.tracker.wait_for("welcome", "started", timeout=10)
        finished = await off.tracker.wait_for("welcome", "finished", timeout=10)
        assert started.source == "say" and started.index == 0
        assert started.speech_id == handle.id
        assert started.started_at == off.sink.segments[0].started_at
        assert finished.played == "full"
        assert dict(finished.metadata) == {"lang": "en"}
        assert off.events.timeline() == [("started", "welcome"), ("finished", "welcome")]

    async def test_unlabelled_say_gets_automatic_id(self, start_session: StartSession) -> None:
        off = await start_session(ScriptAgent())
        handle = off.session.say("Hello.")
        (finished,) = await off.events.wait_finished(1)
        assert finished.message_id.startswith("auto/") and handle.id in finished.message_id
        assert finished.source == "say" and finished.played == "full"

    async def test_labelled_generate_reply_without_markers(
        self, start_session: StartSession
    ) -> None:
        off = await start_session(ScriptAgent(["One plain reply."]))
        handle = off.session.generate_reply()
        off.tracker.label(handle, "plain")
        (finished,) = await off.events.wait_finished(1)
        assert finished.message_id == "plain" and finished.source == "llm"

    async def test_label_goes_to_first_message_without_marker(
        self, start_session: StartSession
    ) -> None:
        off = await start_session(ScriptAgent(["Lead in.", boundary("named"), "Named."]))
        handle = off.session.generate_reply()
        off.tracker.label(handle, "lead")
        finished = await off.events.wait_finished(2)
        assert [f.message_id for f in finished] == ["lead", "named"]

    async def test_labelled_say_interrupted_before_playing_is_skipped(
        self, start_session: StartSession
    ) -> None:
        off = await start_session(ScriptAgent())
        first = off.session.say("This first speech plays.")
        second = off.session.say("This one is cancelled while queued.")
        off.tracker.label(first, "first")
        off.tracker.label(second, "second")
        await off.tracker.wait_for("first", "started", timeout=10)
        second.interrupt()
        finished = await off.tracker.wait_for("second", "finished", timeout=10)
        assert finished.played == "skipped" and finished.interrupted
        assert finished.started_at is None
        assert (await off.tracker.wait_for("first", "finished", timeout=10)).played == "full"

    async def test_label_twice_or_late_is_refused(self, start_session: StartSession) -> None:
        off = await start_session(ScriptAgent())
        handle = off.session.say("Twice.")
        off.tracker.label(handle, "once")
        with pytest.raises(ValueError, match="already labelled 'once'"):
            off.tracker.label(handle, "twice")
        await handle
        with pytest.raises(RuntimeError, match="already over"):
            off.tracker.label(handle, "late")
        unlabelled = off.session.say("Playing already, and for a while.")
        await off.events.wait_finished(1)
        await off.tracker.wait_for(f"auto/{unlabelled.id}/0", "started", timeout=10)
        with pytest.raises(RuntimeError, match="already started playing"):
            off.tracker.label(unlabelled, "too-late")
