"""``MessageBoundary`` markers and the ``@track_messages`` decorator for ``llm_node``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

from livekit.agents import Agent
from livekit.agents.llm import ChatChunk
from livekit.agents.types import FlushSentinel

from . import _livekit
from ._ledger import ledger_for
from ._log import guarded, logger
from ._messages import Announced
from .events import EMPTY_METADATA
from .ids import check_message_id, check_metadata

__all__ = ["MessageBoundary", "UntrackedNodes", "track_messages"]

F = TypeVar("F", bound=Callable[..., Any])

# Set on the function @track_messages returns, so an attached tracker knows the node is
# tracked and need not watch it for stray markers.
TRACKED_ATTR = "__playback_hooks_tracked__"


class MessageBoundary(FlushSentinel):
    """Starts a new message in an ``llm_node`` stream, with its id and metadata.

    It is a livekit ``FlushSentinel``: livekit ends the current audio segment there, so the
    text after it is synthesized and played as its own segment. ``@track_messages`` on the
    ``llm_node`` gives that segment this id and metadata in the playback events.

    Args:
        id: The message id reported in the events. A non-empty str.
        metadata: Any mapping; the events carry a read-only copy.

    Raises:
        TypeError: ``id`` is not a str or ``metadata`` is not a mapping.
        ValueError: ``id`` is empty or uses the prefix reserved for automatic ids.
    """

    __slots__ = ("_id", "_metadata")

    def __init__(self, id: str, *, metadata: Mapping[str, Any] | None = None) -> None:
        self._id = check_message_id(id, "MessageBoundary", "id", given=True)
        self._metadata = check_metadata(metadata, "MessageBoundary")

    @property
    def id(self) -> str:
        """The message id."""
        return self._id

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The read-only metadata."""
        return self._metadata

    def __repr__(self) -> str:
        return f"MessageBoundary({self._id!r}, metadata={dict(self._metadata)!r})"


def track_messages(fn: F) -> F:
    """Decorate an ``llm_node`` so the ``MessageBoundary`` markers it yields name messages.

    Every audio segment livekit will create from the node's output becomes one message:
    the text after a marker gets the marker's id and metadata; text before the first marker
    or after a plain ``FlushSentinel`` gets an automatic id. A marker followed by no text
    (another marker, or the end of the stream) still becomes a message, finished as
    ``"skipped"``.

    Raises:
        TypeError: ``fn`` is not an async function or async generator function.
    """
    if not (inspect.isasyncgenfunction(fn) or inspect.iscoroutinefunction(fn)):
        raise TypeError(
            "track_messages decorates an llm_node (an async generator or async function "
            f"taking the agent, chat_ctx, tools and model_settings), got {fn!r}"
        )

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return _wrap_stream(fn(*args, **kwargs), _track)

    setattr(wrapper, TRACKED_ATTR, True)
    return wrapper  # type: ignore[return-value]


def _wrap_stream(result: Any, wrap: Callable[[AsyncIterable[Any]], Any]) -> Any:
    """What an ``llm_node`` returned, with its stream (direct or awaited) passed to ``wrap``."""
    if inspect.iscoroutine(result):
        return _await_then_wrap(result, wrap)
    if isinstance(result, AsyncIterable):
        return wrap(result)
    return result


async def _await_then_wrap(coro: Any, wrap: Callable[[AsyncIterable[Any]], Any]) -> Any:
    result = await coro
    return wrap(result) if isinstance(result, AsyncIterable) else result


def _has_text(chunk: Any) -> bool:
    # Mirrors livekit's rule for what opens a segment: non-empty str content.
    if isinstance(chunk, str):
        return bool(chunk)
    if isinstance(chunk, ChatChunk):
        return bool(chunk.delta and chunk.delta.content)
    return False


async def _track(stream: AsyncIterable[Any]) -> AsyncIterator[Any]:
    """Yield ``stream`` unchanged while announcing one message per segment it will create."""
    handle = _livekit.current_speech()
    ledger = ledger_for(handle)

    def announce(message_id: str | None, metadata: Mapping[str, Any]) -> Announced | None:
        if ledger is None or handle is None:
            return None
        return guarded(ledger.announce, handle, message_id, metadata, "llm", has_segment=True)

    def no_segment(item: Announced | None) -> None:
        if ledger is not None and handle is not None and item is not None:
            guarded(ledger.no_segment, handle, item)

    iterator = stream.__aiter__()
    # A marker's message is announced when the marker comes (livekit may interrupt the
    # speech before its text does); it loses its segment if no text follows it.
    pending: Announced | None = None
    in_segment = False
    try:
        async for chunk in iterator:
            if isinstance(chunk, MessageBoundary):
                no_segment(pending)  # a marker followed by another
                pending = announce(chunk.id, chunk.metadata)
                in_segment = False
            elif isinstance(chunk, FlushSentinel):
                in_segment = False  # (sentinels in a row open nothing: a marker keeps waiting)
            elif not in_segment and _has_text(chunk):
                in_segment = True
                if pending is None:
                    announce(None, EMPTY_METADATA)
                pending = None
            yield chunk
    finally:
        no_segment(pending)
        await _close(iterator)


async def _close(iterator: AsyncIterator[Any]) -> None:
    # an async generator left early (livekit cancelled the node) is closed at once, not at
    # garbage collection
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


class UntrackedNodes:
    """Warns, once per agent class, when an ``llm_node`` without ``@track_messages`` yields
    ``MessageBoundary`` markers.

    Such markers still split the audio (they are ``FlushSentinel``s), but their ids are
    lost. Each agent watched gets an instance attribute shadowing its ``llm_node`` that
    passes every chunk through unchanged; ``close()`` removes them all.
    """

    def __init__(self) -> None:
        self._unwatch: dict[int, Callable[[], None]] = {}
        self._warned: set[type[Agent]] = set()

    def watch(self, agent: Agent) -> None:
        """Watch ``agent``'s ``llm_node``, unless it is tracked or already watched."""
        if id(agent) in self._unwatch:
            return
        node = type(agent).llm_node
        if getattr(node, TRACKED_ATTR, False) or "llm_node" in vars(agent):
            return
        bound = agent.llm_node

        def watched(*args: Any, **kwargs: Any) -> Any:
            return _wrap_stream(bound(*args, **kwargs), lambda s: self._watch(s, agent))

        agent.llm_node = watched  # type: ignore[method-assign]

        def unwatch() -> None:
            if vars(agent).get("llm_node") is watched:
                del agent.llm_node

        self._unwatch[id(agent)] = unwatch

    def close(self) -> None:
        """Stop watching every agent."""
        for unwatch in self._unwatch.values():
            unwatch()
        self._unwatch.clear()

    async def _watch(self, stream: AsyncIterable[Any], agent: Agent) -> AsyncIterator[Any]:
        iterator = stream.__aiter__()
        try:
            async for chunk in iterator:
                if isinstance(chunk, MessageBoundary):
                    self._warn(type(agent))
                yield chunk
        finally:
            await _close(iterator)

    def _warn(self, agent_type: type[Agent]) -> None:
        if agent_type in self._warned:
            return
        self._warned.add(agent_type)
        name = agent_type.__qualname__
        logger.warning(
            "%s.llm_node yields MessageBoundary markers but is not decorated with "
            "@playback_hooks.track_messages; the markers only split the audio and the "
            "messages get automatic ids",
            name,
            extra={"playback_hooks.agent": name},
        )
