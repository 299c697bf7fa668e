"""Benchmark 1: how soon handlers learn that a message started, against livekit's own signal.

One real ``AgentSession`` over RoomIO's chain (the transcription synchronizer over the
participant output on the native ``rtc.AudioSource``), tracker attached before
``session.start()``. Each speech is one ``llm_node`` reply of a few messages, each with a
``MessageBoundary``; livekit synthesizes and plays them. For every message, in the same
run, measured from the sink's own ``playback_started.created_at`` (``time.time()``):

- (a) the first line of a sync ``@on_message_played`` handler;
- (b) the first line of an async ``@on_message_played`` handler;
- (c) a listener of livekit's ``agent_state_changed`` seeing ``new_state == "speaking"``,
  which livekit emits once per speech, for its first audio segment.

(c) exists for a speech's first message only; for messages 2..N livekit has no signal, so
those report (a) and (b) alone and count what livekit misses. Speeches run in rounds; each
round gives its ratios (a)/(c) and (b)/(c) at p50 and p99 over its speeches' first
messages, and the spread of those ratios over the rounds is reported.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from livekit.agents.voice.events import AgentStateChangedEvent
from tests.agents import Item, ScriptAgent, boundary

import playback_hooks as ph
from playback_hooks.testing import EventCollector

from .common import (
    CHAIN_NAMES,
    ProbedRoomOutput,
    check_target,
    percentile,
    ratio,
    ratio_target,
    spread,
    start_chain,
    summary_ms,
)

TITLE = "Notification latency vs livekit's own signal"
WORDS = ("alpha", "bravo", "delta", "echo", "golf", "hotel", "india", "kilo")


@dataclass(frozen=True)
class Sizes:
    """How much one run measures."""

    rounds: int
    speeches: int  # per round
    seed: int = 1


FULL = Sizes(rounds=5, speeches=14)
QUICK = Sizes(rounds=2, speeches=2)


def _scripts(sizes: Sizes) -> list[list[Item]]:
    """One script per speech (a warm-up speech first): 2 to 4 short marked messages."""
    rng = random.Random(sizes.seed)
    scripts: list[list[Item]] = []
    for s in range(1 + sizes.rounds * sizes.speeches):
        script: list[Item] = []
        for k in range(rng.randint(2, 4)):
            script += [boundary(f"s{s}m{k}"), f"Part {k}, {rng.choice(WORDS)}."]
        scripts.append(script)
    return scripts


@dataclass
class _Seen:
    """When each probe ran (``time.time()``), keyed by (speech id, message index)."""

    sync: dict[tuple[str, int], float] = field(default_factory=dict)
    async_: dict[tuple[str, int], float] = field(default_factory=dict)
    speaking: dict[str, float] = field(default_factory=dict)  # speech id -> first "speaking"
    speaking_events: int = 0


async def run(sizes: Sizes) -> dict[str, Any]:
    """Play the speeches and return the latencies (see the module docstring)."""
    scripts = _scripts(sizes)
    chain = await start_chain(ScriptAgent(*scripts), kind="roomio", tracked=True)
    session = chain.session
    sink = chain.sink
    assert isinstance(sink, ProbedRoomOutput)
    seen = _Seen()

    def on_state(ev: AgentStateChangedEvent) -> None:
        if ev.new_state != "speaking":
            return
        now = time.time()
        seen.speaking_events += 1
        speech = session.current_speech
        if speech is not None and speech.id not in seen.speaking:
            seen.speaking[speech.id] = now

    session.on("agent_state_changed", on_state)

    @ph.on_message_played(session=session)
    def sync_probe(event: ph.MessagePlaybackStarted) -> None:
        seen.sync[(event.speech_id, event.index)] = time.time()

    @ph.on_message_played(session=session)
    async def async_probe(event: ph.MessagePlaybackStarted) -> None:
        seen.async_[(event.speech_id, event.index)] = time.time()

    speech_ids: list[str] = []
    messages = 0
    t0 = time.perf_counter()
    try:
        with EventCollector(session) as events:
            for script in scripts:
                handle = session.generate_reply()
                speech_ids.append(handle.id)
                messages += sum(isinstance(item, ph.MessageBoundary) for item in script)
                await handle
                await events.wait_finished(messages, timeout=30)
            started = list(events.started)
        wall = time.perf_counter() - t0
    finally:
        ph.disconnect(sync_probe)
        ph.disconnect(async_probe)
        session.off("agent_state_changed", on_state)
        await chain.aclose()

    if len(sink.created_at) != len(started):
        raise RuntimeError(f"{len(sink.created_at)} segments played for {len(started)} messages")
    exact = sum(e.started_at == t for e, t in zip(started, sink.created_at, strict=True))
    by_speech: dict[str, list[ph.MessagePlaybackStarted]] = {}
    for e in started:
        by_speech.setdefault(e.speech_id, []).append(e)

    def lat(probe: dict[tuple[str, int], float], e: ph.MessagePlaybackStarted) -> float | None:
        t = probe.get((e.speech_id, e.index))
        return None if t is None else t - e.started_at

    rounds: list[dict[str, Any]] = []
    first: dict[str, list[float]] = {"sync": [], "async": [], "livekit": []}
    later: dict[str, list[float]] = {"sync": [], "async": []}
    missed = {"sync": 0, "async": 0, "livekit_first": 0, "livekit_later": 0}
    for r in range(sizes.rounds):
        ids = speech_ids[1 + r * sizes.speeches : 1 + (r + 1) * sizes.speeches]  # no warm-up
        rf: dict[str, list[float]] = {"sync": [], "async": [], "livekit": []}
        for sid in ids:
            for e in by_speech.get(sid, []):
                a, b = lat(seen.sync, e), lat(seen.async_, e)
                missed["sync"] += a is None
                missed["async"] += b is None
                if e.index == 0:
                    c = seen.speaking.get(sid)
                    if a is None or b is None or c is None:
                        missed["livekit_first"] += c is None
                        continue
                    rf["sync"].append(a)
                    rf["async"].append(b)
                    rf["livekit"].append(c - e.started_at)
                else:
                    missed["livekit_later"] += 1
                    if a is not None:
                        later["sync"].append(a)
                    if b is not None:
                        later["async"].append(b)
        for k, v in rf.items():
            first[k] += v
        rounds.append(
            {
                "speeches": len(ids),
                **{
                    f"{kind}_{q}_ratio": ratio(
                        percentile(rf[kind], pct), percentile(rf["livekit"], pct)
                    )
                    for kind in ("sync", "async")
                    for q, pct in (("p50", 50), ("p99", 99))
                },
                **{f"{k}_p50_ms": percentile(v, 50) * 1000 for k, v in rf.items()},
            }
        )
    measured = [e for sid in speech_ids[1:] for e in by_speech.get(sid, [])]
    return {
        "chain": CHAIN_NAMES["roomio"],
        "speeches": sizes.rounds * sizes.speeches,
        "messages": len(measured),
        "rounds": rounds,
        "first_messages": {k: summary_ms(v) for k, v in first.items()},
        "later_messages": {k: summary_ms(v) for k, v in later.items()},
        "missed": missed,
        "speaking_events": seen.speaking_events,
        "all_started": len(started) == messages,
        "exact_started_at": exact,
        "started_events": len(started),
        "wall_s": wall,
        "spread": {
            key: spread([r[key] for r in rounds])
            for key in ("sync_p50_ratio", "sync_p99_ratio", "async_p50_ratio", "async_p99_ratio")
        },
    }


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Handlers no later than livekit's signal; started_at exact; no message missed."""
    out = []
    for kind, label in (("sync", "sync handler entry"), ("async", "async handler start")):
        for q in ("p50", "p99"):
            out.append(
                ratio_target(
                    f"{label} / livekit's agent_state_changed listener, {q}, first message "
                    "of each speech, RoomIO chain",
                    1.0,
                    [r[f"{kind}_{q}_ratio"] for r in res["rounds"]],
                    note="no later than livekit",
                )
            )
    m = res["missed"]
    later_n = res["later_messages"]["sync"]["n"]
    out += [
        check_target(
            "started_at equals the sink's playback_started.created_at",
            "every message, exactly",
            res["exact_started_at"],
            f"of {res['started_events']}",
            res["exact_started_at"] == res["started_events"] and res["all_started"],
        ),
        check_target(
            "messages 2..N of a speech reported (livekit has no signal for them)",
            f"all (livekit missed {m['livekit_later']})",
            later_n,
            f"of {m['livekit_later']}",
            m["sync"] == 0 and m["async"] == 0 and later_n == m["livekit_later"],
        ),
    ]
    return out


