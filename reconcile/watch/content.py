"""Content checks: a run that arrives but is wrong is a failure too.

A report with zero rows, half the usual count or ten times the usual failure rate is as much an
incident as one that never came. When a run of a source arrives, each monitor linked to that
source (`recon monitor add ... --source S`) judges it by its thresholds:

    min_transactions          fewer transactions loaded than this (1: an empty run)
    max_count_diff_percent    loaded count differs from the expected count by more than this
                              (expected: the run's control total, else its manifest)
    max_failure_rate_percent  failed / loaded above this
    failure_rate_jump         failure rate above N times the median of the source's 7 runs
                              before it (judged once 3 earlier runs exist, and the median is > 0)

The facts come from one query over `runs`, `control_totals` and `expected_transactions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconcile.store.db import Connection, fetch_dicts

TRAILING_RUNS = 7
MIN_HISTORY = 3  # earlier runs needed before a jump is judged


@dataclass(frozen=True)
class Thresholds:
    min_transactions: int | None = None
    max_count_diff_percent: float | None = None
    max_failure_rate_percent: float | None = None
    failure_rate_jump: float | None = None

    @classmethod
    def of(cls, monitor: dict[str, Any]) -> Thresholds:
        return cls(
            monitor.get("min_transactions"),
            monitor.get("max_count_diff_percent"),
            monitor.get("max_failure_rate_percent"),
            monitor.get("failure_rate_jump"),
        )


def run_facts(conn: Connection, source: str, run_ids: list[str]) -> list[dict[str, Any]]:
    """Per run: loaded, failed, expected count, failure rate and the trailing median rate."""
    return fetch_dicts(
        conn,
        f"""
        WITH ordered AS (
            SELECT run_id, rows_loaded, rows_failed, rows_quarantined,
                   CASE WHEN rows_loaded > 0 THEN 100.0 * rows_failed / rows_loaded END AS rate,
                   coalesce(first_processed_at, first_ingested_at) AS started
            FROM runs WHERE source = $source),
        windowed AS (
            SELECT *,
                   median(rate) OVER w AS median_rate,
                   count(rate) OVER w AS history
            FROM ordered
            WINDOW w AS (ORDER BY started, run_id
                         ROWS BETWEEN {TRAILING_RUNS} PRECEDING AND 1 PRECEDING))
        SELECT t.run_id, t.rows_loaded, t.rows_failed, t.rows_quarantined, t.rate,
               t.median_rate, t.history,
               coalesce(
                   (SELECT arg_max(expected_count, file_id) FROM control_totals c
                     WHERE c.source = $source AND c.run_id = t.run_id),
                   (SELECT nullif(count(*), 0) FROM expected_transactions e
                     WHERE e.source = $source AND e.run_id = t.run_id)) AS expected_count
        FROM windowed t
        WHERE list_contains($runs, t.run_id)
        ORDER BY t.started, t.run_id
        """,
        {"source": source, "runs": run_ids},
    )


def problems(limits: Thresholds, run: dict[str, Any]) -> list[str]:
    """What is wrong with one run by these thresholds, in words; empty when it passes."""
    found = []
    name, loaded = run["run_id"], run["rows_loaded"]
    if limits.min_transactions is not None and loaded < limits.min_transactions:
        found.append(
            f"run {name} arrived with {loaded} transaction(s) loaded "
            f"(at least {limits.min_transactions} expected)"
        )
    expected = run["expected_count"]
    if limits.max_count_diff_percent is not None and expected:
        diff = 100.0 * abs(loaded - expected) / expected
        if diff > limits.max_count_diff_percent:
            found.append(
                f"run {name} loaded {loaded} transaction(s) against {expected} expected "
                f"({diff:.1f}% off, limit {limits.max_count_diff_percent:g}%)"
            )
    rate = run["rate"]
    if rate is None:
        return found
    if limits.max_failure_rate_percent is not None and rate > limits.max_failure_rate_percent:
        found.append(
            f"run {name} failure rate {rate:.1f}% ({run['rows_failed']} of {loaded}) is above "
            f"the limit of {limits.max_failure_rate_percent:g}%"
        )
    median = run["median_rate"]
    if (
        limits.failure_rate_jump is not None
        and run["history"] >= MIN_HISTORY
        and median
        and rate > limits.failure_rate_jump * median
    ):
        found.append(
            f"run {name} failure rate {rate:.1f}% is {rate / median:.1f} times the median "
            f"{median:.1f}% of the {run['history']} run(s) before it "
            f"(limit {limits.failure_rate_jump:g} times)"
        )
    return found


def summary(run: dict[str, Any]) -> str:
    """One line for the success signal's message."""
    rate = f", failure rate {run['rate']:.1f}%" if run["rate"] is not None else ""
    return f"run {run['run_id']}: {run['rows_loaded']} loaded, {run['rows_failed']} failed{rate}"
