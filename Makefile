# Everything sets itself up from nothing: the first target that needs .venv creates it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest demo bench fuzz storm docs compat compat-ci clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: lint typecheck pytest docs

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

# The benchmarks: prints the table, writes benchmarks/results.json and benchmarks/README.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# The offline demo: a real AgentSession with simulated models and sink; writes demo-output/.
demo: $(STAMP)
	$(BIN)/python examples/demo.py --out demo-output

# The documentation site (site/); warnings are errors.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Model-based fuzzing of the tracker with many more examples than `make test` runs.
FUZZ_EXAMPLES ?= 6000
fuzz: $(STAMP)
	@PLAYBACK_HOOKS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) PLAYBACK_HOOKS_FUZZ_REPORT=.fuzz-report \
		$(BIN)/pytest -q tests/test_model.py; status=$$?; \
		cat .fuzz-report; rm -f .fuzz-report; exit $$status

# The storm (tests/storm.py): many concurrent real sessions in RoomIO's chain driven at random,
# every invariant checked at the end; `make test` runs a short one. New seeds each run (session
# i gets STORM_BASE + i); a failing session prints its seed: replay it alone with
# `make storm STORM_SEED=<seed>`.
STORM_SESSIONS ?= 40
STORM_SECONDS ?= 60
STORM_BASE ?= $(shell date +%s)
STORM_SEED ?=
storm: $(STAMP)
	STORM_SESSIONS=$(STORM_SESSIONS) STORM_SECONDS=$(STORM_SECONDS) STORM_BASE=$(STORM_BASE) \
		STORM_SEED=$(STORM_SEED) $(BIN)/pytest -q -s -p no:cacheprovider tests/test_storm.py

# The test suite against every livekit-agents 1.8.x release (noxfile.py), one virtualenv
# each, on the newest Python installed; then the newest release on every other Python.
# Ends with one line per (python, livekit-agents) pair. NOX_ARGS passes options to nox.
NOX_ARGS ?=
compat: $(STAMP)
	$(BIN)/nox -t compat $(NOX_ARGS)

# What CI runs: the oldest and the newest release, on the newest Python installed.
compat-ci: $(STAMP)
	$(BIN)/nox -t compat-ci $(NOX_ARGS)

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache demo-output .nox

# PNGs of the API reference pages as a reader sees them, in screenshots/ (git-ignored):
# builds the site, serves it on 127.0.0.1, shoots with headless Chromium (Debian: chromium).
.PHONY: screenshots
screenshots: docs
	$(BIN)/python scripts/screenshots.py --site site --out screenshots
