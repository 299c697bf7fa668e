"""The package's one logger, and the guard around bookkeeping that runs in livekit's tasks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["LABEL", "guarded", "internal_error", "logger"]

LABEL = "playback_hooks"
"""The package's name where livekit shows it: its logger, and its outputs' ``label``."""

logger = logging.getLogger(LABEL)

_T = TypeVar("_T")


def guarded(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T | None:
    """Run a bookkeeping step that runs inside livekit's audio path or speech tasks.

    Whatever goes wrong in it is logged, never raised into livekit: the audio goes on.
    """
    try:
        return fn(*args, **kwargs)
    except Exception:
        internal_error(fn)
        return None


def internal_error(fn: Callable[..., Any]) -> None:
    """Log the exception being handled, raised by the bookkeeping step ``fn``.

    For the steps that run several times per message, where the guard is written out
    (``try: ... except Exception: internal_error(step)``) rather than through ``guarded()``.
    """
    step = getattr(fn, "__qualname__", repr(fn))
    logger.exception(
        "internal error in %s; playback events may be incomplete",
        step,
        extra={"playback_hooks.step": step},
    )
