"""A run declared whole by the flow that sent it (`POST .../runs/<run_id>/complete`)."""

from __future__ import annotations

from typing import Any

from reconcile import tokens
from reconcile.session import Session
from reconcile.store.db import fetch_dicts, transaction
from reconcile.watch import signals


def complete_run(
    session: Session, source: str, run_id: str, *, token: str | None = None, origin: str = "http"
) -> dict[str, Any]:
    """Record that run `run_id` of `source` is complete (by the session's actor), give each
    monitor that hears `source` its signal, record the use of `token` (its name) and the audit
    event, all in one transaction; then the run's totals as loaded so far."""
    conn, now = session.conn, session.now
    with transaction(conn):
        if token is not None:
            tokens.touch(conn, token, now=now)
        conn.execute(
            "INSERT OR REPLACE INTO run_completions VALUES (?, ?, ?, ?)",
            [source, run_id, now, session.actor],
        )
        signals.runs_arrived(
            conn, source, [run_id], now=now, origin=origin, what=f"run {run_id} completed"
        )
        session.record("run.complete", f"{source}:{run_id}")
    summary = fetch_dicts(
        conn,
        "SELECT rows_loaded, rows_succeeded, rows_failed, rows_quarantined FROM runs "
        "WHERE source = ? AND run_id = ?",
        [source, run_id],
    )
    totals = summary[0] if summary else {"rows_loaded": 0}
    return {"source": source, "run_id": run_id, "completed_at": now, **totals}
