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

# The sample story (sample_data/README.md), from nothing: a fresh database, every file ingested,
# then what an operations person reads first. The PAN key here is for the demo only.
demo: export RECON_DB = $(DEMO_DB)
demo: export RECON_CONFIG = sample_data/recon.toml
demo: export RECON_PAN_KEY = demo-only-not-a-secret
# The story is read on the Monday morning after its last run.
demo: export RECON_NOW = 2026-11-16T08:00:00+00:00
demo: setup
	@rm -f $(DEMO_DB) $(DEMO_DB).wal
	@$(BIN)/recon init
	@echo "== ingest: expected manifests, control totals, run logs =="
	@$(BIN)/recon ingest --source payments-loader --kind expected sample_data/payments-loader/expected/*.csv 2>&1 | tail -n 1
	@$(BIN)/recon ingest --source payments-loader --kind totals sample_data/payments-loader/control_totals.csv
	@$(BIN)/recon ingest --source payments-loader sample_data/payments-loader/runs/* || [ $$? -eq 3 ]
	@echo
	@echo "== per run: rows loaded, failed, quarantined (recon runs) =="
	@$(BIN)/recon runs
	@echo
	@echo "== quarantined rows: fix at the source, then re-ingest (recon quarantine) =="
	@$(BIN)/recon quarantine
	@echo
	@echo "== reconciliation per business day: expected vs processed (recon reconcile) =="
	@$(BIN)/recon reconcile || [ $$? -eq 3 ]
	@echo
	@echo "== failed transactions of the last day (recon failures) =="
	@$(BIN)/recon failures --date last
	@echo
	@echo "Database: $(DEMO_DB). Try, with RECON_DB=$(DEMO_DB) RECON_CONFIG=sample_data/recon.toml:"
	@echo "  .venv/bin/recon failures --date 2026-11-11 --category all"
	@echo "  .venv/bin/recon breaks --date 2026-11-11"
	@echo "  .venv/bin/recon export --since 2026-11-09 --until 2026-11-13 --format xlsx -o week.xlsx"

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check reconcile tests sample_data
	$(BIN)/ruff format --check reconcile tests sample_data
	$(BIN)/mypy reconcile

# Benchmarks print their figures and exit 1 when a target is missed; both always run.
bench: setup
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m tests.bench.bench_ingest; a=$$?; \
	$(BIN)/python -m tests.bench.bench_reconcile; b=$$?; \
	$(BIN)/python -m tests.bench.bench_watch; c=$$?; \
	exit $$(( a || b || c ))

clean:
	rm -rf $(VENV) $(DEMO_DB) $(DEMO_DB).wal .pytest_cache .mypy_cache .ruff_cache
