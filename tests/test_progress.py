"""Live progress: what the user has heard of each message so far, through livekit's chains.

The chains are the ones RoomIO builds (``tests/chains.py``): livekit's
``TranscriptSynchronizer`` over a ``SimulatedSink`` or over RoomIO's participant audio output.
Each scenario also runs without the tracker where livekit's behaviour could change, and the
two runs must agree on everything livekit did. Words are checked against what livekit's own
text output received, piece by piece; positions against the sink's own reports.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import Agent
from livekit.agents.voice.io import PlaybackProgressedEvent

import playback_hooks as ph
from playback_hooks._outputs import TrackingOutput
from playback_hooks.testing import EventCollector, RealtimeItem, ScriptedRealtimeModel

from .agents import Item, ScriptAgent, boundary
from .chains import ChainRun, RecordingTextOutput, SinkKind, start_chain
from .conftest import StartSession
from .test_chains import (
    FALSE_INTERRUPTIONS,
    LONG_SCRIPT,
    THREE,
    THREE_SCRIPT,
    Outcome,
    assert_livekit_unchanged,
    cut_on_third_word_of_m2,
    false_interruption_in_m2,
    marked,
    play,
    plays_in_full,
)

SINKS: list[SinkKind] = ["simulated", "room"]
CLOCK_SLACK = 1e-6  # float rounding only

Key = tuple[str, int]  # (speech id, index): a message, even when ids repeat


# -- reading what was delivered -------------------------------------------------------------


@dataclass
class Progress:
    """Every event of one session, progress included, in the order handlers got them."""

    collector: EventCollector
    by_message: dict[Key, list[ph.MessagePlaybackProgressed]] = field(default_factory=dict)

    def of(self, message_id: str) -> list[ph.MessagePlaybackProgressed]:
        """The progress events of the message with this id."""
        return self.collector.progress_of(message_id)

    def finished(self, message_id: str) -> ph.MessagePlaybackFinished:
        """The finished event of the message with this id."""
        return next(f for f in self.collector.finished if f.message_id == message_id)


def check_progress(collector: EventCollector) -> Progress:
    """The guarantees every progress stream has; returns the events grouped per message.

    Every progress event of a message comes after its started event and before its finished
    event; a message that never started gets none; ``position``, ``heard_text`` and ``at``
    never go backwards within a message; ``heard_text`` is None for all of a message's
    events or for none; ``at`` is not before the message's start, and ``position`` is never
    ahead of the clock since then (the rule of docs/progress.md; nothing caps it at the
    audio handed over, so it may pass the audio's length between the sink's end and its
    report).
    """
    progress = Progress(collector)
    state: dict[Key, str] = {}
    started_at: dict[Key, float] = {}
    for ev in collector.delivered:
        key = (ev.speech_id, ev.index)
        if isinstance(ev, ph.MessagePlaybackStarted):
            assert key not in state, ev
            state[key] = "playing"
            started_at[key] = ev.started_at
        elif isinstance(ev, ph.MessagePlaybackProgressed):
            assert state.get(key) == "playing", ev
            assert ev.at >= started_at[key]
            assert ev.position <= ev.at - started_at[key] + CLOCK_SLACK, ev
            seen = progress.by_message.setdefault(key, [])
            if seen:
                last = seen[-1]
                assert ev.position >= last.position, (last, ev)
                assert ev.at >= last.at, (last, ev)
                assert (ev.heard_text is None) == (last.heard_text is None), (last, ev)
                if ev.heard_text is not None and last.heard_text is not None:
                    assert ev.heard_text.startswith(last.heard_text), (last, ev)
            assert ev.position >= 0
            seen.append(ev)
        else:
            assert state.get(key) == ("playing" if ev.played != "skipped" else None), ev
            state[key] = "done"
    assert all(s == "done" for s in state.values()), state
    return progress


def words_added(events: list[ph.MessagePlaybackProgressed]) -> list[str]:
    """The piece of text each progress event added to ``heard_text``, in order."""
    added: list[str] = []
    shown = ""
    for ev in events:
        assert ev.heard_text is not None
        if ev.heard_text != shown:
            added.append(ev.heard_text[len(shown) :])
            shown = ev.heard_text
    return added


def pieces(text: RecordingTextOutput) -> list[list[str]]:
    """What livekit's transcription output received, one list of ``capture_text()`` calls
    per segment (the synchronizer sends one word per call)."""
    segments: list[list[str]] = []
    current: list[str] | None = None
    for kind, piece in text.ops:
        if kind == "text":
            current = [] if current is None else current
            current.append(piece)
        elif current is not None:
            segments.append(current)
            current = None
    if current is not None:
        segments.append(current)
    return segments


Scenario = Callable[[ChainRun], Awaitable[None]]


def collecting(scenario: Scenario, collectors: list[EventCollector]) -> Scenario:
    """``scenario`` with a progress receiver on the session, connected before it runs."""

    async def run_it(run: ChainRun) -> None:
        collector = EventCollector(run.session, progress=True)
        collectors.append(collector)
        try:
            # the scenarios wait for the last finished event, which reaches this receiver in
            # the same delivery
            await scenario(run)
        finally:
            collector.close()

    return run_it


async def play_both(
    caplog: pytest.LogCaptureFixture, script: list[Any], scenario: Scenario, **kwargs: Any
) -> tuple[Outcome, Progress]:
    """Play ``scenario`` untracked, then tracked with a progress receiver; livekit must not
    see the difference. Returns the tracked run and its checked progress."""
    collectors: list[EventCollector] = []
    untracked = await play(caplog, script, collecting(scenario, []), tracked=False, **kwargs)
    tracked = await play(caplog, script, collecting(scenario, collectors), tracked=True, **kwargs)
    assert_livekit_unchanged(tracked, untracked)
    # the tap is not left in livekit's text chain once the tracker detached on close
    run = tracked.run
    assert run.synchronizer.text_output.next_in_chain is run.text
    (collector,) = collectors
    return tracked, check_progress(collector)


# -- the scenarios ----------------------------------------------------------------------------


class TestWordsPerMessage:
    """Over the synchronizer, each message's progress carries the words livekit showed for
    that message's segment, in order, and never a word of another message."""

    @pytest.mark.parametrize("sink", SINKS)
    async def test_three_messages_in_full(
        self, caplog: pytest.LogCaptureFixture, sink: str
    ) -> None:
        tracked, progress = await play_both(caplog, THREE_SCRIPT, plays_in_full, sink=sink)

        run = tracked.run
        assert run.text.segments == THREE
        shown = pieces(run.text)
        for k, message_id in enumerate(("m1", "m2", "m3")):
            events = progress.of(message_id)
            finished = progress.finished(message_id)
            assert finished.played == "full"
            added = words_added(events)
            # the words shown before its finished event, exactly as the text output got them;
            # livekit shows the words it is late on at once after the sink's end (no event)
            assert 1 <= len(added) <= len(shown[k])
            assert added == shown[k][: len(added)]
            assert finished.transcript is not None
            assert finished.transcript.startswith(events[-1].heard_text or "")
            assert not any(e.paused for e in events)
            assert {(e.speech_id, e.index, e.source) for e in events} == {
                (finished.speech_id, k, "llm")
            }

    @pytest.mark.parametrize("sink", SINKS)
    async def test_cut_in_the_second_message(
        self, caplog: pytest.LogCaptureFixture, sink: str
    ) -> None:
        tracked, progress = await play_both(caplog, LONG_SCRIPT, cut_on_third_word_of_m2, sink=sink)

        run = tracked.run
        m1, m2, m3 = (progress.finished(m) for m in ("m1", "m2", "m3"))
        assert [m1.played, m2.played, m3.played] == ["full", "partial", "skipped"]
        # the last words heard of m2 are what the screen showed of it: "Now the second",
        # one word ahead of livekit's synchronized transcript, which counts a word only
        # once its whole time has passed
        last = progress.of("m2")[-1]
        assert words_added(progress.of("m2")) == pieces(run.text)[1]
        assert last.heard_text == run.text.segments[1] == "Now the second"
        assert m2.transcript == "Now the"
        # a message never heard gets no progress at all
        assert progress.of("m3") == []
        if sink == "room":
            # RoomIO reports the runs it played at the clear and before its end: the last
            # progress event has them all, which is the sink's own final position
            assert last.position >= m2.playback_position - 1e-9


