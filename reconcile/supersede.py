"""`recon ingest --replace`: a corrected file takes the place of what was loaded before.

The usual fix for quarantined rows is at the source: the upstream system sends the run's log
again, corrected. Loaded as a new file, its good rows would be counted twice; the same bytes,
re-read after a settings fix, would be skipped as already ingested. With --replace, in the
ingest's own transaction and before the new rows are stored:

1. an earlier load of the same bytes is removed whole;
2. so is any earlier file of the same source and kind whose loaded rows all belong to the runs
   (for failure reports: the business dates) of the new file;
3. from other earlier files, the rows of those runs or dates, and their quarantined rows, are
   removed;
4. an earlier file left with nothing is forgotten (its `ingested_files` row goes); the audit
   trail keeps what was removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconcile.db import Connection

# Where each kind's rows live, and which column says what the new file covers.
TABLES = {
    "processed": ("transactions", "run_id"),
    "expected": ("expected_transactions", "run_id"),
    "totals": ("control_totals", "run_id"),
    "report": ("reported_failures", "business_date"),
}


@dataclass
class Superseded:
    files: list[str] = field(default_factory=list)  # paths of earlier files forgotten
    rows: int = 0
    quarantined: int = 0
    runs: list[str] = field(default_factory=list)  # runs whose rows were removed

    def __bool__(self) -> bool:
        return bool(self.rows or self.quarantined or self.files)


def supersede(
    conn: Connection, *, source: str, kind: str, file_id: int, same_bytes: int | None
) -> Superseded:
    """Remove what the staged file (`recon_staged`) replaces; see the module docstring."""
    table, key = TABLES[kind]
    params = {"source": source, "kind": kind, "new": file_id, "same": same_bytes}

    def run(sql: str) -> list[tuple[Any, ...]]:
        # Each statement gets the named parameters it uses (DuckDB refuses unused ones).
        return conn.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql}).fetchall()

    run(
        f"CREATE OR REPLACE TEMP TABLE recon_covered AS "
        f"SELECT DISTINCT {key} AS k FROM recon_staged WHERE {key} IS NOT NULL"
    )
    run(
        f"""
        CREATE OR REPLACE TEMP TABLE recon_whole AS
        SELECT f.file_id FROM ingested_files f
        WHERE f.source = $source AND f.kind = $kind AND f.file_id <> $new
          AND (f.file_id = $same OR (
               EXISTS (SELECT 1 FROM {table} t WHERE t.file_id = f.file_id)
               AND NOT EXISTS (SELECT 1 FROM {table} t WHERE t.file_id = f.file_id
                               AND (t.{key} IS NULL
                                    OR t.{key} NOT IN (SELECT k FROM recon_covered)))))
        """
    )
    doomed_rows = f"""
        FROM {table} WHERE source = $source AND file_id <> $new
          AND (file_id IN (SELECT file_id FROM recon_whole)
               OR {key} IN (SELECT k FROM recon_covered))
    """
    run_match = "run_id IN (SELECT k FROM recon_covered)" if key == "run_id" else "false"
    doomed_quarantine = f"""
        FROM quarantine WHERE source = $source AND kind = $kind AND file_id <> $new
          AND (file_id IN (SELECT file_id FROM recon_whole) OR {run_match})
    """
    run(
        f"CREATE OR REPLACE TEMP TABLE recon_touched AS SELECT DISTINCT file_id {doomed_rows} "
        f"UNION SELECT file_id {doomed_quarantine} UNION SELECT file_id FROM recon_whole"
    )
    [(rows, runs)] = run(
        "SELECT count(*), list(DISTINCT run_id ORDER BY run_id) FILTER (run_id IS NOT NULL) "
        + doomed_rows
    )
    [(quarantined,)] = run(f"SELECT count(*) {doomed_quarantine}")
    run(f"DELETE {doomed_rows}")
    run(f"DELETE {doomed_quarantine}")
    forgotten = run(
        f"""
        DELETE FROM ingested_files f
        WHERE f.file_id IN (SELECT file_id FROM recon_touched)
          AND NOT EXISTS (SELECT 1 FROM {table} t WHERE t.file_id = f.file_id)
          AND NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.file_id = f.file_id)
        RETURNING path
        """
    )
    for name in ("recon_covered", "recon_whole", "recon_touched"):
        run(f"DROP TABLE IF EXISTS {name}")
    return Superseded(
        sorted(path for (path,) in forgotten), int(rows), int(quarantined), list(runs or [])
    )
