"""The storm: many concurrent real AgentSessions in RoomIO's chain, each driven at random.

Each session runs livekit's ``TranscriptSynchronizer`` over a ``StormSink`` (a
``SimulatedSink`` that now and then refuses the first frame of a segment, raising in
``capture_frame``, or stalls before accepting it), and a seeded driver that, for
``seconds``, picks actions at random: replies (a ``@track_messages`` llm_node yielding one
to three ``MessageBoundary`` markers and text), ``say()`` with ``tracker.label()``,
``session.interrupt()``, attach before and after start, detach and re-attach, also in the
same loop iteration as a speech's creation (create-then-attach, label-then-detach,
detach-then-attach), ``await tracker.aclose()``, ``await tracker.wait_for()``, and
``wait_for_playout()``. Handlers of every kind are registered for the session (sync and
async functions, bound methods, ``functools.partial``, callable objects, raising ones, an
async ``cancel_on_partial=True`` one, a progress one in some sessions) and disconnected at
the end. Then every invariant is checked against what the sink itself did (see
``check_session``); the whole run also checks that no task is left, that every handler
exception was logged exactly once and that what playback_hooks keeps alive does not grow
with the number of messages.

The driver's choices are seeded per session (``random.Random(f"{seed}:...")`` for each step,
each sink segment and each handler call), so they do not depend on how many numbers an
earlier step drew; what livekit does with them still depends on real time. A failure
prints the session's seed and its action log; ``make storm STORM_SEED=<seed>`` replays that
session alone.

Run it with ``python -m tests.storm`` (``STORM_SESSIONS``, ``STORM_SECONDS``, ``STORM_SEED``,
``STORM_BASE``, ``STORM_SPEED``) or through ``tests/test_storm.py``.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import random
import re
import sys
import time
import types
import weakref
from collections import Counter, deque
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from livekit import rtc
from livekit.agents import Agent, AgentSession, ModelSettings, llm
from livekit.agents.types import FlushSentinel
from livekit.agents.voice.agent_activity import _SpeechHandleContextVar
from livekit.agents.voice.events import SpeechCreatedEvent
from livekit.agents.voice.speech_handle import SpeechHandle
from livekit.agents.voice.transcription import TranscriptSynchronizer

import playback_hooks as ph
from playback_hooks import _ledger, _session
from playback_hooks.testing import EventCollector, ScriptedLLM, SimulatedSink, SineTTS

from .chains import RecordingTextOutput

__all__ = [
    "SessionResult",
    "StormConfig",
    "StormResult",
    "StormSink",
    "check_session",
    "kept_by",
    "kind_of",
    "main",
    "run_session",
    "run_storm",
]

PLAYOUT_TIMEOUT = 10.0
"""Seconds any one speech may take to play out once the driver stops (a hang fails)."""

CLOSE_TIMEOUT = 15.0
"""Seconds a tracker or a session may take to close."""

WAIT_FOR_TIMEOUT = 20.0
"""Timeout of the driver's ``tracker.wait_for()`` calls."""

MAX_OUTSTANDING = 3
"""The driver creates no speech while this many of its speeches are not done."""

POSITION_TOLERANCE = 1e-3
"""Seconds: a position reported for a message against the one the sink reported."""

WORDS = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
    "sierra", "tango", "uniform", "victor", "whiskey", "yankee", "zulu",
]  # fmt: skip

STORM_TOKEN = "storm handler failure"
"""In the message of every exception the storm's raising handlers raise."""


def _rng(seed: int, *parts: object) -> random.Random:
    """An independent, reproducible stream for one decision of one session."""
    return random.Random(":".join([str(seed), *map(str, parts)]))


# -- the sink ------------------------------------------------------------------------------


@dataclass
class SegmentAttempt:
    """One first frame offered to the sink, and what the sink did with it."""

    speech_id: str | None
    outcome: Literal["refused", "stalled", "accepted"]
    stall: float = 0.0


class StormSink(SimulatedSink):
    """A ``SimulatedSink`` that sometimes refuses a segment's first frame or stalls on it.

    Decisions are drawn per first frame from ``random.Random(f"{seed}:sink:{k}")``. Every
    segment it played is in ``segments``; ``speech_of[i]`` is the id of the speech that
    ``segments[i]`` belongs to (``session.current_speech`` when its first frame came).
    """

    def __init__(
        self,
        seed: int,
        session: AgentSession[Any],
        *,
        refuse: float,
        stall: float,
        speed: float,
        log: Callable[[str], None],
    ) -> None:
        super().__init__(speed=speed)
        self._seed = seed
        # weak: a refused frame's traceback (kept by whoever logs it) must not keep the
        # session alive
        self._session = weakref.ref(session)
        self._refuse = refuse
        self._stall = stall
        self._log = log
        self.attempts: list[SegmentAttempt] = []
        self.speech_of: list[str | None] = []

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        if self._current is None:
            session = self._session()
            speech = session.current_speech if session is not None else None
            speech_id = speech.id if speech is not None else None
            draw = _rng(self._seed, "sink", len(self.attempts))
            roll = draw.random()
            if roll < self._refuse:
                self.attempts.append(SegmentAttempt(speech_id, "refused"))
                self._log(f"sink refuses the first frame of a segment of {speech_id}")
                raise RuntimeError("storm sink refused the segment")
            if roll < self._refuse + self._stall:
                stall = round(draw.uniform(0.05, 0.6), 3)
                self.attempts.append(SegmentAttempt(speech_id, "stalled", stall))
                self._log(f"sink stalls {stall} s on the first frame of {speech_id}")
                await asyncio.sleep(stall)
            else:
                self.attempts.append(SegmentAttempt(speech_id, "accepted"))
            try:
                await super().capture_frame(frame)
            finally:
                while len(self.speech_of) < len(self.segments):
                    self.speech_of.append(speech_id)
            return
        await super().capture_frame(frame)


# -- the agent -----------------------------------------------------------------------------

LEAD = "<lead>"
"""Stands for the text before the first marker in a script: the label's or an automatic id."""

ScriptItem = str | ph.MessageBoundary | float


@dataclass
class Yielded:
    """What an llm_node call yielded for one speech: message ids, and whether text followed."""

    ids: list[str] = field(default_factory=list)
    with_text: list[bool] = field(default_factory=list)
    ended: bool = False


