"""Reconcile and keep the results: versions per run and per day, and the break register.

One call is one transaction. `compare.classify` computes the scope's records, runs and days;
here each run's result is stored as a new version only when the SHA-256 of its inputs changed
(so re-running on unchanged inputs adds nothing, and data that arrives late adds a version that
sits beside the earlier one in the history). The break register follows the stored records.

`refresh(session, scope)` is the use case every face calls: the rule "reading commands
reconcile first" (failures, exports, bisect and the watch tick read stored results, so they
refresh their scope before reading; unchanged inputs add nothing), with each source's tolerance
from the settings and `last` resolved to the latest business date loaded. A reader that needs
the stored results only (`refresh_stored`) skips the classification when the scope's inputs are
in the state its last reconciliation left them (`fingerprint`), and records what a
reconciliation that changed nothing records.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconcile import __version__, audit, versions
from reconcile.errors import MemoryLimitError
from reconcile.reconciliation import compare, currencies, fingerprint
from reconcile.reconciliation.scope import Scope
from reconcile.session import Session
from reconcile.settings import Settings
from reconcile.store.db import (
    Connection,
    OutOfMemory,
    fetch_dicts,
    single_threaded,
    transaction,
)

# Counts and amounts shared by run and day results (their order is the tables' column order).
COUNT_FIELDS = [
    "expected_count",
    "processed_count",
    "matched",
    "failed",
    "missing",
    "duplicated",
    "unexpected",
    "amount_mismatch",
]
AMOUNT_FIELDS = [
    "expected_amount",
    "processed_amount",
    "expected_debits",
    "expected_credits",
    "processed_debits",
    "processed_credits",
    "count_difference",
    "amount_difference",
]
RUN_FIELDS = [
    "business_date",
    "status",
    "has_manifest",
    "has_totals",
    "arrived",
    *COUNT_FIELDS,
    "pending_records",
    "reprocessed",
    "retried",
    *AMOUNT_FIELDS,
]
DAY_FIELDS = ["run_ids", "status", *COUNT_FIELDS, "pending_records", *AMOUNT_FIELDS]
RECORD_FIELDS = [
    "txn_id",
    "business_date",
    "category",
    "is_expected",
    "expected_amount",
    "processed_amount",
    "processed_total",
    "currency",
    "expected_currency",
    "attempts",
    "successes",
    "failures",
    "error_code",
    "error_message",
    "note",
]
BREAK_ID_SQL = "'BRK-' || left(sha256(r.source || chr(31) || r.run_id || chr(31) || r.txn_id), 12)"


log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one reconciliation found, and what it changed in the store."""

    reconciliation_id: int
    inputs_sha256: str
    runs: list[dict[str, Any]]
    days: list[dict[str, Any]]
    runs_changed: int
    days_changed: int
    breaks_opened: int
    breaks_resolved: int
    # The scope's amounts per source and currency (runs and days carry theirs as `currencies`).
    currency_totals: list[dict[str, Any]]
    scope: Scope  # as reconciled: its latest business date resolved

    @property
    def needs_attention(self) -> bool:
        return any(item["status"] != "balanced" for item in self.runs + self.days)


def tolerances(settings: Settings) -> dict[str, compare.Tolerance]:
    """Each configured source's amount tolerance (absolute and percent)."""
    return {
        name: compare.Tolerance(config.amount_tolerance, config.amount_tolerance_percent)
        for name, config in settings.sources.items()
    }


def refresh(session: Session, scope: Scope) -> Outcome:
    """Reconcile `scope` now, as the session's actor at the session's time: the stored results
    of the scope are then current. A scope asking for the latest business date gets it (every
    date while nothing is loaded)."""
    resolved = scope.resolve(session.conn) or scope.everything()
    return reconcile(
        session.conn,
        resolved,
        tolerances(session.settings),
        now=session.now,
        user=session.actor,
        product_version=__version__,
    )


