"""Offline building blocks: a real-time sink, a scripted LLM, realtime model and TTS.

They produce real PCM and play it on a real clock, so a real ``AgentSession`` runs with no
API keys and no LiveKit server. The package's own tests and demo use them; use them to
test your own handlers (the testing recipe in the documentation is a complete example):

```python
sink = SimulatedSink()
session = AgentSession(llm=ScriptedLLM([["Hello there."]]), tts=SineTTS())
session.output.audio = sink
await session.start(MyAgent(), record=False)
tracker = ph.attach(session)
with EventCollector(session) as events:
    session.generate_reply()
    await events.wait_finished(1, timeout=10)
```
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import wave
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from blinker import Signal
from livekit import rtc
from livekit.agents import AgentSession, APIConnectionError, APIConnectOptions, llm, tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities

from . import _livekit
from .events import (
    Event,
    MessagePlaybackFinished,
    MessagePlaybackProgressed,
    MessagePlaybackStarted,
)
from .signals import (
    message_playback_finished,
    message_playback_progressed,
    message_playback_started,
)

__all__ = [
    "EventCollector",
    "RealtimeItem",
    "ScriptedLLM",
    "ScriptedRealtimeModel",
    "SimulatedSink",
    "SinkSegment",
    "SineTTS",
    "ToolCall",
    "pcm_tone",
]

SAMPLE_RATE = 24000


def pcm_tone(seconds: float, *, frequency: float = 440.0, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Return ``seconds`` of a mono PCM16 sine tone (real audio, easy to recognise)."""
    n = max(0, round(seconds * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate
    samples = (0.3 * 32767 * np.sin(2 * math.pi * frequency * t)).astype(np.int16)
    return samples.tobytes()


# -- sink ---------------------------------------------------------------------------------


@dataclass
class SinkSegment:
    """What the simulated sink did with one segment.

    Attributes:
        started_at: The ``created_at`` it reported in ``playback_started`` (None if no frame
            arrived).
        captured: Seconds of audio it received.
        position: Seconds it played before the segment ended.
        interrupted: Whether ``clear_buffer()`` ended it.
        finished_at: When it reported ``playback_finished``.
    """

    started_at: float | None = None
    captured: float = 0.0
    position: float = 0.0
    interrupted: bool = False
    finished_at: float | None = None
    frames: list[rtc.AudioFrame] = field(default_factory=list, repr=False)
    flushed: bool = field(default=False, repr=False)
    cleared: bool = field(default=False, repr=False)


class SimulatedSink(AudioOutput):
    """A sink that plays audio on a real clock, like RoomIO's audio output.

    ``playback_started`` is reported when a segment's first frame is handed over (with that
    moment's ``time.time()`` as ``created_at``); one ``playback_finished`` per segment, with
    the seconds actually played, once all of it has played after ``flush()`` or at once on
    ``clear_buffer()``. It supports ``pause()``/``resume()``, keeps at most
    ``buffer_seconds`` of audio ahead of the play head (back-pressure, like
    ``rtc.AudioSource``) and can play faster than real time (``speed``) for long runs.

    Args:
        sample_rate: The rate it asks for (livekit resamples above it), None for any.
        speed: Seconds of audio played per second of wall time.
        buffer_seconds: How much audio ``capture_frame`` accepts ahead of the play head.
        record: Keep the frames, for ``write_wav()``.
    """

    def __init__(
        self,
        *,
        sample_rate: int | None = SAMPLE_RATE,
        speed: float = 1.0,
        buffer_seconds: float = 0.2,
        record: bool = False,
        label: str = "SimulatedSink",
    ) -> None:
        if speed <= 0:
            raise ValueError("SimulatedSink: speed must be > 0")
        super().__init__(
            label=label,
            capabilities=AudioOutputCapabilities(pause=True),
            sample_rate=sample_rate,
        )
        self._speed = speed
        self._buffer = buffer_seconds
        self._record = record
        self.segments: list[SinkSegment] = []
        """Every segment, in order (the last one may still be playing)."""
        self._current: SinkSegment | None = None
        self._queue: list[SinkSegment] = []
        self._position = 0.0  # play head within the segment at the front of the queue
        self._since = 0.0  # loop time the play head was last advanced
        self._paused = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # the play head -----------------------------------------------------------------------

    def _advance(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._queue and not self._paused:
            seg = self._queue[0]
            self._position = min(seg.captured, self._position + (now - self._since) * self._speed)
        self._since = now

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._play(), name="SimulatedSink")

    async def _play(self) -> None:
        while self._queue:
            self._advance()
            seg = self._queue[0]
            done = seg.cleared or (seg.flushed and self._position >= seg.captured - 1e-9)
            if done:
                self._finish(seg)
                continue
            self._wake.clear()
            timeout: float | None = None
            if not self._paused and self._position < seg.captured:
                timeout = (seg.captured - self._position) / self._speed
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _finish(self, seg: SinkSegment) -> None:
        self._queue.pop(0)
        seg.position = seg.captured if not seg.cleared else self._position
        seg.interrupted = seg.cleared
        seg.finished_at = time.time()
        self._position = 0.0
        if self._current is seg:
            self._current = None
        if seg.started_at is not None:
            self.on_playback_finished(playback_position=seg.position, interrupted=seg.interrupted)

    # AudioOutput --------------------------------------------------------------------------

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        """Queue a frame; the first of a segment reports ``playback_started``."""
        await super().capture_frame(frame)
        seg = self._current
        if seg is None:
            seg = self._current = SinkSegment()
            self.segments.append(seg)
            if not self._queue:
                self._position = 0.0
                self._since = asyncio.get_running_loop().time()
            self._queue.append(seg)
        first = seg.started_at is None
        seg.captured += frame.duration
        if self._record:
            seg.frames.append(frame)
        if first:
            seg.started_at = time.time()
            self.on_playback_started(created_at=seg.started_at)
        self._ensure_task()
        self._wake.set()
        # back-pressure: never more than buffer_seconds ahead of the play head
        while not seg.cleared and self._queue and self._queue[0] is seg:
            self._advance()
            ahead = seg.captured - self._position - self._buffer
            if ahead <= 0 or self._paused:
                break
            await asyncio.sleep(ahead / self._speed)

    def flush(self) -> None:
        """End the segment being captured; it finishes once all of it has played."""
        super().flush()
        if self._current is not None:
            self._current.flushed = True
            self._current = None
            self._wake.set()

    def clear_buffer(self) -> None:
        """Stop playing at once (an interruption): every queued segment ends interrupted."""
        self._advance()
        for seg in self._queue:
            seg.cleared = True
        self._current = None
        self._wake.set()

    def pause(self) -> None:
        """Hold the play head."""
        self._advance()
        self._paused = True
        self._wake.set()

    def resume(self) -> None:
        """Move the play head again."""
        self._advance()
        self._paused = False
        self._wake.set()

    async def aclose(self) -> None:
        """Stop the play-out task."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def write_wav(self, path: str) -> float:
        """Write what was played (``record=True``), segment after segment; return seconds."""
        if not self._record:
            raise RuntimeError("SimulatedSink.write_wav() needs record=True")
        rate = self.sample_rate or SAMPLE_RATE
        pcm = bytearray()
        for seg in self.segments:
            want = round(seg.position * rate) * 2
            data = b"".join(bytes(f.data.cast("B")) for f in seg.frames)
            pcm += data[:want]
        with wave.open(path, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            wav.writeframes(bytes(pcm))
        return len(pcm) / 2 / rate


# -- TTS ----------------------------------------------------------------------------------


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


# -- LLM ----------------------------------------------------------------------------------


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


# -- realtime -----------------------------------------------------------------------------


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


# -- collecting events --------------------------------------------------------------------


class EventCollector:
    """Records a session's message events in the order they are delivered.

    Use as a context manager (or call ``close()``). ``events`` holds the started and
    finished events in order. With ``progress=True`` it also receives
    ``message_playback_progressed`` (which makes the tracker follow progress, as any
    receiver does): ``progressed`` holds those, ``delivered`` every event in order.
    """

    def __init__(self, session: AgentSession[Any], *, progress: bool = False) -> None:
        self.session = session
        self.events: list[MessagePlaybackStarted | MessagePlaybackFinished] = []
        self.progressed: list[MessagePlaybackProgressed] = []
        """The progress events, in order (only with ``progress=True``)."""
        self.delivered: list[Event] = []
        """Every event received, all kinds, in delivery order."""
        self._changed = asyncio.Event()
        self._signals: list[Signal] = [message_playback_started, message_playback_finished]
        if progress:
            self._signals.append(message_playback_progressed)
        for signal in self._signals:
            signal.connect(self._receive, sender=session, weak=False)

    def _receive(self, sender: Any, *, event: Any, **_: Any) -> None:
        self.delivered.append(event)
        if isinstance(event, MessagePlaybackProgressed):
            self.progressed.append(event)
        else:
            self.events.append(event)
        self._changed.set()

    @property
    def started(self) -> list[MessagePlaybackStarted]:
        """The started events, in order."""
        return [e for e in self.events if isinstance(e, MessagePlaybackStarted)]

    @property
    def finished(self) -> list[MessagePlaybackFinished]:
        """The finished events, in order."""
        return [e for e in self.events if isinstance(e, MessagePlaybackFinished)]

    def timeline(self) -> list[tuple[str, str]]:
        """``(kind, message_id)`` pairs in delivery order: the easiest thing to assert on."""
        return [
            ("started" if isinstance(e, MessagePlaybackStarted) else "finished", e.message_id)
            for e in self.events
        ]

    async def wait_finished(
        self, count: int, *, timeout: float = 30.0
    ) -> list[MessagePlaybackFinished]:
        """Wait until at least ``count`` finished events arrived; return them all."""

        async def _wait() -> None:
            while len(self.finished) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), timeout)
        return self.finished

    def progress_of(self, message_id: str) -> list[MessagePlaybackProgressed]:
        """The progress events of the message(s) with this id, in order."""
        return [p for p in self.progressed if p.message_id == message_id]

    async def wait_progress(
        self,
        predicate: Callable[[MessagePlaybackProgressed], bool],
        *,
        timeout: float = 30.0,
    ) -> MessagePlaybackProgressed:
        """Wait for a progress event for which ``predicate`` is true (one already received
        counts); return the first such event."""

        def found() -> MessagePlaybackProgressed | None:
            return next((p for p in self.progressed if predicate(p)), None)

        async def _wait() -> MessagePlaybackProgressed:
            while (event := found()) is None:
                self._changed.clear()
                await self._changed.wait()
            return event

        return await asyncio.wait_for(_wait(), timeout)

    def close(self) -> None:
        """Stop recording."""
        for signal in self._signals:
            signal.disconnect(self._receive, sender=self.session)

    def __enter__(self) -> EventCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
