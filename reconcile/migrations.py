"""Ordered, named schema steps. Each runs once, in its own transaction, and is recorded in
`schema_migrations`; append new steps at the end and never edit a step that has shipped."""

from __future__ import annotations

from datetime import UTC, datetime

from reconcile.db import Connection, transaction

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

MIGRATIONS: list[tuple[str, str]] = [
    ("001_ingest", INGEST_SCHEMA),
]


def migrate(conn: Connection) -> list[str]:
    """Apply the steps not yet recorded; return the names applied (empty when up to date)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " name VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations").fetchall()}
    applied = []
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        with transaction(conn):
            conn.execute(sql)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", [name, datetime.now(UTC)])
        applied.append(name)
    return applied


def applied(conn: Connection) -> list[str]:
    """Names of the schema steps recorded in this database, in order."""
    return [
        row[0]
        for row in conn.execute("SELECT name FROM schema_migrations ORDER BY name").fetchall()
    ]
