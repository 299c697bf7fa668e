"""Model-based fuzzing of the tracker: random interleavings of what livekit, the sink and
handlers can do, with the guarantees checked after every step.

The chain is either the bare sink or livekit's transcription synchronizer over it; the
machine also shows words below the synchronizer's text output, reports played runs, pauses
and resumes the output and asks ``now_playing()``, and checks live progress after every step:
progress between its message's started and finished events, position / heard_text / at never
going backwards, positions within the runs the sink reported plus the time since it started,
words only in the message whose segment was playing when they were shown.

``make test`` runs a bounded number of examples; ``make fuzz`` runs thousands
(``PLAYBACK_HOOKS_FUZZ_EXAMPLES``) and prints ``fuzz: N examples, M failures`` last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from livekit import rtc
from livekit.agents import AgentSession
from livekit.agents.voice.events import SpeechCreatedEvent
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities, TextOutput
from livekit.agents.voice.speech_handle import SpeechHandle
from livekit.agents.voice.transcription import TranscriptSynchronizer

import playback_hooks as ph
from playback_hooks import _livekit
from playback_hooks._ledger import ledger_for
from playback_hooks.tracker import PlaybackTracker

FRAME = rtc.AudioFrame(b"\x00\x00" * 24, 24000, 1, 24)  # 1 ms: the steps outlast the audio

SIGNALS = (
    ph.message_playback_started,
    ph.message_playback_finished,
    ph.message_playback_progressed,
)


class ManualSink(AudioOutput):
    """A sink the state machine drives by hand: it reports only what the machine says."""

    def __init__(self) -> None:
        super().__init__(label="ManualSink", capabilities=AudioOutputCapabilities(pause=True))
        self.open: list[dict[str, Any]] = []  # accepted segments not yet reported finished
        self.done: list[dict[str, Any]] = []  # the segments reported finished
        self.current: dict[str, Any] | None = None  # the segment being captured

    @property
    def capturing(self) -> bool:
        return self.current is not None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if self.current is None:
            self.current = {
                "started": False,
                "flushed": False,
                "captured": 0.0,
                "created_at": None,
                "reported": 0.0,  # seconds of played runs reported
            }
            self.open.append(self.current)
        self.current["captured"] += frame.duration

    def flush(self) -> None:
        super().flush()
        if self.current is not None:
            self.current["flushed"] = True
        self.current = None

    def clear_buffer(self) -> None:
        pass


class WordLog(TextOutput):
    """The bottom of the text chain: logs each word and flush into the machine's log."""

    def __init__(self, log: list[tuple[str, Any]]) -> None:
        super().__init__(label="WordLog", next_in_chain=None)
        self.log = log

    async def capture_text(self, text: str) -> None:
        self.log.append(("text", str(text)))

    def flush(self) -> None:
        self.log.append(("flush", None))


