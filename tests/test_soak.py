"""Soak: one real AgentSession plays 2,000 messages with random interruptions."""

from __future__ import annotations

import random
import re
from typing import Any

import playback_hooks as ph
from playback_hooks.testing import SimulatedSink, SineTTS

from .agents import Item, ScriptAgent, boundary
from .conftest import StartSession

SPEECHES = 200
MESSAGES = 10


class TestSoak:
    """Every invariant holds after 2,000 messages; nothing is left behind."""

    async def test_two_thousand_messages(self, start_session: StartSession) -> None:
        scripts: list[list[Item]] = [
            [x for m in range(MESSAGES) for x in (boundary(f"s{s}m{m}"), f"Part {m}.")]
            for s in range(SPEECHES)
        ]
        off = await start_session(
            ScriptAgent(*scripts),
            # audio played 40x faster than real time; tiny TTS latency
            sink=SimulatedSink(speed=40.0, buffer_seconds=0.05),
            tts_model=SineTTS(seconds_per_char=0.03, latency=0.0),
        )
        rng = random.Random(1234)
        interrupts = 0

        @ph.on_message_played(session=off.session)
        def maybe_interrupt(event: ph.MessagePlaybackStarted) -> None:
            nonlocal interrupts
            speech = off.session.current_speech
            if speech is not None and rng.random() < 0.03:
                interrupts += 1
                speech.interrupt()

        try:
            for _ in range(SPEECHES):
                await off.session.generate_reply()
        finally:
            ph.disconnect(maybe_interrupt)
        finished = await off.events.wait_finished(SPEECHES * MESSAGES)
        assert len(finished) == SPEECHES * MESSAGES
        assert interrupts > 10

        by_speech: dict[str, list[Any]] = {}
        for f in finished:
            by_speech.setdefault(f.speech_id, []).append(f)
        assert len(by_speech) == SPEECHES
        started_ids = [e.message_id for e in off.events.started]
        assert len(started_ids) == len(set(started_ids))
        for s, events in enumerate(by_speech.values()):
            assert [f.message_id for f in events] == [f"s{s}m{m}" for m in range(MESSAGES)]
            assert [f.index for f in events] == list(range(MESSAGES))
            played = "".join(f.played[0] for f in events)  # f, p, s
            # full messages, then at most one partial, then skipped ones
            assert re.fullmatch("f*p?s*", played), played
            cut = "p" in played or "s" in played
            assert all(f.interrupted == (cut and f.played != "full") for f in events)
            for f in events:
                assert (f.played == "skipped") == (f.message_id not in started_ids)
        # the sink's truth, message by message
        heard = [f for f in finished if f.played != "skipped"]
        assert [f.started_at for f in heard] == [seg.started_at for seg in off.sink.segments]
        assert [f.playback_position for f in heard] == [seg.position for seg in off.sink.segments]
        stats = off.tracker.stats()
        assert (stats.unreleased_messages, stats.open_segments, stats.waiters) == (0, 0, 0)
        assert stats.handler_tasks == 0
