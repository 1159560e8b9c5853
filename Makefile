# Every target works on a fresh clone with nothing but Python 3.11+ installed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_DB := demo.duckdb

.PHONY: setup bytecode demo demo-watchdog demo-report test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Each recon command starts ~40 ms faster with the package's bytecode written, as pip writes it
# for installed packages; an editable install does not, and PYTHONDONTWRITEBYTECODE (set on some
# machines) stops Python from doing it. Up-to-date files are skipped; a stale one is ignored.
bytecode: setup
	@$(BIN)/python -m compileall -q reconcile

# The sample story (sample_data/README.md), from nothing: a fresh database, every file ingested,
# then what an operations person reads first. The PAN key here is for the demo only.
demo: export RECON_DB = $(DEMO_DB)
demo: export RECON_CONFIG = sample_data/recon.toml
demo: export RECON_PAN_KEY = demo-only-not-a-secret
demo: export RECON_AUDIT_KEY = demo-only-not-a-secret-either
# The story is read on the Monday morning after its last run.
demo: export RECON_NOW = 2026-11-16T08:00:00+00:00
demo: bytecode
	@rm -rf $(DEMO_DB) $(DEMO_DB).wal $(DEMO_DB).spool $(DEMO_DB).anchor $(DEMO_DB).pankey
	@$(BIN)/recon init
	@echo "== ingest: expected manifests, control totals, run logs =="
	@$(BIN)/recon ingest --source payments-loader --kind expected sample_data/payments-loader/expected/*.csv 2>&1 \
		| awk 'NR == 1 { print } { last = $$0 } END { if (NR > 2) print "  ... " NR - 2 " more manifest(s) ..."; if (NR > 1) print last }'
	@$(BIN)/recon ingest --source payments-loader --kind totals sample_data/payments-loader/control_totals.csv
	@$(BIN)/recon ingest --source payments-loader sample_data/payments-loader/runs/* || [ $$? -eq 3 ]
	@echo
	@echo "== per run: rows loaded, failed, quarantined (recon runs) =="
	@$(BIN)/recon runs
	@echo
	@echo "== quarantined rows: fix at the source, then load the fix with recon ingest --replace (recon quarantine) =="
	@$(BIN)/recon quarantine
	@echo
	@echo "== reconciliation per business day: expected vs processed (recon reconcile) =="
	@$(BIN)/recon reconcile || [ $$? -eq 3 ]
	@echo
	@echo "== failed transactions of the last day (recon failures) =="
	@$(BIN)/recon failures --date last
	@echo
	@echo "== the failure rate tripled: which change did it? (recon bisect) =="
	@$(BIN)/recon bisect --source payments-loader 2>&1 | tail -n 9 || true
	@echo
	@$(MAKE) --no-print-directory demo-watchdog
	@echo
	@$(MAKE) --no-print-directory demo-report
	@echo
	@echo "== the audit trail: who did what (recon audit log), intact (recon audit verify) =="
	@$(BIN)/recon audit log --limit 6 | cut -c 1-150
	@$(BIN)/recon audit verify
	@echo
	@echo "Database: $(DEMO_DB). Try, after"
	@echo "  export RECON_DB=$(DEMO_DB) RECON_CONFIG=sample_data/recon.toml RECON_AUDIT_KEY=$(RECON_AUDIT_KEY)"
	@echo "  .venv/bin/recon failures --date 2026-11-11 --category all"
	@echo "  .venv/bin/recon breaks --date 2026-11-11"
	@echo "  .venv/bin/recon export --since 2026-11-09 --until 2026-11-13 --format xlsx -o week.xlsx"

# The story's end: the daily "Failed Transactions" report is watched (weekdays 07:00 London,
# grace 1h). Reports arrive for two weeks, then stop; the watchdog's tick on Monday 9 November
# finds the slot missed and delivers the alert to an inbox this demo runs on loopback.
REPORT_DAYS := 2026-10-26 2026-10-27 2026-10-28 2026-10-29 2026-10-30 \
               2026-11-02 2026-11-03 2026-11-04 2026-11-05 2026-11-06
demo-watchdog: export RECON_DB = $(DEMO_DB)
demo-watchdog: export RECON_CONFIG = sample_data/recon.toml
demo-watchdog: export RECON_AUDIT_KEY = demo-only-not-a-secret-either
demo-watchdog: setup
	@echo "== the daily report, watched (recon monitor, recon ping, recon watch) =="
	@rm -f demo-inbox.port; $(BIN)/python sample_data/alert_receiver.py demo-inbox.port & \
	inbox=$$!; trap 'kill $$inbox 2>/dev/null' EXIT; \
	while [ ! -s demo-inbox.port ]; do sleep 0.1; done; \
	export RECON_NOTIFY='{"targets": {"operations": {"url": "json://127.0.0.1:'$$(cat demo-inbox.port)'/alerts"}}}'; \
	$(BIN)/recon --now 2026-10-25T12:00:00Z monitor add daily-report --cron "0 7 * * 1-5" \
	    --tz Europe/London --grace 1h --early 2h --tag operations \
	    --source payments-loader --hears ping; \
	for day in $(REPORT_DAYS); do \
	    $(BIN)/recon --now $${day}T06:40:00Z ping daily-report -m "failed-transactions-$$day.csv" 2>/dev/null; \
	    $(BIN)/recon --now $${day}T07:05:00Z watch --once >/dev/null 2>&1; \
	done; \
	echo "reports arrived 26 Oct to 6 Nov; now it is Monday 9 November, 08:01 in London:"; \
	$(BIN)/recon --now 2026-11-09T08:01:00Z watch --once || true; \
	sleep 0.5; echo; \
	$(BIN)/recon --now 2026-11-16T08:01:00Z watch --once >/dev/null 2>&1; \
	echo "the slot ledger a week later (recon monitor show daily-report):"; \
	$(BIN)/recon --now 2026-11-16T08:01:00Z monitor show daily-report | sed -n '/recent slots/,$$p' | head -n 11 || true; \
	echo; echo "The alert's own command lists what failed while the report was silent."

# The report recon sends itself: the last day's Failed Transactions report, built from the store
# and delivered through apprise to a mailbox this demo runs on loopback, which saves it as an
# .eml file any mail client opens. The report watches itself: a monitor hears each delivery.
demo-report: export RECON_DB = $(DEMO_DB)
demo-report: export RECON_CONFIG = sample_data/recon.toml
demo-report: export RECON_AUDIT_KEY = demo-only-not-a-secret-either
demo-report: export RECON_NOW = 2026-11-16T08:00:00+00:00
demo-report: setup
	@echo "== the daily report, sent and watched by recon itself (recon report schedule, recon report send) =="
	@rm -rf demo-mail demo-mail.port; $(BIN)/python sample_data/mail_receiver.py demo-mail.port demo-mail & \
	mail=$$!; trap 'kill $$mail 2>/dev/null' EXIT; \
	while [ ! -s demo-mail.port ]; do sleep 0.1; done; \
	export RECON_NOTIFY='{"targets": {"operations-mail": {"url": "mailto://127.0.0.1:'$$(cat demo-mail.port)'?from=recon@example.com&to=operations@example.com&mode=insecure", "tags": ["operations"]}}}'; \
	$(BIN)/recon report schedule --cron "30 7 * * 1-5" --tz Europe/London --grace 1h --tag operations \
	    | sed 's/^/  /'; \
	$(BIN)/recon report send --date last --tag operations || true; \
	sleep 0.5; echo; \
	saved=$$(ls demo-mail/*.eml 2>/dev/null | head -n 1); \
	if [ -n "$$saved" ]; then echo "Open the report in a mail client: $$saved"; \
	else echo "no report arrived: see recon alerts"; fi

# One worker per core (pytest-xdist), each taking whole files: a module's store built once
# (the canary sweep, the sample story, the audit trail) is built on one worker, not on each.
TEST_WORKERS ?= auto
test: bytecode
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: setup
	$(BIN)/ruff check reconcile tests sample_data
	$(BIN)/ruff format --check reconcile tests sample_data
	$(BIN)/mypy reconcile
	$(BIN)/lint-imports

# Benchmarks print their figures and exit 1 when a target is missed; all always run.
bench: bytecode
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m tests.bench.bench_ingest; a=$$?; \
	$(BIN)/python -m tests.bench.bench_reconcile; b=$$?; \
	$(BIN)/python -m tests.bench.bench_watch; c=$$?; \
	$(BIN)/python -m tests.bench.bench_ping; d=$$?; \
	$(BIN)/python -m tests.bench.bench_audit; e=$$?; \
	$(BIN)/python -m tests.bench.bench_redact; f=$$?; \
	$(BIN)/python -m tests.bench.bench_export; g=$$?; \
	$(BIN)/python -m tests.bench.bench_small; h=$$?; \
	$(BIN)/python -m tests.bench.bench_startup; i=$$?; \
	$(BIN)/python -m tests.bench.bench_width; j=$$?; \
	$(BIN)/python -m tests.bench.bench_report; k=$$?; \
	exit $$(( a || b || c || d || e || f || g || h || i || j || k ))

clean:
	rm -rf $(VENV) $(DEMO_DB) $(DEMO_DB).wal $(DEMO_DB).spool $(DEMO_DB).anchor $(DEMO_DB).pankey demo-inbox.port demo-mail demo-mail.port .pytest_cache .mypy_cache .ruff_cache