class StormAgent(Agent):
    """Yields the script the driver set for the speech, and records what it yielded."""

    def __init__(self, driver: SessionDriver) -> None:
        super().__init__(instructions="storm agent")
        self.driver: SessionDriver | None = driver
        self.scripts: dict[str, list[ScriptItem]] = {}
        self.yielded: dict[str, Yielded] = {}

    async def on_enter(self) -> None:
        if self.driver is not None:
            self.driver.greet()

    @ph.track_messages
    async def llm_node(
        self,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        model_settings: ModelSettings,
    ) -> AsyncIterable[str | FlushSentinel]:
        # the speech this node runs for (livekit's contextvar: session.current_speech is not
        # the right one inside llm_node)
        handle = _SpeechHandleContextVar.get(None)
        if handle is None:
            return
        script = self.scripts.pop(handle.id, [])
        record = self.yielded.setdefault(handle.id, Yielded())
        for item in script:
            if isinstance(item, float):
                await asyncio.sleep(item)
                continue
            if isinstance(item, ph.MessageBoundary):
                record.ids.append(item.id)
                record.with_text.append(False)
            elif item:  # livekit opens a segment at any non-empty text, whitespace too
                if not record.ids:
                    record.ids.append(LEAD)
                    record.with_text.append(False)
                record.with_text[-1] = True
            yield item
        record.ended = True


# -- what the driver records -----------------------------------------------------------------


@dataclass
class SpeechRecord:
    """A speech of the session, as the driver saw it created."""

    handle: SpeechHandle
    number: int
    kind: str
    reported: bool
    """A tracker was attached when livekit emitted ``speech_created`` for it."""
    tracker: ph.PlaybackTracker | None
    """That tracker."""
    created_at: float
    """``time.time()`` when it was created."""
    label: str | None = None
    note: str = ""


@dataclass
class WaitRecord:
    """One ``tracker.wait_for()`` call and how it ended."""

    speech_id: str
    message_id: str
    kind: Literal["started", "finished"]
    outcome: str
    event: ph.MessagePlaybackStarted | ph.MessagePlaybackFinished | None = None
    not_played: ph.MessagePlaybackFinished | None = None
    tracker_attached_at_end: bool = True


@dataclass
class SessionResult:
    """What one session found."""

    seed: int
    violations: list[str]
    log: list[str]
    messages: int = 0
    speeches: int = 0
    raised: list[str] = field(default_factory=list)
    """Tokens of the exceptions its raising handlers raised."""
    segments: int = 0
    refused: int = 0
    stalled: int = 0
    session: weakref.ref[AgentSession[Any]] | None = field(default=None, repr=False)
    """The closed session, weakly: whether something still keeps it once the storm is over."""

    @property
    def failed(self) -> bool:
        return bool(self.violations)


# -- handlers of every kind ------------------------------------------------------------------

Key = tuple[str, int]


def _key(event: ph.Event) -> Key:
    return (event.speech_id, event.index)


class Handlers:
    """One of each handler kind, registered for one session, and what each received."""

    def __init__(self, driver: SessionDriver, *, progress: bool) -> None:
        self.driver = driver
        self.seed = driver.seed
        self.calls = 0
        self.sync_started: list[ph.MessagePlaybackStarted] = []
        self.method_started: list[ph.MessagePlaybackStarted] = []
        self.object_started: list[ph.MessagePlaybackStarted] = []
        self.partial_finished: list[ph.MessagePlaybackFinished] = []
        self.async_finished: list[ph.MessagePlaybackFinished] = []
        self.async_object_finished: list[ph.MessagePlaybackFinished] = []
        self.progressed: list[ph.MessagePlaybackProgressed] = []
        self.greeting_finished: list[ph.MessagePlaybackFinished] = []
        self.follow_started: list[Key] = []
        self.follow_cancelled: list[Key] = []
        self.follow_completed: list[Key] = []
        self.raised: list[str] = []
        self.violations: list[str] = []
        self._registered: list[Callable[..., object]] = []
        session = driver.session

        def sync_played(event: ph.MessagePlaybackStarted) -> None:
            self.sync_started.append(event)

        async def async_finished(event: ph.MessagePlaybackFinished) -> None:
            await asyncio.sleep(0)
            self.async_finished.append(event)

        def raising_played(event: ph.MessagePlaybackStarted) -> None:
            self._maybe_raise(event, "sync")

        async def raising_finished(event: ph.MessagePlaybackFinished) -> None:
            await asyncio.sleep(0)
            self._maybe_raise(event, "async")

        async def follow(event: ph.MessagePlaybackStarted) -> None:
            key = _key(event)
            self.follow_started.append(key)
            seconds = _rng(self.seed, "follow", len(self.follow_started)).uniform(0.05, 1.5)
            try:
                await asyncio.sleep(seconds)
            except asyncio.CancelledError:
                self.follow_cancelled.append(key)
                raise
            finished = self.driver.finished_event(key)
            if finished is not None and finished.played != "full":
                self.violations.append(
                    f"cancel_on_partial handler of {event.message_id!r} ({key}) completed "
                    f"after its message finished {finished.played}"
                )
            self.follow_completed.append(key)

        self._add(ph.on_message_played(session=session), sync_played)
        self._add(ph.on_message_played(session=session), raising_played)
        self._add(ph.on_message_played(session=session), self.method_played)
        self._add(ph.on_message_played(session=session), _CallableStarted(self.object_started))
        self._add(ph.on_message_played(session=session, cancel_on_partial=True), follow)
        self._add(ph.on_message_finished(session=session), async_finished)
        self._add(ph.on_message_finished(session=session), raising_finished)
        self._add(
            ph.on_message_finished(session=session),
            functools.partial(_append_finished, self.partial_finished),
        )
        self._add(
            ph.on_message_finished(session=session),
            _AsyncCallableFinished(self.async_object_finished),
        )
        self._add(
            ph.on_message_finished(session=session, message_id=driver.greeting_id),
            self.greeting_finished.append,
        )
        if progress:
            self._add(ph.on_message_progress(session=session), self.progressed.append)

    def _add(self, decorator: Callable[[Any], Any], handler: Callable[..., object]) -> None:
        decorator(handler)
        self._registered.append(handler)

    def method_played(self, event: ph.MessagePlaybackStarted) -> None:
        """A bound method handler."""
        self.method_started.append(event)

    def _maybe_raise(self, event: ph.Event, where: str) -> None:
        self.calls += 1
        if _rng(self.seed, "raise", where, self.calls).random() < 0.3:
            token = f"{STORM_TOKEN} {self.seed}/{where}/{self.calls}"
            self.raised.append(token)
            raise RuntimeError(token)

    def disconnect(self) -> None:
        """Disconnect every handler, the way an application would."""
        for handler in self._registered:
            if handler == self.method_played:
                ph.disconnect(self.method_played)  # a new bound-method object, equal
            else:
                ph.disconnect(handler)
        self._registered.clear()


def _append_finished(
    into: list[ph.MessagePlaybackFinished], event: ph.MessagePlaybackFinished
) -> None:
    into.append(event)


class _CallableStarted:
    """A callable object handler (sync ``__call__``)."""

    def __init__(self, into: list[ph.MessagePlaybackStarted]) -> None:
        self.into = into

    def __call__(self, event: ph.MessagePlaybackStarted) -> None:
        self.into.append(event)


