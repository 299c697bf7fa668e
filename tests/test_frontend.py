"""The frontend: docs/recipes/progress-ui.md, as printed, over the in-process ``RoomPair``.

The agent's side is a real session over the chain RoomIO builds (livekit's
``TranscriptSynchronizer`` over RoomIO's participant audio output, which publishes its track
on the pair; the synchronizer's text goes to a ``RecordingTextOutput`` as in
tests/chains.py). The recipe's code block runs with ``ctx.room`` the agent's side of the
pair and ``session`` that session, before ``session.start()``. The pair's other side stands
for the app's frontend: it listens to ``data_received`` and reads each packet as the
recipe documents it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livekit import rtc
from livekit.agents import AgentSession
from livekit.agents.voice.room_io._output import _ParticipantAudioOutput
from livekit.agents.voice.transcription import TranscriptSynchronizer

import playback_hooks as ph
from playback_hooks.testing import EventCollector, RoomPair, ScriptedLLM, SineTTS

from .agents import Item, ScriptAgent, boundary
from .chains import ROOM_NUM_CHANNELS, ROOM_SAMPLE_RATE, RecordingTextOutput
from .test_chains import audio_seconds

RECIPE = Path(__file__).resolve().parents[1] / "docs" / "recipes" / "progress-ui.md"
TOPIC = "agent-playback"
CODE_WIDTH = 76  # the site's code column (tests/test_docs.py)
TIMEOUT = 20.0

M1 = "Hi there, nice to meet you."
M2 = "Now the second message runs on for a while longer."
M3 = "Bye now, talk soon."
SCRIPT: list[Item] = [boundary("m1"), M1, boundary("m2"), M2, boundary("m3"), M3]


def recipe_code() -> str:
    """The recipe's code block, as printed."""
    blocks = re.findall(r"^```python\n(.*?)^```$", RECIPE.read_text("utf-8"), re.S | re.M)
    assert len(blocks) == 1
    return str(blocks[0])


# -- the frontend --------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One packet the frontend received on the recipe's topic."""

    update: dict[str, Any]
    reliable: bool
    sender: str


@dataclass
class Frontend:
    """The second participant: what it received on the recipe's topic, in order."""

    received: list[Received] = field(default_factory=list)
    other_topics: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_data(self, packet: rtc.DataPacket) -> None:
        if packet.topic != TOPIC:
            self.other_topics.append(packet.topic or "")
            return
        reliable = packet.kind == rtc.DataPacketKind.KIND_RELIABLE
        sender = packet.participant.identity if packet.participant is not None else ""
        self.received.append(Received(json.loads(packet.data), reliable, sender))
        self.changed.set()

    def of(self, message_id: str) -> list[Received]:
        """The packets about one message, in order."""
        return [r for r in self.received if r.update["message"] == message_id]

    async def wait_for(self, ready: Callable[[], bool]) -> None:
        async def _wait() -> None:
            while not ready():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(_wait(), TIMEOUT)


# -- one run ---------------------------------------------------------------------------------


@dataclass
class Run:
    """A real session whose recipe publishes to the frontend over the pair."""

    pair: RoomPair
    frontend: Frontend
    session: AgentSession[Any]
    text: RecordingTextOutput
    recipe: dict[str, Any]
    events: EventCollector

    @property
    def tracker(self) -> ph.PlaybackTracker:
        tracker = self.recipe["tracker"]
        assert isinstance(tracker, ph.PlaybackTracker)
        return tracker

    async def frontend_has_final(self, count: int) -> None:
        """Wait until the frontend received ``count`` final updates."""
        await self.frontend.wait_for(lambda: len(finals(self.frontend)) >= count)


Scenario = Callable[[Run], Awaitable[None]]


