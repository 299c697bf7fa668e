"""livekit's real output chains, built offline the way RoomIO builds them, for the tests.

``RoomIO.start()`` (``livekit/agents/voice/room_io/room_io.py``) builds the agent's outputs
like this, and ``AgentSession.start()`` wraps them once more in a job context::

    audio_output = _ParticipantAudioOutput(room, sample_rate=24000, num_channels=1, ...)
    synchronizer = TranscriptSynchronizer(
        next_in_chain_audio=audio_output,
        next_in_chain_text=_ParticipantTranscriptionOutput(room, ...),
        speed=transcription_speed_factor,  # 1.0 by default
    )
    session.output.audio = synchronizer.audio_output
    session.output.transcription = synchronizer.text_output
    # AgentSession.start(), in a job context that records audio:
    recorder = RecorderIO(agent_session=session)
    session.input.audio = recorder.record_input(session.input.audio)
    session.output.audio = recorder.record_output(session.output.audio)

``start_chain()`` does the same with two substitutions at the very bottom, and nothing else:

- the text chain ends in a ``RecordingTextOutput`` (which records every ``capture_text()`` /
  ``flush()``) instead of the room's transcription output;
- the audio sink is either a ``SimulatedSink``, or RoomIO's own ``_ParticipantAudioOutput``
  over the native ``rtc.AudioSource`` with an ``OfflineRoom`` in place of the connected room.

``OfflineRoom`` is the minimal stand-in: ``_ParticipantAudioOutput`` touches its room in one
place only, ``_publish_track()``, which calls ``room.local_participant.publish_track(track,
options)`` and then ``publication.wait_for_subscription()`` before it resolves the output's
``subscribed`` future (``capture_frame()`` waits on that future). ``OfflineRoom`` answers
exactly those two calls, at once, as a room whose user is already subscribed would.
Everything else is livekit's code: ``start()`` runs as RoomIO's init task runs it (the
forwarding task, ``_publish_track()`` creating the real ``LocalAudioTrack`` over the real
``AudioSource``, the subscription future), and the native source plays out in real time.

``RecorderIO`` runs without a job context: its constructor only keeps the session and the
running loop. Without ``start()`` its output wrapper records nothing and only passes audio
through; ``start(output_path=...)`` needs both ``record_input()`` and ``record_output()``
and a file to encode to (livekit passes ``job_ctx.session_directory / "audio.ogg"``; the
tests pass one in ``tmp_path``). Outside a job, ``AgentSession.start()`` builds no recorder,
so ``start_chain()`` builds it the way ``start()`` would, before starting the session. livekit
wraps ``session.input.audio`` too, so the chain needs an audio input: ``SilentAudioInput``
stands in for the room's microphone track and never delivers a frame (the user is quiet).

The tracker is attached after ``await session.start(agent, record=False)``, the current
API; ``ChainRun.attach()`` is the one place that attaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from livekit import rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.vad import VADEvent, VADEventType
from livekit.agents.voice.agent_activity import AgentActivity
from livekit.agents.voice.events import AgentFalseInterruptionEvent
from livekit.agents.voice.io import (
    AudioInput,
    AudioOutput,
    PlaybackFinishedEvent,
    PlaybackProgressedEvent,
    PlaybackStartedEvent,
    TextOutput,
)
from livekit.agents.voice.recorder_io import RecorderIO
from livekit.agents.voice.room_io._output import _ParticipantAudioOutput
from livekit.agents.voice.transcription import TranscriptSynchronizer

import playback_hooks as ph
from playback_hooks.testing import EventCollector, ScriptedLLM, SimulatedSink, SineTTS

__all__ = [
    "ChainRun",
    "OfflineRoom",
    "RecordingTextOutput",
    "SilentAudioInput",
    "SinkKind",
    "SinkReports",
    "start_chain",
    "user_starts_speaking",
    "user_stops_speaking",
]

SinkKind = Literal["simulated", "room"]

# RoomOutputOptions' defaults for the participant's audio track
ROOM_SAMPLE_RATE = 24000
ROOM_NUM_CHANNELS = 1


async def _wait(changed: asyncio.Event, ready: Callable[[], bool], timeout: float) -> None:
    async def _loop() -> None:
        while not ready():
            changed.clear()
            await changed.wait()

    await asyncio.wait_for(_loop(), timeout)


class RecordingTextOutput(TextOutput):
    """The bottom of the text chain: records every ``capture_text()`` and ``flush()``.

    ``ops`` is the raw record, in order. ``segments`` reads it the way RoomIO's transcription
    outputs publish it: the text captured between two flushes is one segment, and a flush
    with nothing captured since the previous one publishes nothing (both of livekit's room
    transcription outputs return early from such a flush).
    """

    def __init__(self) -> None:
        super().__init__(label="RecordingTextOutput", next_in_chain=None)
        self.ops: list[tuple[Literal["text", "flush"], str]] = []
        self._changed = asyncio.Event()

    async def capture_text(self, text: str) -> None:
        """Record a piece of text (the synchronizer sends one word at a time)."""
        self.ops.append(("text", str(text)))
        self._changed.set()

    def flush(self) -> None:
        """Record the end of a segment."""
        self.ops.append(("flush", ""))
        self._changed.set()

    @property
    def segments(self) -> list[str]:
        """The text of each segment, the one still open last."""
        segments: list[str] = []
        current: list[str] | None = None
        for kind, text in self.ops:
            if kind == "text":
                current = [] if current is None else current
                current.append(text)
            elif current is not None:
                segments.append("".join(current))
                current = None
        if current is not None:
            segments.append("".join(current))
        return segments

    @property
    def flushed_segments(self) -> int:
        """How many segments were closed by a flush."""
        count, open_ = 0, False
        for kind, _ in self.ops:
            if kind == "text":
                open_ = True
            elif open_:
                count, open_ = count + 1, False
        return count

    async def wait_flushed(self, count: int, *, timeout: float = 10.0) -> None:
        """Wait until ``count`` segments were closed by a flush."""
        await _wait(self._changed, lambda: self.flushed_segments >= count, timeout)

    async def wait_for_words(self, segment: int, words: int, *, timeout: float = 10.0) -> str:
        """Wait until segment ``segment`` (0-based) received ``words`` pieces; return its text."""

        def ready() -> bool:
            return self._pieces(segment) >= words

        await _wait(self._changed, ready, timeout)
        return self.segments[segment]

    def _pieces(self, segment: int) -> int:
        index, count, open_ = 0, 0, False
        for kind, _ in self.ops:
            if kind == "text":
                open_ = True
                if index == segment:
                    count += 1
            elif open_:
                index, open_ = index + 1, False
        return count


class SinkReports:
    """What the sink at the bottom of the chain reported itself, listened to directly."""

    def __init__(self, sink: AudioOutput) -> None:
        self.started: list[float] = []
        """``created_at`` of each ``playback_started``, in order."""
        self.finished: list[PlaybackFinishedEvent] = []
        self.progressed: list[list[PlaybackProgressedEvent]] = [[]]
        """The played runs it reported, grouped by segment."""
        self._changed = asyncio.Event()
        sink.on("playback_started", self._on_started)
        sink.on("playback_finished", self._on_finished)
        sink.on("playback_progressed", self._on_progressed)

    def _on_started(self, ev: PlaybackStartedEvent) -> None:
        self.started.append(ev.created_at)
        self._changed.set()

    def _on_finished(self, ev: PlaybackFinishedEvent) -> None:
        self.finished.append(ev)
        self.progressed.append([])
        self._changed.set()

    def _on_progressed(self, ev: PlaybackProgressedEvent) -> None:
        self.progressed[-1].append(ev)
        self._changed.set()

    async def wait_started(self, count: int, *, timeout: float = 10.0) -> None:
        """Wait until ``count`` segments started playing."""
        await _wait(self._changed, lambda: len(self.started) >= count, timeout)

    async def wait_progressed(self, segment: int, runs: int, *, timeout: float = 10.0) -> None:
        """Wait until segment ``segment`` reported ``runs`` played runs."""

        def ready() -> bool:
            return len(self.progressed) > segment and len(self.progressed[segment]) >= runs

        await _wait(self._changed, ready, timeout)


class _OfflinePublication:
    sid = "TR_offline"

    async def wait_for_subscription(self) -> None:
        return None


class _OfflineParticipant:
    identity = "agent-offline"

    def __init__(self) -> None:
        self.published: list[tuple[rtc.LocalAudioTrack, rtc.TrackPublishOptions]] = []

    async def publish_track(
        self, track: rtc.LocalAudioTrack, options: rtc.TrackPublishOptions
    ) -> _OfflinePublication:
        self.published.append((track, options))
        return _OfflinePublication()


class OfflineRoom:
    """Stands in for the connected room in ``_ParticipantAudioOutput._publish_track()`` only.

    ``local_participant.publish_track()`` records the track and returns a publication whose
    ``wait_for_subscription()`` returns at once: the subscriber is there from the start.
    """

    def __init__(self) -> None:
        self.local_participant = _OfflineParticipant()


class SilentAudioInput(AudioInput):
    """An audio input that never delivers a frame: a microphone the user stays quiet on."""

    def __init__(self) -> None:
        super().__init__(label="SilentAudioInput")
        self._never: asyncio.Future[rtc.AudioFrame] = asyncio.get_running_loop().create_future()

    async def __anext__(self) -> rtc.AudioFrame:
        return await asyncio.shield(self._never)


@dataclass
class ChainRun:
    """A real AgentSession whose outputs are livekit's chain, and what each part reported."""

    session: AgentSession[Any]
    sink: SimulatedSink | _ParticipantAudioOutput
    """The bottom of the audio chain (``SimulatedSink`` or ``_ParticipantAudioOutput``)."""
    synchronizer: TranscriptSynchronizer
    text: RecordingTextOutput
    sink_reports: SinkReports
    recorder: RecorderIO | None = None
    tracker: ph.PlaybackTracker | None = None
    events: EventCollector | None = None
    synchronized: list[PlaybackFinishedEvent] = field(default_factory=list)
    """What the synchronizer's audio output reported per segment (livekit's own transcript)."""
    room: OfflineRoom | None = None

    def attach(self) -> ph.PlaybackTracker:
        """Attach the tracker (and collect its events)."""
        self.tracker = ph.attach(self.session)
        self.events = EventCollector(self.session)
        return self.tracker

    @property
    def transcripts(self) -> list[str | None]:
        """livekit's ``synchronized_transcript`` of each finished segment."""
        return [ev.synchronized_transcript for ev in self.synchronized]

    def assistant_messages(self) -> list[str]:
        """The text of each assistant message in the session's history."""
        return [
            item.text_content or ""
            for item in self.session.history.items
            if item.type == "message" and item.role == "assistant"
        ]

    async def aclose(self) -> None:
        """Close everything in the order livekit does: session, recorder, RoomIO's parts.

        The session closes first, as an application's would (job shutdown): the tracker
        detaches on the session's ``close`` event, then its handler tasks are awaited.
        """
        await self.session.aclose()
        if self.tracker is not None:
            await self.tracker.aclose()
        if self.events is not None:
            self.events.close()
        if self.recorder is not None:
            await self.recorder.aclose()
        await self.synchronizer.aclose()
        await self.sink.aclose()


