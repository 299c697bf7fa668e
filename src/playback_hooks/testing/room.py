"""Two linked in-process rooms: what passes between the agent and one other participant.

livekit's avatar plugins send the agent's audio to an avatar worker through
``DataStreamAudioOutput``; the worker receives it with ``DataStreamAudioReceiver``, plays it
with ``AvatarRunner`` and reports back over RPC. ``RoomPair`` carries what passes between
those two participants, in process, so that all of livekit's avatar code runs unchanged with
no LiveKit server. It also carries data packets (``publish_data()``), so the other side can
stand for the app's frontend receiving what the agent publishes. Each side gets a
``LinkedRoom`` to pass where livekit wants an ``rtc.Room`` (``LinkedRoom.as_rtc_room()``
types it as one).

Which part of ``rtc.Room`` it provides: exactly the members that livekit-agents 1.8's avatar
code touches (``DataStreamAudioOutput``, ``DataStreamAudioReceiver``, ``AvatarRunner``,
``AvatarSession`` outside a job, and the ``utils.wait_for_participant()`` /
``utils.wait_for_track_publication()`` calls they make), data packets, and nothing else:

- ``Room``: ``isconnected()``, ``on()`` / ``off()``, ``local_participant``,
  ``remote_participants``, ``register_byte_stream_handler()``, ``name``.
- Events it emits: ``connection_state_changed``, ``participant_connected`` then
  ``participant_active``, ``participant_disconnected``, ``track_published``,
  ``local_track_published``, ``data_received`` (with a real ``rtc.DataPacket``: ``data``
  as bytes, ``kind`` ``rtc.DataPacketKind.KIND_RELIABLE`` or ``KIND_LOSSY``, the sender as
  ``participant``, ``topic``); also ``connected`` and ``disconnected`` on its own
  connection.
- ``LocalParticipant``: ``identity``, ``register_rpc_method()`` (also as a decorator),
  ``perform_rpc()``, ``stream_bytes()``, ``publish_track()``, ``track_publications``,
  ``publish_data(payload, *, reliable=True, destination_identities=[], topic="")`` (the
  signature of livekit (rtc) 1.1.17 - 1.1.21: a ``str`` payload is sent as UTF-8, an empty
  ``destination_identities`` sends to everyone, a room that is not connected raises
  ``PublishDataError``), and the private dict ``_rpc_handlers``, which livekit's avatar
  code reads to register its RPC methods only once.
- ``RemoteParticipant``: ``identity``, ``kind``, ``state``, ``track_publications``.
- Track publications: ``kind`` (and ``sid``, ``name``); ``wait_for_subscription()``
  returns at once, as if a user were subscribed.
- ``ByteStreamWriter``: ``write()``, ``aclose()``. ``ByteStreamReader``: ``info`` (a real
  ``rtc.ByteStreamInfo``; ``attributes`` gain the trailer's, as in livekit) and async
  iteration over the chunks, ending in ``rtc.StreamError`` if the stream is cut by a
  disconnection.
- RPC errors, as ``rtc.RpcError``: ``UNSUPPORTED_METHOD`` (nothing registered),
  ``RECIPIENT_NOT_FOUND`` (nobody with that identity in the room), ``APPLICATION_ERROR``
  (the handler raised something else than an ``RpcError``, which is passed through as is),
  ``RESPONSE_TIMEOUT`` (the handler outlived ``response_timeout``),
  ``RECIPIENT_DISCONNECTED`` (a side left while the call was pending),
  ``REQUEST_PAYLOAD_TOO_LARGE`` / ``RESPONSE_PAYLOAD_TOO_LARGE`` (over 15 KiB), and
  ``SEND_FAILED`` from a room that is not connected.

Everything travels one way at a time, first in first out, ``RoomPair.latency`` seconds late
(0 by default: the next loop iteration): stream headers, chunks and trailers, RPC calls and
answers, data packets, and the news that a participant joined, published a track or left.
A real room may drop a lossy packet (``reliable=False``) or deliver it out of order; the
pair delivers every packet, in order, and records its ``reliable`` flag. Every transmission
delivered is kept in ``RoomPair.transmissions``, with the times it was sent and delivered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any, Literal, TypeVar, cast, overload

from livekit import rtc
from livekit.rtc.participant import PublishDataError

__all__ = [
    "Transmission",
    "TransmissionKind",
    "LinkedByteStreamReader",
    "LinkedByteStreamWriter",
    "LinkedLocalParticipant",
    "LinkedRemoteParticipant",
    "LinkedRoom",
    "LinkedTrackPublication",
    "RoomPair",
]

logger = logging.getLogger("playback_hooks.testing.room")

# returns the answer (str or None), or an awaitable of it
RpcHandler = Callable[[rtc.RpcInvocationData], Any]
_H = TypeVar("_H", bound=RpcHandler)

TransmissionKind = Literal[
    "rpc", "rpc_response", "stream_header", "stream_chunk", "stream_trailer", "data"
]
"""What a ``Transmission`` carried."""

# livekit's limit for an RPC request or response payload, in bytes (UTF-8)
MAX_RPC_PAYLOAD = 15 * 1024
# livekit's data stream chunk size: longer writes arrive as several chunks
STREAM_CHUNK_SIZE = 15_000
DEFAULT_RESPONSE_TIMEOUT = 15.0
_DISCONNECTED = "Disconnected while receiving"

# rtc.RpcInvocationData gained ``method`` in livekit (rtc) 1.1.18; livekit-agents 1.8.0 pins 1.1.17
_INVOCATION_HAS_METHOD = "method" in {f.name for f in dataclasses.fields(rtc.RpcInvocationData)}


def _rpc_error(code: rtc.RpcError.ErrorCode) -> rtc.RpcError:
    return rtc.RpcError(code, rtc.RpcError.ErrorMessage[code])


def _invocation(
    request_id: str, caller: str, payload: str, timeout: float, method: str
) -> rtc.RpcInvocationData:
    if _INVOCATION_HAS_METHOD:
        return rtc.RpcInvocationData(request_id, caller, payload, timeout, method=method)
    return rtc.RpcInvocationData(request_id, caller, payload, timeout)


@dataclass(frozen=True, slots=True)
class Transmission:
    """One transmission the pair carried from one room to the other, when it arrived.

    Attributes:
        kind: ``"rpc"`` (a call reaching the callee), ``"rpc_response"`` (its answer reaching
            the caller), ``"stream_header"``, ``"stream_chunk"``, ``"stream_trailer"`` or
            ``"data"`` (a data packet, ``publish_data()``).
        sender: The identity of the participant that sent it.
        receiver: The identity of the participant it was delivered to.
        name: The RPC method, or the stream's or data packet's topic.
        id: The RPC request id, the stream id, or the data packet's own id.
        payload: The RPC payload or response payload, a data packet's bytes decoded as UTF-8
            (invalid bytes replaced); ``""`` for streams.
        error: The ``rtc.RpcError`` code of an answer that is an error, else None.
        size: The bytes in a stream chunk or a data packet (0 for the rest).
        sent_at: When it was sent (``time.time()``).
        delivered_at: When it arrived (``time.time()``).
        reliable: False for a data packet published with ``reliable=False`` (lossy: a real
            room may drop it, the pair delivers it all the same); True for everything else
            (livekit sends streams and RPC reliably).
    """

    kind: TransmissionKind
    sender: str
    receiver: str
    name: str
    id: str
    payload: str
    error: int | None
    size: int
    sent_at: float
    delivered_at: float
    reliable: bool = True


class _Link:
    """One direction between the two rooms: first in, first out, ``latency`` seconds late."""

    def __init__(self, pair: RoomPair) -> None:
        self._pair = pair
        self._queue: deque[tuple[float, Callable[[], None]]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._last_due = 0.0

    def send(self, deliver: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        # never overtake an earlier transmission, even when the latency was lowered since
        due = max(loop.time() + self._pair.latency, self._last_due)
        self._last_due = due
        self._queue.append((due, deliver))
        if self._timer is None:
            self._timer = loop.call_at(due, self._run, loop)

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        # what is sent while delivering goes out no earlier than the next iteration
        while self._queue and self._queue[0][0] <= now:
            _, deliver = self._queue.popleft()
            try:
                deliver()
            except Exception:
                logger.exception("RoomPair: delivering a transmission failed")
        if self._queue:
            self._timer = loop.call_at(self._queue[0][0], self._run, loop)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()


class LinkedTrackPublication:
    """A published track, as the publisher and the other side see it."""

    def __init__(self, sid: str, name: str, kind: rtc.TrackKind.ValueType) -> None:
        self.sid = sid
        self.name = name
        self.kind = kind

    def _copy(self) -> LinkedTrackPublication:
        return LinkedTrackPublication(self.sid, self.name, self.kind)

    async def wait_for_subscription(self) -> None:
        """Return at once: a user is always subscribed to what is published here."""

    def __repr__(self) -> str:
        return f"LinkedTrackPublication(sid={self.sid!r}, name={self.name!r}, kind={self.kind})"


class LinkedRemoteParticipant:
    """The other side's participant, as a room sees it (stands in for ``RemoteParticipant``)."""

    def __init__(self, identity: str, kind: rtc.ParticipantKind.ValueType) -> None:
        self.identity = identity
        self.kind = kind
        self.state: rtc.ParticipantState.ValueType = rtc.ParticipantState.PARTICIPANT_STATE_JOINED
        self._publications: dict[str, LinkedTrackPublication] = {}

    @property
    def track_publications(self) -> Mapping[str, LinkedTrackPublication]:
        """The tracks it published, by sid."""
        return MappingProxyType(self._publications)

    def __repr__(self) -> str:
        return f"LinkedRemoteParticipant(identity={self.identity!r})"