class TrackerMachine(RuleBasedStateMachine):
    """One tracker over a manual sink; speeches, messages and sink events in any order."""

    speeches = Bundle("speeches")

    def __init__(self) -> None:
        super().__init__()
        TrackerMachine.examples += 1
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.session: AgentSession[Any] = AgentSession()
        self.sink = ManualSink()
        self.session.output.audio = self.sink
        self.tracker: PlaybackTracker | None = self._sync(ph.attach, self.session)
        self.trackers: list[PlaybackTracker] = [] if self.tracker is None else [self.tracker]
        self.admitted: dict[str, bool] = {}  # speech id -> created while a tracker was attached
        # speech id -> the output its (one) step read when it began to forward audio
        self.held: dict[str, AudioOutput] = {}
        self.events: list[Any] = []
        # a progress receiver too: the tracker follows every message's progress
        for signal in SIGNALS:
            signal.connect(self._record, sender=self.session, weak=False)
        self.handlers: list[Any] = []
        self.next_id = 0
        self.announced: dict[str, int] = {}  # speech id -> messages announced
        self.scheduled: dict[str, bool] = {}
        self.handles: dict[str, SpeechHandle] = {}
        self.capturing: SpeechHandle | None = None
        self.internal_errors = _InternalErrors()
        logging.getLogger("playback_hooks").addHandler(self.internal_errors)
        self.items: dict[str, list[Any]] = {}  # speech id -> realtime messages announced
        # live progress: livekit's synchronizer in the chain (or not), the words shown and
        # the segments started, in the order they happened
        self.synchronizer: TranscriptSynchronizer | None = None
        self.word_log: list[tuple[str, Any]] = []
        self.next_word = 0

    examples = 0

    @property
    def output(self) -> AudioOutput:
        # the top of the chain now: the tracker's output while one is attached (or still
        # reporting), since the first speech was created
        audio = self.session.output.audio
        assert audio is not None
        return audio

    def _output_of(self, handle: SpeechHandle) -> AudioOutput:
        # livekit reads session.output.audio when a speech's step begins and keeps it
        return self.held.setdefault(handle.id, self.output)

    def _record(self, sender: Any, *, event: Any, **_: Any) -> None:
        self.events.append(event)

    def _settle(self) -> None:
        for _ in range(3):
            self.loop.run_until_complete(asyncio.sleep(0))

    def _sync(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        # livekit calls its outputs from its tasks; the synchronizer creates tasks in them
        async def call() -> Any:
            return fn(*args, **kwargs)

        return self.loop.run_until_complete(call())

    def _may_open_segment(self) -> bool:
        # livekit forwards a speech's next segment once the previous one finished playing;
        # the bare sink takes any order, livekit's synchronizer only that one
        return self.synchronizer is None or not self.sink.open

    def _in_speech(self, handle: SpeechHandle, coro_fn: Any) -> Any:
        token = _livekit.speech_context.set(handle)
        try:
            return coro_fn()
        finally:
            _livekit.speech_context.reset(token)

    # -- handlers -----------------------------------------------------------------------

    @initialize(kind=st.sampled_from(["none", "raises", "async-raises", "hangs"]))
    def add_handler(self, kind: str) -> None:
        if kind == "raises":

            def handler(sender: Any, **kwargs: Any) -> None:
                raise RuntimeError("handler failure")

        elif kind == "async-raises":

            async def handler(sender: Any, **kwargs: Any) -> None:  # type: ignore[misc]
                raise RuntimeError("async handler failure")

        elif kind == "hangs":

            async def handler(sender: Any, **kwargs: Any) -> None:  # type: ignore[misc]
                await asyncio.Event().wait()

        else:
            return
        for signal in SIGNALS:
            signal.connect(handler, sender=self.session, weak=False)
        self.handlers.append(handler)

    @initialize(synchronized=st.booleans())
    def build_chain(self, synchronized: bool) -> None:
        """Either the bare sink, or livekit's transcription synchronizer over it (RoomIO's
        chain), whose text output the machine then feeds words below."""
        if not synchronized:
            return

        async def make() -> TranscriptSynchronizer:
            return TranscriptSynchronizer(
                next_in_chain_audio=self.sink, next_in_chain_text=WordLog(self.word_log)
            )

        self.synchronizer = self.loop.run_until_complete(make())
        self.session.output.audio = self.synchronizer.audio_output

    # -- speeches -----------------------------------------------------------------------

    @rule(target=speeches, scheduled=st.booleans(), say=st.booleans())
    def new_speech(self, scheduled: bool, say: bool) -> SpeechHandle:
        return self._create_speech(scheduled, say)

    def _create_speech(self, scheduled: bool, say: bool) -> SpeechHandle:
        handle = SpeechHandle.create()
        if scheduled:
            _livekit.mark_scheduled(handle)
        self.handles[handle.id] = handle
        self.scheduled[handle.id] = scheduled
        self.admitted[handle.id] = self.tracker is not None
        self.announced[handle.id] = 0
        self.session.emit(
            "speech_created",
            SpeechCreatedEvent(
                speech_handle=handle,
                user_initiated=True,
                source="say" if say else "generate_reply",
            ),
        )
        return handle

    @rule(handle=speeches, named=st.booleans(), has_segment=st.booleans())
    def announce(self, handle: SpeechHandle, named: bool, has_segment: bool) -> None:
        self.next_id += 1
        ledger = ledger_for(handle)
        if ledger is None:
            return
        msg = ledger.announce(
            handle, f"m{self.next_id}" if named else None, {}, "llm", has_segment=has_segment
        )
        if msg is not None:
            self.announced[handle.id] += 1

    @rule(handle=speeches)
    def label(self, handle: SpeechHandle) -> None:
        self.next_id += 1
        # detached, labelled already, too late, or another tracker's: refused, as documented
        for tracker in self.trackers:
            with contextlib.suppress(ValueError, RuntimeError):
                tracker.label(handle, f"label{self.next_id}")

    # -- attach and detach, also in the same loop iteration as a speech's creation --------

    @rule(reattach=st.booleans())
    def detach(self, reattach: bool) -> None:
        if self.tracker is not None:
            self.tracker.detach()
            self.tracker = None
        if reattach:  # same iteration
            self.attach()
        self._settle()

    @rule()
    def attach(self) -> None:
        if self.tracker is None:
            self.tracker = self._sync(ph.attach, self.session)
            assert self.tracker is not None
            self.trackers.append(self.tracker)

    @rule(target=speeches, scheduled=st.booleans())
    def speech_then_attach(self, scheduled: bool) -> SpeechHandle:
        """A speech created, then a tracker attached in the same iteration: the speech is
        not reported (it was created before), even though its audio goes through the new
        tracker's output."""
        if self.tracker is not None:
            self.detach(reattach=False)
        handle = self._create_speech(scheduled, say=True)
        self.attach()
        return handle

    @rule(target=speeches, reattach=st.booleans())
    def label_then_detach(self, reattach: bool) -> SpeechHandle:
        """``say()``, ``label()`` and ``detach()`` in one iteration: the speech is reported
        whole by the tracker that admitted it."""
        if self.tracker is None:
            self.attach()
        handle = self._create_speech(scheduled=True, say=True)
        self.label(handle)
        assert self.tracker is not None
        self.tracker.detach()
        self.tracker = None
        if reattach:
            self.attach()
        return handle

    @rule(handle=speeches, begin=st.booleans())
    def realtime_item(self, handle: SpeechHandle, begin: bool) -> None:
        self.next_id += 1
        ledger = ledger_for(handle)
        if ledger is None:
            return
        msg = ledger.announce(handle, f"item{self.next_id}", {}, "realtime", has_segment=True)
        if msg is None:
            return
        self.announced[handle.id] += 1
        self.items.setdefault(handle.id, []).append(msg)
        if begin:
            ledger.item_begins(handle, msg)
            self._settle()

    @rule(handle=speeches, which=st.integers(0, 3))
    def realtime_begins(self, handle: SpeechHandle, which: int) -> None:
        items = self.items.get(handle.id, [])
        ledger = ledger_for(handle)
        if items and ledger is not None:
            ledger.item_begins(handle, items[which % len(items)])
            self._settle()

    @rule(handle=speeches, frames=st.integers(1, 3), flush=st.booleans())
    def capture(self, handle: SpeechHandle, frames: int, flush: bool) -> None:
        # livekit only forwards audio of scheduled speeches, one segment at a time
        if not handle.scheduled or handle.done():
            return
        if self.capturing is not None and self.capturing is not handle:
            return
        if self.capturing is None and not self._may_open_segment():
            return
        self.capturing = handle
        output = self._output_of(handle)
        for _ in range(frames):
            self._in_speech(
                handle, lambda: self.loop.run_until_complete(output.capture_frame(FRAME))
            )
        assert self.sink.current is not None
        self.sink.current["speech"] = handle.id
        if flush:
            self._in_speech(handle, lambda: self._sync(output.flush))
            self.capturing = None
        self._settle()

    @rule(handle=speeches)
    def flush_empty(self, handle: SpeechHandle) -> None:
        if not handle.scheduled or handle.done() or self.capturing is not None:
            return
        if not self._may_open_segment():
            return
        output = self._output_of(handle)
        self._in_speech(handle, lambda: self._sync(output.flush))
        self._settle()

    @rule()
    def truncate(self) -> None:
        if self.capturing is not None:
            self._sync(_livekit.mark_input_truncated, self._output_of(self.capturing))

    @rule(pause=st.booleans())
    def pause_or_resume(self, pause: bool) -> None:
        if pause:
            self._sync(self.output.pause)
        else:
            self._sync(self.output.resume)

    @rule()
    def clear_buffer(self) -> None:
        self._sync(self.output.clear_buffer)

    # -- sink events ----------------------------------------------------------------------

    @rule()
    def sink_started(self) -> None:
        for seg in self.sink.open:
            if not seg["started"]:
                seg["started"] = True
                seg["created_at"] = time.time()
                # the tracker's output takes the report for its oldest open segment, the
                # first one the sink started: words shown from now on are that message's
                self.word_log.append(("started", self.sink.open[0]["created_at"]))
                self._sync(self.sink.on_playback_started, created_at=seg["created_at"])
                break
        self._settle()

    @rule(handle=speeches, named=st.booleans(), frames=st.integers(1, 3))
    def message_plays(self, handle: SpeechHandle, named: bool, frames: int) -> None:
        """The common path in one step: a message of the speech is announced, its segment
        is captured and the sink starts it (so that progress has something to report)."""
        if not handle.scheduled or handle.done() or self.capturing is not None:
            return
        if not self._may_open_segment():
            return
        self.announce(handle, named, has_segment=True)
        self.capture(handle, frames, flush=False)
        self.sink_started()

    @rule(target=speeches, named=st.booleans(), frames=st.integers(1, 3))
    def speech_plays(self, named: bool, frames: int) -> SpeechHandle:
        """A new speech whose first message starts playing, in one step."""
        handle = self._create_speech(scheduled=True, say=False)
        self.message_plays(handle, named, frames)
        return handle

    @precondition(lambda self: bool(self.sink.open) and self.sink.open[0]["started"])
    @rule(fraction=st.floats(0, 1))
    def sink_progressed(self, fraction: float) -> None:
        # a played run of the playing segment, never more than the audio it was given
        if not self.sink.open or not self.sink.open[0]["started"]:
            return
        seg = self.sink.open[0]
        duration = (seg["captured"] - seg["reported"]) * fraction
        if duration <= 0:
            return
        self._sync(
            self.sink.on_playback_progressed,
            started_at=time.time() - duration,
            offset=seg["reported"],
            duration=duration,
        )
        seg["reported"] += duration
        self._settle()

    @precondition(lambda self: self.synchronizer is not None)
    @rule(flush=st.booleans())
    def word_shown(self, flush: bool) -> None:
        # what livekit's synchronizer does: a word to the text output below its own, or the
        # flush that closes its segment
        if self.synchronizer is None:
            return
        below = self.synchronizer.text_output.next_in_chain
        assert below is not None
        if flush:
            self._sync(below.flush)
        else:
            self.next_word += 1
            self.loop.run_until_complete(below.capture_text(f"w{self.next_word} "))
        self._settle()

    @rule(
        actions=st.lists(
            st.sampled_from(["word", "flush", "run", "pause", "resume", "now"]), max_size=8
        ),
        fraction=st.floats(0, 1),
    )
    def plays_on(self, actions: list[str], fraction: float) -> None:
        """A burst of what happens while a message plays: words shown, runs reported,
        pauses and resumes, now_playing() calls, in any order."""
        for action in actions:
            if action in ("word", "flush"):
                if self.synchronizer is not None:
                    self.word_shown(flush=action == "flush")
            elif action == "run":
                if self.sink.open and self.sink.open[0]["started"]:
                    self.sink_progressed(fraction)
            elif action in ("pause", "resume"):
                self.pause_or_resume(action == "pause")
            else:
                self.ask_now_playing()

    @rule()
    def ask_now_playing(self) -> None:
        # after a settle every released event is delivered: compare with what was received
        self._settle()
        if self.tracker is None:
            return
        observed = self.tracker.now_playing()
        last: dict[tuple[str, int], float] = {}
        for ev in self.events:
            if isinstance(ev, ph.MessagePlaybackProgressed):
                last[(ev.speech_id, ev.index)] = ev.position
        self._check_now_playing(observed, last)

    @rule(interrupted=st.booleans(), fraction=st.floats(0, 1), start_lost=st.booleans())
    def sink_finished(self, interrupted: bool, fraction: float, start_lost: bool) -> None:
        if not self.sink.open:
            return
        seg = self.sink.open[0]
        if not (seg["flushed"] or interrupted):
            return
        self.sink.open.pop(0)
        self.sink.done.append(seg)
        if seg is self.sink.current and self.capturing is not None:
            # livekit reacts to an interruption by cancelling the forwarding, which flushes
            output = self._output_of(self.capturing)
            self._in_speech(self.capturing, lambda: self._sync(output.flush))
            self.capturing = None
        position = seg["captured"] * (fraction if interrupted else 1.0)
        if not seg["started"] and not start_lost:
            position = 0.0
        # (a remote sink that lost its start report still says how much played); heard: it
        # played, and the sink said so while its speech was not over yet
        seg["heard"] = position > 0 and not self.handles[seg["speech"]].done()
        self._sync(
            self.sink.on_playback_finished, playback_position=position, interrupted=interrupted
        )
        self._settle()

    @rule(handle=speeches, interrupted=st.booleans())
    def speech_done(self, handle: SpeechHandle, interrupted: bool) -> None:
        if handle.done():
            return
        if self.capturing is handle:
            output = self._output_of(handle)
            self._in_speech(handle, lambda: self._sync(output.flush))
            self.capturing = None
        self._sync(_livekit.mark_done, handle, interrupted=interrupted)
        self._settle()

    # -- the guarantees ---------------------------------------------------------------

    @invariant()
    def no_internal_error(self) -> None:
        assert self.internal_errors.records == [], self.internal_errors.records[0].exc_info

    @invariant()
    def guarantees_hold(self) -> None:
        started: dict[str, Any] = {}
        finished: dict[str, Any] = {}
        events = [e for e in self.events if not isinstance(e, ph.MessagePlaybackProgressed)]
        for i, ev in enumerate(events):
            key = ev.message_id
            if isinstance(ev, ph.MessagePlaybackStarted):
                assert key not in started, f"two started events for {key}"
                assert key not in finished, f"{key} started after it finished"
                started[key] = ev
                # finished(k) before started(k+1): nothing else until this one finishes
                rest = events[i + 1 :]
                if rest:
                    nxt = rest[0]
                    assert isinstance(nxt, ph.MessagePlaybackFinished), nxt
                    assert nxt.message_id == key, (key, nxt.message_id)
            else:
                assert key not in finished, f"two finished events for {key}"
                finished[key] = ev
                assert (ev.played == "skipped") == (key not in started)
                assert (ev.played == "skipped") == (ev.started_at is None)
                if ev.played == "skipped":
                    assert ev.playback_position == 0
                if ev.played == "full":
                    assert not ev.interrupted
                if key in started:
                    assert ev.started_at == started[key].started_at
                    assert ev.started_at_estimated == started[key].started_at_estimated
            assert self.scheduled[ev.speech_id], "event for a speech never scheduled"
            assert self.admitted[ev.speech_id], "event for a speech created while detached"
            if isinstance(ev, ph.MessagePlaybackStarted) and not ev.started_at_estimated:
                # the sink's own time, for a segment it reported started
                assert any(
                    seg["created_at"] == ev.started_at for seg in self.sink.open + self.sink.done
                ), ev
        # within a speech, messages finish in index order
        by_speech: dict[str, list[int]] = {}
        for ev in finished.values():
            by_speech.setdefault(ev.speech_id, []).append(ev.index)
        for indexes in by_speech.values():
            assert indexes == sorted(indexes)

    @invariant()
    def progress_holds(self) -> None:
        """Progress comes between its message's started and finished events; position,
        heard_text and at never go backwards; positions stay within the runs the sink reported
        plus the time since it started; a word shown is in the message whose segment was
        playing, never in another."""
        state: dict[tuple[str, int], str] = {}
        last: dict[tuple[str, int], ph.MessagePlaybackProgressed] = {}
        started_at: dict[tuple[str, int], float] = {}
        for ev in self.events:
            key = (ev.speech_id, ev.index)
            if isinstance(ev, ph.MessagePlaybackStarted):
                state[key] = "playing"
                started_at[key] = ev.started_at
            elif isinstance(ev, ph.MessagePlaybackFinished):
                assert ev.played == "skipped" or state.get(key) == "playing", ev
                state[key] = "done"
            else:
                assert state.get(key) == "playing", f"progress outside its playback: {ev}"
                assert ev.at >= started_at[key]
                before = last.get(key)
                if before is not None:
                    assert ev.position >= before.position, (before, ev)
                    assert ev.at >= before.at, (before, ev)
                    assert (ev.heard_text or "").startswith(before.heard_text or ""), (before, ev)
                last[key] = ev
                # the runs the sink reported, plus at most the time since it started
                bound = self._reported(started_at[key]) + ev.at - started_at[key]
                assert 0 <= ev.position <= bound + 1e-9, ev
                if self.synchronizer is None:
                    assert ev.heard_text is None
                else:
                    assert ev.heard_text is not None
                    shown = self._words_shown_during(started_at[key])
                    assert shown.startswith(ev.heard_text), (shown, ev)

    def _reported(self, created_at: float) -> float:
        for seg in self.sink.open + self.sink.done:
            if seg["created_at"] == created_at:
                return float(seg["reported"])
        raise AssertionError(f"no segment started at {created_at}")

    def _words_shown_during(self, created_at: float) -> str:
        # the words logged while the segment started at created_at was the one playing
        # (from the sink's report until the synchronizer's flush)
        shown: list[str] = []
        following: float | None = None
        for kind, value in self.word_log:
            if kind == "started":
                following = value
            elif kind == "flush":
                following = None
            elif following == created_at:
                shown.append(value)
        return "".join(shown)

    def _check_now_playing(self, observed: Any, last: dict[tuple[str, int], float]) -> None:
        playing = set()
        for ev in self.events:
            key = (ev.speech_id, ev.index)
            if isinstance(ev, ph.MessagePlaybackStarted):
                playing.add(key)
            elif isinstance(ev, ph.MessagePlaybackFinished):
                playing.discard(key)
        if observed is None:
            assert not playing, playing
            return
        key = (observed.speech_id, observed.index)
        assert playing == {key}, (playing, observed)
        assert observed.position >= last.get(key, 0.0)

    def teardown(self) -> None:
        try:
            for handle in list(self.handles.values()):
                if not handle.done():
                    _livekit.mark_done(handle)
            self._settle()
            # the sink never reports what it still holds: the tracker ended those messages
            # when their speech ended; every message of a scheduled speech ended once
            per_speech: dict[str, list[int]] = {}
            for ev in self.events:
                if isinstance(ev, ph.MessagePlaybackFinished):
                    per_speech.setdefault(ev.speech_id, []).append(ev.index)
            for speech_id, count in self.announced.items():
                if not self.scheduled[speech_id] or not self.admitted[speech_id]:
                    assert speech_id not in per_speech
                    continue
                indexes = per_speech.get(speech_id, [])
                assert indexes == list(range(len(indexes))), indexes
                assert len(indexes) >= count
            # a segment the sink reported played is never reported skipped: each reported
            # speech has at least as many messages heard as segments the sink said played
            heard: dict[str, int] = {}
            for seg in self.sink.done:
                if seg["heard"] and self.admitted[seg["speech"]]:
                    heard[seg["speech"]] = heard.get(seg["speech"], 0) + 1
            for speech_id, count in heard.items():
                reported = [
                    e
                    for e in self.events
                    if isinstance(e, ph.MessagePlaybackFinished)
                    and e.speech_id == speech_id
                    and e.played != "skipped"
                ]
                assert len(reported) >= count, (speech_id, count, reported)
            for tracker in self.trackers:
                stats = tracker.stats()
                assert stats.speeches == 0, "per-speech state left behind"
                assert stats.unreleased_messages == 0, "messages left unfinished"
                self.loop.run_until_complete(tracker.aclose())
                assert tracker.stats() == ph.TrackerStats(0, 0, 0, 0, stats.history, 0)
            # no tracker left: the output is off the top of the chain
            assert self.session.output.audio in (
                self.sink,
                getattr(self.synchronizer, "audio_output", None),
            )
            if self.synchronizer is not None:
                # detached: livekit's text chain is what it was
                assert isinstance(self.synchronizer.text_output.next_in_chain, WordLog)
        finally:
            logging.getLogger("playback_hooks").removeHandler(self.internal_errors)
            if self.synchronizer is not None:
                self.loop.run_until_complete(self.synchronizer.aclose())
            for signal in SIGNALS:
                signal.disconnect(self._record)
                for handler in self.handlers:
                    signal.disconnect(handler)
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
            asyncio.set_event_loop(None)


def _examples() -> int:
    return int(os.environ.get("PLAYBACK_HOOKS_FUZZ_EXAMPLES", "200"))


class _InternalErrors(logging.Handler):
    """Keeps the tracker's internal-error records; drops the handler failures the machine
    causes on purpose (they are logged by design)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "internal error" in record.getMessage():
            self.records.append(record)


@pytest.fixture
def quiet_log() -> Iterator[None]:
    """The machine's failing handlers are logged by design; keep that out of the output."""
    logger = logging.getLogger("playback_hooks")
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.propagate = propagate


@pytest.mark.usefixtures("quiet_log")
def test_tracker_state_machine() -> None:
    """Random interleavings never break guarantees 2-5 (bounded here; `make fuzz` for more)."""
    examples = _examples()
    TrackerMachine.examples = 0
    failures = 0
    try:
        run_state_machine_as_test(
            TrackerMachine,
            settings=settings(
                max_examples=examples,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize="PLAYBACK_HOOKS_FUZZ_EXAMPLES" not in os.environ,
            ),
        )
    except BaseException:
        failures = 1
        raise
    finally:
        if report := os.environ.get("PLAYBACK_HOOKS_FUZZ_REPORT"):
            with open(report, "w") as f:
                f.write(f"fuzz: {TrackerMachine.examples} examples, {failures} failures\n")


@pytest.mark.usefixtures("quiet_log")
def test_tracker_attached_after_the_last_closed_follows_the_older_segments() -> None:
    """Found by ``make fuzz``: the last tracker closes while the sink still holds a segment
    (its speech ended first), a new tracker's message starts playing, then the sink reports
    a played run of the older segment. The run is the older segment's, not the new
    message's: one output follows the sink's segments for the whole session."""
    machine = TrackerMachine()
    try:
        machine.build_chain(synchronized=False)
        older = machine.speech_plays(frames=2, named=False)
        machine.capture(handle=older, frames=2, flush=True)
        machine.sink_progressed(fraction=0.4)
        machine.speech_done(handle=older, interrupted=True)
        output = machine.output
        machine.speech_then_attach(scheduled=False)  # the last tracker closes first
        machine.speech_plays(frames=1, named=True)
        assert machine.output is output
        machine.sink_progressed(fraction=1.0)  # the rest of the older segment
        machine.progress_holds()
        machine.guarantees_hold()
        machine.no_internal_error()
    finally:
        machine.teardown()
