"""Avatars: livekit's own avatar I/O over the in-process ``RoomPair``, on real sessions.

The agent's side is built as a room job with an avatar plugin builds it: the plugin sets
``session.output.audio = DataStreamAudioOutput(room, destination_identity=...,
wait_remote_track=rtc.TrackKind.KIND_VIDEO, ...)`` before ``session.start()``, and RoomIO
(``session.start(room=...)``) wraps whatever output is set in livekit's
``TranscriptSynchronizer``; here its text goes to a ``RecordingTextOutput`` instead of the
room's transcription output (tests/chains.py). The avatar side is ``AvatarWorker``:
livekit's ``DataStreamAudioReceiver`` and ``AvatarRunner`` playing into a real
``rtc.AudioSource``, started before the session as livekit documents it.

Every scenario of ``play()`` runs twice, without the tracker and then with it (attached
before ``start()``): livekit's side of both runs is the same (the avatar's segments and
their audio, the RPCs, what the output reported, the agent's states, the conversation
items, the transcript, ``wait_for_playout()``), and the tracked run's events are checked
against what the output itself reported. A few tests look only at what playback_hooks
reports, and run once: what it reports while a worker never sends starts, the order of
``attach()``, the avatar and the session, and a worker without livekit's runner
(``PromptWorker``) for the starts that follow an interruption.

livekit's ``AvatarRunner`` reports ``lk.playback_started`` once it has queued a segment's
first frame into its ``rtc.AudioSource`` and ``lk.playback_finished`` once it has queued
the last one (the source's queue holds 100 ms), counting the audio it queued as played.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from livekit import rtc
from livekit.agents import Agent, AgentSession, llm
from livekit.agents.voice.avatar import (
    AudioSegmentEnd,
    AvatarSession,
    DataStreamAudioOutput,
    DataStreamAudioReceiver,
)
from livekit.agents.voice.events import (
    AgentStateChangedEvent,
    ConversationItemAddedEvent,
    SpeechCreatedEvent,
)
from livekit.agents.voice.io import (
    PlaybackFinishedEvent,
    PlaybackStartedEvent,
)
from livekit.agents.voice.speech_handle import SpeechHandle
from livekit.agents.voice.transcription import TranscriptSynchronizer
from livekit.rtc.participant import PublishDataError

import playback_hooks as ph
from playback_hooks import _ledger, _session
from playback_hooks.testing import (
    AvatarWorker,
    EventCollector,
    LinkedRoom,
    RealtimeItem,
    RoomPair,
    ScriptedLLM,
    ScriptedRealtimeModel,
    SineTTS,
    Transmission,
)
from playback_hooks.testing.room import LinkedLocalParticipant

from .agents import Item, ScriptAgent, boundary
from .chains import RecordingTextOutput, forwarding_calls

RPC_STARTED = "lk.playback_started"
RPC_FINISHED = "lk.playback_finished"
RPC_CLEAR = "lk.clear_buffer"
AUDIO_TOPIC = "lk.audio_stream"

START_DELAY = 0.15
"""Seconds the avatar takes to start a segment after its first frame arrived."""
TIMEOUT = 20.0
# The avatar counts the audio it queued in whole frames of the receiver (100 ms): a
# position reported at an interruption depends on which frame was being queued then, so two
# runs of the same scenario agree on it within one frame.
FRAME = 0.1
# A timestamp taken by livekit's RPC handler follows the delivery of the call by the loop's
# scheduling only (the room runs the handler in a new task, as livekit's does); 50 ms
# leaves room for a loaded two-core machine.
SCHEDULING = 0.05
# How long after the end of a segment cut by a clear, beyond one round trip, playback_hooks
# still takes a start report for livekit's runner's stray one (_outputs._StrayStarts.MARGIN)
STRAY_MARGIN = 0.2

M1 = "First part, short."
M2 = "Second part is a rather long sentence that takes a while to play out."
M3 = "Third part never heard."
N1 = "Next turn is here."
THREE: list[Item] = [boundary("m1"), M1, boundary("m2"), M2, boundary("m3"), M3]
NEXT: list[Item] = [boundary("n1"), N1]


# -- one run of a scenario ---------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """What ``DataStreamAudioOutput`` itself reported (its own events)."""

    kind: Literal["started", "finished"]
    at: float
    """``created_at`` of a start; the moment a finish was reported."""
    position: float = 0.0
    interrupted: bool = False


@dataclass
class AvatarRun:
    """A real session whose audio goes to livekit's avatar worker, and what each part saw."""

    pair: RoomPair
    worker: AvatarWorker
    session: AgentSession[Any]
    output: DataStreamAudioOutput
    synchronizer: TranscriptSynchronizer
    text: RecordingTextOutput
    tracker: ph.PlaybackTracker | None
    events: EventCollector | None
    reports: list[Report] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    """The text of each assistant message livekit added to the conversation."""
    synchronized: list[str | None] = field(default_factory=list)
    """livekit's synchronized transcript of each segment."""
    speeches: list[SpeechHandle] = field(default_factory=list)
    playouts: list[PlaybackFinishedEvent] = field(default_factory=list)
    """What the top of the chain's ``wait_for_playout()`` returned after each speech."""
    leftover: list[asyncio.Task[Any]] = field(default_factory=list)
    """Tasks still running once everything was closed."""
    speech_created: asyncio.Event = field(default_factory=asyncio.Event)

    async def play_out(self, handle: SpeechHandle) -> None:
        """Wait for a speech to play out, and for the chain's own ``wait_for_playout()``."""
        await asyncio.wait_for(handle.wait_for_playout(), TIMEOUT)
        audio = self.session.output.audio
        assert audio is not None
        self.playouts.append(await asyncio.wait_for(audio.wait_for_playout(), TIMEOUT))

    async def speech(self, index: int) -> SpeechHandle:
        """The ``index``-th speech the session created (waits for it)."""

        async def _wait() -> SpeechHandle:
            while len(self.speeches) <= index:
                self.speech_created.clear()
                await self.speech_created.wait()
            return self.speeches[index]

        return await asyncio.wait_for(_wait(), TIMEOUT)

    @property
    def collected(self) -> EventCollector:
        assert self.events is not None
        return self.events

    @property
    def pushes(self) -> list[Transmission]:
        """The audio streams the output opened (one per segment), in order."""
        return [
            d
            for d in self.pair.transmissions
            if d.kind == "stream_header" and d.name == AUDIO_TOPIC
        ]

    @property
    def started(self) -> list[Report]:
        return [r for r in self.reports if r.kind == "started"]

    @property
    def finished(self) -> list[Report]:
        return [r for r in self.reports if r.kind == "finished"]

    def timeline(self) -> list[str]:
        """The output's life in time order: audio pushed, clears sent, what it reported."""
        moments: list[tuple[float, str]] = [(d.sent_at, "push") for d in self.pushes]
        moments += [(d.sent_at, "clear") for d in self.pair.rpcs(RPC_CLEAR)]
        for r in self.reports:
            label = r.kind if r.kind == "started" else f"finished(interrupted={r.interrupted})"
            moments.append((r.at, label))
        return [label for _, label in sorted(moments)]

    def calls(self) -> list[tuple[str, str, int | None]]:
        """Each RPC call, ``(caller, method, error code of its answer)``, in call order."""
        answers = {d.id: d.error for d in self.pair.transmissions if d.kind == "rpc_response"}
        return [(d.sender, d.name, answers.get(d.id, -1)) for d in self.pair.rpcs()]