class LinkedByteStreamReader:
    """An incoming byte stream (stands in for ``rtc.ByteStreamReader``)."""

    def __init__(self, info: rtc.ByteStreamInfo, sender: str) -> None:
        self._info = info
        self._sender = sender
        self._chunks: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self._ended: BaseException | Literal[False] | None = False

    @property
    def info(self) -> rtc.ByteStreamInfo:
        """The stream's id, topic, attributes (the trailer's merged in at the end), etc."""
        return self._info

    def __aiter__(self) -> LinkedByteStreamReader:
        return self

    async def __anext__(self) -> bytes:
        if self._ended is not False:
            raise StopAsyncIteration
        item = await self._chunks.get()
        if isinstance(item, bytes):
            return item
        self._ended = item
        if item is not None:
            raise item
        raise StopAsyncIteration

    def _push(self, item: bytes | BaseException | None) -> None:
        self._chunks.put_nowait(item)


class LinkedByteStreamWriter:
    """An outgoing byte stream (stands in for ``rtc.ByteStreamWriter``)."""

    def __init__(self, room: LinkedRoom, info: rtc.ByteStreamInfo, destinations: list[str]):
        self._room = room
        self._info = info
        self._destinations = destinations
        self._closed = False

    async def write(self, data: bytes) -> None:
        """Send ``data`` (in chunks of at most 15,000 bytes, as livekit does)."""
        if self._closed:
            raise RuntimeError("Cannot write after stream is closed")
        if not self._room.isconnected():
            raise rtc.StreamError("room is not connected")
        data = bytes(data)
        # nothing is sent for no data: livekit's readers skip empty chunks
        for offset in range(0, len(data), STREAM_CHUNK_SIZE):
            self._room._streams.send(
                self, "stream_chunk", data[offset : offset + STREAM_CHUNK_SIZE]
            )

    async def aclose(self, *, reason: str = "", attributes: dict[str, str] | None = None) -> None:
        """End the stream; ``attributes`` are merged into the reader's ``info.attributes``."""
        if self._closed:
            raise RuntimeError("Stream already closed")
        self._closed = True
        if not self._room.isconnected():
            raise rtc.StreamError("room is not connected")
        self._room._streams.send(self, "stream_trailer", b"", dict(attributes or {}))


