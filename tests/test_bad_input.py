"""Guarantee 6: bad input gets a clear error, at the place it was made, naming the argument.

One table over every public entry point; each row asserts the exception type and the text.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from livekit.agents import AgentSession

import playback_hooks as ph
from playback_hooks.testing import ScriptedLLM

from .agents import ScriptAgent
from .conftest import Offline, StartSession


def _sync_node(self: Any) -> None:
    return None


async def _async_handler(event: Any) -> None:
    return None


def _sync_handler(event: Any) -> None:
    return None


# the table calls the API with wrong types on purpose: through Any, not type-checked
A: Any = ph


def T(off: Offline) -> Any:
    return off.tracker


@dataclass(frozen=True)
class Case:
    """One bad call: ``call(offline)`` must raise ``error`` whose text contains ``message``."""

    name: str
    call: Callable[[Offline], Any]
    error: type[Exception]
    message: str


CASES = [
    # MessageBoundary
    Case(
        "boundary id int",
        lambda o: A.MessageBoundary(42),
        TypeError,
        "MessageBoundary: id must be a str, got int",
    ),
    Case(
        "boundary id None",
        lambda o: A.MessageBoundary(None),
        TypeError,
        "MessageBoundary: id must be a str, got NoneType",
    ),
    Case(
        "boundary id empty",
        lambda o: A.MessageBoundary(""),
        ValueError,
        "MessageBoundary: id must not be empty",
    ),
    Case(
        "boundary id reserved",
        lambda o: A.MessageBoundary("auto/x"),
        ValueError,
        "MessageBoundary: id must not start with 'auto/'",
    ),
    Case(
        "boundary metadata list",
        lambda o: A.MessageBoundary("ok", metadata=[1]),
        TypeError,
        "MessageBoundary: metadata must be a mapping, got list",
    ),
    Case(
        "boundary metadata str",
        lambda o: A.MessageBoundary("ok", metadata="x"),
        TypeError,
        "MessageBoundary: metadata must be a mapping, got str",
    ),
    # attach / tracker_for
    Case(
        "attach non-session",
        lambda o: A.attach("s"),
        TypeError,
        "attach(): session must be an AgentSession, got str",
    ),
    Case(
        "tracker_for non-session",
        lambda o: A.tracker_for(1),
        TypeError,
        "tracker_for(): session must be an AgentSession, got int",
    ),
    # decorators and disconnect
    Case(
        "played handler not callable",
        lambda o: A.on_message_played(42),
        TypeError,
        "on_message_played: the handler must be callable, got int",
    ),
    Case(
        "finished handler not callable",
        lambda o: A.on_message_finished()("x"),
        TypeError,
        "on_message_finished: the handler must be callable, got str",
    ),
    Case(
        "played session filter",
        lambda o: A.on_message_played(session="s"),
        TypeError,
        "on_message_played: session must be an AgentSession, got str",
    ),
    Case(
        "finished message_id int",
        lambda o: A.on_message_finished(message_id=3),
        TypeError,
        "on_message_finished: message_id must be a str, got int",
    ),
    Case(
        "played message_id empty",
        lambda o: A.on_message_played(message_id=""),
        ValueError,
        "on_message_played: message_id must not be empty",
    ),
    Case(
        "cancel_on_partial not bool",
        lambda o: A.on_message_played(cancel_on_partial=1),
        TypeError,
        "on_message_played: cancel_on_partial must be a bool, got int",
    ),
    Case(
        "cancel_on_partial sync handler",
        lambda o: A.on_message_played(cancel_on_partial=True)(_sync_handler),
        TypeError,
        "cancel_on_partial=True needs an async handler",
    ),
    Case(
        "disconnect non-callable",
        lambda o: A.disconnect("x"),
        TypeError,
        "disconnect(): the handler must be callable, got str",
    ),
    Case(
        "track_messages sync function",
        lambda o: A.track_messages(_sync_node),
        TypeError,
        "track_messages decorates an llm_node",
    ),
    Case(
        "track_messages non-callable",
        lambda o: A.track_messages("node"),
        TypeError,
        "track_messages decorates an llm_node",
    ),
    # PlaybackTracker.label
    Case(
        "label handle",
        lambda o: T(o).label("h", "x"),
        TypeError,
        "PlaybackTracker.label(): handle must be a SpeechHandle, got str",
    ),
    Case(
        "label id int",
        lambda o: T(o).label(o.session.say("Hi."), 1),
        TypeError,
        "PlaybackTracker.label(): id must be a str, got int",
    ),
    Case(
        "label id empty",
        lambda o: T(o).label(o.session.say("Hi."), ""),
        ValueError,
        "PlaybackTracker.label(): id must not be empty",
    ),
    Case(
        "label id reserved",
        lambda o: T(o).label(o.session.say("Hi."), "auto/1"),
        ValueError,
        "PlaybackTracker.label(): id must not start with 'auto/'",
    ),
    Case(
        "label metadata",
        lambda o: T(o).label(o.session.say("Hi."), "x", metadata=(1,)),
        TypeError,
        "PlaybackTracker.label(): metadata must be a mapping, got tuple",
    ),
    # PlaybackTracker.wait_for
    Case(
        "wait_for id empty",
        lambda o: T(o).wait_for(""),
        ValueError,
        "PlaybackTracker.wait_for(): message_id must not be empty",
    ),
    Case(
        "wait_for id int",
        lambda o: T(o).wait_for(5),
        TypeError,
        "PlaybackTracker.wait_for(): message_id must be a str, got int",
    ),
    Case(
        "wait_for kind",
        lambda o: T(o).wait_for("x", "ended"),
        ValueError,
        "PlaybackTracker.wait_for(): kind must be 'started' or 'finished', got 'ended'",
    ),
    Case(
        "wait_for negative timeout",
        lambda o: T(o).wait_for("x", timeout=-1),
        ValueError,
        "PlaybackTracker.wait_for(): timeout must be >= 0",
    ),
    Case(
        "wait_for timeout str",
        lambda o: T(o).wait_for("x", timeout="1"),
        TypeError,
        "PlaybackTracker.wait_for(): timeout must be a number of seconds or None",
    ),
    # tracing
    Case(
        "enable_tracing target",
        lambda o: A.enable_tracing("s"),
        TypeError,
        "enable_tracing(): target must be an AgentSession or a PlaybackTracker, got str",
    ),
]


class TestBadInput:
    """Every public entry point refuses bad input with a message naming the argument."""

    @pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
    async def test_rejects(self, case: Case, start_session: StartSession) -> None:
        off = await start_session(ScriptAgent())
        with pytest.raises(case.error, match=re.escape(case.message)):
            result = case.call(off)
            if inspect.isawaitable(result):
                await result

    def test_good_marker_is_frozen(self) -> None:
        marker = ph.MessageBoundary("ok", metadata={"a": 1})
        assert marker.id == "ok" and dict(marker.metadata) == {"a": 1}
        assert repr(marker) == "MessageBoundary('ok', metadata={'a': 1})"
        with pytest.raises(TypeError):
            marker.metadata["a"] = 2  # type: ignore[index]

    async def test_attach_to_a_started_session_without_audio_output(self) -> None:
        session: AgentSession[Any] = AgentSession(llm=ScriptedLLM([]))
        await session.start(ScriptAgent(), record=False)
        try:
            assert session.output.audio is None
            with pytest.raises(RuntimeError, match=r"the session has no audio output"):
                ph.attach(session)
            assert ph.tracker_for(session) is None
        finally:
            await session.aclose()

    async def test_attach_before_start_is_allowed(self) -> None:
        session: AgentSession[Any] = AgentSession(llm=ScriptedLLM([]))
        tracker = ph.attach(session)
        assert ph.tracker_for(session) is tracker and tracker.attached
        await tracker.aclose()
        assert ph.tracker_for(session) is None