class TestFalseInterruption:
    """livekit's false-interruption pause, then resume: the progress says paused, then
    playing again, and the paused time is not counted as heard."""

    async def test_pause_then_resume_in_m2(self, caplog: pytest.LogCaptureFixture) -> None:
        tracked, progress = await play_both(
            caplog, LONG_SCRIPT, false_interruption_in_m2, sink="room", **FALSE_INTERRUPTIONS
        )

        run = tracked.run
        assert tracked.false_interruptions == [True]
        m2 = progress.finished("m2")
        assert m2.played == "full"
        events = progress.of("m2")
        flags = [e.paused for e in events]
        # playing, then paused (livekit called pause() on every VAD inference: one pause),
        # then playing again (and the resume() calls at each message start change nothing)
        first_paused = flags.index(True)
        resumed = flags.index(False, first_paused)
        assert not any(flags[:first_paused]) and all(flags[first_paused:resumed])
        assert not any(flags[resumed:])
        assert not any(e.paused for m in ("m1", "m3") for e in progress.of(m))
        # no time counted while paused: at the resume, the position is where the pause left
        # it, i.e. the estimate at the pause or the run RoomIO reported when it stopped,
        # whichever is further
        runs = run.sink_reports.progressed[1]
        at_pause = events[first_paused].position
        assert events[resumed].position == pytest.approx(events[resumed - 1].position, abs=1e-9)
        assert events[resumed].position == pytest.approx(max(at_pause, runs[0].duration), abs=1e-9)
        # it played on after the resume, and the words went on with it
        assert events[-1].position > events[resumed].position
        added = words_added(events)
        assert added == pieces(run.text)[1][: len(added)]
        # the sink's own position leaves the pause and the dropped audio out too, and the
        # last progress event has the run RoomIO reported at the end of playout
        assert m2.playback_position == pytest.approx(sum(r.duration for r in runs))
        assert events[-1].position >= m2.playback_position - 1e-9


