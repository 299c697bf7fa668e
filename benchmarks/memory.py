"""Benchmark 4: one very long session: no memory growth, no per-speech state left behind.

``messages`` messages go through one real, started ``AgentSession``'s tracker (attached
before ``session.start()``), ``per_speech`` to a speech. Everything but the LLM/TTS
pipeline is the production path: each speech is a real ``SpeechHandle`` created and
scheduled as livekit does, its messages are announced by a ``@track_messages`` node
yielding ``MessageBoundary`` markers and text inside the speech's context, and its
segments go through ``session.output.audio`` in livekit's order (capture inside the
speech's context, one flush per segment) to a sink that reports each segment at once, so
100,000 messages take about a minute instead of hours of real-time audio. A receiver
counts the events.

``tracemalloc`` runs throughout; the process's traced memory (and the part allocated in
playback_hooks' code) is read after the warm-up and at the end. ``speech_created`` is
emitted without ``AgentSession.emit()`` keeping it: livekit keeps every event a session
emits, and the speech handle in it, for its session report until the session closes,
which would grow the process by the same amount with or without a tracker.
``tracker.stats()`` must show no per-speech state at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livekit.agents import Agent, AgentSession

import playback_hooks as ph
from playback_hooks.testing import ScriptedLLM, SineTTS

from .common import CountingSink, check_target, end_speech, in_speech, new_speech, pcm_frame

TITLE = "Memory: one long session"
PACKAGE_DIR = str(Path(ph.__file__).parent)
GROWTH_LIMIT = 16 * 1024


@dataclass(frozen=True)
class Sizes:
    """How much one run measures."""

    messages: int
    per_speech: int
    warmup: int


FULL = Sizes(messages=100_000, per_speech=10, warmup=10_000)
QUICK = Sizes(messages=2000, per_speech=10, warmup=1200)  # past wait_for()'s history size


@ph.track_messages
async def _announce(ids: list[str]) -> AsyncIterator[str | ph.MessageBoundary]:
    """What an ``llm_node`` yields: a marker and its text per message."""
    for message_id in ids:
        yield ph.MessageBoundary(message_id)
        yield "text"


def _package_bytes(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes allocated in playback_hooks' code and still held."""
    return sum(
        stat.size
        for stat in snapshot.statistics("filename")
        if stat.traceback[0].filename.startswith(PACKAGE_DIR)
    )


async def run(sizes: Sizes) -> dict[str, Any]:
    """Play the messages; return memory before/after and the tracker's state."""
    sink = CountingSink()
    session: AgentSession[Any] = AgentSession(llm=ScriptedLLM([]), tts=SineTTS())
    session.output.audio = sink
    tracker = ph.attach(session)
    await session.start(Agent(instructions="benchmark agent"), record=False)
    frame = pcm_frame(0.005)
    delivered = Counter[str]()

    def count(sender: Any, *, event: Any, **_: Any) -> None:
        delivered[type(event).__name__] += 1

    ph.message_playback_started.connect(count, sender=session, weak=False)
    ph.message_playback_finished.connect(count, sender=session, weak=False)
    speeches = sizes.messages // sizes.per_speech
    warm_speeches = sizes.warmup // sizes.per_speech
    memory: dict[str, int] = {}
    gc.collect()
    tracemalloc.start(1)
    t0 = time.perf_counter()
    try:
        for s in range(speeches):
            if s == warm_speeches:
                gc.collect()
                memory["warm"] = tracemalloc.get_traced_memory()[0]
                memory["package_warm"] = _package_bytes(tracemalloc.take_snapshot())
            handle = new_speech(session, recorded=False)
            out = session.output.audio
            assert out is not None
            with in_speech(handle):
                async for _ in _announce([f"s{s}m{k}" for k in range(sizes.per_speech)]):
                    pass
                for _ in range(sizes.per_speech):
                    await out.capture_frame(frame)
                    await out.capture_frame(frame)
                    out.flush()
            end_speech(handle)
            await asyncio.sleep(0)
        for _ in range(3):
            await asyncio.sleep(0)
        wall = time.perf_counter() - t0
        gc.collect()
        memory["end"] = tracemalloc.get_traced_memory()[0]
        memory["package_end"] = _package_bytes(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()
        ph.message_playback_started.disconnect(count, sender=session)
        ph.message_playback_finished.disconnect(count, sender=session)
    state = dataclasses.asdict(tracker.stats())
    await tracker.aclose()
    await session.aclose()
    total = speeches * sizes.per_speech
    return {
        "messages": total,
        "per_speech": sizes.per_speech,
        "wall_s": wall,
        "started_events": delivered["MessagePlaybackStarted"],
        "finished_events": delivered["MessagePlaybackFinished"],
        "all_delivered": delivered["MessagePlaybackStarted"] == total
        and delivered["MessagePlaybackFinished"] == total,
        "warmup_messages": warm_speeches * sizes.per_speech,
        "growth_bytes": memory["end"] - memory["warm"],
        "memory_after_warmup_bytes": memory["warm"],
        "memory_at_end_bytes": memory["end"],
        "package_bytes_after_warmup": memory["package_warm"],
        "package_bytes_at_end": memory["package_end"],
        "tracker_state": state,
        "no_per_speech_state": state["speeches"]
        == state["unreleased_messages"]
        == state["open_segments"]
        == state["waiters"]
        == state["handler_tasks"]
        == 0,
    }


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """No growth after the warm-up; no per-speech state at the end."""
    st = res["tracker_state"]
    return [
        check_target(
            f"memory growth from message {res['warmup_messages']:,} to {res['messages']:,} "
            "of one session",
            f"none (<= {GROWTH_LIMIT // 1024} KiB)",
            res["growth_bytes"],
            "bytes",
            res["growth_bytes"] <= GROWTH_LIMIT and res["all_delivered"],
        ),
        check_target(
            "per-speech state held after the long session",
            "none",
            sum(st[k] for k in ("speeches", "unreleased_messages", "open_segments", "waiters")),
            "entries",
            res["no_per_speech_state"],
        ),
    ]


def report(res: dict[str, Any]) -> list[str]:
    """The section's Markdown lines."""
    state = ", ".join(f"{k} {v}" for k, v in res["tracker_state"].items())
    return [
        f"{res['messages']:,} messages ({res['per_speech']} per speech) in "
        f"{res['wall_s']:.1f} s; {res['started_events']:,} started and "
        f"{res['finished_events']:,} finished events delivered. Traced memory: "
        f"{res['memory_after_warmup_bytes']:,} B after {res['warmup_messages']:,} messages, "
        f"{res['memory_at_end_bytes']:,} B at the end (growth {res['growth_bytes']:,} B); "
        "of it allocated in playback_hooks' code: "
        f"{res['package_bytes_after_warmup']:,} B and {res['package_bytes_at_end']:,} B. "
        f"`tracker.stats()` at the end: {state} (history is the bounded memory of "
        "`wait_for()`).",
    ]
