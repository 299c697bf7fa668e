"""Benchmark 3: all-in CPU per second of audio, whole sessions, tracked / untracked.

Two chains: RoomIO's chain (the transcription synchronizer over the participant output on
the native ``rtc.AudioSource``) and the bare participant output (RoomIO with transcription
disabled). Per chain, ``1 + 2 * per_side`` real, started ``AgentSession``s in one process:
in every round ``per_side`` of them have trackers (and one receiver counts every event) and
``per_side`` have none, interleaved; the roles swap from round to round (``attach()`` /
``aclose()`` between rounds), so that what makes one session cheaper than another cancels
out.

Each reply is a real ``generate_reply()``: the agent's ``@track_messages`` ``llm_node``
yields its messages with markers, livekit synthesizes them (``SineTTS``), forwards the audio
and plays it in real time on the native source. A batch is one reply in every session of
a chain at once, the tracked and the untracked side by side, so that both run on the same
machine at the same moments: livekit's per-reply CPU varies by 10 to 15 % from one batch to
the next with the machine, and comparing batches run one after the other mostly measured
that. The first session asked in a batch pays for what the batch's first reply warms up;
it is the same session every time, on neither side, and is not counted. The others are
asked in alternating order.

Each session's CPU is what the event loop's thread spent in its callbacks and task steps,
charged through the context livekit's tasks inherit (``common.SessionCpu``): everything
livekit and the tracker do for that session, and none of the native audio plumbing shared
by all (which makes the ratio stricter). A check counts the tracker's calls made outside
any session's account: there must be none, or its cost would escape. A batch's ratio is
tracked / untracked of CPU per second of audio played; a round's ratio is the median of its
batches'. One more batch per chain runs under ``cProfile`` to split the tracker's own CPU
per message by part.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import pstats
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import playback_hooks as ph

from .common import (
    CHAIN_KINDS,
    CHAIN_NAMES,
    Chain,
    ChainKind,
    ProbedRoomOutput,
    ReplyAgent,
    SessionCpu,
    chain_ratio_targets,
    check_target,
    ratio,
    round_table,
    spread,
    start_chain,
)

TITLE = "CPU cost of the tracker, all in, per second of audio (whole sessions)"
SETTLE_S = 0.05  # after the replies are done: their last events are delivered on later iterations

# The tracker's modules, by part of its per-message work (the rest of the package is its
# testing kit, which the sessions here do not run through).
PARTS: dict[str, tuple[str, ...]] = {
    "markers (llm_node)": ("markers.py",),
    "binding (output, ledger)": (
        "_outputs.py",
        "_ledger.py",
        "_session.py",
        "_words.py",
        "_listeners.py",
        "_livekit.py",
        "_log.py",
    ),
    "events (outcome, order)": ("_order.py", "_messages.py", "_progress.py", "events.py", "ids.py"),
    "delivery (signals, handlers, wait_for)": (
        "_dispatch.py",
        "signals.py",
        "tracker.py",
        "_waiters.py",
        "_follow.py",
        "_realtime.py",
        "blinker",
    ),
}


@dataclass(frozen=True)
class Sizes:
    """How much one run measures."""

    rounds: int
    per_side: int  # sessions per side in each batch
    batches: int  # per round and chain
    messages: int  # per reply
    text: str  # of each message, formatted with reply= and part=


SENTENCE = "Reply {reply}, part {part}: about as long as a spoken sentence."
# A batch plays in real time whatever the number of its sessions: sixteen a side in six
# batches measure 96 replies a side per round (eight in eight measured 64), in less time.
FULL = Sizes(rounds=6, per_side=16, batches=6, messages=1, text=SENTENCE)
QUICK = Sizes(rounds=2, per_side=1, batches=1, messages=2, text="Hi {part}.")


@dataclass
class _Chains:
    """One chain's sessions: the lead (index 0) and the two sides."""

    kind: ChainKind
    chains: list[Chain]
    base: int  # account of session i is base + i


async def _start(kind: ChainKind, sizes: Sizes, cpu: SessionCpu, base: int) -> _Chains:
    chains = []
    for i in range(1 + 2 * sizes.per_side):
        with cpu.charged_to(base + i):
            agent = ReplyAgent(sizes.messages, sizes.text)
            chains.append(await start_chain(agent, kind=kind, tracked=False))
    return _Chains(kind, chains, base)


def _side(i: int, r: int) -> str:
    """Session ``i``'s role in round ``r`` (0 is the lead, on no side)."""
    if i == 0:
        return "lead"
    return "tracked" if (i + r) % 2 == 0 else "untracked"


