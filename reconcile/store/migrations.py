"""Ordered, named schema steps. Each runs once and is recorded in `schema_migrations` (the steps a
store lacks run together, in one transaction); append new steps at the end and never edit a step
that has shipped (steps from 014 on are in `later_steps`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from reconcile.store import later_steps
from reconcile.store.db import Connection, transaction

INGEST_SCHEMA = """
CREATE SEQUENCE file_id_seq START 1;

-- One row per file ingested; (source, sha256) makes re-ingesting the same bytes a no-op.
CREATE TABLE ingested_files (
    file_id          BIGINT PRIMARY KEY,
    source           VARCHAR NOT NULL,
    kind             VARCHAR NOT NULL,
    path             VARCHAR NOT NULL,
    sha256           VARCHAR NOT NULL,
    size_bytes       BIGINT NOT NULL,
    format           VARCHAR NOT NULL,
    rows_read        BIGINT NOT NULL,
    rows_loaded      BIGINT NOT NULL,
    rows_quarantined BIGINT NOT NULL,
    run_ids          VARCHAR[] NOT NULL,
    ingested_at      TIMESTAMPTZ NOT NULL,
    ingested_by      VARCHAR NOT NULL,
    UNIQUE (source, sha256)
);

-- Processed run logs: one row per attempted transaction, masked. Repeats are data.
CREATE TABLE transactions (
    source        VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL,
    txn_id        VARCHAR NOT NULL,
    amount        DECIMAL(18, 4) NOT NULL,
    currency      VARCHAR,
    status        VARCHAR NOT NULL,
    outcome       VARCHAR NOT NULL,      -- 'success' | 'failure'
    processed_at  TIMESTAMPTZ,
    business_date DATE,
    error_code    VARCHAR,
    error_message VARCHAR,
    card_hmac     VARCHAR,               -- HMAC-SHA-256 of the full PAN (key not in the DB)
    attributes    JSON,
    file_id       BIGINT NOT NULL,
    line          BIGINT NOT NULL
);

-- What the upstream system said it sent (manifests).
CREATE TABLE expected_transactions (
    source        VARCHAR NOT NULL,
    run_id        VARCHAR,
    txn_id        VARCHAR NOT NULL,
    amount        DECIMAL(18, 4) NOT NULL,
    currency      VARCHAR,
    business_date DATE,
    attributes    JSON,
    file_id       BIGINT NOT NULL,
    line          BIGINT NOT NULL
);

-- Control totals per run, from files or `recon expect`.
CREATE TABLE control_totals (
    source          VARCHAR NOT NULL,
    run_id          VARCHAR NOT NULL,
    expected_count  BIGINT NOT NULL,
    expected_amount DECIMAL(18, 4),
    file_id         BIGINT,
    line            BIGINT,
    recorded_at     TIMESTAMPTZ NOT NULL,
    recorded_by     VARCHAR NOT NULL
);

-- Rows that could not be loaded, with the reason and the masked raw row.
CREATE TABLE quarantine (
    file_id        BIGINT NOT NULL,
    source         VARCHAR NOT NULL,
    kind           VARCHAR NOT NULL,
    path           VARCHAR NOT NULL,
    run_id         VARCHAR,
    line           BIGINT NOT NULL,
    column_name    VARCHAR,
    reason         VARCHAR NOT NULL,
    raw            VARCHAR NOT NULL,
    quarantined_at TIMESTAMPTZ NOT NULL
);

-- One row per (source, run): a summary kept current by each ingest of that run.
CREATE TABLE runs (
    source            VARCHAR NOT NULL,
    run_id            VARCHAR NOT NULL,
    file_ids          BIGINT[] NOT NULL,
    rows_loaded       BIGINT NOT NULL,
    rows_succeeded    BIGINT NOT NULL,
    rows_failed       BIGINT NOT NULL,
    rows_quarantined  BIGINT NOT NULL,
    first_processed_at TIMESTAMPTZ,
    last_processed_at  TIMESTAMPTZ,
    first_ingested_at  TIMESTAMPTZ NOT NULL,
    last_ingested_at   TIMESTAMPTZ NOT NULL,
    ingested_by        VARCHAR NOT NULL,
    PRIMARY KEY (source, run_id)
);
"""

RECONCILE_SCHEMA = """
CREATE SEQUENCE reconciliation_id_seq START 1;

