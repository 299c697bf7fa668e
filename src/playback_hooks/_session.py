"""What the package keeps per ``AgentSession``, shared by the trackers attached one after
another: the ledger, the delivery queue and the output on top of the chain.

Sharing them is what keeps each speech's report independent of when a tracker is attached
or detached: one ledger puts every message of the session in one playback order, whichever
tracker reports it; one delivery queue hands the events out in that order; one output
serves every speech that reads the chain, and each of its segments goes to the tracker
that admitted its speech (or to none).

When the output goes on and comes off: livekit reads ``session.output.audio`` when each
step of a speech starts and keeps that output for the step. So the output goes on top of
the chain when a tracker is attached and a speech is created (or at ``attach()`` once the
session has started), and stays there while any tracker is attached or still reporting
speeches in flight: a reported speech created just before ``detach()`` may read the chain
later. It comes off the top once no tracker is left, and is never unlinked from the chain
below: a speech that read it keeps forwarding through it, and the sink's reports reach
livekit through it, whatever the trackers do.

The state lives while a tracker is attached or still reporting: the last tracker to close
lets it go, and a tracker attached after that starts a new one. (Were it kept until the
session is collected, the session never would be: the state reaches the session, through
the output and the sink below it, so its registry entry would keep its own key alive.)
The output outlives the state: it stays linked below (and, if the app has put an output of
its own above it, in the chain), and the next state takes it over, found through a weak
reference (the chain keeps it alive while it is in it). So one output follows the sink's
segments for the whole session: the sink reports its segments in order, and an output that
had not seen the older ones would take their reports for its own segments'.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from livekit.agents import AgentSession
from livekit.agents.voice.io import AudioOutput

from . import _livekit
from ._dispatch import Delivery
from ._ledger import Ledger
from ._log import logger
from ._outputs import TrackingOutput

__all__ = ["SessionPlayback", "playback_for"]


class SessionPlayback:
    """One session's ledger, delivery queue and output; see the module docstring."""

    # It holds no reference to its session (the registry below is keyed by it weakly): the
    # trackers pass theirs.

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ledger = Ledger()
        self.delivery = Delivery(loop)
        self._output: TrackingOutput | None = None  # the latest one put on top
        self._attached = 0  # trackers attached (one at most)
        self._open = 0  # trackers attached, or detached and still reporting

    @property
    def output(self) -> TrackingOutput | None:
        """The output put on top of the chain last (it may have been replaced since)."""
        return self._output

    def tracker_attached(self) -> None:
        """A tracker was attached."""
        self._attached += 1
        self._open += 1

    def tracker_detached(self) -> None:
        """A tracker was detached: with none attached, no progress is followed any more,
        so the word tap leaves livekit's text chain."""
        self._attached -= 1
        if self._attached == 0 and self._output is not None:
            self._output.remove_word_tap()

    def tracker_closed(self, session: AgentSession[Any]) -> None:
        """A tracker finished reporting; the last one takes the output off the top and lets
        the session's state go (a tracker attached later starts a new one)."""
        self._open -= 1
        if self._open:
            return
        output = self._output
        if output is not None and session.output.audio is output:
            _livekit.install_quietly(session.output, output.below)
        if _playbacks.get(session) is self:
            # kept, it would keep the session alive (see the module docstring): through the
            # output, the sink below it, the sink's tasks and their context, livekit's agent
            # activity
            del _playbacks[session]
            if output is not None:
                _left[session] = weakref.ref(output)

    def take_over(self, output: TrackingOutput) -> None:
        """Serve the session through ``output``, left by the session's previous state."""
        output.report_to(self.ledger)
        self._output = output

    def install(self, session: AgentSession[Any]) -> None:
        """Put the output on top of the session's chain, unless it is in the chain already."""
        top = session.output.audio
        output = self._output
        if top is None or (output is not None and _in_chain(top, output)):
            return
        if output is not None and top is output.below:
            # back on the chain it was taken off: the same output, still linked below
            _livekit.install_quietly(session.output, output)
            return
        if output is not None:
            logger.info(
                "session.output.audio was replaced after attach(); tracking the new output",
                extra={"playback_hooks.audio_output": repr(top)},
            )
            output.remove_word_tap()
        self._output = TrackingOutput(self.ledger, top)
        _livekit.install_quietly(session.output, self._output)


def _in_chain(top: AudioOutput, output: AudioOutput) -> bool:
    node: AudioOutput | None = top
    while node is not None:
        if node is output:
            return True
        node = node.next_in_chain
    return False


_playbacks: weakref.WeakKeyDictionary[AgentSession[Any], SessionPlayback] = (
    weakref.WeakKeyDictionary()
)


# The output of a session whose state was let go, for the next state to take over (weakly:
# an output in no chain any more has nothing to follow).
_left: weakref.WeakKeyDictionary[AgentSession[Any], weakref.ref[TrackingOutput]] = (
    weakref.WeakKeyDictionary()
)


def playback_for(session: AgentSession[Any], loop: asyncio.AbstractEventLoop) -> SessionPlayback:
    """The session's shared state, made when a tracker is attached and none is left."""
    playback = _playbacks.get(session)
    if playback is None or playback.loop is not loop:
        playback = _playbacks[session] = SessionPlayback(loop)
        left = _left.pop(session, None)
        output = None if left is None else left()
        top = session.output.audio
        # unless the app has replaced the chain meanwhile: the output follows the old one
        if (
            output is not None
            and top is not None
            and (top is output.below or _in_chain(top, output))
        ):
            playback.take_over(output)
    return playback