async def _batch(group: _Chains, cpu: SessionCpu, r: int, n: int) -> dict[str, list[float]]:
    """One reply in every session at once; CPU ns and seconds of audio, per side."""
    sinks: list[ProbedRoomOutput] = []
    for c in group.chains:
        assert isinstance(c.sink, ProbedRoomOutput)
        sinks.append(c.sink)
    marks = [len(s.positions) for s in sinks]
    # every batch starts from the same collector state: the collections its own
    # allocations cause are charged to it, not a full one that earlier batches built up
    gc.collect()
    cpu.ns.clear()
    rest = list(range(1, len(group.chains)))
    order = [0, *(rest if n % 2 == 0 else rest[::-1])]
    replies = []
    for i in order:
        with cpu.charged_to(group.base + i):
            replies.append(group.chains[i].session.generate_reply())
    await asyncio.gather(*replies)
    await asyncio.sleep(SETTLE_S)
    sides: dict[str, list[float]] = {"tracked": [0.0, 0.0], "untracked": [0.0, 0.0]}
    for i in rest:
        played = sum(sinks[i].positions[marks[i] :])
        side = sides[_side(i, r)]
        side[0] += cpu.ns.get(group.base + i, 0)
        side[1] += played
    return sides


def _profiled_parts(profile: cProfile.Profile, messages: int) -> dict[str, float]:
    """µs per message of the tracker's own functions (``tottime``), by part."""
    us = dict.fromkeys(PARTS, 0.0)
    for (path, _, _), row in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        name = Path(path).name
        for part, modules in PARTS.items():
            in_package = "playback_hooks" in path and "testing" not in path and name in modules
            if in_package or ("blinker" in modules and "/blinker/" in path):
                us[part] += row[2] * 1e6 / messages
    return us


async def run(sizes: Sizes) -> dict[str, Any]:
    """Play the replies and return CPU per second of audio (see the module docstring)."""
    cpu = SessionCpu()
    cpu.install()
    groups = [await _start(kind, sizes, cpu, 100 * k) for k, kind in enumerate(CHAIN_KINDS)]
    counts = {"started": 0, "finished": 0}

    def count(sender: Any, *, event: Any, **_: Any) -> None:
        counts["started" if isinstance(event, ph.MessagePlaybackStarted) else "finished"] += 1

    ph.message_playback_started.connect(count, weak=False)
    ph.message_playback_finished.connect(count, weak=False)
    rounds: dict[ChainKind, list[dict[str, Any]]] = {kind: [] for kind in CHAIN_KINDS}
    audio = {"tracked": 0.0, "untracked": 0.0}
    added_us: dict[ChainKind, list[float]] = {kind: [] for kind in CHAIN_KINDS}
    checks: dict[str, Any] = {}
    t0 = time.perf_counter()
    try:
        for group in groups:  # warm every path up, untracked
            await _batch(group, cpu, 0, 0)
        for r in range(sizes.rounds):
            trackers = [
                ph.attach(c.session)
                for group in groups
                for i, c in enumerate(group.chains)
                if _side(i, r) == "tracked"
            ]
            for group in groups:
                ratios: list[float] = []
                cpu_ms: dict[str, list[float]] = {"tracked": [], "untracked": []}
                for n in range(sizes.batches):
                    sides = await _batch(group, cpu, r, n)
                    (tc, ta), (uc, ua) = sides["tracked"], sides["untracked"]
                    if ta <= 0 or ua <= 0:
                        continue
                    ratios.append(ratio(tc / ta, uc / ua))
                    cpu_ms["tracked"].append(tc / ta / 1e6)
                    cpu_ms["untracked"].append(uc / ua / 1e6)
                    audio["tracked"] += ta
                    audio["untracked"] += ua
                    replies = sizes.per_side
                    added_us[group.kind].append((tc - uc) / 1000 / (replies * sizes.messages))
                rounds[group.kind].append(
                    {
                        "batches": len(ratios),
                        "ratio": statistics.median(ratios),
                        "cpu_ms_per_audio_s": {
                            side: statistics.median(v) for side, v in cpu_ms.items()
                        },
                    }
                )
            if r == sizes.rounds - 1:
                checks = await _checks(groups, cpu, r, sizes)
            for tracker in trackers:
                await tracker.aclose()
        wall = time.perf_counter() - t0
    finally:
        ph.message_playback_started.disconnect(count)
        ph.message_playback_finished.disconnect(count)
        cpu.uninstall()
        for group in groups:
            for chain in group.chains:
                await chain.aclose()

    expected = sizes.rounds * sizes.batches * sizes.per_side * sizes.messages * len(CHAIN_KINDS)
    extra = 2 * sizes.per_side * sizes.messages * len(CHAIN_KINDS)  # the two checking batches
    results: dict[str, Any] = {
        "wall_s": wall,
        "per_side": sizes.per_side,
        "messages_per_speech": sizes.messages,
        "audio_s": audio,
        "events": counts,
        "expected_events_each": expected + extra,
        "exactly_counted": counts["started"] == counts["finished"] == expected + extra,
        **checks,
    }
    for kind in CHAIN_KINDS:
        per_round = rounds[kind]
        results[kind] = {
            "chain": CHAIN_NAMES[kind],
            "rounds": per_round,
            "ratio": spread([r["ratio"] for r in per_round]),
            "cpu_ms_per_audio_s": {
                side: statistics.median(r["cpu_ms_per_audio_s"][side] for r in per_round)
                for side in ("tracked", "untracked")
            },
            "added_us_per_message": spread(added_us[kind]),
            "batches_each": sum(r["batches"] for r in per_round),
        }
    return results


