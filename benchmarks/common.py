"""Shared pieces of the benchmarks: livekit's output chains, statistics, speech contexts.

The chains are built the way ``RoomIO.start()`` builds them (see ``tests/chains.py``, whose
offline stand-ins are reused here): livekit's ``TranscriptSynchronizer`` over RoomIO's own
``_ParticipantAudioOutput`` on the native ``rtc.AudioSource``, with an ``OfflineRoom`` in
place of the connected room ("RoomIO chain"), or that participant output alone, which is
what RoomIO gives a session whose transcription output is disabled ("bare sink").
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import statistics
import sys
import time
import types
from collections.abc import AsyncIterable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import numpy as np
from livekit import rtc
from livekit.agents import Agent, AgentSession, ModelSettings, llm
from livekit.agents.types import FlushSentinel
from livekit.agents.voice.events import SpeechCreatedEvent
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities
from livekit.agents.voice.room_io._output import _ParticipantAudioOutput
from livekit.agents.voice.speech_handle import SpeechHandle
from livekit.agents.voice.transcription import TranscriptSynchronizer
from tests.chains import ROOM_NUM_CHANNELS, ROOM_SAMPLE_RATE, OfflineRoom, RecordingTextOutput

import playback_hooks as ph

# Every private livekit name the package uses goes through playback_hooks._livekit, the
# benchmarks' too (RoomIO's participant output, imported above, is the one the chain
# tests build on as well).
from playback_hooks import _livekit
from playback_hooks.testing import ScriptedLLM, SimulatedSink, SineTTS

SAMPLE_RATE = ROOM_SAMPLE_RATE

F = TypeVar("F", bound=Callable[..., Any])

ChainKind = Literal["roomio", "bare"]
"""``"roomio"``: synchronizer > participant output; ``"bare"``: the participant output alone."""

SinkKind = Literal["room", "simulated"]

CHAIN_KINDS: tuple[ChainKind, ...] = ("roomio", "bare")
CHAIN_NAMES: dict[ChainKind, str] = {
    "roomio": "RoomIO chain (synchronizer > participant output)",
    "bare": "bare sink (participant output alone)",
}


# -- statistics -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(values_s: Sequence[float]) -> dict[str, float]:
    """Count, p50, p99 and max, seconds in, milliseconds out."""
    ms = [v * 1000 for v in values_s]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else math.nan,
    }


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Min, median and max of one figure measured once per round, and the rounds' values."""
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "rounds": list(values),
    }


def ratio(tracked: float, untracked: float) -> float:
    """``tracked / untracked``; NaN when the denominator is not positive."""
    return tracked / untracked if untracked > 0 else math.nan


def ratio_target(
    name: str, limit: float, rounds: Sequence[float], *, note: str = ""
) -> dict[str, Any]:
    """A ratio target, judged on the median of its rounds; the spread goes with it."""
    s = spread(rounds)
    return {
        "name": name,
        "target": f"<= {limit:.2f}" + (f" ({note})" if note else ""),
        "measured": s["median"],
        "unit": "ratio",
        "spread": s,
        "met": bool(s["median"] <= limit),
    }


def chain_ratio_targets(
    res: dict[str, Any], name: str, limit: float, key: str
) -> list[dict[str, Any]]:
    """One ratio target per chain in ``res`` (RoomIO's, then the bare sink), each judged on
    the rounds of ``res[kind][key]``."""
    return [
        ratio_target(f"{name}, {res[kind]['chain']}", limit, res[kind][key]["rounds"])
        for kind in CHAIN_KINDS
    ]