async def play(
    agent: Agent,
    scenario: Callable[[AvatarRun], Awaitable[None]],
    *,
    tracked: bool,
    wait_playback_start: bool = True,
    start_delay: float = START_DELAY,
    latency: float = 0.0,
    sends_playback_started: bool = True,
    model: llm.LLM[Any] | llm.RealtimeModel | None = None,
    progress_interval: float | None = None,
) -> AvatarRun:
    """Run ``scenario`` on a fresh room pair, avatar worker and session; close them all.

    With ``progress_interval``, the tracker is attached with it and the collector receives
    the progress events too.
    """
    pair = RoomPair(latency=latency)
    await pair.connect()
    worker = AvatarWorker(
        pair.avatar_room,
        start_delay=start_delay,
        sends_playback_started=sends_playback_started,
        record=True,
    )
    await worker.start()  # the avatar first, as livekit's avatar plugins do

    session: AgentSession[Any] = AgentSession(llm=model or ScriptedLLM([]), tts=SineTTS())
    # what an avatar plugin's start() does
    output = DataStreamAudioOutput(
        pair.agent_room.as_rtc_room(),
        destination_identity=pair.avatar_identity,
        wait_remote_track=rtc.TrackKind.KIND_VIDEO,
        wait_playback_start=wait_playback_start,
    )
    session.output.audio = output
    # what RoomIO then does in session.start(room=...) with the output it finds set
    text = RecordingTextOutput()
    synchronizer = TranscriptSynchronizer(next_in_chain_audio=output, next_in_chain_text=text)
    session.output.audio = synchronizer.audio_output
    session.output.transcription = synchronizer.text_output

    tracker = ph.attach(session, progress_interval=progress_interval) if tracked else None
    progress = progress_interval is not None
    events = EventCollector(session, progress=progress) if tracked else None
    run = AvatarRun(pair, worker, session, output, synchronizer, text, tracker, events)

    def on_started(ev: PlaybackStartedEvent) -> None:
        run.reports.append(Report("started", ev.created_at))

    def on_finished(ev: PlaybackFinishedEvent) -> None:
        run.reports.append(
            Report("finished", time.time(), float(ev.playback_position), bool(ev.interrupted))
        )

    def on_state(ev: AgentStateChangedEvent) -> None:
        run.states.append(ev.new_state)

    def on_item(ev: ConversationItemAddedEvent) -> None:
        if isinstance(ev.item, llm.ChatMessage) and ev.item.role == "assistant":
            run.items.append(ev.item.text_content or "")

    def on_speech(ev: SpeechCreatedEvent) -> None:
        run.speeches.append(ev.speech_handle)
        run.speech_created.set()

    output.on("playback_started", on_started)
    output.on("playback_finished", on_finished)
    synchronizer.audio_output.on(
        "playback_finished", lambda ev: run.synchronized.append(ev.synchronized_transcript)
    )
    session.on("agent_state_changed", on_state)
    session.on("conversation_item_added", on_item)
    session.on("speech_created", on_speech)
    try:
        await session.start(agent, record=False)
        await asyncio.wait_for(scenario(run), 60)
    finally:
        await session.aclose()
        if tracker is not None:
            await tracker.aclose()
        if events is not None:
            events.close()
        await synchronizer.aclose()
        await worker.aclose()
        await pair.aclose()
        run.leftover = await _leftover_tasks()
    return run


async def _leftover_tasks() -> list[asyncio.Task[Any]]:
    # livekit cancels some tasks without awaiting them (AVSynchronizer's video task): give
    # every task a chance to end, then report those that did not
    others = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    if others:
        await asyncio.wait(others, timeout=5)
    return [t for t in others if not t.done()]


async def play_both(
    agent: Callable[[], Agent], scenario: Callable[[AvatarRun], Awaitable[None]], **kwargs: Any
) -> AvatarRun:
    """Play ``scenario`` without, then with the tracker (a new agent each time); assert the
    tracker changed nothing livekit or the avatar did; return the tracked run."""
    untracked = await play(agent(), scenario, tracked=False, **kwargs)
    tracked = await play(agent(), scenario, tracked=True, **kwargs)
    same_livekit_side(untracked, tracked)
    return tracked


def same_livekit_side(untracked: AvatarRun, tracked: AvatarRun) -> None:
    """Assert the tracker changed nothing livekit or the avatar did."""

    def exact(run: AvatarRun) -> dict[str, Any]:
        return {
            "timeline": run.timeline(),
            "positions": [round(r.position, 6) for r in run.finished if not r.interrupted],
            "calls": run.calls(),
            "states": run.states,
            "avatar": [
                (round(s.received, 6), bytes(s.pcm), s.started_at is not None, bool(s.cleared_at))
                for s in run.worker.segments
            ],
            "playouts": [
                (p.interrupted, None if p.interrupted else round(p.playback_position, 6))
                for p in run.playouts
            ],
            "runner": runner_reports(run),
            "transcript": _transcript(run),
            "leftover": run.leftover,
        }

    assert exact(tracked) == exact(untracked)
    # where the user cut in: the same frame, give or take one
    cut = [r.position for r in untracked.finished if r.interrupted]
    assert [r.position for r in tracked.finished if r.interrupted] == pytest.approx(
        cut, abs=FRAME + 1e-6
    )
    # and the words heard by then, give or take one
    for heard_u, heard_t in zip(_cut_words(untracked), _cut_words(tracked), strict=True):
        assert abs(len(heard_u.split()) - len(heard_t.split())) <= 1, (heard_u, heard_t)


def _cut_words(run: AvatarRun) -> list[str]:
    """livekit's synchronized transcript of each interrupted segment (the words heard)."""
    return [t or "" for t, r in zip(run.synchronized, run.finished, strict=True) if r.interrupted]


def _transcript(run: AvatarRun) -> dict[str, list[str]]:
    """The transcripts, each interrupted segment's words replaced by ``<cut>``: where the
    user cut in they depend on the moment, to a word."""
    cut = [r.interrupted for r in run.finished]
    synchronized = [
        "<cut>" if interrupted else (t or "")
        for t, interrupted in zip(run.synchronized, cut, strict=True)
    ]
    shown = [
        "<cut>" if i < len(cut) and cut[i] else text for i, text in enumerate(run.text.segments)
    ]
    items = list(run.items)
    for heard in _cut_words(run):
        if heard:
            items = [m.replace(heard, "<cut>", 1) for m in items]
    return {"synchronized": synchronized, "shown": shown, "items": items}


def heard_between(started_at: float, push: Transmission, finished: Report) -> bool:
    """An estimated start is no earlier than the segment's first frame was handed over and
    no later than its end was reported. The tracker sees that frame at the top of the
    chain, a moment before livekit's output opens the stream under it: SCHEDULING allows
    for it."""
    return push.sent_at - SCHEDULING <= started_at <= finished.at


def runner_reports(run: AvatarRun) -> list[tuple[str, bool]]:
    """What livekit's runner reported, in order: ``(kind, interrupted)``."""
    return [(r.kind, r.interrupted) for r in run.worker.reports]


RUNNER_AFTER_A_CLEAR = [
    ("started", False),
    ("finished", False),
    ("started", False),
    ("finished", True),  # the clear
    ("started", False),  # stray: the cleared segment's frame that was being queued
    ("finished", False),  # the next segment, never reported started
]


# -- the scenarios -----------------------------------------------------------------------


def reply_once(run: AvatarRun) -> Awaitable[None]:
    """One reply plays out."""
    return run.play_out(run.session.generate_reply())


async def until_playing_message_two(run: AvatarRun) -> None:
    """Until the agent heard that message 2 started and the avatar queued 0.6 s of it
    (played about 0.4 s: the runner queues 100 ms ahead, the first frame at once)."""
    await run.pair.wait_for_rpc(RPC_STARTED, 2, timeout=TIMEOUT)
    await run.worker.wait_for_audio(1, 0.6, timeout=TIMEOUT)


async def cut_in_message_two(run: AvatarRun) -> None:
    """The user cuts in while the avatar plays the second message, then the runner's late
    ``lk.playback_started`` for the cleared segment arrives."""
    handle = run.session.generate_reply()
    await until_playing_message_two(run)
    await run.session.interrupt()
    await run.play_out(handle)
    await run.pair.wait_for_rpc(RPC_STARTED, 3, timeout=TIMEOUT)


