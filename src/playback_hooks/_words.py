"""The text output below livekit's transcription synchronizer: the words the user is shown.

livekit's ``TranscriptSynchronizer`` releases each word of a segment to the text output below
its own (RoomIO's transcription output) when the word's audio plays, then flushes that text
output once the segment is over. ``WordTap`` sits between the two, forwards every call
unchanged, and adds each word to the message whose segment is playing.

Which message: the one whose segment the sink last started, until the synchronizer flushes
the text output. livekit closes a segment's text (flush) before it lets the next segment's
first frame through (``capture_frame`` waits for the segment rotation), so a word is never
attributed across messages. A word released after the message's finished event (the word
in flight when the user cut in, or the words livekit shows at once after a full playout) is
still attributed to that message, whose events are over: it is in no event.
"""

from __future__ import annotations

import time

from livekit.agents.voice.io import TextOutput
from livekit.agents.voice.transcription import TranscriptSynchronizer

from ._ledger import Ledger, Message
from ._log import guarded

__all__ = ["WordTap"]

LABEL = "playback_hooks"


class WordTap(TextOutput):
    """Forwards every word and flush to ``below``; reports the words of followed messages."""

    def __init__(
        self, ledger: Ledger, synchronizer: TranscriptSynchronizer, below: TextOutput | None
    ) -> None:
        super().__init__(label=LABEL, next_in_chain=below)
        self._ledger = ledger
        self._synchronizer = synchronizer
        self._following: Message | None = None
        self._closed = False

    @property
    def synchronizer(self) -> TranscriptSynchronizer:
        """The synchronizer this tap listens below."""
        return self._synchronizer

    def follow(self, msg: Message | None) -> None:
        """The sink started ``msg``'s segment: the next words are its (None: nobody's)."""
        if self._closed:
            return
        playhead = None if msg is None else msg.playhead
        # only messages whose words are kept; with nobody listening, the per-word path stays
        # one attribute test
        self._following = msg if playhead is not None and playhead.heard_text is not None else None

    def close(self) -> None:
        """Report nothing more; keep forwarding (if livekit still holds this output)."""
        self._closed = True
        self._following = None

    async def capture_text(self, text: str) -> None:
        below = self.next_in_chain
        if below is not None:
            await below.capture_text(text)
        msg = self._following
        if msg is not None:
            guarded(self._shown, msg, text)

    def flush(self) -> None:
        # the synchronizer's segment is over: later words belong to the next one started
        self._following = None
        below = self.next_in_chain
        if below is not None:
            below.flush()

    def _shown(self, msg: Message, text: str) -> None:
        if not self._synchronizer.enabled:
            return  # a disabled synchronizer passes the LLM's text through, unpaced
        playhead = msg.playhead
        if playhead is None or playhead.heard_text is None or msg.finished is not None:
            return
        playhead.heard_text += str(text)
        self._ledger.progressed(msg, time.time())