def round_table(res: dict[str, Any], kinds: Sequence[str], label: str, key: str) -> list[str]:
    """Markdown lines of a table of one ratio per round, a column per chain."""
    lines = [
        "",
        "| round | " + " | ".join(f"{label}, {res[k]['chain']}" for k in kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    for i in range(len(res[kinds[0]]["rounds"])):
        lines.append(
            f"| {i + 1} | " + " | ".join(f"{res[k]['rounds'][i][key]:.3f}" for k in kinds) + " |"
        )
    return lines


def check_target(name: str, target: str, measured: Any, unit: str, met: bool) -> dict[str, Any]:
    """A target that is a count or a fact rather than a ratio (no spread)."""
    return {
        "name": name,
        "target": target,
        "measured": measured,
        "unit": unit,
        "spread": None,
        "met": bool(met),
    }


# -- audio ------------------------------------------------------------------------------------


def pcm_frame(seconds: float = 0.02, sample_rate: int = SAMPLE_RATE) -> rtc.AudioFrame:
    """A frame of a quiet sine tone (real PCM16 samples)."""
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    samples = (0.1 * 32767 * np.sin(2 * math.pi * 440 * t)).astype(np.int16)
    return rtc.AudioFrame(samples.tobytes(), sample_rate, 1, n)


class ProbedRoomOutput(_ParticipantAudioOutput):
    """RoomIO's participant audio output, unchanged but for two notes it keeps.

    ``created_at``: the ``created_at`` of each ``playback_started`` it reports, in order
    (the truth ``started_at`` is checked against) and ``positions``, the
    ``playback_position`` of each ``playback_finished``. ``started_ns`` / ``progressed_ns`` /
    ``finished_ns``: how long each of its reports took to travel up the whole chain above
    it (every listener of every layer, livekit's and the tracker's), ``perf_counter_ns``.
    """

    def __init__(self) -> None:
        super().__init__(
            cast(rtc.Room, OfflineRoom()),
            sample_rate=ROOM_SAMPLE_RATE,
            num_channels=ROOM_NUM_CHANNELS,
            track_publish_options=rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE),
        )
        self.created_at: list[float] = []
        self.positions: list[float] = []
        self.started_ns: list[int] = []
        self.progressed_ns: list[int] = []
        self.finished_ns: list[int] = []

    def on_playback_started(self, *, created_at: float) -> None:
        self.created_at.append(created_at)
        t0 = time.perf_counter_ns()
        super().on_playback_started(created_at=created_at)
        self.started_ns.append(time.perf_counter_ns() - t0)

    def on_playback_progressed(self, *, started_at: float, offset: float, duration: float) -> None:
        t0 = time.perf_counter_ns()
        super().on_playback_progressed(started_at=started_at, offset=offset, duration=duration)
        self.progressed_ns.append(time.perf_counter_ns() - t0)

    def on_playback_finished(
        self,
        *,
        playback_position: float,
        interrupted: bool,
        synchronized_transcript: str | None = None,
    ) -> None:
        self.positions.append(playback_position)
        t0 = time.perf_counter_ns()
        super().on_playback_finished(
            playback_position=playback_position,
            interrupted=interrupted,
            synchronized_transcript=synchronized_transcript,
        )
        self.finished_ns.append(time.perf_counter_ns() - t0)


class CountingSink(AudioOutput):
    """A sink that plays nothing: it counts frames and reports each segment at once.

    ``playback_started`` on a segment's first frame, ``playback_finished`` on ``flush()``.
    Used where a benchmark needs more segments than real time allows (the long session).
    """

    def __init__(self) -> None:
        super().__init__(
            label="CountingSink",
            capabilities=AudioOutputCapabilities(pause=True),
            sample_rate=SAMPLE_RATE,
        )
        self.frames = 0
        self.segments = 0
        self._open = False
        self._samples = 0

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        self.frames += 1
        self._samples += frame.samples_per_channel
        if not self._open:
            self._open = True
            self.segments += 1
            self.on_playback_started(created_at=time.time())

    def flush(self) -> None:
        super().flush()
        if self._open:
            self._open = False
            position, self._samples = self._samples / SAMPLE_RATE, 0
            self.on_playback_finished(playback_position=position, interrupted=False)

    def clear_buffer(self) -> None:
        pass


# -- chains -----------------------------------------------------------------------------------


@dataclass(eq=False)
class Chain:
    """A started AgentSession over one of livekit's output chains."""

    session: AgentSession[Any]
    kind: ChainKind
    sink: ProbedRoomOutput | SimulatedSink
    synchronizer: TranscriptSynchronizer | None
    tracker: ph.PlaybackTracker | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tracked(self) -> bool:
        """Whether a tracker was attached."""
        return self.tracker is not None

    async def aclose(self) -> None:
        """Close the session, then its tracker, then RoomIO's parts, as an app's job does."""
        await self.session.aclose()
        if self.tracker is not None:
            await self.tracker.aclose()
        if self.synchronizer is not None:
            await self.synchronizer.aclose()
        await self.sink.aclose()


async def start_chain(
    agent: Agent,
    *,
    kind: ChainKind,
    tracked: bool,
    sink: SinkKind = "room",
    tts: SineTTS | None = None,
) -> Chain:
    """Start a real AgentSession offline over ``kind`` (see the module docstring).

    The tracker, when ``tracked``, is attached before ``session.start()`` (the order the
    docs teach): it goes on top of the final chain at the first speech.
    """
    session: AgentSession[Any] = AgentSession(llm=ScriptedLLM([]), tts=tts or SineTTS())
    bottom: ProbedRoomOutput | SimulatedSink
    if sink == "room":
        bottom = ProbedRoomOutput()
        # RoomIO awaits this in its init task once the participant is there
        await bottom.start()
    else:
        bottom = SimulatedSink()
    synchronizer: TranscriptSynchronizer | None = None
    if kind == "roomio":
        synchronizer = TranscriptSynchronizer(
            next_in_chain_audio=bottom, next_in_chain_text=RecordingTextOutput()
        )
        session.output.audio = synchronizer.audio_output
        session.output.transcription = synchronizer.text_output
    else:
        session.output.audio = bottom
    tracker = ph.attach(session) if tracked else None
    await session.start(agent, record=False)
    return Chain(session, kind, bottom, synchronizer, tracker)


class ReplyAgent(Agent):
    """Every reply is one speech of ``messages`` messages, each after its own marker.

    Message ``k`` of reply ``n`` has the id ``r{n}m{k}`` and the text ``text`` formatted
    with ``reply=n, part=k``.
    """

    def __init__(self, messages: int, text: str) -> None:
        super().__init__(instructions="benchmark agent")
        self._messages = messages
        self._text = text
        self.replies = 0

    @ph.track_messages
    async def llm_node(
        self, chat_ctx: llm.ChatContext, tools: list[llm.Tool], model_settings: ModelSettings
    ) -> AsyncIterable[str | FlushSentinel]:
        n = self.replies
        self.replies += 1
        for k in range(self._messages):
            yield ph.MessageBoundary(f"r{n}m{k}")
            yield self._text.format(reply=n, part=k)


# -- driving a speech by hand -----------------------------------------------------------------


@contextlib.contextmanager
def in_speech(handle: SpeechHandle) -> Iterator[None]:
    """Run the block as livekit runs a speech's audio forwarding: with its speech context."""
    token = _livekit.speech_context.set(handle)
    try:
        yield
    finally:
        _livekit.speech_context.reset(token)


def new_speech(session: AgentSession[Any], *, recorded: bool = True) -> SpeechHandle:
    """A real ``SpeechHandle``, created and scheduled as livekit does for ``generate_reply()``.

    ``recorded=False`` emits ``speech_created`` without ``AgentSession.emit()`` keeping
    the event (and with it the handle) for the session report, which it does for every
    event a session emits until it closes.
    """
    handle = SpeechHandle.create()
    ev = SpeechCreatedEvent(speech_handle=handle, user_initiated=True, source="generate_reply")
    if recorded:
        session.emit("speech_created", ev)
    else:
        super(AgentSession, session).emit("speech_created", ev)
    _livekit.mark_scheduled(handle)
    return handle


def own_call_sites(fn: F) -> F:
    """A copy of ``fn`` whose call sites are its own.

    CPython keeps what it learned at each call site (the type of ``out`` in
    ``out.capture_frame(frame)``, and where ``capture_frame`` is found on it) in the code
    object. livekit's forwarding code is one site for all the sessions of a process, and in
    a fleet every session is tracked or none is: that site sees one type. A benchmark that
    drives tracked and untracked sessions through one function makes each side pay for the
    other's type there, which hides part of what a tracked fleet pays (see the benchmarks'
    README). Each side drives its frames through its own copy.
    """
    code = fn.__code__.replace()
    copy = types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    return cast(F, copy)


def end_speech(handle: SpeechHandle) -> None:
    """Mark the speech done, as livekit does once its playout is over."""
    _livekit.mark_done(handle)


@dataclass
class LagMonitor:
    """Measures event-loop lag: how late a ``sleep(interval)`` wakes up, in seconds."""

    interval: float = 0.005

    def __post_init__(self) -> None:
        self.samples: list[float] = []
        self._stop = False

    async def run(self) -> None:
        """Sample until ``stop()``."""
        import asyncio

        while not self._stop:
            t0 = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, time.perf_counter() - t0 - self.interval))

    def stop(self) -> None:
        """Stop sampling after the current sleep."""
        self._stop = True