async def cut_then_next_turn_after_the_stray_start(run: AvatarRun) -> None:
    """Cut in during message 2, wait for the stray start, then one more reply."""
    await cut_in_message_two(run)
    await run.play_out(run.session.generate_reply())


async def cut_then_next_turn_at_once(run: AvatarRun) -> None:
    """Cut in during message 2, then one more reply at once (the stray start is in flight)."""
    handle = run.session.generate_reply()
    await until_playing_message_two(run)
    await run.session.interrupt()
    await run.play_out(handle)
    await run.play_out(run.session.generate_reply())


async def greeted(run: AvatarRun) -> None:
    """The greeting ``on_enter`` says plays out."""
    await run.play_out(await run.speech(0))


async def realtime_reply(run: AvatarRun) -> None:
    """One realtime response (three items) plays out."""
    handle = run.session.generate_reply()
    await asyncio.wait_for(handle, TIMEOUT)
    await run.play_out(handle)


# -- the tests ---------------------------------------------------------------------------


def assert_reported_as_the_output(run: AvatarRun, ids: list[str]) -> None:
    """Every message started and finished in order, with the output's own times and the
    positions the avatar reported."""
    assert run.collected.timeline() == [(k, i) for i in ids for k in ("started", "finished")]
    assert [e.started_at for e in run.collected.started] == [r.at for r in run.started]
    finished = run.collected.finished
    assert [f.played for f in finished] == ["full"] * len(ids)
    assert [f.playback_position for f in finished] == [r.position for r in run.finished]
    assert [f.started_at for f in finished] == [r.at for r in run.started]
    assert [e.started_at_estimated for e in run.collected.events] == [False] * 2 * len(ids)


class TestStartReportedByTheAvatar:
    """With ``wait_playback_start=True``, a message starts when the avatar says it started."""

    async def test_started_at_follows_the_avatar_not_the_push(self) -> None:
        agent = ScriptAgent(THREE)
        untracked = await play(agent, reply_once, tracked=False)
        tracked = await play(ScriptAgent(THREE), reply_once, tracked=True)
        same_livekit_side(untracked, tracked)

        run = tracked
        assert run.timeline() == ["push", "started", "finished(interrupted=False)"] * 3
        assert run.calls() == [("avatar-worker", m, None) for m in [RPC_STARTED, RPC_FINISHED] * 3]
        assert_reported_as_the_output(run, ["m1", "m2", "m3"])
        # the output's created_at is when the avatar's lk.playback_started reached the agent
        for report, call in zip(run.started, run.pair.rpcs(RPC_STARTED), strict=True):
            assert call.delivered_at <= report.at <= call.delivered_at + SCHEDULING
        # ... which the runner sent START_DELAY after the first frame arrived, so well
        # after the push
        runner = [r for r in run.worker.reports if r.kind == "started"]
        for push, seg, began, e in zip(
            run.pushes, run.worker.segments, runner, run.collected.started, strict=True
        ):
            assert began.at >= seg.arrived_at + START_DELAY
            assert began.at <= e.started_at <= began.at + SCHEDULING
            assert e.started_at >= push.sent_at + START_DELAY
        # the positions are the audio the avatar got: all of it
        assert [f.playback_position for f in run.collected.finished] == pytest.approx(
            [s.received for s in run.worker.segments]
        )
        # the runner reports the end once it has queued the last frame, FRAME before that
        # frame is heard
        for f in run.collected.finished:
            assert f.started_at is not None
            assert f.finished_at - f.started_at == pytest.approx(
                f.playback_position - FRAME, abs=SCHEDULING
            )
        assert run.items == [M1 + M2 + M3]
        assert run.synchronized == [M1, M2, M3]
        assert run.leftover == []


class TestStartApproximatedAtPush:
    """By default livekit reports a segment started when it pushes its first frame."""

    async def test_started_at_is_livekits_push_time(self, caplog: pytest.LogCaptureFixture) -> None:
        untracked = await play(
            ScriptAgent(THREE), reply_once, tracked=False, wait_playback_start=False
        )
        tracked = await play(
            ScriptAgent(THREE), reply_once, tracked=True, wait_playback_start=False
        )
        same_livekit_side(untracked, tracked)

        run = tracked
        assert run.timeline() == ["push", "started", "finished(interrupted=False)"] * 3
        # the avatar still sends lk.playback_started; the output never registered the method
        unsupported = rtc.RpcError.ErrorCode.UNSUPPORTED_METHOD
        assert (
            run.calls()
            == [
                ("avatar-worker", RPC_STARTED, unsupported),
                ("avatar-worker", RPC_FINISHED, None),
            ]
            * 3
        )
        refused = "remote participant didn't register lk.playback_started RPC"
        assert [r.getMessage() for r in caplog.records].count(refused) == 6  # both runs
        assert_reported_as_the_output(run, ["m1", "m2", "m3"])
        runner = [r for r in run.worker.reports if r.kind == "started"]
        for push, began, e in zip(run.pushes, runner, run.collected.started, strict=True):
            # livekit's approximation: right after the stream was opened, in the same call
            assert push.sent_at <= e.started_at <= push.sent_at + SCHEDULING
            # while the avatar began START_DELAY after the frame arrived
            assert began.at - e.started_at >= START_DELAY - SCHEDULING
        assert run.leftover == []


TWO: list[Item] = [
    boundary("a"),
    "First message of two.",
    boundary("b"),
    "The second one is a little longer.",
]
SLOW_START = 0.5
"""An avatar that takes half a second to start each segment, to tell the clocks apart."""


def first_word(events: list[ph.MessagePlaybackProgressed]) -> ph.MessagePlaybackProgressed:
    """The first progress event that shows a word."""
    return next(e for e in events if e.heard_text)


class TestLiveProgress:
    """Live progress counts from the start the output reports: the avatar's own with
    ``wait_playback_start=True``, livekit's push by default, ahead of the avatar."""

    @staticmethod
    async def both(wait_playback_start: bool) -> AvatarRun:
        runs = [
            await play(
                ScriptAgent(TWO),
                reply_once,
                tracked=tracked,
                wait_playback_start=wait_playback_start,
                start_delay=SLOW_START,
                progress_interval=0.1,
            )
            for tracked in (False, True)
        ]
        same_livekit_side(*runs)
        return runs[1]

    async def test_in_step_with_the_avatar(self) -> None:
        run = await self.both(wait_playback_start=True)
        assert_reported_as_the_output(run, ["a", "b"])
        began = [r for r in run.worker.reports if r.kind == "started"]
        for s, f, b in zip(run.collected.started, run.collected.finished, began, strict=True):
            progress = run.collected.progress_of(s.message_id)
            assert len(progress) >= 3
            # the clock runs from the avatar's start (the output reports no played runs)
            for e in progress:
                assert e.at >= s.started_at >= b.at
                assert e.position == pytest.approx(e.at - s.started_at, abs=0.005)
            # livekit's synchronizer shows the words from the avatar's start too
            assert first_word(progress).at >= b.at
            # the avatar reports the end FRAME early: the live position stops short of it
            assert max(e.position for e in progress) <= f.playback_position
        assert run.leftover == []

    async def test_ahead_of_the_avatar_by_default(self) -> None:
        run = await self.both(wait_playback_start=False)
        assert_reported_as_the_output(run, ["a", "b"])
        began = [r for r in run.worker.reports if r.kind == "started"]
        for push, s, f, b in zip(
            run.pushes, run.collected.started, run.collected.finished, began, strict=True
        ):
            progress = run.collected.progress_of(s.message_id)
            # the clock runs from the push, SLOW_START before the avatar began
            assert s.started_at <= push.sent_at + SCHEDULING
            assert b.at - s.started_at >= SLOW_START - SCHEDULING
            for e in progress:
                assert e.position == pytest.approx(e.at - s.started_at, abs=0.005)
            # words are shown before the avatar says anything
            assert first_word(progress).at < b.at
            # and the live position runs past the avatar's final figure
            assert max(e.position for e in progress) > f.playback_position
        assert run.leftover == []


