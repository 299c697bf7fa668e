"""Handlers: signals, decorators, isolation, async tasks, filters and wait_for."""

from __future__ import annotations

import asyncio
import logging
import traceback
from typing import Any

import pytest

import playback_hooks as ph

from .agents import Item, ScriptAgent, boundary
from .conftest import StartSession

THREE: list[Item] = [
    boundary("a"),
    "First one.",
    boundary("b"),
    "Second one.",
    boundary("c"),
    "Third one.",
]


class TestDecorators:
    """Decorated handlers get the events, sync or async, filtered as asked."""

    async def test_sync_and_async_handlers(self, start_session: StartSession) -> None:
        off = await start_session(ScriptAgent(THREE))
        seen: list[tuple[str, str]] = []
        done = asyncio.Event()

        @ph.on_message_played(session=off.session)
        def on_started(event: ph.MessagePlaybackStarted) -> None:
            seen.append(("sync-started", event.message_id))

        @ph.on_message_played(session=off.session)
        async def background(event: ph.MessagePlaybackStarted) -> None:
            seen.append(("task", event.message_id))
            await asyncio.sleep(0)
            if event.message_id == "c":
                done.set()

        @ph.on_message_finished(session=off.session, message_id="b")
        def on_b_finished(event: ph.MessagePlaybackFinished) -> None:
            seen.append(("finished", event.message_id))

        try:
            off.session.generate_reply()
            await off.events.wait_finished(3)
            await asyncio.wait_for(done.wait(), 5)
        finally:
            for fn in (on_started, background, on_b_finished):
                ph.disconnect(fn)
        assert [s for s in seen if s[0] == "sync-started"] == [("sync-started", m) for m in "abc"]
        assert [s for s in seen if s[0] == "task"] == [("task", m) for m in "abc"]
        assert [s for s in seen if s[0] == "finished"] == [("finished", "b")]

    async def test_handlers_run_in_connection_order(self, start_session: StartSession) -> None:
        off = await start_session(ScriptAgent(THREE[:2]))
        calls: list[str] = []

        def make(name: str) -> Any:
            def handler(event: ph.MessagePlaybackStarted) -> None:
                calls.append(name)

            return handler

        for_any = [ph.on_message_played(make(f"any{i}")) for i in range(10)]
        for_session = [
            ph.on_message_played(session=off.session)(make(f"session{i}")) for i in range(10)
        ]
        try:
            off.session.generate_reply()
            await off.events.wait_finished(1)
        finally:
            for fn in for_any + for_session:
                ph.disconnect(fn)
        # handlers for any session first, then this session's, each in connection order
        assert calls == [f"any{i}" for i in range(10)] + [f"session{i}" for i in range(10)]

    async def test_handlers_run_outside_the_sink_callback(
        self, start_session: StartSession
    ) -> None:
        off = await start_session(ScriptAgent(THREE[:2]))
        stacks: list[list[str]] = []

        @ph.on_message_played(session=off.session)
        def inspect_stack(event: ph.MessagePlaybackStarted) -> None:
            stacks.append([f.name for f in traceback.extract_stack()])

        try:
            off.session.generate_reply()
            await off.events.wait_finished(1)
        finally:
            ph.disconnect(inspect_stack)
        assert len(stacks) == 1
        assert "on_playback_started" not in stacks[0]
        assert "capture_frame" not in stacks[0]

    async def test_session_filter_separates_sessions(self, start_session: StartSession) -> None:
        one = await start_session(ScriptAgent([boundary("one"), "From one."]))
        two = await start_session(ScriptAgent([boundary("two"), "From two."]))
        got: list[tuple[str, str]] = []

        @ph.on_message_played(session=one.session)
        def only_one(event: ph.MessagePlaybackStarted) -> None:
            got.append(("one", event.message_id))

        @ph.on_message_played
        def any_session(event: ph.MessagePlaybackStarted) -> None:
            got.append(("any", event.message_id))

        try:
            one.session.generate_reply()
            two.session.generate_reply()
            await one.events.wait_finished(1)
            await two.events.wait_finished(1)
        finally:
            ph.disconnect(only_one)
            ph.disconnect(any_session)
        assert [g for g in got if g[0] == "one"] == [("one", "one")]
        assert sorted(g[1] for g in got if g[0] == "any") == ["one", "two"]
        assert one.events.timeline() == [("started", "one"), ("finished", "one")]
        assert two.events.timeline() == [("started", "two"), ("finished", "two")]


