"""Every private livekit-agents name this package relies on, in one place.

livekit-agents 1.8.x exposes no public way to learn which speech a frame belongs to, that a
TTS failed mid-segment, or that an avatar sink cancelled a capture. The names below are
checked by ``tests/test_livekit_private.py``, which fails loudly when an upgrade renames or
removes one of them.
"""

from __future__ import annotations

from livekit.agents.llm import ChatChunk, LLMStream
from livekit.agents.voice import io as _io
from livekit.agents.voice.agent_activity import _SpeechHandleContextVar
from livekit.agents.voice.io import AudioOutput, PlaybackFinishedEvent
from livekit.agents.voice.speech_handle import SpeechHandle
from opentelemetry import context as otel_context

__all__ = [
    "HookedAudioOutput",
    "current_speech",
    "send_chat_chunk",
    "sink_behind_proxy",
    "speech_trace_context",
    "unhook_sink_proxy",
]


def current_speech() -> SpeechHandle | None:
    """Return the speech whose task is running, as livekit's speech context records it.

    It is set for the speech's tasks (``llm_node``, ``tts_node``, audio forwarding, realtime
    stream pulls), which is why it is right where ``session.current_speech`` is not
    (preemptive generation, a queued reply generating while another one plays).
    """
    return _SpeechHandleContextVar.get(None)


class HookedAudioOutput(AudioOutput):
    """An ``AudioOutput`` whose private livekit hooks are turned into overridable methods."""

    def _mark_input_truncated(self) -> None:
        # livekit calls this on the top output just before flush() when the TTS failed
        # mid-segment; it then counts the segment as partial.
        self._on_input_truncated()
        super()._mark_input_truncated()

    def _dispatch_playback_finished(self, ev: PlaybackFinishedEvent) -> None:
        # A capture cancelled before the sink accepted audio (avatar data streams) is
        # re-emitted by the base class without calling on_playback_finished().
        cancelled = isinstance(ev, _io._CaptureCancelledEvent)
        super()._dispatch_playback_finished(ev)
        if cancelled:
            self._on_capture_cancelled()

    def _on_input_truncated(self) -> None:
        """Called when the source of the segment being captured was cut short (TTS error)."""

    def _on_capture_cancelled(self) -> None:
        """Called when the sink cancelled the segment before it accepted any audio."""


def sink_behind_proxy(output: AudioOutput) -> AudioOutput | None:
    """Return the sink behind livekit's swap proxy, or None if ``output`` is no such proxy.

    A wrapper built over a sink with no ``next_in_chain`` gets livekit's ``_AudioSinkProxy``
    in between (so ``replace_audio_tail`` can swap the sink later). The sink returned is
    the one the proxy leads to now.
    """
    if not isinstance(output, _io._AudioSinkProxy):
        return None
    return output.next_in_chain


def unhook_sink_proxy(output: AudioOutput) -> None:
    """Make livekit's swap proxy stop listening to its sink.

    Once the wrapper above it is gone, the proxy would otherwise keep receiving (and
    warning about) playback events of segments nobody counted.
    """
    if not isinstance(output, _io._AudioSinkProxy):
        return
    sink = output.next_in_chain
    sink.off("playback_finished", output._dispatch_playback_finished)
    sink.off("playback_started", output._forward_next_playback_started)
    sink.off("playback_progressed", output._forward_next_playback_progressed)


def speech_trace_context(handle: SpeechHandle) -> otel_context.Context | None:
    """Return the OpenTelemetry context of the speech's open ``agent_turn`` span, if any.

    livekit opens one ``agent_turn`` span per speech while it generates and plays, and keeps
    its context on the handle; spans created under it land in the same trace and turn.
    """
    ctx = getattr(handle, "_agent_turn_context", None)
    return ctx if isinstance(ctx, otel_context.Context) else None


def send_chat_chunk(stream: LLMStream, chunk: ChatChunk) -> None:
    """Hand a chunk to livekit from ``LLMStream._run`` (how livekit's own plugins do it)."""
    stream._event_ch.send_nowait(chunk)
