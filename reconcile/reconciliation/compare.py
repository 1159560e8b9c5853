"""Expected versus processed: every record gets one category; runs and days get control totals.

All of it is SQL over the store, into temporary tables that `refresh.py` persists:

- `r_scope`: the runs asked for (by run, business date range and source);
- `r_records`: one row per record of those runs, with its category (docs/contract.md, "Categories");
- `r_fine`: the records' totals per run, business day and currency pair (one pass over them);
- `r_runs`, `r_days`: counts per category, expected and processed counts and amounts (debits
  and credits apart), differences and status per run and per business day.

A *record* is an expected transaction (a manifest row) together with its processing attempts in
the same run, or a transaction a run processed that its run did not expect. Attempts of a
transaction expected by an earlier run (a failure re-processed the next day) are a record of the
run that made them, noted with the run that expected it: a success there is `matched`, unless the
transaction had already succeeded (then `duplicated`, posted twice).

Control totals (`recon expect` or a totals file) give a run's expected count and amount. A run
without a manifest is judged on them and on its log alone (failed and duplicated records); a run
that is expected but has not arrived is `pending`, and its expected records are not `missing`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from reconcile.errors import ReconError
from reconcile.reconciliation.scope import Scope
from reconcile.store.db import Connection

BREAK_CATEGORIES = ("failed", "missing", "duplicated", "unexpected", "amount_mismatch")
CATEGORIES = ("matched", *BREAK_CATEGORIES)
# A *plain match*: a record whose stored row would say nothing its manifest row does not. Only
# the other records are stored in `record_results` (issue 14: a million rows saying "matched"
# cost more than the classification); the `latest_record_results` view gives the plain ones
# back from their manifest rows (reconcile/store/later_steps.py, 014): expected by this run's
# manifest in its only row for the record (naming the run and a business date), processed once,
# successfully, at exactly the expected amount and in the expected currency, with no note.
PLAIN_SQL = (
    "(r.category = 'matched' AND r.plain_source AND r.is_expected AND r.attempts = 1"
    " AND r.successes = 1 AND r.failures = 0 AND r.note = ''"
    " AND r.processed_amount = r.expected_amount AND r.processed_total = r.expected_amount"
    " AND r.business_date IS NOT NULL AND r.error_code IS NULL AND r.error_message IS NULL"
    " AND r.currency IS NOT DISTINCT FROM r.expected_currency)"
)
# Bumped when the classification changes, so stored results are recomputed, not trusted.
ALGORITHM = "compare-4"
ALL = "all"  # every break category


class CategoryError(ReconError):
    """A category list naming no category, or one that does not exist."""

    exit_code = 2


def parse_categories(text: str) -> list[str]:
    """`failed,missing` as a list; `all` is every break category (matched is never a break)."""
    if text.strip() == ALL:
        return list(BREAK_CATEGORIES)
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [c for c in chosen if c not in CATEGORIES]
    if unknown or not chosen:
        raise CategoryError(
            f"unknown category {', '.join(unknown) or '(none)'}; choose from "
            f"{', '.join(CATEGORIES)} or '{ALL}'"
        )
    return chosen


@dataclass(frozen=True)
class Tolerance:
    """How far a processed amount may differ from the expected one and still match."""

    absolute: Decimal = Decimal(0)
    percent: Decimal = Decimal(0)


def classify(conn: Connection, scope: Scope, tolerances: dict[str, Tolerance]) -> None:
    """Build `r_scope`, `r_records`, `r_runs` and `r_days` for `scope` (temporary tables)."""
    if scope.last:
        raise ValueError("resolve the scope's latest business date first (Scope.resolve)")
    _tolerances(conn, tolerances)
    params = {
        "source": scope.source,
        "run_id": scope.run_id,
        "since": scope.since,
        "until": scope.until,
        "algorithm": ALGORITHM,
    }
    everything = scope == Scope()
    for number, statement in enumerate(_STATEMENTS):
        if number == 2 and not everything:
            # r_scope is made: a scope holding every run (the first daily job of a store) and
            # no manifest row without a run narrows nothing either.
            everything = _scope_is_everything(conn)
        if everything and "r_txns" in statement:
            # Every run is in scope, so every transaction id is too: narrowing the rows to the
            # scope's ids (a million-row DISTINCT and two joins) would change nothing.
            if "CREATE OR REPLACE TEMP TABLE r_txns" in statement:
                continue
            for narrowing in _ONLY_TXNS.values():
                statement = statement.replace(narrowing, "")
        # Each statement gets the named parameters it uses (DuckDB refuses unused ones).
        conn.execute(statement, {k: v for k, v in params.items() if f"${k}" in statement})


def _scope_is_everything(conn: Connection) -> bool:
    """Whether `r_scope` holds every run of the store and no manifest row lacks a run: then
    `r_txns` would hold every transaction id (narrowing to it changes nothing)."""
    row = conn.execute(
        """
        SELECT NOT EXISTS (SELECT 1 FROM r_all_runs WHERE NOT in_scope)
               AND NOT EXISTS (SELECT 1 FROM expected_transactions WHERE run_id IS NULL)
        """
    ).fetchone()
    return bool(row and row[0])


def _tolerances(conn: Connection, tolerances: dict[str, Tolerance]) -> None:
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE r_tolerance "
        "(source VARCHAR, absolute DECIMAL(18, 4), percent DECIMAL(9, 4), text VARCHAR)"
    )
    for source, tolerance in tolerances.items():
        conn.execute(
            "INSERT INTO r_tolerance VALUES (?, ?, ?, ?)",
            [
                source,
                tolerance.absolute,
                tolerance.percent,
                f"abs={tolerance.absolute};pct={tolerance.percent}",
            ],
        )


def drop_temporaries(conn: Connection) -> None:
    for name in (
        "r_tolerance",
        "r_all_runs",
        "r_scope",
        "r_txns",
        "r_exp",
        "r_groups",
        "r_run_order",
        "r_run_info",
        "r_records",
        "r_fine",
        "r_runs",
        "r_days",
        "r_run_inputs",
        "r_changed",
        "r_day_inputs",
        "r_days_changed",
        "r_currencies",
    ):
        conn.execute(f"DROP TABLE IF EXISTS {name}")


# Totals over records, per run and per business day alike.
_RECORD_TOTALS = """
               count(*) FILTER (is_expected) AS manifest_count,
               sum(expected_amount) FILTER (is_expected) AS manifest_amount,
               sum(expected_amount) FILTER (is_expected AND expected_amount > 0) AS manifest_debits,
               sum(expected_amount) FILTER (is_expected AND expected_amount < 0) AS manifest_credits,
               count(*) FILTER (attempts > 0) AS processed_count,
               sum(processed_total) AS processed_amount,
               sum(processed_debits) AS processed_debits,
               sum(processed_credits) AS processed_credits,
               count(*) FILTER (category = 'matched') AS matched,
               count(*) FILTER (category = 'failed') AS failed,
               count(*) FILTER (category = 'missing') AS missing,
               count(*) FILTER (category = 'duplicated') AS duplicated,
               count(*) FILTER (category = 'unexpected') AS unexpected,
               count(*) FILTER (category = 'amount_mismatch') AS amount_mismatch,
               count(*) FILTER (category = 'pending') AS pending_records