class LinkedLocalParticipant:
    """This room's own participant (stands in for ``rtc.LocalParticipant``)."""

    def __init__(self, room: LinkedRoom, identity: str) -> None:
        self._room = room
        self.identity = identity
        # read by livekit's avatar code (DataStreamAudioOutput, DataStreamAudioReceiver)
        self._rpc_handlers: dict[str, RpcHandler] = {}
        self._publications: dict[str, LinkedTrackPublication] = {}

    @property
    def track_publications(self) -> Mapping[str, LinkedTrackPublication]:
        """The tracks it published, by sid."""
        return MappingProxyType(self._publications)

    @overload
    def register_rpc_method(self, method_name: str, handler: _H) -> _H: ...

    @overload
    def register_rpc_method(self, method_name: str, handler: None = None) -> Callable[[_H], _H]: ...

    def register_rpc_method(
        self, method_name: str, handler: _H | None = None
    ) -> _H | Callable[[_H], _H]:
        """Answer calls of ``method_name`` with ``handler`` (sync or async); or decorate one."""

        def register(fn: _H) -> _H:
            self._rpc_handlers[method_name] = fn
            return fn

        return register(handler) if handler is not None else register

    async def perform_rpc(
        self,
        *,
        destination_identity: str,
        method: str,
        payload: str,
        response_timeout: float | None = None,
        max_round_trip_latency: float | None = None,
    ) -> str:
        """Call ``method`` of the participant ``destination_identity``; return its answer.

        Raises:
            rtc.RpcError: The call failed (see the module docstring for the codes).
        """
        return await self._room._rpc.perform(
            destination_identity,
            method,
            payload,
            DEFAULT_RESPONSE_TIMEOUT if response_timeout is None else response_timeout,
        )

    async def stream_bytes(
        self,
        name: str,
        *,
        total_size: int | None = None,
        mime_type: str = "application/octet-stream",
        attributes: dict[str, str] | None = None,
        stream_id: str | None = None,
        destination_identities: list[str] | None = None,
        topic: str = "",
    ) -> LinkedByteStreamWriter:
        """Open a byte stream to ``destination_identities`` (everyone when None)."""
        room = self._room
        if not room.isconnected():
            raise rtc.StreamError("room is not connected")
        info = rtc.ByteStreamInfo(
            stream_id=stream_id or f"BS_{next(room._pair._ids)}",
            mime_type=mime_type,
            topic=topic,
            timestamp=int(time.time() * 1000),
            size=total_size or 0,
            attributes=dict(attributes or {}),
            name=name,
        )
        everyone = list(room.remote_participants)
        destinations = everyone if destination_identities is None else destination_identities
        writer = LinkedByteStreamWriter(room, info, list(destinations))
        room._streams.send(writer, "stream_header", b"")
        return writer

    async def publish_track(
        self, track: rtc.LocalTrack, options: rtc.TrackPublishOptions
    ) -> LinkedTrackPublication:
        """Publish ``track``: ``local_track_published`` here, ``track_published`` there."""
        room = self._room
        publication = LinkedTrackPublication(f"TR_{next(room._pair._ids)}", track.name, track.kind)
        self._publications[publication.sid] = publication
        room.emit("local_track_published", publication, track)
        room._announce_track(publication)
        return publication

    async def publish_data(
        self,
        payload: bytes | str,
        *,
        reliable: bool = True,
        destination_identities: Sequence[str] = (),
        topic: str = "",
    ) -> None:
        """Send a data packet to ``destination_identities`` (everyone when empty).

        The receiving side emits ``data_received`` with an ``rtc.DataPacket``. A lossy packet
        (``reliable=False``) is delivered like the others, and recorded as lossy.

        Raises:
            PublishDataError: The room is not connected (``livekit.rtc.participant``).
        """
        room = self._room
        if not room.isconnected():
            raise PublishDataError("room is not connected")
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        room._packets.send(data, reliable, list(destination_identities), topic)

    def __repr__(self) -> str:
        return f"LinkedLocalParticipant(identity={self.identity!r})"