def refresh_stored(session: Session, scope: Scope) -> None:
    """Make the stored results of `scope` current, as `refresh` does, for a reader of the
    stored results (no outcome). When nothing the scope's reconciliation reads has changed since
    it last ran (`fingerprint.scope_state`), reconciling again would store nothing and change no
    break: the records are not classified again, and what such a reconciliation records is
    recorded (its row and `reconcile` event, with the inputs SHA-256 it found)."""
    conn = session.conn
    resolved = scope.resolve(conn) or scope.everything()
    configured = tolerances(session.settings)
    with transaction(conn):
        known = fingerprint.stored(conn, fingerprint.key(conn, resolved))
        if known and known[0] == fingerprint.scope_state(conn, configured):
            _record(
                conn,
                resolved,
                _next_id(conn),
                str(known[1]["inputs_sha256"]),
                int(known[1]["runs_in_scope"]),
                dict.fromkeys(
                    [
                        "runs_changed",
                        "days_changed",
                        "breaks_opened",
                        "breaks_resolved",
                        "runs_withdrawn",
                    ],
                    0,
                ),
                now=session.now,
                user=session.actor,
                product_version=__version__,
            )
            return
    reconcile(
        conn,
        resolved,
        configured,
        now=session.now,
        user=session.actor,
        product_version=__version__,
    )


def reconcile(
    conn: Connection,
    scope: Scope,
    tolerances: dict[str, compare.Tolerance],
    *,
    now: datetime,
    user: str,
    product_version: str,
) -> Outcome:
    """Reconcile `scope`, store what changed, update the break register; all or nothing.

    Memory stays bounded (`memory_limit`): work DuckDB cannot spill past it is refused, the
    transaction rolls back, and the same work runs again on one thread, which needs about half
    the memory: slower rather than failed."""
    once = functools.partial(
        _reconcile, conn, scope, tolerances, now=now, user=user, product_version=product_version
    )
    try:
        return once()
    except OutOfMemory:
        log.warning(
            "reconciling needed more than memory_limit allows; running it again on one thread "
            "(slower, about half the memory); raise RECON_MEMORY_LIMIT if the machine has room"
        )
        try:
            with single_threaded(conn):
                return once()
        except OutOfMemory:
            row = conn.execute("SELECT current_setting('memory_limit')").fetchone()
            raise MemoryLimitError(
                f"reconciling {scope.text} needs more memory than memory_limit "
                f"({row[0] if row else '?'}) allows, even on one thread; nothing was stored: "
                "raise RECON_MEMORY_LIMIT (memory_limit in recon.toml, e.g. 4GB) or reconcile "
                "fewer days at a time (recon reconcile --since D --until D)"
            ) from None


def _reconcile(
    conn: Connection,
    scope: Scope,
    tolerances: dict[str, compare.Tolerance],
    *,
    now: datetime,
    user: str,
    product_version: str,
) -> Outcome:
    try:
        with transaction(conn):
            compare.classify(conn, scope, tolerances)
            reconciliation_id = _next_id(conn)
            runs_changed = _store_runs(conn, reconciliation_id, now)
            days_changed = _store_days(conn, reconciliation_id, now)
            opened, resolved = _update_breaks(conn, now)
            withdrawn = _withdraw_vanished(conn, scope, now)
            resolved += withdrawn["breaks"]
            digest = _scope_digest(conn)
            runs_in_scope = _count(conn, "SELECT count(*) FROM r_runs")
            _record(
                conn,
                scope,
                reconciliation_id,
                digest,
                runs_in_scope,
                {
                    "runs_changed": runs_changed,
                    "days_changed": days_changed,
                    "breaks_opened": opened,
                    "breaks_resolved": resolved,
                    "runs_withdrawn": withdrawn["runs"],
                },
                now=now,
                user=user,
                product_version=product_version,
            )
            # Reconciling the scope again from this state would find the same and change nothing.
            fingerprint.remember(
                conn,
                fingerprint.key(conn, scope),
                fingerprint.scope_state(conn, tolerances),
                {"inputs_sha256": digest, "runs_in_scope": runs_in_scope},
            )
            runs = _results(conn, "r_runs", "run_results", ["source", "run_id"], "run_id")
            days = _results(
                conn, "r_days", "day_results", ["source", "business_date"], "business_date"
            )
            conn.execute(
                "CREATE OR REPLACE TEMP TABLE r_currencies AS "
                + currencies.fine_from_totals_sql("r_fine", "r_runs")
            )
            currencies.attach(runs, currencies.totals(conn, "r_currencies", ["run_id"]), "run_id")
            currencies.attach(
                days, currencies.totals(conn, "r_currencies", ["business_date"]), "business_date"
            )
            scope_totals = currencies.totals(conn, "r_currencies", [])
    finally:
        compare.drop_temporaries(conn)
    return Outcome(
        reconciliation_id,
        digest,
        runs,
        days,
        runs_changed,
        days_changed,
        opened,
        resolved,
        scope_totals,
        scope,
    )