async def play(script: list[Item], scenario: Scenario) -> Run:
    """Run ``scenario`` with the recipe's code on a fresh pair and session; close them all."""
    pair = RoomPair(avatar_identity="frontend")
    await pair.connect()
    frontend = Frontend()
    pair.avatar_room.on("data_received", frontend.on_data)
    agent_room = pair.agent_room.as_rtc_room()

    session: AgentSession[Any] = AgentSession(llm=ScriptedLLM([]), tts=SineTTS())
    # the chain RoomIO builds in session.start(room=...), its audio track on the pair
    audio = _ParticipantAudioOutput(
        agent_room,
        sample_rate=ROOM_SAMPLE_RATE,
        num_channels=ROOM_NUM_CHANNELS,
        track_publish_options=rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE),
    )
    await audio.start()
    text = RecordingTextOutput()
    synchronizer = TranscriptSynchronizer(next_in_chain_audio=audio, next_in_chain_text=text)
    session.output.audio = synchronizer.audio_output
    session.output.transcription = synchronizer.text_output

    recipe: dict[str, Any] = {
        "__name__": "progress_ui",
        "ctx": types.SimpleNamespace(room=agent_room),
        "session": session,
    }
    exec(compile(recipe_code(), str(RECIPE), "exec"), recipe)
    events = EventCollector(session, progress=True)
    run = Run(pair, frontend, session, text, recipe, events)
    try:
        await session.start(ScriptAgent(script), record=False)
        await asyncio.wait_for(scenario(run), 60)
    finally:
        await session.aclose()
        await run.tracker.aclose()
        events.close()
        for name in ("started", "progressed", "finished"):
            ph.disconnect(recipe[name])
        publisher = recipe["publisher"]
        publisher.cancel()
        await asyncio.gather(publisher, return_exceptions=True)
        await synchronizer.aclose()
        await audio.aclose()
        await pair.aclose()
    return run


def finals(frontend: Frontend) -> list[Received]:
    """The final updates the frontend received."""
    return [r for r in frontend.received if r.update["kind"] == "finished"]


async def plays_in_full(run: Run) -> None:
    """One reply of three messages, heard to the end."""
    await run.session.generate_reply()
    await run.frontend_has_final(3)


async def cut_in_m2(run: Run) -> None:
    """The user cuts in once the third word of the second message is on screen."""
    handle = run.session.generate_reply()
    await run.tracker.wait_for("m2", "started", timeout=TIMEOUT)
    await run.text.wait_for_words(1, 3, timeout=TIMEOUT)
    await run.session.interrupt()
    await handle
    await run.frontend_has_final(3)


# -- what the frontend must see ---------------------------------------------------------------

KEYS = {"kind", "message", "state", "position", "heard_text"}


def expected(events: list[ph.Event]) -> list[tuple[dict[str, Any], bool]]:
    """What the recipe promises for each event the session's handlers got: the update, and
    whether it goes reliably (started and finished) or lossy (progress)."""
    out: list[tuple[dict[str, Any], bool]] = []
    for ev in events:
        if isinstance(ev, ph.MessagePlaybackStarted):
            update = {"kind": "started", "state": "playing", "position": 0.0, "heard_text": None}
        elif isinstance(ev, ph.MessagePlaybackProgressed):
            update = {
                "kind": "progress",
                "state": "paused" if ev.paused else "playing",
                "position": round(ev.position, 3),
                "heard_text": ev.heard_text,
            }
        else:
            update = {
                "kind": "finished",
                "state": ev.played,
                "position": round(ev.playback_position, 3),
                "heard_text": ev.transcript,
            }
        out.append(({"message": ev.message_id, **update}, update["kind"] != "progress"))
    return out