class LinkedRoom(rtc.EventEmitter[str]):
    """One side of a ``RoomPair``: stands in for the ``rtc.Room`` that side is connected to.

    It provides only what livekit's avatar I/O uses, and data packets (listed in the module
    docstring).
    """

    def __init__(self, pair: RoomPair, identity: str, name: str) -> None:
        super().__init__()
        self._pair = pair
        self._name = name
        self._local = LinkedLocalParticipant(self, identity)
        self._remote: dict[str, LinkedRemoteParticipant] = {}
        self._state: rtc.ConnectionState.ValueType = rtc.ConnectionState.CONN_DISCONNECTED
        self._streams = _Streams(self)
        self._packets = _Packets(self)
        self._rpc = _Rpc(self)

    # -- rtc.Room ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The room's name."""
        return self._name

    @property
    def local_participant(self) -> LinkedLocalParticipant:
        """This side's participant."""
        return self._local

    @property
    def remote_participants(self) -> Mapping[str, LinkedRemoteParticipant]:
        """The other side's participant while both are connected, by identity."""
        return MappingProxyType(self._remote)

    def isconnected(self) -> bool:
        """Whether this side is connected."""
        return self._state == rtc.ConnectionState.CONN_CONNECTED

    def register_byte_stream_handler(self, topic: str, handler: Callable[[Any, str], None]) -> None:
        """Call ``handler(reader, sender_identity)`` for each incoming stream on ``topic``.

        Raises:
            ValueError: A handler for ``topic`` is already registered (as in livekit).
        """
        if topic in self._streams.handlers:
            raise ValueError(f"byte stream handler for topic '{topic}' already set")
        self._streams.handlers[topic] = handler

    # -- the stand-in's own ------------------------------------------------------------------

    @property
    def identity(self) -> str:
        """The identity of this side's participant."""
        return self._local.identity

    def as_rtc_room(self) -> rtc.Room:
        """This room, typed as the ``rtc.Room`` it stands in for (to pass to livekit)."""
        return cast(rtc.Room, self)

    async def connect(self) -> None:
        """Join: the other side, if connected, sees this participant arrive."""
        if self.isconnected():
            return
        self._state = rtc.ConnectionState.CONN_CONNECTED
        peer = self._pair._peer(self)
        if peer.isconnected():
            # already in the room: known at once, with what it published, and no events
            present = self._pair._participant_seen_by(self)
            present.state = rtc.ParticipantState.PARTICIPANT_STATE_ACTIVE
            for publication in peer._local._publications.values():
                present._publications[publication.sid] = publication._copy()
            self._remote[present.identity] = present
            self._pair._link(self).send(lambda: peer._participant_joined(self))
        self.emit("connection_state_changed", self._state)
        self.emit("connected")

    async def disconnect(self) -> None:
        """Leave: pending calls and open streams fail; the other side sees this one leave."""
        if not self.isconnected():
            return
        self._state = rtc.ConnectionState.CONN_DISCONNECTED
        peer = self._pair._peer(self)
        self._remote.clear()
        self._fail_pending()
        self._pair._link(self).send(lambda: peer._participant_left(self))
        self.emit("connection_state_changed", self._state)
        self.emit("disconnected", rtc.DisconnectReason.CLIENT_INITIATED)
        tasks = list(self._rpc.answering)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __repr__(self) -> str:
        return f"LinkedRoom(identity={self.identity!r}, connected={self.isconnected()})"

    # -- presence ----------------------------------------------------------------------------

    def _participant_joined(self, other: LinkedRoom) -> None:
        if not self.isconnected() or not other.isconnected():
            return
        participant = self._pair._participant_seen_by(self)
        self._remote[participant.identity] = participant
        self.emit("participant_connected", participant)
        participant.state = rtc.ParticipantState.PARTICIPANT_STATE_ACTIVE
        self.emit("participant_active", participant)
        # what it published before this side could see it
        for publication in other._local._publications.values():
            self._track_published(other, publication)
        self._pair._notify()

    def _participant_left(self, other: LinkedRoom) -> None:
        participant = self._remote.pop(other.identity, None)
        self._fail_pending(other.identity)
        if participant is not None and self.isconnected():
            participant.state = rtc.ParticipantState.PARTICIPANT_STATE_DISCONNECTED
            self.emit("participant_disconnected", participant)

    def _announce_track(self, publication: LinkedTrackPublication) -> None:
        peer = self._pair._peer(self)
        if self.isconnected() and peer.isconnected():
            self._pair._link(self).send(lambda: peer._track_published(self, publication))

    def _track_published(self, other: LinkedRoom, publication: LinkedTrackPublication) -> None:
        participant = self._remote.get(other.identity)
        if participant is None or publication.sid in participant._publications:
            return
        seen = publication._copy()
        participant._publications[seen.sid] = seen
        self.emit("track_published", seen, participant)

    def _fail_pending(self, identity: str | None = None) -> None:
        """Fail the calls to ``identity`` (all when None) and its (all) incoming streams."""
        self._rpc.fail(identity)
        self._streams.fail(identity)


