"""Each item of a multi-item realtime response is its own message (scripted model)."""

from __future__ import annotations

import asyncio
from typing import Any

from livekit.agents import Agent
from livekit.agents.llm import ChatMessage
from livekit.agents.voice.events import ConversationItemAddedEvent

from playback_hooks.testing import RealtimeItem, ScriptedRealtimeModel

from .conftest import StartSession


class RealtimeAgent(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="realtime test agent")


def _record_messages(session: Any) -> list[ChatMessage]:
    items: list[ChatMessage] = []

    def on_item(ev: ConversationItemAddedEvent) -> None:
        if isinstance(ev.item, ChatMessage) and ev.item.role == "assistant":
            items.append(ev.item)

    session.on("conversation_item_added", on_item)
    return items


class TestRealtimeItems:
    """Items are reported one by one, with the item id livekit puts in the chat history."""

    async def test_three_items_each_reported_when_heard(self, start_session: StartSession) -> None:
        model = ScriptedRealtimeModel(
            [
                [
                    RealtimeItem("item_pre", "Let me check.", 0.4),
                    RealtimeItem("item_ans", "The answer is four.", 0.6),
                    RealtimeItem("item_end", "Anything else?", 0.3),
                ]
            ]
        )
        off = await start_session(RealtimeAgent(), llm_model=model)
        recorded = _record_messages(off.session)
        handle = off.session.generate_reply()
        finished = await off.events.wait_finished(3)
        await handle

        ids = ["item_pre", "item_ans", "item_end"]
        assert off.events.timeline() == [(k, i) for i in ids for k in ("started", "finished")]
        assert [e.source for e in off.events.events] == ["realtime"] * 6
        assert [e.index for e in off.events.started] == [0, 1, 2]
        assert {e.speech_id for e in off.events.events} == {handle.id}
        assert [e.started_at for e in off.events.started] == [
            s.started_at for s in off.sink.segments
        ]
        assert [f.played for f in finished] == ["full"] * 3
        assert [f.playback_position for f in finished] == [s.position for s in off.sink.segments]
        assert [round(f.playback_position, 2) for f in finished] == [0.4, 0.6, 0.3]
        # ids correlate with the ChatMessages livekit records afterwards
        assert [m.id for m in recorded] == ids

    async def test_interrupted_during_item_two(self, start_session: StartSession) -> None:
        model = ScriptedRealtimeModel(
            [
                [
                    RealtimeItem("i1", "First.", 0.3),
                    RealtimeItem("i2", "Second, a longer one.", 2.0),
                    RealtimeItem("i3", "Third.", 0.3),
                ]
            ]
        )
        off = await start_session(RealtimeAgent(), llm_model=model)
        handle = off.session.generate_reply()
        await off.tracker.wait_for("i2", "started", timeout=10)
        await asyncio.sleep(0.3)
        handle.interrupt()
        finished = await off.events.wait_finished(3)
        assert [(f.message_id, f.played, f.interrupted) for f in finished] == [
            ("i1", "full", False),
            ("i2", "partial", True),
            ("i3", "skipped", True),
        ]
        assert finished[1].playback_position == off.sink.segments[1].position
        assert 0 < finished[1].playback_position < 2.0
        assert ("started", "i3") not in off.events.timeline()

    async def test_text_only_item_between_audio_items_is_skipped_in_place(
        self, start_session: StartSession
    ) -> None:
        # no TTS fallback for text-only items here: livekit plays nothing for it
        model = ScriptedRealtimeModel(
            [
                [
                    RealtimeItem("a1", "Audio one.", 0.3),
                    RealtimeItem("t2", "Text only.", None),
                    RealtimeItem("a3", "Audio three.", 0.3),
                ]
            ]
        )
        off = await start_session(RealtimeAgent(), llm_model=model, no_tts=True)
        off.session.generate_reply()
        finished = await off.events.wait_finished(3)
        assert [(f.message_id, f.played) for f in finished] == [
            ("a1", "full"),
            ("t2", "skipped"),
            ("a3", "full"),
        ]
        assert off.events.timeline() == [
            ("started", "a1"),
            ("finished", "a1"),
            ("finished", "t2"),
            ("started", "a3"),
            ("finished", "a3"),
        ]

    async def test_text_only_item_spoken_by_tts_fallback(self, start_session: StartSession) -> None:
        model = ScriptedRealtimeModel(
            [[RealtimeItem("a1", "Audio one.", 0.3), RealtimeItem("t2", "Spoken by TTS.", None)]]
        )
        off = await start_session(RealtimeAgent(), llm_model=model)
        off.session.generate_reply()
        finished = await off.events.wait_finished(2)
        assert [(f.message_id, f.played, f.source) for f in finished] == [
            ("a1", "full", "realtime"),
            ("t2", "full", "realtime"),
        ]
        assert finished[1].started_at == off.sink.segments[1].started_at

    async def test_server_initiated_response(self, start_session: StartSession) -> None:
        model = ScriptedRealtimeModel([[RealtimeItem("srv1", "Hello.", 0.2)]])
        off = await start_session(RealtimeAgent(), llm_model=model)
        model.sessions[-1].server_response()
        (finished,) = await off.events.wait_finished(1)
        assert finished.message_id == "srv1" and finished.played == "full"
