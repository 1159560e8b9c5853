"""Amounts per currency, beside the control totals.

A run's or a day's `expected_amount` and `processed_amount` add every currency together, because
that is how upstream systems state control totals (one count, one amount per run). Finance ties
out each currency on its own, so the same records are also totalled per currency: the expected
side in the manifest's currency, the processed side in the currency it was posted in (they differ
for a currency mismatch). Per currency the expected side is known only from manifests: where a
run of the group has none (control totals or its log alone), expected and difference are NULL.

Summed over currencies, the rows give back the manifest totals and the processed totals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconcile.store.db import Connection, fetch_dicts

TOTAL_COLUMNS = [
    "currency",
    "expected_count",
    "expected_amount",
    "processed_count",
    "processed_amount",
    "amount_difference",
]


def fine_sql(records: str, runs: str) -> str:
    """Per (source, run, business date, currency): one pass over `records` (rows shaped like
    `record_results`, with source and run_id) joined to `runs` (source, run_id, has_manifest).
    Runs, days and whole scopes are then totalled from this small table (`totals_sql`)."""
    return f"""
        WITH recs AS (
            SELECT r.source, r.run_id, r.business_date, r.is_expected, r.expected_amount,
                   r.expected_currency, r.currency, r.attempts, r.processed_total,
                   coalesce(u.has_manifest, false) AS has_manifest
            FROM {records} r LEFT JOIN {runs} u USING (source, run_id)),
        sides AS (
            -- A manifest without currencies is read in the currency the record was posted in.
            SELECT source, run_id, business_date, has_manifest,
                   coalesce(expected_currency, currency) AS currency,
                   1 AS expected_count, expected_amount, 0 AS processed_count,
                   NULL::DECIMAL(38, 4) AS processed_amount
            FROM recs WHERE is_expected
            UNION ALL
            SELECT source, run_id, business_date, has_manifest, currency, 0, NULL, 1,
                   processed_total
            FROM recs WHERE attempts > 0)
        SELECT source, run_id, business_date, has_manifest, currency,
               sum(expected_count) AS expected_count, sum(expected_amount) AS expected_amount,
               sum(processed_count) AS processed_count, sum(processed_amount) AS processed_amount
        FROM sides GROUP BY ALL
    """


def fine_from_totals_sql(fine: str, runs: str) -> str:
    """`fine_sql`'s rows from `fine`, the records' totals per (source, run, business date,
    expected side's currency, currency) (compare's `r_fine`), instead of from the records."""
    return f"""
        WITH recs AS (
            SELECT f.*, coalesce(u.has_manifest, false) AS has_manifest
            FROM {fine} f LEFT JOIN {runs} u USING (source, run_id)),
        sides AS (
            SELECT source, run_id, business_date, has_manifest,
                   expected_side_currency AS currency, manifest_count AS expected_count,
                   manifest_amount AS expected_amount, 0 AS processed_count,
                   NULL::DECIMAL(38, 4) AS processed_amount
            FROM recs WHERE manifest_count > 0
            UNION ALL
            SELECT source, run_id, business_date, has_manifest, currency, 0, NULL,
                   processed_count, attempted_amount
            FROM recs WHERE processed_count > 0)
        SELECT source, run_id, business_date, has_manifest, currency,
               sum(expected_count) AS expected_count, sum(expected_amount) AS expected_amount,
               sum(processed_count) AS processed_count, sum(processed_amount) AS processed_amount
        FROM sides GROUP BY ALL
    """


def totals_sql(fine: str, keys: Sequence[str]) -> str:
    """Per (source, *keys, currency) from `fine` (a table or subquery of `fine_sql`)."""
    group = ", ".join(["source", *keys])
    outer = ", ".join(f"s.{column}" for column in ["source", *keys])
    dated = " AND ".join(f"s.{key} IS NOT NULL" for key in keys) or "true"
    return f"""
        WITH known AS (
            SELECT {group}, bool_and(has_manifest) AS expected_known FROM {fine} GROUP BY ALL)
        SELECT {outer}, s.currency,
               CASE WHEN k.expected_known THEN sum(s.expected_count) END::BIGINT
                   AS expected_count,
               CASE WHEN k.expected_known THEN coalesce(sum(s.expected_amount), 0) END
                   ::DECIMAL(38, 4) AS expected_amount,
               sum(s.processed_count)::BIGINT AS processed_count,
               coalesce(sum(s.processed_amount), 0)::DECIMAL(38, 4) AS processed_amount,
               CASE WHEN k.expected_known THEN coalesce(sum(s.processed_amount), 0)
                                               - coalesce(sum(s.expected_amount), 0) END
                   ::DECIMAL(38, 4) AS amount_difference
        FROM {fine} s JOIN known k USING ({group})
        WHERE {dated}
        GROUP BY {outer}, s.currency, k.expected_known
        ORDER BY {outer}, s.currency NULLS LAST
    """


def totals(conn: Connection, fine: str, keys: Sequence[str]) -> list[dict[str, Any]]:
    return fetch_dicts(conn, totals_sql(fine, keys))


def attach(items: list[dict[str, Any]], rows: list[dict[str, Any]], key: str) -> None:
    """Give each run or day in `items` its per-currency rows, as `currencies`."""
    by_item: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for row in rows:
        by_item.setdefault((row["source"], row[key]), []).append(
            {column: row[column] for column in TOTAL_COLUMNS}
        )
    for item in items:
        item["currencies"] = by_item.get((item["source"], item[key]), [])


def mixed(rows: list[dict[str, Any]]) -> bool:
    """Whether the rows' amounts span more than one currency within a source."""
    seen: dict[Any, set[Any]] = {}
    for row in rows:
        seen.setdefault(row["source"], set()).add(row["currency"])
    return any(len(currencies) > 1 for currencies in seen.values())
