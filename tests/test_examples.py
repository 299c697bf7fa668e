"""The examples: the offline demo runs and tells the truth; the others import and type-check."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from livekit.agents import AgentServer

from playback_hooks.markers import TRACKED_ATTR
from playback_hooks.testing import ScriptedLLM

from .conftest import StartSession

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


class TestProviderExamples:
    """Examples that need provider keys import cleanly and register their entrypoint."""

    @pytest.mark.parametrize("name", ["pipeline_agent", "realtime_agent"])
    def test_imports_and_registers_an_entrypoint(self, name: str) -> None:
        module = _load(name)
        assert isinstance(module.server, AgentServer)
        assert callable(module.entrypoint)
        assert "console" in (module.__doc__ or "")

    def test_pipeline_agent_node_is_tracked(self) -> None:
        module = _load("pipeline_agent")
        assert getattr(module.TwoPartAgent.llm_node, TRACKED_ATTR, False)

    async def test_pipeline_agent_plays_two_messages_offline(
        self, start_session: StartSession
    ) -> None:
        module = _load("pipeline_agent")
        off = await start_session(
            module.TwoPartAgent(),
            llm_model=ScriptedLLM([["Hello, how can I help?"], ["It is ", "forty two."]]),
        )
        off.session.generate_reply(instructions="Greet the user.")
        (greeting,) = await off.events.wait_finished(1)
        assert (greeting.message_id, greeting.played) == ("answer", "full")
        off.session.generate_reply(user_input="What is the answer?")
        finished = await off.events.wait_finished(3)
        assert [(f.message_id, f.index, f.played) for f in finished[1:]] == [
            ("ack", 0, "full"),
            ("answer", 1, "full"),
        ]
        assert dict(finished[1].metadata) == {"kind": "acknowledgement"}


class TestDemo:
    """The demo's timeline is the one its script promises, measured on a real session."""

    async def test_timeline(self) -> None:
        demo = _load("demo")
        rows, t0, sink = await demo.run()
        assert [(r.message_id, r.source, r.played) for r in rows] == [
            ("welcome", "say", "full"),
            ("plan", "llm", "full"),
            ("hotel", "llm", "full"),
            ("done", "llm", "full"),
            ("story-1", "llm", "full"),
            ("story-2", "llm", "partial"),
            ("story-3", "llm", "skipped"),
            ("item_preamble", "realtime", "full"),
            ("item_answer", "realtime", "full"),
        ]
        # agent_state_changed -> speaking: once per speech, beside its first message only
        assert [r.speaking is not None for r in rows] == [
            True, True, False, False, True, False, False, True, False
        ]  # fmt: skip
        assert [r.task[1] if r.task else None for r in rows] == [
            None, "done", "done", "done", "done", "cancelled", None, None, None
        ]  # fmt: skip
        heard = [r for r in rows if r.started is not None]
        assert [r.started for r in heard] == [s.started_at for s in sink.segments]
        # the sink started each segment after the transport delay, not at hand-over
        assert all(r.handed is not None and r.handed < r.started for r in heard)
        # live progress: the words each heard message was shown, in order, never going back,
        # all before its finished event; a full one's words begin its transcript, a cut-off
        # one's are its transcript and at most the one word on screen when the user cut in
        for r in heard:
            shown = "".join(word for _, _, word in r.words)
            positions = [position for _, position, _ in r.words]
            assert r.words and r.transcript is not None, r.message_id
            assert positions == sorted(positions)
            assert all(r.started < at <= r.finished for at, _, _ in r.words)
            if r.played == "full":
                assert r.transcript.startswith(shown)
                assert positions[-1] <= r.position + 1e-9
            else:
                assert shown.startswith(r.transcript)
                assert len(shown.split()) - len(r.transcript.split()) <= 1
        assert [r.words for r in rows if r.started is None] == [[]]
        words = demo.render_words(rows).splitlines()
        assert [line.split()[0] for line in words if not line.startswith(" " * 3)] == [
            r.message_id for r in rows
        ]
        svg = demo.render_svg(rows, t0)
        assert svg.startswith("<svg") and all(f">{r.message_id}<" in svg for r in rows)
        table = demo.render_table(rows, t0).splitlines()
        assert [line.split()[0] for line in table[2:]] == [r.message_id for r in rows]
