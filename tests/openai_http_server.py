"""A local server speaking the OpenAI HTTP API (chat completions and speech), scripted by tests.

It runs on 127.0.0.1 (a free port) with ``aiohttp.web`` and answers livekit's own clients
(``livekit.plugins.openai.LLM`` and ``livekit.plugins.openai.TTS`` with
``base_url=server.base_url``) the way the service does:

- ``POST /v1/chat/completions`` with ``stream: true`` answers with server-sent events: one
  ``chat.completion.chunk`` with the assistant role, the scripted reply's text in small
  deltas (cut across words and sentences, as a model's tokens are), a chunk with
  ``finish_reason: "stop"``, a usage chunk (the client asks for ``include_usage``) and
  ``data: [DONE]``. Each request takes the next scripted reply, in order.
- ``POST /v1/audio/speech`` answers with audio of the requested text, ``audio_seconds(text)``
  long: with ``stream_format: "sse"`` (what the plugin asks of ``gpt-4o-mini-tts``) as
  ``speech.audio.delta`` events carrying base64 chunks of the encoded audio, then
  ``speech.audio.done``; otherwise as the encoded bytes themselves. ``response_format``
  ``"pcm"`` is raw PCM16 24 kHz mono; ``"mp3"`` (the plugin's default) is a real MP3 file
  encoded at request time with libmp3lame through PyAV (a livekit-agents dependency).
- ``GET /v1/models`` answers a model list (the LLM's prewarm request).

Chat and speech requests are recorded (``chat_requests``, ``speech_requests``, in order).
Errors come in the service's JSON shape: 404 for any other path (recorded in
``other_requests``) and for a chat request with no reply left to give, 400 for a chat
request that does not stream or a ``response_format`` the server does not encode.
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from aiohttp import web

from .local_server import LocalServer

SAMPLE_RATE = 24000
MP3_FRAME = 576
"""Samples per MP3 frame at 24 kHz (MPEG-2 layer III)."""
SECONDS_PER_CHAR = MP3_FRAME / SAMPLE_RATE
"""Audio per non-whitespace character of the input: one MP3 frame, 0.024 s."""

_ids = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{next(_ids):06d}"


def audio_seconds(text: str) -> float:
    """How long the speech for ``text`` is: ``SECONDS_PER_CHAR`` per non-whitespace char.

    Whitespace does not count, so the total over a reply does not depend on where a
    sentence tokenizer cut it into requests.
    """
    return sum(not c.isspace() for c in text) * SECONDS_PER_CHAR


def _tone(samples: int, frequency: float) -> np.ndarray[Any, np.dtype[np.int16]]:
    t = np.arange(max(0, samples), dtype=np.float64) / SAMPLE_RATE
    return (0.3 * 32767 * np.sin(2 * math.pi * frequency * t)).astype(np.int16)


def pcm_speech(text: str) -> bytes:
    """The PCM16 24 kHz mono speech for ``text``: exactly ``audio_seconds(text)`` long."""
    samples = round(audio_seconds(text) * SAMPLE_RATE)
    return _tone(samples, 300.0 + 10 * (len(text) % 20)).tobytes()


def mp3_speech(text: str) -> bytes:
    """An MP3 file of the speech for ``text`` that decodes to ``audio_seconds(text)``.

    livekit decodes the body as a stream (a non-seekable libav input with low-latency
    options), which skips the gapless trimming a seekable decode does: it plays every frame
    LAME wrote, priming delay and end padding included. Measured with livekit-agents
    1.8.9's decoder, ``n`` input samples decode to ``ceil(n / 576) + 1`` frames. So the
    tone is one frame shorter than the target, a whole number of frames (one per
    character); ``TestProtocol`` checks the result through the plugin and that decoder.
    """
    frames = round(audio_seconds(text) / SECONDS_PER_CHAR)
    if frames < 2:
        raise ValueError("mp3_speech: needs at least two non-whitespace characters")
    pcm = _tone((frames - 1) * MP3_FRAME, 300.0 + 10 * (len(text) % 20))
    out = io.BytesIO()
    with av.open(out, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=SAMPLE_RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


ENCODERS: dict[str, tuple[str, Callable[[str], bytes]]] = {
    "pcm": ("audio/pcm", pcm_speech),
    "mp3": ("audio/mpeg", mp3_speech),
}
"""``response_format`` -> (content type of a plain audio body, encoder)."""


@dataclass
class ChatRequest:
    """One ``POST /v1/chat/completions``: its headers, its JSON body and the reply it got."""

    headers: dict[str, str]
    body: dict[str, Any]
    reply: str


@dataclass
class SpeechRequest:
    """One ``POST /v1/audio/speech``: its headers, its JSON body and the audio it got.

    Attributes:
        headers: The request headers.
        body: The JSON body (``input``, ``model``, ``voice``, ``response_format``, ...).
        audio: The encoded audio it was answered with (empty after an error).
    """

    headers: dict[str, str]
    body: dict[str, Any]
    audio: bytes = b""

    @property
    def text(self) -> str:
        """The text to speak (``input``)."""
        return str(self.body["input"])


class OpenAIHTTPServer(LocalServer):
    """The local server; ``base_url`` is what ``openai.LLM/TTS(base_url=...)`` take.

    Args:
        chunk_chars: Characters of text per chat completion delta.
        chunk_delay: Seconds between two chat completion deltas (a streaming model).
        audio_chunk_bytes: Encoded bytes per ``speech.audio.delta`` (or body write).
    """

    def __init__(
        self, *, chunk_chars: int = 7, chunk_delay: float = 0.002, audio_chunk_bytes: int = 4096
    ) -> None:
        super().__init__()
        self.chunk_chars = chunk_chars
        self.chunk_delay = chunk_delay
        self.audio_chunk_bytes = audio_chunk_bytes
        self.replies: deque[str] = deque()
        """Texts for the next chat completion requests, in order."""
        self.chat_requests: list[ChatRequest] = []
        self.speech_requests: list[SpeechRequest] = []
        self.other_requests: list[tuple[str, str]] = []
        """``(method, path)`` of every other request, in order."""

    def reply(self, *texts: str) -> None:
        """Queue the answers to the next chat completion requests."""
        self.replies.extend(texts)

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/chat/completions", self._chat)
        router.add_post("/v1/audio/speech", self._speech)
        router.add_get("/v1/models", self._models)
        router.add_route("*", "/{tail:.*}", self._not_found)

    # -- endpoints ----------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return _error(400, "invalid_request_error", "stream_required", "only streaming")
        if not self.replies:
            return _error(404, "invalid_request_error", "no_script", "no reply scripted")
        text = self.replies.popleft()
        self.chat_requests.append(ChatRequest(dict(request.headers), body, text))

        response = await _open_sse(request)
        base = {
            "id": _new_id("chatcmpl"),
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": body.get("model", ""),
            "system_fingerprint": None,
        }

        async def send(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> None:
            await _send_sse(response, {**base, "choices": choices, "usage": usage})

        def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

        await send([choice({"role": "assistant", "content": ""})])
        for start in range(0, len(text), self.chunk_chars):
            await asyncio.sleep(self.chunk_delay)
            await send([choice({"content": text[start : start + self.chunk_chars]})])
        await send([choice({}, "stop")])
        tokens = max(1, len(text) // 4)
        await send(
            [], {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens}
        )
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        record = SpeechRequest(dict(request.headers), body)
        self.speech_requests.append(record)
        fmt = body.get("response_format", "mp3")
        if fmt not in ENCODERS:
            return _error(400, "invalid_request_error", "unsupported_format", f"no {fmt!r}")
        content_type, encode = ENCODERS[fmt]
        audio = record.audio = encode(record.text)
        chunks = [
            audio[i : i + self.audio_chunk_bytes]
            for i in range(0, len(audio), self.audio_chunk_bytes)
        ]
        if body.get("stream_format") == "sse":
            response = await _open_sse(request)
            for chunk in chunks:
                delta = {"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode()}
                await _send_sse(response, delta)
            tokens = max(1, len(record.text) // 4)
            usage = {"input_tokens": tokens, "output_tokens": 0, "total_tokens": tokens}
            await _send_sse(response, {"type": "speech.audio.done", "usage": usage})
        else:
            response = await _open(request, content_type)
            for chunk in chunks:
                await response.write(chunk)
        await response.write_eof()
        return response

    async def _models(self, request: web.Request) -> web.Response:
        self.other_requests.append((request.method, request.path))
        return web.json_response(
            {"object": "list", "data": [{"id": "gpt-4.1", "object": "model", "owned_by": "test"}]}
        )

    async def _not_found(self, request: web.Request) -> web.Response:
        self.other_requests.append((request.method, request.path))
        return _error(404, "invalid_request_error", "unknown_url", f"no {request.path}")


async def _open_sse(request: web.Request) -> web.StreamResponse:
    return await _open(request, "text/event-stream")


async def _open(request: web.Request, content_type: str) -> web.StreamResponse:
    # the clients read the request id from this header (the service always sends it)
    headers = {"Content-Type": content_type, "x-request-id": _new_id("req")}
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    return response


async def _send_sse(response: web.StreamResponse, event: dict[str, Any]) -> None:
    await response.write(f"data: {json.dumps(event)}\n\n".encode())


def _error(status: int, type_: str, code: str, message: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": type_, "param": None, "code": code}},
        status=status,
    )