class TestIsolation:
    """Guarantee 5: a failing handler is logged and swallowed; the rest and the audio go on."""

    async def test_raising_handlers_do_not_stop_others_or_audio(
        self, start_session: StartSession, caplog: pytest.LogCaptureFixture
    ) -> None:
        off = await start_session(ScriptAgent(THREE))
        after: list[str] = []

        @ph.on_message_played(session=off.session)
        def broken(event: ph.MessagePlaybackStarted) -> None:
            raise RuntimeError(f"boom {event.message_id}")

        async def broken_async(event: ph.MessagePlaybackStarted) -> None:
            raise RuntimeError("async boom")

        ph.on_message_played(session=off.session)(broken_async)

        def raw_receiver(sender: Any, **kwargs: Any) -> None:
            raise ValueError("raw receiver boom")

        ph.message_playback_started.connect(raw_receiver, sender=off.session)

        @ph.on_message_played(session=off.session)
        def healthy(event: ph.MessagePlaybackStarted) -> None:
            after.append(event.message_id)

        try:
            off.session.generate_reply()
            finished = await off.events.wait_finished(3)
            await off.tracker.aclose()
        finally:
            ph.message_playback_started.disconnect(raw_receiver)
            for fn in (broken, broken_async, healthy):
                ph.disconnect(fn)
        assert after == ["a", "b", "c"]
        assert [f.played for f in finished] == ["full"] * 3
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        # the handler and the message are named in the text (a default formatter drops extra)
        texts = sorted(r.getMessage() for r in errors)
        prefix = "playback handler TestIsolation.test_raising_handlers_do_not_stop_others_or_audio"
        speech_id = finished[0].speech_id
        assert texts == sorted(
            f"{prefix}.<locals>.{name} raised for message {mid!r} (speech {speech_id})"
            for name in ("broken", "broken_async", "raw_receiver")
            for mid in "abc"
        )
        assert sorted(str(getattr(r, "playback_hooks.message_id", None)) for r in errors) == sorted(
            ["a", "b", "c"] * 3
        )
        assert all(getattr(r, "playback_hooks.speech_id", None) == speech_id for r in errors)
        assert all(r.exc_info is not None for r in errors)

    async def test_detach_cancels_and_awaits_handler_tasks(
        self, start_session: StartSession
    ) -> None:
        off = await start_session(ScriptAgent(THREE[:2]))
        entered = asyncio.Event()
        cancelled = asyncio.Event()

        @ph.on_message_played(session=off.session)
        async def hangs(event: ph.MessagePlaybackStarted) -> None:
            entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        try:
            off.session.generate_reply()
            await asyncio.wait_for(entered.wait(), 10)
            assert off.tracker.stats().handler_tasks == 1
            await off.tracker.aclose()
        finally:
            ph.disconnect(hangs)
        assert cancelled.is_set()
        assert off.tracker.stats().handler_tasks == 0


class TestWaitFor:
    """wait_for returns events that already happened and times out on unknown ids."""

    async def test_after_the_fact_and_timeout(self, start_session: StartSession) -> None:
        off = await start_session(ScriptAgent(THREE[:2]))
        off.session.generate_reply()
        (finished,) = await off.events.wait_finished(1)
        assert await off.tracker.wait_for("a", "finished", timeout=1) is finished
        started = await off.tracker.wait_for("a", timeout=1)
        assert started is off.events.started[0]
        with pytest.raises(TimeoutError, match="'nope' was not started"):
            await off.tracker.wait_for("nope", "started", timeout=0.05)

    async def test_detach_wakes_waiters(self, start_session: StartSession) -> None:
        off = await start_session(ScriptAgent())
        waiter = asyncio.ensure_future(off.tracker.wait_for("never", "finished"))
        await asyncio.sleep(0)
        off.tracker.detach()
        with pytest.raises(RuntimeError, match="detached before message 'never' was finished"):
            await waiter
        with pytest.raises(RuntimeError, match="the tracker is detached"):
            await off.tracker.wait_for("never")

    async def test_started_of_a_skipped_message_fails_at_once(
        self, start_session: StartSession
    ) -> None:
        # "b" is announced but no text follows it: it ends skipped, it never starts
        off = await start_session(ScriptAgent([boundary("a"), "Only this is said.", boundary("b")]))
        waiting = asyncio.ensure_future(off.tracker.wait_for("b", "started", timeout=30))
        await asyncio.sleep(0)
        off.session.generate_reply()
        with pytest.raises(ph.MessageNotPlayed, match=r"'b' of speech .* finished as skipped"):
            await waiting
        # asked after the fact: the same answer, at once, with the finished event on it
        with pytest.raises(ph.MessageNotPlayed) as raised:
            await off.tracker.wait_for("b", "started", timeout=30)
        finished = await off.tracker.wait_for("b", "finished", timeout=1)
        assert raised.value.event is finished
        assert (finished.played, finished.started_at) == ("skipped", None)

    async def test_repeated_ids_scoped_to_a_speech(self, start_session: StartSession) -> None:
        turn: list[Item] = [boundary("ack"), "Sure.", boundary("answer"), "Here it is."]
        off = await start_session(ScriptAgent(turn, turn))
        first = off.session.generate_reply()
        first_answer = await off.tracker.wait_for("answer", "finished", speech=first, timeout=10)
        second = off.session.generate_reply()
        # unscoped, the most recent message with the id counts: turn 1's, at once
        stale = await off.tracker.wait_for("answer", "started", timeout=1)
        assert stale.speech_id == first.id
        # scoped to the new speech, the wait is for turn 2's message
        started = await off.tracker.wait_for("answer", "started", speech=second, timeout=10)
        assert started.speech_id == second.id != first.id
        assert started.started_at > (first_answer.finished_at or 0)
        # both turns stay answerable by speech
        again = await off.tracker.wait_for("answer", "finished", speech=first, timeout=1)
        assert again is first_answer

    async def test_before_the_fact(self, start_session: StartSession) -> None:
        off = await start_session(ScriptAgent(THREE[:2]))
        waiter = asyncio.ensure_future(off.tracker.wait_for("a", "finished", timeout=10))
        await asyncio.sleep(0)
        off.session.generate_reply()
        event = await waiter
        assert event.message_id == "a" and event.played == "full"
