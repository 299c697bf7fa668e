"""The examples: the offline demo runs and tells the truth; the others import and type-check."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
import wave
from pathlib import Path
from types import ModuleType
from typing import Any
from xml.etree import ElementTree

import numpy as np
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
    """The demo's timeline is the one its script promises, measured on a real session; its
    picture and its audio show it on one clock."""

    async def test_timeline(self, tmp_path: Path) -> None:
        demo = _load("demo")
        timeline = await demo.run()
        rows, t0, sink = timeline.rows, timeline.t0, timeline.sink
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
        # the user cut in while story-2 played, and that ended it
        story_2 = rows[5]
        assert story_2.started is not None
        assert story_2.started < timeline.interrupted_at <= story_2.finished
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
        table = demo.render_table(timeline).splitlines()
        assert [line.split()[0] for line in table[2:]] == [r.message_id for r in rows]

        self.check_picture(demo.render_svg(timeline), timeline)
        wav = tmp_path / "demo.wav"
        assert demo.write_wav(timeline, wav) == pytest.approx(timeline.span, abs=1e-4)
        self.check_audio(wav, timeline, [(r.started - t0, r.position) for r in heard])

    @staticmethod
    def check_picture(svg: str, timeline: Any) -> None:
        """Lanes, legend, the interruption mark; no marker hides another."""
        root = ElementTree.fromstring(svg)
        texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
        assert all(r.message_id in texts for r in timeline.rows)
        legend = root.find(f"{SVG}g[@class='legend']")
        assert legend is not None
        legend_texts = ["".join(t.itertext()) for t in legend.iter(f"{SVG}text")]
        # every kind of mark the lanes use is explained, the task labels included
        for wanted in (
            "message_playback_started",
            "agent_state_changed → speaking",
            "the user cuts in",
            "task: done / cancelled",
        ):
            assert wanted in legend_texts
        assert {t for t in texts if t.startswith("task: ")} - set(legend_texts) == {
            "task: done",
            "task: cancelled",
        }
        # the interruption: one line across all lanes, at the time the user cut in
        (cut,) = [e for e in root.iter(f"{SVG}line") if e.get("class") == "interruption"]
        bars = [e for e in root.iter(f"{SVG}rect") if e.get("class") == "played"]
        (story_2,) = [b for b in bars if b.get("fill") == "#e08a1e"]
        story_2_end = float(story_2.get("x", 0)) + float(story_2.get("width", 0))
        assert float(cut.get("x1", 0)) == pytest.approx(story_2_end, abs=1.0)
        assert float(cut.get("y1", 0)) < min(float(b.get("y", 0)) for b in bars)
        assert float(cut.get("y2", 0)) > max(float(b.get("y", 0)) for b in bars)
        # livekit's speaking mark sits beside the started mark, never over it
        started = [_box(e) for e in root.iter(f"{SVG}path") if e.get("class") == "started"]
        speaking = [_box(e) for e in root.iter(f"{SVG}path") if e.get("class") == "speaking"]
        assert len(started) == 8 and len(speaking) == 4
        assert [(s, k) for s in started for k in speaking if _overlap(s, k)] == []

    @staticmethod
    def check_audio(wav: Path, timeline: Any, played: list[tuple[float, float]]) -> None:
        """The WAV lasts the timeline's span: sound where a segment played, silence elsewhere."""
        with wave.open(str(wav), "rb") as f:
            rate = f.getframerate()
            samples = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16)
        assert len(samples) == round(timeline.span * rate)
        window = rate // 100  # 10 ms
        loud = np.zeros(len(samples) // window, dtype=bool)
        silent = np.ones(len(samples) // window, dtype=bool)
        for start, seconds in played:
            first, last = start * rate / window, (start + seconds) * rate / window
            # windows wholly inside, less 50 ms at each end (the TTS may pad with silence)
            loud[math.ceil(first) + 5 : math.floor(last) - 5] = True
            silent[math.floor(first) : math.ceil(last)] = False  # windows touching it
        frames = samples[: len(loud) * window].reshape(-1, window).astype(np.float64)
        rms = np.sqrt((frames**2).mean(axis=1))
        assert loud.sum() > 0 and silent.sum() > 0
        assert (rms[loud] > 1000).all()
        assert (rms[silent] == 0).all()
        # story-2 was cut: silence from its last heard sample until the realtime answer
        cut = played[5][0] + played[5][1]
        assert played[6][0] > cut
        gap = samples[math.ceil(cut * rate) + 1 : math.floor(played[6][0] * rate) - 1]
        assert len(gap) > 0 and not gap.any()


SVG = "{http://www.w3.org/2000/svg}"


def _box(path: ElementTree.Element) -> tuple[float, float, float, float]:
    """The bounding box (x0, y0, x1, y1) of a path made of M/L points."""
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", path.get("d", ""))]
    xs, ys = numbers[0::2], numbers[1::2]
    return min(xs), min(ys), max(xs), max(ys)


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
