"""The testing recipe in the docs runs as printed, with nothing but the installed package."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .installed import RECIPE_REQUIREMENTS, ROOT, Installed, installed_package

RECIPE = ROOT / "docs" / "recipes" / "testing.md"

FENCE = re.compile(r"^```(\w+)(?: title=\"([^\"]+)\")?\n(.*?)^```$", re.S | re.M)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel installed in a fresh environment, with what the recipe asks for."""
    return installed_package(tmp_path_factory)


def _blocks(text: str) -> list[tuple[str, str | None, str]]:
    """Every fenced code block: (language, title, code)."""
    return [(m.group(1), m.group(2), m.group(3)) for m in FENCE.finditer(text)]


class TestTestingRecipe:
    """docs/recipes/testing.md is a complete project: its files, as printed, pass pytest."""

    def test_every_block_is_a_file_or_a_command(self) -> None:
        blocks = _blocks(RECIPE.read_text(encoding="utf-8"))
        files = [title for _, title, _ in blocks if title]
        assert files == ["pyproject.toml", "my_agent.py", "conftest.py", "test_my_agent.py"]
        commands = [code.strip() for lang, title, code in blocks if not title]
        assert all(lang == "bash" for lang, title, _ in blocks if not title)
        # the install line names exactly what the fresh environment gets beside the wheel
        assert commands == [f"pip install playback-hooks {' '.join(RECIPE_REQUIREMENTS)}", "pytest"]

    def test_passes_as_printed(self, installed: Installed, tmp_path: Path) -> None:
        project = tmp_path / "project"
        project.mkdir()
        for _, title, code in _blocks(RECIPE.read_text(encoding="utf-8")):
            if title:
                (project / title).write_text(code, encoding="utf-8")
        done = installed.run("pytest", cwd=project, timeout=120)
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        # one test, no warnings: a reader copying the recipe sees a clean run
        assert re.search(r"^=+ 1 passed in [\d.]+s", done.stdout, re.M), output
        assert "rootdir: " + str(project) in done.stdout
