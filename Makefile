# Everything sets itself up from nothing: the first target that needs .venv creates it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest demo bench fuzz docs clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

# The benchmarks: prints the table, writes benchmarks/results.json and benchmarks/README.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

demo: $(STAMP)
	@echo "The offline demo is coming soon (see CHANGELOG.md)."

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache demo-output
