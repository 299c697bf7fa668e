"""The distributions: what they hold, their metadata, and the wheel working on its own."""

from __future__ import annotations

import email.parser
import json
import re
import tarfile
import zipfile
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from .installed import ROOT, Installed, installed_package

REPOSITORY = "https://github.com/playback-hooks/playback-hooks"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The sdist, the wheel and a fresh environment with the wheel installed."""
    return installed_package(tmp_path_factory)


def _metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(zf.read(name).decode())


class TestSdist:
    """The sdist holds the package, its tests, docs and license, and nothing dev-only."""

    def test_contents(self, installed: Installed) -> None:
        with tarfile.open(installed.sdist) as tf:
            names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
        for wanted in (
            "LICENSE",
            "README.md",
            "pyproject.toml",
            "src/playback_hooks/__init__.py",
            "src/playback_hooks/py.typed",
            "tests/conftest.py",
            "docs/recipes/testing.md",
        ):
            assert wanted in names
        dev_only = [
            n for n in names if n.startswith((".ci/", ".github/", "benchmarks/", "scripts/"))
        ]
        assert dev_only == []
        # the benchmarks stay out, so does the test that imports them
        assert "tests/test_benchmarks_smoke.py" not in names


class TestWheel:
    """The wheel carries the license and the metadata a package index shows."""

    def test_license_file(self, installed: Installed) -> None:
        with zipfile.ZipFile(installed.wheel) as zf:
            (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
            text = zf.read(name).decode()
        assert text == (ROOT / "LICENSE").read_text(encoding="utf-8")
        assert "Apache License" in text and "Version 2.0, January 2004" in text
        assert "END OF TERMS AND CONDITIONS" in text

    def test_metadata(self, installed: Installed) -> None:
        meta = _metadata(installed.wheel)
        assert meta["Name"] == "playback-hooks"
        assert meta["License-Expression"] == "Apache-2.0"
        assert meta.get_all("License-File") == ["LICENSE"]
        urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
        assert urls == {
            "Homepage": REPOSITORY,
            "Documentation": f"{REPOSITORY}/blob/main/docs/index.md",
            "Issues": f"{REPOSITORY}/issues",
            "Changelog": f"{REPOSITORY}/blob/main/CHANGELOG.md",
        }

    def test_description_links_are_absolute(self, installed: Installed) -> None:
        # the README is the package index page: a relative link or image is broken there
        readme = _metadata(installed.wheel).get_payload()
        assert isinstance(readme, str)
        targets = re.findall(r"\]\(([^)\s]+)\)", readme)
        assert len(targets) >= 10
        assert [t for t in targets if not t.startswith("https://")] == []
        images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", readme)
        assert images == [
            "https://raw.githubusercontent.com/playback-hooks/playback-hooks/main/docs/img/timeline.svg"
        ]
        for target in targets:
            for prefix in (f"{REPOSITORY}/blob/main/", "https://raw.githubusercontent.com/"):
                if target.startswith(prefix):
                    path = target.removeprefix(prefix).removeprefix(
                        "playback-hooks/playback-hooks/main/"
                    )
                    assert (ROOT / path).is_file(), target

    @pytest.mark.parametrize("page", ["README.md", "docs/index.md"])
    def test_install_line_names_the_distribution(self, installed: Installed, page: str) -> None:
        text = (ROOT / page).read_text(encoding="utf-8")
        name = _metadata(installed.wheel)["Name"]
        assert f"pip install {name}\n" in text
        assert "the package you import is `playback_hooks`" in text


class TestInstalledWheel:
    """Installed in an environment of its own, the wheel imports and runs a real session."""

    def test_imports_from_the_environment(self, installed: Installed, tmp_path: Path) -> None:
        done = installed.run(
            "python",
            "-I",
            "-c",
            "import playback_hooks, playback_hooks.testing; print(playback_hooks.__file__)",
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr
        module = Path(done.stdout.strip())
        assert module.is_relative_to(installed.venv)
        assert module.parent.name == "playback_hooks"
        assert module.parent.parent.name == "site-packages"

    def test_one_offline_session(self, installed: Installed, tmp_path: Path) -> None:
        script = Path(__file__).with_name("installed_session.py")
        done = installed.run("python", "-I", script, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        assert Path(report["module"]).is_relative_to(installed.venv)
        assert Path(report["testing"]).is_relative_to(installed.venv)
        assert report["timeline"] == [["started", "greeting"], ["finished", "greeting"]]
        assert report["metadata"] == {"from": "wheel"}
        assert report["played"] == "full"
        assert report["sink_started_at"] == [report["started_at"]]
