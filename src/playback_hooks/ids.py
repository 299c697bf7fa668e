"""Validation of message ids and metadata, and the automatic id format."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

AUTO_ID_PREFIX = "auto/"


def auto_message_id(speech_id: str, index: int) -> str:
    """Return the automatic id of the ``index``-th message of a speech."""
    return f"{AUTO_ID_PREFIX}{speech_id}/{index}"


def check_message_id(value: object, where: str, name: str) -> str:
    """Return ``value`` if it is a usable message id, else raise naming ``where``/``name``."""
    if not isinstance(value, str):
        raise TypeError(f"{where}: {name} must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{where}: {name} must not be empty")
    if value.startswith(AUTO_ID_PREFIX):
        raise ValueError(
            f"{where}: {name} must not start with {AUTO_ID_PREFIX!r}, "
            "which is reserved for automatic ids"
        )
    return value


def check_metadata(value: object, where: str) -> Mapping[str, Any]:
    """Return ``value`` (or an empty mapping for None) if it is a mapping, else raise."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{where}: metadata must be a mapping, got {type(value).__name__}")
    return value
