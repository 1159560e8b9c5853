"""`recon bisect`: the first run where a metric shifted, and what changed just before it.

"The app broke after one of hundreds of saves": given a source, the per-run series of a metric
(failure rate, missing records, amount mismatches) is split where a two-level model fits it best
(least squares over every split with at least MIN_SIDE runs on each side, in SQL). The split is
a shift only when the proportions on its two sides differ significantly: the metric counts
events among trials in each run (failed rows among rows loaded; missing records or amount
mismatches among expected records), the two sides' counts are pooled, and Fisher's exact test
(two-sided) must give p < ALPHA. A few failures more over a couple of runs is noise, not a shift.
Then the question is what changed just before that run: configuration versions between the run
before and it (with who and why), and the source's own application version when its log
carries one (`app_version`, kept in each transaction's attributes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from reconcile.reconciliation.refresh import refresh_stored
from reconcile.reconciliation.scope import Scope
from reconcile.session import Session
from reconcile.store.db import Connection, fetch_dicts

METRICS = ("failure_rate", "missing", "amount_mismatch")
MIN_SIDE = 3  # runs on each side of a split
ALPHA = 0.01  # the largest p-value (Fisher's exact test, two-sided) that counts as a shift
# Per metric: the events counted in a run, and the trials they are counted among.
COUNTS = {
    "failure_rate": ("r.rows_failed", "r.rows_loaded"),
    "missing": ("x.missing", "x.expected_count"),
    "amount_mismatch": ("x.amount_mismatch", "x.expected_count"),
}


@dataclass
class Shift:
    run: dict[str, Any]  # the first run after the shift
    before: float  # mean of the metric before it
    after: float
    noise: float  # pooled standard deviation within the two sides
    significant: bool  # p_value < ALPHA
    p_value: float  # Fisher's exact test of the two sides' pooled counts
    counts: dict[str, list[int]]  # "before" / "after": [events, trials]
    series: list[dict[str, Any]]
    config_changes: list[dict[str, Any]]
    app_versions: dict[str, list[str]]  # run before / the run: the versions their logs carry


def series(conn: Connection, source: str, metric: str) -> list[dict[str, Any]]:
    """The metric per run, in run order (first processing time, then run id), with the counts
    it is made of (`events` among `trials`)."""
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
               r.first_ingested_at, {value} AS value,
               coalesce({COUNTS[metric][0]}, 0)::BIGINT AS events,
               coalesce({COUNTS[metric][1]}, 0)::BIGINT AS trials
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
        refresh_stored(session, Scope(source=source))
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
    sides = {
        "before": [
            sum(p["events"] for p in points[: k - 1]),
            sum(p["trials"] for p in points[: k - 1]),
        ],
        "after": [
            sum(p["events"] for p in points[k - 1 :]),
            sum(p["trials"] for p in points[k - 1 :]),
        ],
    }
    p_value = fisher_exact(*sides["before"], *sides["after"])
    return Shift(
        first, before, after, noise, p_value < ALPHA, p_value, sides, points, changes, apps
    )


def fisher_exact(events_a: int, trials_a: int, events_b: int, trials_b: int) -> float:
    """Two-sided p-value of Fisher's exact test: are `events_a` of `trials_a` and `events_b`
    of `trials_b` two draws of one proportion? The sum of the probabilities (hypergeometric,
    margins fixed) of every table no more likely than the one observed."""
    events_a, events_b = min(events_a, trials_a), min(events_b, trials_b)
    total, events = trials_a + trials_b, events_a + events_b
    if trials_a == 0 or trials_b == 0 or events in (0, total):
        return 1.0

    def log_choose(n: int, k: int) -> float:
        return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)

    def log_p(x: int) -> float:  # x of the events on side a
        return (
            log_choose(trials_a, x) + log_choose(trials_b, events - x) - log_choose(total, events)
        )

    observed = log_p(events_a)
    tolerance = 1e-7  # tables as likely as the observed one, up to rounding, count too
    p = sum(
        math.exp(lp)
        for x in range(max(0, events - trials_b), min(events, trials_a) + 1)
        if (lp := log_p(x)) <= observed + tolerance
    )
    return min(p, 1.0)
