"""Sinks that misbehave the way real ones can, for the tests."""

from __future__ import annotations

from livekit import rtc

from playback_hooks.testing import SimulatedSink


class RefusingSink(SimulatedSink):
    """A sink whose capture_frame raises for the first frame of segment number ``refuse``."""

    def __init__(self, refuse: int) -> None:
        super().__init__()
        self.refuse = refuse
        self.first_frames = 0

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        if self._current is None:
            self.first_frames += 1
            if self.first_frames == self.refuse:
                raise RuntimeError("sink refused the frame")
        await super().capture_frame(frame)
