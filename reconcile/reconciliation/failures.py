"""The failed-record list: what the daily "Failed Transactions" email used to carry, and more.

Rows come from the latest stored reconciliation of each run (`record_results`), so a failure
that a retry in the same run fixed is `matched`, not listed; each row carries its break status.
By default the list holds the `failed` records; any break category can be asked for.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from reconcile.store.db import Connection, fetch_dicts

COLUMNS = [
    "txn_id",
    "run_id",
    "business_date",
    "amount",
    "currency",
    "category",
    "error_code",
    "error_message",
    "age_days",
    "break_status",
]


def latest_business_date(conn: Connection, source: str | None = None) -> date | None:
    row = conn.execute(
        "SELECT max(business_date) FROM transactions WHERE (?::VARCHAR IS NULL OR source = ?)",
        [source, source],
    ).fetchone()
    return row[0] if row else None


def failures_query(
    since: date, until: date, categories: list[str], source: str | None, now: datetime
) -> tuple[str, dict[str, Any]]:
    """The SQL (and its parameters) of the list, so exports can hand it to DuckDB's writers."""
    sql = """
        SELECT r.txn_id, r.run_id, r.business_date,
               coalesce(r.processed_amount, r.expected_amount)::DECIMAL(18, 2) AS amount,
               r.currency, r.category, r.error_code, r.error_message,
               greatest(date_diff('day', r.business_date, $now::DATE), 0) AS age_days,
               b.status AS break_status, r.break_id, r.note, r.source,
               r.expected_amount::DECIMAL(18, 2) AS expected_amount
        FROM record_results r
        JOIN (SELECT source, run_id, max(version) AS version FROM run_results
              GROUP BY source, run_id) latest USING (source, run_id, version)
        LEFT JOIN breaks b USING (break_id)
        WHERE list_contains($categories, r.category)
          AND r.business_date BETWEEN $since AND $until
          AND ($source IS NULL OR r.source = $source)
        ORDER BY r.business_date, r.source, r.run_id, r.txn_id
    """
    params = {
        "now": now,
        "categories": categories,
        "since": since,
        "until": until,
        "source": source,
    }
    return sql, params


def list_failures(
    conn: Connection,
    since: date,
    until: date,
    *,
    categories: list[str],
    source: str | None = None,
    now: datetime,
) -> list[dict[str, Any]]:
    """Records of the given categories with business_date in [since, until], masked as stored."""
    sql, params = failures_query(since, until, categories, source, now)
    return fetch_dicts(conn, sql, params)
