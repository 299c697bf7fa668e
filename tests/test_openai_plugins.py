"""Messages spoken through livekit's real OpenAI LLM and TTS, against a local scripted server.

``livekit.plugins.openai.LLM`` and ``livekit.plugins.openai.TTS`` talk HTTP to
``tests/openai_http_server.py``: replies stream from ``/v1/chat/completions`` in small
deltas, and the plugin decodes the ``/v1/audio/speech`` audio, MP3 (its default) or raw
PCM. Only the model's words and the audio length are scripted.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import av
import pytest
from livekit.agents import llm
from livekit.plugins import openai

from .openai_http_server import OpenAIHTTPServer, audio_seconds, pcm_speech

FIRST = "Sure. Here is the first reply, in a few sentences. It says hello. Then it stops."

# livekit's AudioEmitter ends a stream whose audio it had already flushed with a 10 ms frame
# of silence (its end-of-segment marker). With raw PCM the plugin's emitter does so once per
# request (the plugin flushes before the stream ends). An MP3 stream's last samples leave
# the decoder only at the end of input, so they close it.
END_MARKER = 0.01

# Durations and positions are sums of frame durations: exact to far less than a sample.
EXACT = 1e-6


@pytest.fixture
async def server() -> AsyncIterator[OpenAIHTTPServer]:
    srv = OpenAIHTTPServer()
    await srv.start()
    yield srv
    await srv.close()


Plugins = Callable[..., tuple[openai.LLM, openai.TTS]]


@pytest.fixture
async def plugins(server: OpenAIHTTPServer) -> AsyncIterator[Plugins]:
    """Make livekit's OpenAI LLM and TTS pointed at ``server``; all closed at teardown."""
    made: list[tuple[openai.LLM, openai.TTS]] = []

    def _make(**tts_kwargs: Any) -> tuple[openai.LLM, openai.TTS]:
        pair = (
            openai.LLM(base_url=server.base_url, api_key="test"),
            openai.TTS(base_url=server.base_url, api_key="test", **tts_kwargs),
        )
        made.append(pair)
        return pair

    yield _make
    for llm_model, tts_model in made:
        await llm_model.aclose()
        await tts_model.aclose()


class TestProtocol:
    """The plugins reach the local server the way they reach the service, and get its answers."""

    async def test_chat_completion_streams_the_scripted_reply(
        self, server: OpenAIHTTPServer, plugins: Plugins
    ) -> None:
        llm_model, _ = plugins()
        server.reply(FIRST)
        chat_ctx = llm.ChatContext.empty()
        chat_ctx.add_message(role="user", content="Hello?")
        deltas: list[str] = []
        async with llm_model.chat(chat_ctx=chat_ctx) as stream:
            async for chunk in stream:
                if chunk.delta is not None and chunk.delta.content:
                    deltas.append(chunk.delta.content)
        assert "".join(deltas) == FIRST
        # streamed in pieces cut across words and sentences, as a model's tokens are
        assert len(deltas) > len(FIRST.split(". "))
        assert any(not d.endswith((" ", ".")) for d in deltas[:-1])
        (request,) = server.chat_requests
        assert request.headers["Authorization"] == "Bearer test"
        assert request.body["stream"] is True
        assert request.body["model"] == "gpt-4.1"
        assert request.body["messages"] == [{"role": "user", "content": "Hello?"}]

    @pytest.mark.parametrize(
        ("tts_kwargs", "response_format", "stream_format"),
        [
            pytest.param({}, "mp3", "sse", id="default-mp3-sse"),
            pytest.param({"response_format": "pcm"}, "pcm", "sse", id="pcm-sse"),
            pytest.param({"model": "tts-1"}, "mp3", "audio", id="tts-1-mp3-body"),
        ],
    )
    async def test_speech_lasts_a_known_function_of_the_text(
        self,
        server: OpenAIHTTPServer,
        plugins: Plugins,
        tts_kwargs: dict[str, str],
        response_format: str,
        stream_format: str,
    ) -> None:
        _, tts_model = plugins(**tts_kwargs)
        texts = ["Here is the first reply, in a few sentences.", "Goodbye!", "It says hello."]
        decoded: list[float] = []
        for text in texts:
            seconds = 0.0
            async with tts_model.synthesize(text) as stream:
                async for audio in stream:
                    assert audio.frame.sample_rate == 24000
                    seconds += audio.frame.duration
            decoded.append(seconds)
        # what livekit decodes is exactly the scripted length (plus its marker after raw PCM)
        marker = END_MARKER if response_format == "pcm" else 0.0
        assert decoded == pytest.approx([audio_seconds(t) + marker for t in texts], abs=EXACT)
        assert audio_seconds("Goodbye!") == pytest.approx(8 * 0.024)
        assert [r.text for r in server.speech_requests] == texts
        for request in server.speech_requests:
            assert request.headers["Authorization"] == "Bearer test"
            assert request.body["response_format"] == response_format
            assert request.body["stream_format"] == stream_format
        if response_format == "mp3":
            # real MP3 files (libav finds one on its own), far smaller than the PCM would be
            encoded = server.speech_requests[0].audio
            with av.open(io.BytesIO(encoded)) as container:
                assert container.format.name == "mp3"
                assert len(container.streams.audio) == 1
            assert len(encoded) < len(pcm_speech(texts[0])) / 4
