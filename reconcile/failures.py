"""The failed-record list: what the daily "Failed Transactions" email used to carry.

A transaction counts as failed on a day when its run logged a failure for it and no
successful processing of the same txn_id in that run (a retry that worked is not a failure).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from reconcile.db import Connection, fetch_dicts


def latest_business_date(conn: Connection, source: str | None = None) -> date | None:
    row = conn.execute(
        "SELECT max(business_date) FROM transactions WHERE (?::VARCHAR IS NULL OR source = ?)",
        [source, source],
    ).fetchone()
    return row[0] if row else None


def list_failures(
    conn: Connection, since: date, until: date, source: str | None = None
) -> list[dict[str, Any]]:
    """Failed transactions with business_date in [since, until], masked as stored."""
    return fetch_dicts(
        conn,
        """
        SELECT t.source, t.run_id, t.business_date, t.txn_id, t.amount, t.currency,
               t.error_code, t.error_message, t.processed_at
        FROM transactions t
        WHERE t.outcome = 'failure'
          AND t.business_date BETWEEN ? AND ?
          AND (?::VARCHAR IS NULL OR t.source = ?)
          AND NOT EXISTS (
              SELECT 1 FROM transactions s
              WHERE s.source = t.source AND s.run_id = t.run_id AND s.txn_id = t.txn_id
                AND s.outcome = 'success')
        ORDER BY t.business_date, t.source, t.run_id, t.line
        """,
        [since, until, source, source],
    )