class TestInterruption:
    """A cut in message 2 of 3: 1 full, 2 partial at the avatar's position, 3 skipped."""

    async def test_interrupted_in_message_two_of_three(self) -> None:
        tracked = await play_both(lambda: ScriptAgent(THREE), cut_in_message_two)

        run = tracked
        # message 3 is never pushed; the runner sends a last, stray start after the clear
        assert run.timeline() == [
            "push",
            "started",
            "finished(interrupted=False)",
            "push",
            "started",
            "clear",
            "finished(interrupted=True)",
            "started",
        ]
        avatar, agent = run.pair.avatar_identity, run.pair.agent_identity
        assert run.calls() == [
            (avatar, RPC_STARTED, None),
            (avatar, RPC_FINISHED, None),
            (avatar, RPC_STARTED, None),
            (agent, RPC_CLEAR, None),
            (avatar, RPC_FINISHED, None),
            (avatar, RPC_STARTED, None),
        ]
        assert runner_reports(run) == RUNNER_AFTER_A_CLEAR[:5]
        # the clear reached the avatar: the receiver obeyed it, the rest of message 2 was dropped
        assert len(run.worker.clears) == 1
        seg1, seg2 = run.worker.segments
        assert seg1.cleared_at is None and seg2.cleared_at is not None
        assert seg2.released < seg2.received
        clear_call = run.pair.rpcs(RPC_CLEAR)[0]
        assert clear_call.receiver == avatar

        finished = run.collected.finished
        assert run.collected.timeline() == [
            ("started", "m1"),
            ("finished", "m1"),
            ("started", "m2"),
            ("finished", "m2"),
            ("finished", "m3"),
        ]
        assert [(f.message_id, f.played, f.interrupted) for f in finished] == [
            ("m1", "full", False),
            ("m2", "partial", True),
            ("m3", "skipped", True),
        ]
        r1, r2 = run.finished
        # the positions the avatar reported, message 2's own
        assert finished[0].playback_position == r1.position == pytest.approx(seg1.received)
        assert finished[1].playback_position == r2.position
        assert 0 < finished[1].playback_position < seg2.received
        # the runner counts the audio it had queued: up to one frame more than it had played
        # when the clear reached it
        began_m2 = [r for r in run.worker.reports if r.kind == "started"][1]
        heard = run.worker.clears[0] - began_m2.at
        assert heard <= finished[1].playback_position <= heard + FRAME + SCHEDULING
        assert finished[2].playback_position == 0 and finished[2].started_at is None
        assert [e.started_at for e in run.collected.started] == [r.at for r in run.started[:2]]
        # the stray start after the clear was bound to nothing
        assert len(run.collected.events) == 5
        assert run.playouts[0].interrupted and run.playouts[0].playback_position == r2.position
        assert run.leftover == []


class TestLateStartReport:
    """Starts that come after all of a segment's audio was sent still start each message."""

    async def test_short_messages_with_a_long_avatar_delay(self) -> None:
        script: list[Item] = [boundary("s1"), "Hi.", boundary("s2"), "Yes.", boundary("s3"), "Ok."]
        delay = 0.5
        tracked = await play_both(lambda: ScriptAgent(script), reply_once, start_delay=delay)

        run = tracked
        assert run.timeline() == ["push", "started", "finished(interrupted=False)"] * 3
        trailers = [d for d in run.pair.transmissions if d.kind == "stream_trailer"]
        for trailer, call in zip(trailers, run.pair.rpcs(RPC_STARTED), strict=True):
            # the whole segment had been sent (and had arrived) long before the avatar began
            assert call.sent_at - trailer.delivered_at >= delay - FRAME
        # each segment is shorter than the runner's 100 ms queue: it reports the segment
        # finished as soon as it has queued it, right after its start
        assert runner_reports(run) == [("started", False), ("finished", False)] * 3
        reports = run.worker.reports
        for began, ended in zip(reports[::2], reports[1::2], strict=True):
            assert ended.at - began.at < SCHEDULING
        for started, finished in zip(run.started, run.finished, strict=True):
            assert finished.at - started.at < SCHEDULING
        assert_reported_as_the_output(run, ["s1", "s2", "s3"])
        assert run.leftover == []


class TestTurnAfterAnInterruption:
    """livekit's runner sends a stray start for the cleared segment and none for the next,
    which is still reported heard; the stray start must not become the next one's."""

    # Why: on lk.clear_buffer the runner's clear task resets its play position to 0 while
    # its video loop is still inside `await av_sync.push(audio_frame)` (rtc.AudioSource
    # waits for room in its 100 ms queue; the clear does not empty it). When that push
    # returns, the loop sees position 0 and sends lk.playback_started (the segment is over),
    # then adds the frame's duration: the next segment starts from a non-zero position, so
    # it gets no start, and its finished position counts that frame too. It happens
    # whenever the clear arrives while a segment still has audio to queue (here always).

    async def test_stray_start_before_the_next_turn(self, caplog: pytest.LogCaptureFixture) -> None:
        scripts = (THREE, NEXT)
        scenario = cut_then_next_turn_after_the_stray_start
        tracked = await play_both(lambda: ScriptAgent(*scripts), scenario)

        run = tracked
        assert run.timeline() == [
            "push",
            "started",
            "finished(interrupted=False)",
            "push",
            "started",
            "clear",
            "finished(interrupted=True)",
            "started",  # the stray one, 0-100 ms after the clear
            "push",  # the next turn: no start at all
            "finished(interrupted=False)",
        ]
        assert runner_reports(run) == RUNNER_AFTER_A_CLEAR
        stray = run.worker.reports[4]
        # the push the clear interrupted ends up to one frame later
        assert 0 < stray.at - run.worker.clears[0] < FRAME + SCHEDULING
        n1 = run.worker.segments[2]
        # the next segment did play, and its position includes the cleared segment's frame
        assert n1.started_at is not None and n1.cleared_at is None
        assert run.finished[2].position == pytest.approx(n1.received + FRAME)
        # livekit's own state never says "speaking" in the next turn
        first_turn = ["listening", "thinking", "speaking", "listening"]
        assert run.states == [*first_turn, "thinking", "listening"]
        assert run.synchronized == [M1, run.synchronized[1], N1]
        assert run.leftover == []

        # playback_hooks: the next message was heard, so it started, at an estimated time
        assert run.collected.timeline() == [
            ("started", "m1"),
            ("finished", "m1"),
            ("started", "m2"),
            ("finished", "m2"),
            ("finished", "m3"),
            ("started", "n1"),
            ("finished", "n1"),
        ]
        started_n1, finished_n1 = run.collected.started[2], run.collected.finished[3]
        assert finished_n1.played == "full" and not finished_n1.interrupted
        assert finished_n1.playback_position == run.finished[2].position
        assert started_n1.started_at_estimated and finished_n1.started_at_estimated
        assert finished_n1.started_at == started_n1.started_at
        assert heard_between(started_n1.started_at, run.pushes[2], run.finished[2])
        assert not any(e.started_at_estimated for e in run.collected.events[:5])
        assert [e.started_at for e in run.collected.started[:2]] == [r.at for r in run.started[:2]]
        # one warning from playback_hooks (in the tracked run), for n1
        warnings = [r for r in caplog.records if r.name == "playback_hooks"]
        assert [r.levelno for r in warnings] == [logging.WARNING]
        assert "lk.playback_started" in warnings[0].getMessage()

    async def test_stray_start_after_the_next_turn_began(self) -> None:
        # 150 ms each way: the avatar answers the clear, then (its RPCs go one at a time)
        # sends the stray start; the next turn's audio is pushed before the stray arrives
        scripts = (THREE, NEXT)
        scenario = cut_then_next_turn_at_once
        tracked = await play_both(lambda: ScriptAgent(*scripts), scenario, latency=0.15)

        run = tracked
        assert run.timeline() == [
            "push",
            "started",
            "finished(interrupted=False)",
            "push",
            "started",
            "clear",
            "finished(interrupted=True)",
            "push",
            "started",  # the stray one: livekit takes it for the next segment's start
            "finished(interrupted=False)",
        ]
        assert runner_reports(run) == RUNNER_AFTER_A_CLEAR
        stray, n1 = run.started[2], run.worker.segments[2]
        # the avatar began playing the next segment only after the stray start had
        # reached the agent (and was reported as that segment's start)
        assert n1.started_at is not None and n1.started_at > stray.at
        assert run.finished[2].position == pytest.approx(n1.received + FRAME)
        first_turn = ["listening", "thinking", "speaking", "listening"]
        assert run.states == [*first_turn, "thinking", "speaking", "listening"]
        assert run.leftover == []

    async def test_stray_start_is_not_the_next_turns_start(self) -> None:
        scripts = (THREE, NEXT)
        run = await play(
            ScriptAgent(*scripts), cut_then_next_turn_at_once, tracked=True, latency=0.15
        )
        assert [e for e in run.collected.timeline() if e[1] == "n1"] == [
            ("started", "n1"),
            ("finished", "n1"),
        ]
        stray = run.started[2]
        started_n1, finished_n1 = run.collected.started[2], run.collected.finished[3]
        assert started_n1.message_id == finished_n1.message_id == "n1"
        assert started_n1.started_at != stray.at
        assert started_n1.started_at_estimated and finished_n1.started_at_estimated
        assert heard_between(started_n1.started_at, run.pushes[2], run.finished[2])
        assert finished_n1.played == "full"
        assert finished_n1.playback_position == run.finished[2].position


