"""Compatibility matrix: the test suite against every livekit-agents 1.8.x release.

Run through make:

    make compat      # every release on the newest Python here, the newest release on each Python
    make compat-ci   # the oldest and the newest release on the newest Python here, and the
                     # newest release the package index serves in range if it is not listed

Each (Python, livekit-agents) pair gets its own virtualenv with ``livekit-agents`` and
``livekit-plugins-openai`` pinned to the same release. The ``compat_summary`` session
prints one line per pair with the test counts; it runs last and reads the JUnit reports
the test sessions of the same run wrote.

Pythons are found without any setup: pyenv's installs (``$PYENV_ROOT``, ``pyenv root``
or ``~/.pyenv``), then ``pythonX.Y`` on PATH. A Python that is not installed is left
out of the matrix and named in the summary.

Environment:

- ``COMPAT_LIVEKIT_VERSIONS``: comma-separated releases to use instead of the list below.
- ``COMPAT_PYTHON``: the Python (e.g. ``3.11``) for the per-release runs instead of the
  newest one found.
- ``COMPAT_RUN_STARTED=0``: with ``-s compat_summary`` alone, summarize the latest report
  of every pair instead of only those of the current run.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import nox

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / ".nox" / "compat-results"

# Every livekit-agents release in the range pyproject.toml accepts (>=1.8,<1.9), oldest first.
LIVEKIT_VERSIONS = tuple(
    v.strip()
    for v in os.environ.get(
        "COMPAT_LIVEKIT_VERSIONS",
        "1.8.0,1.8.1,1.8.2,1.8.3,1.8.4,1.8.5,1.8.6,1.8.7,1.8.8,1.8.9",
    ).split(",")
    if v.strip()
)
# The Pythons the project supports (requires-python >=3.10), oldest first.
PYTHONS = ("3.10", "3.11", "3.12", "3.13")
# A hung test fails on its own instead of holding up the whole matrix; none takes a minute.
PER_TEST_TIMEOUT = "300"
# Tools in the dev extra that running pytest does not need.
NOT_FOR_TESTS = re.compile(r"^(ruff|mypy|mkdocs[\w.-]*|nox|uv)\b", re.I)

# Nothing is downloaded but packages: a Python that is not installed is left out.
nox.options.download_python = "never"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = True

# Reports older than this run are stale and left out of the summary.
# `COMPAT_RUN_STARTED=0 nox -s compat_summary` prints the latest report of every pair.
RUN_STARTED = float(os.environ.setdefault("COMPAT_RUN_STARTED", repr(time.time())))


def _python_version(exe: str) -> str | None:
    try:
        out = subprocess.run(
            [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _pyenv_root() -> Path:
    if root := os.environ.get("PYENV_ROOT"):
        return Path(root)
    if pyenv := shutil.which("pyenv"):
        try:
            out = subprocess.run(
                [pyenv, "root"], capture_output=True, text=True, timeout=30, check=True
            )
            return Path(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    return Path.home() / ".pyenv"


def _find_python(minor: str) -> str | None:
    """An absolute path to a working CPython ``minor`` (e.g. "3.12"), or None."""
    candidates: list[tuple[tuple[int, ...], str]] = []
    pattern = str(_pyenv_root() / "versions" / f"{minor}.*" / "bin" / f"python{minor}")
    for exe in glob.glob(pattern):
        release = Path(exe).parent.parent.name  # "3.12.1"; skip "3.13.0t", "3.14-dev"...
        if re.fullmatch(re.escape(minor) + r"\.\d+", release):
            candidates.append((tuple(int(p) for p in release.split(".")), exe))
    for _, exe in sorted(candidates, reverse=True):
        if _python_version(exe) == minor:
            return exe
    on_path = shutil.which(f"python{minor}")  # a pyenv shim answers only for an active version
    if on_path is not None and _python_version(on_path) == minor:
        return on_path
    return None


FOUND = {minor: exe for minor in PYTHONS if (exe := _find_python(minor)) is not None}
MISSING = [minor for minor in PYTHONS if minor not in FOUND]
MINOR_OF = {exe: minor for minor, exe in FOUND.items()}
# PYTHONS is oldest first, so the last one found is the newest
DEFAULT_PYTHON = os.environ.get("COMPAT_PYTHON") or (list(FOUND)[-1] if FOUND else "")
if DEFAULT_PYTHON and DEFAULT_PYTHON not in FOUND:
    sys.exit(f"noxfile: COMPAT_PYTHON={DEFAULT_PYTHON} is not installed here")


def _matrix() -> list[tuple[str, str]]:
    """(python, livekit-agents) pairs: every release on the default Python, then the
    newest release on each other Python."""
    if not FOUND:
        return []
    pairs = [(DEFAULT_PYTHON, v) for v in LIVEKIT_VERSIONS]
    pairs += [(py, LIVEKIT_VERSIONS[-1]) for py in FOUND if py != DEFAULT_PYTHON]
    return pairs


def _ci_pairs() -> set[tuple[str, str]]:
    if not FOUND:
        return set()
    return {(DEFAULT_PYTHON, LIVEKIT_VERSIONS[0]), (DEFAULT_PYTHON, LIVEKIT_VERSIONS[-1])}


def _pair_id(python: str, livekit: str) -> str:
    return f"py{python}-lk{livekit}"


def _test_requirements() -> list[str]:
    """The dev extra of pyproject.toml, minus linters, type checker, docs and nox itself."""
    pyproject = nox.project.load_toml(ROOT / "pyproject.toml")
    dev: list[str] = pyproject["project"]["optional-dependencies"]["dev"]
    return [
        req
        for req in dev
        if not NOT_FOR_TESTS.match(req) and not req.startswith("livekit-plugins-openai")
    ]


def _params() -> list[Any]:
    ci = _ci_pairs()
    params = []
    for python, livekit in _matrix():
        tags = ["compat", "compat-ci"] if (python, livekit) in ci else ["compat"]
        params.append(nox.param(FOUND[python], livekit, id=_pair_id(python, livekit), tags=tags))
    return params


@nox.session(reuse_venv=True, default=False)
@nox.parametrize(["python", "livekit"], _params())
def compat(session: nox.Session, livekit: str) -> None:
    """Run pytest with livekit-agents and livekit-plugins-openai pinned to one release."""
    _run_suite(session, livekit)


@nox.session(python=FOUND.get(DEFAULT_PYTHON), reuse_venv=True, tags=["compat-ci"], default=False)
def compat_newest(session: nox.Session) -> None:
    """The drift canary: the suite against the newest release in pyproject.toml's range
    that the package index serves, when it is not in the matrix yet."""
    newest = _newest_release(session)
    if newest in LIVEKIT_VERSIONS:
        session.skip(f"the newest livekit-agents in range, {newest}, is in the matrix already")
    session.warn(
        f"livekit-agents {newest} is newer than the matrix: add it to LIVEKIT_VERSIONS "
        "(noxfile.py) and to the table in docs/compat.md once it passes"
    )
    _run_suite(session, newest)


def _newest_release(session: nox.Session) -> str:
    """The newest livekit-agents release the index serves inside pyproject.toml's range."""
    from packaging.requirements import Requirement
    from packaging.version import InvalidVersion, Version

    pyproject = nox.project.load_toml(ROOT / "pyproject.toml")
    (spec,) = [
        Requirement(dep).specifier
        for dep in pyproject["project"]["dependencies"]
        if Requirement(dep).name == "livekit-agents"
    ]
    # nox's own interpreter has pip (the session's virtualenv, made by uv, may not)
    out = session.run(
        sys.executable,
        "-m",
        "pip",
        "index",
        "versions",
        "livekit-agents",
        silent=True,
        external=True,
    )
    listed = re.search(r"Available versions:\s*(.+)", str(out))
    if listed is None:
        session.error(f"the package index listed no livekit-agents release: {out}")
    versions = []
    for text in listed.group(1).split(","):
        try:
            versions.append(Version(text.strip()))
        except InvalidVersion:
            continue
    in_range = [v for v in versions if v in spec]
    if not in_range:
        session.error(f"no livekit-agents release in {spec} on the package index")
    return str(max(in_range))


