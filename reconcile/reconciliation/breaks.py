"""The break register: non-matched records kept across reconciliations, for people to work.

Reconciliation opens, refreshes and (where the data shows it) resolves breaks; a person can
assign one, comment on it, and resolve it with a reason. Break ids are stable: derived from the
record (source, run, txn), so the same record keeps its id however often it is reconciled.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from reconcile.errors import ReconError
from reconcile.reconciliation.scope import Scope
from reconcile.session import Session
from reconcile.store.db import Connection, fetch_dicts, transaction

STATUSES = ("open", "resolved", "all")


class BreakNotFoundError(ReconError):
    """No break has the id given (each face adds how to list them)."""


def list_breaks(
    conn: Connection,
    *,
    now: datetime,
    status: str = "open",
    source: str | None = None,
    since: date | None = None,
    until: date | None = None,
    categories: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Breaks by status, business date and category; age counts days since the business date."""
    query = breaks_query(
        now=now, status=status, source=source, since=since, until=until, categories=categories
    )
    return fetch_dicts(conn, *query)


def breaks_query(
    *,
    now: datetime,
    status: str = "open",
    source: str | None = None,
    since: date | None = None,
    until: date | None = None,
    categories: list[str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The SQL of `list_breaks` and its parameters (the Python API reads it as a DataFrame)."""
    return (
        """
        SELECT break_id, source, run_id, txn_id, business_date, category,
               coalesce(processed_amount, expected_amount) AS amount, currency,
               error_code, error_message, note, status,
               greatest(date_diff('day', coalesce(business_date, first_seen::DATE), $now::DATE), 0)
                   AS age_days,
               first_seen, last_seen, assignee, resolved_at, resolved_by, resolution,
               (SELECT count(*) FROM break_comments c WHERE c.break_id = b.break_id) AS comments
        FROM breaks b
        WHERE ($status = 'all' OR status = $status)
          AND ($source IS NULL OR source = $source)
          AND ($since IS NULL OR business_date >= $since)
          AND ($until IS NULL OR business_date <= $until)
          AND ($categories IS NULL OR list_contains($categories, category))
        ORDER BY business_date, source, run_id, txn_id
        """,
        {
            "now": now,
            "status": status,
            "source": source,
            "since": since,
            "until": until,
            "categories": categories,
        },
    )


def listing(
    session: Session, scope: Scope, *, status: str = "open", categories: list[str] | None = None
) -> list[dict[str, Any]]:
    """The register over `scope` as it stands (not refreshed: it is kept by reconciliation);
    the latest business date resolved, every date while nothing is loaded."""
    resolved = scope.resolve(session.conn) or scope.everything()
    return list_breaks(
        session.conn,
        now=session.now,
        status=status,
        source=resolved.source,
        since=resolved.since,
        until=resolved.until,
        categories=categories,
    )


def show(conn: Connection, break_id: str, now: datetime) -> dict[str, Any]:
    rows = [b for b in list_breaks(conn, now=now, status="all") if b["break_id"] == break_id]
    if not rows:
        raise BreakNotFoundError(f"no break {break_id}")
    found = rows[0]
    found["comments"] = fetch_dicts(
        conn,
        "SELECT commented_at, commented_by, comment FROM break_comments WHERE break_id = ? "
        "ORDER BY commented_at",
        [break_id],
    )
    return found


def _require(conn: Connection, break_id: str) -> None:
    row = conn.execute("SELECT count(*) FROM breaks WHERE break_id = ?", [break_id]).fetchone()
    if not row or not row[0]:
        raise BreakNotFoundError(f"no break {break_id}")


def assign(conn: Connection, break_id: str, assignee: str, *, now: datetime, user: str) -> None:
    with transaction(conn):
        _require(conn, break_id)
        conn.execute("UPDATE breaks SET assignee = ? WHERE break_id = ?", [assignee, break_id])
        conn.execute(
            "INSERT INTO break_comments VALUES (?, ?, ?, ?)",
            [break_id, now, user, f"assigned to {assignee}"],
        )


def comment(conn: Connection, break_id: str, text: str, *, now: datetime, user: str) -> None:
    with transaction(conn):
        _require(conn, break_id)
        conn.execute("INSERT INTO break_comments VALUES (?, ?, ?, ?)", [break_id, now, user, text])


def resolve(conn: Connection, break_id: str, reason: str, *, now: datetime, user: str) -> None:
    """A person's resolution: it stands even if the record stays unmatched."""
    with transaction(conn):
        _require(conn, break_id)
        conn.execute(
            "UPDATE breaks SET status = 'resolved', resolved_at = ?, resolved_by = ?, "
            "resolution = ? WHERE break_id = ?",
            [now, user, reason, break_id],
        )
        conn.execute(
            "INSERT INTO break_comments VALUES (?, ?, ?, ?)",
            [break_id, now, user, f"resolved: {reason}"],
        )