async def start_chain(
    agent: Agent,
    *,
    sink: SinkKind = "simulated",
    record_to: Path | None = None,
    tracked: bool = True,
    **session_kwargs: Any,
) -> ChainRun:
    """Start a real AgentSession offline over livekit's chain (see the module docstring).

    Args:
        sink: ``"simulated"`` for a ``SimulatedSink``, ``"room"`` for RoomIO's
            ``_ParticipantAudioOutput`` over ``rtc.AudioSource`` with an ``OfflineRoom``.
        record_to: Put livekit's ``RecorderIO`` on top, recording to this file.
        tracked: Attach the tracker (``ChainRun.attach()``) before ``session.start()``, the
            order the docs teach.
        session_kwargs: More ``AgentSession`` options.
    """
    session: AgentSession[Any] = AgentSession(llm=ScriptedLLM([]), tts=SineTTS(), **session_kwargs)
    room: OfflineRoom | None = None
    bottom: SimulatedSink | _ParticipantAudioOutput
    if sink == "room":
        room = OfflineRoom()
        participant_output = _ParticipantAudioOutput(
            cast(rtc.Room, room),
            sample_rate=ROOM_SAMPLE_RATE,
            num_channels=ROOM_NUM_CHANNELS,
            track_publish_options=rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE),
        )
        # RoomIO awaits this in its init task once the participant is there
        await participant_output.start()
        bottom = participant_output
    else:
        bottom = SimulatedSink()
    reports = SinkReports(bottom)

    text = RecordingTextOutput()
    synchronizer = TranscriptSynchronizer(next_in_chain_audio=bottom, next_in_chain_text=text)
    session.output.audio = synchronizer.audio_output
    session.output.transcription = synchronizer.text_output
    run = ChainRun(session, bottom, synchronizer, text, reports, room=room)
    synchronizer.audio_output.on("playback_finished", run.synchronized.append)

    if record_to is not None:
        recorder = RecorderIO(agent_session=session)
        session.input.audio = recorder.record_input(SilentAudioInput())
        session.output.audio = recorder.record_output(session.output.audio)
        await recorder.start(output_path=record_to)
        run.recorder = recorder

    if tracked:
        run.attach()
    await session.start(agent, record=False)
    return run


