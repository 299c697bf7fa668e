"""attach() and detach() in the same loop iteration as a speech's creation (issue 19).

Each reproduction is written as an application writes it, with the public API only, on a
real offline ``AgentSession``: over a bare ``SimulatedSink``, and (``chain``) in RoomIO's
chain from ``tests/chains.py`` (livekit's transcription synchronizer over the sink). Each
one is also played without playback_hooks: the sink must do the same, every
``wait_for_playout()`` must return the same way, and livekit must log the same.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from livekit.agents import AgentSession

import playback_hooks as ph
from playback_hooks.testing import EventCollector, ScriptedLLM, SimulatedSink, SineTTS

from .agents import Item, ScriptAgent, boundary
from .chains import ChainRun, SinkReports, start_chain
from .sinks import RefusingSink

PLAYOUT = 8.0
"""Seconds any speech of these tests takes to play out, and far more."""

CLOSE = 10.0
"""Seconds a tracker or a session takes to close, and far more."""

WATCHED_LOGGERS = ("livekit", "playback_hooks")

GOODBYE = "Goodbye, see you soon."
LONGER = "Hello there, this is a somewhat longer sentence."
FIRST = "The first message is a rather long one."
SECOND = "Second."
NEXT = "And the next one."
AGAIN = "Reported again."

IDLE = ph.TrackerStats(0, 0, 0, 0, 0, 0)


@dataclass
class Rig:
    """One started session, its sink, what the sink reported and the session's events."""

    session: AgentSession[Any]
    sink: SimulatedSink
    reports: SinkReports
    events: EventCollector
    caplog: pytest.LogCaptureFixture
    run: ChainRun | None = None
    first_record: int = 0
    closed: bool = field(default=False)

    def segments(self) -> list[tuple[float, float, bool]]:
        """``(captured, position, interrupted)`` of every segment the sink played."""
        return [(s.captured, s.position, s.interrupted) for s in self.sink.segments]

    def warnings(self) -> list[str]:
        """livekit's and playback_hooks' WARNING-or-worse records since the rig opened."""
        return sorted(
            f"{r.name}: {r.getMessage()}"
            for r in self.caplog.records[self.first_record :]
            if r.levelno >= logging.WARNING and r.name.startswith(WATCHED_LOGGERS)
        )

    async def aclose(self) -> None:
        """Close the session, its tracker if one is attached, and the chain below."""
        if self.closed:
            return
        self.closed = True
        tracker = ph.tracker_for(self.session)
        self.events.close()
        try:
            await asyncio.wait_for(self.session.aclose(), CLOSE)
            for t in {tracker, self.run.tracker if self.run is not None else None}:
                if t is not None:
                    await asyncio.wait_for(t.aclose(), CLOSE)
        finally:
            if self.run is not None:
                await self.run.synchronizer.aclose()
            await self.sink.aclose()


OpenRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def open_rig(caplog: pytest.LogCaptureFixture) -> AsyncIterator[OpenRig]:
    """Start sessions: ``chain`` in RoomIO's chain; ``tracked``: ``ph.attach()`` before start."""
    for name in WATCHED_LOGGERS:
        caplog.set_level(logging.WARNING, logger=name)
    rigs: list[Rig] = []

    async def _open(
        *, chain: bool, tracked: bool, sink: SimulatedSink | None = None, agent: Any = None
    ) -> Rig:
        first_record = len(caplog.records)
        agent = agent if agent is not None else ScriptAgent()
        if chain:
            assert sink is None, "the chain brings its own sink"
            run = await start_chain(agent, tracked=tracked)
            assert isinstance(run.sink, SimulatedSink)
            events = run.events or EventCollector(run.session, progress=True)
            run.events = events
            rig = Rig(run.session, run.sink, run.sink_reports, events, caplog, run, first_record)
        else:
            sink = sink or SimulatedSink()
            session: AgentSession[Any] = AgentSession(llm=ScriptedLLM([]), tts=SineTTS())
            session.output.audio = sink
            if tracked:
                ph.attach(session)  # before start(), as the docs teach
            events = EventCollector(session, progress=True)
            reports = SinkReports(sink)
            await session.start(agent, record=False)
            rig = Rig(session, sink, reports, events, caplog, None, first_record)
        rigs.append(rig)
        return rig

    yield _open
    for rig in rigs:
        await rig.aclose()
    # livekit never retrieves the exception of a speech task whose sink refused a frame: let
    # asyncio log it here, inside the test, rather than at some later garbage collection
    rigs.clear()
    gc.collect()


