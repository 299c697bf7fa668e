"""The message model: a speech, its messages from announced to finished, and their events.

A message goes announced -> bound -> started -> finished, or -> skipped: ``Announced``
while it waits in its speech's queue (its id may still be unknown), then a ``Message``,
which always has its id, in the ``State`` the sink's reports put it in. ``_ledger`` and
``_order`` are the only code that changes them; the event-making methods here only read.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from livekit.agents.voice.speech_handle import SpeechHandle

from ._progress import Playhead
from .events import (
    MessagePlaybackFinished,
    MessagePlaybackProgressed,
    MessagePlaybackStarted,
    Played,
    Source,
)

__all__ = ["Announced", "Message", "Reporter", "Speech", "State"]


class Reporter(Protocol):
    """Where the events of a speech go: the tracker that admitted it, one method per kind."""

    def wants_progress(self) -> bool:
        """Whether a message whose audio begins now should have its progress followed."""

    def started(self, event: MessagePlaybackStarted) -> None:
        """A message started playing."""

    def progressed(self, event: MessagePlaybackProgressed) -> None:
        """A playing message played on."""

    def finished(self, event: MessagePlaybackFinished) -> None:
        """A message ended."""

    def speech_reported(self) -> None:
        """One of the reporter's speeches is over and every event of it is out."""


class State(enum.Enum):
    """Where a bound message is."""

    BOUND = "bound"  # its segment is forwarded to the sink
    STARTED = "started"  # the sink started playing it
    FINISHED = "finished"  # heard, in full or in part: its finished event is made
    SKIPPED = "skipped"  # never heard: its finished event is made


@dataclass(eq=False)
class Speech:
    """A speech being reported, with its messages waiting for a segment."""

    handle: SpeechHandle
    reporter: Reporter
    source: Source
    queue: deque[Announced] = field(default_factory=deque)
    next_index: int = 0
    label: tuple[str, Mapping[str, Any]] | None = None
    label_used: bool = False
    auto_named: bool = False  # a message of it already got an automatic id
    begun: bool = False  # livekit forwarded a segment of it
    unreleased: int = 0  # its messages in the playback order
    over: bool = False  # its handle is done and every message of it has ended


@dataclass(eq=False, slots=True)
class Announced:
    """A message queued for its speech's next segment."""

    index: int
    message_id: str | None  # None: named when it gets its segment (label or automatic id)
    metadata: Mapping[str, Any]
    source: Source
    has_segment: bool = True  # False once it is known no segment will carry it


@dataclass(eq=False, slots=True)
class Message:
    """A message whose segment was forwarded (or that was skipped), until its events are out.

    The output and the word tap hold it to name it in what they report.
    """

    speech: Speech
    index: int
    message_id: str
    metadata: Mapping[str, Any]
    source: Source
    state: State
    bound_at: float  # when its segment's first frame was handed over (time.time())
    playhead: Playhead | None = None  # None for a skipped message
    truncated: bool = False  # its source (the TTS) was cut short
    started_at: float | None = None
    started_at_estimated: bool = False
    # events made and not yet released (they leave in playback order)
    to_start: MessagePlaybackStarted | None = None
    to_finish: MessagePlaybackFinished | None = None
    started_out: bool = False  # its started event is released

    @property
    def followed(self) -> bool:
        """Whether its progress is followed (decided when its audio began)."""
        return self.playhead is not None and self.playhead.followed

    @property
    def words_kept(self) -> bool:
        """Whether the words shown of it are kept (for ``heard_text``)."""
        return self.playhead is not None and self.playhead.heard_text is not None

    @property
    def playing(self) -> bool:
        """Whether its started event is out and its finished event is not made."""
        return self.started_out and self.state is State.STARTED

    def started_event(self, started_at: float, *, estimated: bool) -> MessagePlaybackStarted:
        """Its started event, at ``started_at`` (an estimate or the sink's time)."""
        return MessagePlaybackStarted(
            message_id=self.message_id,
            speech_id=self.speech.handle.id,
            index=self.index,
            source=self.source,
            metadata=self.metadata,
            started_at=started_at,
            started_at_estimated=estimated,
        )

    def finished_event(
        self,
        played: Played,
        interrupted: bool | None,
        position: float,
        transcript: str | None,
        now: float,
    ) -> MessagePlaybackFinished:
        """Its finished event; ``interrupted=None`` (skipped): as its speech was."""
        return MessagePlaybackFinished(
            message_id=self.message_id,
            speech_id=self.speech.handle.id,
            index=self.index,
            source=self.source,
            metadata=self.metadata,
            played=played,
            interrupted=self.speech.handle.interrupted if interrupted is None else interrupted,
            playback_position=position,
            transcript=transcript,
            started_at=self.started_at,
            finished_at=now,
            started_at_estimated=self.started_at_estimated,
        )

    def progress_event(self, now: float) -> MessagePlaybackProgressed:
        """Its progress observed at ``now`` (its position never goes backwards)."""
        playhead = self.playhead
        return MessagePlaybackProgressed(
            message_id=self.message_id,
            speech_id=self.speech.handle.id,
            index=self.index,
            source=self.source,
            metadata=self.metadata,
            position=0.0 if playhead is None else playhead.position(now),
            heard_text=None if playhead is None else playhead.heard_text,
            paused=False if playhead is None else playhead.paused,
            at=now,
        )