class _AsyncCallableFinished:
    """A callable object handler with an ``async def __call__``."""

    def __init__(self, into: list[ph.MessagePlaybackFinished]) -> None:
        self.into = into

    async def __call__(self, event: ph.MessagePlaybackFinished) -> None:
        await asyncio.sleep(0)
        self.into.append(event)


# -- the driver ------------------------------------------------------------------------------

ACTIONS: list[tuple[str, int]] = [
    ("say", 14),
    ("reply", 14),
    ("interrupt", 6),
    ("attach", 4),
    ("detach", 4),
    ("create_then_attach", 4),
    ("label_then_detach", 4),
    ("detach_then_attach", 4),
    ("wait_for", 5),
    ("wait_for_background", 3),
    ("wait_playout", 3),
    ("sleep", 22),
]


class SessionDriver:
    """Drives one session for ``seconds``, then closes it and checks every invariant."""

    def __init__(
        self, seed: int, seconds: float, *, speed: float = 1.0, tracked: bool = True
    ) -> None:
        self.seed = seed
        self.seconds = seconds
        self.speed = speed
        self.tracked = tracked
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.log: list[str] = []
        self.violations: list[str] = []
        setup = _rng(seed, "setup")
        self.attach_before_start = setup.random() < 0.5
        self.progress = setup.random() < 0.4
        self.progress_interval = 0.2 if self.progress and setup.random() < 0.5 else None
        self.refuse = setup.choice([0.0, 0.05, 0.12])
        self.stall = setup.choice([0.0, 0.08, 0.2])
        self.greeting_id = f"greet-{seed}"
        self.session: AgentSession[Any] = AgentSession(llm=ScriptedLLM([]), tts=SineTTS())
        self.sink = StormSink(
            seed,
            self.session,
            refuse=self.refuse,
            stall=self.stall,
            speed=speed,
            log=_notes(self.log, self.loop, self.t0),
        )
        self.text = RecordingTextOutput()
        self.synchronizer = TranscriptSynchronizer(
            next_in_chain_audio=self.sink, next_in_chain_text=self.text
        )
        self.session.output.audio = self.synchronizer.audio_output
        self.session.output.transcription = self.synchronizer.text_output
        self.agent = StormAgent(self)
        self.collector = EventCollector(self.session, progress=self.progress)
        self.handlers = Handlers(self, progress=self.progress)
        self.trackers: list[ph.PlaybackTracker] = []
        self.speeches: dict[str, SpeechRecord] = {}
        self.waits: list[WaitRecord] = []
        self.background: list[asyncio.Task[None]] = []
        self.counter = 0
        self.interrupts: list[float] = []
        """``time.time()`` of each ``session.interrupt()`` and of the session's close."""
        self.session.on("speech_created", self._on_speech_created)

    # -- bookkeeping ---------------------------------------------------------------------

    def note(self, text: str) -> None:
        """Add a line to the action log."""
        self.log.append(_line(self.loop, self.t0, text))

    def _on_speech_created(self, ev: SpeechCreatedEvent) -> None:
        handle = ev.speech_handle
        tracker = ph.tracker_for(self.session)
        reported = tracker is not None
        self.counter += 1
        self.speeches[handle.id] = SpeechRecord(
            handle, self.counter, ev.source, reported, tracker, time.time()
        )
        self.note(f"speech_created {handle.id} ({ev.source}) reported={reported}")

    def finished_event(self, key: Key) -> ph.MessagePlaybackFinished | None:
        """The finished event of the message ``key`` delivered so far, if any."""
        for event in self.collector.finished:
            if _key(event) == key:
                return event
        return None

    @property
    def tracker(self) -> ph.PlaybackTracker | None:
        return ph.tracker_for(self.session)

    def _attach(self, why: str) -> ph.PlaybackTracker | None:
        if not self.tracked:
            self.note(f"attach ({why}) skipped: an untracked run")
            return None
        tracker = ph.attach(self.session, progress_interval=self.progress_interval)
        if tracker not in self.trackers:
            self.trackers.append(tracker)
        self.note(f"attach ({why}) -> tracker #{self.trackers.index(tracker)}")
        return tracker

    def _text(self, rng: random.Random) -> str:
        if rng.random() < 0.04:
            return " "  # a TTS that produces no audio
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6))).capitalize() + "."

    def _say(self, rng: random.Random, *, label: bool) -> SpeechHandle:
        text = self._text(rng)
        handle = self.session.say(text)
        record = self.speeches.get(handle.id)
        tracker = self.tracker
        if label and tracker is not None and record is not None and record.reported:
            record.label = f"say{record.number}"
            tracker.label(handle, record.label, metadata={"n": record.number})
        self.note(f"say {handle.id} {text!r} label={record.label if record else None}")
        return handle

    def _reply(self, rng: random.Random, *, label: bool) -> SpeechHandle:
        script: list[ScriptItem] = []
        lead = rng.random() < 0.25
        if lead:
            script.append(self._text(rng))
        n = self.counter + 1
        for k in range(rng.randint(1, 3)):
            if rng.random() < 0.4:
                script.append(round(rng.uniform(0.0, 0.25), 3))
            script.append(ph.MessageBoundary(f"r{n}m{k}", metadata={"k": k}))
            script.append(self._text(rng))
        handle = self.session.generate_reply()
        self.agent.scripts[handle.id] = script
        record = self.speeches.get(handle.id)
        tracker = self.tracker
        if lead and label and tracker is not None and record is not None and record.reported:
            record.label = f"reply{record.number}"
            tracker.label(handle, record.label)
        shown = [i.id if isinstance(i, ph.MessageBoundary) else i for i in script]
        self.note(f"reply {handle.id} {shown} label={record.label if record else None}")
        return handle

    def _create(self, rng: random.Random) -> SpeechHandle:
        if rng.random() < 0.5:
            return self._say(rng, label=rng.random() < 0.8)
        return self._reply(rng, label=rng.random() < 0.8)

    def greet(self) -> None:
        """The agent's on_enter: a greeting, labelled when a tracker is attached."""
        handle = self.session.say("Hello and welcome, how can I help?")
        tracker = self.tracker
        record = self.speeches.get(handle.id)
        if tracker is not None and record is not None and record.reported:
            record.label = self.greeting_id
            tracker.label(handle, self.greeting_id)
        self.note(f"greeting {handle.id} label={record.label if record else None}")

    def outstanding(self) -> int:
        return sum(1 for s in self.speeches.values() if not s.handle.done())

    # -- running -----------------------------------------------------------------------

    async def run(self) -> SessionResult:
        """Start, drive, close and check the session."""
        self.note(
            f"seed={self.seed} attach_before_start={self.attach_before_start} "
            f"progress={self.progress} interval={self.progress_interval} "
            f"refuse={self.refuse} stall={self.stall}"
        )
        if self.attach_before_start:
            self._attach("before start")
        await self.session.start(self.agent, record=False)
        self.note("started")
        if not self.attach_before_start and _rng(self.seed, "setup2").random() < 0.6:
            self._attach("after start")
        step = 0
        deadline = self.t0 + self.seconds
        while self.loop.time() < deadline:
            step += 1
            try:
                await self._step(step)
            except Exception as e:  # a public call refused what the driver did: a finding
                self.note(f"step {step} raised {e!r}")
                self.violations.append(f"step {step} raised {type(e).__name__}: {e}")
        self.note("driving over")
        await self._finish()
        result = self._result()
        self._forget()
        return result

    async def _step(self, step: int) -> None:
        rng = _rng(self.seed, "step", step)
        names = [name for name, _ in ACTIONS]
        weights = [weight for _, weight in ACTIONS]
        action = rng.choices(names, weights)[0]
        pause = round(rng.uniform(0.02, 0.6), 3)
        creates = action in (
            "say",
            "reply",
            "create_then_attach",
            "label_then_detach",
            "detach_then_attach",
        )
        tracker = self.tracker
        if creates and self.outstanding() >= MAX_OUTSTANDING:
            action = "sleep"
        if action in ("attach", "create_then_attach") and tracker is not None:
            action = "sleep"
        if action in ("detach", "label_then_detach", "detach_then_attach") and tracker is None:
            action = "sleep"

        if action == "say":
            self._say(rng, label=rng.random() < 0.7)
        elif action == "reply":
            self._reply(rng, label=rng.random() < 0.7)
        elif action == "interrupt":
            self.note("session.interrupt()")
            self.interrupts.append(time.time())
            fut = self.session.interrupt()
            if rng.random() < 0.5:
                try:
                    await asyncio.wait_for(asyncio.shield(fut), PLAYOUT_TIMEOUT)
                except asyncio.TimeoutError:
                    self.violations.append("session.interrupt() did not complete in time")
        elif action == "attach":
            self._attach("alone")
        elif action == "detach":
            assert tracker is not None
            await self._detach(tracker, rng.random() < 0.5)
        elif action == "create_then_attach":
            handle = self._create(rng)
            self._attach(f"same iteration, after creating {handle.id}")
        elif action == "label_then_detach":
            handle = self._say(rng, label=True)
            self.note(f"detach in the same iteration as {handle.id}")
            assert tracker is not None
            tracker.detach()
            if rng.random() < 0.4:
                self._attach("same iteration, after the detach")
        elif action == "detach_then_attach":
            assert tracker is not None
            self.note("detach, then attach in the same iteration")
            tracker.detach()
            self._attach("same iteration")
            self._create(rng)
        elif action in ("wait_for", "wait_for_background"):
            await self._wait_for(rng, background=action == "wait_for_background")
        elif action == "wait_playout":
            pending = [s for s in self.speeches.values() if not s.handle.done()]
            if pending:
                record = rng.choice(pending)
                self.note(f"wait_for_playout {record.handle.id}")
                await self._playout(record)
        else:
            await asyncio.sleep(pause)

    async def _detach(self, tracker: ph.PlaybackTracker, close: bool) -> None:
        number = self.trackers.index(tracker)
        if close:
            self.note(f"await tracker #{number}.aclose()")
            try:
                await asyncio.wait_for(tracker.aclose(), CLOSE_TIMEOUT)
            except asyncio.TimeoutError:
                self.violations.append(f"tracker #{number}.aclose() did not return in time")
        else:
            self.note(f"tracker #{number}.detach()")
            tracker.detach()

    async def _wait_for(self, rng: random.Random, *, background: bool) -> None:
        tracker = self.tracker
        if tracker is None:
            return
        # labelled says this tracker admitted, the newest ones
        candidates = [
            s
            for s in self.speeches.values()
            if s.label is not None and s.kind == "say" and s.tracker is tracker
        ][-3:]
        if not candidates:
            return
        record = rng.choice(candidates)
        assert record.label is not None
        kind: Literal["started", "finished"] = "started" if rng.random() < 0.5 else "finished"
        wait = WaitRecord(record.handle.id, record.label, kind, "pending")
        self.waits.append(wait)
        self.note(f"wait_for({record.label!r}, {kind!r}) background={background}")

        async def _wait() -> None:
            try:
                event = await tracker.wait_for(
                    wait.message_id, kind, speech=record.handle, timeout=WAIT_FOR_TIMEOUT
                )
            except ph.MessageNotPlayed as e:
                wait.outcome, wait.not_played = "not played", e.event
            except TimeoutError:
                wait.outcome = "timeout"
            except RuntimeError:
                wait.outcome = "detached"
            else:
                wait.outcome, wait.event = "event", event
            wait.tracker_attached_at_end = tracker.attached

        if background:
            self.background.append(asyncio.ensure_future(_wait()))
        else:
            await _wait()

    async def _playout(self, record: SpeechRecord) -> bool:
        try:
            await asyncio.wait_for(record.handle.wait_for_playout(), PLAYOUT_TIMEOUT)
        except asyncio.TimeoutError:
            self.violations.append(
                f"wait_for_playout() of {record.handle.id} ({record.kind}, "
                f"reported={record.reported}) did not return within {PLAYOUT_TIMEOUT} s"
            )
            return False
        return True

    async def _finish(self) -> None:
        records = list(self.speeches.values())
        results = await asyncio.gather(*(self._playout(r) for r in records))
        hung = [r for r, ok in zip(records, results, strict=True) if not ok]
        if hung:
            self.note(f"hung speeches: {[r.handle.id for r in hung]}")
        if self.background:
            _, pending = await asyncio.wait(self.background, timeout=WAIT_FOR_TIMEOUT + 5)
            for task in pending:
                task.cancel()
                self.violations.append("a background wait_for() did not end")
        end = _rng(self.seed, "end")
        session_first = end.random() < 0.5
        if session_first:
            self.note("session.aclose() (detaches), then every tracker's aclose()")
            await self._close_session()
        for number, tracker in enumerate(self.trackers):
            try:
                await asyncio.wait_for(tracker.aclose(), CLOSE_TIMEOUT)
            except asyncio.TimeoutError:
                self.violations.append(f"tracker #{number}.aclose() did not return in time")
                continue
            stats = tracker.stats()
            if stats != ph.TrackerStats(0, 0, 0, 0, stats.history, 0):
                self.violations.append(f"tracker #{number}.stats() after aclose(): {stats}")
        self.handlers.disconnect()
        self.collector.close()
        if not session_first:
            self.note("every tracker closed; session.aclose()")
            await self._close_session()
        await self.synchronizer.aclose()
        await self.sink.aclose()
        self.note("closed")

    async def _close_session(self) -> None:
        self.interrupts.append(time.time())  # closing interrupts what is still playing
        try:
            await asyncio.wait_for(self.session.aclose(), CLOSE_TIMEOUT)
        except asyncio.TimeoutError:
            self.violations.append("session.aclose() did not return in time")

    def _forget(self) -> None:
        # Drop what the driver itself keeps of the session (its records, events, trackers),
        # so that what is still alive after the storm is what playback_hooks or livekit keep.
        self.session.off("speech_created", self._on_speech_created)
        self.agent.driver = None
        self.agent.scripts.clear()
        self.agent.yielded.clear()
        self.trackers.clear()
        self.speeches.clear()
        self.waits.clear()
        self.background.clear()
        for events in (self.collector.events, self.collector.delivered, self.collector.progressed):
            events.clear()
        for value in vars(self.handlers).values():
            if isinstance(value, list):
                value.clear()

    def _result(self) -> SessionResult:
        violations = self.violations + self.handlers.violations + check_session(self)
        return SessionResult(
            seed=self.seed,
            violations=violations,
            log=self.log,
            messages=len(self.collector.finished),
            speeches=len(self.speeches),
            raised=list(self.handlers.raised),
            segments=len(self.sink.segments),
            refused=sum(1 for a in self.sink.attempts if a.outcome == "refused"),
            stalled=sum(1 for a in self.sink.attempts if a.outcome == "stalled"),
            session=weakref.ref(self.session),
        )


