"""Listeners on livekit's event emitters that cost its ``emit()`` as little as possible.

livekit's ``EventEmitter.emit()`` calls ``inspect.signature()`` on every listener for every
event it emits, to pass only as many arguments as the listener takes: several microseconds
for a bound method or a closure, about one for a function that carries its signature. Every
listener the package registers on a livekit emitter goes through ``listener()``.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Any

__all__ = ["listener"]

_ONE_EVENT = inspect.Signature([inspect.Parameter("ev", inspect.Parameter.POSITIONAL_ONLY)])


def listener(fn: Callable[[Any], None]) -> Callable[[Any], None]:
    """Return a function calling ``fn`` with the event, its signature precomputed for livekit.

    A plain function is returned itself; anything else (a bound method) is wrapped in one.
    """
    function: Any = fn
    if not isinstance(fn, types.FunctionType):

        def function(ev: Any, /) -> None:
            fn(ev)

    function.__signature__ = _ONE_EVENT
    return function  # type: ignore[no-any-return]
