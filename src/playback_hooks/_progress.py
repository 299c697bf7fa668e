"""Where one message's play head is, estimated between the sink's reports, and the words shown.

livekit's sinks report a played run only when playback stops (RoomIO's participant output:
at a pause, a buffer underrun, a clear and the end of playout; a sink proxy when its sink is
swapped), never periodically, and a bare sink may report none at all. So the position of a
message that is playing is::

    position(t) = played + clock(t), never below the last value observed

- ``played``: the sum of the durations of the runs the sink reported for the message's
  segment (a run's ``offset`` is not added: audio the sink discarded is skipped there).
- ``clock(t)``: seconds from the last known play point to ``t`` that were not paused. The
  last known play point is the sink's ``started_at`` at first, then, at each run reported,
  the later of that run's end and the moment it was reported (a run ends where playback
  stopped; it goes on, at the earliest, once the stop is reported: for RoomIO's underrun
  report, that is when the next frame arrives). Paused time is the time between the
  output's ``pause()`` and ``resume()``. An interruption (``clear_buffer()``) stops the
  clock for good.

The runs are fed in only for a message whose progress is followed (the output listens to
the sink's reports only then); for any other, ``position`` is the clock from the start.

Nothing caps the clock at the audio handed to the sink: counting it would put the tracker
in the path of every frame. If the TTS falls behind real time mid-message, the estimate
runs ahead of the audio until the sink reports the stall (RoomIO's output does when the
next frame arrives), then holds until playback catches up.
"""

from __future__ import annotations

__all__ = ["Playhead"]


class Playhead:
    """The live position of one segment's audio, and the text shown of it so far.

    Attributes:
        followed: Progress events are wanted for this message (decided when its first frame
            was forwarded); only then are its words kept.
        heard_text: The words shown so far, None when words are not followed.
    """

    __slots__ = (
        "_anchor",
        "_last",
        "_paused_at",
        "_pauses",
        "_played",
        "_started_at",
        "_stopped_at",
        "followed",
        "heard_text",
    )

    def __init__(self, *, followed: bool, keep_words: bool, paused_at: float | None) -> None:
        self.followed = followed
        self.heard_text: str | None = "" if keep_words else None
        self._started_at: float | None = None
        self._anchor = 0.0
        self._played = 0.0
        self._pauses: list[tuple[float, float]] = []  # closed pauses after the anchor
        self._paused_at = paused_at  # start of the pause in course, if any
        self._stopped_at: float | None = None
        self._last = 0.0

    @property
    def paused(self) -> bool:
        """Whether the output is paused."""
        return self._paused_at is not None

    def started(self, started_at: float) -> None:
        """The sink started playing the segment at ``started_at``."""
        if self._started_at is None:
            self._started_at = self._anchor = started_at

    def run_played(self, started_at: float, duration: float, now: float) -> None:
        """The sink reports a run of ``duration`` seconds that began at ``started_at``."""
        if duration <= 0:
            return
        self._played += duration
        if self._started_at is None:
            self._started_at = started_at
        self._anchor = anchor = max(self._anchor, started_at + duration, now)
        if self._pauses:
            # pauses over before the new anchor no longer count
            self._pauses = [p for p in self._pauses if p[1] > anchor]

    def pause(self, now: float) -> None:
        """The output was paused (idempotent: the first call counts)."""
        if self._paused_at is None:
            self._paused_at = now

    def resume(self, now: float) -> None:
        """The output was resumed (a call while not paused does nothing)."""
        if self._paused_at is not None:
            self._pauses.append((self._paused_at, now))
            self._paused_at = None

    def stop(self, now: float) -> None:
        """The segment was cleared (an interruption): it plays no further."""
        if self._stopped_at is None:
            self._stopped_at = now

    def position(self, now: float) -> float:
        """Seconds heard at ``now``; never less than at an earlier call."""
        if self._started_at is None:
            return self._last
        end = now if self._stopped_at is None else min(now, self._stopped_at)
        clock = max(0.0, end - self._anchor - self._paused_between(self._anchor, end))
        position = self._played + clock
        if position > self._last:
            self._last = position
        return self._last

    def _paused_between(self, start: float, end: float) -> float:
        paused = 0.0
        for p_start, p_end in self._pauses:
            paused += max(0.0, min(p_end, end) - max(p_start, start))
        if self._paused_at is not None:
            paused += max(0.0, end - max(self._paused_at, start))
        return paused
