"""Message events through livekit's real output chains, checked against the same run untracked.

The chains are the ones RoomIO builds (see ``tests/chains.py``): livekit's
``TranscriptSynchronizer`` over a ``SimulatedSink`` or over RoomIO's own participant audio
output on the native ``rtc.AudioSource``, optionally under livekit's ``RecorderIO``. Each
test plays one script twice, with and without the tracker: what livekit does (the text the
transcription output receives, the synchronizer's transcripts, the chat history, the agent
states, its log warnings) must not change when the tracker is attached.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from livekit.agents.voice.events import AgentFalseInterruptionEvent, AgentStateChangedEvent
from livekit.agents.voice.speech_handle import SpeechHandle

import playback_hooks as ph
from playback_hooks.testing import SimulatedSink

from .agents import Item, ScriptAgent, boundary
from .chains import (
    ChainRun,
    forwarding_calls,
    start_chain,
    user_starts_speaking,
    user_stops_speaking,
)

# SineTTS's default: a text's tone lasts len(text.strip()) * this (livekit then pads it
# a little, so a segment's audio is at least that long)
SECONDS_PER_CHAR = 0.02


def marked(texts: list[str]) -> list[Item]:
    """A script of one message per text, with ids m1, m2, ..."""
    script: list[Item] = []
    for i, text in enumerate(texts, 1):
        script += [boundary(f"m{i}"), text]
    return script


THREE = ["Hi there.", "The second one is longer.", "Bye now."]
THREE_SCRIPT = marked(THREE)

# the second message is long enough to be cut (or paused) a few words in
LONG = ["Hi there.", "Now the second message runs on for a while longer.", "Bye now."]
LONG_SCRIPT = marked(LONG)

# a false interruption is resumed 0.2 s after the user stops; no echo-cancellation warm-up,
# so the user's speech counts from the agent's first word
FALSE_INTERRUPTIONS: dict[str, Any] = {
    "turn_handling": {
        "interruption": {"resume_false_interruption": True, "false_interruption_timeout": 0.2}
    },
    "aec_warmup_duration": None,
}


def audio_seconds(text: str) -> float:
    """Seconds of tone SineTTS makes for ``text``: a lower bound of the segment's audio."""
    return len(text.strip()) * SECONDS_PER_CHAR


@dataclass
class Outcome:
    """One run of a scenario, read once everything was closed."""

    run: ChainRun
    chain: list[str] = field(default_factory=list)
    """Class names down ``session.output.audio`` once the scenario ran (before closing)."""
    tracker_on_top: bool = False
    """Whether the tracker's output was on top of that chain."""
    warnings: list[str] = field(default_factory=list)
    """WARNING-or-worse records of the livekit and playback_hooks loggers."""
    states: list[str] = field(default_factory=list)
    false_interruptions: list[bool] = field(default_factory=list)
    """``resumed`` of each ``agent_false_interruption`` event."""


Scenario = Callable[[ChainRun], Awaitable[None]]

WATCHED_LOGGERS = ("livekit", "playback_hooks")


async def play(
    caplog: pytest.LogCaptureFixture,
    script: list[Item],
    scenario: Scenario,
    *,
    tracked: bool,
    agent: type[ScriptAgent] = ScriptAgent,
    **chain_kwargs: Any,
) -> Outcome:
    """Run ``scenario`` on a fresh chain, close everything, and return what happened."""
    for name in WATCHED_LOGGERS:
        caplog.set_level(logging.WARNING, logger=name)
    caplog.clear()
    run = await start_chain(agent(script), tracked=tracked, **chain_kwargs)
    outcome = Outcome(run)

    def on_state(ev: AgentStateChangedEvent) -> None:
        outcome.states.append(ev.new_state)

    def on_false_interruption(ev: AgentFalseInterruptionEvent) -> None:
        outcome.false_interruptions.append(ev.resumed)

    run.session.on("agent_state_changed", on_state)
    run.session.on("agent_false_interruption", on_false_interruption)
    try:
        await scenario(run)
        output = run.session.output.audio
        while output is not None:
            outcome.chain.append(type(output).__name__)
            output = output.next_in_chain
        outcome.tracker_on_top = run.tracker is not None and run.tracker.attached
    finally:
        await run.aclose()
    outcome.warnings = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith(WATCHED_LOGGERS)
    ]
    return outcome


