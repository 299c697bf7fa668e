"""What the application passes in, checked once per concept: ids, metadata, seconds, speeches.

Each check raises at the call the application made, naming the call and the argument: a
``TypeError`` for a value of the wrong type, a ``ValueError`` for a value of the right type
that cannot be used (an empty id, a negative number of seconds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from livekit.agents import AgentSession
from livekit.agents.voice.speech_handle import SpeechHandle

__all__ = [
    "AUTO_ID_PREFIX",
    "auto_message_id",
    "check_message_id",
    "check_metadata",
    "check_seconds",
    "check_session",
    "check_speech",
]

AUTO_ID_PREFIX = "auto/"


def auto_message_id(speech_id: str, index: int) -> str:
    """Return the automatic id of the ``index``-th message of a speech."""
    return f"{AUTO_ID_PREFIX}{speech_id}/{index}"


def check_message_id(value: object, where: str, name: str, *, given: bool) -> str:
    """Return ``value`` if it is a usable message id, else raise naming ``where``/``name``.

    ``given=True`` for an id the application gives a message (a marker, a label), which must
    not use the prefix of automatic ids; ``False`` for an id it looks for (a filter,
    ``wait_for()``), which may be an automatic id it got from an event.
    """
    if not isinstance(value, str):
        raise TypeError(f"{where}: {name} must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{where}: {name} must not be empty")
    if given and value.startswith(AUTO_ID_PREFIX):
        raise ValueError(
            f"{where}: {name} must not start with {AUTO_ID_PREFIX!r}, "
            "which is reserved for automatic ids"
        )
    return value


def check_metadata(value: object, where: str) -> Mapping[str, Any]:
    """Return a read-only copy of ``value`` (empty for None) if it is a mapping, else raise."""
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise TypeError(f"{where}: metadata must be a mapping, got {type(value).__name__}")
    return MappingProxyType(dict(value))


def check_seconds(value: object, where: str, name: str, *, zero: bool) -> float:
    """Return ``value`` if it is a number of seconds: > 0, or >= 0 with ``zero=True``.

    An interval must be finite; a timeout may be infinite (it then never expires).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{where}: {name} must be a number of seconds or None, got {type(value).__name__}"
        )
    if math.isnan(value) or value < 0 or (not zero and (value == 0 or math.isinf(value))):
        limit = ">= 0" if zero else "> 0 and finite"
        raise ValueError(f"{where}: {name} must be {limit} seconds, got {value!r}")
    return float(value)


def check_speech(value: object, where: str, name: str) -> SpeechHandle:
    """Return ``value`` if it is a ``SpeechHandle``, else raise ``TypeError``."""
    if not isinstance(value, SpeechHandle):
        raise TypeError(f"{where}: {name} must be a SpeechHandle, got {type(value).__name__}")
    return value


def check_session(value: object, where: str) -> AgentSession[Any]:
    """Return ``value`` if it is an ``AgentSession``, else raise ``TypeError``."""
    if not isinstance(value, AgentSession):
        raise TypeError(f"{where}: session must be an AgentSession, got {type(value).__name__}")
    return value