def _key(scope: Scope) -> str:
    """The scope as the reconciliations table stores it."""
    return json.dumps(scope.to_json(), sort_keys=True)


def _record(
    conn: Connection,
    scope: Scope,
    reconciliation_id: int,
    digest: str,
    runs_in_scope: int,
    changes: dict[str, int],
    *,
    now: datetime,
    user: str,
    product_version: str,
) -> None:
    """The reconciliation's row and its audit event. A reader without the audit key (issue 13;
    see reconcile.audit) records nothing when nothing changed; a change needs the key
    (audit.record says so)."""
    if not any(changes.values()) and not audit.can_sign(conn):
        return
    conn.execute(
        "INSERT INTO reconciliations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            reconciliation_id,
            now,
            user,
            _key(scope),
            product_version,
            digest,
            runs_in_scope,
            changes["runs_changed"],
            changes["days_changed"],
            versions.current(conn),
        ],
    )
    audit.record(
        conn,
        "reconcile",
        scope.text,
        now=now,
        details={
            "reconciliation_id": reconciliation_id,
            "inputs_sha256": digest,
            **changes,
            "product_version": product_version,
        },
    )


def _count(conn: Connection, sql: str, params: list[Any] | None = None) -> int:
    row = conn.execute(sql, params or []).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _next_id(conn: Connection) -> int:
    return _count(conn, "SELECT nextval('reconciliation_id_seq')")


def _scope_digest(conn: Connection) -> str:
    row = conn.execute(
        "SELECT sha256(coalesce(string_agg(source || '/' || run_id || '=' || inputs_sha256, ','"
        " ORDER BY source, run_id), '')) FROM r_run_inputs"
    ).fetchone()
    return str(row[0]) if row else ""