# -- CPU per session ---------------------------------------------------------------------------


class SessionCpu:
    """Charges the event-loop thread's CPU to the session whose context each callback runs in.

    While installed, every callback the event loop runs (task steps included: asyncio runs
    them as callbacks too) is timed with the thread's CPU clock (``time.thread_time_ns``) and
    charged to the session named by ``ACCOUNT`` in the callback's context. A session's
    tasks and callbacks inherit that context variable from where they were created: set it
    around ``start_chain()`` and around each ``generate_reply()``, and everything livekit
    and the tracker do for that session is charged to it, interleaved as they run with the
    other sessions' in the same batch (so that both sides of a comparison run on the same
    machine at the same moments). Callbacks in no session's context (livekit's native audio
    plumbing, shared by every session) are charged to none. ``outside`` counts the calls
    into the tracker's code made in no session's context when ``watch_outside()`` is on:
    none means nothing the tracker does escapes the accounting.
    """

    ACCOUNT: contextvars.ContextVar[int | None] = contextvars.ContextVar(
        "benchmark_session", default=None
    )

    def __init__(self) -> None:
        self.ns: dict[int, int] = {}
        self.outside = 0
        self._run: Callable[[asyncio.Handle], None] | None = None

    @contextlib.contextmanager
    def charged_to(self, session: int) -> Iterator[None]:
        """Run the block (and what it starts) in ``session``'s account."""
        token = self.ACCOUNT.set(session)
        try:
            yield
        finally:
            self.ACCOUNT.reset(token)

    def install(self) -> None:
        """Start charging callbacks (asyncio's ``Handle._run``, patched for the benchmark)."""
        run = self._run = asyncio.Handle._run
        ns, account, clock = self.ns, self.ACCOUNT, time.thread_time_ns

        def charged(handle: asyncio.Handle) -> None:
            session = handle._context.get(account)  # type: ignore[attr-defined]
            if session is None:
                run(handle)
                return
            t0 = clock()
            try:
                run(handle)
            finally:
                ns[session] = ns.get(session, 0) + clock() - t0

        setattr(asyncio.Handle, "_run", charged)  # noqa: B010 - a private method, on purpose

    def uninstall(self) -> None:
        """Stop charging."""
        if self._run is not None:
            setattr(asyncio.Handle, "_run", self._run)  # noqa: B010 - undoing install()
            self._run = None

    @contextlib.contextmanager
    def watch_outside(self) -> Iterator[None]:
        """Count calls into playback_hooks' code (not its testing kit) outside any account."""
        account = self.ACCOUNT

        def outside() -> None:
            if account.get() is None:
                self.outside += 1

        with tracker_calls(outside):
            yield


@contextlib.contextmanager
def tracker_calls(on_call: Callable[[], None]) -> Iterator[None]:
    """Call ``on_call()`` at every call into playback_hooks' code (not its testing kit)."""
    package = str(Path(ph.__file__).parent)
    testing = str(Path(ph.__file__).parent / "testing")

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            path = frame.f_code.co_filename
            if path.startswith(package) and not path.startswith(testing):
                on_call()

    sys.setprofile(profile)
    try:
        yield
    finally:
        sys.setprofile(None)