def assert_livekit_unchanged(tracked: Outcome, untracked: Outcome) -> None:
    """The tracker changed nothing livekit did, and livekit warned about nothing."""
    assert (untracked.warnings, tracked.warnings) == ([], [])
    # the tracker sits on top of the chain livekit built, which stays as it was
    assert tracked.chain[tracked.tracker_on_top :] == untracked.chain
    assert tracked.run.text.segments == untracked.run.text.segments
    assert tracked.run.transcripts == untracked.run.transcripts
    assert tracked.run.assistant_messages() == untracked.run.assistant_messages()
    assert tracked.states == untracked.states
    assert tracked.false_interruptions == untracked.false_interruptions


async def wait_message_started(run: ChainRun, message_id: str, segment: int) -> None:
    """Wait until a message started: its event when tracked, else the sink's own report."""
    if run.tracker is not None:
        await run.tracker.wait_for(message_id, "started", timeout=10)
    else:
        await run.sink_reports.wait_started(segment + 1)


async def plain_reply(run: ChainRun) -> None:
    """One reply of one message, heard to the end."""
    await then_wait(run, run.session.generate_reply())


async def plays_in_full(run: ChainRun) -> None:
    """One reply of three messages, heard to the end."""
    handle = run.session.generate_reply()
    await handle
    await run.text.wait_flushed(3)
    if run.events is not None:
        await run.events.wait_finished(3)


async def cut_on_third_word_of_m2(run: ChainRun) -> None:
    """The user cuts the reply once the third word of the second message is on screen."""
    handle = run.session.generate_reply()
    await wait_message_started(run, "m2", 1)
    # "Now the second": the synchronizer showed "second" and holds it for half of its
    # pacing delay (about a quarter second) before counting it as heard
    await run.text.wait_for_words(1, 3)
    await run.session.interrupt()
    await handle
    await run.text.wait_flushed(2)
    if run.events is not None:
        await run.events.wait_finished(3)


async def false_interruption_in_m2(run: ChainRun) -> None:
    """The user talks over the second message and stops with nothing said: it resumes."""
    handle = run.session.generate_reply()
    await wait_message_started(run, "m2", 1)
    await run.text.wait_for_words(1, 2)
    user_starts_speaking(run.session)
    # the participant output stops at the next frame, reporting the run it played and
    # dropping the audio queued in the source
    await run.sink_reports.wait_progressed(1, 1)
    await user_stops_speaking(run.session)
    await handle
    await run.text.wait_flushed(3)
    if run.events is not None:
        await run.events.wait_finished(3)


# one message, long enough to install or remove the tracker while it plays
ONE = ["Now this one runs on."]


async def then_wait(run: ChainRun, handle: SpeechHandle) -> None:
    """Wait until the speech is over and its one segment reached the transcription output."""
    await handle
    await run.text.wait_flushed(1)


def check_three_in_full(tracked: Outcome, texts: list[str]) -> None:
    """Three messages played in full, each with the sink's start and livekit's transcript."""
    run = tracked.run
    assert run.events is not None
    assert run.events.timeline() == [
        (kind, m) for m in ("m1", "m2", "m3") for kind in ("started", "finished")
    ]
    started, finished = run.events.started, run.events.finished
    assert [e.index for e in started] == [0, 1, 2]
    assert [(f.played, f.interrupted) for f in finished] == [("full", False)] * 3
    # guarantee 1: the sink's own created_at, listened to on the sink itself
    assert [e.started_at for e in started] == run.sink_reports.started
    assert [f.started_at for f in finished] == run.sink_reports.started
    assert [f.playback_position for f in finished] == [
        ev.playback_position for ev in run.sink_reports.finished
    ]
    assert all(f.playback_position > 0 for f in finished)
    # each message's own segment, never cumulative: the synchronizer's transcript of that
    # segment, which is also exactly what the transcription output received for it
    assert [f.transcript for f in finished] == run.transcripts == texts
    assert run.text.segments == texts
    assert run.assistant_messages() == ["".join(texts)]