def _line(loop: asyncio.AbstractEventLoop, t0: float, text: str) -> str:
    return f"{loop.time() - t0:8.3f}  {text}"


def _notes(log: list[str], loop: asyncio.AbstractEventLoop, t0: float) -> Callable[[str], None]:
    # a note-taker that holds the log only, not the driver
    def note(text: str) -> None:
        log.append(_line(loop, t0, text))

    return note


# -- the invariants --------------------------------------------------------------------------


def _is_subsequence(part: Iterable[object], whole: Iterable[object]) -> bool:
    it = iter(whole)
    return all(any(x is y for y in it) for x in part)


def check_session(d: SessionDriver) -> list[str]:
    """Every invariant of one closed session; returns the violations found."""
    v: list[str] = []
    delivered = d.collector.delivered
    speeches = d.speeches
    started: dict[Key, ph.MessagePlaybackStarted] = {}
    finished: dict[Key, ph.MessagePlaybackFinished] = {}
    playing: Key | None = None
    progress_of: dict[Key, list[ph.MessagePlaybackProgressed]] = {}

    def name(key: Key) -> str:
        record = speeches.get(key[0])
        return f"{key[0]}#{key[1]} (speech {record.number if record else '?'})"

    # 1. per message: at most one started, exactly one finished, started first; the session
    # plays one message at a time: finished(k) before started(k+1); nothing for a speech
    # created while no tracker was attached; progress only while its message plays
    for event in delivered:
        key = _key(event)
        record = speeches.get(event.speech_id)
        if record is None:
            v.append(f"event for a speech the session never created: {event}")
            continue
        if not record.reported:
            v.append(
                f"{type(event).__name__} {event.message_id!r} for speech {record.number} "
                f"({event.speech_id}), created while no tracker was attached"
            )
            continue
        if isinstance(event, ph.MessagePlaybackStarted):
            if key in started:
                v.append(f"second started event for {name(key)}")
            if key in finished:
                v.append(f"started event after the finished event for {name(key)}")
            if playing is not None and playing != key:
                v.append(
                    f"started {event.message_id!r} ({name(key)}) while "
                    f"{started[playing].message_id!r} ({name(playing)}) has not finished"
                )
            started[key] = event
            playing = key
        elif isinstance(event, ph.MessagePlaybackFinished):
            if key in finished:
                v.append(f"second finished event for {name(key)}")
            finished[key] = event
            if playing == key:
                playing = None
        else:
            if playing != key or key not in started:
                v.append(
                    f"progress of {event.message_id!r} ({name(key)}) outside its playback "
                    f"(playing: {name(playing) if playing else None})"
                )
            progress_of.setdefault(key, []).append(event)
    for key, event in started.items():
        if key not in finished:
            v.append(f"{event.message_id!r} ({name(key)}) started and never finished")

    # 2. per speech: the finished events in index order, with the ids its source gave;
    # within the session, the messages of one speech are not interleaved with another's
    order: list[str] = []
    for event in d.collector.finished:
        if not order or order[-1] != event.speech_id:
            order.append(event.speech_id)
    repeated = [sid for sid, n in Counter(order).items() if n > 1]
    for sid in repeated:
        first = order.index(sid)
        last = len(order) - 1 - order[::-1].index(sid)
        between = [s for s in order[first + 1 : last] if s != sid]
        v.append(
            f"finished events of speech {_number(speeches, sid)} ({_by(d, sid)}) interleaved "
            f"with another speech's: "
            + ", ".join(f"speech {_number(speeches, s)} ({_by(d, s)})" for s in between)
            + f" between them; order {[_number(speeches, s) for s in order]}"
        )
    segments_of: dict[str, list[int]] = {}
    for i, segment_speech in enumerate(d.sink.speech_of):
        if segment_speech is None:
            v.append(f"harness: sink segment {i} has no speech")
            continue
        segments_of.setdefault(segment_speech, []).append(i)
    refused_in = {a.speech_id for a in d.sink.attempts if a.outcome == "refused"}

    for sid, record in speeches.items():
        events = [f for f in d.collector.finished if f.speech_id == sid]
        if not record.reported:
            continue
        handle = record.handle
        label = f"speech {record.number} ({sid}, {record.kind})"
        indexes = [f.index for f in events]
        if indexes != list(range(len(events))):
            v.append(f"{label}: finished indexes {indexes}")
        ids = [f.message_id for f in events]
        if record.kind == "say":
            if record.label is not None and ids != [record.label]:
                v.append(f"{label}: labelled {record.label!r}, finished ids {ids}")
            if record.label is None and (len(ids) > 1 or (ids and not ids[0].startswith("auto/"))):
                v.append(f"{label}: unlabelled say, finished ids {ids}")
        elif record.kind == "generate_reply":
            yielded = d.agent.yielded.get(sid, Yielded())
            expected = [
                (record.label if record.label is not None else "auto/") if i == LEAD else i
                for i in yielded.ids
            ]
            got = ["auto/" if i.startswith("auto/") and "auto/" in expected else i for i in ids]
            if not yielded.ids and record.label is not None and ids == [record.label]:
                pass  # cut before its llm_node yielded anything: its label, skipped
            elif not handle.interrupted and yielded.ended:
                if got != expected:
                    v.append(f"{label}: yielded {expected}, finished {got}")
            else:
                # cut short: a prefix, with every message whose text was yielded
                with_text = max((k + 1 for k, t in enumerate(yielded.with_text) if t), default=0)
                if got != expected[: len(got)] or len(got) < with_text:
                    v.append(f"{label} (interrupted): yielded {expected}, finished {got}")

        # 3. played as the sink played it: each segment of the speech the sink started is
        # one message heard (matched by the sink's own started_at), and nothing else is
        segs = [d.sink.segments[i] for i in segments_of.get(sid, [])]
        seg_by_start = {s.started_at: s for s in segs if s.started_at is not None}
        heard = [f for f in events if f.played != "skipped"]
        if sorted(f.started_at or 0.0 for f in heard) != sorted(seg_by_start):
            v.append(
                f"{label}: messages finished {[(f.message_id, f.played) for f in events]}"
                f" but the sink played segments {[(s.started_at, s.position) for s in segs]}"
            )
        for f in events:
            key = _key(f)
            s = started.get(key)
            if f.played == "skipped":
                if s is not None or f.started_at is not None or f.playback_position != 0:
                    v.append(f"{label}: skipped {f.message_id!r} with a start or a position: {f}")
                # interrupted follows the speech: True if it was interrupted by the time the
                # message was found skipped (a message with no audio may be skipped before)
                cut = any(record.created_at <= t <= f.finished_at for t in d.interrupts)
                if f.interrupted != handle.interrupted and (f.interrupted or cut):
                    v.append(
                        f"{label}: skipped {f.message_id!r} interrupted={f.interrupted}, its "
                        f"speech interrupted={handle.interrupted}"
                        + (" (the sink refused a segment of it)" if sid in refused_in else "")
                    )
                continue
            if s is None:
                v.append(f"{label}: {f.played} {f.message_id!r} without a started event")
            elif s.started_at != f.started_at:
                v.append(f"{label}: {f.message_id!r} started_at differs between its events")
            seg = seg_by_start.get(f.started_at) if f.started_at is not None else None
            if seg is None:
                v.append(f"{label}: {f.message_id!r} started_at is no segment's start: {f}")
                continue
            full = not seg.interrupted and seg.position >= seg.captured - 1e-6
            if (f.played == "full") != full:
                v.append(
                    f"{label}: {f.message_id!r} played={f.played}, the sink played "
                    f"{seg.position:.3f} of {seg.captured:.3f} s interrupted={seg.interrupted}"
                )
            if abs(f.playback_position - seg.position) > POSITION_TOLERANCE:
                v.append(
                    f"{label}: {f.message_id!r} playback_position {f.playback_position:.4f}, "
                    f"the sink played {seg.position:.4f}"
                )
            if f.played == "full" and f.interrupted:
                v.append(f"{label}: {f.message_id!r} full but interrupted")
            if f.played == "partial" and not f.interrupted:
                v.append(f"{label}: {f.message_id!r} partial but not interrupted")
            # 4. progress: inside the message (checked above), never backwards, never ahead
            # of the clock since the sink started it (the rule of docs/progress.md: this sink
            # reports no played run, so the position is that clock, paused time left out;
            # it is not capped at the audio handed over, which a stalling sink falls behind)
            last_position, last_words = 0.0, 0
            for p in progress_of.get(key, []):
                if p.position + 1e-9 < last_position:
                    v.append(f"{label}: progress of {f.message_id!r} went back to {p.position}")
                started_at = f.started_at if f.started_at is not None else p.at
                if p.position > p.at - started_at + 1e-6:
                    v.append(
                        f"{label}: progress of {f.message_id!r} at {p.position:.3f} s, ahead "
                        f"of the {p.at - started_at:.3f} s since the sink started it"
                    )
                words = len(p.heard_text or "")
                if words < last_words:
                    v.append(f"{label}: heard_text of {f.message_id!r} went backwards")
                last_position, last_words = p.position, words

    # 5. handlers: sync ones saw exactly what the collector saw, async ones a part of it
    all_started = d.collector.started
    all_finished = d.collector.finished
    h = d.handlers
    seen: list[tuple[str, list[Any], list[Any]]] = [
        ("sync function", h.sync_started, all_started),
        ("bound method", h.method_started, all_started),
        ("callable object", h.object_started, all_started),
        ("functools.partial", h.partial_finished, all_finished),
    ]
    for what, got, want in seen:
        if got != want:
            v.append(f"{what} handler got {len(got)} events, the session delivered {len(want)}")
    for what, got_async, want_async in (
        ("async function", h.async_finished, all_finished),
        ("async callable object", h.async_object_finished, all_finished),
    ):
        if not _is_subsequence(got_async, want_async):
            v.append(f"{what} handler got events the session did not deliver, or out of order")
    greeting = [f for f in all_finished if f.message_id == d.greeting_id]
    if h.greeting_finished != greeting:
        v.append(f"message_id-filtered handler got {h.greeting_finished}, expected {greeting}")
    if d.progress and h.progressed != d.collector.progressed:
        v.append("progress handler and collector disagree")

    # 6. wait_for(): the event delivered, MessageNotPlayed only for a skipped message
    for w in d.waits:
        key_events = [
            e
            for e in delivered
            if e.speech_id == w.speech_id
            and e.message_id == w.message_id
            and isinstance(
                e,
                ph.MessagePlaybackStarted if w.kind == "started" else ph.MessagePlaybackFinished,
            )
        ]
        fin = [f for f in all_finished if f.speech_id == w.speech_id]
        what = f"wait_for({w.message_id!r}, {w.kind!r}) of {w.speech_id}"
        if w.outcome == "event":
            if not key_events or w.event != key_events[0]:
                v.append(f"{what} returned {w.event}, delivered {key_events}")
        elif w.outcome == "not played":
            if w.kind != "started" or not fin or fin[0].played != "skipped":
                v.append(f"{what} raised MessageNotPlayed; finished: {fin}")
        elif w.outcome == "timeout":
            v.append(f"{what} timed out after {WAIT_FOR_TIMEOUT} s; finished: {fin}")
        elif w.outcome == "detached" and w.tracker_attached_at_end:
            v.append(f"{what} raised RuntimeError though its tracker stayed attached")
        elif w.outcome == "pending":
            v.append(f"{what} never returned")
    return v


