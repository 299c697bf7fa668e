"""Opt-in OpenTelemetry spans, one per message playback, under livekit's own spans."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from livekit.agents import telemetry
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import playback_hooks as ph

from .agents import FULL_PARTIAL_SKIPPED, ScriptAgent, boundary
from .conftest import StartSession


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """livekit-agents' tracer sends its spans (and ours) to an in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.set_tracer_provider(provider)
    yield exporter
    telemetry.tracer.set_provider(trace_api.get_tracer_provider())


def _named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


class TestSpans:
    """Each message gets one span with the playback's own times, inside the speech's turn."""

    async def test_one_span_per_message_with_exact_times(
        self, start_session: StartSession, exporter: InMemorySpanExporter
    ) -> None:
        agent = ScriptAgent(FULL_PARTIAL_SKIPPED)
        off = await start_session(agent)
        ph.enable_tracing(off.session)
        handle = off.session.generate_reply()
        await off.tracker.wait_for("b", "started", timeout=10)
        await off.session.interrupt()
        finished = await off.events.wait_finished(3)
        await handle

        spans = _named(exporter, ph.SPAN_NAME)
        assert [s.attributes["playback_hooks.message_id"] for s in spans if s.attributes] == [
            "a",
            "b",
            "c",
        ]
        for span, event in zip(spans, finished, strict=True):
            assert span.attributes == {
                "playback_hooks.message_id": event.message_id,
                "playback_hooks.speech_id": handle.id,
                "lk.speech_id": handle.id,
                "playback_hooks.index": event.index,
                "playback_hooks.source": "llm",
                "playback_hooks.played": event.played,
                "playback_hooks.interrupted": event.interrupted,
                "playback_hooks.playback_position": event.playback_position,
            }
            start = event.started_at if event.started_at is not None else event.finished_at
            assert span.start_time == int(start * 1_000_000_000)
            assert span.end_time == int(event.finished_at * 1_000_000_000)
        assert [e.played for e in finished] == ["full", "partial", "skipped"]
        assert spans[2].start_time == spans[2].end_time  # skipped: zero length

        # under the speech's agent_turn span, in the same trace as livekit's own spans
        (turn,) = [
            s
            for s in _named(exporter, "agent_turn")
            if s.attributes and s.attributes.get("lk.speech_id") == handle.id
        ]
        assert turn.context is not None
        for span in spans:
            assert span.parent is not None
            assert span.parent.span_id == turn.context.span_id
            assert span.context is not None
            assert span.context.trace_id == turn.context.trace_id

    async def test_say_started_before_tracing_falls_back_to_the_enabling_context(
        self, start_session: StartSession, exporter: InMemorySpanExporter
    ) -> None:
        off = await start_session(ScriptAgent())
        handle = off.session.say("Hello there, and welcome.")
        off.tracker.label(handle, "welcome")
        # session.start() made its agent_session span current in this task
        enabling = trace_api.get_current_span().get_span_context()
        assert enabling.is_valid
        ph.enable_tracing(off.session)  # after the speech was created: its turn is unknown
        (finished,) = await off.events.wait_finished(1)
        await handle
        (span,) = _named(exporter, ph.SPAN_NAME)
        assert span.attributes is not None
        assert span.attributes["playback_hooks.message_id"] == "welcome"
        assert span.attributes["playback_hooks.source"] == "say"
        assert span.attributes["playback_hooks.played"] == "full"
        assert span.parent is not None and span.parent.span_id == enabling.span_id
        assert span.start_time == int((finished.started_at or 0) * 1_000_000_000)

    async def test_enable_twice_then_disable(
        self, start_session: StartSession, exporter: InMemorySpanExporter
    ) -> None:
        agent = ScriptAgent(
            [boundary("once"), "Traced exactly once."], [boundary("later"), "Not traced."]
        )
        off = await start_session(agent)
        disable = ph.enable_tracing(off.tracker)
        assert ph.enable_tracing(off.session) == disable
        off.session.generate_reply()
        await off.events.wait_finished(1)
        disable()
        disable()
        off.session.generate_reply()
        await off.events.wait_finished(2)
        assert [
            s.attributes["playback_hooks.message_id"]
            for s in _named(exporter, ph.SPAN_NAME)
            if s.attributes
        ] == ["once"]

    def test_rejects_other_targets(self) -> None:
        with pytest.raises(TypeError, match="AgentSession or a PlaybackTracker"):
            ph.enable_tracing("session")  # type: ignore[arg-type]