class PromptWorker:
    """An avatar worker without livekit's runner, and so without its stray start: livekit's
    receiver, a segment started ``start_delay`` after its first frame arrived, finished
    once its audio had time to play, or at once when cleared."""

    @dataclass
    class Segment:
        received: float = 0.0
        started_at: float | None = None
        ended: bool = False
        timer: asyncio.TimerHandle | None = None

    def __init__(self, room: LinkedRoom, *, start_delay: float) -> None:
        self.receiver = DataStreamAudioReceiver(room.as_rtc_room())
        self.receiver.on("clear_buffer", self._cleared)
        self.start_delay = start_delay
        self.starts: list[float] = []
        """When it sent each ``lk.playback_started``."""
        self._segment: PromptWorker.Segment | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PromptWorker:
        await self.receiver.start()
        self._task = asyncio.create_task(self._play())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.receiver.aclose()

    async def _play(self) -> None:
        loop = asyncio.get_running_loop()
        async for item in self.receiver:
            seg = self._segment
            if isinstance(item, AudioSegmentEnd):
                if seg is not None:  # None: it was cleared
                    seg.ended = True
                    self._finish_later(seg)
                continue
            if seg is None:
                seg = self._segment = PromptWorker.Segment()
                seg.timer = loop.call_later(self.start_delay, self._start, seg)
            seg.received += item.duration

    def _start(self, seg: PromptWorker.Segment) -> None:
        seg.started_at = time.time()
        self.starts.append(seg.started_at)
        self.receiver.notify_playback_started()
        self._finish_later(seg)

    def _finish_later(self, seg: PromptWorker.Segment) -> None:
        if seg.ended and seg.started_at is not None:
            delay = max(0.0, seg.started_at + seg.received - time.time())
            seg.timer = asyncio.get_running_loop().call_later(delay, self._finish, seg)

    def _finish(self, seg: PromptWorker.Segment) -> None:
        self._segment = None
        self.receiver.notify_playback_finished(seg.received, False)

    def _cleared(self) -> None:
        seg, self._segment = self._segment, None
        if seg is None:
            return
        if seg.timer is not None:
            seg.timer.cancel()
        played = 0.0 if seg.started_at is None else time.time() - seg.started_at
        self.receiver.notify_playback_finished(min(played, seg.received), True)


class TestRealStartAfterAnInterruption:
    """A start reported soon after an interruption's clear is taken for livekit's runner's
    stray one, even from a worker that sends none; a later one is the next message's."""

    @staticmethod
    async def cut_then_next_turn(start_delay: float) -> tuple[EventCollector, list[Report], float]:
        """Cut in message 2, then one more reply at once; return the events, the output's
        start reports, and how long after the stray window closed n1's start arrived."""
        # 100 ms each way: the window after the cut segment's end is one round trip
        # (~400 ms: the clear, then the report of the end) plus 200 ms
        async with RoomPair(latency=0.1) as pair:
            async with PromptWorker(pair.avatar_room, start_delay=start_delay) as worker:
                session: AgentSession[Any] = AgentSession(llm=ScriptedLLM([]), tts=SineTTS())
                output = DataStreamAudioOutput(
                    pair.agent_room.as_rtc_room(),
                    destination_identity=pair.avatar_identity,
                    wait_playback_start=True,
                )
                reports: list[Report] = []
                output.on(
                    "playback_started", lambda ev: reports.append(Report("started", ev.created_at))
                )
                text = RecordingTextOutput()
                synchronizer = TranscriptSynchronizer(
                    next_in_chain_audio=output, next_in_chain_text=text
                )
                session.output.audio = synchronizer.audio_output
                session.output.transcription = synchronizer.text_output
                tracker = ph.attach(session)
                with EventCollector(session) as events:
                    await session.start(ScriptAgent(THREE, NEXT), record=False)
                    handle = session.generate_reply()
                    await tracker.wait_for("m2", "started", timeout=TIMEOUT)
                    await text.wait_for_words(1, 2, timeout=TIMEOUT)
                    await session.interrupt()
                    await asyncio.wait_for(handle.wait_for_playout(), TIMEOUT)
                    await asyncio.wait_for(session.generate_reply().wait_for_playout(), TIMEOUT)
                    await events.wait_finished(4, timeout=TIMEOUT)
                await session.aclose()
                await tracker.aclose()
                await synchronizer.aclose()
            assert len(worker.starts) == 3  # m1, m2, n1: no stray
        (clear,) = pair.rpcs(RPC_CLEAR)
        cut_end = pair.rpcs(RPC_FINISHED)[1]
        n1_start = pair.rpcs(RPC_STARTED)[2]
        round_trip = cut_end.delivered_at - clear.sent_at
        window_end = cut_end.delivered_at + round_trip + STRAY_MARGIN
        return events, reports, n1_start.delivered_at - window_end

    async def test_a_prompt_start_is_given_up(self) -> None:
        events, reports, after_window = await self.cut_then_next_turn(start_delay=0.0)
        assert after_window < -SCHEDULING  # n1's start arrived inside the window
        assert [e.message_id for e in events.started] == ["m1", "m2", "n1"]
        started_n1, finished_n1 = events.started[2], events.finished[3]
        # livekit took the start for n1's; playback_hooks took it for a stray one
        assert len(reports) == 3
        assert started_n1.started_at_estimated and finished_n1.played == "full"
        assert started_n1.started_at != reports[2].at

    async def test_a_later_start_is_the_next_messages(self) -> None:
        events, reports, after_window = await self.cut_then_next_turn(start_delay=0.7)
        assert after_window > SCHEDULING  # n1's start arrived after the window
        assert [e.message_id for e in events.started] == ["m1", "m2", "n1"]
        assert [e.started_at for e in events.started] == [r.at for r in reports]
        assert not any(e.started_at_estimated for e in events.events)


