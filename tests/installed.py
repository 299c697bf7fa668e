"""The package as a user gets it: an sdist and a wheel built from this checkout, the wheel
installed into a fresh virtual environment that has nothing else of this repository.

Building and installing take a while, so it happens once per test run, in pytest's
temporary directory, and the test modules that need it share the result.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What the testing recipe tells readers to install beside playback-hooks.
RECIPE_REQUIREMENTS = ("pytest", "pytest-asyncio")


@dataclass
class Installed:
    """The built distributions and the fresh environment the wheel is installed in."""

    sdist: Path
    wheel: Path
    venv: Path
    seconds: dict[str, float] = field(default_factory=dict)
    """How long each step took: "build", "venv", "install"."""

    @property
    def bin(self) -> Path:
        """The environment's scripts folder (its python, its pytest)."""
        return self.venv / "bin"

    def run(
        self, *argv: str | Path, cwd: Path, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a command of the environment (``argv[0]`` names a script in its bin folder)."""
        command = [str(self.bin / argv[0]), *map(str, argv[1:])]
        return subprocess.run(
            command,
            cwd=cwd,
            env=clean_env(self.bin),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def clean_env(bin_dir: Path | None = None) -> dict[str, str]:
    """This process's environment without what would leak the dev setup into a child."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"} and not k.startswith("PYTEST_")
    }
    if bin_dir is not None:
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def _step(argv: list[str], what: str, timeout: float) -> None:
    done = subprocess.run(
        argv, env=clean_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def _build(where: Path) -> Installed:
    seconds: dict[str, float] = {}
    dist = where / "dist"
    clock = time.perf_counter()
    # the sdist first, then the wheel built from the unpacked sdist, each in an isolated
    # build environment: what a package index and its users get
    _step([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], "build", 180)
    seconds["build"] = time.perf_counter() - clock
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")

    venv = where / "venv"
    clock = time.perf_counter()
    _step([sys.executable, "-m", "venv", "--without-pip", str(venv)], "venv", 60)
    seconds["venv"] = time.perf_counter() - clock
    clock = time.perf_counter()
    # This process's pip installs into the new environment (--python): the environment
    # itself holds only the wheel, its dependencies and what the recipe asks for.
    _step(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--no-compile",
            str(wheel),
            *RECIPE_REQUIREMENTS,
        ],
        "pip install",
        240,
    )
    seconds["install"] = time.perf_counter() - clock
    return Installed(sdist=sdist, wheel=wheel, venv=venv, seconds=seconds)


_cache: dict[Path, Installed] = {}


def installed_package(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Build and install once per test run; later calls return the same environment."""
    base = tmp_path_factory.getbasetemp()
    if base not in _cache:
        _cache[base] = _build(tmp_path_factory.mktemp("installed"))
    return _cache[base]
