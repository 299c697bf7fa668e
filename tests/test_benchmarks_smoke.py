"""The benchmarks, once, in their tiny configuration: they run and measure the right thing.

Only correctness is asserted here (counts, exactness, state, the shape of the report);
never a wall-clock figure or a ratio.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from benchmarks import allin, latency, memory, overhead, run, scale
from benchmarks.common import CHAIN_KINDS


class TestBenchmarksQuick:
    """``python -m benchmarks.run --quick`` measures real sessions and reports every target."""

    async def test_quick_configuration(self, tmp_path: Path) -> None:
        results = await run.measure(quick=True)

        lat = results["latency"]
        assert lat["all_started"]
        # started_at is the sink's own created_at, for every message
        assert lat["exact_started_at"] == lat["started_events"] > 0
        assert lat["missed"]["sync"] == lat["missed"]["async"] == 0
        assert lat["missed"]["livekit_first"] == 0
        # livekit signals one message per speech; every other one is ours alone
        assert lat["first_messages"]["livekit"]["n"] == lat["speeches"]
        assert lat["later_messages"]["sync"]["n"] == lat["missed"]["livekit_later"] > 0
        assert lat["later_messages"]["async"]["n"] == lat["missed"]["livekit_later"]
        assert lat["speaking_events"] == lat["speeches"] + 1  # the warm-up speech too
        assert len(lat["rounds"]) == latency.QUICK.rounds

        ov = results["overhead"]
        assert ov["started_events"] == ov["expected_started_events"]
        for kind in CHAIN_KINDS:
            chain = ov[kind]
            q = overhead.QUICK
            assert chain["segments_each"] == q.rounds * q.sessions * q.segments
            assert len(chain["rounds"]) == overhead.QUICK.rounds
            assert set(chain["parts_ns"]) == set(overhead.PARTS)
            assert all(v["tracked"] > 0 for v in chain["parts_ns"].values())
        # livekit's forwarding reaches the output below the tracker's directly
        assert ov["tracker_calls_per_frame"] == dict.fromkeys(CHAIN_KINDS, 0.0)

        cpu = results["allin"]
        assert cpu["exactly_counted"]
        for kind in CHAIN_KINDS:
            assert len(cpu[kind]["rounds"]) == allin.QUICK.rounds
        assert cpu["audio_s"]["tracked"] > 0 and cpu["audio_s"]["untracked"] > 0
        # the sessions' CPU accounts miss none of the tracker's calls, which did run
        assert cpu["outside_calls"] == 0
        assert all(v > 0 for v in cpu["profiled_us_per_message"].values())

        sc = results["scale"]
        assert sc["exactly_once"]
        assert sc["all_played"]
        assert sc["per_speech_state_empty"]
        assert len(sc["pairs"]) == scale.QUICK.pairs
        assert sc["room_probe"]["all_played"]
        assert sc["memory"]["sessions"] == scale.QUICK.memory_sessions

        mem = results["memory"]
        assert mem["messages"] == memory.QUICK.messages
        assert mem["all_delivered"]
        assert mem["no_per_speech_state"]

        word = results["progress"]["per_word"]
        # nobody listens: no word followed, no event; a receiver: one event per word
        assert word["progress_events"]["untracked"] == 0
        assert word["progress_events"]["no receiver"] == 0
        assert word["progress_events"]["receiver"] == word["expected_progress_events"]
        assert not word["words_followed_without_receiver"]
        assert word["words_followed_with_receiver"]
        assert word["text_output_got_every_word"]
        assert set(results["progress"]["per_frame"]["rows"]) == {
            "untracked",
            "no receiver",
            "receiver",
        }

        results["machine"] = run.machine()
        results["targets"] = run.targets(results)
        assert [t["benchmark"] for t in results["targets"]] == (
            ["latency"] * 6
            + ["overhead"] * 3
            + ["allin"] * 3
            + ["scale"] * 2
            + ["memory"] * 2
            + ["progress"] * 5
        )
        for target in results["targets"]:
            assert set(target) >= {"name", "target", "measured", "unit", "spread", "met"}
            assert isinstance(target["met"], bool)
            if target["unit"] == "ratio":
                assert target["spread"]["min"] <= target["measured"] <= target["spread"]["max"]
                assert not math.isnan(target["measured"])
        section = run.report(results)
        readme = tmp_path / "README.md"
        readme.write_text("# Benchmarks\n\nintro\n")
        run.write_readme(section, readme)
        run.write_readme(section, readme)  # idempotent: replaces the previous results
        text = readme.read_text()
        assert text.startswith("# Benchmarks\n\nintro\n")
        assert text.count(run.README_MARKER) == 1
        assert all(f"### {b.TITLE}" in text for b in run.BENCHMARKS)
        json.dumps(results)
