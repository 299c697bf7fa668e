"""The event payloads: a message started playing, played on, and ended."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "EMPTY_METADATA",
    "Event",
    "MessagePlaybackFinished",
    "MessagePlaybackProgressed",
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
            frame, on the ``time.time()`` clock; an estimate when ``started_at_estimated``.
        started_at_estimated: True when the sink never reported the start of the message's
            audio but reported it played (some remote sinks lose that report): the message
            was heard, and ``started_at`` is then the sink's end of playback minus the
            position it reported, never earlier than the moment its first frame was handed
            over. False (the sink's own time) otherwise.
    """

    message_id: str
    speech_id: str
    index: int
    source: Source
    metadata: Mapping[str, Any]
    started_at: float
    started_at_estimated: bool = False


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
        started_at_estimated: The ``started_at_estimated`` of the started event (False if
            it never started).
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
    started_at_estimated: bool = False


@dataclass(frozen=True, slots=True)
class MessagePlaybackProgressed:
    """How much of a message the user has heard so far, while it plays.

    Sent between the message's started and finished events: when livekit's transcription
    synchronizer shows a new word of it, when the sink reports a played run, when the output
    is paused or resumed, and every ``progress_interval`` seconds if ``attach()`` was given
    one. ``position`` and ``heard_text`` never go backwards within a message.
    ``PlaybackTracker.now_playing()`` returns the same shape, for the message playing now.

    Attributes:
        message_id: Same as ``MessagePlaybackStarted.message_id``.
        speech_id: Same as ``MessagePlaybackStarted.speech_id``.
        index: Same as ``MessagePlaybackStarted.index``.
        source: Same as ``MessagePlaybackStarted.source``.
        metadata: Same as ``MessagePlaybackStarted.metadata``.
        position: Seconds of *this* message heard so far, paused time and audio the sink
            discarded left out: the runs the sink reported as played, plus the time since
            the last of them (or since the start), not paused. An estimate between two
            reports of the sink; see "Live progress" in the docs for the exact rule.
        heard_text: The words of this message the user has been shown so far, exactly as
            livekit's transcription synchronizer released them to the transcription output;
            None when no synchronizer is in the output chain (or the message began playing
            while nothing asked for progress). It can be one word ahead of the finished
            event's ``transcript``: livekit shows a word half-way through its time and counts
            it as heard only at the end.
        paused: Whether the output is paused (a false interruption) at ``at``.
        at: When this was observed, on the ``time.time()`` clock.
    """

    message_id: str
    speech_id: str
    index: int
    source: Source
    metadata: Mapping[str, Any]
    position: float
    heard_text: str | None
    paused: bool
    at: float


Event = MessagePlaybackStarted | MessagePlaybackFinished | MessagePlaybackProgressed
"""Any event the signals send."""