class _Streams:
    """One side's byte streams: sent to the other side, and received from it."""

    def __init__(self, room: LinkedRoom) -> None:
        self._room = room
        self.handlers: dict[str, Callable[[LinkedByteStreamReader, str], None]] = {}
        self._readers: dict[str, LinkedByteStreamReader] = {}  # open incoming streams, by id

    def fail(self, identity: str | None) -> None:
        """Cut the open incoming streams from ``identity`` (all when None)."""
        for stream_id, reader in list(self._readers.items()):
            if identity is None or reader._sender == identity:
                del self._readers[stream_id]
                reader._push(rtc.StreamError(_DISCONNECTED))

    def send(
        self,
        writer: LinkedByteStreamWriter,
        kind: TransmissionKind,
        data: bytes,
        attributes: dict[str, str] | None = None,
    ) -> None:
        room = self._room
        peer = room._pair._peer(room)
        if peer.identity not in writer._destinations:
            return
        info = writer._info
        sent_at = time.time()
        sender = room.identity

        def deliver() -> None:
            peer._streams.delivered(kind, sender, info, data, attributes or {}, sent_at)

        room._pair._link(room).send(deliver)

    def delivered(
        self,
        kind: TransmissionKind,
        sender: str,
        info: rtc.ByteStreamInfo,
        data: bytes,
        attributes: dict[str, str],
        sent_at: float,
    ) -> None:
        room = self._room
        if not room.isconnected() or sender not in room._remote:
            return
        room._pair._record(
            kind, sender, room.identity, info.topic, info.stream_id, "", None, len(data), sent_at
        )
        if kind == "stream_header":
            handler = self.handlers.get(info.topic)
            if handler is None:
                logger.info("RoomPair: no handler for byte stream topic %r, ignored", info.topic)
                return
            own_info = dataclasses.replace(info, attributes=dict(info.attributes or {}))
            reader = LinkedByteStreamReader(own_info, sender)
            self._readers[info.stream_id] = reader
            handler(reader, sender)
            return
        reader_or_none = self._readers.get(info.stream_id)
        if reader_or_none is None:
            return
        if kind == "stream_chunk":
            reader_or_none._push(data)
        else:
            del self._readers[info.stream_id]
            merged = {**(reader_or_none.info.attributes or {}), **attributes}
            reader_or_none.info.attributes = merged
            reader_or_none._push(None)