class TestAvatarNeverReportsStart:
    """A worker that never sends lk.playback_started to an output waiting for it: livekit
    plays on, and each message is still reported heard, with an estimated start."""

    async def test_livekit_plays_on_without_a_start(self) -> None:
        script: list[Item] = [boundary("a"), "First message of two.", boundary("b"), "Second."]
        untracked = await play(
            ScriptAgent(script), reply_once, tracked=False, sends_playback_started=False
        )
        tracked = await play(
            ScriptAgent(script), reply_once, tracked=True, sends_playback_started=False
        )
        same_livekit_side(untracked, tracked)

        run = tracked
        assert run.timeline() == ["push", "finished(interrupted=False)"] * 2
        # the runner reports each start; this worker's receiver never sends it
        assert runner_reports(run) == [("started", False), ("finished", False)] * 2
        assert run.calls() == [("avatar-worker", RPC_FINISHED, None)] * 2
        # wait_for_playout() returns (no hang), with the avatar's last report
        last = run.finished[-1]
        assert run.playouts[0].playback_position == last.position
        assert not run.playouts[0].interrupted
        assert [f.position for f in run.finished] == pytest.approx(
            [s.received for s in run.worker.segments]
        )
        # livekit's state never says "speaking"
        assert run.states == ["listening", "thinking", "listening"]
        assert run.synchronized == ["First message of two.", "Second."]
        assert run.leftover == []

        # playback_hooks: both were heard, so both started, at estimated times
        assert run.collected.timeline() == [
            ("started", "a"),
            ("finished", "a"),
            ("started", "b"),
            ("finished", "b"),
        ]
        finished = run.collected.finished
        assert [(f.played, f.interrupted) for f in finished] == [("full", False)] * 2
        assert [f.playback_position for f in finished] == [r.position for r in run.finished]
        for push, report, s, f in zip(
            run.pushes, run.finished, run.collected.started, finished, strict=True
        ):
            assert s.started_at_estimated and f.started_at_estimated
            assert f.started_at == s.started_at
            assert heard_between(s.started_at, push, report)

    async def test_no_live_progress_and_one_warning(self, caplog: pytest.LogCaptureFixture) -> None:
        script: list[Item] = [boundary("a"), "First message of two.", boundary("b"), "Second."]
        playing: list[ph.MessagePlaybackProgressed | None] = []

        async def look_while_it_plays(run: AvatarRun) -> None:
            handle = run.session.generate_reply()
            await run.worker.wait_for_audio(0, 0.2, timeout=TIMEOUT)
            assert run.tracker is not None
            playing.append(run.tracker.now_playing())
            await run.play_out(handle)

        run = await play(
            ScriptAgent(script),
            look_while_it_plays,
            tracked=True,
            sends_playback_started=False,
            progress_interval=0.1,
        )
        # nothing is playing as far as the events go: no progress, no now_playing()
        assert playing == [None]
        assert run.collected.progressed == []
        assert [type(e).__name__ for e in run.collected.delivered] == [
            "MessagePlaybackStarted",
            "MessagePlaybackFinished",
        ] * 2
        # the estimate: the avatar's end minus the position it reported; the runner reports
        # the end once the last frame is queued (FRAME early), so the estimate comes out up
        # to FRAME before the avatar really began
        began = [r for r in run.worker.reports if r.kind == "started"]
        for s, b in zip(run.collected.started, began, strict=True):
            assert b.at - FRAME - SCHEDULING <= s.started_at <= b.at
        # one warning from playback_hooks, for the first segment without a start
        warnings = [
            r.getMessage()
            for r in caplog.records
            if r.name == "playback_hooks" and r.levelno == logging.WARNING
        ]
        assert len(warnings) == 1 and "lk.playback_started" in warnings[0]
        assert "wait_playback_start=False" in warnings[0]


class GreetingAgent(ScriptAgent):
    """Says a labelled greeting in ``on_enter``."""

    async def on_enter(self) -> None:
        handle = self.session.say("Welcome, I am your avatar.")
        tracker = ph.tracker_for(self.session)
        if tracker is not None:
            tracker.label(handle, "greeting", metadata={"kind": "greeting"})


class TestGreeting:
    """attach() before start(): the greeting said in on_enter is reported through the avatar."""

    async def test_greeting_in_on_enter(self) -> None:
        tracked = await play_both(lambda: GreetingAgent(), greeted)

        run = tracked
        assert run.timeline() == ["push", "started", "finished(interrupted=False)"]
        assert_reported_as_the_output(run, ["greeting"])
        (started,) = run.collected.started
        assert started.source == "say" and dict(started.metadata) == {"kind": "greeting"}
        assert started.started_at >= run.pushes[0].sent_at + START_DELAY
        assert run.items == ["Welcome, I am your avatar."]
        assert run.leftover == []

    async def test_attach_then_the_avatar_then_the_session(self) -> None:
        # the order of livekit's avatar examples, attach() first: the avatar plugin's
        # start() sets the output, then session.start(room=...) wraps it and says hello
        async with RoomPair() as pair, AvatarWorker(pair.avatar_room, start_delay=START_DELAY):
            session: AgentSession[Any] = AgentSession(llm=ScriptedLLM([]), tts=SineTTS())
            tracker = ph.attach(session)
            avatar = PluginAvatar(pair.avatar_identity)
            await avatar.start(session, pair.agent_room.as_rtc_room())
            assert isinstance(session.output.audio, DataStreamAudioOutput)
            # what RoomIO does in session.start(room=...) with the output it finds set
            synchronizer = TranscriptSynchronizer(
                next_in_chain_audio=session.output.audio, next_in_chain_text=RecordingTextOutput()
            )
            session.output.audio = synchronizer.audio_output
            session.output.transcription = synchronizer.text_output
            with EventCollector(session) as events:
                await session.start(GreetingAgent(), record=False)
                (finished,) = await events.wait_finished(1, timeout=TIMEOUT)
            await session.aclose()
            await tracker.aclose()
            await synchronizer.aclose()
            await avatar.aclose()

        assert events.timeline() == [("started", "greeting"), ("finished", "greeting")]
        (started,) = events.started
        (call,) = pair.rpcs(RPC_STARTED)
        assert call.delivered_at <= started.started_at <= call.delivered_at + SCHEDULING
        assert not started.started_at_estimated
        assert (finished.played, finished.transcript) == ("full", "Welcome, I am your avatar.")


class PluginAvatar(AvatarSession[str]):
    """What an avatar plugin's ``start()`` does, less the provider's API call that launches
    its worker: livekit's base class, then the agent's audio to the worker."""

    def __init__(self, identity: str) -> None:
        super().__init__()
        self._identity = identity

    @property
    def avatar_identity(self) -> str:
        return self._identity

    async def start(self, agent_session: AgentSession[Any], room: rtc.Room) -> None:
        await super().start(agent_session, room)
        agent_session.output.audio = DataStreamAudioOutput(
            room,
            destination_identity=self._identity,
            wait_remote_track=rtc.TrackKind.KIND_VIDEO,
            wait_playback_start=True,
        )


class TestRealtime:
    """Each item of a realtime response is its own message, started when the avatar says."""

    async def test_three_items_through_the_avatar(self) -> None:
        def model() -> ScriptedRealtimeModel:
            return ScriptedRealtimeModel(
                [
                    [
                        RealtimeItem("item_pre", "Let me check.", 0.4),
                        RealtimeItem("item_ans", "The answer is four.", 0.6),
                        RealtimeItem("item_end", "Anything else?", 0.3),
                    ]
                ]
            )

        agent = Agent(instructions="realtime avatar")
        untracked = await play(agent, realtime_reply, tracked=False, model=model())
        tracked = await play(
            Agent(instructions="realtime avatar"), realtime_reply, tracked=True, model=model()
        )
        same_livekit_side(untracked, tracked)

        run = tracked
        assert run.timeline() == ["push", "started", "finished(interrupted=False)"] * 3
        ids = ["item_pre", "item_ans", "item_end"]
        assert_reported_as_the_output(run, ids)
        assert [e.source for e in run.collected.events] == ["realtime"] * 6
        assert [round(f.playback_position, 6) for f in run.collected.finished] == [0.4, 0.6, 0.3]
        for push, e in zip(run.pushes, run.collected.started, strict=True):
            assert e.started_at >= push.sent_at + START_DELAY
        assert run.items == ["Let me check.", "The answer is four.", "Anything else?"]
        assert run.leftover == []