def check_message(updates: list[Received], finished: ph.MessagePlaybackFinished) -> None:
    """One message's updates: the documented shape and order, reliable start and end, lossy
    progress, positions and heard_text never backwards, the final state the finished one's."""
    for r in updates:
        u = r.update
        assert set(u) == KEYS, u
        assert u["kind"] in ("started", "progress", "finished"), u
        assert isinstance(u["message"], str) and isinstance(u["position"], float), u
        assert u["heard_text"] is None or isinstance(u["heard_text"], str), u
        assert r.sender == "agent"
    *head, last = updates
    kinds = [r.update["kind"] for r in updates]
    if finished.played == "skipped":
        assert kinds == ["finished"]
    else:
        assert kinds == ["started", *["progress"] * (len(kinds) - 2), "finished"]
        start, *progress = head
        assert start.update["state"] == "playing" and start.update["position"] == 0.0
        assert start.update["heard_text"] is None
        assert start.reliable
        assert progress, "no progress update"
        assert all(not r.reliable for r in progress)
        assert all(r.update["state"] in ("playing", "paused") for r in progress)
        positions = [r.update["position"] for r in progress]
        assert positions == sorted(positions) and positions[0] >= 0
        # livekit's transcription synchronizer is in the chain: words are shown
        shown = [r.update["heard_text"] for r in progress]
        assert all(isinstance(text, str) for text in shown), shown
        for before, after in itertools.pairwise(shown):
            assert after.startswith(before), (before, after)
    assert last.reliable
    assert last.update["state"] == finished.played
    assert last.update["position"] == round(finished.playback_position, 3)
    assert last.update["heard_text"] == finished.transcript


class TestRecipeAsPrinted:
    """docs/recipes/progress-ui.md, run as printed, publishes every update to the frontend
    in order, in the documented shape, starts and ends reliably and progress lossy."""

    def test_code_fits_the_page(self) -> None:
        assert [line for line in recipe_code().splitlines() if len(line) > CODE_WIDTH] == []

    async def test_three_messages_heard_in_full(self) -> None:
        run = await play(SCRIPT, plays_in_full)

        received = run.frontend.received
        assert [(r.update, r.reliable) for r in received] == expected(run.events.delivered)
        assert run.frontend.other_topics == []
        # one message after the other: all of m1's updates, then m2's, then m3's
        order = [r.update["message"] for r in received]
        assert order == sorted(order)
        finished = {f.message_id: f for f in run.events.finished}
        assert [f.played for f in finished.values()] == ["full"] * 3
        for message_id, text in (("m1", M1), ("m2", M2), ("m3", M3)):
            updates = run.frontend.of(message_id)
            check_message(updates, finished[message_id])
            # the whole text at the end, whatever the last progress update showed
            assert updates[-1].update["heard_text"] == text
            assert text.startswith(updates[-2].update["heard_text"])
        # what the pair carried: one packet per update, each with the flag it was sent with
        packets = run.pair.packets(TOPIC)
        assert [(p.sender, p.receiver) for p in packets] == [("agent", "frontend")] * len(received)
        assert [p.reliable for p in packets] == [r.reliable for r in received]
        assert [json.loads(p.payload) for p in packets] == [r.update for r in received]

    async def test_cut_off_in_the_second_message(self) -> None:
        run = await play(SCRIPT, cut_in_m2)

        received = run.frontend.received
        assert [(r.update, r.reliable) for r in received] == expected(run.events.delivered)
        finished = {f.message_id: f for f in run.events.finished}
        assert [(f.played, f.interrupted) for f in finished.values()] == [
            ("full", False),
            ("partial", True),
            ("skipped", True),
        ]
        for message_id in ("m1", "m2", "m3"):
            check_message(run.frontend.of(message_id), finished[message_id])
        # m2: the screen showed up to one word more than livekit counts as heard
        *_, last_progress, final = run.frontend.of("m2")
        assert final.update["state"] == "partial"
        heard, shown = final.update["heard_text"], last_progress.update["heard_text"]
        assert heard and M2.startswith(shown) and shown.startswith(heard)
        assert len(shown.split()) - len(heard.split()) in (0, 1)
        assert 0 < final.update["position"] < audio_seconds(M2)
        # m3 was never heard: its final update only
        (m3,) = run.frontend.of("m3")
        assert m3.reliable and m3.update == {
            "kind": "finished",
            "message": "m3",
            "state": "skipped",
            "position": 0.0,
            "heard_text": None,
        }