def attached(rig: Rig) -> ph.PlaybackTracker:
    """The tracker attached to the rig's session."""
    tracker = ph.tracker_for(rig.session)
    assert tracker is not None
    return tracker


async def playout(*handles: Any) -> None:
    """Wait until every speech played out; a hang fails instead of blocking."""
    await asyncio.wait_for(asyncio.gather(*(h.wait_for_playout() for h in handles)), PLAYOUT)


def same_livekit(rig: Rig, untracked: Rig, untracked_warnings: list[str]) -> None:
    """The sink and livekit's chain did exactly what they do without playback_hooks."""
    assert rig.warnings() == untracked_warnings == []
    assert rig.segments() == untracked.segments()
    if rig.run is not None and untracked.run is not None:
        assert rig.run.text.segments == untracked.run.text.segments
        assert rig.run.transcripts == untracked.run.transcripts


CHAINS = pytest.mark.parametrize("chain", [False, True], ids=["sink", "chain"])


class TestLabelThenDetach:
    """A speech the tracker admitted is reported whole, though detach() followed in the same
    iteration, before the speech read the output."""

    @CHAINS
    @pytest.mark.parametrize("reattach", [False, True], ids=["detach", "detach-attach"])
    async def test_goodbye_then_detach(
        self, open_rig: OpenRig, chain: bool, reattach: bool
    ) -> None:
        untracked = await open_rig(chain=chain, tracked=False)
        bare = untracked.session.say(GOODBYE)
        await playout(bare)
        bare_next = untracked.session.say(NEXT)
        await playout(bare_next)
        await untracked.aclose()
        untracked_warnings = untracked.warnings()

        rig = await open_rig(chain=chain, tracked=True)
        session = rig.session
        tracker = attached(rig)
        handle = session.say(GOODBYE)
        tracker.label(handle, "bye")
        tracker.detach()
        new = ph.attach(session) if reattach else None  # the speech is still the old one's
        await playout(handle)
        await asyncio.wait_for(tracker.aclose(), CLOSE)

        segment = rig.sink.segments[0]
        assert segment.position == segment.captured > 0 and not segment.interrupted
        assert rig.events.timeline() == [("started", "bye"), ("finished", "bye")]
        (started,) = rig.events.started
        (finished,) = rig.events.finished
        assert (finished.played, finished.interrupted) == ("full", False)
        assert started.started_at == finished.started_at == segment.started_at
        assert finished.playback_position == pytest.approx(segment.position, abs=0.05)
        assert started.speech_id == finished.speech_id == handle.id
        if rig.run is not None:
            assert finished.transcript == rig.run.transcripts[0] == GOODBYE
        assert tracker.stats() == ph.TrackerStats(0, 0, 0, 0, 1, 0)

        # the next speech plays, reported only by a tracker attached when it was created
        if new is not None:
            assert new.stats() == IDLE  # it holds nothing of the old tracker's speech
        nxt = session.say(NEXT)
        if new is not None:
            new.label(nxt, "next")
        await playout(nxt)
        if new is not None:
            done = await new.wait_for("next", "finished", timeout=PLAYOUT)
            assert (done.played, done.started_at) == ("full", rig.sink.segments[1].started_at)
            await asyncio.wait_for(new.aclose(), CLOSE)
            assert rig.events.timeline()[2:] == [("started", "next"), ("finished", "next")]
        else:
            assert len(rig.events.events) == 2
        assert (handle.interrupted, nxt.interrupted) == (bare.interrupted, bare_next.interrupted)
        await rig.aclose()
        same_livekit(rig, untracked, untracked_warnings)


