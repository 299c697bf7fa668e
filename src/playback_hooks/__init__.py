"""Per-message playback events for LiveKit Agents.

Tells application code the moment each assistant message's audio started playing to the
user, how much of it has been heard while it plays, and how its playback ended, with the
message's id and the app's metadata.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from .events import (
    Event,
    MessagePlaybackFinished,
    MessagePlaybackProgressed,
    MessagePlaybackStarted,
    Played,
    Source,
)
from .markers import MessageBoundary, track_messages
from .signals import (
    disconnect,
    message_playback_finished,
    message_playback_progressed,
    message_playback_started,
    on_message_finished,
    on_message_played,
    on_message_progress,
)
from .tracing import SPAN_NAME, enable_tracing
from .tracker import MessageNotPlayed, PlaybackTracker, TrackerStats, attach, tracker_for

__all__ = [
    "Event",
    "MessageBoundary",
    "MessageNotPlayed",
    "MessagePlaybackFinished",
    "MessagePlaybackProgressed",
    "MessagePlaybackStarted",
    "PlaybackTracker",
    "Played",
    "SPAN_NAME",
    "Source",
    "TrackerStats",
    "attach",
    "disconnect",
    "enable_tracing",
    "message_playback_finished",
    "message_playback_progressed",
    "message_playback_started",
    "on_message_finished",
    "on_message_played",
    "on_message_progress",
    "track_messages",
    "tracker_for",
]

try:
    __version__ = _metadata.version("playback-hooks")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
