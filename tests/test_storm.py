"""The storm, short: concurrent real sessions in RoomIO's chain, driven at random.

``tests/storm.py`` is the driver and says what is checked. ``make test`` runs a short storm
(six sessions, twelve seconds each, fixed seeds); ``make storm`` a long one (forty sessions
for a minute, new seeds each run), and ``make storm STORM_SEED=<seed>`` replays one session.
The checks themselves are tested first, on made-up sessions: each invariant, broken once,
must be reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, SimpleNamespace
from typing import Any, cast

import pytest

import playback_hooks as ph
from playback_hooks.testing import SinkSegment

from .storm import (
    SegmentAttempt,
    SessionDriver,
    SpeechRecord,
    StormConfig,
    Yielded,
    check_session,
    kept_by,
    kind_of,
    run_storm,
)

META: Mapping[str, Any] = MappingProxyType({})


@dataclass
class _Collector:
    delivered: list[ph.Event] = field(default_factory=list)

    @property
    def started(self) -> list[ph.MessagePlaybackStarted]:
        return [e for e in self.delivered if isinstance(e, ph.MessagePlaybackStarted)]

    @property
    def finished(self) -> list[ph.MessagePlaybackFinished]:
        return [e for e in self.delivered if isinstance(e, ph.MessagePlaybackFinished)]

    @property
    def progressed(self) -> list[ph.MessagePlaybackProgressed]:
        return [e for e in self.delivered if isinstance(e, ph.MessagePlaybackProgressed)]


class _Session:
    """A made-up closed session: two labelled says, each heard in full, in order."""

    def __init__(self) -> None:
        self.collector = _Collector()
        self.speeches: dict[str, SpeechRecord] = {}
        self.segments: list[SinkSegment] = []
        self.speech_of: list[str | None] = []
        self.interrupts: list[float] = []
        for n, sid in enumerate(("s1", "s2"), 1):
            handle = SimpleNamespace(id=sid, interrupted=False)
            self.speeches[sid] = SpeechRecord(
                cast(Any, handle), n, "say", True, None, 10.0 * n, label=f"say{n}"
            )
            start = 10.0 * n + 1
            self.segments.append(SinkSegment(start, 0.5, 0.5, False, start + 0.5))
            self.speech_of.append(sid)
            self.collector.delivered += [
                ph.MessagePlaybackStarted(f"say{n}", sid, 0, "say", META, start),
                self.progress(sid, n, 0.2),
                self.finished(sid, n, "full", 0.5, start),
            ]

    @staticmethod
    def progress(sid: str, n: int, position: float) -> ph.MessagePlaybackProgressed:
        return ph.MessagePlaybackProgressed(
            f"say{n}", sid, 0, "say", META, position, None, False, 10.0 * n + 1.2
        )

    @staticmethod
    def finished(
        sid: str, n: int, played: ph.Played, position: float, start: float | None
    ) -> ph.MessagePlaybackFinished:
        return ph.MessagePlaybackFinished(
            f"say{n}",
            sid,
            0,
            "say",
            META,
            played,
            played == "partial",
            position,
            None,
            start,
            10.0 * n + 2,
        )

    def check(self) -> list[str]:
        events = self.collector
        driver = SimpleNamespace(
            collector=events,
            speeches=self.speeches,
            sink=SimpleNamespace(
                segments=self.segments,
                speech_of=self.speech_of,
                attempts=[SegmentAttempt(sid, "accepted") for sid in self.speech_of],
            ),
            agent=SimpleNamespace(yielded={sid: Yielded() for sid in self.speeches}),
            handlers=SimpleNamespace(
                sync_started=events.started,
                method_started=events.started,
                object_started=events.started,
                partial_finished=events.finished,
                async_finished=events.finished,
                async_object_finished=events.finished,
                greeting_finished=[],
                progressed=events.progressed,
            ),
            greeting_id="greeting",
            progress=True,
            waits=[],
            interrupts=self.interrupts,
            trackers=[],
        )
        return check_session(cast(SessionDriver, driver))


def _swap(events: list[ph.Event], i: int, j: int) -> None:
    events[i], events[j] = events[j], events[i]


class TestStormChecks:
    """Each invariant the storm checks, broken on purpose, is reported as a violation."""

    def test_a_truthful_session_passes(self) -> None:
        assert _Session().check() == []

    def test_event_of_a_speech_created_detached(self) -> None:
        session = _Session()
        session.speeches["s2"].reported = False
        assert "event for an unreported speech" in {kind_of(v) for v in session.check()}

    def test_heard_but_reported_skipped(self) -> None:
        session = _Session()
        delivered = session.collector.delivered
        delivered[:3] = [session.finished("s1", 1, "skipped", 0.0, None)]
        assert "heard, reported otherwise" in {kind_of(v) for v in session.check()}

    def test_full_though_the_sink_was_cut(self) -> None:
        session = _Session()
        session.segments[0].interrupted = True
        session.segments[0].position = 0.2
        assert "played differs from the sink" in {kind_of(v) for v in session.check()}

    def test_next_message_started_before_this_one_finished(self) -> None:
        session = _Session()
        _swap(session.collector.delivered, 2, 3)  # finished(s1) after started(s2)
        kinds = {kind_of(v) for v in session.check()}
        assert "order: started while another plays" in kinds

    def test_speeches_interleaved(self) -> None:
        session = _Session()
        session.collector.delivered.append(session.finished("s1", 1, "full", 0.5, 11.0))
        kinds = {kind_of(v) for v in session.check()}
        assert {"order across speeches", "once per message"} <= kinds

    def test_progress_after_finished_and_backwards(self) -> None:
        session = _Session()
        delivered = session.collector.delivered
        delivered.insert(2, session.progress("s1", 1, 0.1))  # backwards
        delivered.insert(4, session.progress("s1", 1, 0.3))  # after its finished event
        messages = [v for v in session.check() if kind_of(v) == "progress"]
        assert any("went back" in m for m in messages)
        assert any("outside its playback" in m for m in messages)

    def test_skipped_marked_interrupted_in_a_speech_not_interrupted(self) -> None:
        session = _Session()
        session.segments[1:] = []
        session.speech_of[1:] = []
        session.collector.delivered[3:] = [session.finished("s2", 2, "skipped", 0.0, None)]
        assert session.check() == []
        finished = session.collector.delivered[3]
        assert isinstance(finished, ph.MessagePlaybackFinished)
        session.collector.delivered[3] = ph.MessagePlaybackFinished(
            **{**_fields(finished), "interrupted": True}
        )
        kinds = {kind_of(v) for v in session.check()}
        assert "skipped, interrupted differs from its speech" in kinds

    def test_an_object_kept_by_module_state(self, monkeypatch: pytest.MonkeyPatch) -> None:
        class Session:
            pass

        session = Session()
        assert kept_by("playback_hooks", session) is None
        monkeypatch.setattr(ph, "_storm_probe", {"key": [session]}, raising=False)
        path = kept_by("playback_hooks", session)
        assert path is not None and path.startswith("playback_hooks._storm_probe")


def _fields(event: ph.MessagePlaybackFinished) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}


class TestStorm:
    """Under random replies, says, interruptions, attach and detach (also in the same
    iteration as a speech's creation), a refusing and stalling sink and handlers of every
    kind, every message is reported once and as the sink played it, and nothing is left."""

    async def test_storm(self) -> None:
        config = StormConfig.from_env(sessions=6, seconds=12.0, base=1)
        result = await run_storm(config)
        print(result.summary())  # seen with `pytest -s` (make storm)
        # a replayed seed (make storm STORM_SEED=...) prints its whole action log
        assert result.ok, result.report(lines=10**6 if config.seed is not None else 120)