def _new_versions(
    conn: Connection,
    *,
    key: str,
    inputs: str,
    computed: str,
    stored: str,
    changed: str,
    fields: list[str],
    reconciliation_id: int,
    now: datetime,
) -> int:
    """Store a new version of each result (run or day) whose inputs SHA-256 differs from its
    latest stored version; `changed` lists them. Returns how many."""
    conn.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {changed} AS
        SELECT i.source, i.{key}, i.inputs_sha256, coalesce(latest.version, 0) + 1 AS version
        FROM {inputs} i
        LEFT JOIN (SELECT source, {key}, version, inputs_sha256 FROM latest_{stored}) latest
             USING (source, {key})
        WHERE latest.inputs_sha256 IS DISTINCT FROM i.inputs_sha256
        """
    )
    columns = ", ".join(f"r.{name}" for name in fields)
    conn.execute(
        f"""
        INSERT INTO {stored}
        SELECT c.source, c.{key}, c.version, ?, ?, c.inputs_sha256, {columns}
        FROM {changed} c JOIN {computed} r USING (source, {key})
        """,
        [reconciliation_id, now],
    )
    return _count(conn, f"SELECT count(*) FROM {changed}")


def _store_runs(conn: Connection, reconciliation_id: int, now: datetime) -> int:
    """A new version for each run whose inputs changed; its records with it, but for plain
    matches (`compare.PLAIN_SQL`: the view `latest_record_results` gives those back from their
    manifest rows). Returns how many."""
    count = _new_versions(
        conn,
        key="run_id",
        inputs="r_run_inputs",
        computed="r_runs",
        stored="run_results",
        changed="r_changed",
        fields=RUN_FIELDS,
        reconciliation_id=reconciliation_id,
        now=now,
    )
    record_columns = ", ".join(f"r.{name}" for name in RECORD_FIELDS)
    conn.execute(
        f"""
        INSERT INTO record_results
        SELECT r.source, r.run_id, c.version, {record_columns},
               CASE WHEN r.category IN {compare.BREAK_CATEGORIES} THEN {BREAK_ID_SQL} END
        FROM r_records r JOIN r_changed c USING (source, run_id)
        WHERE NOT {compare.PLAIN_SQL}
        """
    )
    return count


def _store_days(conn: Connection, reconciliation_id: int, now: datetime) -> int:
    """A new version for each day whose runs' inputs changed. Returns how many."""
    conn.execute(
        """
        CREATE OR REPLACE TEMP TABLE r_day_inputs AS
        WITH day_runs AS (
            SELECT DISTINCT source, business_date, run_id FROM r_fine
            WHERE business_date IS NOT NULL
            UNION SELECT source, business_date, run_id FROM r_runs WHERE business_date IS NOT NULL)
        SELECT d.source, d.business_date,
               sha256(string_agg(d.run_id || '=' || i.inputs_sha256, ',' ORDER BY d.run_id))
                   AS inputs_sha256
        FROM day_runs d JOIN r_run_inputs i USING (source, run_id)
        GROUP BY d.source, d.business_date
        """
    )
    return _new_versions(
        conn,
        key="business_date",
        inputs="r_day_inputs",
        computed="r_days",
        stored="day_results",
        changed="r_days_changed",
        fields=DAY_FIELDS,
        reconciliation_id=reconciliation_id,
        now=now,
    )


def _update_breaks(conn: Connection, now: datetime) -> tuple[int, int]:
    """Open or refresh a break for each non-matched record of a changed run; resolve breaks whose
    record now matches, and failed or missing ones a later run processed successfully."""
    before_total = _count(conn, "SELECT count(*) FROM breaks")
    before_resolved = _count(conn, "SELECT count(*) FROM breaks WHERE status = 'resolved'")
    changed = _count(conn, "SELECT count(*) FROM r_changed")  # none: those steps find nothing
    # The changed runs' breaks from earlier reconciliations (none on a run's first): only
    # they can be refreshed, or resolved as matched or gone.
    earlier = changed and _count(
        conn, "SELECT count(*) FROM breaks b SEMI JOIN r_changed c USING (source, run_id)"
    )
    if changed:
        _update_changed_runs(conn, now, earlier=bool(earlier), empty=not before_total)
    conn.execute(
        """
        UPDATE breaks SET status = 'resolved', resolved_at = $now, resolved_by = 'recon:auto',
               resolution = 'processed successfully in run ' || later.run_id
        FROM (SELECT g.source, g.txn_id, g.run_id, o.run_at FROM r_groups g
              JOIN r_run_order o USING (source, run_id) WHERE g.successes > 0) later,
             r_run_order mine
        WHERE breaks.status = 'open' AND breaks.category IN ('failed', 'missing')
          AND later.source = breaks.source AND later.txn_id = breaks.txn_id
          AND later.run_id <> breaks.run_id
          AND mine.source = breaks.source AND mine.run_id = breaks.run_id
          AND later.run_at > mine.run_at
        """,
        {"now": now},
    )
    if earlier:
        _resolve_gone(conn, now)
    opened = _count(conn, "SELECT count(*) FROM breaks") - before_total
    after_resolved = _count(conn, "SELECT count(*) FROM breaks WHERE status = 'resolved'")
    return opened, max(after_resolved - before_resolved, 0)