class TestCreateThenAttach:
    """A speech created just before attach() in the same iteration is not reported at all,
    and removing that tracker while it plays never keeps its playout from returning."""

    @CHAINS
    @pytest.mark.parametrize("leave", ["detach", "aclose"])
    async def test_hello_then_attach(self, open_rig: OpenRig, chain: bool, leave: str) -> None:
        untracked = await open_rig(chain=chain, tracked=False)
        for text in (LONGER, NEXT, AGAIN):
            bare = untracked.session.say(text)
            await playout(bare)
            assert not bare.interrupted
        await untracked.aclose()
        untracked_warnings = untracked.warnings()

        rig = await open_rig(chain=chain, tracked=False)
        session = rig.session
        handle = session.say(LONGER)
        tracker = ph.attach(session)  # same iteration: created before attach()
        await rig.reports.wait_started(1, timeout=PLAYOUT)
        assert rig.sink.segments[0].finished_at is None  # playing
        if leave == "detach":
            tracker.detach()
        else:
            await asyncio.wait_for(tracker.aclose(), CLOSE)
        await playout(handle)
        await asyncio.wait_for(tracker.aclose(), CLOSE)
        assert not handle.interrupted
        segment = rig.sink.segments[0]
        assert segment.position == segment.captured > 0 and not segment.interrupted
        assert rig.events.delivered == []  # no event of any kind for it
        assert tracker.stats() == IDLE

        # the next speech, while detached: it plays and is not reported
        nxt = session.say(NEXT)
        await playout(nxt)
        assert rig.events.delivered == []
        # attached again: the next one is reported
        again = ph.attach(session)
        last = session.say(AGAIN)
        again.label(last, "again")
        await playout(last)
        done = await again.wait_for("again", "finished", timeout=PLAYOUT)
        assert (done.played, done.started_at) == ("full", rig.sink.segments[2].started_at)
        await asyncio.wait_for(again.aclose(), CLOSE)
        assert rig.events.timeline() == [("started", "again"), ("finished", "again")]
        assert not nxt.interrupted and not last.interrupted
        await rig.aclose()
        same_livekit(rig, untracked, untracked_warnings)


class TestOrderAcrossTrackers:
    """Within a session, what the old tracker still reports comes before what the new one
    reports about later audio."""

    @CHAINS
    async def test_interrupt_after_reattach(self, open_rig: OpenRig, chain: bool) -> None:
        untracked = await open_rig(chain=chain, tracked=False)
        bare_a = untracked.session.say(FIRST)
        await untracked.reports.wait_started(1, timeout=PLAYOUT)
        bare_b = untracked.session.say(SECOND)
        await asyncio.sleep(0.1)  # the user cuts in 0.1 s later
        await asyncio.wait_for(untracked.session.interrupt(), PLAYOUT)
        await playout(bare_a, bare_b)
        await untracked.aclose()
        untracked_warnings = untracked.warnings()

        rig = await open_rig(chain=chain, tracked=True)
        session = rig.session
        t0 = attached(rig)
        a = session.say(FIRST)
        t0.label(a, "a")
        await t0.wait_for("a", "started", timeout=PLAYOUT)
        t0.detach()
        t1 = ph.attach(session)
        b = session.say(SECOND)
        t1.label(b, "b")
        await asyncio.sleep(0.1)  # the user cuts in 0.1 s later
        await asyncio.wait_for(session.interrupt(), PLAYOUT)
        await playout(a, b)
        await asyncio.wait_for(t0.aclose(), CLOSE)
        await asyncio.wait_for(t1.aclose(), CLOSE)

        assert rig.events.timeline() == [("started", "a"), ("finished", "a"), ("finished", "b")]
        fin_a, fin_b = rig.events.finished
        (segment,) = rig.sink.segments
        assert segment.interrupted and 0 < segment.position < segment.captured
        assert (fin_a.played, fin_a.interrupted) == ("partial", True)
        assert fin_a.started_at == rig.events.started[0].started_at == segment.started_at
        assert fin_a.playback_position == pytest.approx(segment.position, abs=0.05)
        assert (fin_b.played, fin_b.interrupted, fin_b.playback_position) == ("skipped", True, 0)
        assert fin_b.started_at is None
        assert (a.interrupted, b.interrupted) == (bare_a.interrupted, bare_b.interrupted)
        assert (a.interrupted, b.interrupted) == (True, True)
        await rig.aclose()
        # the cut falls at another instant in each run: compare what does not depend on it
        assert rig.warnings() == untracked_warnings == []
        assert [s[2] for s in rig.segments()] == [s[2] for s in untracked.segments()] == [True]