class _Packets:
    """One side's data packets: sent to the other side, and received from it."""

    def __init__(self, room: LinkedRoom) -> None:
        self._room = room

    def send(self, data: bytes, reliable: bool, destinations: list[str], topic: str) -> None:
        room = self._room
        peer = room._pair._peer(room)
        if peer.identity not in room._remote or (
            destinations and peer.identity not in destinations
        ):
            return  # nobody to send it to
        packet_id = f"DP_{next(room._pair._ids)}"
        sent_at = time.time()
        sender = room.identity

        def deliver() -> None:
            peer._packets.delivered(sender, packet_id, data, reliable, topic, sent_at)

        room._pair._link(room).send(deliver)

    def delivered(
        self, sender: str, packet_id: str, data: bytes, reliable: bool, topic: str, sent_at: float
    ) -> None:
        room = self._room
        participant = room._remote.get(sender)
        if not room.isconnected() or participant is None:
            return
        room._pair._record(
            "data",
            sender,
            room.identity,
            topic,
            packet_id,
            data.decode("utf-8", errors="replace"),
            None,
            len(data),
            sent_at,
            reliable=reliable,
        )
        kind = rtc.DataPacketKind.KIND_RELIABLE if reliable else rtc.DataPacketKind.KIND_LOSSY
        packet = rtc.DataPacket(
            data=data,
            kind=kind,
            participant=cast(rtc.RemoteParticipant, participant),
            topic=topic,
        )
        room.emit("data_received", packet)