def _update_changed_runs(conn: Connection, now: datetime, *, earlier: bool, empty: bool) -> None:
    """Open or refresh the breaks of the changed runs' records; resolve those whose record
    now matches. Without `earlier` breaks of those runs none can be resolved; in an `empty`
    register every break is new (no conflict to look for)."""
    opening = f"""
        INSERT INTO breaks
        SELECT {BREAK_ID_SQL}, r.source, r.run_id, r.txn_id, r.business_date, r.category,
               r.expected_amount, r.processed_amount, r.currency, r.error_code, r.error_message,
               r.note, $now, $now, 'open', NULL, NULL, NULL, NULL
        FROM r_records r JOIN r_changed c USING (source, run_id)
        WHERE r.category IN {compare.BREAK_CATEGORIES}
        """
    if empty:
        conn.execute(opening, {"now": now})
        return
    conn.execute(
        opening
        + """
        ON CONFLICT (break_id) DO UPDATE SET
            category = excluded.category, business_date = excluded.business_date,
            expected_amount = excluded.expected_amount,
            processed_amount = excluded.processed_amount, currency = excluded.currency,
            error_code = excluded.error_code, error_message = excluded.error_message,
            note = excluded.note, last_seen = excluded.last_seen,
            -- A person's resolution stands; one made by recon is undone when the break is back.
            status = CASE WHEN breaks.resolved_by = 'recon:auto' THEN 'open' ELSE breaks.status END,
            resolved_at = CASE WHEN breaks.resolved_by = 'recon:auto' THEN NULL
                               ELSE breaks.resolved_at END,
            resolution = CASE WHEN breaks.resolved_by = 'recon:auto' THEN NULL
                              ELSE breaks.resolution END,
            resolved_by = CASE WHEN breaks.resolved_by = 'recon:auto' THEN NULL
                               ELSE breaks.resolved_by END
        """,
        {"now": now},
    )
    if not earlier:
        return
    conn.execute(
        """
        UPDATE breaks SET status = 'resolved', resolved_at = $now, resolved_by = 'recon:auto',
               resolution = 'matched when reconciled again'
        FROM r_records r JOIN r_changed c USING (source, run_id)
        WHERE breaks.status = 'open' AND r.category = 'matched'
          AND breaks.source = r.source AND breaks.run_id = r.run_id AND breaks.txn_id = r.txn_id
        """,
        {"now": now},
    )


def _resolve_gone(conn: Connection, now: datetime) -> None:
    """Resolve the open breaks of changed runs whose record is no longer in the run."""
    conn.execute(
        """
        UPDATE breaks SET status = 'resolved', resolved_at = $now, resolved_by = 'recon:auto',
               resolution = 'no longer in the run: its files were replaced'
        FROM r_changed c
        WHERE breaks.status = 'open' AND breaks.source = c.source AND breaks.run_id = c.run_id
          AND NOT EXISTS (SELECT 1 FROM r_records r WHERE r.source = breaks.source
                          AND r.run_id = breaks.run_id AND r.txn_id = breaks.txn_id)
        """,
        {"now": now},
    )