@dataclass
class ForwardingCalls:
    """What livekit's audio forwarding (the speech's ``_audio_forwarding_task``, which hands
    every frame to ``session.output.audio``) called, seen by a profiling hook."""

    frames: int = 0
    """``capture_frame`` calls it made, into whichever output."""
    tracker: Counter[str] = field(default_factory=Counter)
    """Calls it made into the package's code (not its testing kit), by function name; a
    coroutine resumed counts again."""


@contextlib.contextmanager
def forwarding_calls() -> Iterator[ForwardingCalls]:
    """Watch what livekit's audio forwarding calls (see ``ForwardingCalls``)."""
    package = str(Path(ph.__file__).parent)
    testing = str(Path(ph.__file__).parent / "testing")
    seen = ForwardingCalls()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        caller = frame.f_back
        if caller is None or caller.f_code.co_name != "_audio_forwarding_task":
            return
        path = frame.f_code.co_filename
        if path.startswith(package) and not path.startswith(testing):
            seen.tracker[frame.f_code.co_name] += 1
        if frame.f_code.co_name in ("capture_frame", "_first_frame"):
            seen.frames += 1

    sys.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(None)


# -- the user talking over the agent ------------------------------------------------------
#
# With a VAD, livekit's audio recognition calls three hooks of the session's AgentActivity:
# on_start_of_speech() at START_OF_SPEECH, on_vad_inference_done() on every inference while
# the user talks (each one re-runs the pause of a false-interruption-enabled session), and
# on_end_of_speech() at END_OF_SPEECH, which arms the false-interruption timer; when it fires
# without a transcript, the activity resumes the output and emits
# ``agent_false_interruption(resumed=True)``. The two functions below make exactly those
# calls, with the events a VAD would send, on the session's activity (``session._activity``,
# private: the hooks have no public entry point). Everything after them is livekit's.