-- One row per `recon reconcile` (or command that reconciles first): when, by whom, what scope,
-- and the SHA-256 over the inputs of every run in scope.
CREATE TABLE reconciliations (
    reconciliation_id BIGINT PRIMARY KEY,
    reconciled_at     TIMESTAMPTZ NOT NULL,
    reconciled_by     VARCHAR NOT NULL,
    scope             JSON NOT NULL,
    product_version   VARCHAR NOT NULL,
    inputs_sha256     VARCHAR NOT NULL,
    runs_in_scope     BIGINT NOT NULL,
    runs_changed      BIGINT NOT NULL,
    days_changed      BIGINT NOT NULL
);

-- Versions of each run's result: a new version only when the run's inputs changed.
CREATE TABLE run_results (
    source            VARCHAR NOT NULL,
    run_id            VARCHAR NOT NULL,
    version           INTEGER NOT NULL,
    reconciliation_id BIGINT NOT NULL,
    reconciled_at     TIMESTAMPTZ NOT NULL,
    inputs_sha256     VARCHAR NOT NULL,
    business_date     DATE,
    status            VARCHAR NOT NULL,      -- balanced | breaks | pending
    has_manifest      BOOLEAN NOT NULL,
    has_totals        BOOLEAN NOT NULL,
    arrived           BOOLEAN NOT NULL,
    expected_count    BIGINT NOT NULL,
    processed_count   BIGINT NOT NULL,
    matched           BIGINT NOT NULL,
    failed            BIGINT NOT NULL,
    missing           BIGINT NOT NULL,
    duplicated        BIGINT NOT NULL,
    unexpected        BIGINT NOT NULL,
    amount_mismatch   BIGINT NOT NULL,
    pending_records   BIGINT NOT NULL,
    reprocessed       BIGINT NOT NULL,
    retried           BIGINT NOT NULL,
    expected_amount   DECIMAL(38, 4) NOT NULL,
    processed_amount  DECIMAL(38, 4) NOT NULL,
    expected_debits   DECIMAL(38, 4),
    expected_credits  DECIMAL(38, 4),
    processed_debits  DECIMAL(38, 4) NOT NULL,
    processed_credits DECIMAL(38, 4) NOT NULL,
    count_difference  BIGINT NOT NULL,
    amount_difference DECIMAL(38, 4) NOT NULL,
    PRIMARY KEY (source, run_id, version)
);

-- Versions of each business day's result, over the records of that day.
CREATE TABLE day_results (
    source            VARCHAR NOT NULL,
    business_date     DATE NOT NULL,
    version           INTEGER NOT NULL,
    reconciliation_id BIGINT NOT NULL,
    reconciled_at     TIMESTAMPTZ NOT NULL,
    inputs_sha256     VARCHAR NOT NULL,
    run_ids           VARCHAR[] NOT NULL,
    status            VARCHAR NOT NULL,
    expected_count    BIGINT NOT NULL,
    processed_count   BIGINT NOT NULL,
    matched           BIGINT NOT NULL,
    failed            BIGINT NOT NULL,
    missing           BIGINT NOT NULL,
    duplicated        BIGINT NOT NULL,
    unexpected        BIGINT NOT NULL,
    amount_mismatch   BIGINT NOT NULL,
    pending_records   BIGINT NOT NULL,
    expected_amount   DECIMAL(38, 4) NOT NULL,
    processed_amount  DECIMAL(38, 4) NOT NULL,
    expected_debits   DECIMAL(38, 4) NOT NULL,
    expected_credits  DECIMAL(38, 4) NOT NULL,
    processed_debits  DECIMAL(38, 4) NOT NULL,
    processed_credits DECIMAL(38, 4) NOT NULL,
    count_difference  BIGINT NOT NULL,
    amount_difference DECIMAL(38, 4) NOT NULL,
    PRIMARY KEY (source, business_date, version)
);

