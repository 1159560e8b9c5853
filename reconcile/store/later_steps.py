"""Schema steps from 014 on, in order; `migrations` appends them to its list after 013 and runs
them like every other step. Append new steps at the end of STEPS and never edit a step that has
shipped."""

from __future__ import annotations

from collections.abc import Callable

from reconcile.store.db import Connection

STEPS: list[tuple[str, str | Callable[[Connection], None]]] = []


# --- 014 (issue 14): plain matches are no longer stored -----------------------------------------
# A reconciliation stores a row in record_results only for a record that is not a plain match
# (reconcile.reconciliation.compare.PLAIN_SQL); `latest_record_results` gives the plain ones back
# from their manifest rows, so every reader sees every record as before. A stored row always
# wins: rows stored before this step (every record, matched ones included) are kept as they
# were, and the manifest row of a record stored in the run's latest version is not repeated.
# `latest_stored_records` is the stored rows alone: enough for readers of breaks, and cheaper.
LATEST_RECORDS_014 = """
CREATE OR REPLACE VIEW latest_stored_records AS
SELECT r.* FROM record_results r
JOIN (SELECT source, run_id, max(version) AS version FROM run_results GROUP BY source, run_id)
    USING (source, run_id, version);

CREATE OR REPLACE VIEW latest_record_results AS
SELECT * FROM latest_stored_records
UNION ALL
SELECT e.source, e.run_id, l.version, e.txn_id, e.business_date, 'matched' AS category,
       true AS is_expected, e.amount AS expected_amount, e.amount AS processed_amount,
       e.amount::DECIMAL(38, 4) AS processed_total, e.currency, e.currency AS expected_currency,
       1::BIGINT AS attempts, 1::BIGINT AS successes, 0::BIGINT AS failures,
       NULL::VARCHAR AS error_code, NULL::VARCHAR AS error_message, '' AS note,
       NULL::VARCHAR AS break_id
FROM expected_transactions e
JOIN (SELECT source, run_id, max(version) AS version FROM run_results GROUP BY source, run_id) l
    ON l.source = e.source AND l.run_id = e.run_id
WHERE e.business_date IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM record_results s
                  WHERE s.source = e.source AND s.run_id = e.run_id AND s.version = l.version
                    AND s.txn_id = e.txn_id);
"""

STEPS.append(("014_plain_matches", LATEST_RECORDS_014))


# 015 (issue 14): what each scope was last reconciled from, read from the small tables
# (reconcile/reconciliation/fingerprint.py), and what was found with it: a reading command
# whose scope is unchanged since does not classify every record again.
REFRESH_STATE_015 = """
CREATE TABLE IF NOT EXISTS refresh_state (
    key         VARCHAR PRIMARY KEY,  -- the scope as in reconciliations.scope, or '#latest'
    fingerprint VARCHAR NOT NULL,
    found       JSON NOT NULL
);
"""

STEPS.append(("015_refresh_state", REFRESH_STATE_015))


# --- 016 (issue 14): the attributes of wide files are stored with ZSTD -------------------------
# A file with hundreds of extra columns gives each row a JSON object of several KB. DuckDB's
# default for text (dictionary + FSST) takes seconds per 100,000 such rows to checkpoint, longer
# than loading the file; ZSTD writes them several times faster and smaller. The column keeps its
# type (JSON) and its values: only how the blocks are compressed changes. DuckDB cannot alter a
# column's compression, so each table is copied into one declared with it (the same columns,
# constraints and order: its own CREATE statement, the one column amended).
def _attributes_zstd(conn: Connection) -> None:
    tables = ("transactions", "expected_transactions")
    created = dict(
        conn.execute(
            "SELECT table_name, sql FROM duckdb_tables() WHERE schema_name = 'main' "
            "AND NOT temporary AND list_contains(?, table_name)",
            [list(tables)],
        ).fetchall()
    )
    steps = []
    for table in tables:
        if "attributes JSON," not in created[table]:  # declared so already
            continue
        declared = (
            created[table]
            .replace(f"CREATE TABLE {table}(", f"CREATE TABLE {table}_016(", 1)
            .replace("attributes JSON,", "attributes JSON USING COMPRESSION ZSTD,")
        )
        if f"CREATE TABLE {table}_016(" not in declared:  # written in a form not foreseen:
            continue  # the table stays as it is (slower to checkpoint, never unusable)
        steps += [
            declared,
            f"INSERT INTO {table}_016 SELECT * FROM {table};",
            f"DROP TABLE {table};",
            f"ALTER TABLE {table}_016 RENAME TO {table};",
        ]
    if steps:
        conn.execute("\n".join(steps))


STEPS.append(("016_attributes_zstd", _attributes_zstd))


# --- 017 (issue 15): the reports recon sends ---------------------------------------------------
# One row per report and target: which business date and source scope it reported, which outbox
# alert carries it, and the SHA-256 of every file it carried. Whether it arrived is the
# delivery's status (`report_deliveries`), so a retry by the outbox needs no second record.
REPORT_SENDS_017 = """
CREATE TABLE IF NOT EXISTS report_sends (
    alert_id      VARCHAR NOT NULL,   -- the outbox alert that carries it (alerts, deliveries)
    target        VARCHAR NOT NULL,   -- the target's alias, never its URL
    business_date DATE NOT NULL,
    scope         VARCHAR NOT NULL,   -- a source's name, or '*' for every source
    report_status VARCHAR NOT NULL,   -- balanced | breaks | down | pending
    forced        BOOLEAN NOT NULL,   -- sent again with --force
    created_at    TIMESTAMPTZ NOT NULL,
    actor         VARCHAR NOT NULL,
    attachments   JSON NOT NULL,      -- [{"name", "media_type", "bytes", "sha256"}]
    PRIMARY KEY (alert_id, target)
);

CREATE OR REPLACE VIEW report_deliveries AS
SELECT s.*, d.status AS delivery, d.attempts, d.next_attempt_at, d.delivered_at, d.last_error
FROM report_sends s LEFT JOIN deliveries d USING (alert_id, target);
"""

STEPS.append(("017_report_sends", REPORT_SENDS_017))


# --- 018 (issue 15): what the outbox carries for a report --------------------------------------
# A report travels through the alert outbox like any alert (`alerts` holds its title and its
# plain text, `deliveries` one row per target); these tables add what only a report has, keyed
# by its alert: the HTML body email targets get, the short text chat targets get, and the files
# it carries (email targets only), kept until delivered so that a retry sends the same bytes.
REPORT_OUTBOX_018 = """
CREATE TABLE IF NOT EXISTS alert_bodies (
    alert_id VARCHAR PRIMARY KEY,   -- the outbox alert (alerts)
    html     VARCHAR NOT NULL,      -- the body of targets whose native format is HTML (email)
    short    VARCHAR NOT NULL       -- the text every other target gets (chat, webhooks)
);

CREATE TABLE IF NOT EXISTS alert_attachments (
    alert_id   VARCHAR NOT NULL,
    position   INTEGER NOT NULL,    -- the order the files are attached in
    name       VARCHAR NOT NULL,    -- the file name the recipient sees
    media_type VARCHAR NOT NULL,
    sha256     VARCHAR NOT NULL,    -- of `content`, as recorded with the send (report_sends)
    content    BLOB NOT NULL,
    PRIMARY KEY (alert_id, position)
);
"""

STEPS.append(("018_report_outbox", REPORT_OUTBOX_018))