class RealtimeChainAgent(Agent):
    """An agent on a scripted realtime model, in a session whose LLM is a pipeline one."""

    def __init__(self, model: ScriptedRealtimeModel) -> None:
        super().__init__(instructions="realtime progress agent", llm=model)


REALTIME_ITEMS = [
    RealtimeItem("item_pre", "Let me check that.", 0.6),
    RealtimeItem("item_ans", "The answer is four, and that is final.", 1.2),
    RealtimeItem("item_end", "Bye.", 0.3),
]


class TestRealtime:
    """A multi-item realtime response: each item's progress has its own words, in turn."""

    @pytest.mark.parametrize("sink", SINKS)
    async def test_three_items(self, sink: SinkKind) -> None:
        model = ScriptedRealtimeModel([REALTIME_ITEMS])
        run = await start_chain(RealtimeChainAgent(model), sink=sink)
        collector = EventCollector(run.session, progress=True)
        try:
            assert run.events is not None
            handle = run.session.generate_reply()
            await run.events.wait_finished(3)
            await handle
            await run.text.wait_flushed(3)
        finally:
            collector.close()
            await run.aclose()
            await model.aclose()
        progress = check_progress(collector)
        ids = [item.id for item in REALTIME_ITEMS]
        assert collector.timeline() == [(k, i) for i in ids for k in ("started", "finished")]
        assert run.text.segments == [item.text for item in REALTIME_ITEMS]
        shown = pieces(run.text)
        for k, item in enumerate(REALTIME_ITEMS):
            events = progress.of(item.id)
            assert {(e.source, e.index, e.speech_id) for e in events} == {
                ("realtime", k, handle.id)
            }
            added = words_added(events)
            assert len(added) >= 1 and added == shown[k][: len(added)]


