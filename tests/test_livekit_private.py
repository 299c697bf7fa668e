"""Fails loudly if livekit-agents renames or removes a private name this package uses.

Every private livekit name the package touches is in ``playback_hooks._livekit``; this test
checks each of them against the installed livekit-agents.
"""

from __future__ import annotations

import contextvars
import inspect

from livekit.agents.llm import LLMStream
from livekit.agents.llm.llm import _LLMEventChannel
from livekit.agents.voice import agent_activity, io
from livekit.agents.voice.speech_handle import SpeechHandle

from playback_hooks import _livekit


class TestPrivateNames:
    """Each private livekit name used by playback_hooks._livekit still exists as expected."""

    async def test_speech_context_variable(self) -> None:
        var = agent_activity._SpeechHandleContextVar
        assert isinstance(var, contextvars.ContextVar)
        assert var.get(None) is None
        assert _livekit.current_speech() is None
        handle = SpeechHandle.create()
        token = var.set(handle)
        try:
            assert _livekit.current_speech() is handle
        finally:
            var.reset(token)

    def test_audio_output_hooks(self) -> None:
        for name in (
            "_mark_input_truncated",
            "_dispatch_playback_finished",
            "_forward_next_playback_started",
            "_forward_next_playback_progressed",
        ):
            assert callable(getattr(io.AudioOutput, name, None)), name
        assert list(inspect.signature(io.AudioOutput._mark_input_truncated).parameters) == ["self"]
        assert list(inspect.signature(io.AudioOutput._dispatch_playback_finished).parameters) == [
            "self",
            "ev",
        ]

    async def test_speech_trace_context(self) -> None:
        handle = SpeechHandle.create()
        assert "_agent_turn_context" in vars(handle)
        assert _livekit.speech_trace_context(handle) is None

    def test_llm_stream_event_channel(self) -> None:
        # the channel an LLMStream._run hands its chunks to
        assert "_event_ch" in inspect.getsource(LLMStream.__init__)
        assert "send_nowait" in dir(_LLMEventChannel)

    def test_capture_cancelled_event(self) -> None:
        assert issubclass(io._CaptureCancelledEvent, io.PlaybackFinishedEvent)

    def test_sink_proxy(self) -> None:
        assert issubclass(io._AudioSinkProxy, io.AudioOutput)
        assert "set_next_in_chain" in vars(io._AudioSinkProxy)

    def test_hooked_output_overrides_exist_in_base(self) -> None:
        # the overrides in HookedAudioOutput must shadow real base methods
        for name in ("_mark_input_truncated", "_dispatch_playback_finished"):
            assert name in vars(_livekit.HookedAudioOutput)
            assert name in vars(io.AudioOutput)