class _Rpc:
    """One side's RPC: its calls to the other side, and the answers to the other side's."""

    def __init__(self, room: LinkedRoom) -> None:
        self._room = room
        self._calls: dict[str, tuple[str, asyncio.Future[str]]] = {}  # pending outgoing calls
        self.answering: set[asyncio.Task[None]] = set()  # incoming calls being handled

    def fail(self, identity: str | None) -> None:
        """Fail the pending calls to ``identity`` (all when None)."""
        for request_id, (callee, fut) in list(self._calls.items()):
            if identity is None or callee == identity:
                del self._calls[request_id]
                if not fut.done():
                    fut.set_exception(_rpc_error(rtc.RpcError.ErrorCode.RECIPIENT_DISCONNECTED))

    async def perform(
        self, destination: str, method: str, payload: str, response_timeout: float
    ) -> str:
        room = self._room
        if not room.isconnected():
            raise _rpc_error(rtc.RpcError.ErrorCode.SEND_FAILED)
        if len(payload.encode()) > MAX_RPC_PAYLOAD:
            raise _rpc_error(rtc.RpcError.ErrorCode.REQUEST_PAYLOAD_TOO_LARGE)
        if destination not in room._remote:
            raise _rpc_error(rtc.RpcError.ErrorCode.RECIPIENT_NOT_FOUND)
        peer = room._pair._peer(room)
        request_id = f"RPC_{next(room._pair._ids)}"
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._calls[request_id] = (destination, fut)
        sent_at = time.time()
        caller = room.identity

        def deliver() -> None:
            peer._rpc.delivered(caller, request_id, method, payload, response_timeout, sent_at)

        room._pair._link(room).send(deliver)
        try:
            return await fut
        finally:
            self._calls.pop(request_id, None)

    def delivered(
        self,
        caller: str,
        request_id: str,
        method: str,
        payload: str,
        response_timeout: float,
        sent_at: float,
    ) -> None:
        room = self._room
        if not room.isconnected() or caller not in room._remote:
            return
        room._pair._record(
            "rpc", caller, room.identity, method, request_id, payload, None, 0, sent_at
        )
        data = _invocation(request_id, caller, payload, response_timeout, method)
        task = asyncio.get_running_loop().create_task(self._answer(data, method))
        self.answering.add(task)
        task.add_done_callback(self.answering.discard)

    async def _answer(self, data: rtc.RpcInvocationData, method: str) -> None:
        error: rtc.RpcError | None = None
        response = ""
        try:
            response = await asyncio.wait_for(self._invoke(data, method), data.response_timeout)
        except rtc.RpcError as e:
            error = e
        except asyncio.TimeoutError:
            error = _rpc_error(rtc.RpcError.ErrorCode.RESPONSE_TIMEOUT)
        except Exception:
            logger.exception(
                "Uncaught error returned by RPC handler for %s. Returning APPLICATION_ERROR "
                "instead.",
                method,
            )
            error = _rpc_error(rtc.RpcError.ErrorCode.APPLICATION_ERROR)
        if error is None and len(response.encode()) > MAX_RPC_PAYLOAD:
            error = _rpc_error(rtc.RpcError.ErrorCode.RESPONSE_PAYLOAD_TOO_LARGE)
        room = self._room
        if not room.isconnected():
            return  # the caller's call already failed with RECIPIENT_DISCONNECTED
        peer = room._pair._peer(room)
        sent_at = time.time()
        callee = room.identity

        def deliver() -> None:
            peer._rpc.answered(callee, data.request_id, method, response, error, sent_at)

        room._pair._link(room).send(deliver)

    async def _invoke(self, data: rtc.RpcInvocationData, method: str) -> str:
        handler = self._room._local._rpc_handlers.get(method)
        if handler is None:
            raise _rpc_error(rtc.RpcError.ErrorCode.UNSUPPORTED_METHOD)
        result = handler(data)
        if inspect.isawaitable(result):
            result = await result
        return "" if result is None else str(result)

    def answered(
        self,
        callee: str,
        request_id: str,
        method: str,
        response: str,
        error: rtc.RpcError | None,
        sent_at: float,
    ) -> None:
        call = self._calls.pop(request_id, None)
        if call is None:
            return  # failed already (a side disconnected)
        code = None if error is None else error.code
        room = self._room
        room._pair._record(
            "rpc_response", callee, room.identity, method, request_id, response, code, 0, sent_at
        )
        _, fut = call
        if fut.done():
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(response)


