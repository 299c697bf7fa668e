"""Every private livekit-agents name this package relies on, in one place.

livekit-agents 1.8.x exposes no public way to learn which speech a frame belongs to, to put
an output on top of the chain without re-attaching the chain below, that a TTS failed
mid-segment, or that a remote sink cancelled a capture. Each name below says which releases
have it and what happens where one is missing. ``tests/test_livekit_private.py`` fails
loudly when an upgrade renames or removes one of them.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from livekit.agents import AgentSession
from livekit.agents.llm import ChatChunk, LLMStream
from livekit.agents.voice import agent_activity as _agent_activity
from livekit.agents.voice import io as _io
from livekit.agents.voice.avatar import DataStreamAudioOutput
from livekit.agents.voice.io import (
    AgentOutput,
    AudioOutput,
    PlaybackFinishedEvent,
)
from livekit.agents.voice.speech_handle import SpeechHandle
from livekit.agents.voice.transcription import synchronizer as _synchronizer
from opentelemetry import context as otel_context

__all__ = [
    "current_speech",
    "forward_input_truncated",
    "install_quietly",
    "is_capture_cancelled",
    "pass_cancelled_up",
    "reports_remote_starts",
    "send_chat_chunk",
    "session_started",
    "speech_context",
    "speech_trace_context",
]

# The speech whose task is running (1.8.0 - 1.8.9). Without it no segment could be bound to
# its speech; every supported release has it, so its absence is an import error, on purpose.
speech_context: ContextVar[SpeechHandle] = _agent_activity._SpeechHandleContextVar

# A capture a remote sink cancelled before accepting audio (avatars): 1.8.9. None in
# 1.8.0 - 1.8.8, which have no such event: there a remote sink reports such a segment
# like any other (finished, interrupted, position 0), and the message ends skipped.
_CaptureCancelledEvent: type[PlaybackFinishedEvent] | None = getattr(
    _io, "_CaptureCancelledEvent", None
)


def current_speech() -> SpeechHandle | None:
    """Return the speech whose task is running, as livekit's speech context records it.

    It is set for the speech's tasks (``llm_node``, ``tts_node``, audio forwarding, realtime
    stream pulls), which is why it is right where ``session.current_speech`` is not
    (preemptive generation, a queued reply generating while another one plays).
    """
    return speech_context.get(None)


def install_quietly(output: AgentOutput, audio: AudioOutput | None) -> None:
    """Make ``audio`` the session's audio output without re-attaching the chain below it.

    ``AgentOutput.audio``'s setter calls ``on_detached()`` on the old output and
    ``on_attached()`` on the new one, down the whole chain; livekit's transcription
    synchronizer reacts by rotating its segment, which cuts the transcript of a speech in
    flight. Assigning ``AgentOutput._audio_sink`` (1.8.0 - 1.8.9) swaps the top alone. It
    is safe at any moment: each step of a speech (its reply, then one per tool round) reads
    ``session.output.audio`` when the step starts and keeps that output to its end, so
    audio in flight stays on the output it started on; a later step of a speech created
    before the swap may go through the new top, which then passes it on unreported. The
    chain below stays attached as it was.
    """
    output._audio_sink = audio


def session_started(session: AgentSession[Any]) -> bool:
    """Whether ``session.start()`` has completed (``AgentSession._started``, 1.8.0 - 1.8.9)."""
    return bool(getattr(session, "_started", False))


def reports_remote_starts(top: AudioOutput) -> bool:
    """Whether the chain under ``top`` ends in livekit's ``DataStreamAudioOutput`` waiting
    for the avatar worker's ``lk.playback_started`` reports.

    ``DataStreamAudioOutput._wait_playback_start``: 1.8.0 - 1.8.9. Where missing, the output
    is taken not to wait (livekit then reports each start itself, when it pushes the first
    frame).
    """
    node: AudioOutput | None = top
    while node is not None:
        if isinstance(node, DataStreamAudioOutput):
            return bool(getattr(node, "_wait_playback_start", False))
        node = node.next_in_chain
    return False


def is_capture_cancelled(ev: PlaybackFinishedEvent) -> bool:
    """Whether ``ev`` reports a capture a remote sink cancelled before accepting audio."""
    return _CaptureCancelledEvent is not None and isinstance(ev, _CaptureCancelledEvent)


def pass_cancelled_up(output: AudioOutput, ev: PlaybackFinishedEvent) -> None:
    """Hand a cancelled capture up the way livekit's wrappers do (it counts as finished).

    ``AudioOutput._dispatch_playback_finished``: 1.8.9, the only release with cancelled
    captures, so never called on the others.
    """
    AudioOutput._dispatch_playback_finished(output, ev)


def forward_input_truncated(below: AudioOutput) -> None:
    """Tell ``below`` the segment about to be flushed was cut short by its source.

    ``AudioOutput._mark_input_truncated``: 1.8.6 - 1.8.9, which call it on the top output
    just before ``flush()`` when the TTS failed mid-segment and count the segment as
    partial. 1.8.0 - 1.8.5 never call it: there such a message ends as the sink reports it
    (usually ``"full"``, with the position of the audio that was synthesized).
    """
    forward = getattr(below, "_mark_input_truncated", None)
    if forward is not None:
        forward()


def speech_trace_context(handle: SpeechHandle) -> otel_context.Context | None:
    """Return the OpenTelemetry context of the speech's open ``agent_turn`` span, if any.

    livekit opens one ``agent_turn`` span per speech while it generates and plays, and keeps
    its context on the handle (``SpeechHandle._agent_turn_context``); spans created under
    it land in the same trace and turn (1.8.0 - 1.8.9). None where a release lacks it or
    the turn is over: the span's parent
    is then the context current when tracing was enabled.
    """
    ctx = getattr(handle, "_agent_turn_context", None)
    return ctx if isinstance(ctx, otel_context.Context) else None


def send_chat_chunk(stream: LLMStream, chunk: ChatChunk) -> None:
    """Hand a chunk to livekit from ``LLMStream._run`` (``LLMStream._event_ch``, 1.8.0 - 1.8.9).

    How livekit's own plugins do it; used by ``playback_hooks.testing.ScriptedLLM``.
    """
    stream._event_ch.send_nowait(chunk)


# -- for tests and benchmarks that drive a SpeechHandle by hand ------------------------------


def mark_scheduled(handle: SpeechHandle) -> None:
    """What livekit does when it schedules a speech (``SpeechHandle._mark_scheduled``)."""
    handle._mark_scheduled()


def mark_done(handle: SpeechHandle, *, interrupted: bool = False) -> None:
    """What livekit does when a speech ends (``_mark_done``; ``_interrupt_fut`` if cut off)."""
    if interrupted and not handle._interrupt_fut.done():
        handle._interrupt_fut.set_result(None)
    handle._mark_done()


def mark_input_truncated(output: AudioOutput) -> None:
    """What livekit does on the top output when the TTS failed mid-segment (1.8.6 - 1.8.9;
    the releases before do nothing then, and their outputs have no such method)."""
    forward_input_truncated(output)


# -- live progress: the words the transcription synchronizer shows ---------------------------
#
# livekit's TranscriptSynchronizer releases each word to the text output below its own when
# the word's audio plays. To see those words per message, a text output goes between the
# synchronizer's text output and the one below it. Where a release lacks one of the names
# below, no tap is installed and ``MessagePlaybackProgressed.heard_text`` is None; positions
# are unaffected.

# The synchronizer's audio output class and its ``_synchronizer`` attribute (1.8.0 - 1.8.9).
_SyncedAudioOutput: type[AudioOutput] | None = getattr(_synchronizer, "_SyncedAudioOutput", None)


def transcript_synchronizer(top: AudioOutput) -> _synchronizer.TranscriptSynchronizer | None:
    """The transcription synchronizer whose audio output is in the chain under ``top``."""
    if _SyncedAudioOutput is None:
        return None
    node: AudioOutput | None = top
    while node is not None:
        if isinstance(node, _SyncedAudioOutput):
            found = getattr(node, "_synchronizer", None)
            return found if isinstance(found, _synchronizer.TranscriptSynchronizer) else None
        node = node.next_in_chain
    return None


# ``TextOutput.next_in_chain`` is read-only; its value lives in the name-mangled attribute
# below (1.8.0 - 1.8.9). The synchronizer hands it to each segment's word forwarder when it
# creates the segment (``_SegmentSynchronizerImpl._next_in_chain``, read again for every word
# and for the segment's final flush; the current one is ``TranscriptSynchronizer._impl``).
_TEXT_NEXT = "_TextOutput__next_in_chain"


def text_tap_supported(synchronizer: _synchronizer.TranscriptSynchronizer) -> bool:
    """Whether this release lets a text output go under the synchronizer's text output."""
    impl = getattr(synchronizer, "_impl", None)
    return hasattr(synchronizer.text_output, _TEXT_NEXT) and hasattr(impl, "_next_in_chain")


def insert_text_tap(
    synchronizer: _synchronizer.TranscriptSynchronizer, tap: _io.TextOutput
) -> None:
    """Put ``tap`` (whose ``next_in_chain`` is the synchronizer's text output's) under it.

    Nothing is re-attached: the segment showing keeps its words and its flush, which go
    through ``tap`` from the next word on.
    """
    text_output = synchronizer.text_output
    below = text_output.next_in_chain
    setattr(text_output, _TEXT_NEXT, tap)
    impl = synchronizer._impl
    if impl._next_in_chain is below:
        impl._next_in_chain = tap


def remove_text_tap(
    synchronizer: _synchronizer.TranscriptSynchronizer, tap: _io.TextOutput
) -> bool:
    """Take ``tap`` out again if it is still right under the synchronizer's text output."""
    text_output = synchronizer.text_output
    if text_output.next_in_chain is not tap:
        return False
    setattr(text_output, _TEXT_NEXT, tap.next_in_chain)
    impl = synchronizer._impl
    if impl._next_in_chain is tap:
        impl._next_in_chain = tap.next_in_chain
    return True
