"""The testing recipe in the docs runs as written."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import playback_hooks as ph

from .agents import ScriptAgent

RECIPE = Path(__file__).resolve().parent.parent / "docs" / "recipes" / "testing.md"


class TestTestingRecipe:
    """The example test of docs/recipes/testing.md passes against a real session."""

    async def test_recipe_example_passes(self) -> None:
        match = re.search(r"```python\n(.*?)```", RECIPE.read_text(encoding="utf-8"), re.S)
        assert match is not None
        namespace: dict[str, Any] = {
            "MyAgent": lambda: ScriptAgent(
                [
                    ph.MessageBoundary("ack"),
                    "Sure, one moment.",
                    ph.MessageBoundary("answer"),
                    "Here is a long answer that the user cuts off in the middle.",
                ]
            )
        }
        exec(compile(match.group(1), str(RECIPE), "exec"), namespace)
        tests = [v for k, v in namespace.items() if k.startswith("test_")]
        assert len(tests) == 1
        test: Callable[[], Awaitable[None]] = tests[0]
        await test()