def _withdraw_vanished(conn: Connection, scope: Scope, now: datetime) -> dict[str, Any]:
    """Runs with stored results in `scope` whose inputs are all gone (`recon forget` removed
    the only load that made them): their results are withdrawn (every version: they were
    computed from data taken back as a mistake), and so are the results of days left with no
    run; their open breaks are resolved by recon, saying why."""
    conn.execute(
        """
        CREATE OR REPLACE TEMP TABLE r_vanished AS
        SELECT l.source, l.run_id, l.business_date FROM latest_run_results l
        WHERE ($source IS NULL OR l.source = $source) AND ($run_id IS NULL OR l.run_id = $run_id)
          AND ($since IS NULL OR l.business_date >= $since)
          AND ($until IS NULL OR l.business_date <= $until)
          AND (l.business_date IS NOT NULL OR ($since IS NULL AND $until IS NULL))
          AND NOT EXISTS (SELECT 1 FROM r_scope s WHERE s.source = l.source AND s.run_id = l.run_id)
        """,
        {
            "source": scope.source,
            "run_id": scope.run_id,
            "since": scope.since,
            "until": scope.until,
        },
    )
    # Nearly always none: only then are the inputs looked for (a scan of every loaded row).
    if not _count(conn, "SELECT count(*) FROM r_vanished"):
        conn.execute("DROP TABLE r_vanished")
        return {"runs": 0, "breaks": 0}
    conn.execute(
        """
        DELETE FROM r_vanished l
        WHERE EXISTS (SELECT 1 FROM transactions t
                      WHERE t.source = l.source AND t.run_id = l.run_id)
           OR EXISTS (SELECT 1 FROM expected_transactions e
                      WHERE e.source = l.source AND e.run_id = l.run_id)
           OR EXISTS (SELECT 1 FROM control_totals c
                      WHERE c.source = l.source AND c.run_id = l.run_id)
        """
    )
    runs = _count(conn, "SELECT count(*) FROM r_vanished")
    if not runs:
        conn.execute("DROP TABLE r_vanished")
        return {"runs": 0, "breaks": 0}
    before = _count(conn, "SELECT count(*) FROM breaks WHERE status = 'resolved'")
    conn.execute(
        """
        UPDATE breaks SET status = 'resolved', resolved_at = $now, resolved_by = 'recon:auto',
               resolution = 'its run is no longer in the store: the file was forgotten'
        FROM r_vanished v
        WHERE breaks.status = 'open' AND breaks.source = v.source AND breaks.run_id = v.run_id
        """,
        {"now": now},
    )
    for table in ("record_results", "run_results"):
        conn.execute(
            f"DELETE FROM {table} t USING r_vanished v "
            "WHERE t.source = v.source AND t.run_id = v.run_id"
        )
    conn.execute(
        """
        DELETE FROM day_results d USING (SELECT DISTINCT source, business_date FROM r_vanished) v
        WHERE d.source = v.source AND d.business_date = v.business_date
          AND NOT EXISTS (SELECT 1 FROM r_days r
                          WHERE r.source = d.source AND r.business_date = d.business_date)
        """
    )
    resolved = _count(conn, "SELECT count(*) FROM breaks WHERE status = 'resolved'") - before
    conn.execute("DROP TABLE r_vanished")
    return {"runs": runs, "breaks": resolved}


def _results(
    conn: Connection, computed: str, stored: str, key: list[str], order: str
) -> list[dict[str, Any]]:
    """The scope's results as computed now, with the stored version they correspond to."""
    on = " AND ".join(f"s.{k} = c.{k}" for k in key)
    return fetch_dicts(
        conn,
        f"""
        SELECT c.*, s.version, s.reconciled_at
        FROM {computed} c
        LEFT JOIN latest_{stored} s ON {on}
        ORDER BY c.source, c.{order}
        """,
    )


def latest_days(conn: Connection, source: str, day: Any) -> list[dict[str, Any]]:
    """The latest stored result of `source`'s business `day` (one row, or none)."""
    return fetch_dicts(
        conn,
        "SELECT * FROM latest_day_results WHERE source = ? AND business_date = ?",
        [source, day],
    )


def history(
    conn: Connection, *, source: str | None, run_id: str | None, day: Any | None
) -> list[dict[str, Any]]:
    """Every stored version of a run's or a day's results, oldest first."""
    if run_id:
        return fetch_dicts(
            conn,
            "SELECT * FROM run_results WHERE run_id = ? AND (?::VARCHAR IS NULL OR source = ?) "
            "ORDER BY source, version",
            [run_id, source, source],
        )
    return fetch_dicts(
        conn,
        "SELECT * FROM day_results WHERE business_date = ? "
        "AND (?::VARCHAR IS NULL OR source = ?) ORDER BY source, version",
        [day, source, source],
    )