def report(res: dict[str, Any]) -> list[str]:
    """The section's Markdown lines."""
    f, later = res["first_messages"], res["later_messages"]
    m = res["missed"]
    lines = [
        f"{res['speeches']} speeches, {res['messages']} messages, one session over the "
        f"{res['chain']}; latency from the sink's `playback_started.created_at`, ms.",
        "",
        "| messages | signal | n | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in (
        ("sync", "(a) sync `@on_message_played` entry"),
        ("async", "(b) async `@on_message_played` start"),
        ("livekit", "(c) livekit `agent_state_changed` -> speaking"),
    ):
        s = f[key]
        lines.append(
            f"| first of each speech | {label} | {s['n']} | {s['p50_ms']:.3f} | "
            f"{s['p99_ms']:.3f} | {s['max_ms']:.3f} |"
        )
    for key, label in (
        ("sync", "(a) sync `@on_message_played` entry"),
        ("async", "(b) async `@on_message_played` start"),
    ):
        s = later[key]
        lines.append(
            f"| 2..N of a speech | {label} | {s['n']} | {s['p50_ms']:.3f} | "
            f"{s['p99_ms']:.3f} | {s['max_ms']:.3f} |"
        )
    lines.append(
        f"| 2..N of a speech | (c) livekit | 0 | — | — | — (missed {m['livekit_later']}) |"
    )
    lines += [
        "",
        "Per round (ratios over that round's first messages):",
        "",
        "| round | speeches | (a)/(c) p50 | (a)/(c) p99 | (b)/(c) p50 | (b)/(c) p99 | (c) p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(res["rounds"], 1):
        lines.append(
            f"| {i} | {r['speeches']} | {r['sync_p50_ratio']:.2f} | {r['sync_p99_ratio']:.2f} | "
            f"{r['async_p50_ratio']:.2f} | {r['async_p99_ratio']:.2f} | "
            f"{r['livekit_p50_ms']:.3f} |"
        )
    lines += [
        "",
        f"`started_at` was bit-for-bit the sink's `created_at` for {res['exact_started_at']} "
        f"of {res['started_events']} messages (warm-up speech included). livekit emitted "
        f"`agent_state_changed -> speaking` {res['speaking_events']} times, once per speech.",
    ]
    return lines
