# Every target works on a fresh clone with nothing but Python 3.11+ installed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_DB := demo.duckdb

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: setup
	@RECON=$(BIN)/recon DB=$(DEMO_DB) sh jobs/demo.sh

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check reconcile tests sample_data
	$(BIN)/ruff format --check reconcile tests sample_data
	$(BIN)/mypy reconcile

bench: setup
	$(BIN)/python -m tests.bench.bench_ingest

clean:
	rm -rf $(VENV) $(DEMO_DB) $(DEMO_DB).wal .pytest_cache .mypy_cache .ruff_cache
