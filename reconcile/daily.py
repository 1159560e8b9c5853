"""The daily job as one use case: a day's manifests, control totals and run logs in, then the
business days they touched reconciled, in one session (one process, one store opening).

It is what `recon ingest --kind expected`, `recon ingest --kind totals`, `recon ingest` and
`recon reconcile` do one after the other, with the same library calls and so the same audit
events (one per file, one for the reconciliation): `ingest.batch.ingest_files` per kind, in
that order (a run log is then compared with its manifest as soon as it is reconciled), then
`reconciliation.refresh.refresh` on the scope the files touched.

The scope: the source's business dates from the earliest to the latest that the files' rows,
or the rows of the runs the files named, carry. A file already ingested (skipped) counts with
the load that took its bytes, so running the job again reconciles the same days and finds
nothing changed. A run the files name that no row dates (control totals of a run whose log and
manifest have not arrived) is on no day yet: as in `recon reconcile --since`, it is left out
until its log or manifest places it on a day; only when the files date nothing at all (control
totals alone) is every run of the source reconciled, as `recon reconcile --source` does.

A file that could not be read is refused (nothing of it is written, as in `recon ingest`); the
other files still load, each in its own transaction, but nothing is reconciled: a day is not
judged on part of its inputs. Fix the file and run the job again (the files already loaded
are skipped).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from reconcile.ingest.batch import Batch, Input, Outcome, ingest_files
from reconcile.ingest.files import OnRuns
from reconcile.reconciliation import refresh as reconciliation
from reconcile.reconciliation.scope import Scope
from reconcile.session import Session
from reconcile.store.db import Connection

# The kinds of file the job loads, in the order it loads them.
ORDER = ("expected", "totals", "processed")


@dataclass
class Daily:
    """What the job did: each kind's batch (in `ORDER`, kinds given no file left out), the
    scope it reconciled and the reconciliation (None: a file was refused, or no file held a
    run)."""

    source: str
    batches: list[Batch] = field(default_factory=list)
    scope: Scope | None = None
    outcome: reconciliation.Outcome | None = None

    @property
    def files(self) -> list[Outcome]:
        return [f for batch in self.batches for f in batch.files]

    @property
    def refused(self) -> bool:
        return any(batch.refused for batch in self.batches)

    @property
    def quarantined(self) -> bool:
        """Some row of a file loaded now was quarantined."""
        return any(batch.quarantined for batch in self.batches)

    @property
    def needs_attention(self) -> bool:
        """Breaks or pending runs in the reconciled scope, or rows quarantined now."""
        return self.quarantined or bool(self.outcome and self.outcome.needs_attention)


def run_daily(
    session: Session,
    *,
    source: str,
    expected: Sequence[Path | Input] = (),
    totals: Sequence[Path | Input] = (),
    run_logs: Sequence[Path | Input] = (),
    report_date: date | None = None,
    on_runs: OnRuns | None = None,
    on_file: Callable[[Outcome], None] | None = None,
    on_start: Callable[[Input], None] | None = None,
) -> Daily:
    """Ingest `expected` manifests, control `totals` and `run_logs` of `source`, in that order,
    then reconcile the business days they touched; see the module docstring. `report_date`:
    the business date of run log rows that carry none (`recon ingest --date`). `on_runs`,
    `on_file`, `on_start`: as for `ingest_files` (`on_runs` hears the run logs' runs)."""
    daily = Daily(source)
    for kind, files in zip(ORDER, (expected, totals, run_logs), strict=True):
        if not files:
            continue
        run_log = kind == "processed"
        daily.batches.append(
            ingest_files(
                session,
                files,
                source=source,
                kind=kind,
                report_date=report_date if run_log else None,
                on_runs=on_runs if run_log else None,
                on_file=on_file,
                on_start=on_start,
            )
        )
    if daily.refused:
        return daily
    file_ids = [result.file_id for batch in daily.batches for result in batch.results]
    daily.scope = touched_scope(session.conn, source, file_ids)
    if daily.scope is not None:
        daily.outcome = reconciliation.refresh(session, daily.scope)
    return daily


def touched_scope(conn: Connection, source: str, file_ids: list[int]) -> Scope | None:
    """The scope the loads `file_ids` of `source` touched: their business dates, and those of
    the runs they named; every run of the source when they date nothing but name runs; None
    when they named no run and dated no row."""
    if not file_ids:
        return None
    low, high = min(file_ids), max(file_ids)
    # One pass over the loads' own rows (file ids only grow, so the range lets DuckDB skip
    # older row groups): the dates they carry, and the runs they named whose dates their rows
    # do not give (control totals; a run whose rows were all quarantined).
    [(first, last, undated)] = conn.execute(
        """
        WITH loaded AS (
            SELECT run_id, business_date FROM transactions
            WHERE file_id BETWEEN $low AND $high AND list_contains($ids, file_id)
            UNION ALL
            SELECT run_id, business_date FROM expected_transactions
            WHERE file_id BETWEEN $low AND $high AND list_contains($ids, file_id)
              AND business_date IS NOT NULL),
        named AS (
            SELECT DISTINCT unnest(run_ids) AS run_id FROM ingested_files
            WHERE source = $source AND list_contains($ids, file_id))
        SELECT (SELECT min(business_date) FROM loaded), (SELECT max(business_date) FROM loaded),
               coalesce((SELECT list(run_id ORDER BY run_id) FROM named
                         WHERE run_id NOT IN (SELECT run_id FROM loaded
                                              WHERE run_id IS NOT NULL)), [])
        """,
        {"source": source, "low": low, "high": high, "ids": file_ids},
    ).fetchall()
    dates = [d for d in (first, last) if d is not None]
    if undated:
        [(others_first, others_last, dated_runs)] = conn.execute(
            """
            SELECT min(business_date), max(business_date), count(DISTINCT run_id) FROM (
                SELECT run_id, business_date FROM transactions
                WHERE source = $source AND list_contains($runs, run_id)
                UNION ALL
                SELECT run_id, business_date FROM expected_transactions
                WHERE source = $source AND list_contains($runs, run_id)
                  AND business_date IS NOT NULL)
            """,
            {"source": source, "runs": undated},
        ).fetchall()
        dates += [d for d in (others_first, others_last) if d is not None]
        if not dates and dated_runs < len(undated):
            return Scope(source)  # runs on no day yet, and nothing else: "every run" holds them
    if not dates:
        return None
    return Scope(source, since=min(dates), until=max(dates))