class TestInterval:
    """With ``progress_interval``, progress also comes at that pace while a message plays,
    even without words or sink reports, and stops with the message and at detach()."""

    async def test_interval_events_without_a_synchronizer(
        self, start_session: StartSession
    ) -> None:
        off = await start_session(
            ScriptAgent(marked(["Hi.", "This one plays for about a second, give or take."])),
            attach=False,
        )
        tracker = ph.attach(off.session, progress_interval=0.05)
        assert tracker.progress_interval == 0.05
        assert ph.attach(off.session, progress_interval=0.05) is tracker
        with pytest.raises(ValueError, match=r"already attached with progress_interval=0.05"):
            ph.attach(off.session, progress_interval=0.5)
        collector = EventCollector(off.session, progress=True)
        try:
            off.session.generate_reply()
            await collector.wait_progress(lambda p: p.message_id == "m2" and p.position > 0.3)
            await collector.wait_finished(2)
        finally:
            collector.close()
        await tracker.aclose()
        progress = check_progress(collector)
        m2 = progress.of("m2")
        # the ticks of a message: no words without a synchronizer, never ahead of the clock
        # (checked above for every event)
        assert len(m2) >= 3
        assert all(e.heard_text is None and not e.paused for e in m2)
        assert tracker.stats() == ph.TrackerStats(0, 0, 0, 0, 2, 0)

    async def test_detach_stops_progress_at_once(self, start_session: StartSession) -> None:
        off = await start_session(
            ScriptAgent(marked(["This one plays for about a second, give or take."])),
            attach=False,
        )
        tracker = ph.attach(off.session, progress_interval=0.02)
        collector = EventCollector(off.session, progress=True)
        try:
            off.session.generate_reply()
            await collector.wait_progress(lambda p: p.position > 0.1)
            tracker.detach()
            detached_at = time.time()
            assert tracker.now_playing() is None
            await tracker.aclose()
            finished = await collector.wait_finished(1)
        finally:
            collector.close()
        check_progress(collector)
        # the message still finishes (it had started); no progress was observed after detach
        assert [f.played for f in finished] == ["full"]
        assert all(p.at <= detached_at for p in collector.progressed)
        assert tracker.stats().handler_tasks == 0

    @pytest.mark.parametrize(
        ("value", "error"),
        [("0.1", TypeError), (True, TypeError), (0, ValueError), (-1.0, ValueError)],
    )
    async def test_bad_interval_is_refused(
        self, start_session: StartSession, value: Any, error: type[Exception]
    ) -> None:
        off = await start_session(ScriptAgent(), attach=False)
        with pytest.raises(error, match=r"attach\(\): progress_interval must be"):
            ph.attach(off.session, progress_interval=value)
        assert ph.tracker_for(off.session) is None


class TestNowPlaying:
    """``now_playing()`` is the message playing at this instant, with its live position."""

    async def test_from_handlers_and_when_idle(self) -> None:
        run = await start_chain(ScriptAgent(LONG_SCRIPT))
        tracker = run.tracker
        assert tracker is not None and run.events is not None
        seen: list[tuple[str, ph.MessagePlaybackProgressed | None]] = []

        @ph.on_message_played(session=run.session)
        def on_started(event: ph.MessagePlaybackStarted) -> None:
            seen.append((event.message_id, tracker.now_playing()))

        # a progress receiver that came and went: blinker keeps an empty entry for the
        # session, which must not count as someone listening
        EventCollector(run.session, progress=True).close()
        try:
            assert tracker.now_playing() is None
            handle = run.session.generate_reply()
            await tracker.wait_for("m2", "started", timeout=10)
            await run.text.wait_for_words(1, 2)
            during = tracker.now_playing()
            later = tracker.now_playing()
            text_below = run.synchronizer.text_output.next_in_chain
            await handle
            await run.events.wait_finished(3)
            after = tracker.now_playing()
        finally:
            ph.disconnect(on_started)
            await run.aclose()

        assert after is None
        assert during is not None and later is not None
        assert (during.message_id, during.index, during.paused) == ("m2", 1, False)
        assert 0 < during.position <= later.position
        assert later.at >= during.at
        # nobody listens to progress here: the tracker did not follow the words (nothing is
        # paid for them) nor put anything in livekit's text chain, but the position is live
        assert during.heard_text is None
        assert text_below is run.text
        # a started handler sees its own message playing (long messages: still playing)
        assert [(m, p.message_id if p else None) for m, p in seen] == [
            ("m1", "m1"),
            ("m2", "m2"),
            ("m3", "m3"),
        ]

    async def test_follows_words_when_progress_is_wanted(self) -> None:
        run = await start_chain(ScriptAgent(LONG_SCRIPT))
        tracker = run.tracker
        collector = EventCollector(run.session, progress=True)
        assert tracker is not None and run.events is not None
        try:
            handle = run.session.generate_reply()
            event = await collector.wait_progress(
                lambda p: p.message_id == "m2" and p.heard_text == "Now the"
            )
            now = tracker.now_playing()
            await handle
            await run.events.wait_finished(3)
        finally:
            collector.close()
            await run.aclose()
        check_progress(collector)
        assert now is not None and now.message_id == "m2"
        assert now.heard_text is not None and now.heard_text.startswith("Now the")
        assert now.position >= event.position