class TestEventCollector:
    """EventCollector.close() lets the collector and its session be garbage-collected."""

    async def test_close_releases_collector_and_session(self) -> None:
        released = await _collect_and_drop(close=True)
        assert released == (True, True)

    async def test_the_check_sees_a_collector_kept(self) -> None:
        # the same check without close(): the signals keep both alive
        released = await _collect_and_drop(close=False)
        assert released == (False, False)


async def _collect_and_drop(*, close: bool) -> tuple[bool, bool]:
    sink = SimulatedSink()
    session: AgentSession[Any] = AgentSession(llm=ScriptedLLM([]), tts=SineTTS())
    session.output.audio = sink
    collector = EventCollector(session, progress=True)
    await session.start(ScriptAgent(), record=False)
    # (sessions that spoke: TestSessionReleased in test_lifecycle.py)
    await asyncio.wait_for(session.aclose(), CLOSE)
    await sink.aclose()
    session_ref, collector_ref = weakref.ref(session), weakref.ref(collector)
    if close:
        collector.close()
    del session, collector
    gc.collect()
    released = (session_ref() is None, collector_ref() is None)
    kept = collector_ref()
    if kept is not None:
        kept.close()
    return released


class TestRefusedSegment:
    """A segment the sink refused is reported skipped, and its ``interrupted`` follows its
    speech: False when nobody interrupted it."""

    async def test_refused_say(self, open_rig: OpenRig) -> None:
        untracked = await open_rig(chain=False, tracked=False, sink=RefusingSink(1))
        bare = untracked.session.say(GOODBYE)
        await playout(bare)
        bare_next = untracked.session.say(NEXT)
        await playout(bare_next)
        await untracked.aclose()
        untracked_warnings = untracked.warnings()

        rig = await open_rig(chain=False, tracked=True, sink=RefusingSink(1))
        tracker = attached(rig)
        handle = rig.session.say(GOODBYE)
        tracker.label(handle, "refused")
        await playout(handle)
        (finished,) = await rig.events.wait_finished(1, timeout=PLAYOUT)
        assert rig.sink.segments == []
        assert not handle.interrupted
        assert rig.events.started == []
        assert (finished.message_id, finished.played, finished.playback_position) == (
            "refused",
            "skipped",
            0,
        )
        assert finished.started_at is None
        assert finished.interrupted is False
        # the tracker goes on: the next speech is reported as heard
        nxt = rig.session.say(NEXT)
        tracker.label(nxt, "next")
        await playout(nxt)
        done = await tracker.wait_for("next", "finished", timeout=PLAYOUT)
        assert (done.played, done.started_at) == ("full", rig.sink.segments[0].started_at)
        assert (handle.interrupted, nxt.interrupted) == (bare.interrupted, bare_next.interrupted)
        await rig.aclose()
        # livekit logs the refused frame itself, the same with and without the tracker
        assert rig.warnings() == untracked_warnings
        assert not [w for w in rig.warnings() if w.startswith("playback_hooks")]
        assert rig.segments() == untracked.segments()

    async def test_refused_second_message_of_a_reply(self, open_rig: OpenRig) -> None:
        script: list[Item] = [boundary("a"), "First part.", boundary("b"), "Refused part."]
        script += [boundary("c"), "Third."]
        untracked = await open_rig(
            chain=False, tracked=False, sink=RefusingSink(2), agent=ScriptAgent(script)
        )
        bare = untracked.session.generate_reply()
        await playout(bare)
        await untracked.aclose()
        untracked_warnings = untracked.warnings()

        rig = await open_rig(
            chain=False, tracked=True, sink=RefusingSink(2), agent=ScriptAgent(script)
        )
        handle = rig.session.generate_reply()
        await playout(handle)
        finished = await rig.events.wait_finished(3, timeout=PLAYOUT)
        assert not handle.interrupted
        assert [(f.message_id, f.played, f.interrupted) for f in finished] == [
            ("a", "full", False),
            ("b", "skipped", False),
            ("c", "full", False),
        ]
        heard = [f.started_at for f in finished if f.played != "skipped"]
        assert heard == [s.started_at for s in rig.sink.segments]
        assert handle.interrupted == bare.interrupted
        await rig.aclose()
        assert rig.warnings() == untracked_warnings
        assert rig.segments() == untracked.segments()
