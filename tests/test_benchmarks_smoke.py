"""The benchmarks, once, in their tiny configuration: they run and measure the right thing.

Only correctness is asserted here (counts, exactness, state); never a wall-clock figure.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import run


class TestBenchmarksQuick:
    """``python -m benchmarks.run --quick`` measures real sessions and reports every target."""

    async def test_quick_configuration(self, tmp_path: Path) -> None:
        results = await run.measure(run.QUICK)

        timing = results["timing"]
        rows = {r["method"].split(":")[0]: r for r in timing["rows"]}
        assert timing["responses"] >= 3 * run.QUICK.speeches
        # started_at is the sink's own created_at, for every response
        assert timing["exact_started_at"] == timing["responses"]
        assert rows["playback_hooks started_at"]["missed"] == 0
        assert rows["playback_hooks started_at"]["max_ms"] == 0
        assert rows["sync @on_message_played entry"]["missed"] == 0
        assert rows["async @on_message_played start"]["missed"] == 0
        # workaround 1 can only report one response per speech
        assert rows["workaround 1"]["n"] <= timing["speeches"]
        assert rows["workaround 1"]["missed"] >= timing["responses"] - timing["speeches"]

        for chain in (results["overhead"]["bare_sink"], results["overhead"]["wrapped_sink"]):
            assert chain["sink_frames_equal"]
            assert chain["started_events"] == chain["expected_started_events"]

        progress = results["progress"]
        word = progress["per_word"]
        # nobody listens: no word followed, no event; a receiver: one event per word
        assert word["progress_events"]["untracked"] == 0
        assert word["progress_events"]["no receiver"] == 0
        assert word["progress_events"]["receiver"] == word["expected_progress_events"]
        assert not word["words_followed_without_receiver"]
        assert word["words_followed_with_receiver"]
        assert word["text_output_got_every_word"]
        assert set(progress["per_frame"]["rows"]) == {"untracked", "no receiver", "receiver"}

        assert [(r["kind"], r["other_handlers"]) for r in results["dispatch"]["rows"]] == [
            (kind, n) for kind in ("sync", "async") for n in (0, 1, 10)
        ]
        assert all(r["n"] == run.QUICK.dispatch_samples for r in results["dispatch"]["rows"])

        scale = results["scale"]
        assert scale["exactly_once"]
        assert scale["per_speech_state_empty"]
        assert all(r["all_segments_played"] for r in scale["rounds"])
        long = scale["long_session"]
        assert long["messages"] == run.QUICK.long_messages
        assert long["all_delivered"]
        assert long["no_per_speech_state"]

        results["machine"] = run.machine()
        results["targets"] = run.targets(results)
        assert len(results["targets"]) == 18
        for target in results["targets"]:
            assert set(target) >= {"name", "target", "measured", "met"}
            assert isinstance(target["met"], bool)
        section = run.report(results)
        readme = tmp_path / "README.md"
        readme.write_text("# Benchmarks\n\nintro\n")
        run.write_readme(section, readme)
        run.write_readme(section, readme)  # idempotent: replaces the previous results
        text = readme.read_text()
        assert text.startswith("# Benchmarks\n\nintro\n")
        assert text.count(run.README_MARKER) == 1
        json.dumps(results)
