"""What each run loaded, and what was quarantined: the first thing operations look at."""

from __future__ import annotations

from datetime import date
from typing import Any

from reconcile.store.db import Connection, fetch_dicts


def list_runs(
    conn: Connection,
    source: str | None = None,
    since: date | None = None,
    until: date | None = None,
) -> list[dict[str, Any]]:
    """One row per run: loaded, succeeded, failed and quarantined rows, when and by whom, and
    how many values of each column were masked (`masked`: column -> count)."""
    return fetch_dicts(conn, *runs_query(source, since, until))


def masked_text(masked: dict[str, int] | None) -> str:
    """A run's masked values per column, for a table: `card_number 120, txn_id 3`."""
    return ", ".join(f"{column} {count}" for column, count in (masked or {}).items())


def runs_query(
    source: str | None = None, since: date | None = None, until: date | None = None
) -> tuple[str, list[object]]:
    """The SQL of `list_runs` and its parameters (the Python API reads it as a DataFrame)."""
    return (
        """
        SELECT * FROM (
            SELECT r.source, r.run_id,
                   (SELECT min(business_date) FROM transactions t
                     WHERE t.source = r.source AND t.run_id = r.run_id) AS business_date,
                   r.rows_loaded, r.rows_succeeded, r.rows_failed, r.rows_quarantined,
                   r.first_processed_at, r.last_processed_at, r.last_ingested_at AS ingested_at,
                   r.ingested_by, len(r.file_ids) AS files,
                   -- values masking changed, per column (card numbers, sensitive values)
                   (SELECT coalesce(map(list(column_name ORDER BY column_name),
                                        list(n ORDER BY column_name)), MAP {})
                    FROM (SELECT column_name, sum(masked)::BIGINT AS n FROM masked_values m
                          WHERE m.source = r.source AND m.run_id = r.run_id
                            AND list_contains(r.file_ids, m.file_id)
                          GROUP BY column_name)) AS masked
            FROM runs r
            WHERE (?::VARCHAR IS NULL OR r.source = ?))
        WHERE (?::DATE IS NULL OR business_date >= ?) AND (?::DATE IS NULL OR business_date <= ?)
        ORDER BY source, business_date NULLS LAST, first_processed_at, run_id
        """,
        [source, source, since, since, until, until],
    )


def list_quarantine(
    conn: Connection, source: str | None = None, run_id: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Quarantined rows with file, line, column and reason, newest file first."""
    return fetch_dicts(
        conn,
        """
        SELECT source, kind, path, line, column_name AS column, reason, run_id, raw
        FROM quarantine
        WHERE (?::VARCHAR IS NULL OR source = ?) AND (?::VARCHAR IS NULL OR run_id = ?)
        ORDER BY file_id DESC, line
        LIMIT ?
        """,
        [source, source, run_id, run_id, limit if limit is not None else 2**62],
    )


def quarantined_in_file(conn: Connection, file_id: int) -> list[dict[str, Any]]:
    """The quarantined rows of one file as the HTTP API answers them: item (line), column,
    reason."""
    return fetch_dicts(
        conn,
        "SELECT line AS item, column_name AS column, reason FROM quarantine "
        "WHERE file_id = ? ORDER BY line",
        [file_id],
    )
