"""The event payloads: a message started playing, a message's playback ended."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "EMPTY_METADATA",
    "Event",
    "MessagePlaybackFinished",
    "MessagePlaybackStarted",
    "Played",
    "Source",
]

Source = Literal["llm", "realtime", "say"]
"""Where a message came from: an ``llm_node`` segment, a realtime item, or ``say()``."""

Played = Literal["full", "partial", "skipped"]
"""How much of a message the user heard: all of it, the start of it, or none of it."""

EMPTY_METADATA: Mapping[str, Any] = MappingProxyType({})
"""The metadata of a message the application gave none."""


@dataclass(frozen=True, slots=True)
class MessagePlaybackStarted:
    """The first frame of a message reached the audio sink: the user starts hearing it.

    Attributes:
        message_id: The ``MessageBoundary`` id, the realtime item id (equal to the
            ``ChatMessage.id`` livekit records later), the id given to
            ``PlaybackTracker.label()``, or an automatic id.
        speech_id: The ``SpeechHandle.id`` of the speech the message belongs to.
        index: 0-based position of the message within its speech, skipped ones included.
        source: ``"llm"``, ``"realtime"`` or ``"say"``.
        metadata: The read-only metadata the application attached (empty when none).
        started_at: The sink's own ``playback_started.created_at`` for the message's first
            frame, on the ``time.time()`` clock.
    """

    message_id: str
    speech_id: str
    index: int
    source: Source
    metadata: Mapping[str, Any]
    started_at: float


@dataclass(frozen=True, slots=True)
class MessagePlaybackFinished:
    """A message's playback ended: played in full, cut off, or never heard.

    Attributes:
        message_id: Same as ``MessagePlaybackStarted.message_id``.
        speech_id: Same as ``MessagePlaybackStarted.speech_id``.
        index: Same as ``MessagePlaybackStarted.index``.
        source: Same as ``MessagePlaybackStarted.source``.
        metadata: Same as ``MessagePlaybackStarted.metadata``.
        played: ``"full"``, ``"partial"`` (playback began, then was cut short) or
            ``"skipped"`` (none of its audio reached the sink).
        interrupted: Whether the user (or the app) interrupted it. ``"full"`` implies
            False; ``"partial"`` implies True unless the TTS failed mid-message; for
            ``"skipped"`` it follows the speech.
        playback_position: Seconds of *this* message that played (0 when skipped).
        transcript: The transcript synchronized with playback when the output chain
            provides one (e.g. livekit's transcription synchronizer), else None.
        started_at: The ``started_at`` of the started event, None if it never started.
        finished_at: When the sink reported the end of the message (``time.time()``).
    """

    message_id: str
    speech_id: str
    index: int
    source: Source
    metadata: Mapping[str, Any]
    played: Played
    interrupted: bool
    playback_position: float
    transcript: str | None
    started_at: float | None
    finished_at: float


Event = MessagePlaybackStarted | MessagePlaybackFinished
"""Any event the signals send."""
