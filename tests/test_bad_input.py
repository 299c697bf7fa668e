"""Guarantee 6: bad input gets a clear error, at the place it was made, naming the argument."""

from __future__ import annotations

import re
from typing import Any

import pytest
from livekit.agents import AgentSession

import playback_hooks as ph

from .agents import ScriptAgent
from .conftest import StartSession


class TestMessageBoundary:
    """MessageBoundary validates its id and metadata."""

    @pytest.mark.parametrize(
        ("args", "kwargs", "error", "message"),
        [
            ((42,), {}, TypeError, "MessageBoundary: id must be a str, got int"),
            ((None,), {}, TypeError, "MessageBoundary: id must be a str, got NoneType"),
            (("",), {}, ValueError, "MessageBoundary: id must not be empty"),
            (("auto/x",), {}, ValueError, "id must not start with 'auto/'"),
            (("ok",), {"metadata": [1, 2]}, TypeError, "metadata must be a mapping, got list"),
            (("ok",), {"metadata": "text"}, TypeError, "metadata must be a mapping, got str"),
        ],
    )
    def test_rejects(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        with pytest.raises(error, match=re.escape(message)):
            ph.MessageBoundary(*args, **kwargs)

    def test_accepts_and_freezes(self) -> None:
        marker = ph.MessageBoundary("ok", metadata={"a": 1})
        assert marker.id == "ok" and dict(marker.metadata) == {"a": 1}
        assert repr(marker) == "MessageBoundary('ok', metadata={'a': 1})"
        with pytest.raises(TypeError):
            marker.metadata["a"] = 2  # type: ignore[index]


class TestAttach:
    """attach() refuses what is not a started session."""

    def test_not_a_session(self) -> None:
        with pytest.raises(TypeError, match="attach\\(\\): session must be an AgentSession"):
            ph.attach("session")  # type: ignore[arg-type]

    async def test_before_start(self) -> None:
        session: AgentSession[Any] = AgentSession()
        with pytest.raises(
            RuntimeError, match=re.escape("call attach() after `await session.start(...)`")
        ):
            ph.attach(session)
        assert ph.tracker_for(session) is None


class TestDecorators:
    """Decorators refuse non-callables, non-sessions and bad ids; track_messages non-nodes."""

    def test_handler_not_callable(self) -> None:
        with pytest.raises(TypeError, match="on_message_played: the handler must be callable"):
            ph.on_message_played(42)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="on_message_finished: the handler must be callable"):
            ph.on_message_finished()("nope")  # type: ignore[type-var]

    def test_bad_filters(self) -> None:
        with pytest.raises(TypeError, match="session must be an AgentSession, got str"):
            ph.on_message_played(session="s")  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="message_id must be a str, got int"):
            ph.on_message_finished(message_id=3)  # type: ignore[call-overload]
        with pytest.raises(ValueError, match="message_id must not be empty"):
            ph.on_message_played(message_id="")

    def test_track_messages_on_non_node(self) -> None:
        def sync_node(self: Any) -> None:
            return None

        with pytest.raises(TypeError, match="track_messages decorates an llm_node"):
            ph.track_messages(sync_node)
        with pytest.raises(TypeError, match="track_messages decorates an llm_node"):
            ph.track_messages("llm_node")  # type: ignore[type-var]


class TestTrackerCalls:
    """label() and wait_for() validate their arguments."""

    async def test_label(self, start_session: StartSession) -> None:
        off = await start_session(ScriptAgent())
        handle = off.session.say("Hi.")
        with pytest.raises(TypeError, match="label\\(\\): handle must be a SpeechHandle, got str"):
            off.tracker.label("handle", "x")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="label\\(\\): id must be a str, got int"):
            off.tracker.label(handle, 1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="label\\(\\): id must not be empty"):
            off.tracker.label(handle, "")
        with pytest.raises(TypeError, match="metadata must be a mapping, got tuple"):
            off.tracker.label(handle, "x", metadata=(1,))  # type: ignore[arg-type]
        await handle

    async def test_wait_for(self, start_session: StartSession) -> None:
        off = await start_session(ScriptAgent())
        with pytest.raises(TypeError, match="message_id must be a non-empty str"):
            await off.tracker.wait_for("")
        with pytest.raises(ValueError, match="kind must be 'started' or 'finished', got 'ended'"):
            await off.tracker.wait_for("x", "ended")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timeout must be >= 0"):
            await off.tracker.wait_for("x", timeout=-1)
        with pytest.raises(TypeError, match="timeout must be a number of seconds or None"):
            await off.tracker.wait_for("x", timeout="1")  # type: ignore[arg-type]
