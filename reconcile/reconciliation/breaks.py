"""The break register: non-matched records kept across reconciliations, for people to work.

Reconciliation opens, refreshes and (where the data shows it) resolves breaks; a person can
assign one, comment on it, and resolve it with a reason. Break ids are stable: derived from the
record (source, run, txn), so the same record keeps its id however often it is reconciled.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from reconcile.errors import ReconError
from reconcile.reconciliation import fingerprint
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
    assignee: str | None = None,
) -> list[dict[str, Any]]:
    """Breaks by status, business date, category and assignee; age counts days since the
    business date."""
    query = breaks_query(
        now=now,
        status=status,
        source=source,
        since=since,
        until=until,
        categories=categories,
        assignee=assignee,
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
    assignee: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """The SQL of `list_breaks` and its parameters (the Python API reads it as a DataFrame).
    `note` is the latest comment a person wrote on the break, else the reconciliation's note
    on the record (`record_note`)."""
    return (
        """
        SELECT break_id, source, run_id, txn_id, business_date, category,
               coalesce(processed_amount, expected_amount) AS amount, currency,
               error_code, error_message,
               coalesce((SELECT c.comment FROM break_comments c WHERE c.break_id = b.break_id
                         ORDER BY c.commented_at DESC, c.rowid DESC LIMIT 1), note)
                   AS note,
               note AS record_note, status,
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
          AND ($assignee IS NULL OR assignee = $assignee)
        ORDER BY business_date, source, run_id, txn_id
        """,
        {
            "now": now,
            "status": status,
            "source": source,
            "since": since,
            "until": until,
            "categories": categories,
            "assignee": assignee,
        },
    )


def listing(
    session: Session,
    scope: Scope,
    *,
    status: str = "open",
    categories: list[str] | None = None,
    assignee: str | None = None,
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
        assignee=assignee,
    )


def show(conn: Connection, break_id: str, now: datetime) -> dict[str, Any]:
    rows = [b for b in list_breaks(conn, now=now, status="all") if b["break_id"] == break_id]
    if not rows:
        raise BreakNotFoundError(f"no break {break_id}")
    found = rows[0]
    found["comments"] = fetch_dicts(
        conn,
        "SELECT commented_at, commented_by, comment FROM break_comments WHERE break_id = ? "
        "ORDER BY commented_at, rowid",
        [break_id],
    )
    return found


def _require(conn: Connection, break_ids: Sequence[str]) -> None:
    """Every id names a break (the first that does not is refused: nothing is written)."""
    found = {
        row[0]
        for row in conn.execute(
            "SELECT break_id FROM breaks WHERE list_contains(?, break_id)", [list(break_ids)]
        ).fetchall()
    }
    for break_id in break_ids:
        if break_id not in found:
            raise BreakNotFoundError(f"no break {break_id}")


def _act(
    session: Session,
    break_ids: Sequence[str],
    action: str,
    comment: str,
    update: str | None,
    params: list[Any],
    details: dict[str, Any],
) -> None:
    """One person's action on breaks, all or nothing: per break, the register's change, its
    comment and its audit event (`breaks.<action>`, naming the session's actor), which is what
    `recon audit verify` checks the register's manual state against (`audit.register`)."""
    ids = list(dict.fromkeys(break_ids))
    conn, now, user = session.conn, session.now, session.actor
    with transaction(conn):
        _require(conn, ids)
        # A break a person reopens may be one a reconciliation resolves: the next one runs.
        fingerprint.forget_all(conn)
        for break_id in ids:
            if update is not None:
                conn.execute(f"UPDATE breaks SET {update} WHERE break_id = ?", [*params, break_id])
            conn.execute(
                "INSERT INTO break_comments VALUES (?, ?, ?, ?)", [break_id, now, user, comment]
            )
            session.record(f"breaks.{action}", break_id, details=details)


def assign(session: Session, break_ids: Sequence[str], assignee: str) -> None:
    """Give breaks to someone to work (one event per break)."""
    _act(
        session,
        break_ids,
        "assign",
        f"assigned to {assignee}",
        "assignee = ?",
        [assignee],
        {"assignee": assignee},
    )


def comment(session: Session, break_ids: Sequence[str], text: str) -> None:
    """A note on breaks, kept with who wrote it and when; the list's `note` shows the latest."""
    _act(session, break_ids, "comment", text, None, [], {"comment": text})


def resolve(session: Session, break_ids: Sequence[str], reason: str) -> None:
    """A person's resolution: it stands even if the record stays unmatched."""
    _act(
        session,
        break_ids,
        "resolve",
        f"resolved: {reason}",
        "status = 'resolved', resolved_at = ?, resolved_by = ?, resolution = ?",
        [session.now, session.actor, reason],
        {"reason": reason},
    )