class TestHandlers:
    """``@on_message_progress`` takes the forms and filters of ``@on_message_played``."""

    async def test_forms_filters_and_isolation(self, caplog: pytest.LogCaptureFixture) -> None:
        run = await start_chain(ScriptAgent(THREE_SCRIPT))
        assert run.events is not None
        calls: list[str] = []
        got_async = asyncio.Event()

        @ph.on_message_progress
        def bare(event: ph.MessagePlaybackProgressed) -> None:
            if event.speech_id in handles:
                calls.append(f"bare {event.message_id}")

        @ph.on_message_progress(session=run.session, message_id="m2")
        async def only_m2(event: ph.MessagePlaybackProgressed) -> None:
            calls.append(f"async {event.message_id}")
            got_async.set()

        @ph.on_message_progress(session=run.session)
        def broken(event: ph.MessagePlaybackProgressed) -> None:
            raise RuntimeError("progress handler failure")

        handles: set[str] = set()
        try:
            handle = run.session.generate_reply()
            handles.add(handle.id)
            await handle
            await run.events.wait_finished(3)
            await asyncio.wait_for(got_async.wait(), 10)
        finally:
            for fn in (bare, only_m2, broken):
                ph.disconnect(fn)
            await run.aclose()

        assert {c.split()[1] for c in calls if c.startswith("bare")} == {"m1", "m2", "m3"}
        assert {c for c in calls if c.startswith("async")} == {"async m2"}
        # the failing handler was logged, with the message id, and the others still ran
        failures = [
            r.getMessage() for r in caplog.records if "raised for message" in r.getMessage()
        ]
        assert failures and all(".broken raised for message 'm" in m for m in failures)
        assert [f.played for f in run.events.finished] == ["full"] * 3

    def test_bad_filters_are_refused(self) -> None:
        with pytest.raises(ValueError, match=r"on_message_progress: message_id must not be empty"):
            ph.on_message_progress(message_id="")
        with pytest.raises(TypeError, match=r"on_message_progress: session must be"):
            ph.on_message_progress(session="nope")  # type: ignore[call-overload]


class TestInstalling:
    """The word tap goes under the synchronizer's text output and leaves it at detach()."""

    async def test_detach_mid_message_takes_the_tap_out(self) -> None:
        run = await start_chain(ScriptAgent(marked(["Now this one runs on for a while."])))
        tracker = run.tracker
        collector = EventCollector(run.session, progress=True)
        assert tracker is not None and run.events is not None
        try:
            # nobody wanted progress yet: livekit's text chain is untouched
            assert run.synchronizer.text_output.next_in_chain is run.text
            handle = run.session.generate_reply()
            await collector.wait_progress(lambda p: p.heard_text == "Now this")
            # the tap went in when the first message that wanted progress began
            assert run.synchronizer.text_output.next_in_chain is not run.text
            tracker.detach()
            detached_at = time.time()
            assert run.synchronizer.text_output.next_in_chain is run.text
            await handle
            await run.text.wait_flushed(1)
            await run.events.wait_finished(1)
        finally:
            collector.close()
            await run.aclose()
        check_progress(collector)
        # the screen got every word, the ones after detach() included; progress stopped
        assert run.text.segments == ["Now this one runs on for a while."]
        assert all(p.at <= detached_at for p in collector.progressed)
        assert run.events.finished[0].played == "full"

    async def test_a_chain_without_synchronizer_has_no_words(
        self, start_session: StartSession
    ) -> None:
        off = await start_session(ScriptAgent([boundary("only"), "A few words here."]))
        collector = EventCollector(off.session, progress=True)
        try:
            off.session.generate_reply()
            await off.events.wait_finished(1)
            now = off.tracker.now_playing()
        finally:
            collector.close()
        check_progress(collector)
        assert now is None
        # no synchronizer, no sink reports, no pause, no interval: nothing to report live
        assert collector.progressed == []


