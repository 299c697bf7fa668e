"""Scripted models that need no API key: a TTS, an LLM and a realtime model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from livekit import rtc
from livekit.agents import APIConnectionError, APIConnectOptions, llm, tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

from .. import _livekit
from .audio import SAMPLE_RATE, pcm_tone

__all__ = [
    "RealtimeItem",
    "ScriptedLLM",
    "ScriptedRealtimeModel",
    "ScriptedRealtimeSession",
    "SineTTS",
    "ToolCall",
]


class SineTTS(tts.TTS[Any]):
    """A TTS that turns text into a sine tone, ``seconds_per_char`` long per character.

    Whitespace-only text gives no audio. ``latency`` (seconds, or a function of the text)
    delays the first audio; ``fail_on`` makes synthesis of text containing that substring
    fail after half of its audio, like a provider dropping mid-sentence.
    """

    def __init__(
        self,
        *,
        seconds_per_char: float = 0.02,
        latency: float | Any = 0.05,
        sample_rate: int = SAMPLE_RATE,
        fail_on: str | None = None,
    ) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=sample_rate,
            num_channels=1,
        )
        self.seconds_per_char = seconds_per_char
        self.latency = latency
        self.fail_on = fail_on
        self.requests: list[str] = []

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        """Synthesize ``text`` as a tone; every request is kept in ``requests``."""
        self.requests.append(text)
        return _SineStream(tts=self, input_text=text, conn_options=conn_options)


class _SineStream(tts.ChunkedStream):
    def __init__(self, *, tts: SineTTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._owner = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        owner = self._owner
        text = self.input_text
        latency = owner.latency(text) if callable(owner.latency) else owner.latency
        output_emitter.initialize(
            request_id=utils.shortuuid("sine_"),
            sample_rate=owner.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
        )
        if latency:
            await asyncio.sleep(latency)
        seconds = len(text.strip()) * owner.seconds_per_char
        pcm = pcm_tone(
            seconds, frequency=330.0 + 20 * (len(text) % 12), sample_rate=owner.sample_rate
        )
        if owner.fail_on is not None and owner.fail_on in text:
            output_emitter.push(pcm[: len(pcm) // 4 * 2])
            output_emitter.flush()
            await asyncio.sleep(0.05)  # the first half is on its way to the sink
            raise APIConnectionError("SineTTS: simulated failure", retryable=False)
        if pcm:
            output_emitter.push(pcm)
        output_emitter.flush()


@dataclass(frozen=True)
class ToolCall:
    """A function call a ``ScriptedLLM`` reply makes."""

    name: str
    arguments: str = "{}"


class ScriptedLLM(llm.LLM[Any]):
    """An LLM that answers each ``chat()`` with the next scripted reply.

    A reply is a sequence of text chunks (streamed ``chunk_delay`` apart) and ``ToolCall``s.
    When the script runs out, it answers with an empty reply.
    """

    def __init__(
        self, replies: Iterable[Sequence[str | ToolCall]], *, chunk_delay: float = 0.01
    ) -> None:
        super().__init__()
        self._replies = [list(r) for r in replies]
        self.chunk_delay = chunk_delay
        self.calls = 0

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        """Answer with the next scripted reply (an empty one when the script ran out)."""
        reply = self._replies.pop(0) if self._replies else []
        self.calls += 1
        return _ScriptedStream(
            self, reply, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options
        )


class _ScriptedStream(llm.LLMStream):
    def __init__(self, owner: ScriptedLLM, reply: list[str | ToolCall], **kwargs: Any) -> None:
        super().__init__(owner, **kwargs)
        self._reply = reply
        self._delay = owner.chunk_delay

    async def _run(self) -> None:
        request_id = utils.shortuuid("scripted_")
        for i, item in enumerate(self._reply):
            if self._delay:
                await asyncio.sleep(self._delay)
            if isinstance(item, ToolCall):
                delta = llm.ChoiceDelta(
                    role="assistant",
                    tool_calls=[
                        llm.FunctionToolCall(
                            name=item.name, arguments=item.arguments, call_id=f"call_{i}"
                        )
                    ],
                )
            else:
                delta = llm.ChoiceDelta(role="assistant", content=item)
            _livekit.send_chat_chunk(self, llm.ChatChunk(id=request_id, delta=delta))


@dataclass(frozen=True)
class RealtimeItem:
    """One assistant message item of a scripted realtime response.

    Attributes:
        id: The item id (livekit's ``MessageGeneration.message_id``).
        text: Its transcript.
        audio_seconds: Seconds of audio it carries; None for a text-only item.
    """

    id: str
    text: str
    audio_seconds: float | None = 1.0


class ScriptedRealtimeModel(llm.RealtimeModel):
    """A realtime model whose responses are scripted lists of ``RealtimeItem``.

    ``generate_reply()`` answers with the next scripted response; a test can also start a
    server-initiated response with ``session.server_response()``. Audio is streamed in
    ``chunk_seconds`` chunks, paced ``pace`` times faster than real time.
    """

    def __init__(
        self,
        responses: Iterable[Sequence[RealtimeItem]] = (),
        *,
        chunk_seconds: float = 0.1,
        pace: float = 4.0,
    ) -> None:
        super().__init__(
            capabilities=llm.RealtimeCapabilities(
                message_truncation=True,
                turn_detection=False,
                user_transcription=False,
                auto_tool_reply_generation=False,
                audio_output=True,
                manual_function_calls=False,
            )
        )
        self.responses = [list(r) for r in responses]
        self.chunk_seconds = chunk_seconds
        self.pace = pace
        self.sessions: list[ScriptedRealtimeSession] = []

    def session(self, *, turn_detection_disabled: bool = False) -> ScriptedRealtimeSession:
        """Open a realtime session; every one is kept in ``sessions``."""
        rt = ScriptedRealtimeSession(self)
        self.sessions.append(rt)
        return rt

    async def aclose(self) -> None:
        """Close every session it opened."""
        for rt in self.sessions:
            await rt.aclose()


class ScriptedRealtimeSession(llm.RealtimeSession[Any]):
    """The session of a ``ScriptedRealtimeModel``."""

    def __init__(self, model: ScriptedRealtimeModel) -> None:
        super().__init__(model)
        self._model = model
        self._chat_ctx = llm.ChatContext.empty()
        self._tools = llm.ToolContext.empty()
        self._tasks: set[asyncio.Task[None]] = set()
        self.truncations: list[tuple[str, int]] = []
        self.interrupts = 0
        self.sent: list[tuple[str, float]] = []
        """``(item id, time.time())`` for each item, when its message was handed to livekit."""

    @property
    def chat_ctx(self) -> llm.ChatContext:
        return self._chat_ctx.copy()

    @property
    def tools(self) -> llm.ToolContext:
        return self._tools.copy()

    async def update_instructions(self, instructions: str) -> None:
        pass

    async def update_chat_ctx(self, chat_ctx: llm.ChatContext) -> None:
        self._chat_ctx = chat_ctx.copy()

    async def update_tools(self, tools: list[llm.Tool]) -> None:
        self._tools = llm.ToolContext(tools)

    def update_options(self, *, tool_choice: NotGivenOr[llm.ToolChoice | None] = NOT_GIVEN) -> None:
        pass

    def push_audio(self, frame: rtc.AudioFrame) -> None:
        pass

    def push_video(self, frame: rtc.VideoFrame) -> None:
        pass

    def generate_reply(
        self,
        *,
        instructions: NotGivenOr[str] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        tools: NotGivenOr[list[llm.Tool]] = NOT_GIVEN,
    ) -> asyncio.Future[llm.GenerationCreatedEvent]:
        fut: asyncio.Future[llm.GenerationCreatedEvent] = asyncio.Future()
        fut.set_result(self._start_response(user_initiated=True))
        return fut

    def server_response(self) -> llm.GenerationCreatedEvent:
        """Start the next scripted response as the server would (server-side turn detection)."""
        return self._start_response(user_initiated=False)

    def _start_response(self, *, user_initiated: bool) -> llm.GenerationCreatedEvent:
        items = self._model.responses.pop(0) if self._model.responses else []
        message_ch = utils.aio.Chan[llm.MessageGeneration]()
        function_ch = utils.aio.Chan[llm.FunctionCall]()
        ev = llm.GenerationCreatedEvent(
            message_stream=message_ch,
            function_stream=function_ch,
            user_initiated=user_initiated,
            response_id=utils.shortuuid("resp_"),
        )
        task = asyncio.get_running_loop().create_task(self._stream(items, message_ch, function_ch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.emit("generation_created", ev)
        return ev

    async def _stream(
        self,
        items: list[RealtimeItem],
        message_ch: utils.aio.Chan[llm.MessageGeneration],
        function_ch: utils.aio.Chan[llm.FunctionCall],
    ) -> None:
        model = self._model
        try:
            for item in items:
                audio_ch = utils.aio.Chan[rtc.AudioFrame]()
                text_ch = utils.aio.Chan[str]()
                modalities: asyncio.Future[list[Literal["text", "audio"]]] = asyncio.Future()
                modalities.set_result(
                    ["audio", "text"] if item.audio_seconds is not None else ["text"]
                )
                self.sent.append((item.id, time.time()))
                message_ch.send_nowait(
                    llm.MessageGeneration(
                        message_id=item.id,
                        text_stream=text_ch,
                        audio_stream=audio_ch,
                        modalities=modalities,
                    )
                )
                text_ch.send_nowait(item.text)
                text_ch.close()
                if item.audio_seconds is not None:
                    pcm = pcm_tone(item.audio_seconds, frequency=520.0)
                    step = round(model.chunk_seconds * SAMPLE_RATE) * 2
                    for offset in range(0, len(pcm), step):
                        chunk = pcm[offset : offset + step]
                        audio_ch.send_nowait(rtc.AudioFrame(chunk, SAMPLE_RATE, 1, len(chunk) // 2))
                        await asyncio.sleep(model.chunk_seconds / model.pace)
                audio_ch.close()
        finally:
            message_ch.close()
            function_ch.close()

    def commit_audio(self) -> None:
        pass

    def clear_audio(self) -> None:
        pass

    def interrupt(self) -> None:
        self.interrupts += 1

    def truncate(
        self,
        *,
        message_id: str,
        modalities: list[Literal["text", "audio"]],
        audio_end_ms: int,
        audio_transcript: NotGivenOr[str] = NOT_GIVEN,
    ) -> None:
        self.truncations.append((message_id, audio_end_ms))

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
