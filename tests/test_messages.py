"""Per-message events for llm_node segments, through a real AgentSession."""

from __future__ import annotations

import pytest
from livekit.agents.types import FlushSentinel

import playback_hooks as ph
from playback_hooks.testing import SimulatedSink

from .agents import ScriptAgent, UntrackedAgent, boundary
from .conftest import StartSession


class TestMarkers:
    """Each MessageBoundary becomes one message, with its id, metadata and exact start."""

    async def test_three_markers_in_order_with_exact_start(
        self, start_session: StartSession
    ) -> None:
        agent = ScriptAgent(
            [
                boundary("intro", kind="greeting"),
                "Hi there.",
                boundary("answer", n=42),
                "The answer is forty two.",
                boundary("outro"),
                "Bye now.",
            ]
        )
        off = await start_session(agent)
        handle = off.session.generate_reply()
        finished = await off.events.wait_finished(3)

        assert off.events.timeline() == [
            ("started", "intro"),
            ("finished", "intro"),
            ("started", "answer"),
            ("finished", "answer"),
            ("started", "outro"),
            ("finished", "outro"),
        ]
        started = off.events.started
        assert [e.index for e in started] == [0, 1, 2]
        assert {e.speech_id for e in off.events.events} == {handle.id}
        assert [e.source for e in off.events.events] == ["llm"] * 6
        assert dict(started[0].metadata) == {"kind": "greeting"}
        assert dict(started[1].metadata) == {"n": 42}
        assert dict(started[2].metadata) == {}
        # guarantee 1: the sink's own created_at, segment by segment
        assert [e.started_at for e in started] == [s.started_at for s in off.sink.segments]
        assert [f.started_at for f in finished] == [s.started_at for s in off.sink.segments]
        assert [f.played for f in finished] == ["full", "full", "full"]
        assert [f.interrupted for f in finished] == [False, False, False]
        assert [f.playback_position for f in finished] == [s.position for s in off.sink.segments]
        assert all(f.finished_at >= (f.started_at or 0) for f in finished)

    async def test_metadata_is_read_only_copy(self, start_session: StartSession) -> None:
        meta = {"k": 1}
        agent = ScriptAgent([ph.MessageBoundary("m", metadata=meta), "Some words."])
        off = await start_session(agent)
        off.session.generate_reply()
        (finished,) = await off.events.wait_finished(1)
        meta["k"] = 2
        assert finished.metadata["k"] == 1
        with pytest.raises(TypeError):
            finished.metadata["k"] = 3  # type: ignore[index]

    async def test_text_before_first_marker_and_plain_sentinels_get_auto_ids(
        self, start_session: StartSession
    ) -> None:
        agent = ScriptAgent(
            ["Opening words.", boundary("named"), "Named part.", FlushSentinel(), "Tail part."]
        )
        off = await start_session(agent)
        handle = off.session.generate_reply()
        finished = await off.events.wait_finished(3)
        ids = [f.message_id for f in finished]
        assert ids[1] == "named"
        assert ids[0] != ids[2]
        assert ids[0].startswith("auto/") and ids[2].startswith("auto/")
        assert handle.id in ids[0]
        assert [f.index for f in finished] == [0, 1, 2]
        assert [f.played for f in finished] == ["full"] * 3

    async def test_marker_without_text_is_skipped_in_place(
        self, start_session: StartSession
    ) -> None:
        agent = ScriptAgent(
            [boundary("a"), "First.", boundary("empty"), boundary("b"), "Second.", boundary("end")]
        )
        off = await start_session(agent)
        off.session.generate_reply()
        finished = await off.events.wait_finished(4)
        assert [(f.message_id, f.index, f.played) for f in finished] == [
            ("a", 0, "full"),
            ("empty", 1, "skipped"),
            ("b", 2, "full"),
            ("end", 3, "skipped"),
        ]
        assert off.events.timeline() == [
            ("started", "a"),
            ("finished", "a"),
            ("finished", "empty"),
            ("started", "b"),
            ("finished", "b"),
            ("finished", "end"),
        ]
        skipped = [f for f in finished if f.played == "skipped"]
        assert all(f.started_at is None and f.playback_position == 0 for f in skipped)
        assert all(not f.interrupted for f in skipped)

    async def test_empty_strings_and_double_sentinels_create_nothing(
        self, start_session: StartSession
    ) -> None:
        agent = ScriptAgent(
            [boundary("a"), "", "One.", FlushSentinel(), FlushSentinel(), "", "Two."]
        )
        off = await start_session(agent)
        off.session.generate_reply()
        finished = await off.events.wait_finished(2)
        assert len(off.sink.segments) == 2
        assert [f.played for f in finished] == ["full", "full"]
        assert finished[0].message_id == "a"
        assert len(off.events.finished) == 2

    async def test_whitespace_only_segment_is_skipped(self, start_session: StartSession) -> None:
        agent = ScriptAgent(
            [boundary("a"), "One.", boundary("blank"), "   ", boundary("b"), "Two."]
        )
        off = await start_session(agent)
        off.session.generate_reply()
        finished = await off.events.wait_finished(3)
        assert [(f.message_id, f.played) for f in finished] == [
            ("a", "full"),
            ("blank", "skipped"),
            ("b", "full"),
        ]
        assert len(off.sink.segments) == 2
        assert ("started", "blank") not in off.events.timeline()

    async def test_resampled_output_keeps_identity(self, start_session: StartSession) -> None:
        # The sink asks for 48 kHz, the TTS makes 24 kHz: livekit resamples above the
        # tracker and the frames lose their tags; binding by order still holds.
        agent = ScriptAgent([boundary("x"), "Resampled one.", boundary("y"), "Resampled two."])
        off = await start_session(agent, sink=SimulatedSink(sample_rate=48000))
        off.session.generate_reply()
        finished = await off.events.wait_finished(2)
        assert [f.message_id for f in finished] == ["x", "y"]
        assert [f.started_at for f in finished] == [s.started_at for s in off.sink.segments]


