"""A local server speaking the OpenAI Realtime protocol, scripted by the tests.

It runs on 127.0.0.1 (a free port) with ``aiohttp.web`` websockets and answers the client
in ``livekit.agents.llm._realtime.openai`` (what ``livekit.plugins.openai.realtime
.RealtimeModel(base_url=...)`` uses) the way the real service does: ``session.created`` on
connect, ``session.updated`` for every ``session.update``, ``conversation.item.added`` /
``.deleted`` / ``.truncated`` for the client's item events, and for each response the GA
event sequence (``response.created``, then per item ``response.output_item.added``,
``conversation.item.added``, ``response.content_part.added``, transcript and PCM16 24 kHz
audio deltas paced like a streaming model, ``response.output_item.done``), then
``response.done``. ``response.cancel`` stops the response in progress the way the service
does (the open item ends ``incomplete``, ``response.done`` says ``cancelled``), and so does
the user starting to speak (``input_audio_buffer.speech_started``, as with
``interrupt_response``). One response at a time: a ``response.create`` while one is being
generated gets the service's ``conversation_already_has_active_response`` error.

A test queues ``Response`` scripts (for any connection, or for the n-th one): each
``response.create`` the client sends takes the next one (its ``metadata.client_event_id`` is
echoed, which is how the client matches the response to its ``generate_reply()``);
``Connection.server_turn()`` starts one the way server-side turn detection does, without
any request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from .local_server import LocalServer

SAMPLE_RATE = 24000

_ids = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):06d}"


@dataclass(frozen=True)
class Say:
    """An assistant message item: transcript deltas and, unless text-only, audio deltas.

    Attributes:
        id: The item id the server assigns (``response.output_item.added``).
        transcript: The words, spread over the audio chunks.
        audio_seconds: Seconds of PCM16 24 kHz audio; None for a text-only item, sent as
            ``response.output_text.delta`` in a ``text`` content part.
    """

    id: str
    transcript: str
    audio_seconds: float | None = 0.6


@dataclass(frozen=True)
class Call:
    """A function call item: the model asks the client to run a tool."""

    id: str
    name: str
    arguments: str = "{}"

    @property
    def call_id(self) -> str:
        return f"call_{self.id}"


@dataclass(frozen=True)
class Fail:
    """An ``error`` event sent in the middle of a response (the response goes on)."""

    code: str
    message: str
    type: str = "server_error"


Step = Say | Call | Fail


@dataclass
class Response:
    """A scripted response.

    Attributes:
        items: What it produces, in order.
        audio_gate: If set, the first audio delta of the response waits until it is set
            (the model is "thinking": the client already knows the first item).
        status: How ``response.done`` ends it when it is not cancelled (``"completed"``
            or ``"failed"``).
        response_id: The ``response.id`` the server gives it.
        done: Set once ``response.done`` was sent.
    """

    items: Sequence[Step]
    audio_gate: asyncio.Event | None = None
    status: str = "completed"
    response_id: str = field(default_factory=lambda: _new_id("resp"))
    done: asyncio.Event = field(default_factory=asyncio.Event)


def pcm16(seconds: float, frequency: float = 440.0) -> bytes:
    """``seconds`` of a mono PCM16 24 kHz tone."""
    n = round(seconds * SAMPLE_RATE)
    t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
    return (0.3 * 32767 * np.sin(2 * math.pi * frequency * t)).astype(np.int16).tobytes()


class Connection:
    """One client connection: what the client sent, and the conversation as the server has it."""

    def __init__(self, server: RealtimeServer, ws: web.WebSocketResponse, request: web.Request):
        self.server = server
        self.path = request.path
        self.query = dict(request.query)
        self.headers = dict(request.headers)
        self.received: list[dict[str, Any]] = []
        """Every client event except ``input_audio_buffer.append``, in order."""
        self.conversation: list[str] = []
        """Item ids of the server-side conversation, in order."""
        self.responses: list[Response] = []
        """Every response started on this connection, in order."""
        self._ws = ws
        self._active: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._send_lock = asyncio.Lock()

    # -- what the tests call ---------------------------------------------------------------

    def server_turn(self, response: Response, *, user_spoke: bool = True) -> None:
        """Start ``response`` as server-side turn detection does, unasked by the client.

        With ``user_spoke``, the user's speech is announced first
        (``input_audio_buffer.speech_started`` / ``speech_stopped`` / ``committed`` and the
        user item); without, the response just starts (as after the detector's idle
        timeout). Either way it has no ``client_event_id``: the client did not ask for it.
        """
        if user_spoke:
            self._spawn(self._server_turn(response))
        else:
            self._start(response, None)

    def speech_started(self) -> None:
        """The server's voice activity detection hears the user start to speak (barge-in).

        Like the service with ``interrupt_response``, it cancels the response in progress.
        """
        self._spawn(self._speech_started(_new_id("item_user")))

    def received_types(self) -> list[str]:
        """The ``type`` of every client event received, in order."""
        return [ev["type"] for ev in self.received]

    async def wait_received(
        self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Wait for (or return) the first client event matching ``predicate``."""

        async def _wait() -> dict[str, Any]:
            while True:
                for ev in self.received:
                    if predicate(ev):
                        return ev
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(_wait(), timeout)

    # -- protocol ---------------------------------------------------------------------------

    async def run(self) -> None:
        await self._send(
            {
                "type": "session.created",
                "session": {
                    "id": _new_id("sess"),
                    "object": "realtime.session",
                    "type": "realtime",
                    "model": self.query.get("model", ""),
                },
            }
        )
        try:
            async for msg in self._ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                event = json.loads(msg.data)
                if event.get("type") != "input_audio_buffer.append":
                    self.received.append(event)
                    self._changed.set()
                await self._handle(event)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "session.update":
            await self._send({"type": "session.updated", "session": event.get("session", {})})
        elif kind == "conversation.item.create":
            item = dict(event["item"])
            item.setdefault("id", _new_id("item"))
            item.setdefault("object", "realtime.item")
            item.setdefault("status", "completed")
            previous = event.get("previous_item_id")
            if previous == "root":
                previous = None
            elif previous is None or previous not in self.conversation:
                previous = self.conversation[-1] if self.conversation else None
            if item["id"] in self.conversation:
                await self._error(
                    "invalid_request_error",
                    "item_create_duplicate_item_id",
                    f"Item with id {item['id']} already exists",
                    event.get("event_id"),
                )
                return
            index = self.conversation.index(previous) + 1 if previous is not None else 0
            self.conversation.insert(index, item["id"])
            await self._send(
                {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
            )
            await self._send(
                {"type": "conversation.item.done", "previous_item_id": previous, "item": item}
            )
        elif kind == "conversation.item.delete":
            item_id = event["item_id"]
            if item_id not in self.conversation:
                await self._error(
                    "invalid_request_error",
                    "item_not_found",
                    f"Item with id {item_id} not found",
                    event.get("event_id"),
                )
                return
            self.conversation.remove(item_id)
            await self._send({"type": "conversation.item.deleted", "item_id": item_id})
        elif kind == "conversation.item.truncate":
            await self._send(
                {
                    "type": "conversation.item.truncated",
                    "item_id": event["item_id"],
                    "content_index": event.get("content_index", 0),
                    "audio_end_ms": event["audio_end_ms"],
                }
            )
        elif kind == "response.create":
            metadata = (event.get("response") or {}).get("metadata")
            if self.active:
                await self._error(
                    "invalid_request_error",
                    "conversation_already_has_active_response",
                    "Conversation already has an active response in progress",
                    event.get("event_id"),
                )
                return
            replies = self.server.replies_for(self)
            if not replies:
                await self._error(
                    "invalid_request_error",
                    "no_script",
                    "the test scripted no response for this request",
                    event.get("event_id"),
                )
                return
            self._start(replies.popleft(), metadata)
        elif kind == "response.cancel":
            if self._active is None or self._active.done():
                await self._error(
                    "invalid_request_error",
                    "response_cancel_not_active",
                    "Cancellation failed: no active response found",
                    event.get("event_id"),
                )
                return
            self._active.cancel()

    @property
    def active(self) -> bool:
        """Whether a response is being generated."""
        return self._active is not None and not self._active.done()

    def _start(self, response: Response, metadata: dict[str, Any] | None) -> None:
        if self.active:
            raise RuntimeError("the test started a response while another one is generating")
        self.responses.append(response)
        self._active = self._spawn(self._respond(response, metadata))

    async def _speech_started(self, user_item: str) -> None:
        await self._send(
            {"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": user_item}
        )
        if self._active is not None and not self._active.done():
            # the detector interrupts the response in progress (interrupt_response)
            self._active.cancel()
            await asyncio.gather(self._active, return_exceptions=True)

    async def _server_turn(self, response: Response) -> None:
        user_item = _new_id("item_user")
        await self._speech_started(user_item)
        await self._send(
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 800, "item_id": user_item}
        )
        previous = self.conversation[-1] if self.conversation else None
        await self._send(
            {
                "type": "input_audio_buffer.committed",
                "item_id": user_item,
                "previous_item_id": previous,
            }
        )
        item = {
            "id": user_item,
            "object": "realtime.item",
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self.conversation.append(user_item)
        await self._send(
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
        )
        self._start(response, None)

    async def _respond(self, response: Response, metadata: dict[str, Any] | None) -> None:
        rid = response.response_id
        base = {
            "id": rid,
            "object": "realtime.response",
            "metadata": metadata,
            "output_modalities": ["audio"],
            "conversation_id": "conv_test",
        }
        await self._send(
            {
                "type": "response.created",
                "response": {**base, "status": "in_progress", "output": []},
            }
        )
        output: list[dict[str, Any]] = []
        status, details = response.status, None
        open_item: dict[str, Any] | None = None
        try:
            gate = response.audio_gate
            for index, step in enumerate(response.items):
                if isinstance(step, Fail):
                    await self._error(step.type, step.code, step.message, None)
                    continue
                open_item = item = self._new_item(step)
                await self._send(
                    {
                        "type": "response.output_item.added",
                        "response_id": rid,
                        "output_index": index,
                        "item": item,
                    }
                )
                previous = self.conversation[-1] if self.conversation else None
                self.conversation.append(item["id"])
                await self._send(
                    {"type": "conversation.item.added", "previous_item_id": previous, "item": item}
                )
                if isinstance(step, Say):
                    await self._stream_message(rid, index, step, item, gate)
                    gate = None
                else:
                    await self._stream_call(rid, index, step, item)
                item["status"] = "completed"
                open_item = None
                output.append(item)
                await self._send(
                    {
                        "type": "response.output_item.done",
                        "response_id": rid,
                        "output_index": index,
                        "item": item,
                    }
                )
                await self._send({"type": "conversation.item.done", "item": item})
            if status == "failed":
                details = {
                    "type": "failed",
                    "error": {"type": "server_error", "code": "server_error"},
                }
        except asyncio.CancelledError:
            status, details = "cancelled", {"type": "cancelled", "reason": "client_cancelled"}
            if open_item is not None:
                open_item["status"] = "incomplete"
                output.append(open_item)
                await self._send(
                    {
                        "type": "response.output_item.done",
                        "response_id": rid,
                        "output_index": len(output) - 1,
                        "item": open_item,
                    }
                )
        await self._send(
            {
                "type": "response.done",
                "response": {
                    **base,
                    "status": status,
                    "status_details": details,
                    "output": output,
                    "usage": {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0},
                },
            }
        )
        response.done.set()

    @staticmethod
    def _new_item(step: Say | Call) -> dict[str, Any]:
        if isinstance(step, Say):
            return {
                "id": step.id,
                "object": "realtime.item",
                "type": "message",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
        return {
            "id": step.id,
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "call_id": step.call_id,
            "name": step.name,
            "arguments": "",
        }

    async def _stream_message(
        self, rid: str, index: int, step: Say, item: dict[str, Any], gate: asyncio.Event | None
    ) -> None:
        ids = {"response_id": rid, "item_id": step.id, "output_index": index, "content_index": 0}
        audio = step.audio_seconds is not None
        part: dict[str, Any] = (
            {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
        )
        await self._send({"type": "response.content_part.added", **ids, "part": part})
        words = step.transcript.split(" ")
        pace = self.server.pace
        if step.audio_seconds is not None:
            if gate is not None:
                await gate.wait()
            pcm = pcm16(step.audio_seconds)
            step_bytes = round(self.server.chunk_seconds * SAMPLE_RATE) * 2
            chunks = [pcm[i : i + step_bytes] for i in range(0, len(pcm), step_bytes)]
            per_chunk = math.ceil(len(words) / max(1, len(chunks)))
            for n, chunk in enumerate(chunks):
                text = " ".join(words[n * per_chunk : (n + 1) * per_chunk])
                if text:
                    if n:
                        text = " " + text
                    await self._send(
                        {"type": "response.output_audio_transcript.delta", **ids, "delta": text}
                    )
                await self._send(
                    {
                        "type": "response.output_audio.delta",
                        **ids,
                        "delta": base64.b64encode(chunk).decode(),
                    }
                )
                await asyncio.sleep(self.server.chunk_seconds / pace)
            await self._send({"type": "response.output_audio.done", **ids})
            await self._send(
                {
                    "type": "response.output_audio_transcript.done",
                    **ids,
                    "transcript": step.transcript,
                }
            )
            content = {"type": "output_audio", "transcript": step.transcript}
        else:
            for n, word in enumerate(words):
                await self._send(
                    {
                        "type": "response.output_text.delta",
                        **ids,
                        "delta": word if n == 0 else " " + word,
                    }
                )
                await asyncio.sleep(self.server.chunk_seconds / pace)
            await self._send({"type": "response.output_text.done", **ids, "text": step.transcript})
            content = {"type": "output_text", "text": step.transcript}
        await self._send({"type": "response.content_part.done", **ids, "part": part})
        item["content"] = [content]

    async def _stream_call(self, rid: str, index: int, step: Call, item: dict[str, Any]) -> None:
        ids = {
            "response_id": rid,
            "item_id": step.id,
            "output_index": index,
            "call_id": step.call_id,
        }
        await self._send(
            {"type": "response.function_call_arguments.delta", **ids, "delta": step.arguments}
        )
        await self._send(
            {"type": "response.function_call_arguments.done", **ids, "arguments": step.arguments}
        )
        item["arguments"] = step.arguments

    async def _error(self, type_: str, code: str, message: str, event_id: str | None) -> None:
        await self._send(
            {
                "type": "error",
                "error": {
                    "type": type_,
                    "code": code,
                    "message": message,
                    "param": None,
                    "event_id": event_id,
                },
            }
        )

    async def _send(self, event: dict[str, Any]) -> None:
        event = {"event_id": _new_id("event"), **event}
        async with self._send_lock:
            if not self._ws.closed:
                with contextlib.suppress(ConnectionResetError):
                    await self._ws.send_str(json.dumps(event))

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


class RealtimeServer(LocalServer):
    """The local server; ``base_url`` is what ``RealtimeModel(base_url=...)`` takes.

    Args:
        pace: How many times faster than real time audio deltas are sent.
        chunk_seconds: Seconds of audio per ``response.output_audio.delta``.
    """

    def __init__(self, *, pace: float = 8.0, chunk_seconds: float = 0.1) -> None:
        super().__init__()
        self.pace = pace
        self.chunk_seconds = chunk_seconds
        self.replies: deque[Response] = deque()
        """Scripts for the next ``response.create`` requests, in order."""
        self._replies_on: dict[int, deque[Response]] = {}
        self.connections: list[Connection] = []
        self._connected = asyncio.Event()

    def reply(self, *responses: Response | Sequence[Step], connection: int | None = None) -> None:
        """Queue the answers to the next ``response.create`` requests.

        With ``connection``, only requests on the ``connection``-th client connection (0 for
        the first, which may not exist yet) take them, before any queued for all.
        """
        queue = (
            self.replies if connection is None else self._replies_on.setdefault(connection, deque())
        )
        for r in responses:
            queue.append(r if isinstance(r, Response) else Response(list(r)))

    def replies_for(self, conn: Connection) -> deque[Response]:
        """The scripts the next ``response.create`` on ``conn`` takes from."""
        own = self._replies_on.get(self.connections.index(conn))
        return own if own else self.replies

    async def connection(self, index: int = 0, *, timeout: float = 10.0) -> Connection:
        """Wait for (or return) the ``index``-th client connection."""

        async def _wait() -> Connection:
            while len(self.connections) <= index:
                self._connected.clear()
                await self._connected.wait()
            return self.connections[index]

        return await asyncio.wait_for(_wait(), timeout)

    def routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/realtime", self._serve)

    async def _serve(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = Connection(self, ws, request)
        self.connections.append(conn)
        self._connected.set()
        await conn.run()
        return ws
