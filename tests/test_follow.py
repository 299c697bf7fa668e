"""Async handlers that follow their message: cancelled when the user cuts the message off."""

from __future__ import annotations

import asyncio

import pytest

import playback_hooks as ph

from .agents import FULL_PARTIAL_SKIPPED, ScriptAgent, boundary
from .conftest import StartSession


class TestCancelOnPartial:
    """A cancel_on_partial handler's task is cancelled exactly when its message ends partial."""

    async def test_interrupted_message_cancels_only_its_own_task(
        self, start_session: StartSession
    ) -> None:
        agent = ScriptAgent(FULL_PARTIAL_SKIPPED)
        off = await start_session(agent)
        release = asyncio.Event()
        log: list[tuple[str, str]] = []
        ended: dict[str, asyncio.Future[str]] = {}  # "kind/message id" -> how its task ended

        def ending(key: str) -> asyncio.Future[str]:
            return ended.setdefault(key, asyncio.get_running_loop().create_future())

        async def follow(event: ph.MessagePlaybackStarted, kind: str) -> None:
            log.append((kind, event.message_id))
            end = ending(f"{kind}/{event.message_id}")
            try:
                await release.wait()
            except asyncio.CancelledError:
                log.append((f"{kind} cancelled", event.message_id))
                end.set_result("cancelled")
                raise
            log.append((f"{kind} done", event.message_id))
            end.set_result("done")

        @ph.on_message_played(session=off.session, cancel_on_partial=True)
        async def following(event: ph.MessagePlaybackStarted) -> None:
            await follow(event, "following")

        @ph.on_message_played(session=off.session)
        async def plain(event: ph.MessagePlaybackStarted) -> None:
            await follow(event, "plain")

        try:
            off.session.generate_reply()
            await off.tracker.wait_for("b", "started", timeout=10)
            await off.session.interrupt()
            finished = await off.events.wait_finished(3)
            assert [(f.message_id, f.played) for f in finished] == [
                ("a", "full"),
                ("b", "partial"),
                ("c", "skipped"),
            ]
            assert await asyncio.wait_for(ending("following/b"), 5) == "cancelled"
            # a played in full: its following task carries on; the plain one for b too
            assert log == [
                ("following", "a"),
                ("plain", "a"),
                ("following", "b"),
                ("plain", "b"),
                ("following cancelled", "b"),
            ]
            assert off.tracker.stats().handler_tasks == 3
            release.set()
            for key in ("following/a", "plain/a", "plain/b"):
                assert await asyncio.wait_for(ending(key), 5) == "done"
            assert "following/c" not in ended
            assert log[5:] == [
                ("following done", "a"),
                ("plain done", "a"),
                ("plain done", "b"),
            ]
        finally:
            ph.disconnect(following)
            ph.disconnect(plain)

    async def test_full_playback_leaves_the_task_running(self, start_session: StartSession) -> None:
        agent = ScriptAgent([boundary("only"), "Heard from start to end."])
        off = await start_session(agent)
        release = asyncio.Event()
        outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        @ph.on_message_played(session=off.session, cancel_on_partial=True)
        async def following(event: ph.MessagePlaybackStarted) -> None:
            try:
                await release.wait()
            except asyncio.CancelledError:
                outcome.set_result("cancelled")
                raise
            outcome.set_result("done")

        try:
            off.session.generate_reply()
            (finished,) = await off.events.wait_finished(1)
            assert finished.played == "full"
            assert off.tracker.stats().handler_tasks == 1
            release.set()
            assert await asyncio.wait_for(outcome, 5) == "done"
        finally:
            ph.disconnect(following)


class TestCancelOnPartialInput:
    """cancel_on_partial is refused where it cannot work, at the decorator."""

    def test_sync_handler_is_refused(self) -> None:
        with pytest.raises(TypeError, match="cancel_on_partial=True needs an async handler"):

            @ph.on_message_played(cancel_on_partial=True)
            def sync_handler(event: ph.MessagePlaybackStarted) -> None:
                pass

    def test_non_bool_is_refused(self) -> None:
        async def handler(event: ph.MessagePlaybackStarted) -> None:
            pass

        with pytest.raises(TypeError, match="cancel_on_partial must be a bool"):
            ph.on_message_played(cancel_on_partial="yes")(handler)  # type: ignore[call-overload]