def check_cut_in_m2(tracked: Outcome) -> None:
    """m1 full, m2 partial with the words heard, m3 skipped."""
    run = tracked.run
    assert run.events is not None
    assert run.events.timeline() == [
        ("started", "m1"),
        ("finished", "m1"),
        ("started", "m2"),
        ("finished", "m2"),
        ("finished", "m3"),
    ]
    started, finished = run.events.started, run.events.finished
    assert [(f.message_id, f.index, f.played, f.interrupted) for f in finished] == [
        ("m1", 0, "full", False),
        ("m2", 1, "partial", True),
        ("m3", 2, "skipped", True),
    ]
    assert [e.started_at for e in started] == run.sink_reports.started
    assert [f.started_at for f in finished] == [*run.sink_reports.started, None]
    # livekit's synchronizer saw two segments; m3 never reached it
    assert [ev.interrupted for ev in run.synchronized] == [False, True]
    sink1, sink2 = run.sink_reports.finished
    assert finished[0].playback_position == sink1.playback_position
    assert finished[1].playback_position == sink2.playback_position
    assert 0 < finished[1].playback_position < audio_seconds(LONG[1])
    assert finished[2].playback_position == 0
    # the words heard of m2 are livekit's synchronized transcript of its interrupted
    # segment; the screen got one word more (the one in flight when the user cut in)
    assert [f.transcript for f in finished] == [*run.transcripts, None]
    assert run.transcripts == [LONG[0], "Now the"]
    assert run.text.segments == [LONG[0], "Now the second"]
    assert run.assistant_messages() == [LONG[0] + "Now the"]