def _activity(session: AgentSession[Any]) -> AgentActivity:
    activity = session._activity
    if activity is None:
        raise RuntimeError("the session has no running activity")
    return activity


def user_starts_speaking(session: AgentSession[Any], *, inferences: int = 3) -> None:
    """The VAD hears the user start talking: START_OF_SPEECH, then ``inferences`` inferences.

    Each inference is long enough to count as an interruption (the session's
    ``min_duration``), so a session with ``resume_false_interruption`` pauses its output.
    """
    activity = _activity(session)
    now = time.time()
    min_duration = session.options.interruption["min_duration"]
    activity.on_start_of_speech(
        VADEvent(
            type=VADEventType.START_OF_SPEECH,
            samples_index=0,
            timestamp=now,
            speech_duration=min_duration,
            silence_duration=0.0,
            speaking=True,
        ),
        now,
    )
    for i in range(inferences):
        activity.on_vad_inference_done(
            VADEvent(
                type=VADEventType.INFERENCE_DONE,
                samples_index=0,
                timestamp=now,
                speech_duration=min_duration + 0.05 * (i + 1),
                silence_duration=0.0,
                speaking=True,
                probability=1.0,
            )
        )


async def user_stops_speaking(
    session: AgentSession[Any], *, timeout: float = 10.0
) -> AgentFalseInterruptionEvent:
    """The VAD hears the user stop (END_OF_SPEECH, no transcript follows).

    Returns the session's ``agent_false_interruption`` event, emitted once the session's
    ``false_interruption_timeout`` ran out.
    """
    activity = _activity(session)
    loop = asyncio.get_running_loop()
    emitted: asyncio.Future[AgentFalseInterruptionEvent] = loop.create_future()

    def on_event(ev: AgentFalseInterruptionEvent) -> None:
        if not emitted.done():
            emitted.set_result(ev)

    session.on("agent_false_interruption", on_event)
    try:
        min_duration = session.options.interruption["min_duration"]
        activity.on_end_of_speech(
            VADEvent(
                type=VADEventType.END_OF_SPEECH,
                samples_index=0,
                timestamp=time.time(),
                speech_duration=min_duration,
                silence_duration=0.0,
            )
        )
        return await asyncio.wait_for(emitted, timeout)
    finally:
        session.off("agent_false_interruption", on_event)