# What each violation is about, for the summary: the first pattern found in its text.
KINDS: list[tuple[str, str]] = [
    ("wait_for", r"^wait_for\("),
    ("hang", r"did not return|did not complete|did not end|hung|never returned"),
    ("stats after aclose", r"stats\(\) after aclose"),
    ("tasks left", r"tasks left running"),
    ("livekit disturbed", r"^livekit logged"),
    ("handler errors logged", r"^handler exception"),
    ("playback_hooks logged", r"^playback_hooks logged"),
    ("memory", r"per-message objects|kept alive by"),
    ("order across speeches", r"interleaved with another speech"),
    ("order: started while another plays", r"has not finished"),
    ("event for an unreported speech", r"created while no tracker|never created"),
    ("heard, reported otherwise", r"but the sink played"),
    ("skipped, interrupted differs from its speech", r": skipped .* interrupted="),
    ("once per message", r"second |started and never finished|after the finished"),
    ("ids", r"finished ids|yielded|indexes"),
    ("progress", r"progress|heard_text"),
    ("played differs from the sink", r"played=|playback_position|started_at"),
    ("handlers", r"handler"),
    ("driver step raised", r"^step .* raised"),
]


def kind_of(violation: str) -> str:
    """The kind of a violation (see ``KINDS``), for grouping them in the summary."""
    for kind, pattern in KINDS:
        if re.search(pattern, violation):
            return kind
    return "other"


