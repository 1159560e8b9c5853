"""`recon bisect`: the first run where a metric shifted, and what changed just before it.

"The app broke after one of hundreds of saves": given a source, the per-run series of a metric
(failure rate, missing records, amount mismatches) is split where a two-level model fits it best
(least squares over every split, both sides at least two runs, in SQL), and the shift counts
when the two levels differ by more than three times the noise within them. Then the question is
what changed just before that run: configuration versions between the run before and it (with
who and why), and the source's own application version when its log carries one
(`app_version`, kept in each transaction's attributes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconcile.reconciliation.refresh import refresh
from reconcile.reconciliation.scope import Scope
from reconcile.session import Session
from reconcile.store.db import Connection, fetch_dicts

METRICS = ("failure_rate", "missing", "amount_mismatch")
MIN_SIDE = 2  # runs on each side of a split
SIGNIFICANCE = 3.0  # the level shift, in units of the pooled standard deviation


@dataclass
class Shift:
    run: dict[str, Any]  # the first run after the shift
    before: float  # mean of the metric before it
    after: float
    noise: float  # pooled standard deviation within the two sides
    significant: bool
    series: list[dict[str, Any]]
    config_changes: list[dict[str, Any]]
    app_versions: dict[str, list[str]]  # run before / the run: the versions their logs carry


def series(conn: Connection, source: str, metric: str) -> list[dict[str, Any]]:
    """The metric per run, in run order (first processing time, then run id)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}")
    value = (
        "CASE WHEN r.rows_loaded > 0 THEN 100.0 * r.rows_failed / r.rows_loaded END"
        if metric == "failure_rate"
        else f"x.{metric}::DOUBLE"
    )
    return fetch_dicts(
        conn,
        f"""
        SELECT row_number() OVER (ORDER BY coalesce(r.first_processed_at, r.first_ingested_at),
                                           r.run_id) AS n,
               r.run_id, coalesce(r.first_processed_at, r.first_ingested_at) AS started,
               r.first_ingested_at, {value} AS value
        FROM runs r LEFT JOIN latest_run_results x USING (source, run_id)
        WHERE r.source = $source
        ORDER BY n
        """,
        {"source": source},
    )


def examine(session: Session, source: str, metric: str = "failure_rate") -> Shift | None:
    """`find`, on current results: a metric counted by reconciliation (missing records, amount
    mismatches) has the source refreshed first; the failure rate is the runs' own."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}")
    if metric != "failure_rate":
        refresh(session, Scope(source=source))
    return find(session.conn, source, metric)


def find(conn: Connection, source: str, metric: str = "failure_rate") -> Shift | None:
    """The best split of the series, or None with fewer than 2 * MIN_SIDE runs."""
    points = [p for p in series(conn, source, metric) if p["value"] is not None]
    if len(points) < 2 * MIN_SIDE:
        return None
    rows = conn.execute(
        """
        WITH s AS (SELECT unnest($values)::DOUBLE AS v, generate_subscripts($values, 1) AS i),
        splits AS (SELECT unnest(range($min_side + 1, len($values) - $min_side + 2)) AS k)
        SELECT k,
               avg(v) FILTER (i < k) AS before, avg(v) FILTER (i >= k) AS after,
               coalesce(var_pop(v) FILTER (i < k) * count(*) FILTER (i < k), 0)
             + coalesce(var_pop(v) FILTER (i >= k) * count(*) FILTER (i >= k), 0) AS sse
        FROM splits, s GROUP BY k ORDER BY sse, k LIMIT 1
        """,
        {"values": [p["value"] for p in points], "min_side": MIN_SIDE},
    ).fetchall()
    k, before, after, sse = rows[0]
    noise = (sse / max(len(points) - 2, 1)) ** 0.5
    first = points[k - 1]
    previous = points[k - 2]
    changes = fetch_dicts(
        conn,
        "SELECT version, object, changed_at, changed_by, via, reason FROM config_versions "
        "WHERE changed_at > $after AND changed_at <= $until ORDER BY version",
        {"after": previous["first_ingested_at"], "until": first["first_ingested_at"]},
    )
    apps = {
        p["run_id"]: [
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT attributes->>'app_version' AS v FROM transactions "
                "WHERE source = ? AND run_id = ? AND v IS NOT NULL ORDER BY v",
                [source, p["run_id"]],
            ).fetchall()
        ]
        for p in (previous, first)
    }
    significant = abs(after - before) > SIGNIFICANCE * noise if noise > 0 else after != before
    return Shift(first, before, after, noise, significant, points, changes, apps)
