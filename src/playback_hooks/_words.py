"""The text output below livekit's transcription synchronizer: the words the user is shown.

livekit's ``TranscriptSynchronizer`` releases each word of a segment to the text output below
its own (RoomIO's transcription output) when the word's audio plays, then flushes that text
output once the segment is over. ``WordTap`` sits between the two, forwards every call
unchanged, and reports each word shown of the message whose segment is playing.

Which message: the one whose segment the sink last started, until the synchronizer flushes
the text output. livekit closes a segment's text (flush) before it lets the next segment's
first frame through (``capture_frame`` waits for the segment rotation), so a word is never
attributed across messages. A word released after the message's finished event (the word
in flight when the user cut in, or the words livekit shows at once after a full playout) is
in no event.
"""

from __future__ import annotations

import time

from livekit.agents.voice.io import TextOutput
from livekit.agents.voice.transcription import TranscriptSynchronizer

from ._log import LABEL, guarded
from ._messages import Message
from ._order import PlaybackOrder

__all__ = ["WordTap"]


class WordTap(TextOutput):
    """Forwards every word and flush to the text output it was put above; reports the words
    of followed messages to the playback order."""

    def __init__(self, order: PlaybackOrder, synchronizer: TranscriptSynchronizer) -> None:
        super().__init__(label=LABEL, next_in_chain=synchronizer.text_output.next_in_chain)
        self._order = order
        self._synchronizer = synchronizer
        self._shown_for: Message | None = None  # the message whose words are being shown
        self._reporting = True

    @property
    def synchronizer(self) -> TranscriptSynchronizer:
        """The synchronizer this tap listens below."""
        return self._synchronizer

    def follow(self, msg: Message | None) -> None:
        """The sink started ``msg``'s segment: the next words are its (None: nobody's)."""
        if self._reporting:
            # only messages whose words are kept: with nobody listening, the per-word path
            # stays one attribute test
            self._shown_for = msg if msg is not None and msg.words_kept else None

    def close(self) -> None:
        """Report nothing more; keep forwarding (if livekit still holds this output)."""
        self._reporting = False
        self._shown_for = None

    async def capture_text(self, text: str) -> None:
        below = self.next_in_chain
        if below is not None:
            await below.capture_text(text)
        msg = self._shown_for
        if msg is not None and self._synchronizer.enabled:
            # (a disabled synchronizer passes the LLM's text through, unpaced: not shown words)
            guarded(self._order.word_shown, msg, str(text), time.time())

    def flush(self) -> None:
        # the synchronizer's segment is over: later words belong to the next one started
        self._shown_for = None
        below = self.next_in_chain
        if below is not None:
            below.flush()
