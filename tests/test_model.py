"""Model-based fuzzing of the tracker: random interleavings of what livekit, the sink and
handlers can do, with the guarantees checked after every step.

``make test`` runs a bounded number of examples; ``make fuzz`` runs thousands
(``PLAYBACK_HOOKS_FUZZ_EXAMPLES``) and prints ``fuzz: N examples, M failures`` last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
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
    rule,
    run_state_machine_as_test,
)
from livekit import rtc
from livekit.agents import AgentSession
from livekit.agents.voice.events import SpeechCreatedEvent
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities
from livekit.agents.voice.speech_handle import SpeechHandle

import playback_hooks as ph
from playback_hooks import _livekit
from playback_hooks._ledger import ledger_for
from playback_hooks.tracker import PlaybackTracker

FRAME = rtc.AudioFrame(b"\x00\x00" * 240, 24000, 1, 240)  # 10 ms


class ManualSink(AudioOutput):
    """A sink the state machine drives by hand: it reports only what the machine says."""

    def __init__(self) -> None:
        super().__init__(label="ManualSink", capabilities=AudioOutputCapabilities(pause=True))
        self.open: list[dict[str, Any]] = []  # accepted segments not yet reported finished
        self.current: dict[str, Any] | None = None  # the segment being captured

    @property
    def capturing(self) -> bool:
        return self.current is not None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if self.current is None:
            self.current = {"started": False, "flushed": False, "captured": 0.0}
            self.open.append(self.current)
        self.current["captured"] += frame.duration

    def flush(self) -> None:
        super().flush()
        if self.current is not None:
            self.current["flushed"] = True
        self.current = None

    def clear_buffer(self) -> None:
        pass


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
        self.tracker = PlaybackTracker(self.session, self.loop)
        self.events: list[Any] = []
        ph.message_playback_started.connect(self._record, sender=self.session, weak=False)
        ph.message_playback_finished.connect(self._record, sender=self.session, weak=False)
        self.handlers: list[Any] = []
        self.next_id = 0
        self.announced: dict[str, int] = {}  # speech id -> messages announced
        self.scheduled: dict[str, bool] = {}
        self.handles: dict[str, SpeechHandle] = {}
        self.capturing: SpeechHandle | None = None
        self.internal_errors = _InternalErrors()
        logging.getLogger("playback_hooks").addHandler(self.internal_errors)
        self.items: dict[str, list[Any]] = {}  # speech id -> realtime messages announced

    examples = 0

    @property
    def output(self) -> AudioOutput:
        # the tracker's output, on top of the sink since the first speech was created
        audio = self.session.output.audio
        assert audio is not None
        return audio

    def _record(self, sender: Any, *, event: Any, **_: Any) -> None:
        self.events.append(event)

    def _settle(self) -> None:
        for _ in range(3):
            self.loop.run_until_complete(asyncio.sleep(0))

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
        for signal in (ph.message_playback_started, ph.message_playback_finished):
            signal.connect(handler, sender=self.session, weak=False)
        self.handlers.append(handler)

    # -- speeches -----------------------------------------------------------------------

    @rule(target=speeches, scheduled=st.booleans(), say=st.booleans())
    def new_speech(self, scheduled: bool, say: bool) -> SpeechHandle:
        handle = SpeechHandle.create()
        if scheduled:
            _livekit.mark_scheduled(handle)
        self.handles[handle.id] = handle
        self.scheduled[handle.id] = scheduled
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
        # labelled already, or too late: refused, as documented
        with contextlib.suppress(ValueError, RuntimeError):
            self.tracker.label(handle, f"label{self.next_id}")

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
        self.capturing = handle
        for _ in range(frames):
            self._in_speech(
                handle, lambda: self.loop.run_until_complete(self.output.capture_frame(FRAME))
            )
        if flush:
            self._in_speech(handle, self.output.flush)
            self.capturing = None
        self._settle()

    @rule(handle=speeches)
    def flush_empty(self, handle: SpeechHandle) -> None:
        if not handle.scheduled or handle.done() or self.capturing is not None:
            return
        self._in_speech(handle, self.output.flush)
        self._settle()

    @rule()
    def truncate(self) -> None:
        if self.capturing is not None:
            _livekit.mark_input_truncated(self.output)

    @rule(pause=st.booleans())
    def pause_or_resume(self, pause: bool) -> None:
        if pause:
            self.output.pause()
        else:
            self.output.resume()

    @rule()
    def clear_buffer(self) -> None:
        self.output.clear_buffer()

    # -- sink events ----------------------------------------------------------------------

    @rule()
    def sink_started(self) -> None:
        for seg in self.sink.open:
            if not seg["started"]:
                seg["started"] = True
                self.sink.on_playback_started(created_at=self.loop.time())
                break
        self._settle()

    @rule(interrupted=st.booleans(), fraction=st.floats(0, 1))
    def sink_finished(self, interrupted: bool, fraction: float) -> None:
        if not self.sink.open:
            return
        seg = self.sink.open[0]
        if not (seg["flushed"] or interrupted):
            return
        self.sink.open.pop(0)
        if seg is self.sink.current and self.capturing is not None:
            # livekit reacts to an interruption by cancelling the forwarding, which flushes
            self._in_speech(self.capturing, self.output.flush)
            self.capturing = None
        position = seg["captured"] * (fraction if interrupted else 1.0)
        if not seg["started"]:
            position = 0.0
        self.sink.on_playback_finished(playback_position=position, interrupted=interrupted)
        self._settle()

    @rule(handle=speeches, interrupted=st.booleans())
    def speech_done(self, handle: SpeechHandle, interrupted: bool) -> None:
        if handle.done():
            return
        if self.capturing is handle:
            self._in_speech(handle, self.output.flush)
            self.capturing = None
        _livekit.mark_done(handle, interrupted=interrupted)
        self._settle()

    # -- the guarantees ---------------------------------------------------------------

    @invariant()
    def no_internal_error(self) -> None:
        assert self.internal_errors.records == [], self.internal_errors.records[0].exc_info

    @invariant()
    def guarantees_hold(self) -> None:
        started: dict[str, Any] = {}
        finished: dict[str, Any] = {}
        for i, ev in enumerate(self.events):
            key = ev.message_id
            if isinstance(ev, ph.MessagePlaybackStarted):
                assert key not in started, f"two started events for {key}"
                assert key not in finished, f"{key} started after it finished"
                started[key] = ev
                # finished(k) before started(k+1): nothing else until this one finishes
                rest = self.events[i + 1 :]
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
            assert self.scheduled[ev.speech_id], "event for a speech never scheduled"
        # within a speech, messages finish in index order
        by_speech: dict[str, list[int]] = {}
        for ev in finished.values():
            by_speech.setdefault(ev.speech_id, []).append(ev.index)
        for indexes in by_speech.values():
            assert indexes == sorted(indexes)

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
                if not self.scheduled[speech_id]:
                    assert speech_id not in per_speech
                    continue
                indexes = per_speech.get(speech_id, [])
                assert indexes == list(range(len(indexes))), indexes
                assert len(indexes) >= count
            stats = self.tracker.stats()
            assert stats.speeches == 0, "per-speech state left behind"
            assert stats.unreleased_messages == 0, "messages left unfinished"
            self.loop.run_until_complete(self.tracker.aclose())
            assert self.tracker.stats().handler_tasks == 0
        finally:
            logging.getLogger("playback_hooks").removeHandler(self.internal_errors)
            for signal in (ph.message_playback_started, ph.message_playback_finished):
                signal.disconnect(self._record)
                for handler in self.handlers:
                    signal.disconnect(handler)
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
            asyncio.set_event_loop(None)


def _examples() -> int:
    return int(os.environ.get("PLAYBACK_HOOKS_FUZZ_EXAMPLES", "60"))


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
