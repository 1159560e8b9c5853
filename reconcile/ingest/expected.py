"""What should have been processed: control totals recorded by hand (`recon expect`).

Manifests and control-total files arrive through `recon ingest --kind expected|totals`; this is
for the upstream system that only tells a person "run R sent N transactions worth X".
"""

from __future__ import annotations

from decimal import Decimal

from reconcile.session import Session
from reconcile.store.db import transaction


def record_control_totals(
    session: Session, *, source: str, run_id: str, count: int, amount: Decimal | None
) -> None:
    """Record (or replace) the control totals of one run; the latest statement wins. Who
    recorded them, and when, is the session's."""
    if count < 0:
        raise ValueError("the expected count cannot be negative")
    conn, now, user = session.conn, session.now, session.actor
    with transaction(conn):
        conn.execute(
            "DELETE FROM control_totals WHERE source = ? AND run_id = ? AND file_id IS NULL",
            [source, run_id],
        )
        conn.execute(
            "INSERT INTO control_totals VALUES (?, ?, ?, ?, NULL, NULL, ?, ?)",
            [source, run_id, count, amount, now, user],
        )