def _by(d: SessionDriver, sid: str) -> str:
    record = d.speeches.get(sid)
    if record is None or record.tracker is None:
        return "no tracker"
    return f"tracker #{d.trackers.index(record.tracker)}"


def _number(speeches: dict[str, SpeechRecord], sid: str) -> int | str:
    record = speeches.get(sid)
    return record.number if record is not None else sid


# -- the whole storm -------------------------------------------------------------------------


@dataclass
class StormConfig:
    """How big a storm: ``sessions`` concurrent sessions driven for ``seconds`` each."""

    sessions: int = 8
    seconds: float = 12.0
    base: int = 1
    """Session ``i`` gets the seed ``base + i``."""
    seed: int | None = None
    """Replay only the session with this seed."""
    speed: float = 1.0
    tracked: bool = True
    """False: the same drivers, never attaching (what livekit does on its own)."""

    @property
    def seeds(self) -> list[int]:
        if self.seed is not None:
            return [self.seed]
        return [self.base + i for i in range(self.sessions)]

    @classmethod
    def from_env(cls, **defaults: Any) -> StormConfig:
        """Read ``STORM_SESSIONS``, ``STORM_SECONDS``, ``STORM_BASE``, ``STORM_SEED``,
        ``STORM_SPEED`` (empty or unset: the given defaults)."""
        config = cls(**defaults)

        def env(name: str) -> str | None:
            value = os.environ.get(name, "").strip()
            return value or None

        if (value := env("STORM_SESSIONS")) is not None:
            config.sessions = int(value)
        if (value := env("STORM_SECONDS")) is not None:
            config.seconds = float(value)
        if (value := env("STORM_BASE")) is not None:
            config.base = int(value)
        if (value := env("STORM_SEED")) is not None:
            config.seed = int(value)
        if (value := env("STORM_SPEED")) is not None:
            config.speed = float(value)
        if (value := env("STORM_TRACKED")) is not None:
            config.tracked = value not in ("0", "false", "no")
        return config


