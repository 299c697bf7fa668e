"""How messages end when the user interrupts: full, partial at its own position, skipped."""

from __future__ import annotations

import asyncio

from playback_hooks.testing import SineTTS

from .agents import ScriptAgent, boundary
from .conftest import LIVEKIT, StartSession


class TestInterruption:
    """Guarantee 3: full before the cut, partial with its own position, skipped after."""

    async def test_interrupted_in_message_two_of_three(self, start_session: StartSession) -> None:
        agent = ScriptAgent(
            [
                boundary("m1"),
                "First part, short.",
                boundary("m2"),
                "Second part is a rather long sentence that takes a while to play out.",
                boundary("m3"),
                "Third part never heard.",
            ]
        )
        off = await start_session(agent)
        handle = off.session.generate_reply()
        await off.tracker.wait_for("m2", "started", timeout=10)
        await asyncio.sleep(0.3)  # the user talks over the agent 300 ms into m2
        handle.interrupt()
        finished = await off.events.wait_finished(3)

        assert [(f.message_id, f.played, f.interrupted) for f in finished] == [
            ("m1", "full", False),
            ("m2", "partial", True),
            ("m3", "skipped", True),
        ]
        assert off.events.timeline() == [
            ("started", "m1"),
            ("finished", "m1"),
            ("started", "m2"),
            ("finished", "m2"),
            ("finished", "m3"),
        ]
        sink1, sink2 = off.sink.segments
        assert finished[0].playback_position == sink1.position == sink1.captured
        # m2's own position, as the sink reported it for m2's segment: never cumulative
        assert finished[1].playback_position == sink2.position
        assert 0 < finished[1].playback_position < sink2.captured
        assert finished[2].playback_position == 0 and finished[2].started_at is None

    async def test_interrupted_before_any_audio(self, start_session: StartSession) -> None:
        # TTS latency keeps the first frame away long enough to interrupt before it
        agent = ScriptAgent([boundary("a"), "Never heard.", boundary("b"), "Nor this."])
        off = await start_session(agent, tts_model=SineTTS(latency=5.0))
        handle = off.session.generate_reply()
        await asyncio.sleep(0.2)
        handle.interrupt()
        finished = await off.events.wait_finished(2)
        assert [(f.message_id, f.played, f.interrupted) for f in finished] == [
            ("a", "skipped", True),
            ("b", "skipped", True),
        ]
        assert off.events.started == []
        assert off.sink.segments == []
        assert all(f.playback_position == 0 for f in finished)

    async def test_interrupting_a_say(self, start_session: StartSession) -> None:
        off = await start_session(ScriptAgent())
        handle = off.session.say("A fairly long greeting that the user will cut off early.")
        off.tracker.label(handle, "greeting", metadata={"kind": "welcome"})
        await off.tracker.wait_for("greeting", "started", timeout=10)
        await asyncio.sleep(0.2)
        handle.interrupt()
        (finished,) = await off.events.wait_finished(1)
        assert finished.message_id == "greeting"
        assert finished.source == "say"
        assert finished.played == "partial" and finished.interrupted
        assert finished.playback_position == off.sink.segments[0].position
        assert dict(finished.metadata) == {"kind": "welcome"}


class TestTTSFailure:
    """A TTS failing mid-message: partial but not interrupted; later messages skipped."""

    async def test_tts_fails_in_second_message(self, start_session: StartSession) -> None:
        agent = ScriptAgent(
            [
                boundary("ok"),
                "This one is fine.",
                boundary("bad"),
                "This one BREAKS the TTS.",
                boundary("after"),
                "Nothing after a failed TTS is spoken.",
            ]
        )
        off = await start_session(agent, tts_model=SineTTS(fail_on="BREAKS"))
        off.session.generate_reply()
        finished = await off.events.wait_finished(3)
        # livekit-agents before 1.8.6 does not mark a segment its TTS cut short
        # (_mark_input_truncated): there the message ends as its sink reports it, in full
        cut_short = "partial" if LIVEKIT >= (1, 8, 6) else "full"
        assert [(f.message_id, f.played, f.interrupted) for f in finished] == [
            ("ok", "full", False),
            ("bad", cut_short, False),
            ("after", "skipped", False),
        ]
        assert finished[1].playback_position == off.sink.segments[1].position > 0
        assert len(off.sink.segments) == 2


class TestQueuedSpeeches:
    """One interruption with speeches queued behind the one playing: every message ends
    once, in the order the speeches would have played, not in the order livekit ends them."""

    async def test_cut_off_while_queued(self, start_session: StartSession) -> None:
        agent = ScriptAgent(
            [boundary("a0"), "The first reply plays for a good while.", boundary("a1"), "More."],
            [boundary("b0"), "Queued reply.", boundary("b1"), "Its second part."],
        )
        off = await start_session(agent)
        off.session.generate_reply()
        off.session.generate_reply()
        queued_say = off.session.say("A queued say.")
        off.tracker.label(queued_say, "c")
        await off.tracker.wait_for("a0", "started", timeout=10)
        off.session.interrupt()
        await off.tracker.wait_for("c", "finished", timeout=10)
        # each speech's messages together, the speeches in the order they were queued (the
        # queued reply generated its text while it waited: its markers are messages)
        assert [(f.message_id, f.played) for f in off.events.finished] == [
            ("a0", "partial"),
            ("a1", "skipped"),
            ("b0", "skipped"),
            ("b1", "skipped"),
            ("c", "skipped"),
        ]
