"""Messages spoken through livekit's real OpenAI LLM and TTS, against a local scripted server.

The session runs ``livekit.plugins.openai.LLM`` and ``livekit.plugins.openai.TTS`` over HTTP
to ``tests/openai_http_server.py``: each reply streams from ``/v1/chat/completions`` in
small deltas, livekit's sentence tokenizer (the ``StreamAdapter`` around the non-streaming
TTS) cuts it into ``/v1/audio/speech`` requests, and the plugin decodes the audio, MP3 (its
default) or raw PCM. Only the model's words and the audio length are scripted.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

import av
import pytest
from livekit import rtc
from livekit.agents import Agent, ModelSettings, llm
from livekit.agents.types import FlushSentinel
from livekit.plugins import openai

import playback_hooks as ph
from playback_hooks.testing import SimulatedSink

from .conftest import Offline, StartSession
from .openai_http_server import OpenAIHTTPServer, audio_seconds, pcm_speech

# The sink plays four times as fast as real time: positions are still seconds of audio.
SPEED = 4.0

# Two replies of several sentences. Some are shorter than the tokenizer's minimum sentence
# length, so it merges them; no sentence of one reply appears in the other.
FIRST = "Sure. Here is the first reply, in a few sentences. It says hello. Then it stops."
SECOND = (
    "The second reply comes from another request. "
    "It is longer than the first one, by design. Goodbye!"
)
FIRST_METADATA = {"kind": "preamble", "n": 1}

# livekit's AudioEmitter ends a stream whose audio it had already flushed with a 10 ms frame
# of silence (its end-of-segment marker), and the sink plays it. The StreamAdapter's emitter
# does so once per segment (it flushes after every sentence); with raw PCM the plugin's own
# emitter also does so once per request (the plugin flushes before the stream ends). An
# MP3 stream's last samples leave the decoder only at the end of input, so they close it.
END_MARKER = 0.01

# Durations and positions are sums of frame durations: exact to far less than a sample.
EXACT = 1e-6


class TwoRequests(Agent):
    """Speaks two messages, each the reply to its own request to the session's LLM."""

    def __init__(self) -> None:
        super().__init__(instructions="test agent")

    @ph.track_messages
    async def llm_node(
        self,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        model_settings: ModelSettings,
    ) -> AsyncIterable[llm.ChatChunk | str | FlushSentinel]:
        yield ph.MessageBoundary("first", metadata=FIRST_METADATA)
        async for chunk in Agent.default.llm_node(self, chat_ctx, tools, model_settings):
            yield chunk
        yield ph.MessageBoundary("second")
        async for chunk in Agent.default.llm_node(self, chat_ctx, tools, model_settings):
            yield chunk


class WatchedSink(SimulatedSink):
    """A simulated sink a test can wait on until part of a segment has played."""

    def __init__(self, *, speed: float, buffer_seconds: float = 0.2) -> None:
        super().__init__(speed=speed, buffer_seconds=buffer_seconds)
        self.buffer_seconds = buffer_seconds
        self.played_at_least: list[float] = []
        """Per segment, a lower bound of the seconds played so far."""
        self._changed = asyncio.Event()

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        # capture_frame() returns only once the play head is at most buffer_seconds behind
        # what was captured: read the bound now, before livekit hands over the next frame
        index = len(self.segments) - 1
        segment = self.segments[index]
        self.played_at_least.extend([0.0] * (index + 1 - len(self.played_at_least)))
        if not segment.cleared:  # an interruption releases it early
            bound = segment.captured - self.buffer_seconds
            self.played_at_least[index] = max(self.played_at_least[index], bound)
        self._changed.set()

    async def wait_played(self, segment: int, seconds: float, *, timeout: float = 10.0) -> None:
        """Wait until at least ``seconds`` of the ``segment``-th segment have played."""

        async def _wait() -> None:
            while len(self.played_at_least) <= segment or self.played_at_least[segment] < seconds:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), timeout)


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


Start = Callable[..., Awaitable[Offline]]


@pytest.fixture
def start_openai(server: OpenAIHTTPServer, plugins: Plugins, start_session: StartSession) -> Start:
    """Start a ``TwoRequests`` session whose LLM and TTS are livekit's OpenAI plugins."""

    async def _start(response_format: str | None, *, sink: SimulatedSink | None = None) -> Offline:
        llm_model, tts_model = plugins(
            **({"response_format": response_format} if response_format else {})
        )
        return await start_session(
            TwoRequests(),
            llm_model=llm_model,
            tts_model=tts_model,
            sink=sink or SimulatedSink(speed=SPEED),
        )

    return _start


def requests_by_message(server: OpenAIHTTPServer, replies: list[str]) -> list[list[str]]:
    """The speech request texts, grouped by the one reply each belongs to, in order.

    A request holding text of two replies (or text of none) fails the test.
    """
    groups: list[list[str]] = [[] for _ in replies]
    for request in server.speech_requests:
        owners = [k for k, reply in enumerate(replies) if request.text in reply]
        assert len(owners) == 1, f"speech request {request.text!r} is not part of one reply"
        groups[owners[0]].append(request.text)
    return groups


def heard_seconds(texts: list[str], response_format: str | None) -> float:
    """Seconds of audio the sink gets for one message spoken as these speech requests."""
    per_request = END_MARKER if response_format == "pcm" else 0.0
    return sum(audio_seconds(text) + per_request for text in texts) + END_MARKER


def assistant_messages(off: Offline) -> list[llm.ChatMessage]:
    return [
        item
        for item in off.session.history.items
        if isinstance(item, llm.ChatMessage) and item.role == "assistant"
    ]