@dataclass
class StormResult:
    """What a whole storm found."""

    config: StormConfig
    sessions: list[SessionResult]
    violations: list[str]
    """Run-wide: tasks left, handler errors not logged exactly once, memory."""
    livekit_logs: Counter[str]
    leftover_tasks: list[str]
    objects_left: dict[str, int]
    elapsed: float

    @property
    def failed(self) -> list[SessionResult]:
        return [s for s in self.sessions if s.failed]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.violations

    def summary(self) -> str:
        """One paragraph: sizes, time, failing seeds."""
        messages = sum(s.messages for s in self.sessions)
        speeches = sum(s.speeches for s in self.sessions)
        segments = sum(s.segments for s in self.sessions)
        lines = [
            f"storm: {len(self.sessions)} sessions x {self.config.seconds:g} s "
            f"(seeds {self.config.seeds[0]}..{self.config.seeds[-1]}), {speeches} speeches, "
            f"{messages} messages, {segments} sink segments "
            f"({sum(s.refused for s in self.sessions)} refused, "
            f"{sum(s.stalled for s in self.sessions)} stalled), "
            f"{sum(len(s.raised) for s in self.sessions)} handler exceptions, "
            f"in {self.elapsed:.1f} s",
        ]
        if self.livekit_logs:
            lines.append("livekit and asyncio warnings/errors: " + repr(dict(self.livekit_logs)))
        if self.objects_left:
            lines.append(f"playback_hooks objects alive after the storm: {self.objects_left}")
        by_kind: dict[str, list[int]] = {}
        for result in self.failed:
            for violation in result.violations:
                by_kind.setdefault(kind_of(violation), []).append(result.seed)
        for kind, seeds in sorted(by_kind.items(), key=lambda kv: -len(kv[1])):
            lines.append(
                f"  {kind}: {len(seeds)}x in {len(set(seeds))} sessions "
                f"(seeds {sorted(set(seeds))[:8]})"
            )
        for violation in self.violations:
            lines.append(f"RUN: {violation}")
        for s in self.failed:
            lines.append(
                f"FAILED seed {s.seed} ({len(s.violations)} violations; replay: "
                f"make storm STORM_SEED={s.seed} STORM_SECONDS={self.config.seconds:g}):"
            )
            lines.extend(f"    {x}" for x in s.violations[:12])
            if len(s.violations) > 12:
                lines.append(f"    ... {len(s.violations) - 12} more")
        return "\n".join(lines)

    def report(self, *, logs: int = 2, lines: int = 120) -> str:
        """The summary, then the action log of the first ``logs`` failing sessions."""
        parts = [self.summary()]
        for s in self.failed[:logs]:
            log = s.log if len(s.log) <= lines else ["...", *s.log[-lines:]]
            parts.append(f"--- action log of seed {s.seed} ---\n" + "\n".join(log))
        return "\n".join(parts)


@dataclass(frozen=True)
class _Logged:
    name: str
    levelname: str
    message: str
    exception: str | None


