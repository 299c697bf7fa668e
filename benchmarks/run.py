"""Run the benchmarks, print the results table, write ``results.json`` and ``README.md``.

    python -m benchmarks.run            # the full set (``make bench``)
    python -m benchmarks.run --quick    # a tiny configuration that only checks they work
    python -m benchmarks.run --only latency,scale

Each benchmark is a module of this package listed in ``BENCHMARKS`` with the same small
interface (``BenchmarkModule``): its sizes (``FULL`` and ``QUICK``), ``run(sizes)``,
``targets(result)`` and ``report(result)``. Adding one is writing such a module and
listing it; its targets join the table and ``results.json`` by themselves.

The full run writes ``benchmarks/results.json`` (every measurement, the machine, the
load, plus a ``targets`` list of ``{name, target, measured, unit, spread, met}``; a ratio's
``spread`` is its min / median / max over the rounds, and it is judged on the median) and
the results section of ``benchmarks/README.md``. ``--quick`` writes nothing unless
``--out`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from . import allin, latency, memory, overhead, progress, scale

HERE = Path(__file__).parent
README_MARKER = "<!-- results: written by `make bench` (python -m benchmarks.run) -->"


class BenchmarkModule(Protocol):
    """What ``run.py`` needs of a benchmark module."""

    TITLE: str
    FULL: Any
    QUICK: Any

    async def run(self, sizes: Any) -> dict[str, Any]:
        """Measure; the result must be JSON-serializable."""
        ...

    def targets(self, result: dict[str, Any]) -> list[dict[str, Any]]:
        """The issue's targets this benchmark measures, each with ``met``."""
        ...

    def report(self, result: dict[str, Any]) -> list[str]:
        """Markdown lines of the benchmark's section (its title is added)."""
        ...


BENCHMARKS: tuple[BenchmarkModule, ...] = (latency, overhead, allin, scale, memory, progress)


def name_of(module: BenchmarkModule) -> str:
    """The key of a benchmark in ``results.json`` and ``--only``: its module's name."""
    return str(getattr(module, "__name__", "?")).rsplit(".", 1)[-1]


def _uname() -> str:
    try:
        out = subprocess.run(["uname", "-a"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return " ".join(platform.uname()).strip()
    return out.stdout.strip()


def machine() -> dict[str, Any]:
    """Where and when the numbers were measured."""
    return {
        "uname": _uname(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "livekit_agents": metadata.version("livekit-agents"),
        "playback_hooks": metadata.version("playback-hooks"),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _load() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


async def measure(quick: bool = False, only: set[str] | None = None) -> dict[str, Any]:
    """Run the benchmarks in order; return their results, sizes, wall times and load."""
    results: dict[str, Any] = {"sizes": {}, "wall_s": {}, "load": {"start": _load()}}
    t_all = time.perf_counter()
    for module in BENCHMARKS:
        name = name_of(module)
        if only is not None and name not in only:
            continue
        sizes = module.QUICK if quick else module.FULL
        print(f"running {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        results[name] = await module.run(sizes)
        results["wall_s"][name] = time.perf_counter() - t0
        results["sizes"][name] = dataclasses.asdict(sizes)
    results["wall_s"]["total"] = time.perf_counter() - t_all
    results["load"]["end"] = _load()
    return results


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every measured benchmark's targets, in order."""
    out: list[dict[str, Any]] = []
    for module in BENCHMARKS:
        name = name_of(module)
        if name in results:
            out += [{"benchmark": name, **t} for t in module.targets(results[name])]
    return out


def _fmt(value: Any, unit: str) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if unit == "ratio":
            return f"{value:.3f}"
        return f"{value:,.1f} {unit}".strip()
    if isinstance(value, int):
        return f"{value:,} {unit}".strip()
    return str(value)


def _spread(tg: dict[str, Any]) -> str:
    s = tg.get("spread")
    if not s:
        return "—"
    return f"{s['min']:.3f} / {s['median']:.3f} / {s['max']:.3f} ({len(s['rounds'])})"


def targets_table(results: dict[str, Any]) -> list[str]:
    """The targets as a Markdown table."""
    lines = [
        "| target | required | measured | spread: min / median / max (rounds) | met |",
        "|---|---|---|---|---|",
    ]
    for tg in results["targets"]:
        lines.append(
            f"| {tg['name']} | {tg['target']} | {_fmt(tg['measured'], tg['unit'])} | "
            f"{_spread(tg)} | {'yes' if tg['met'] else '**no**'} |"
        )
    return lines


def report(results: dict[str, Any]) -> str:
    """The Markdown results section: machine, targets, then each benchmark's section."""
    m = results["machine"]
    load = results["load"]
    met = sum(1 for t in results["targets"] if t["met"])
    lines = [
        README_MARKER,
        "",
        f"Measured {m['date']} on `{m['uname']}`, {m['cpus']} CPUs, Python {m['python']}, "
        f"livekit-agents {m['livekit_agents']}, playback_hooks {m['playback_hooks']}. "
        f"Load average (1, 5, 15 min) {load['start']} at the start, {load['end']} at the end; "
        f"the run took {results['wall_s']['total']:.0f} s.",
        "",
        "### Targets",
        "",
        f"{met} of {len(results['targets'])} met. Ratios are tracked / untracked (or ours / "
        "livekit's), measured side by side in the same run; each is judged on the median of "
        "its rounds, with the spread over the rounds beside it.",
        "",
        *targets_table(results),
    ]
    for module in BENCHMARKS:
        name = name_of(module)
        if name not in results:
            continue
        lines += [
            "",
            f"### {module.TITLE}",
            "",
            *module.report(results[name]),
            "",
            f"_Sizes: {results['sizes'][name]}; {results['wall_s'][name]:.0f} s._",
        ]
    lines.append("")
    return "\n".join(lines)


def write_readme(section: str, path: Path) -> None:
    """Replace everything after the results marker in ``path`` with ``section``."""
    text = path.read_text() if path.exists() else ""
    head = text.split(README_MARKER)[0] if README_MARKER in text else text
    path.write_text(head.rstrip() + "\n\n" + section)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.run``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny configuration")
    parser.add_argument("--out", type=Path, default=None, help="directory for the results")
    parser.add_argument(
        "--only",
        default=None,
        help="comma-separated benchmarks to run: " + ", ".join(name_of(b) for b in BENCHMARKS),
    )
    args = parser.parse_args(argv)
    only = None if args.only is None else {n.strip() for n in args.only.split(",")}
    if only is not None and not only <= {name_of(b) for b in BENCHMARKS}:
        parser.error(f"unknown benchmark in --only: {', '.join(sorted(only))}")
    # livekit warns once per session that the benchmark sinks are not RoomIO's
    logging.getLogger("livekit.agents").setLevel(logging.ERROR)
    results = asyncio.run(measure(quick=args.quick, only=only))
    results["machine"] = machine()
    results["targets"] = targets(results)
    section = report(results)
    print(section)
    out = args.out if args.out is not None else (None if args.quick or only else HERE)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        write_readme(section, out / "README.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