-- Every record of a run version, with its category (one row per expected or processed txn).
CREATE TABLE record_results (
    source            VARCHAR NOT NULL,
    run_id            VARCHAR NOT NULL,
    version           INTEGER NOT NULL,
    txn_id            VARCHAR NOT NULL,
    business_date     DATE,
    category          VARCHAR NOT NULL,
    is_expected       BOOLEAN NOT NULL,      -- expected by this run (its manifest)
    expected_amount   DECIMAL(18, 4),
    processed_amount  DECIMAL(18, 4),        -- the successful (else last) attempt's amount
    processed_total   DECIMAL(38, 4) NOT NULL, -- all successful attempts: what was posted
    currency          VARCHAR,
    expected_currency VARCHAR,
    attempts          BIGINT NOT NULL,
    successes         BIGINT NOT NULL,
    failures          BIGINT NOT NULL,
    error_code        VARCHAR,
    error_message     VARCHAR,
    note              VARCHAR NOT NULL,
    break_id          VARCHAR
);

-- The break register: one row per non-matched record, kept across reconciliations.
CREATE TABLE breaks (
    break_id          VARCHAR PRIMARY KEY,   -- stable: derived from (source, run_id, txn_id)
    source            VARCHAR NOT NULL,
    run_id            VARCHAR NOT NULL,
    txn_id            VARCHAR NOT NULL,
    business_date     DATE,
    category          VARCHAR NOT NULL,
    expected_amount   DECIMAL(18, 4),
    processed_amount  DECIMAL(18, 4),
    currency          VARCHAR,
    error_code        VARCHAR,
    error_message     VARCHAR,
    note              VARCHAR NOT NULL,
    first_seen        TIMESTAMPTZ NOT NULL,
    last_seen         TIMESTAMPTZ NOT NULL,
    status            VARCHAR NOT NULL,      -- open | resolved
    resolved_at       TIMESTAMPTZ,
    resolved_by       VARCHAR,               -- 'recon:auto' when resolved by reconciliation
    resolution        VARCHAR,
    assignee          VARCHAR
);

CREATE TABLE break_comments (
    break_id     VARCHAR NOT NULL,
    commented_at TIMESTAMPTZ NOT NULL,
    commented_by VARCHAR NOT NULL,
    comment      VARCHAR NOT NULL
);
"""

WATCHDOG_SCHEMA = """
CREATE SEQUENCE monitor_id_seq START 1;
CREATE SEQUENCE alert_seq START 1;
CREATE SEQUENCE transition_seq START 1;

-- Expected recurring signals. Times are UTC; `tz` is only for evaluating the cron expression.
CREATE TABLE monitors (
    monitor_id          BIGINT PRIMARY KEY,
    name                VARCHAR NOT NULL UNIQUE,
    ping_uuid           VARCHAR NOT NULL UNIQUE,  -- unguessable: /ping/<uuid> signals it
    cron                VARCHAR,               -- five-field expression, or NULL for a period
    tz                  VARCHAR NOT NULL,
    every_seconds       BIGINT,
    grace_seconds       BIGINT NOT NULL,
    early_seconds       BIGINT NOT NULL,
    max_runtime_seconds BIGINT,
    realert_seconds     BIGINT,
    tags                VARCHAR[] NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL,
    created_by          VARCHAR NOT NULL,
    paused_at           TIMESTAMPTZ,
    paused_until        TIMESTAMPTZ,
    pause_reason        VARCHAR,
    resumed_at          TIMESTAMPTZ,
    last_signal_at      TIMESTAMPTZ,
    last_success_at     TIMESTAMPTZ,
    last_failure_at     TIMESTAMPTZ,
    last_start_at       TIMESTAMPTZ,
    awaited_due         TIMESTAMPTZ NOT NULL,  -- the slot waited for (from signals + schedule)
    ledger_due          TIMESTAMPTZ NOT NULL,  -- the next slot not yet in the ledger
    status              VARCHAR NOT NULL,      -- as last recorded by `recon watch`
    status_since        TIMESTAMPTZ NOT NULL,
    down_since          TIMESTAMPTZ,
    last_alert_at       TIMESTAMPTZ
);

