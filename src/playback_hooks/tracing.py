"""Opt-in OpenTelemetry spans, one per message playback, in livekit-agents' own traces."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from livekit.agents import AgentSession
from livekit.agents.telemetry import trace_types
from livekit.agents.telemetry import tracer as _livekit_tracer
from livekit.agents.voice.events import SpeechCreatedEvent
from livekit.agents.voice.speech_handle import SpeechHandle
from opentelemetry import context as otel_context

from . import _livekit
from .events import MessagePlaybackFinished, MessagePlaybackStarted
from .signals import message_playback_finished, message_playback_started
from .tracker import PlaybackTracker

__all__ = ["SPAN_NAME", "enable_tracing"]

SPAN_NAME = "message_playback"
"""The name of every span ``enable_tracing()`` creates."""

# How many speeches' parent contexts are remembered (oldest forgotten first).
_REMEMBERED_SPEECHES = 64

# One tracing per session: enabling twice must not double the spans.
_enabled: weakref.WeakKeyDictionary[AgentSession[Any], _MessageSpans] = weakref.WeakKeyDictionary()


class _MessageSpans:
    """Turns one session's finished events into spans with the playback's own start and end.

    A span is created when its message's finished event arrives, with explicit start and end
    times (``started_at`` / ``finished_at``), so it measures what the user heard, not when the
    event was delivered. Its parent is the speech's ``agent_turn`` span when livekit has one
    open (remembered when the message starts, as the turn closes with the speech), else the
    context that was current when tracing was enabled (the ``agent_session`` span when
    ``enable_tracing()`` runs right after ``await session.start()``).
    """

    def __init__(self, session: AgentSession[Any]) -> None:
        self._session = session
        self._fallback = otel_context.get_current()
        self._handles: dict[str, weakref.ref[SpeechHandle]] = {}
        # kept past the speech's end: its messages' finished events may come after it
        self._parents: OrderedDict[str, otel_context.Context] = OrderedDict()
        self._enabled = True
        session.on("speech_created", self._on_speech_created)
        message_playback_started.connect(self._on_started, sender=session, weak=False)
        message_playback_finished.connect(self._on_finished, sender=session, weak=False)

    def disable(self) -> None:
        if not self._enabled:
            return
        self._enabled = False
        self._session.off("speech_created", self._on_speech_created)
        message_playback_started.disconnect(self._on_started, sender=self._session)
        message_playback_finished.disconnect(self._on_finished, sender=self._session)
        self._handles.clear()
        self._parents.clear()
        if _enabled.get(self._session) is self:
            del _enabled[self._session]

    def _on_speech_created(self, ev: SpeechCreatedEvent) -> None:
        handle = ev.speech_handle
        self._handles[handle.id] = weakref.ref(handle)
        handle.add_done_callback(self._on_speech_done)

    def _on_speech_done(self, handle: SpeechHandle) -> None:
        # the finished events of the speech's messages may still be queued for delivery:
        # keep what they need until then, but no handle (it would outlive its speech)
        self._handles.pop(handle.id, None)

    def _parent(self, speech_id: str) -> otel_context.Context | None:
        parent = self._parents.get(speech_id)
        if parent is None:
            ref = self._handles.get(speech_id)
            handle = ref() if ref is not None else None
            if handle is not None:
                parent = _livekit.speech_trace_context(handle)
            if parent is not None:
                self._parents[speech_id] = parent
                while len(self._parents) > _REMEMBERED_SPEECHES:
                    self._parents.popitem(last=False)
        return parent

    def _on_started(self, sender: Any, *, event: MessagePlaybackStarted, **_: Any) -> None:
        self._parent(event.speech_id)

    def _on_finished(self, sender: Any, *, event: MessagePlaybackFinished, **_: Any) -> None:
        parent = self._parent(event.speech_id) or self._fallback
        start = event.started_at if event.started_at is not None else event.finished_at
        span = _livekit_tracer.start_span(
            SPAN_NAME,
            context=parent,
            start_time=_ns(start),
            attributes={
                "playback_hooks.message_id": event.message_id,
                "playback_hooks.speech_id": event.speech_id,
                trace_types.ATTR_SPEECH_ID: event.speech_id,
                "playback_hooks.index": event.index,
                "playback_hooks.source": event.source,
                "playback_hooks.played": event.played,
                "playback_hooks.interrupted": event.interrupted,
                "playback_hooks.playback_position": event.playback_position,
            },
        )
        span.end(end_time=_ns(max(start, event.finished_at)))


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def enable_tracing(target: AgentSession[Any] | PlaybackTracker) -> Callable[[], None]:
    """Create an OpenTelemetry span for every message playback of a session.

    Each span is named ``message_playback``, starts at the message's ``started_at`` and
    ends at its ``finished_at`` (a skipped message gets a zero-length span at
    ``finished_at``), and carries the attributes ``playback_hooks.message_id``,
    ``playback_hooks.speech_id`` (also as livekit's ``lk.speech_id``),
    ``playback_hooks.index``, ``playback_hooks.source``, ``playback_hooks.played``,
    ``playback_hooks.interrupted`` and ``playback_hooks.playback_position``. Spans are
    created through livekit-agents' own tracer, so they go to the provider given to
    ``livekit.agents.telemetry.set_tracer_provider()`` and sit under the speech's
    ``agent_turn`` span. Nothing is recorded until a provider is set.

    Call it after ``await session.start(...)``; it works with or without a tracker
    attached yet. Calling it twice for one session changes nothing.

    Returns:
        A function that turns the spans off again.

    Raises:
        TypeError: ``target`` is neither an ``AgentSession`` nor a ``PlaybackTracker``.
    """
    if isinstance(target, PlaybackTracker):
        session = target.session
    elif isinstance(target, AgentSession):
        session = target
    else:
        raise TypeError(
            "enable_tracing(): target must be an AgentSession or a PlaybackTracker, "
            f"got {type(target).__name__}"
        )
    spans = _enabled.get(session)
    if spans is None:
        spans = _enabled[session] = _MessageSpans(session)
    return spans.disable
