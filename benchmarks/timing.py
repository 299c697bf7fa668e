"""Benchmark 1: when each response started playing, per playback_hooks and per workaround.

One real ``AgentSession`` plays ``speeches`` speeches of 3 to 5 responses each on the
real-time ``SimulatedSink``; every response's TTS latency and length differ. In the same
run, side by side, for every response:

- truth: the sink's own ``playback_started.created_at`` (``sink.segments[i].started_at``);
- playback_hooks: ``MessagePlaybackStarted.started_at``;
- a sync ``@on_message_played`` handler: when it actually ran; an async one: when it started;
- workaround 1 (livekit/agents #4213): ``agent_state_changed`` to ``"speaking"``, then
  ``sleep(0.08)``, then "report" the response as started;
- workaround 2: the response's text carries a sentinel ``<<id>>``; ``tts_node`` spots and
  strips it and starts a 200 ms timer that "reports" the response as started.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc
from livekit.agents import Agent, AgentSession, ModelSettings, llm
from livekit.agents.types import FlushSentinel
from livekit.agents.voice.events import AgentStateChangedEvent

import playback_hooks as ph
from playback_hooks.testing import EventCollector, ScriptedLLM, SimulatedSink, SineTTS

from .common import stats_ms

SENTINEL = re.compile(r"<<([A-Za-z0-9_]+)>>")
WORKAROUND_1_DELAY = 0.08
WORKAROUND_2_DELAY = 0.2
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india")


@dataclass(frozen=True)
class Response:
    """One response of a speech: its id, its text and its TTS latency."""

    id: str
    text: str
    latency: float


@dataclass
class Observed:
    """Everything seen about the responses during the run (time.time() clock)."""

    wk1: dict[str, float] = field(default_factory=dict)  # speech id -> report time
    wk1_extra: int = 0  # "speaking" reports beyond the first of a speech
    wk2: dict[str, float] = field(default_factory=dict)  # response id -> report time
    sync_entry: dict[str, float] = field(default_factory=dict)
    async_entry: dict[str, float] = field(default_factory=dict)
    # process CPU time when each handler ran, to tell dispatch work from the OS taking
    # the CPU away (shared machine)
    sync_cpu: dict[str, float] = field(default_factory=dict)
    async_cpu: dict[str, float] = field(default_factory=dict)


class CpuStampedSink(SimulatedSink):
    """The simulated sink, also noting the process CPU time of each ``playback_started``."""

    def __init__(self) -> None:
        super().__init__()
        self.started_cpu: list[float] = []

    def on_playback_started(self, *, created_at: float) -> None:
        self.started_cpu.append(time.process_time())
        super().on_playback_started(created_at=created_at)


def make_plan(speeches: int, seed: int) -> list[list[Response]]:
    """Speeches of 3 to 5 responses, each with its own text length and TTS latency."""
    rng = random.Random(seed)
    plan: list[list[Response]] = []
    for s in range(speeches):
        responses = []
        for r in range(rng.randint(3, 5)):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5)))
            text = f"Speech {s} part {r} {words}."
            responses.append(Response(f"s{s}r{r}", text, round(rng.uniform(0.02, 0.3), 3)))
        plan.append(responses)
    return plan


class TimingAgent(Agent):
    """Yields, per response, a ``MessageBoundary`` and the text with its sentinel."""

    def __init__(self, plan: list[list[Response]], observed: Observed) -> None:
        super().__init__(instructions="benchmark agent")
        self._plan = list(plan)
        self._observed = observed

    @ph.track_messages
    async def llm_node(
        self, chat_ctx: llm.ChatContext, tools: list[llm.Tool], model_settings: ModelSettings
    ) -> AsyncIterable[str | FlushSentinel]:
        for response in self._plan.pop(0) if self._plan else []:
            yield ph.MessageBoundary(response.id)
            yield f"<<{response.id}>>{response.text}"

    async def tts_node(
        self, text: AsyncIterable[str], model_settings: ModelSettings
    ) -> AsyncGenerator[rtc.AudioFrame, None]:
        # workaround 2, as a user writes it: spot the sentinel, strip it, start a timer
        loop = asyncio.get_running_loop()
        wk2 = self._observed.wk2

        def report(response_id: str) -> None:
            wk2[response_id] = time.time()

        async def stripped() -> AsyncIterator[str]:
            async for chunk in text:
                for m in SENTINEL.finditer(chunk):
                    loop.call_later(WORKAROUND_2_DELAY, report, m.group(1))
                chunk = SENTINEL.sub("", chunk)
                if chunk:
                    yield chunk

        async for frame in Agent.default.tts_node(self, stripped(), model_settings):
            yield frame


async def run(*, speeches: int = 50, seed: int = 1) -> dict[str, Any]:
    """Play the speeches and return the measured errors (see the module docstring)."""
    plan = make_plan(speeches, seed)
    latency = {r.text: r.latency for sp in plan for r in sp}
    observed = Observed()
    sink = CpuStampedSink()
    tts = SineTTS(seconds_per_char=0.008, latency=lambda t: latency.get(t.strip(), 0.05))
    session: AgentSession[Any] = AgentSession(llm=ScriptedLLM([]), tts=tts)
    session.output.audio = sink
    await session.start(TimingAgent(plan, observed), record=False)
    tracker = ph.attach(session)
    loop = asyncio.get_running_loop()
    wk1_tasks: set[asyncio.Task[None]] = set()

    # workaround 1, as a user writes it
    def on_state(ev: AgentStateChangedEvent) -> None:
        if ev.new_state != "speaking":
            return
        speech = session.current_speech
        speech_id = speech.id if speech is not None else "?"

        async def later() -> None:
            await asyncio.sleep(WORKAROUND_1_DELAY)
            if speech_id in observed.wk1:
                observed.wk1_extra += 1
            else:
                observed.wk1[speech_id] = time.time()

        task = loop.create_task(later())
        wk1_tasks.add(task)
        task.add_done_callback(wk1_tasks.discard)

    session.on("agent_state_changed", on_state)

    @ph.on_message_played(session=session)
    def sync_probe(event: ph.MessagePlaybackStarted) -> None:
        observed.sync_entry[event.message_id] = time.time()
        observed.sync_cpu[event.message_id] = time.process_time()

    @ph.on_message_played(session=session)
    async def async_probe(event: ph.MessagePlaybackStarted) -> None:
        observed.async_entry[event.message_id] = time.time()
        observed.async_cpu[event.message_id] = time.process_time()

    speech_of: dict[str, str] = {}  # response id -> speech id
    total = 0
    t0 = time.perf_counter()
    try:
        with EventCollector(session) as events:
            for responses in plan:
                handle = session.generate_reply()
                for r in responses:
                    speech_of[r.id] = handle.id
                total += len(responses)
                await handle
                await events.wait_finished(total, timeout=30)
            await asyncio.sleep(WORKAROUND_2_DELAY + 0.1)  # let the last timers report
            if wk1_tasks:
                await asyncio.gather(*wk1_tasks)
        wall = time.perf_counter() - t0
    finally:
        ph.disconnect(sync_probe)
        ph.disconnect(async_probe)
        session.off("agent_state_changed", on_state)
        await tracker.aclose()
        await session.aclose()
        await sink.aclose()

    responses = [r for sp in plan for r in sp]
    if len(sink.segments) != len(responses):
        raise RuntimeError(f"{len(sink.segments)} sink segments for {len(responses)} responses")
    truth = {r.id: seg.started_at for r, seg in zip(responses, sink.segments, strict=True)}
    started = {e.message_id: e for e in events.started}
    if [e.message_id for e in events.started] != [r.id for r in responses]:
        raise RuntimeError("playback_hooks started events are not the responses in order")

    def errors(reported: dict[str, float], ids: list[str]) -> list[float]:
        out = []
        for rid in ids:
            t = truth[rid]
            if rid in reported and t is not None:
                out.append(reported[rid] - t)
        return out

    ids = [r.id for r in responses]
    ph_err = errors({k: e.started_at for k, e in started.items()}, ids)
    firsts = [sp[0].id for sp in plan]
    wk1_by_response = {
        sp[0].id: observed.wk1[speech_of[sp[0].id]]
        for sp in plan
        if speech_of[sp[0].id] in observed.wk1
    }
    wk1_err = errors(wk1_by_response, firsts)
    wk2_err = errors(observed.wk2, ids)

    cpu_truth = dict(zip(ids, sink.started_cpu, strict=True))

    def descheduled(entry: dict[str, float], cpu: dict[str, float]) -> int:
        # the wall time from the sink to the handler exceeds the CPU time spent by more
        # than 0.5 ms: the OS ran something else in between
        return sum(
            1
            for rid in ids
            if rid in entry
            and (entry[rid] - (truth[rid] or 0.0)) - (cpu[rid] - cpu_truth[rid]) > 0.0005
        )

    def row(
        name: str, errs: list[float], missed: int, off_cpu: int | None = None
    ) -> dict[str, Any]:
        return {
            "method": name,
            **stats_ms(errs),
            "signed_min_ms": min(errs) * 1000 if errs else None,
            "signed_max_ms": max(errs) * 1000 if errs else None,
            "missed": missed,
            "descheduled": off_cpu,
        }

    rows = [
        row("playback_hooks started_at", ph_err, len(ids) - len(ph_err)),
        row(
            "sync @on_message_played entry",
            errors(observed.sync_entry, ids),
            len(ids) - len(observed.sync_entry),
            descheduled(observed.sync_entry, observed.sync_cpu),
        ),
        row(
            "async @on_message_played start",
            errors(observed.async_entry, ids),
            len(ids) - len(observed.async_entry),
            descheduled(observed.async_entry, observed.async_cpu),
        ),
        row("workaround 1: agent_state_changed + 80 ms", wk1_err, len(ids) - len(wk1_err)),
        row("workaround 2: tts_node sentinel + 200 ms", wk2_err, len(ids) - len(wk2_err)),
    ]
    return {
        "speeches": len(plan),
        "responses": len(ids),
        "wall_s": wall,
        "exact_started_at": sum(1 for e in ph_err if e == 0.0),
        "wk1_extra_reports": observed.wk1_extra,
        "wk1_first_response_only": True,
        "rows": rows,
    }
