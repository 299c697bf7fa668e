"""Per-message playback events for LiveKit Agents.

Tells application code the moment each assistant message's audio started playing to the
user, and how its playback ended, with the message's id and the app's metadata.
"""

from __future__ import annotations

from .events import MessagePlaybackFinished, MessagePlaybackStarted, Played, Source
from .markers import MessageBoundary, track_messages
from .signals import (
    disconnect,
    message_playback_finished,
    message_playback_started,
    on_message_finished,
    on_message_played,
)
from .tracing import SPAN_NAME, enable_tracing
from .tracker import PlaybackTracker, attach, tracker_for

__all__ = [
    "MessageBoundary",
    "MessagePlaybackFinished",
    "MessagePlaybackStarted",
    "PlaybackTracker",
    "Played",
    "SPAN_NAME",
    "Source",
    "attach",
    "disconnect",
    "enable_tracing",
    "message_playback_finished",
    "message_playback_started",
    "on_message_finished",
    "on_message_played",
    "track_messages",
    "tracker_for",
]

__version__ = "0.1.0"