class _Records(logging.Handler):
    """Keeps what the watched loggers logged (not the records: their tracebacks would keep
    every frame, and so every session, alive)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[_Logged] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        self.records.append(
            _Logged(
                record.name,
                record.levelname,
                record.getMessage(),
                None if exc is None else str(exc),
            )
        )


WATCHED_LOGGERS = ("playback_hooks", "livekit", "asyncio")
"""Their records go to the storm only while it runs (not to the root logger, where a test
runner would keep them, and their tracebacks every session they reference, alive)."""

# livekit messages that mean a sink report was lost or doubled on its way up the chain. The
# same storm without any tracker (STORM_TRACKED=0) logs neither; it does log "Error in
# _audio_forwarding_task" / "_tts_task" (the refused frames), "text marked as ended in
# capture text" and "playback_finished called before text/audio input is done" (livekit's
# synchronizer under interruptions), so those are not held against the tracker.
DISTURBED = (
    "speech not done in time",
    "playback_finished called more times",
)


def _objects_of(prefix: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        module = getattr(type(obj), "__module__", None)
        if isinstance(module, str) and module.startswith(prefix):
            counts[type(obj).__qualname__] += 1
    return counts


async def run_session(
    seed: int, seconds: float, *, speed: float = 1.0, tracked: bool = True
) -> SessionResult:
    """Drive one session; a hang is a violation, not a blocked run."""
    driver = SessionDriver(seed, seconds, speed=speed, tracked=tracked)
    try:
        return await asyncio.wait_for(driver.run(), seconds + 8 * CLOSE_TIMEOUT)
    except asyncio.TimeoutError:
        driver.note("the session did not finish in time")
        return SessionResult(seed, ["the session hung (driver timed out)"], driver.log)


async def run_storm(config: StormConfig) -> StormResult:
    """Run every session of ``config`` at once and check the run-wide invariants."""
    records = _Records()
    saved: list[tuple[logging.Logger, int, bool]] = []
    for name in WATCHED_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        if logger.getEffectiveLevel() > logging.WARNING:
            logger.setLevel(logging.WARNING)
        logger.addHandler(records)
        logger.propagate = False
    gc.collect()
    objects_before = _objects_of("playback_hooks")
    tasks_before = asyncio.all_tasks()
    started = time.monotonic()
    try:
        results = list(
            await asyncio.gather(
                *(
                    run_session(seed, config.seconds, speed=config.speed, tracked=config.tracked)
                    for seed in config.seeds
                )
            )
        )
        # whatever the sessions started must end by itself, without any sleep to settle
        leftover = asyncio.all_tasks() - tasks_before - {asyncio.current_task()}
        if leftover:
            _, still = await asyncio.wait(leftover, timeout=5.0)
        else:
            still = set()
    finally:
        for logger, level, propagate in saved:
            logger.removeHandler(records)
            logger.setLevel(level)
            logger.propagate = propagate
    elapsed = time.monotonic() - started

    violations: list[str] = []
    leftover_tasks = sorted(_describe(t) for t in still)
    for task in still:
        task.cancel()
    if still:
        await asyncio.wait(still, timeout=5.0)
    # a cancelled task keeps its CancelledError, whose traceback keeps its frames alive
    leftover.clear()
    still.clear()
    if leftover_tasks:
        violations.append(f"{len(leftover_tasks)} tasks left running: {leftover_tasks[:10]}")

    # every handler exception logged exactly once, and nothing else logged as an error
    raised = Counter(token for s in results for token in s.raised)
    logged: Counter[str] = Counter()
    livekit_logs: Counter[str] = Counter()
    for record in records.records:
        message = record.message
        if not record.name.startswith("playback_hooks"):
            livekit_logs[" ".join(message.split())[:160]] += 1
            continue
        exc = record.exception
        if "raised for message" in message and exc is not None and STORM_TOKEN in exc:
            logged[exc] += 1
        else:
            violations.append(f"playback_hooks logged: {record.levelname} {message}")
    for token, n in raised.items():
        if logged[token] != n:
            violations.append(f"handler exception {token!r} raised {n}x, logged {logged[token]}x")
    for token in logged.keys() - raised.keys():
        violations.append(f"handler exception {token!r} logged but never raised")
    for message, n in livekit_logs.items():
        if any(bad in message for bad in DISTURBED):
            violations.append(f"livekit logged {n}x: {message}")

    # memory per message: once the sessions are gone, what playback_hooks keeps does not
    # depend on how many messages were played
    gc.collect()
    after = _objects_of("playback_hooks")
    grown = {k: n - objects_before.get(k, 0) for k, n in after.items()}
    grown = {k: n for k, n in grown.items() if n > 0}
    messages = sum(s.messages for s in results)
    per_message = {"Message", "Speech", "MessagePlaybackStarted", "MessagePlaybackFinished"}
    per_message |= {"MessagePlaybackProgressed", "Playhead"}
    kept = sum(n for k, n in grown.items() if k in per_message)
    if messages and kept > len(config.seeds):
        violations.append(
            f"{kept} per-message objects alive after {messages} messages in "
            f"{len(config.seeds)} closed sessions: {grown}"
        )
    # the state kept per session and per speech goes with its last tracker, whoever still
    # holds the closed session (its registries hold the sessions and speeches weakly, so an
    # entry left would keep its key alive through its own state)
    sessions_kept, speeches_kept = len(_session._playbacks), len(_ledger._reporting)
    if sessions_kept or speeches_kept:
        violations.append(
            f"after {len(config.seeds)} closed sessions, the package still keeps the state of "
            f"{sessions_kept} sessions and {speeches_kept} speeches"
        )
    # and a closed session is not kept alive by playback_hooks (livekit may keep one itself,
    # e.g. through the traceback of a frame the sink refused; that is not held against it)
    for result in results:
        session = result.session() if result.session is not None else None
        if session is None:
            continue
        path = kept_by("playback_hooks", session)
        del session
        if path is not None:
            violations.append(
                f"the closed session of seed {result.seed} is kept alive by playback_hooks: {path}"
            )
    return StormResult(config, results, violations, livekit_logs, leftover_tasks, grown, elapsed)


def kept_by(package: str, obj: object, *, depth: int = 8, budget: int = 200_000) -> str | None:
    """How the module state of ``package`` keeps ``obj`` alive, if it does.

    A breadth-first walk down ``gc.get_referents()`` from the globals of every module of
    ``package``, ``depth`` references deep at most, not through modules, classes or
    functions (whose globals lead everywhere).
    """
    skip = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, str, bytes)
    queue: deque[tuple[object, list[str]]] = deque()
    seen: set[int] = set()
    for name, module in list(sys.modules.items()):
        if name.startswith(package) and module is not None:
            for key, value in vars(module).items():
                if not isinstance(value, skip) and id(value) not in seen:
                    seen.add(id(value))
                    queue.append((value, [f"{name}.{key}"]))
    while queue and len(seen) < budget:
        node, path = queue.popleft()
        if node is obj:
            return " -> ".join(path)
        if len(path) > depth:
            continue
        for referent in gc.get_referents(node):
            if id(referent) in seen or isinstance(referent, skip):
                continue
            seen.add(id(referent))
            queue.append((referent, [*path, type(referent).__qualname__]))
    return None


def _describe(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    qualname = getattr(coro, "__qualname__", repr(coro))
    module = getattr(getattr(coro, "cr_code", None), "co_filename", "")
    return f"{task.get_name()}: {qualname} ({module.rsplit('site-packages/', 1)[-1]})"


def main() -> int:
    """``python -m tests.storm``: run a storm from the environment, print its report."""
    config = StormConfig.from_env(sessions=40, seconds=60.0, base=random.randrange(1, 10**6))
    print(f"STORM_BASE={config.base} (seeds {config.seeds[0]}..{config.seeds[-1]})", flush=True)
    result = asyncio.run(run_storm(config))
    print(result.report(logs=int(os.environ.get("STORM_LOGS") or 3), lines=10**6))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
