"""`recon forget FILE-OR-ID`: take back what one load put in.

A file loaded by mistake (the wrong `--kind`, a typo in `--source`) would otherwise stay for
good: its rows count in every reconciliation, and its bytes are refused as already ingested.
Forgetting one load, in one transaction:

1. removes its rows (from the table of its kind) and its quarantined rows;
2. removes its record in `ingested_files`, so the same bytes can be loaded again; files it had
   replaced (`--replace`) kept no rows, only a record that refused their bytes: those records go
   too, and their bytes can be loaded again;
3. recomputes the `runs` summary of the runs it touched: a run that only it made is gone;
4. records a `forget` audit event naming the file, its SHA-256, what was removed and the
   business dates it touched.

The results and breaks it fed are then stale: the caller reconciles `Forgotten.scope` (the
source and the business dates its rows and runs had), which stores new versions for the runs
left and withdraws the results of runs that no longer exist (`reconciliation.refresh`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from reconcile import redact
from reconcile.errors import ReconError
from reconcile.ingest.files import _refresh_runs, display_name, scan_file
from reconcile.ingest.kinds import kind_of
from reconcile.session import Session
from reconcile.store.db import Connection, fetch_dicts, transaction


class ForgetError(ReconError):
    """Nothing, or more than one load, matches what was named."""


@dataclass
class Forgotten:
    """What `forget` removed; the JSON shape of `recon forget --json`."""

    file_id: int
    source: str
    kind: str
    path: str
    sha256: str
    ingested_at: datetime
    rows: int  # rows removed from the kind's table
    quarantined: int  # quarantined rows removed
    runs: list[str]  # runs its rows or quarantined rows belonged to
    runs_removed: list[str]  # of those, the runs nothing else loaded (gone from `recon runs`)
    since: date | None  # the business dates its rows and runs had
    until: date | None
    released: list[str] = field(default_factory=list)  # files it had replaced: loadable again

    def as_json(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "source": self.source,
            "kind": self.kind,
            "path": self.path,
            "sha256": self.sha256,
            "ingested_at": self.ingested_at,
            "rows_removed": self.rows,
            "quarantined_removed": self.quarantined,
            "runs": self.runs,
            "runs_removed": self.runs_removed,
            "since": self.since,
            "until": self.until,
            "released": self.released,
        }


def loads_of(
    conn: Connection, target: str, *, source: str | None = None, kind: str | None = None
) -> list[dict[str, Any]]:
    """The loads `target` names: a file id, or a file whose bytes were loaded (by SHA-256), or
    the name a load was stored under; narrowed to `source` and `kind` when given."""
    value: object
    if target.isdigit():
        where, value = "file_id = ?", int(target)
    elif Path(target).is_file():
        where, value = "sha256 = ?", scan_file(Path(target)).sha256
    else:
        where, value = "path = ?", redact.mask_pans(target) or target
    return fetch_dicts(
        conn,
        "SELECT file_id, source, kind, path, sha256, ingested_at, ingested_by, rows_loaded, "
        "rows_quarantined, replaced_by FROM ingested_files "
        f"WHERE {where} AND (?::VARCHAR IS NULL OR source = ?) "
        "AND (?::VARCHAR IS NULL OR kind = ?) ORDER BY file_id",
        [value, source, source, kind, kind],
    )


def forget(
    session: Session, target: str, *, source: str | None = None, kind: str | None = None
) -> Forgotten:
    """Remove what the one load `target` names put in; see the module docstring. ForgetError
    when no load or more than one matches (the message lists them, with their ids)."""
    conn = session.conn
    shown = redact.mask_pans(target) or target
    found = loads_of(conn, target, source=source, kind=kind)
    if not found:
        narrowed = "".join(
            f" {name} {value}" for name, value in (("as", kind), ("for", source)) if value
        )
        raise ForgetError(
            f"no load of {shown}{narrowed} is recorded: nothing to forget "
            "(`recon ingest --json` gives each load's file_id)"
        )
    if len(found) > 1:
        listed = "\n".join(
            f"  file {f['file_id']}: {f['path']} as {f['kind']} for {f['source']}, loaded "
            f"{f['ingested_at']:%Y-%m-%d %H:%M} UTC by {f['ingested_by']}"
            for f in found
        )
        raise ForgetError(
            f"{shown} names {len(found)} loads; forget one by its id (recon forget ID):\n{listed}"
        )
    load = found[0]
    file_id, source_name, kind_name = load["file_id"], load["source"], load["kind"]
    described = kind_of(kind_name)
    table = described.table
    with transaction(conn):
        date_column = "business_date" if "business_date" in described.outputs else "NULL::DATE"
        [(rows, row_runs, first, last)] = conn.execute(
            f"SELECT count(*), list(DISTINCT run_id) FILTER (run_id IS NOT NULL), "
            f"min({date_column}), max({date_column}) FROM {table} WHERE file_id = ?",
            [file_id],
        ).fetchall()
        [(quarantined, quarantine_runs)] = conn.execute(
            "SELECT count(*), list(DISTINCT run_id) FILTER (run_id IS NOT NULL) "
            "FROM quarantine WHERE file_id = ?",
            [file_id],
        ).fetchall()
        runs = sorted(set(row_runs or []) | set(quarantine_runs or []))
        # The dates its runs were reconciled on, too (a run of control totals carries none).
        [(stored_first, stored_last)] = conn.execute(
            "SELECT min(business_date), max(business_date) FROM latest_run_results "
            "WHERE source = ? AND list_contains(?, run_id)",
            [source_name, runs],
        ).fetchall()
        dates = [d for d in (first, last, stored_first, stored_last) if d is not None]
        conn.execute(f"DELETE FROM {table} WHERE file_id = ?", [file_id])
        conn.execute("DELETE FROM quarantine WHERE file_id = ?", [file_id])
        conn.execute("DELETE FROM masked_values WHERE file_id = ?", [file_id])
        released = [
            path
            for (path,) in conn.execute(
                "DELETE FROM ingested_files WHERE replaced_by = ? RETURNING path", [file_id]
            ).fetchall()
        ]
        conn.execute("DELETE FROM ingested_files WHERE file_id = ?", [file_id])
        removed: list[str] = []
        if described.run_log and runs:
            conn.execute(
                "DELETE FROM runs WHERE source = ? AND list_contains(?, run_id)",
                [source_name, runs],
            )
            _refresh_runs(conn, source_name, runs)
            left = {
                run
                for (run,) in conn.execute(
                    "SELECT run_id FROM runs WHERE source = ? AND list_contains(?, run_id)",
                    [source_name, runs],
                ).fetchall()
            }
            removed = [run for run in runs if run not in left]
        forgotten = Forgotten(
            file_id,
            source_name,
            kind_name,
            load["path"],
            load["sha256"],
            load["ingested_at"],
            int(rows),
            int(quarantined),
            runs,
            removed,
            min(dates) if dates else None,
            max(dates) if dates else None,
            released,
        )
        session.record(
            "forget",
            f"{source_name}:{display_name(load['path'])}",
            details={
                "file_id": file_id,
                "path": load["path"],
                "sha256": load["sha256"],
                "kind": kind_name,
                "ingested_at": load["ingested_at"].isoformat(),
                "rows_removed": forgotten.rows,
                "quarantined_removed": forgotten.quarantined,
                "runs": runs[:50],
                "runs_removed": removed[:50],
                "since": forgotten.since.isoformat() if forgotten.since else None,
                "until": forgotten.until.isoformat() if forgotten.until else None,
                "released": released,
            },
        )
    return forgotten