async def _checks(groups: list[_Chains], cpu: SessionCpu, r: int, sizes: Sizes) -> dict[str, Any]:
    """With the trackers of the last round: the accounting misses none of the tracker's
    calls, and the tracker's own CPU per message by part (under cProfile)."""
    with cpu.watch_outside():
        for group in groups:
            await _batch(group, cpu, r, 0)
    profile = cProfile.Profile()
    profile.enable()
    for group in groups:
        await _batch(group, cpu, r, 1)
    profile.disable()
    messages = sizes.per_side * sizes.messages * len(groups)
    return {
        "outside_calls": cpu.outside,
        "profiled_us_per_message": _profiled_parts(profile, messages),
    }


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """All-in CPU per second of audio, tracked / untracked, in both chains."""
    return [
        *chain_ratio_targets(
            res, "all-in CPU per second of audio, tracked / untracked", 1.02, "ratio"
        ),
        check_target(
            "all-in: the tracker's calls outside the sessions' CPU accounts",
            "none",
            res["outside_calls"],
            "calls",
            res["outside_calls"] == 0,
        ),
    ]


def report(res: dict[str, Any]) -> list[str]:
    """The section's Markdown lines."""
    lines = [
        "Event-loop thread CPU per second of audio played, ms (median over rounds of the "
        f"median batch: {res['per_side']} tracked and {res['per_side']} untracked sessions "
        f"playing a {res['messages_per_speech']}-message reply together); per-round ratios "
        "below.",
        "",
        "| chain | untracked | tracked | ratio | batches | tracked - untracked, µs per message "
        "(min / median / max over batches) |",
        "|---|---|---|---|---|---|",
    ]
    for kind in CHAIN_KINDS:
        c = res[kind]
        m = c["cpu_ms_per_audio_s"]
        a = c["added_us_per_message"]
        lines.append(
            f"| {c['chain']} | {m['untracked']:.2f} | {m['tracked']:.2f} | "
            f"{c['ratio']['median']:.3f} | {c['batches_each']} | "
            f"{a['min']:,.0f} / {a['median']:,.0f} / {a['max']:,.0f} |"
        )
    lines += round_table(res, CHAIN_KINDS, "ratio", "ratio")
    parts = res["profiled_us_per_message"]
    total = sum(parts.values()) or 1.0
    lines += [
        "",
        "The tracker's own CPU per message, by part: its functions' own time under "
        "`cProfile`, in one more batch per chain. The profiler makes small functions several "
        "times slower, so the figures are high; the shares are what they tell.",
        "",
        "| part | µs per message under cProfile | share |",
        "|---|---|---|",
        *(f"| {part} | {us:,.1f} | {us / total:.0%} |" for part, us in parts.items()),
        f"| all | {total:,.1f} | 100% |",
    ]
    ev = res["events"]
    lines += [
        "",
        f"{res['audio_s']['tracked']:.1f} s of audio played tracked, "
        f"{res['audio_s']['untracked']:.1f} s untracked; the trackers delivered "
        f"{ev['started']} started and {ev['finished']} finished events "
        f"(expected {res['expected_events_each']} of each). The tracker's calls made outside "
        f"every session's account: {res['outside_calls']}. The µs per message column is "
        "the difference of two sides whose own cost varies by more from batch to batch; "
        "the ratio, side by side, is the verdict.",
    ]
    return lines