FORMATS = [pytest.param(None, id="default-mp3"), pytest.param("pcm", id="pcm")]


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


class TestTwoRequests:
    """Two LLM requests in one llm_node are two messages, each with exactly its own audio."""

    @pytest.mark.parametrize("response_format", FORMATS)
    async def test_two_replies_are_two_full_messages(
        self, server: OpenAIHTTPServer, start_openai: Start, response_format: str | None
    ) -> None:
        off = await start_openai(response_format)
        server.reply(FIRST, SECOND)
        handle = off.session.generate_reply()
        finished = await off.events.wait_finished(2)
        await handle

        assert off.events.timeline() == [
            ("started", "first"),
            ("finished", "first"),
            ("started", "second"),
            ("finished", "second"),
        ]
        started = off.events.started
        assert [(e.message_id, e.index, e.source) for e in started] == [
            ("first", 0, "llm"),
            ("second", 1, "llm"),
        ]
        assert {e.speech_id for e in off.events.events} == {handle.id}
        assert [dict(e.metadata) for e in started] == [FIRST_METADATA, {}]
        assert [dict(f.metadata) for f in finished] == [FIRST_METADATA, {}]
        assert [(f.played, f.interrupted) for f in finished] == [("full", False)] * 2

        # one sink segment per message; each event carries that segment's own start
        segments = off.sink.segments
        assert len(segments) == 2
        assert [e.started_at for e in started] == [s.started_at for s in segments]
        assert [f.started_at for f in finished] == [s.started_at for s in segments]
        assert [f.playback_position for f in finished] == [s.position for s in segments]

        # each speech request holds text of one reply only, and together they are that reply
        groups = requests_by_message(server, [FIRST, SECOND])
        assert [" ".join(texts) for texts in groups] == [FIRST, SECOND]
        assert all(len(texts) >= 2 for texts in groups)  # the tokenizer cut every reply
        # so each message's position is the audio of its own text, and only of it
        assert [f.playback_position for f in finished] == pytest.approx(
            [heard_seconds(texts, response_format) for texts in groups], abs=EXACT
        )

        # two requests to the model, with the same context: the second is not a follow-up
        assert len(server.chat_requests) == 2
        first_request, second_request = server.chat_requests
        assert first_request.body["messages"] == second_request.body["messages"]
        assert first_request.body["messages"][0]["content"] == "test agent"

        # livekit's own record is untouched: one assistant message with both replies in full
        (message,) = assistant_messages(off)
        assert message.text_content == FIRST + SECOND
        assert message.interrupted is False
        assert off.session.current_agent.chat_ctx.get_by_id(message.id) is not None

    async def test_empty_second_reply_is_a_skipped_message(
        self, server: OpenAIHTTPServer, start_openai: Start
    ) -> None:
        # The model answers the second request with no text at all (only the role, stop
        # and usage chunks): livekit opens no second segment, so nothing of it plays.
        off = await start_openai(None)
        server.reply(FIRST, "")
        handle = off.session.generate_reply()
        finished = await off.events.wait_finished(2)
        await handle

        assert off.events.timeline() == [
            ("started", "first"),
            ("finished", "first"),
            ("finished", "second"),
        ]
        assert [(f.message_id, f.index, f.played, f.interrupted) for f in finished] == [
            ("first", 0, "full", False),
            ("second", 1, "skipped", False),
        ]
        first, second = finished
        assert len(off.sink.segments) == 1
        assert first.started_at == off.sink.segments[0].started_at
        assert first.playback_position == off.sink.segments[0].position
        assert (second.started_at, second.playback_position) == (None, 0.0)
        assert len(server.chat_requests) == 2
        (texts,) = requests_by_message(server, [FIRST])
        assert " ".join(texts) == FIRST
        assert first.playback_position == pytest.approx(heard_seconds(texts, None), abs=EXACT)
        (message,) = assistant_messages(off)
        assert message.text_content == FIRST


class TestInterruption:
    """Interrupted during the second reply: the first played in full, the second in part."""

    async def test_interrupted_during_second_message(
        self, server: OpenAIHTTPServer, start_openai: Start
    ) -> None:
        # half as fast as the other tests: the interruption lands well before the end
        sink = WatchedSink(speed=SPEED / 2)
        off = await start_openai(None, sink=sink)
        server.reply(FIRST, SECOND)
        handle = off.session.generate_reply()
        await off.tracker.wait_for("second", "started", timeout=10)
        await sink.wait_played(1, 0.4)
        off.session.interrupt()
        finished = await off.events.wait_finished(2)
        await handle

        assert off.events.timeline() == [
            ("started", "first"),
            ("finished", "first"),
            ("started", "second"),
            ("finished", "second"),
        ]
        assert [(f.message_id, f.index, f.played, f.interrupted) for f in finished] == [
            ("first", 0, "full", False),
            ("second", 1, "partial", True),
        ]
        first, second = finished
        segments = sink.segments
        assert len(segments) == 2
        assert [f.started_at for f in finished] == [s.started_at for s in segments]
        groups = requests_by_message(server, [FIRST, SECOND])
        assert first.playback_position == segments[0].position
        assert first.playback_position == pytest.approx(heard_seconds(groups[0], None), abs=EXACT)
        # the second's own position (not counted from the speech's start): what the sink played
        assert segments[1].interrupted
        assert second.playback_position == segments[1].position
        assert 0.4 <= second.playback_position < audio_seconds(SECOND)
        assert handle.interrupted

        # livekit records the reply as interrupted, with the first reply heard in full
        (message,) = assistant_messages(off)
        assert message.interrupted is True
        assert message.text_content is not None and message.text_content.startswith(FIRST)