class RoomPair:
    """An in-process room with two participants: the agent and the avatar worker.

    ``agent_room`` and ``avatar_room`` are the two sides' ``LinkedRoom``s; pass
    ``agent_room.as_rtc_room()`` to ``DataStreamAudioOutput`` and ``avatar_room`` to
    ``AvatarWorker`` (or ``avatar_room.as_rtc_room()`` to livekit's receiver and runner).
    The other side can also stand for the app's frontend (``RoomPair(avatar_identity=
    "frontend")``), listening to ``data_received`` on ``avatar_room`` for what the agent
    publishes with ``publish_data()``. Both start disconnected: ``await pair.connect()``,
    or ``async with RoomPair() as pair``, which also disconnects both at the end.

    Args:
        agent_identity: The agent's participant identity.
        avatar_identity: The identity of the other participant (the avatar worker).
        latency: Seconds every transmission takes from one side to the other (one way).
        name: The room's name, on both sides.
    """

    def __init__(
        self,
        *,
        agent_identity: str = "agent",
        avatar_identity: str = "avatar-worker",
        latency: float = 0.0,
        name: str = "offline-room",
    ) -> None:
        if agent_identity == avatar_identity:
            raise ValueError("RoomPair: the two identities must differ")
        self.latency = latency
        """Seconds every transmission takes from one side to the other; may be changed any
        time (a transmission never overtakes an earlier one)."""
        self.transmissions: list[Transmission] = []
        """Every transmission delivered, in the order it arrived."""
        self._ids = itertools.count(1)
        self._changed: asyncio.Event | None = None
        self.agent_room = LinkedRoom(self, agent_identity, name)
        """The agent's side."""
        self.avatar_room = LinkedRoom(self, avatar_identity, name)
        """The avatar worker's side."""
        self._links = {id(self.agent_room): _Link(self), id(self.avatar_room): _Link(self)}

    @property
    def latency(self) -> float:
        """Seconds every transmission takes from one side to the other (one way)."""
        return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("RoomPair: latency must be >= 0")
        self._latency = float(seconds)

    @property
    def agent_identity(self) -> str:
        """The agent's participant identity."""
        return self.agent_room.identity

    @property
    def avatar_identity(self) -> str:
        """The avatar worker's participant identity."""
        return self.avatar_room.identity

    async def connect(self) -> None:
        """Connect both sides (the agent's first); return once each one sees the other."""
        await self.agent_room.connect()
        await self.avatar_room.connect()
        changed = self._changed_event()
        while self.avatar_identity not in self.agent_room.remote_participants:
            changed.clear()
            await changed.wait()

    async def aclose(self) -> None:
        """Disconnect both sides and drop what is still in flight."""
        await self.avatar_room.disconnect()
        await self.agent_room.disconnect()
        for link in self._links.values():
            link.close()

    async def __aenter__(self) -> RoomPair:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def rpcs(self, method: str | None = None) -> list[Transmission]:
        """The RPC calls delivered (of ``method``, or all), in the order they arrived."""
        return [
            d
            for d in self.transmissions
            if d.kind == "rpc" and (method is None or d.name == method)
        ]

    def packets(self, topic: str | None = None) -> list[Transmission]:
        """The data packets delivered (on ``topic``, or all), in the order they arrived."""
        return [
            d for d in self.transmissions if d.kind == "data" and (topic is None or d.name == topic)
        ]

    async def wait_for_rpc(
        self, method: str, count: int = 1, *, timeout: float = 10.0
    ) -> list[Transmission]:
        """Wait until ``count`` calls of ``method`` were delivered; return all of them."""

        async def _wait() -> list[Transmission]:
            while len(calls := self.rpcs(method)) < count:
                changed = self._changed_event()
                changed.clear()
                await changed.wait()
            return calls

        return await asyncio.wait_for(_wait(), timeout)

    # -- internals ---------------------------------------------------------------------------

    def _changed_event(self) -> asyncio.Event:
        # created on first use, so that a pair made outside a running loop works on any loop
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _peer(self, room: LinkedRoom) -> LinkedRoom:
        return self.avatar_room if room is self.agent_room else self.agent_room

    def _link(self, sender: LinkedRoom) -> _Link:
        return self._links[id(sender)]

    def _participant_seen_by(self, room: LinkedRoom) -> LinkedRemoteParticipant:
        # avatar workers join with an agent token, like the agent itself
        return LinkedRemoteParticipant(
            self._peer(room).identity, rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        )

    def _record(
        self,
        kind: TransmissionKind,
        sender: str,
        receiver: str,
        name: str,
        ident: str,
        payload: str,
        error: int | None,
        size: int,
        sent_at: float,
        *,
        reliable: bool = True,
    ) -> None:
        self.transmissions.append(
            Transmission(
                kind,
                sender,
                receiver,
                name,
                ident,
                payload,
                error,
                size,
                sent_at,
                time.time(),
                reliable,
            )
        )
        self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