def _run_suite(session: nox.Session, livekit: str) -> None:
    report = RESULTS / f"{_pair_id(MINOR_OF[str(session.python)], livekit)}.xml"
    RESULTS.mkdir(parents=True, exist_ok=True)
    report.unlink(missing_ok=True)
    (RESULTS / f"{report.stem}.started").touch()
    session.install(
        "-e",
        ".",
        *_test_requirements(),
        "pytest-timeout>=2.3",
        f"livekit-agents=={livekit}",
        f"livekit-plugins-openai=={livekit}",
    )
    installed = session.run(
        "python",
        "-c",
        "from importlib.metadata import version as v; "
        "print(v('livekit-agents'), v('livekit-plugins-openai'))",
        silent=True,
    )
    session.log(f"livekit-agents, livekit-plugins-openai: {str(installed).strip()}")
    session.run(
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        # a test module that cannot import on one release must not hide the other results
        "--continue-on-collection-errors",
        f"--timeout={PER_TEST_TIMEOUT}",
        # the package's own build and a fresh install from the index: nothing in them
        # depends on the livekit-agents release under test, and make test runs them
        "--ignore=tests/test_packaging.py",
        "--deselect=tests/test_docs.py::TestTestingRecipe",
        f"--junitxml={report}",
        "-o",
        "junit_family=xunit2",
        *session.posargs,
    )