CREATE TABLE signals (
    monitor_id       BIGINT NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL,
    kind             VARCHAR NOT NULL,         -- success | start | fail
    exit_code        INTEGER,
    message          VARCHAR,                  -- masked, at most 10 kB
    origin           VARCHAR NOT NULL,
    duration_seconds DOUBLE,
    request_id       VARCHAR,                  -- a spooled HTTP ping's id: drained once
    run_key          VARCHAR                   -- ?rid= pairing start and finish of one run
);

-- The key of /ping/<ping-key>/<slug> URLs (healthchecks-style), made once per store.
CREATE TABLE ping_keys (ping_key VARCHAR NOT NULL);
INSERT INTO ping_keys SELECT replace(gen_random_uuid()::VARCHAR, '-', '');

-- The slot ledger: every due slot with its outcome.
CREATE TABLE slots (
    monitor_id  BIGINT NOT NULL,
    due_at      TIMESTAMPTZ NOT NULL,
    outcome     VARCHAR NOT NULL,              -- on_time | late | missed | failed
    arrived_at  TIMESTAMPTZ,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (monitor_id, due_at)
);

-- Status changes, recorded by compare-and-set before anyone is told.
CREATE TABLE transitions (
    transition_id BIGINT PRIMARY KEY,
    monitor_id    BIGINT NOT NULL,
    monitor       VARCHAR NOT NULL,
    from_status   VARCHAR NOT NULL,
    to_status     VARCHAR NOT NULL,
    changed_at    TIMESTAMPTZ NOT NULL
);

-- The outbox: one alert, one delivery row per target alias (never its URL).
CREATE TABLE alerts (
    alert_id   VARCHAR PRIMARY KEY,
    monitor_id BIGINT,
    monitor    VARCHAR,
    kind       VARCHAR NOT NULL,               -- down | recovered | still_down | test
    created_at TIMESTAMPTZ NOT NULL,
    title      VARCHAR NOT NULL,
    body       VARCHAR NOT NULL
);

CREATE TABLE deliveries (
    alert_id        VARCHAR NOT NULL,
    target          VARCHAR NOT NULL,
    status          VARCHAR NOT NULL,          -- pending | claimed | delivered
    attempts        INTEGER NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    claimed_until   TIMESTAMPTZ,
    delivered_at    TIMESTAMPTZ,
    last_error      VARCHAR,
    PRIMARY KEY (alert_id, target)
);
"""

API_SCHEMA = """
-- Bearer tokens of the HTTP API, one source each. Only a SHA-256 of the token is kept.
CREATE TABLE api_tokens (
    name         VARCHAR PRIMARY KEY,
    source       VARCHAR NOT NULL,
    token_sha256 VARCHAR NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    created_by   VARCHAR NOT NULL,
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ
);

-- Runs a flow declared finished (POST .../runs/<run_id>/complete).
CREATE TABLE run_completions (
    source       VARCHAR NOT NULL,
    run_id       VARCHAR NOT NULL,
    completed_at TIMESTAMPTZ NOT NULL,
    completed_by VARCHAR NOT NULL,
    PRIMARY KEY (source, run_id)
);
"""

SIGNALS_SCHEMA = """
-- What a monitor hears (`signal`): pings (ping), the arrival of a run of `source` (run), or a
-- message in an IMAP mailbox (email). `source` also names the data its alerts summarise.
ALTER TABLE monitors ADD COLUMN source VARCHAR;
ALTER TABLE monitors ADD COLUMN signal VARCHAR DEFAULT 'ping';
UPDATE monitors SET signal = 'ping';
-- Content checks on each arriving run (NULL: not checked).
ALTER TABLE monitors ADD COLUMN min_transactions BIGINT;
ALTER TABLE monitors ADD COLUMN max_count_diff_percent DOUBLE;
ALTER TABLE monitors ADD COLUMN max_failure_rate_percent DOUBLE;
ALTER TABLE monitors ADD COLUMN failure_rate_jump DOUBLE;
-- Email monitors: the mailbox alias (settings [mailboxes.<alias>]), what to match, and how far
-- the mailbox has been read (UIDs are only comparable within one UIDVALIDITY).
ALTER TABLE monitors ADD COLUMN mailbox VARCHAR;
ALTER TABLE monitors ADD COLUMN subject_pattern VARCHAR;
ALTER TABLE monitors ADD COLUMN sender VARCHAR;
ALTER TABLE monitors ADD COLUMN mail_uidvalidity BIGINT;
ALTER TABLE monitors ADD COLUMN mail_last_uid BIGINT;