class TestUndecorated:
    """Markers in an llm_node without @track_messages warn once and never mislabel."""

    async def test_warns_once_and_uses_automatic_ids(
        self, start_session: StartSession, caplog: pytest.LogCaptureFixture
    ) -> None:
        agent = UntrackedAgent(
            [ph.MessageBoundary("lost"), "Some text.", ph.MessageBoundary("gone"), "More."],
            [ph.MessageBoundary("again"), "Third reply."],
        )
        off = await start_session(agent)
        off.session.generate_reply()
        finished = await off.events.wait_finished(2)
        off.session.generate_reply()
        finished = await off.events.wait_finished(3)
        warnings = [r for r in caplog.records if "track_messages" in r.getMessage()]
        assert len(warnings) == 1
        assert warnings[0].levelname == "WARNING"
        assert getattr(warnings[0], "playback_hooks.agent", None) == "UntrackedAgent"
        assert warnings[0].getMessage().startswith("UntrackedAgent.llm_node yields")
        # the markers still split the audio, and nothing is mislabelled
        assert len(off.sink.segments) == 3
        assert all(f.message_id.startswith("auto/") for f in finished)
        assert [f.played for f in finished] == ["full"] * 3

    async def test_detach_removes_the_watch(self, start_session: StartSession) -> None:
        agent = UntrackedAgent()
        off = await start_session(agent)
        await off.session.generate_reply()  # the agent is watched from its first speech
        assert "llm_node" in vars(agent)
        off.tracker.detach()
        assert "llm_node" not in vars(agent)


class TestQueue:
    """Replies queued back to back keep their own speech ids, in playback order."""

    async def test_two_replies_back_to_back(self, start_session: StartSession) -> None:
        agent = ScriptAgent(
            [boundary("r1a"), "Reply one part one.", boundary("r1b"), "Reply one part two."],
            [boundary("r2a"), "Reply two part one.", boundary("r2b"), "Reply two part two."],
        )
        off = await start_session(agent)
        h1 = off.session.generate_reply()
        h2 = off.session.generate_reply()
        finished = await off.events.wait_finished(4)
        assert [f.message_id for f in finished] == ["r1a", "r1b", "r2a", "r2b"]
        assert [f.speech_id for f in finished] == [h1.id, h1.id, h2.id, h2.id]
        assert [f.index for f in finished] == [0, 1, 0, 1]
        assert [e.started_at for e in off.events.started] == [
            s.started_at for s in off.sink.segments
        ]
        kinds = off.events.timeline()
        assert kinds == [
            (k, m) for m in ["r1a", "r1b", "r2a", "r2b"] for k in ("started", "finished")
        ]