class TestSynchronizerOverSink:
    """Over RoomIO's synchronizer, each message carries livekit's transcript of its segment."""

    async def test_three_messages_in_full(self, caplog: pytest.LogCaptureFixture) -> None:
        untracked = await play(caplog, THREE_SCRIPT, plays_in_full, tracked=False)
        tracked = await play(caplog, THREE_SCRIPT, plays_in_full, tracked=True)

        assert untracked.chain == ["_SyncedAudioOutput", "_AudioSinkProxy", "SimulatedSink"]
        check_three_in_full(tracked, THREE)
        sink = tracked.run.sink
        assert isinstance(sink, SimulatedSink)
        assert tracked.run.sink_reports.started == [s.started_at for s in sink.segments]
        assert_livekit_unchanged(tracked, untracked)

    async def test_cut_in_the_second_message(self, caplog: pytest.LogCaptureFixture) -> None:
        untracked = await play(caplog, LONG_SCRIPT, cut_on_third_word_of_m2, tracked=False)
        tracked = await play(caplog, LONG_SCRIPT, cut_on_third_word_of_m2, tracked=True)

        check_cut_in_m2(tracked)
        assert_livekit_unchanged(tracked, untracked)

    async def test_transcription_output_gets_the_same_calls(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        script: list[Item] = [boundary("only"), "Hi."]

        async def one_message(run: ChainRun) -> None:
            await run.session.generate_reply()
            await run.text.wait_flushed(1)

        untracked = await play(caplog, script, one_message, tracked=False)
        tracked = await play(caplog, script, one_message, tracked=True)

        assert_livekit_unchanged(tracked, untracked)
        # every capture_text() and flush() in order, not only the segments they make
        assert tracked.run.text.ops == untracked.run.text.ops


class TestRecorderOnTop:
    """With livekit's RecorderIO on top of RoomIO's chain, as a recording job builds it."""

    async def test_cut_in_the_second_message(
        self, caplog: pytest.LogCaptureFixture, tmp_path: Path
    ) -> None:
        untracked = await play(
            caplog,
            LONG_SCRIPT,
            cut_on_third_word_of_m2,
            tracked=False,
            record_to=tmp_path / "untracked" / "audio.ogg",
        )
        tracked = await play(
            caplog,
            LONG_SCRIPT,
            cut_on_third_word_of_m2,
            tracked=True,
            record_to=tmp_path / "tracked" / "audio.ogg",
        )

        assert untracked.chain == [
            "RecorderAudioOutput",
            "_SyncedAudioOutput",
            "_AudioSinkProxy",
            "SimulatedSink",
        ]
        check_cut_in_m2(tracked)
        assert_livekit_unchanged(tracked, untracked)
        for outcome in (untracked, tracked):
            assert outcome.run.recorder is not None
            assert not outcome.run.recorder.recording  # closed
            path = outcome.run.recorder.output_path
            assert path is not None and path.stat().st_size > 0


class TestParticipantAudioOutput:
    """Over RoomIO's participant audio output on the native rtc.AudioSource."""

    async def test_three_messages_in_full(self, caplog: pytest.LogCaptureFixture) -> None:
        untracked = await play(caplog, THREE_SCRIPT, plays_in_full, tracked=False, sink="room")
        tracked = await play(caplog, THREE_SCRIPT, plays_in_full, tracked=True, sink="room")

        assert untracked.chain == [
            "_SyncedAudioOutput",
            "_AudioSinkProxy",
            "_ParticipantAudioOutput",
        ]
        # livekit's own publishing code ran: one track over the output's audio source
        for outcome in (untracked, tracked):
            assert outcome.run.room is not None
            assert len(outcome.run.room.local_participant.published) == 1
        check_three_in_full(tracked, THREE)
        assert_livekit_unchanged(tracked, untracked)

    async def test_frames_reach_the_output_below_directly(self) -> None:
        # livekit's forwarding calls the tracker's code at a segment's first frame and at its
        # flush, and for no other frame
        run = await start_chain(ScriptAgent(THREE_SCRIPT), sink="room")
        try:
            with forwarding_calls() as calls:
                handle = run.session.generate_reply()
                await asyncio.wait_for(handle.wait_for_playout(), 20)
        finally:
            await run.aclose()
        assert run.events is not None
        assert [e.played for e in run.events.finished] == ["full"] * 3
        assert set(calls.tracker) == {"_first_frame", "flush"}
        assert calls.tracker["flush"] == 3
        assert calls.frames > 5 * calls.tracker["_first_frame"]

    async def test_false_interruption_pauses_and_resumes_m2(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        untracked = await play(
            caplog,
            LONG_SCRIPT,
            false_interruption_in_m2,
            tracked=False,
            sink="room",
            **FALSE_INTERRUPTIONS,
        )
        tracked = await play(
            caplog,
            LONG_SCRIPT,
            false_interruption_in_m2,
            tracked=True,
            sink="room",
            **FALSE_INTERRUPTIONS,
        )

        # livekit paused the output (the agent listens), then resumed it (speaking again)
        assert tracked.false_interruptions == [True]
        assert tracked.states == ["thinking", "speaking", "listening", "speaking", "listening"]
        assert_livekit_unchanged(tracked, untracked)

        run = tracked.run
        assert run.events is not None
        # one started event per message: the pause and resume start nothing new
        assert run.events.timeline() == [
            (kind, m) for m in ("m1", "m2", "m3") for kind in ("started", "finished")
        ]
        started, finished = run.events.started, run.events.finished
        assert len(run.sink_reports.started) == 3
        assert [e.started_at for e in started] == run.sink_reports.started
        assert [f.started_at for f in finished] == run.sink_reports.started
        # What m2 reports: played "full", not interrupted (livekit's view: the segment
        # finished without a clear), with livekit's full transcript; and its position is
        # the sink's, i.e. the seconds of audio that played: the paused time is not
        # counted, nor the audio queued in the source that the sink dropped at the pause.
        assert [(f.played, f.interrupted) for f in finished] == [("full", False)] * 3
        assert [f.transcript for f in finished] == run.transcripts == LONG
        assert run.text.segments == LONG
        assert [f.playback_position for f in finished] == [
            ev.playback_position for ev in run.sink_reports.finished
        ]
        m2 = finished[1]
        runs = run.sink_reports.progressed[1]
        assert m2.playback_position == pytest.approx(sum(r.duration for r in runs))
        assert 0 < m2.playback_position < audio_seconds(LONG[1])


class TestHarness:
    """The checks above can fail: livekit's warnings in the chain reach them."""

    async def test_a_synchronizer_warning_is_seen(self, caplog: pytest.LogCaptureFixture) -> None:
        async def rotate_twice(run: ChainRun) -> None:
            run.synchronizer.rotate_segment()
            run.synchronizer.rotate_segment()  # while the first rotation runs: livekit warns
            await run.synchronizer.barrier()

        outcome = await play(caplog, [], rotate_twice, tracked=False)
        assert outcome.warnings == [
            "livekit.agents: rotate_segment called while previous segment is still being rotated"
        ]


class TestInstallingWhileAMessagePlays:
    """attach() / detach() while a message plays leave livekit's chain as it was."""

    async def test_attach_mid_message(self, caplog: pytest.LogCaptureFixture) -> None:
        async def attach_mid(run: ChainRun) -> None:
            handle = run.session.generate_reply()
            await run.text.wait_for_words(0, 1)
            run.attach()
            await then_wait(run, handle)

        untracked = await play(caplog, marked(ONE), plain_reply, tracked=False)
        attached = await play(caplog, marked(ONE), attach_mid, tracked=False)

        assert untracked.run.transcripts == untracked.run.text.segments == ONE
        assert attached.tracker_on_top
        assert_livekit_unchanged(attached, untracked)
        # the speech playing at attach() is not reported at all, never in part
        assert attached.run.events is not None and attached.run.events.timeline() == []

    async def test_detach_mid_message(self, caplog: pytest.LogCaptureFixture) -> None:
        async def detach_mid(run: ChainRun) -> None:
            handle = run.session.generate_reply()
            assert run.tracker is not None
            await run.tracker.wait_for("m1", "started", timeout=10)
            await run.text.wait_for_words(0, 1)
            run.tracker.detach()
            await then_wait(run, handle)

        untracked = await play(caplog, marked(ONE), plain_reply, tracked=False)
        detached = await play(caplog, marked(ONE), detach_mid, tracked=True)

        assert untracked.run.transcripts == untracked.run.text.segments == ONE
        assert not detached.tracker_on_top
        assert_livekit_unchanged(detached, untracked)

    async def test_detach_mid_message_still_finishes_it(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        async def detach_mid(run: ChainRun) -> None:
            handle = run.session.generate_reply()
            assert run.tracker is not None
            await run.tracker.wait_for("m1", "started", timeout=10)
            run.tracker.detach()
            await then_wait(run, handle)

        outcome = await play(caplog, marked(ONE), detach_mid, tracked=True)

        run = outcome.run
        assert run.events is not None
        # the sink reported the end of m1 before the speech was done, so its finished
        # event was due by then
        assert run.events.timeline() == [("started", "m1"), ("finished", "m1")]
        (finished,) = run.events.finished
        assert finished.played == "full"
        assert finished.playback_position == run.sink_reports.finished[0].playback_position


GREETING = "Hello and welcome, how can I help you today?"


class GreetingAgent(ScriptAgent):
    """Says a labelled greeting from ``on_enter``, as most apps do."""

    async def on_enter(self) -> None:
        handle = self.session.say(GREETING)
        tracker = ph.tracker_for(self.session)
        if tracker is not None:
            tracker.label(handle, "greeting", metadata={"kind": "greeting"})


async def greet_then_reply(run: ChainRun) -> None:
    """The greeting plays out, then one reply of one message."""
    await run.text.wait_flushed(1)
    await then_wait_flushed(run, run.session.generate_reply(), 2)


async def then_wait_flushed(run: ChainRun, handle: SpeechHandle, segments: int) -> None:
    await handle
    await run.text.wait_flushed(segments)


class TestGreetingInOnEnter:
    """attach() before start(): the greeting said in on_enter is reported like any message."""

    @pytest.mark.parametrize("sink", ["simulated", "room"])
    async def test_attach_before_start_reports_the_greeting(
        self, caplog: pytest.LogCaptureFixture, sink: str
    ) -> None:
        untracked = await play(
            caplog, marked(ONE), greet_then_reply, agent=GreetingAgent, tracked=False, sink=sink
        )
        tracked = await play(
            caplog, marked(ONE), greet_then_reply, agent=GreetingAgent, tracked=True, sink=sink
        )

        assert_livekit_unchanged(tracked, untracked)
        assert untracked.run.text.segments == [GREETING, *ONE]
        run = tracked.run
        assert run.events is not None
        assert run.events.timeline() == [
            ("started", "greeting"),
            ("finished", "greeting"),
            ("started", "m1"),
            ("finished", "m1"),
        ]
        greeting, _ = run.events.finished
        assert (greeting.source, greeting.index, dict(greeting.metadata)) == (
            "say",
            0,
            {"kind": "greeting"},
        )
        assert [f.played for f in run.events.finished] == ["full", "full"]
        # the sink's own clock, and livekit's own transcript of each segment
        assert [e.started_at for e in run.events.started] == run.sink_reports.started
        assert [f.started_at for f in run.events.finished] == run.sink_reports.started
        assert [f.playback_position for f in run.events.finished] == [
            ev.playback_position for ev in run.sink_reports.finished
        ]
        assert [f.transcript for f in run.events.finished] == run.transcripts
        assert run.transcripts == [GREETING, *ONE]

    async def test_attach_after_start_while_the_greeting_plays(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        async def attach_mid_greeting(run: ChainRun) -> None:
            await run.text.wait_for_words(0, 2)
            run.attach()
            await greet_then_reply(run)

        untracked = await play(
            caplog, marked(ONE), greet_then_reply, agent=GreetingAgent, tracked=False
        )
        attached = await play(
            caplog, marked(ONE), attach_mid_greeting, agent=GreetingAgent, tracked=False
        )

        assert_livekit_unchanged(attached, untracked)
        assert attached.run.text.segments == [GREETING, *ONE]  # the whole greeting was shown
        run = attached.run
        assert run.events is not None
        # the greeting started before attach(): not reported at all; the reply is
        assert run.events.timeline() == [("started", "m1"), ("finished", "m1")]
        (reply,) = run.events.finished
        assert reply.started_at == run.sink_reports.started[1]
        assert reply.transcript == run.transcripts[1] == ONE[0]
