"""Fails loudly if livekit-agents renames or removes a private name this package uses.

Every private livekit name the package touches is in ``playback_hooks._livekit``; this test
checks each of them, and what the package relies on it doing, against the installed
livekit-agents.
"""

from __future__ import annotations

import contextvars
import inspect
from typing import Any

from livekit import rtc
from livekit.agents import AgentSession
from livekit.agents.llm import LLMStream
from livekit.agents.utils import aio
from livekit.agents.voice import agent_activity, io
from livekit.agents.voice.speech_handle import SpeechHandle
from livekit.agents.voice.transcription import TranscriptSynchronizer, synchronizer

from playback_hooks import _livekit
from playback_hooks._outputs import TransparentOutput
from playback_hooks.testing import SimulatedSink

from .conftest import LIVEKIT


class _Watched(SimulatedSink):
    """Counts on_attached / on_detached calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def on_attached(self) -> None:
        self.calls.append("attached")
        super().on_attached()

    def on_detached(self) -> None:
        self.calls.append("detached")
        super().on_detached()


def _top(session: AgentSession[Any]) -> io.AudioOutput | None:
    return session.output.audio


class TestPrivateNames:
    """Each private livekit name used by playback_hooks._livekit still exists as expected."""

    async def test_speech_context_variable(self) -> None:
        var = agent_activity._SpeechHandleContextVar
        assert var is _livekit.speech_context
        assert isinstance(var, contextvars.ContextVar)
        assert var.get(None) is None
        assert _livekit.current_speech() is None
        handle = SpeechHandle.create()
        token = var.set(handle)
        try:
            assert _livekit.current_speech() is handle
        finally:
            var.reset(token)

    async def test_install_quietly_swaps_only_the_top(self) -> None:
        session: AgentSession[Any] = AgentSession()
        below = _Watched()
        session.output.audio = below
        assert below.calls == ["attached"]
        top = TransparentOutput(below, label="top")
        _livekit.install_quietly(session.output, top)
        assert _top(session) is top
        assert below.calls == ["attached"]  # the chain below was not re-attached
        _livekit.install_quietly(session.output, below)
        assert _top(session) is below and below.calls == ["attached"]
        await below.aclose()

    def test_transparent_output_adds_no_proxy(self) -> None:
        sink = SimulatedSink()
        top = TransparentOutput(sink, label="top")
        assert top.next_in_chain is sink
        assert not isinstance(top.next_in_chain, io._AudioSinkProxy)

    def test_audio_output_hooks(self) -> None:
        # overridden: livekit calls it on the top output when the TTS failed mid-segment
        assert "_mark_input_truncated" in vars(TransparentOutput)
        if LIVEKIT >= (1, 8, 6):
            assert "_mark_input_truncated" in vars(io.AudioOutput)
            signature = inspect.signature(io.AudioOutput._mark_input_truncated)
            assert list(signature.parameters) == ["self"]
        else:  # never called there: such a message ends as the sink reports it
            assert "_mark_input_truncated" not in vars(io.AudioOutput)

    def test_capture_cancelled_event(self) -> None:
        if LIVEKIT >= (1, 8, 9):
            assert issubclass(io._CaptureCancelledEvent, io.PlaybackFinishedEvent)
            assert _livekit._CaptureCancelledEvent is io._CaptureCancelledEvent
            # called to pass a cancellation up the way livekit's own wrappers count it
            signature = inspect.signature(io.AudioOutput._dispatch_playback_finished)
            assert list(signature.parameters) == ["self", "ev"]
        else:  # no cancelled captures: the fallback is not to look for them
            assert not hasattr(io, "_CaptureCancelledEvent")
            assert _livekit._CaptureCancelledEvent is None

    async def test_session_started_flag(self) -> None:
        session: AgentSession[Any] = AgentSession()
        assert "_started" in vars(session)
        assert _livekit.session_started(session) is False

    async def test_speech_handle_internals(self) -> None:
        handle = SpeechHandle.create()
        assert "_agent_turn_context" in vars(handle)
        assert _livekit.speech_trace_context(handle) is None
        _livekit.mark_scheduled(handle)
        assert handle.scheduled
        _livekit.mark_done(handle, interrupted=True)
        assert handle.done() and handle.interrupted

    def test_llm_stream_event_channel(self) -> None:
        # the channel an LLMStream._run hands its chunks to (a Chan, or a subclass of it)
        assert "self._event_ch = " in inspect.getsource(LLMStream.__init__)
        assert callable(getattr(aio.Chan, "send_nowait", None))


class _Text(io.TextOutput):
    """A text output that records nothing (the tests only look at the chain)."""

    def __init__(self, below: io.TextOutput | None = None) -> None:
        super().__init__(label="_Text", next_in_chain=below)

    async def capture_text(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


class TestPrivateNamesForLiveProgress:
    """The synchronizer internals the word tap of live progress relies on still exist."""

    async def test_synchronizer_is_found_down_the_audio_chain(self) -> None:
        sink = SimulatedSink()
        sync = TranscriptSynchronizer(next_in_chain_audio=sink, next_in_chain_text=_Text())
        try:
            assert _livekit._SyncedAudioOutput is synchronizer._SyncedAudioOutput
            assert "_synchronizer" in vars(sync.audio_output)
            top = TransparentOutput(sync.audio_output, label="top")
            assert _livekit.transcript_synchronizer(top) is sync
            assert _livekit.transcript_synchronizer(sink) is None
        finally:
            await sync.aclose()
            await sink.aclose()

    async def test_text_tap_goes_under_the_text_output_and_out_again(self) -> None:
        sink = SimulatedSink()
        below = _Text()
        sync = TranscriptSynchronizer(next_in_chain_audio=sink, next_in_chain_text=below)
        tap = _Text(below)
        try:
            assert _livekit.text_tap_supported(sync)
            _livekit.insert_text_tap(sync, tap)
            assert sync.text_output.next_in_chain is tap
            assert sync._impl._next_in_chain is tap  # the segment being shown
            # each new segment's word forwarder is made with the text output's next_in_chain
            sync.rotate_segment()
            await sync.barrier()
            assert sync._impl._next_in_chain is tap
            assert _livekit.remove_text_tap(sync, tap)
            assert sync.text_output.next_in_chain is below
            assert sync._impl._next_in_chain is below
            assert not _livekit.remove_text_tap(sync, tap)
        finally:
            await sync.aclose()
            await sink.aclose()

    def test_the_word_forwarder_reads_its_next_output_for_every_word(self) -> None:
        source = inspect.getsource(synchronizer._SegmentSynchronizerImpl._capture_task)
        assert "self._next_in_chain.capture_text(text)" in source
        assert "self._next_in_chain.flush()" in source


class TestPrivateNamesForAvatars:
    """The avatar output's flag for waiting on the worker's start reports still exists."""

    def test_wait_playback_start_flag(self) -> None:
        from livekit.agents.voice.avatar import DataStreamAudioOutput

        source = inspect.getsource(DataStreamAudioOutput.__init__)
        assert "self._wait_playback_start = wait_playback_start" in source
        assert "wait_playback_start" in inspect.signature(DataStreamAudioOutput).parameters
        # found through the tracker's output and any wrapper over the avatar's output
        output = DataStreamAudioOutput.__new__(DataStreamAudioOutput)  # no room needed here
        rtc.EventEmitter.__init__(output)
        output._wait_playback_start = True
        output._next_in_chain = None
        top = TransparentOutput(output, label="top")
        assert _livekit.reports_remote_starts(top)
        output._wait_playback_start = False
        assert not _livekit.reports_remote_starts(top)
        assert not _livekit.reports_remote_starts(TransparentOutput(SimulatedSink(), label="t"))