class TestSinkRuns:
    """The runs the sink reports cost the tracker nothing unless someone wants them."""

    @pytest.mark.parametrize("followed", [False, True], ids=["no receiver", "receiver"])
    async def test_heard_only_for_messages_followed(
        self, followed: bool, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # RoomIO's participant output reports a played run at the end of each playout (and
        # at every underrun): livekit's emitter calls each listener of the sink for each
        heard: list[float] = []
        below_progressed = TrackingOutput._below_progressed

        def counting(output: TrackingOutput, ev: PlaybackProgressedEvent) -> None:
            heard.append(ev.duration)
            below_progressed(output, ev)

        monkeypatch.setattr(TrackingOutput, "_below_progressed", counting)
        run = await start_chain(ScriptAgent(THREE_SCRIPT), sink="room")
        assert run.events is not None
        collector = EventCollector(run.session, progress=True) if followed else None
        try:
            await run.session.generate_reply()
            await run.events.wait_finished(3)
        finally:
            if collector is not None:
                collector.close()
            await run.aclose()
        runs = [ev.duration for segment in run.sink_reports.progressed for ev in segment]
        assert len(runs) >= 3
        assert heard == (runs if followed else [])

    async def test_an_output_above_hears_every_run(self) -> None:
        # whatever listens to the tracker's output (an output put above it, the app) gets
        # the sink's runs as without the tracker, though nobody follows progress
        run = await start_chain(ScriptAgent(THREE_SCRIPT, THREE_SCRIPT), sink="room")
        assert run.events is not None and run.tracker is not None
        above: list[PlaybackProgressedEvent] = []
        try:
            await run.session.generate_reply()
            await run.events.wait_finished(3)
            top = run.session.output.audio  # the tracker's, since the first speech
            assert isinstance(top, TrackingOutput)
            top.on("playback_progressed", lambda ev: above.append(ev))
            heard_before = sum(len(segment) for segment in run.sink_reports.progressed)
            await run.session.generate_reply()
            await run.events.wait_finished(6)
        finally:
            await run.aclose()
        runs = [ev for segment in run.sink_reports.progressed for ev in segment]
        assert len(runs) >= heard_before + 3
        assert above == runs[heard_before:]
        assert [e.played for e in run.events.finished] == ["full"] * 6


PHRASE_RECIPE = Path(__file__).resolve().parent.parent / "docs" / "recipes" / "heard-phrase.md"


class TestHeardPhraseRecipe:
    """The recipe's ``when_heard()`` runs as written: once, when the phrase is shown."""

    async def test_the_price_card_shows_when_the_price_is_heard(self) -> None:
        match = re.search(r"```python\n(.*?)```", PHRASE_RECIPE.read_text(encoding="utf-8"), re.S)
        assert match is not None
        namespace: dict[str, Any] = {}
        exec(compile(match.group(1), str(PHRASE_RECIPE), "exec"), namespace)
        script: list[Item] = [
            boundary("intro"),
            "Sure, let me see.",
            boundary("price"),
            "The price is twelve dollars, taxes included, and that is a good deal.",
        ]
        run = await start_chain(ScriptAgent(script))
        assert run.events is not None
        shown: list[ph.MessagePlaybackProgressed] = []
        stop = namespace["when_heard"](run.session, "the price is", shown.append)
        try:
            await run.session.generate_reply()
            finished = await run.events.wait_finished(2)
        finally:
            stop()
            await run.aclose()
        assert list(ph.message_playback_progressed.receivers_for(run.session)) == []
        # once, for the message that says it, at the word that completed the phrase
        (event,) = shown
        assert (event.message_id, event.heard_text) == ("price", "The price is")
        assert event.position > 0
        assert finished[1].started_at is not None
        assert finished[1].started_at < event.at < finished[1].finished_at


def _progress_handler_types_are_checked() -> None:
    def on_started(event: ph.MessagePlaybackStarted) -> None: ...

    ph.on_message_progress(on_started)  # type: ignore[type-var]
    ph.on_message_progress(message_id="x")(on_started)  # type: ignore[type-var]

    @ph.on_message_progress(message_id="x")
    async def progressed(event: ph.MessagePlaybackProgressed) -> None: ...

    del progressed


def test_the_type_checks_above_are_not_run() -> None:
    """The function above exists for mypy (``make typecheck``); running it would leak."""
    assert callable(_progress_handler_types_are_checked)