-- Rows of a failure report (the daily "Failed Transactions" email's CSV), as reported.
CREATE TABLE reported_failures (
    source        VARCHAR NOT NULL,
    report_date   DATE NOT NULL,
    run_id        VARCHAR,
    txn_id        VARCHAR NOT NULL,
    amount        DECIMAL(18, 4),
    currency      VARCHAR,
    error_code    VARCHAR,
    error_message VARCHAR,                  -- masked
    file_id       BIGINT NOT NULL,
    line          BIGINT
);
"""

AUDIT_SCHEMA = """
-- The audit trail (audit.py): one row per action, HMAC-chained. Append-only in code.
CREATE TABLE audit_events (
    seq       BIGINT NOT NULL,
    ts        TIMESTAMPTZ NOT NULL,
    actor     VARCHAR NOT NULL,              -- OS user, or token:<name>, or email:<mailbox>
    origin    VARCHAR NOT NULL,              -- JSON: via (cli | http | library), host, client
    action    VARCHAR NOT NULL,              -- ingest, reconcile, monitor.add, token.revoke, ...
    object    VARCHAR NOT NULL,              -- what it acted on ('' when nothing in particular)
    outcome   VARCHAR NOT NULL,              -- success | failure | denied
    details   VARCHAR NOT NULL,              -- JSON, masked
    alg       VARCHAR NOT NULL,              -- hmac-sha256 | sha256 (no key configured)
    prev_hash VARCHAR NOT NULL,
    hash      VARCHAR NOT NULL,
    PRIMARY KEY (seq, ts, actor, origin, action, object, outcome, details, alg, prev_hash, hash)
);

-- DuckDB has no triggers. This foreign key over every column makes DuckDB refuse any UPDATE
-- or DELETE of an event, and DROP TABLE audit_events, as long as the guard row exists.
CREATE TABLE audit_guard (
    seq BIGINT NOT NULL, ts TIMESTAMPTZ NOT NULL, actor VARCHAR NOT NULL,
    origin VARCHAR NOT NULL, action VARCHAR NOT NULL, object VARCHAR NOT NULL,
    outcome VARCHAR NOT NULL, details VARCHAR NOT NULL, alg VARCHAR NOT NULL,
    prev_hash VARCHAR NOT NULL, hash VARCHAR NOT NULL,
    FOREIGN KEY (seq, ts, actor, origin, action, object, outcome, details, alg, prev_hash, hash)
        REFERENCES audit_events (seq, ts, actor, origin, action, object, outcome, details, alg,
                                 prev_hash, hash)
);
"""

CONFIG_SCHEMA = """
-- Configuration history (versions.py): one row per change of one object (monitor:NAME,
-- source:NAME, target:ALIAS, mailbox:ALIAS, settings). `version` is global, so one number names
-- the whole configuration at a moment; value is JSON without secrets (NULL: removed).
CREATE TABLE config_versions (
    version    BIGINT PRIMARY KEY,
    object     VARCHAR NOT NULL,
    value      VARCHAR,
    changed_at TIMESTAMPTZ NOT NULL,
    changed_by VARCHAR NOT NULL,
    via        VARCHAR NOT NULL,             -- command | settings (recon.toml, environment) | revert
    reason     VARCHAR
);

-- What each ingested file and each reconciliation ran with.
ALTER TABLE ingested_files ADD COLUMN config_version BIGINT;
ALTER TABLE ingested_files ADD COLUMN product_version VARCHAR;
ALTER TABLE reconciliations ADD COLUMN config_version BIGINT;
"""

# `recon ingest --replace`: a file whose rows a corrected file took over stays on record (so its
# bytes are still refused as already ingested), marked with the file that replaced it.
REPLACE_SCHEMA = """
ALTER TABLE ingested_files ADD COLUMN replaced_by BIGINT;
"""

# "Latest result version", said once: the latest stored version of each run's and each day's
# result, and the records of each run's latest version. Failures, breaks, exports, the API and
# bisect read these; only the reconciliation itself writes the versioned tables. A later step
# that adds a column to run_results, day_results or record_results re-creates these views (a
# DuckDB view keeps the columns it was created with).
LATEST_RESULTS_SCHEMA = """
CREATE VIEW latest_run_results AS
SELECT * FROM run_results
QUALIFY row_number() OVER (PARTITION BY source, run_id ORDER BY version DESC) = 1;

CREATE VIEW latest_day_results AS
SELECT * FROM day_results
QUALIFY row_number() OVER (PARTITION BY source, business_date ORDER BY version DESC) = 1;

CREATE VIEW latest_record_results AS
SELECT r.* FROM record_results r
JOIN (SELECT source, run_id, max(version) AS version FROM run_results GROUP BY source, run_id)
    USING (source, run_id, version);
"""


# 012 (issue 13): how many values of each column masking changed, per file and run, so a
# person notices when ids are masked (`recon runs`).
MASKED_VALUES_SCHEMA = """
CREATE TABLE masked_values (
    file_id     BIGINT NOT NULL,
    source      VARCHAR NOT NULL,
    kind        VARCHAR NOT NULL,
    run_id      VARCHAR,
    column_name VARCHAR NOT NULL,
    masked      BIGINT NOT NULL
);
"""


def _unique_audit_seq(conn: Connection) -> None:
    """One event per seq, enforced by the store: two writers that both read the same head can
    no longer both append after it (the second one's commit fails, and it retries). A store
    whose trail already forked keeps its duplicates as evidence (events are never edited), so
    it gets no index: `recon audit verify` reports the first duplicate seq."""
    [(duplicates,)] = conn.execute(
        "SELECT count(*) - count(DISTINCT seq) FROM audit_events"
    ).fetchall()
    if duplicates == 0:
        conn.execute("CREATE UNIQUE INDEX audit_events_seq ON audit_events (seq)")


# ---- 011 (issue 13): break actions are audit events from here on. The manual decisions a
# store already holds were made without one: they are kept as they were, so that `recon audit
# verify` accepts them (and says how many it could not check). Empty on a new store.
BREAKS_UNAUDITED_SCHEMA = """
CREATE TABLE breaks_unaudited AS
SELECT break_id, status, resolved_at, resolved_by, resolution, assignee FROM breaks
WHERE status = 'resolved' OR assignee IS NOT NULL;
CREATE TABLE break_comments_unaudited AS
SELECT break_id, commented_at, commented_by, count(*) AS n FROM break_comments GROUP BY ALL;
"""
# ---- end 011 ----


MIGRATIONS: list[tuple[str, str | Callable[[Connection], None]]] = [
    ("001_ingest", INGEST_SCHEMA),
    ("002_reconcile", RECONCILE_SCHEMA),
    ("003_watchdog", WATCHDOG_SCHEMA),
    ("004_api", API_SCHEMA),
    ("005_signals", SIGNALS_SCHEMA),
    ("006_audit", AUDIT_SCHEMA),
    ("007_config", CONFIG_SCHEMA),
    ("008_replace", REPLACE_SCHEMA),
    ("009_audit_seq", _unique_audit_seq),
    ("010_latest_results", LATEST_RESULTS_SCHEMA),
    # ---- issue 13, break register audited (reconcile/audit/register.py) ----
    ("011_breaks_unaudited", BREAKS_UNAUDITED_SCHEMA),
    # ---- end 011 ----
    ("012_masked_values", MASKED_VALUES_SCHEMA),
]


# --- 013 (issue 13, item 5 and 6) -------------------------------------------------------------
def _dedupe_by_kind(conn: Connection) -> None:
    """The same bytes may be read again as another kind (a run log first loaded as a manifest by
    mistake): one record per (source, kind, SHA-256), not per (source, SHA-256). DuckDB cannot
    drop a constraint, so the table is made again with its rows. And each quarantined row keeps
    the txn_id it was staged with (its raw row names the column as the file did), so a record
    that is missing because its row was quarantined can say so."""
    columns = [
        row[0]
        for row in conn.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'ingested_files' "
            "ORDER BY column_index"
        ).fetchall()
    ]
    conn.execute("ALTER TABLE ingested_files RENAME TO ingested_files_012")
    conn.execute(INGESTED_FILES_013)
    listed = ", ".join(columns)
    conn.execute(f"INSERT INTO ingested_files ({listed}) SELECT {listed} FROM ingested_files_012")
    conn.execute("DROP TABLE ingested_files_012")
    conn.execute("ALTER TABLE quarantine ADD COLUMN txn_id VARCHAR")


INGESTED_FILES_013 = """
CREATE TABLE ingested_files (
    file_id          BIGINT PRIMARY KEY,
    source           VARCHAR NOT NULL,
    kind             VARCHAR NOT NULL,
    path             VARCHAR NOT NULL,
    sha256           VARCHAR NOT NULL,
    size_bytes       BIGINT NOT NULL,
    format           VARCHAR NOT NULL,
    rows_read        BIGINT NOT NULL,
    rows_loaded      BIGINT NOT NULL,
    rows_quarantined BIGINT NOT NULL,
    run_ids          VARCHAR[] NOT NULL,
    ingested_at      TIMESTAMPTZ NOT NULL,
    ingested_by      VARCHAR NOT NULL,
    config_version   BIGINT,
    product_version  VARCHAR,
    replaced_by      BIGINT,
    UNIQUE (source, kind, sha256)
)
"""

MIGRATIONS.append(("013_dedupe_by_kind", _dedupe_by_kind))
MIGRATIONS.extend(later_steps.STEPS)  # 014 on: reconcile/store/later_steps.py


def migrate(conn: Connection) -> list[str]:
    """Apply the steps not yet recorded; return the names applied (empty when up to date).
    All the missing steps run in ONE transaction (a new store's whole schema: tens of ms, not
    one commit per step), so a crash leaves the schema as it was, never half made. Another
    connection of this process may be migrating at the same moment (the server's request
    threads): what is recorded is read again inside the transaction, which takes turns with
    theirs."""
    if _recorded(conn) >= {name for name, _ in MIGRATIONS}:
        return []
    applied = []
    with transaction(conn):
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
        )
        done = _recorded(conn)  # another connection may have applied some meanwhile
        for name, step in MIGRATIONS:
            if name in done:
                continue
            if callable(step):
                step(conn)
            else:
                conn.execute(step)
            applied.append(name)
        if applied:
            conn.execute(
                "INSERT INTO schema_migrations SELECT unnest(?::VARCHAR[]), ?",
                [applied, datetime.now(UTC)],
            )
    return applied


def _recorded(conn: Connection) -> set[str]:
    """The names of the steps recorded in this database (none before its first step)."""
    if conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_migrations'"
    ).fetchall() == [(0,)]:
        return set()
    return {row[0] for row in conn.execute("SELECT name FROM schema_migrations").fetchall()}


def applied(conn: Connection) -> list[str]:
    """Names of the schema steps recorded in this database, in order."""
    return [
        row[0]
        for row in conn.execute("SELECT name FROM schema_migrations ORDER BY name").fetchall()
    ]