# -- the room pair itself ----------------------------------------------------------------


class TestRoomPair:
    """The pair carries byte streams, RPC (with livekit's errors), presence and data packets,
    in order."""

    async def test_rpc_answers_and_errors(self) -> None:
        async with RoomPair() as pair:
            agent, avatar = pair.agent_room.local_participant, pair.avatar_room.local_participant

            @avatar.register_rpc_method("echo")
            async def echo(data: rtc.RpcInvocationData) -> str:
                return f"{data.caller_identity}:{data.payload}"

            def fail(data: rtc.RpcInvocationData) -> str:
                raise rtc.RpcError(2001, "no", data="why")

            def crash(data: rtc.RpcInvocationData) -> str:
                raise KeyError("boom")

            async def slow(data: rtc.RpcInvocationData) -> str:
                await asyncio.Event().wait()
                return ""

            avatar.register_rpc_method("fail", fail)
            avatar.register_rpc_method("crash", crash)
            avatar.register_rpc_method("slow", slow)
            assert avatar._rpc_handlers["echo"] is echo  # what livekit's avatar code reads

            async def call(method: str, **kwargs: Any) -> str | int:
                try:
                    return await agent.perform_rpc(
                        destination_identity=kwargs.pop("to", "avatar-worker"),
                        method=method,
                        payload=kwargs.pop("payload", "hi"),
                        **kwargs,
                    )
                except rtc.RpcError as e:
                    return e.code

            codes = rtc.RpcError.ErrorCode
            assert await call("echo") == "agent:hi"
            assert await call("fail") == 2001
            assert await call("crash") == codes.APPLICATION_ERROR
            assert await call("slow", response_timeout=0.05) == codes.RESPONSE_TIMEOUT
            assert await call("missing") == codes.UNSUPPORTED_METHOD
            assert await call("echo", to="nobody") == codes.RECIPIENT_NOT_FOUND
            assert await call("echo", payload="x" * 20000) == codes.REQUEST_PAYLOAD_TOO_LARGE
            pending = asyncio.ensure_future(call("slow"))
            await pair.wait_for_rpc("slow", 2)
            await pair.avatar_room.disconnect()
            assert await pending == codes.RECIPIENT_DISCONNECTED
            assert await call("echo") == codes.RECIPIENT_NOT_FOUND
            await pair.agent_room.disconnect()
            assert await call("echo") == codes.SEND_FAILED
            assert [d.name for d in pair.rpcs()] == [
                "echo",
                "fail",
                "crash",
                "slow",
                "missing",
                "slow",
            ]

    async def test_byte_stream_with_attributes_and_chunks(self) -> None:
        async with RoomPair() as pair:
            got: list[tuple[rtc.ByteStreamInfo, str, list[bytes]]] = []
            done = asyncio.Event()

            async def read(reader: Any, sender: str) -> None:
                chunks = [chunk async for chunk in reader]
                got.append((reader.info, sender, chunks))
                done.set()

            tasks: list[asyncio.Task[None]] = []
            pair.avatar_room.register_byte_stream_handler(
                AUDIO_TOPIC, lambda r, s: tasks.append(asyncio.create_task(read(r, s)))
            )
            with pytest.raises(ValueError, match="already set"):
                pair.avatar_room.register_byte_stream_handler(AUDIO_TOPIC, lambda r, s: None)
            writer = await pair.agent_room.local_participant.stream_bytes(
                "seg",
                topic=AUDIO_TOPIC,
                destination_identities=[pair.avatar_identity],
                attributes={"sample_rate": "24000"},
            )
            await writer.write(b"a" * 20000)
            await writer.write(b"b")
            await writer.aclose(attributes={"end": "yes"})
            with pytest.raises(RuntimeError, match="already closed"):
                await writer.aclose()
            await asyncio.wait_for(done.wait(), 5)
            ((info, sender, chunks),) = got
            assert sender == pair.agent_identity and info.topic == AUDIO_TOPIC
            assert info.attributes == {"sample_rate": "24000", "end": "yes"}
            assert [len(c) for c in chunks] == [15000, 5000, 1]
            kinds = [d.kind for d in pair.transmissions]
            assert kinds == ["stream_header"] + ["stream_chunk"] * 3 + ["stream_trailer"]

    async def test_stream_cut_by_a_disconnection(self) -> None:
        async with RoomPair() as pair:
            opened: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            pair.avatar_room.register_byte_stream_handler("t", lambda r, s: opened.set_result(r))
            writer = await pair.agent_room.local_participant.stream_bytes("x", topic="t")
            await writer.write(b"123")
            reader = await asyncio.wait_for(opened, 5)
            assert await reader.__anext__() == b"123"
            await pair.agent_room.disconnect()
            with pytest.raises(rtc.StreamError):
                await reader.__anext__()
            with pytest.raises(rtc.StreamError):
                await writer.write(b"4")

    async def test_presence_as_livekits_helpers_see_it(self) -> None:
        from livekit.agents import utils

        pair = RoomPair(latency=0.02)
        seen: list[str] = []
        left = asyncio.Event()
        pair.agent_room.on("participant_connected", lambda p: seen.append("connected"))
        pair.agent_room.on("participant_active", lambda p: seen.append("active"))
        pair.agent_room.on("track_published", lambda pub, p: seen.append("track"))
        pair.agent_room.on("participant_disconnected", lambda p: left.set())
        await pair.agent_room.connect()
        agent_rtc = pair.agent_room.as_rtc_room()
        waiting = asyncio.ensure_future(
            utils.wait_for_track_publication(
                room=agent_rtc, identity=pair.avatar_identity, kind=rtc.TrackKind.KIND_VIDEO
            )
        )
        await pair.avatar_room.connect()
        joined = await asyncio.wait_for(
            utils.wait_for_participant(room=agent_rtc, identity=pair.avatar_identity), 5
        )
        assert joined.identity == pair.avatar_identity
        assert joined.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        source = rtc.VideoSource(16, 16)
        track = rtc.LocalVideoTrack.create_video_track("v", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
        published = await pair.avatar_room.local_participant.publish_track(track, options)
        seen_pub = await asyncio.wait_for(waiting, 5)
        assert seen_pub.sid == published.sid and seen_pub.kind == rtc.TrackKind.KIND_VIDEO
        await pair.avatar_room.disconnect()
        await asyncio.wait_for(left.wait(), 5)
        assert seen == ["connected", "active", "track"]
        assert dict(pair.agent_room.remote_participants) == {}
        await pair.aclose()
        await source.aclose()

    async def test_avatar_session_waits_for_the_worker(self) -> None:
        # livekit's AvatarSession base (what avatar plugins subclass), outside a job
        class Avatar(AvatarSession[str]):
            @property
            def avatar_identity(self) -> str:
                return "avatar-worker"

        metrics: list[Any] = []
        async with RoomPair(latency=0.02) as pair:
            session: AgentSession[Any] = AgentSession(llm=ScriptedLLM([]), tts=SineTTS())
            avatar = Avatar()
            avatar.on("metrics_collected", metrics.append)
            await avatar.start(session, pair.agent_room.as_rtc_room())
            async with AvatarWorker(pair.avatar_room):
                await avatar.wait_for_join(timeout=5)
            await avatar.aclose()
        (joined,) = metrics
        assert joined.avatar_joined_time is not None

    async def test_latency_keeps_order(self) -> None:
        async with RoomPair(latency=0.05) as pair:
            ended = asyncio.Event()

            async def read(reader: Any) -> None:
                async for _ in reader:
                    pass
                ended.set()

            tasks: list[asyncio.Task[None]] = []
            pair.avatar_room.register_byte_stream_handler(
                "t", lambda r, s: tasks.append(asyncio.create_task(read(r)))
            )
            pair.avatar_room.local_participant.register_rpc_method("m", lambda data: "ok")
            writer = await pair.agent_room.local_participant.stream_bytes("x", topic="t")
            await writer.write(b"1")
            await writer.aclose()
            pair.latency = 0.0  # a later, faster message never overtakes an earlier one
            answer = await pair.agent_room.local_participant.perform_rpc(
                destination_identity=pair.avatar_identity, method="m", payload=""
            )
            await asyncio.wait_for(ended.wait(), 5)
            assert answer == "ok"
            kinds = [d.kind for d in pair.transmissions]
            assert kinds == [
                "stream_header",
                "stream_chunk",
                "stream_trailer",
                "rpc",
                "rpc_response",
            ]
            header, *_, call, _ = pair.transmissions
            # time.time() against the loop's clock: a millisecond of slack
            assert header.delivered_at - header.sent_at >= 0.05 - 0.001
            assert call.delivered_at >= header.delivered_at

    def test_publish_data_has_livekits_signature(self) -> None:
        ours = inspect.signature(LinkedLocalParticipant.publish_data).parameters
        theirs = inspect.signature(rtc.LocalParticipant.publish_data).parameters
        assert [(p.name, p.kind) for p in ours.values()] == [
            (p.name, p.kind) for p in theirs.values()
        ]
        defaults = {n: p.default for n, p in ours.items() if n != "destination_identities"}
        assert defaults == {
            n: p.default for n, p in theirs.items() if n != "destination_identities"
        }
        assert list(ours["destination_identities"].default) == []
        assert list(theirs["destination_identities"].default) == []

    async def test_data_packets_and_their_reliability(self) -> None:
        async with RoomPair(avatar_identity="frontend", latency=0.01) as pair:
            to_frontend, to_agent = Inbox(pair.avatar_room), Inbox(pair.agent_room)
            agent = pair.agent_room.local_participant
            await agent.publish_data("héllo", topic="t")
            await agent.publish_data(b"\x00\xff", reliable=False)
            await agent.publish_data("not for you", destination_identities=["someone-else"])
            await agent.publish_data("for you", destination_identities=["frontend"], topic="t")
            await pair.avatar_room.local_participant.publish_data("ack", topic="back")
            got = await to_frontend.wait(3)
            (back,) = await to_agent.wait(1)

            assert [(p.data, p.kind, p.topic) for p in got] == [
                ("héllo".encode(), rtc.DataPacketKind.KIND_RELIABLE, "t"),
                (b"\x00\xff", rtc.DataPacketKind.KIND_LOSSY, ""),
                (b"for you", rtc.DataPacketKind.KIND_RELIABLE, "t"),
            ]
            assert all(type(p) is rtc.DataPacket for p in [*got, back])
            assert [p.participant.identity for p in got if p.participant] == ["agent"] * 3
            assert back.participant is not None and back.participant.identity == "frontend"
            sender: object = pair.agent_room.remote_participants["frontend"]
            assert back.participant is sender
            # every packet recorded, with its reliability; the one for nobody here is not
            record = [
                (d.kind, d.sender, d.receiver, d.name, d.payload, d.size, d.reliable)
                for d in pair.transmissions
            ]
            assert record == [
                ("data", "agent", "frontend", "t", "héllo", 6, True),
                ("data", "agent", "frontend", "", "\x00\ufffd", 2, False),
                ("data", "agent", "frontend", "t", "for you", 7, True),
                ("data", "frontend", "agent", "back", "ack", 3, True),
            ]
            assert [d.payload for d in pair.packets("t")] == ["héllo", "for you"]
            # time.time() against the loop's clock: a millisecond of slack
            assert all(d.delivered_at - d.sent_at >= 0.01 - 0.001 for d in pair.packets())

    async def test_data_packets_not_connected_or_alone(self) -> None:
        pair = RoomPair()
        with pytest.raises(PublishDataError):
            await pair.agent_room.local_participant.publish_data("x")
        await pair.connect()
        left = asyncio.Event()
        pair.agent_room.on("participant_disconnected", lambda p: left.set())
        await pair.avatar_room.disconnect()
        await asyncio.wait_for(left.wait(), 5)
        # alone in the room: sent to nobody, and no error
        await pair.agent_room.local_participant.publish_data("x")
        await pair.connect()  # back, and seen by the agent
        await pair.agent_room.local_participant.publish_data("y")
        (packet,) = await Inbox(pair.avatar_room).wait(1)
        await pair.aclose()
        assert packet.data == b"y"
        assert [d.payload for d in pair.packets()] == ["y"]


class Inbox:
    """The data packets one side received, in order."""

    def __init__(self, room: LinkedRoom) -> None:
        self.packets: list[rtc.DataPacket] = []
        self._changed = asyncio.Event()
        room.on("data_received", self._on_data)

    def _on_data(self, packet: rtc.DataPacket) -> None:
        self.packets.append(packet)
        self._changed.set()

    async def wait(self, count: int) -> list[rtc.DataPacket]:
        """Wait until ``count`` packets arrived; return them all."""

        async def _wait() -> None:
            while len(self.packets) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), 5)
        return self.packets