@nox.session(python=False, tags=["compat", "compat-ci"], default=False)
def compat_summary(session: nox.Session) -> None:
    """Print one line per (python, livekit-agents) pair run by this invocation."""
    rows = []
    for started in sorted(RESULTS.glob("*.started"), key=_sort_key):
        if started.stat().st_mtime < RUN_STARTED:
            continue  # from an earlier run
        python, livekit = started.stem.removeprefix("py").split("-lk")
        report = started.with_suffix(".xml")
        if not report.exists():
            rows.append((python, livekit, "no report: the session failed before pytest ran"))
            continue
        counts = _junit_counts(report)
        status = "ok" if counts["failed"] + counts["errors"] == 0 else "FAILED"
        text = "  ".join(f"{counts[k]:3d} {k}" for k in ("passed", "failed", "errors", "skipped"))
        if counts["xfailed"]:
            text += f"  ({counts['xfailed']} xfailed)"
        rows.append((python, livekit, f"{text}  {status}"))
    width = max((len(f"livekit-agents {r[1]}") for r in rows), default=20)
    print("\ncompatibility (python, livekit-agents): passed / failed / errors / skipped")
    for python, livekit, text in rows:
        print(f"  python {python:5s}  {'livekit-agents ' + livekit:{width}s}  {text}")
    if not rows:
        print("  no results from this run")
    for minor in MISSING:
        print(f"  python {minor:5s}  not installed here: left out")


def _sort_key(path: Path) -> tuple[tuple[int, ...], tuple[int, ...]]:
    python, livekit = path.stem.removeprefix("py").split("-lk")
    return (
        tuple(int(p) for p in python.split(".")),
        tuple(int(p) for p in livekit.split(".")),
    )


def _junit_counts(report: Path) -> dict[str, int]:
    """Outcome counts of one pytest JUnit report; xfail/xpass are counted apart.

    pytest writes a second entry for a test whose teardown fails after its call failed;
    the test counts once, by its worst outcome.
    """
    rank = {"passed": 0, "xfailed": 1, "skipped": 2, "errors": 3, "failed": 4}
    outcomes: dict[tuple[str | None, str | None], str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        kinds = {child.tag: child for child in case}
        if "failure" in kinds:
            outcome = "failed"
        elif "error" in kinds:
            outcome = "errors"
        elif "skipped" in kinds:
            xfail = kinds["skipped"].get("type") == "pytest.xfail"
            outcome = "xfailed" if xfail else "skipped"
        else:
            outcome = "passed"
        key = (case.get("classname"), case.get("name"))
        if key not in outcomes or rank[outcome] > rank[outcomes[key]]:
            outcomes[key] = outcome
    counts = dict.fromkeys(rank, 0)
    for outcome in outcomes.values():
        counts[outcome] += 1
    return counts
