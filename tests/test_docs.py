"""The docs: the testing recipe runs as printed, with nothing but the installed package; the
API reference documents every public name in a form it can render."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest
from blinker import Signal

import playback_hooks as ph
import playback_hooks.testing as ph_testing

from .installed import RECIPE_REQUIREMENTS, ROOT, Installed, installed_package

RECIPE = ROOT / "docs" / "recipes" / "testing.md"
API = ROOT / "docs" / "reference" / "api.md"
CODE_WIDTH = 76

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

    def test_code_fits_the_page(self) -> None:
        # the site's code column shows 76 characters at 1280 px: a reader copying the
        # recipe should not have to scroll sideways to see the end of a line
        wide = [
            line
            for _, _, code in _blocks(RECIPE.read_text(encoding="utf-8"))
            for line in code.splitlines()
            if len(line) > CODE_WIDTH
        ]
        assert wide == []

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


class TestApiReference:
    """Every public name has an entry; the signals' entries are written out, not rendered."""

    def test_every_public_name_has_an_entry(self) -> None:
        text = API.read_text(encoding="utf-8")
        rendered = set(re.findall(r"^::: playback_hooks\.(\w+)$", text, re.M))
        by_hand = set(re.findall(r"^## \w+ \{#playback_hooks\.(\w+)\}$", text, re.M))
        signals = {name for name in ph.__all__ if isinstance(getattr(ph, name), Signal)}
        assert {"message_playback_started", "message_playback_finished"} <= signals
        # mkdocstrings shows a Signal as the source that built it: write those by hand
        assert by_hand == signals
        assert rendered == set(ph.__all__) - signals

    @pytest.mark.parametrize("module", [ph, ph_testing], ids=lambda m: m.__name__)
    def test_docstrings_are_markdown(self, module: ModuleType) -> None:
        # the reference renders docstrings as Markdown: a reST "::" would be printed as is
        objects: list[object] = [module]
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            objects.append(obj)
            if inspect.isclass(obj):
                objects += [m for n, m in vars(obj).items() if not n.startswith("_")]
        offenders = [
            repr(obj) for obj in objects if re.search(r"::$", inspect.getdoc(obj) or "", re.M)
        ]
        assert offenders == []
