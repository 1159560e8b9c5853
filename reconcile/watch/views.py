"""What people read about monitors (`recon monitor list`, `show`, `log`), as use cases on a
session.

Every read first records the pings waiting in the spool: a ping answered 200 a moment ago is
acknowledged, so a read that left it out would show a monitor as it no longer is (`recon serve`
drains in the background, every `spool_drain_interval`). The session holds the store for
writing, so draining is the same step a watch tick takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconcile.session import Session
from reconcile.store.db import fetch_dicts
from reconcile.watch import monitors, spool


def drain_spool(session: Session) -> int:
    """Record the acknowledged pings still waiting in the spool; returns how many were new."""
    folder = spool.location(Path(session.settings.db), session.settings.spool_dir)
    if not spool.waiting(folder):
        return 0  # no folder, or nothing in it: create nothing
    return spool.drain(session.conn, folder)


def listing(session: Session, source: str | None = None) -> list[dict[str, Any]]:
    """Every monitor (of `source`, when given) with its status now (`monitors.list_monitors`),
    every ping counted."""
    drain_spool(session)
    return monitors.list_monitors(session.conn, session.now, source=source)


def show(session: Session, name: str) -> dict[str, Any]:
    """One monitor (`monitors.describe`), every ping counted, with the store's ping key (the
    `/ping/<ping-key>/<name>` form)."""
    drain_spool(session)
    found = monitors.describe(session.conn, name, session.now)
    found["ping_key"] = ping_key(session)
    return found


def ping_key(session: Session) -> str | None:
    """The store's ping key, of the `/ping/<ping-key>/<monitor name>` URLs."""
    rows = fetch_dicts(session.conn, "SELECT min(ping_key) AS key FROM ping_keys")
    return rows[0]["key"] if rows else None


def events(session: Session, name: str, limit: int = 50) -> list[dict[str, Any]]:
    """A monitor's own log, newest first: the signals it heard (pings with the message of a
    `/log` or a POST body, `recon run` with its output and exit code), each slot's outcome,
    and its status changes. Every acknowledged ping counted."""
    drain_spool(session)
    monitor_id, _ = monitors.load(session.conn, name)
    return fetch_dicts(
        session.conn,
        """
        SELECT * EXCLUDE (o) FROM (
            SELECT received_at AS "at", 'signal' AS event, kind, exit_code, duration_seconds,
                   origin, message, NULL::TIMESTAMPTZ AS due_at, NULL AS outcome,
                   NULL::TIMESTAMPTZ AS arrived_at, NULL AS from_status, NULL AS to_status,
                   CASE kind WHEN 'start' THEN 0 ELSE 1 END AS o
            FROM signals WHERE monitor_id = $id
            UNION ALL
            SELECT recorded_at, 'slot', NULL, NULL, NULL, NULL, NULL, due_at, outcome,
                   arrived_at, NULL, NULL, 2
            FROM slots WHERE monitor_id = $id
            UNION ALL
            SELECT changed_at, 'status', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                   from_status, to_status, 3
            FROM transitions WHERE monitor_id = $id
        )
        ORDER BY "at" DESC, o DESC  -- at one instant: a start, its end, the slot, the status
        LIMIT $limit
        """,
        {"id": monitor_id, "limit": limit},
    )
