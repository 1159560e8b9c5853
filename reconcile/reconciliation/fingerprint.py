"""What a reconciliation would be computed from, read from the store's small tables only.

Reading commands reconcile their scope first (`refresh`), which classifies every record of the
scope against every row of the transactions it names: its cost grows with the history, even
when nothing changed since the scope was last reconciled. Whether anything *could* have changed
is known from far less: every row of the loaded tables came from a file that `ingested_files`
lists (ingest adds one, `--replace` adds one and marks or removes the old, `forget` removes
one), control totals and runs are one row per run, and the stored results and breaks are
written by the reconciliation itself (and a person's action on breaks, which forgets every
state here: `forget_all`).

`data()` is the SHA-256 of those small tables; `scope_state()` adds what else a reconciliation
of a scope reads (the algorithm version, every source's tolerance). A reconciliation stores it
for its scope in `refresh_state` (with the inputs SHA-256 and the runs it found): while the
scope's state is the one stored, reconciling the scope again would compute the same records,
store nothing and change no break, so `refresh.refresh_stored` records only what such a
reconciliation records. The latest business date of each source is kept the same way, against
the files alone (`latest_dates`).
"""

from __future__ import annotations

import json
from contextlib import suppress
from datetime import date
from typing import Any

from reconcile.reconciliation import compare
from reconcile.reconciliation.scope import Scope
from reconcile.store.db import Connection, WriteConflict, write_lock

LATEST = "#latest"  # refresh_state's key for each source's latest business date


def _agg(table: str, columns: list[str], order: str) -> str:
    """Every row of a small `table` as one string (NULL and empty apart)."""
    parts = " || '~' || ".join(f"coalesce({c}::VARCHAR || '.', '')" for c in columns)
    return f"(SELECT coalesce(string_agg({parts}, ',' ORDER BY {order}), '') FROM {table})"


# The files behind every loaded row (a row is only ever added or removed with a file).
_FILES = [
    _agg(
        "ingested_files",
        ["file_id", "source", "kind", "sha256", "rows_loaded", "rows_quarantined", "replaced_by"],
        "file_id",
    ),
]
_DATA = [
    *_FILES,
    _agg(
        "control_totals",
        ["source", "run_id", "expected_count", "expected_amount", "file_id", "line", "recorded_at"],
        "source, run_id, recorded_at, file_id, line",
    ),
    _agg(
        "runs",
        [
            "source",
            "run_id",
            "file_ids",
            "rows_loaded",
            "rows_succeeded",
            "rows_failed",
            "rows_quarantined",
            "first_processed_at",
            "last_processed_at",
            "first_ingested_at",
        ],
        "source, run_id",
    ),
    # What the reconciliations themselves wrote: results (new versions, withdrawals), breaks.
    "(SELECT count(*) || ':' || coalesce(max(reconciliation_id), 0) FROM run_results)",
    "(SELECT count(*) || ':' || coalesce(max(reconciliation_id), 0) FROM day_results)",
    "(SELECT count(*) FROM breaks)",
]


def _digest(conn: Connection, parts: list[str]) -> str:
    row = conn.execute(f"SELECT sha256(concat_ws('|', {', '.join(parts)}))").fetchone()
    return str(row[0]) if row else ""


def data(conn: Connection) -> str:
    """The SHA-256 of the small tables every reconciliation's inputs and results hang on."""
    return _digest(conn, _DATA)


def scope_state(conn: Connection, tolerances: dict[str, compare.Tolerance]) -> str:
    """`data()` with the algorithm version and every source's tolerance."""
    configured = ";".join(
        f"{name}:abs={t.absolute};pct={t.percent}" for name, t in sorted(tolerances.items())
    )
    text = json.dumps([compare.ALGORITHM, configured, data(conn)])
    row = conn.execute("SELECT sha256(?)", [text]).fetchone()
    return str(row[0]) if row else ""


def key(conn: Connection, scope: Scope) -> str:
    """`scope` as `refresh_state` keys it: as in `reconciliations.scope`, its source named when
    the store knows one source only (every source is then that one: the daily job's scope and
    the failure list's are one)."""
    shown = scope.to_json()
    if scope.source is None:
        sources = conn.execute(
            "SELECT source FROM ingested_files UNION SELECT source FROM control_totals "
            "UNION SELECT source FROM run_results UNION SELECT source FROM day_results LIMIT 2"
        ).fetchall()
        if len(sources) == 1:
            shown["source"] = sources[0][0]
    return json.dumps(shown, sort_keys=True)


def stored(conn: Connection, key: str) -> tuple[str, dict[str, Any]] | None:
    """The state stored under `key`, and what was found with it."""
    row = conn.execute(
        "SELECT fingerprint, found FROM refresh_state WHERE key = ?", [key]
    ).fetchone()
    return (str(row[0]), json.loads(row[1])) if row else None


def remember(conn: Connection, key: str, state: str, found: dict[str, Any]) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO refresh_state VALUES (?, ?, ?)",
        [key, state, json.dumps(found, sort_keys=True)],
    )


def forget_all(conn: Connection) -> None:
    """Every stored state (a person changed breaks: the next reconciliation of any scope runs)."""
    conn.execute("DELETE FROM refresh_state")


def latest_dates(conn: Connection) -> dict[str, date]:
    """Each source's latest business date loaded (of its processed rows), read again only when
    the files changed."""
    state = _digest(conn, _FILES)
    known = stored(conn, LATEST)
    if known and known[0] == state:
        return {name: date.fromisoformat(day) for name, day in known[1].items()}
    rows = conn.execute(
        "SELECT source, max(business_date) FROM transactions WHERE business_date IS NOT NULL "
        "GROUP BY source ORDER BY source"
    ).fetchall()
    latest = {name: day for name, day in rows}
    # Another connection may have stored it first: it is only a cache.
    with write_lock(conn), suppress(*WriteConflict):
        remember(conn, LATEST, state, {name: day.isoformat() for name, day in latest.items()})
    return latest