# -- the docs recipe ---------------------------------------------------------------------

RECIPE = Path(__file__).resolve().parents[1] / "docs" / "recipes" / "testing-avatars.md"


def recipe_test_code() -> str:
    """The recipe's test file, as printed."""
    text = RECIPE.read_text("utf-8")
    blocks = re.findall(r'^```python title="test_my_avatar.py"\n(.*?)^```$', text, re.S | re.M)
    assert len(blocks) == 1
    return str(blocks[0])


class TestRecipe:
    """docs/recipes/testing-avatars.md: its test runs as printed and passes."""

    def test_code_fits_the_page(self) -> None:
        # the site's code column shows 76 characters (as in tests/test_docs.py)
        assert [line for line in recipe_test_code().splitlines() if len(line) > 76] == []

    async def test_the_recipe_passes(self) -> None:
        namespace: dict[str, Any] = {"__name__": "test_my_avatar"}
        exec(compile(recipe_test_code(), str(RECIPE), "exec"), namespace)
        tests = [v for k, v in namespace.items() if k.startswith("test_") and callable(v)]
        assert len(tests) == 1
        await tests[0]()


class TestFramePath:
    """livekit asks the output on top for its sample rate before every frame until the
    avatar reports the segment's start, here every frame: livekit's forwarding still calls
    the tracker's code only at a segment's first frame and at its flush."""

    async def test_frames_reach_the_output_below_directly(self) -> None:
        with forwarding_calls() as calls:
            run = await play(ScriptAgent(THREE), reply_once, tracked=True)
        assert [e.played for e in run.collected.finished] == ["full"] * 3
        assert set(calls.tracker) == {"_first_frame", "flush"}
        assert calls.tracker["flush"] == 3
        assert calls.frames > 5 * calls.tracker["_first_frame"]


class TestSessionReleased:
    """Once a session that played through an avatar is closed, the package keeps nothing
    of it. (Whether the session itself is collected at once depends on livekit: a cancelled
    timer of its audio source holds the session's context until the timer's time comes,
    tracked or not.)"""

    async def test_no_state_left(self) -> None:
        run = await play(ScriptAgent(THREE), reply_once, tracked=True)
        assert run.leftover == []
        assert [e.played for e in run.collected.finished] == ["full"] * 3
        del run
        gc.collect()
        assert (len(_session._playbacks), len(_ledger._reporting)) == (0, 0)
