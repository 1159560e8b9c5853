"""`recon ingest --replace`: a corrected file takes the place of what was loaded before.

The usual fix for quarantined rows is at the source: the upstream system sends the run's log
again, corrected. Loaded as a new file, its good rows would be counted twice; the same bytes,
re-read after a settings fix, would be skipped as already ingested. With --replace, in the
ingest's own transaction and before the new rows are stored:

1. the runs the new file *covers* are those of its loaded rows (for failure reports: their
   business dates); a row of it that is quarantined covers nothing;
2. an earlier load of the same bytes is removed whole, and so is any earlier file of the same
   source and kind whose runs, loaded or quarantined, are all covered;
3. from other earlier files, only the rows of covered runs go, with their quarantined rows;
4. files loaded by the same command never replace each other (a run split over two files);
5. a file left with nothing stays on record, marked `replaced_by`: its bytes are still refused
   as already ingested, so re-running a folder does not bring its rows back. (The same bytes
   read again are the one exception: their old record makes way for the new one.)

Lines rejected before their run could be read (a wrong number of fields) belong to no run, so
only replacing the same bytes removes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reconcile.ingest.kinds import kind_of
from reconcile.store.db import Connection


@dataclass
class Superseded:
    files: list[dict[str, Any]] = field(default_factory=list)  # replaced whole: path, sha256
    partly: list[dict[str, Any]] = field(default_factory=list)  # rows of covered runs removed
    rows: int = 0
    quarantined: int = 0
    runs: list[str] = field(default_factory=list)  # runs whose rows were removed

    def __bool__(self) -> bool:
        return bool(self.rows or self.quarantined or self.files)


def supersede(
    conn: Connection,
    *,
    source: str,
    kind: str,
    file_id: int,
    same_bytes: int | None,
    keep: Sequence[int] = (),
) -> Superseded:
    """Remove what the staged file (`recon_staged`) replaces; see the module docstring."""
    rows_of = kind_of(kind)  # where its rows live, and what a row covers there and staged
    table, key, staged_key = rows_of.table, rows_of.covers, rows_of.covers_staged
    params = {
        "source": source,
        "kind": kind,
        "new": file_id,
        "same": same_bytes,
        "keep": [file_id, *keep],
    }

    def run(sql: str) -> list[tuple[Any, ...]]:
        # Each statement gets the named parameters it uses (DuckDB refuses unused ones).
        return conn.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql}).fetchall()

    run(
        f"CREATE OR REPLACE TEMP TABLE recon_covered AS SELECT DISTINCT {staged_key} AS k "
        f"FROM recon_staged WHERE {staged_key} IS NOT NULL AND __problem_reason IS NULL"
    )
    # What each earlier file touched: the keys of its loaded rows and of its quarantined rows.
    quarantined_keys = (
        "UNION ALL SELECT file_id, run_id FROM quarantine "
        "WHERE source = $source AND kind = $kind AND run_id IS NOT NULL"
        if key == "run_id"
        else ""
    )
    run(
        f"""
        CREATE OR REPLACE TEMP TABLE recon_whole AS
        WITH touched AS (
            SELECT file_id, {key} AS k FROM {table} WHERE source = $source
            {quarantined_keys})
        SELECT f.file_id FROM ingested_files f
        WHERE f.source = $source AND f.kind = $kind AND NOT list_contains($keep, f.file_id)
          AND f.replaced_by IS NULL
          AND (f.file_id = $same OR (
               EXISTS (SELECT 1 FROM touched t WHERE t.file_id = f.file_id)
               AND NOT EXISTS (SELECT 1 FROM touched t WHERE t.file_id = f.file_id
                               AND (t.k IS NULL OR t.k NOT IN (SELECT k FROM recon_covered)))))
        """
    )
    doomed_rows = f"""
        FROM {table} WHERE source = $source AND NOT list_contains($keep, file_id)
          AND (file_id IN (SELECT file_id FROM recon_whole)
               OR {key} IN (SELECT k FROM recon_covered))
    """
    run_match = "run_id IN (SELECT k FROM recon_covered)" if key == "run_id" else "false"
    doomed_quarantine = f"""
        FROM quarantine WHERE source = $source AND kind = $kind
          AND NOT list_contains($keep, file_id)
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
    emptied = f"""
        f.file_id IN (SELECT file_id FROM recon_touched)
        AND NOT EXISTS (SELECT 1 FROM {table} t WHERE t.file_id = f.file_id)
        AND NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.file_id = f.file_id)
    """
    described = "SELECT path, sha256 FROM ingested_files f WHERE "
    files = [{"path": p, "sha256": h} for p, h in run(described + emptied + " ORDER BY file_id")]
    partly = [
        {"path": p, "sha256": h}
        for p, h in run(
            described + f"f.file_id IN (SELECT file_id FROM recon_touched) AND NOT ({emptied}) "
            "ORDER BY file_id"
        )
    ]
    # The same bytes make way for their new record (one per source, kind and SHA-256); the others stay,
    # marked, so that their bytes are still refused.
    run(f"DELETE FROM ingested_files f WHERE f.file_id = $same AND {emptied}")
    run(f"UPDATE ingested_files f SET replaced_by = $new WHERE {emptied}")
    for name in ("recon_covered", "recon_whole", "recon_touched"):
        run(f"DROP TABLE IF EXISTS {name}")
    return Superseded(files, partly, int(rows), int(quarantined), list(runs or []))