"""

# The same totals added up from `r_fine` (counts stay BIGINT).
_ROLLUP = ",\n".join(
    [
        *(
            f"sum({name})::BIGINT AS {name}"
            for name in (
                "manifest_count",
                "processed_count",
                "matched",
                "failed",
                "missing",
                "duplicated",
                "unexpected",
                "amount_mismatch",
                "pending_records",
            )
        ),
        *(
            f"sum({name}) AS {name}"
            for name in (
                "manifest_amount",
                "manifest_debits",
                "manifest_credits",
                "processed_amount",
                "processed_debits",
                "processed_credits",
            )
        ),
    ]
)

# The rows of the scope's transaction ids (`r_txns`), in two steps: the row ids found from the
# two key columns alone, then only those rows read whole. One join reading every column of every
# row costs more the more history the table holds; the two steps read the wide columns of the
# few rows wanted only (the engine skips the rest by row id).
_ONLY_TXNS = {
    alias: f" WHERE {alias}.rowid IN (SELECT rowid FROM {table} SEMI JOIN r_txns USING (source, txn_id))"
    for alias, table in (("t", "transactions"), ("e", "expected_transactions"))
}

_STATEMENTS = [
    # The runs asked for: any run with processed rows, manifest rows or control totals that
    # matches the filters. Control totals carry no date: a run known only from them is in a
    # date-filtered scope only once its log or manifest places it on a day.
    """
    CREATE OR REPLACE TEMP TABLE r_all_runs AS  -- every run, and whether it is asked for
    SELECT source, run_id, coalesce(bool_or(
        ($source IS NULL OR source = $source)
        AND ($run_id IS NULL OR run_id = $run_id)
        AND ($since IS NULL OR business_date >= $since)
        AND ($until IS NULL OR business_date <= $until)
        AND (business_date IS NOT NULL OR ($since IS NULL AND $until IS NULL))), false)
        AS in_scope
    FROM (
        SELECT source, run_id, business_date FROM transactions
        UNION ALL SELECT source, run_id, business_date FROM expected_transactions
                  WHERE run_id IS NOT NULL
        UNION ALL SELECT source, run_id, NULL FROM control_totals)
    GROUP BY source, run_id
    """,
    "CREATE OR REPLACE TEMP TABLE r_scope AS SELECT source, run_id FROM r_all_runs WHERE in_scope",
    # Every transaction id that a run in scope expected or processed: the records of the scope
    # depend on these ids' rows in every run (re-processing, posting twice).
    """
    CREATE OR REPLACE TEMP TABLE r_txns AS
    WITH scope_days AS (  -- the days the scope's runs processed, for manifest rows without a run
        SELECT DISTINCT source, business_date FROM transactions JOIN r_scope USING (source, run_id))
    SELECT DISTINCT source, txn_id FROM transactions JOIN r_scope USING (source, run_id)
    UNION
    SELECT DISTINCT source, txn_id FROM expected_transactions JOIN r_scope USING (source, run_id)
    UNION
    SELECT DISTINCT source, txn_id FROM expected_transactions JOIN scope_days
        USING (source, business_date) WHERE run_id IS NULL
    """,
    # Attempts per (source, run, txn): how many succeeded and failed, the first success's amount,
    # the last failure's error, and the files they came from.
    """
    CREATE OR REPLACE TEMP TABLE r_groups AS
    SELECT source, run_id, txn_id,
           count(*) AS attempts,
           count(*) FILTER (outcome = 'success') AS successes,
           count(*) FILTER (outcome = 'failure') AS failures,
           arg_min(amount, seq) FILTER (outcome = 'success') AS success_amount,
           arg_min(currency, seq) FILTER (outcome = 'success') AS success_currency,
           arg_max(amount, seq) AS last_amount,
           arg_max(currency, seq) AS last_currency,
           coalesce(sum(amount) FILTER (outcome = 'success'), 0) AS processed_amount,
           coalesce(sum(amount) FILTER (outcome = 'success' AND amount > 0), 0) AS processed_debits,
           coalesce(sum(amount) FILTER (outcome = 'success' AND amount < 0), 0) AS processed_credits,
           arg_max(error_code, seq) FILTER (outcome = 'failure') AS error_code,
           arg_max(error_message, seq) FILTER (outcome = 'failure') AS error_message,
           min(business_date) AS business_date,
           min(file_id) AS first_file_id, max(file_id) AS last_file_id
    FROM (SELECT t.*, (t.file_id << 40) + t.line AS seq  -- file order, then line order
          FROM transactions t"""
    + _ONLY_TXNS["t"]
    + """)
    GROUP BY source, run_id, txn_id
    """,
    # When each run happened, to tell earlier from later.
    """
    CREATE OR REPLACE TEMP TABLE r_run_order AS
    SELECT source, run_id, coalesce(first_processed_at, first_ingested_at) AS run_at
    FROM runs
    """,
    # Expected records: the latest manifest row per (source, run, txn). A manifest row without a
    # run belongs to the earliest run that processed the transaction on its business date, else
    # (nobody processed it) to the first run of that date, where it is missing.
    """
    CREATE OR REPLACE TEMP TABLE r_exp AS
    WITH latest AS (  -- a manifest row sent again later replaces the earlier one
        SELECT source, run_id, txn_id, arg_max(amount, seq) AS amount,
               arg_max(currency, seq) AS currency, arg_max(business_date, seq) AS business_date,
               max(file_id) AS file_id, count(*) AS manifest_rows
        FROM (SELECT e.*, (e.file_id << 40) + e.line AS seq
              FROM expected_transactions e"""
    + _ONLY_TXNS["e"]
    + """)
        GROUP BY source, run_id, txn_id),
    day_first AS (  -- the first run of each business day (by time, then by id)
        SELECT g.source, g.business_date, g.run_id
        FROM (SELECT DISTINCT source, run_id, business_date FROM r_groups) g
        JOIN r_run_order o USING (source, run_id)
        QUALIFY row_number() OVER (PARTITION BY g.source, g.business_date
                                   ORDER BY o.run_at NULLS LAST, g.run_id) = 1),
    runless AS (  -- else, a transaction no run processed is the first run of its day's to miss
        SELECT l.source, coalesce(g.run_id, d.run_id) AS run_id, l.txn_id, l.amount,
               l.currency, l.business_date, l.file_id, false AS single
        FROM latest l
        LEFT JOIN r_groups g ON g.source = l.source AND g.txn_id = l.txn_id
             AND (l.business_date IS NULL OR g.business_date = l.business_date)
        LEFT JOIN r_run_order o ON o.source = g.source AND o.run_id = g.run_id
        LEFT JOIN day_first d ON d.source = l.source AND d.business_date = l.business_date
        WHERE l.run_id IS NULL
        QUALIFY row_number() OVER (PARTITION BY l.source, l.txn_id
                                   ORDER BY o.run_at NULLS LAST, g.run_id) = 1)
    -- single: the record's only manifest row, naming its run (see `plain` in r_records)
    SELECT source, run_id, txn_id, amount, currency, business_date, file_id,
           manifest_rows = 1 AS single
    FROM latest WHERE run_id IS NOT NULL
    UNION ALL SELECT * FROM runless
    """,
    # What the records need of their run, in one small table (one join). Its own statement, not
    # a CTE of r_records: there, its two scans of r_exp and r_groups (this transaction's own
    # temporary rows) ran while the records' large join held its hash table, and DuckDB could
    # not pin a block to go on (OutOfMemoryException: 3M records failed at 1 GB and at 100 MB,
    # even on one thread; 30M at 1 GB in issue 14). Made first, the same work fits: 3M records
    # at 100 MB, 30M at the 1 GB default.
    """
    CREATE OR REPLACE TEMP TABLE r_run_info AS
    WITH manifests AS (SELECT DISTINCT source, run_id FROM r_exp),
    run_days AS (  -- a run's business date, for expected records that carry none
        SELECT source, run_id, min(business_date) AS business_date FROM r_groups GROUP BY ALL)
    SELECT s.source, s.run_id, m.run_id IS NOT NULL AS has_manifest,
           d.business_date AS run_day, a.run_id IS NOT NULL AS arrived,
           t.absolute, t.percent
    FROM r_scope s
    LEFT JOIN manifests m ON m.source = s.source AND m.run_id = s.run_id
    LEFT JOIN run_days d ON d.source = s.source AND d.run_id = s.run_id
    LEFT JOIN (SELECT DISTINCT source, run_id FROM runs) a
         ON a.source = s.source AND a.run_id = s.run_id
    LEFT JOIN r_tolerance t ON t.source = s.source
    """,
    # One row per record, with what the category needs.
    """
    CREATE OR REPLACE TEMP TABLE r_records AS
    WITH repeated AS (  -- the few transactions attempted by more than one run
        SELECT source, txn_id FROM r_groups GROUP BY source, txn_id HAVING count(*) > 1),
    prior AS (  -- successes of the same transaction in earlier runs
        SELECT g.source, g.run_id, g.txn_id,
               coalesce(sum(g.successes) OVER (
                   PARTITION BY g.source, g.txn_id ORDER BY o.run_at, g.run_id
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS prior_successes
        FROM r_groups g JOIN repeated USING (source, txn_id)
        LEFT JOIN r_run_order o USING (source, run_id)),
    grouped AS (
        SELECT g.*, coalesce(p.prior_successes, 0) AS prior_successes
        FROM r_groups g LEFT JOIN prior p USING (source, run_id, txn_id)),
    unowned AS (  -- attempts their own run did not expect
        SELECT g.source, g.txn_id FROM r_groups g
        ANTI JOIN r_exp e ON e.source = g.source AND e.run_id = g.run_id AND e.txn_id = g.txn_id),
    owner AS (  -- for those: the latest other run that expected the transaction
        SELECT e.source, e.txn_id, e.run_id AS owner_run, e.amount AS owner_amount,
               e.currency AS owner_currency, e.business_date AS owner_business_date
        FROM r_exp e SEMI JOIN unowned u ON u.source = e.source AND u.txn_id = e.txn_id
        LEFT JOIN r_run_order o USING (source, run_id)
        QUALIFY row_number() OVER (PARTITION BY e.source, e.txn_id
                                   ORDER BY o.run_at DESC NULLS LAST, e.run_id DESC) = 1),
    quarantined AS (  -- the staged txn_id (older rows: the raw row's, if named so)
        SELECT source, run_id, coalesce(txn_id, json_extract_string(raw, '$.txn_id')) AS txn_id,
               min(line) AS line, arg_min(path, line) AS path, arg_min(reason, line) AS reason
        FROM quarantine WHERE kind = 'processed' AND run_id IS NOT NULL
          AND (source, run_id) IN (SELECT source, run_id FROM r_scope)  -- not the history's
        GROUP BY ALL),
    joined AS (
        SELECT coalesce(e.source, g.source) AS source,
               coalesce(e.run_id, g.run_id) AS run_id,
               coalesce(e.txn_id, g.txn_id) AS txn_id,
               e.txn_id IS NOT NULL AS is_expected,
               e.amount AS expected_amount, e.currency AS expected_currency,
               e.business_date AS expected_business_date, e.file_id AS expected_file_id,
               e.single AS expected_single,
               g.* EXCLUDE (source, run_id, txn_id)
        FROM r_exp e FULL OUTER JOIN grouped g
             ON e.source = g.source AND e.run_id = g.run_id AND e.txn_id = g.txn_id)
    SELECT j.source, j.run_id, j.txn_id, j.is_expected,
           coalesce(j.expected_business_date, j.business_date, o.owner_business_date,
                    s.run_day) AS business_date,
           CASE
               WHEN j.is_expected AND NOT s.arrived THEN 'pending'
               WHEN j.is_expected AND coalesce(j.attempts, 0) = 0 THEN 'missing'
               WHEN NOT j.is_expected AND o.owner_run IS NULL AND s.has_manifest
                   THEN 'unexpected'
               WHEN j.successes > 1 THEN 'duplicated'
               WHEN NOT j.is_expected AND o.owner_run IS NOT NULL AND j.successes = 1
                    AND j.prior_successes > 0 THEN 'duplicated'
               WHEN j.successes = 0 THEN 'failed'
               WHEN coalesce(j.expected_amount, o.owner_amount) IS NOT NULL AND (
                    abs(j.success_amount - coalesce(j.expected_amount, o.owner_amount))
                        > greatest(coalesce(s.absolute, 0), coalesce(s.percent, 0) / 100
                                   * abs(coalesce(j.expected_amount, o.owner_amount)))
                    OR coalesce(j.success_currency <> coalesce(j.expected_currency,
                                                               o.owner_currency), false))
                   THEN 'amount_mismatch'
               ELSE 'matched'
           END AS category,
           coalesce(j.expected_amount, o.owner_amount) AS expected_amount,
           coalesce(j.success_amount, j.last_amount) AS processed_amount,
           coalesce(j.success_currency, j.expected_currency, o.owner_currency, j.last_currency)
               AS currency,
           coalesce(j.expected_currency, o.owner_currency) AS expected_currency,
           coalesce(j.attempts, 0) AS attempts, coalesce(j.successes, 0) AS successes,
           coalesce(j.failures, 0) AS failures,
           coalesce(j.processed_amount, 0) AS processed_total,
           coalesce(j.processed_debits, 0) AS processed_debits,
           coalesce(j.processed_credits, 0) AS processed_credits,
           j.error_code, j.error_message,
           CASE WHEN NOT j.is_expected THEN o.owner_run END AS expected_in_run,
           concat_ws('; ',
               CASE WHEN NOT j.is_expected AND o.owner_run IS NOT NULL
                    THEN 'expected in run ' || o.owner_run END,
               CASE WHEN NOT j.is_expected AND o.owner_run IS NOT NULL AND j.prior_successes > 0
                    THEN 'already processed successfully before this run' END,
               CASE WHEN j.successes >= 1 AND j.failures > 0
                    THEN 'succeeded on retry after ' || j.failures || ' failed attempt(s)' END,
               CASE WHEN j.success_currency <> coalesce(j.expected_currency, o.owner_currency)
                    THEN 'currency ' || coalesce(j.expected_currency, o.owner_currency)
                         || ' expected, ' || j.success_currency || ' processed' END,
               CASE WHEN coalesce(j.attempts, 0) = 0 AND q.line IS NOT NULL
                    THEN 'row quarantined (' || regexp_extract(q.path, '[^/]*$') || ' line '
                         || q.line || ': ' || q.reason || ')'
               END) AS note,
           j.first_file_id, j.last_file_id, j.expected_file_id,
           coalesce(j.expected_single AND j.expected_business_date IS NOT NULL, false)
               AS plain_source
    FROM joined j
    JOIN r_run_info s ON s.source = j.source AND s.run_id = j.run_id
    LEFT JOIN owner o ON NOT j.is_expected AND o.source = j.source AND o.txn_id = j.txn_id
    LEFT JOIN quarantined q ON q.source = j.source AND q.run_id = j.run_id AND q.txn_id = j.txn_id
    """,
    # What is left of the inputs once records are made: only what the break register reads
    # (refresh._update_breaks: a failed or missing break resolved by a later run's success),
    # the successful attempts of the transactions that have or will have such an open break;
    # the rest goes now, so that a large scope holds (or spills) less at once.
    "DROP TABLE IF EXISTS r_exp",
    "DROP TABLE IF EXISTS r_run_info",
    "DROP TABLE IF EXISTS r_txns",
    """
    CREATE OR REPLACE TEMP TABLE r_groups AS
    SELECT source, run_id, txn_id, successes FROM r_groups
    WHERE successes > 0 AND (source, txn_id) IN (
        SELECT source, txn_id FROM breaks
        WHERE status = 'open' AND category IN ('failed', 'missing')
        UNION ALL SELECT source, txn_id FROM r_records WHERE category IN ('failed', 'missing'))
    """,
    # One pass over the records: their totals per run, business day and currency pair, which
    # the runs, the days (and refresh: the days' inputs, the amounts per currency) add up.
    """
    CREATE OR REPLACE TEMP TABLE r_fine AS
    SELECT source, run_id, business_date,
           coalesce(expected_currency, currency) AS expected_side_currency, currency,
    """
    + _RECORD_TOTALS
    + """,
           count(*) FILTER (expected_in_run IS NOT NULL) AS reprocessed,
           count(*) FILTER (category = 'matched' AND failures > 0) AS retried,
           sum(processed_total) FILTER (attempts > 0) AS attempted_amount
    FROM r_records GROUP BY ALL
    """,
    # Per run: control totals (the latest statement per run), counts per category, amounts.
    """
    CREATE OR REPLACE TEMP TABLE r_runs AS
    WITH totals AS (
        SELECT source, run_id, expected_count, expected_amount, file_id, recorded_at
        FROM control_totals JOIN r_scope USING (source, run_id)
        QUALIFY row_number() OVER (PARTITION BY source, run_id
                                   ORDER BY recorded_at DESC, file_id DESC NULLS LAST) = 1),
    agg AS (
        SELECT source, run_id, min(business_date) AS business_date,
    """
    + _ROLLUP
    + """,
               sum(reprocessed)::BIGINT AS reprocessed, sum(retried)::BIGINT AS retried
        FROM r_fine GROUP BY source, run_id)
    SELECT s.source, s.run_id,
           a.business_date,
           coalesce(a.manifest_count, 0) > 0 AS has_manifest,
           t.run_id IS NOT NULL AS has_totals,
           r.run_id IS NOT NULL AS arrived,
           coalesce(t.expected_count, a.manifest_count, 0) AS expected_count,
           coalesce(a.processed_count, 0) AS processed_count,
           coalesce(a.matched, 0) AS matched, coalesce(a.failed, 0) AS failed,
           coalesce(a.missing, 0) AS missing, coalesce(a.duplicated, 0) AS duplicated,
           coalesce(a.unexpected, 0) AS unexpected,
           coalesce(a.amount_mismatch, 0) AS amount_mismatch,
           coalesce(a.pending_records, 0) AS pending_records,
           coalesce(a.reprocessed, 0) AS reprocessed, coalesce(a.retried, 0) AS retried,
           coalesce(t.expected_amount, a.manifest_amount, 0)::DECIMAL(38, 4) AS expected_amount,
           coalesce(a.processed_amount, 0)::DECIMAL(38, 4) AS processed_amount,
           CASE WHEN t.expected_amount IS NULL OR a.manifest_count > 0
                THEN coalesce(a.manifest_debits, 0) END::DECIMAL(38, 4) AS expected_debits,
           CASE WHEN t.expected_amount IS NULL OR a.manifest_count > 0
                THEN coalesce(a.manifest_credits, 0) END::DECIMAL(38, 4) AS expected_credits,
           coalesce(a.processed_debits, 0)::DECIMAL(38, 4) AS processed_debits,
           coalesce(a.processed_credits, 0)::DECIMAL(38, 4) AS processed_credits
    FROM r_scope s
    LEFT JOIN agg a USING (source, run_id)
    LEFT JOIN totals t USING (source, run_id)
    LEFT JOIN (SELECT DISTINCT source, run_id FROM runs) r USING (source, run_id)
    """,
    """
    CREATE OR REPLACE TEMP TABLE r_runs AS
    SELECT r.*,
           r.processed_count - r.expected_count AS count_difference,
           (r.processed_amount - r.expected_amount)::DECIMAL(38, 4) AS amount_difference,
           CASE
               WHEN NOT r.arrived THEN 'pending'
               WHEN r.failed + r.missing + r.duplicated + r.unexpected + r.amount_mismatch > 0
                   THEN 'breaks'
               -- Without a manifest, the control totals are all there is to check against.
               WHEN NOT r.has_manifest AND r.has_totals AND (
                    r.processed_count <> r.expected_count
                    OR abs(r.processed_amount - r.expected_amount) > greatest(
                        coalesce(t.absolute, 0),
                        coalesce(t.percent, 0) / 100 * abs(r.expected_amount)))
                   THEN 'breaks'
               ELSE 'balanced'
           END AS status
    FROM r_runs r LEFT JOIN r_tolerance t USING (source)
    """,
    # Per business day: the records of that day, plus the control totals of runs without a
    # manifest that ran that day.
    """
    CREATE OR REPLACE TEMP TABLE r_days AS
    WITH rec AS (
        SELECT source, business_date,
    """
    + _ROLLUP
    + """
        FROM r_fine WHERE business_date IS NOT NULL GROUP BY source, business_date),
    run_day AS (
        SELECT source, business_date,
               sum(expected_count) FILTER (NOT has_manifest) AS totals_count,
               sum(expected_amount) FILTER (NOT has_manifest) AS totals_amount,
               count(*) FILTER (status = 'pending') AS pending_runs,
               count(*) FILTER (status = 'breaks') AS runs_with_breaks,
               list(run_id ORDER BY run_id) AS run_ids
        FROM r_runs WHERE business_date IS NOT NULL GROUP BY source, business_date)
    SELECT source, business_date,
           (coalesce(rec.manifest_count, 0) + coalesce(run_day.totals_count, 0))::BIGINT
               AS expected_count,
           coalesce(rec.processed_count, 0) AS processed_count,
           coalesce(rec.matched, 0) AS matched, coalesce(rec.failed, 0) AS failed,
           coalesce(rec.missing, 0) AS missing, coalesce(rec.duplicated, 0) AS duplicated,
           coalesce(rec.unexpected, 0) AS unexpected,
           coalesce(rec.amount_mismatch, 0) AS amount_mismatch,
           coalesce(rec.pending_records, 0) AS pending_records,
           (coalesce(rec.manifest_amount, 0) + coalesce(run_day.totals_amount, 0))::DECIMAL(38, 4)
               AS expected_amount,
           coalesce(rec.processed_amount, 0)::DECIMAL(38, 4) AS processed_amount,
           coalesce(rec.manifest_debits, 0)::DECIMAL(38, 4) AS expected_debits,
           coalesce(rec.manifest_credits, 0)::DECIMAL(38, 4) AS expected_credits,
           coalesce(rec.processed_debits, 0)::DECIMAL(38, 4) AS processed_debits,
           coalesce(rec.processed_credits, 0)::DECIMAL(38, 4) AS processed_credits,
           coalesce(run_day.run_ids, []) AS run_ids,
           CASE
               WHEN coalesce(run_day.runs_with_breaks, 0) > 0 OR coalesce(rec.failed, 0)
                    + coalesce(rec.missing, 0) + coalesce(rec.duplicated, 0)
                    + coalesce(rec.unexpected, 0) + coalesce(rec.amount_mismatch, 0) > 0
                   THEN 'breaks'
               WHEN coalesce(run_day.pending_runs, 0) > 0 OR coalesce(rec.pending_records, 0) > 0
                   THEN 'pending'
               ELSE 'balanced'
           END AS status
    FROM rec FULL OUTER JOIN run_day USING (source, business_date)
    """,
    """
    CREATE OR REPLACE TEMP TABLE r_days AS
    SELECT *, processed_count - expected_count AS count_difference,
           (processed_amount - expected_amount)::DECIMAL(38, 4) AS amount_difference
    FROM r_days
    """,
    # What each run's results were computed from: the SHA-256 of the files that fed its records
    # (for each record its manifest file and the first and last file of its attempts: files
    # never change once ingested, and a new one has a higher id), the quarantine, its control
    # totals, the tolerance and the algorithm version.
    """
    CREATE OR REPLACE TEMP TABLE r_run_inputs AS
    WITH files AS (
        SELECT DISTINCT source, run_id, unnest([first_file_id, last_file_id, expected_file_id])
               AS file_id
        FROM (SELECT DISTINCT source, run_id, first_file_id, last_file_id, expected_file_id
              FROM r_records)
        UNION SELECT DISTINCT source, run_id, file_id FROM quarantine JOIN r_scope USING (source, run_id)
        UNION SELECT DISTINCT source, run_id, file_id FROM control_totals
              JOIN r_scope USING (source, run_id) WHERE file_id IS NOT NULL),
    shas AS (
        -- A file read again (--replace after a settings fix) has the same SHA-256 but a new id.
        SELECT f.source, f.run_id,
               string_agg(i.sha256 || '#' || i.file_id, ',' ORDER BY i.sha256, i.file_id) AS shas
        FROM files f JOIN ingested_files i USING (file_id) GROUP BY f.source, f.run_id),
    manual AS (
        SELECT source, run_id,
               string_agg(expected_count || ':' || coalesce(expected_amount::VARCHAR, '') || '@'
                          || recorded_at::VARCHAR, ',' ORDER BY recorded_at) AS manual
        FROM control_totals JOIN r_scope USING (source, run_id) WHERE file_id IS NULL
        GROUP BY source, run_id)
    SELECT s.source, s.run_id,
           sha256(concat_ws('|', $algorithm, coalesce(shas.shas, ''), coalesce(manual.manual, ''),
                            coalesce(t.text, ''), r.arrived::VARCHAR)) AS inputs_sha256
    FROM r_scope s
    LEFT JOIN shas USING (source, run_id)
    LEFT JOIN manual USING (source, run_id)
    LEFT JOIN r_tolerance t USING (source)
    JOIN r_runs r USING (source, run_id)
    """,
]
