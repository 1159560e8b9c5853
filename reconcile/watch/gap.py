"""What piled up in the gap: when a monitor about a source goes down or recovers, its alert says
what the data we do have shows for the time the signal was missing.

The question the operations team could not answer in our story was "the report stopped on
Monday; what failed since?". The window runs from the last good signal to now, in business
dates of the source; the counts come from the stored reconciliation (`recon watch` reconciles
the window first, so they match what `recon failures` lists), and the alert ends with the exact
command that lists the records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from reconcile.ingest import runs
from reconcile.reconciliation import failures
from reconcile.reconciliation.compare import BREAK_CATEGORIES
from reconcile.store.db import Connection, fetch_dicts
from reconcile.watch.schedule import zone

SHOWN_RUNS = 5


@dataclass(frozen=True)
class Gap:
    source: str
    since: date
    until: date
    runs: list[dict[str, Any]]
    breaks: dict[str, tuple[int, dict[str, Decimal]]]  # category -> (records, amount by currency)

    @property
    def command(self) -> str:
        return (
            f"recon failures --source {self.source} --since {self.since} --until {self.until} "
            "--category failed,missing"
        )


def dates(since: datetime, until: datetime, tz: str) -> tuple[date, date]:
    """The business dates the window [since, until] touches, in the source's zone."""
    local = zone(tz)
    return since.astimezone(local).date(), until.astimezone(local).date()


def find(
    conn: Connection, source: str, since: datetime, until: datetime, tz: str, now: datetime
) -> Gap:
    """Runs with a business date in the window, and the breaks their latest results hold."""
    first, last = dates(since, until, tz)
    sql, params = failures.failures_query(first, last, list(BREAK_CATEGORIES), source, now)
    rows = fetch_dicts(
        conn,
        f"SELECT category, coalesce(currency, '') AS currency, count(*) AS records, "
        f"coalesce(sum(amount), 0) AS amount FROM ({sql}) GROUP BY ALL ORDER BY ALL",
        params,
    )
    found: dict[str, tuple[int, dict[str, Decimal]]] = {}
    for row in rows:  # amounts are only added up within one currency
        records, amounts = found.get(row["category"], (0, {}))
        amounts[row["currency"]] = Decimal(row["amount"])
        found[row["category"]] = (records + int(row["records"]), amounts)
    return Gap(source, first, last, runs.list_runs(conn, source, first, last), found)


def describe(gap: Gap) -> str:
    """The paragraph an alert carries."""
    lines = [f"What the data shows for {gap.source}, business dates {gap.since} to {gap.until}:"]
    if gap.runs:
        shown = ", ".join(
            f"{r['run_id']} ({r['rows_loaded']} loaded, {r['rows_failed']} failed)"
            for r in gap.runs[-SHOWN_RUNS:]
        )
        more = f" (latest {SHOWN_RUNS} shown)" if len(gap.runs) > SHOWN_RUNS else ""
        lines.append(f"- runs ingested: {len(gap.runs)}{more}: {shown}")
    else:
        lines.append("- runs ingested: none (no run log has arrived for these dates either)")
    for category in ("failed", "missing"):
        records, amounts = gap.breaks.get(category, (0, {}))
        lines.append(
            f"- {category} records: {records}" + (f", {_money(amounts)}" if records else "")
        )
    others = {c: v for c, v in gap.breaks.items() if c not in ("failed", "missing")}
    if others:
        lines.append(
            "- other breaks: "
            + ", ".join(f"{c} {n} ({_money(a)})" for c, (n, a) in sorted(others.items()))
        )
    lines.append(f"List them: {gap.command}")
    return "\n".join(lines)


def _money(amounts: dict[str, Decimal]) -> str:
    return " + ".join(f"{currency} {amount:,.2f}".strip() for currency, amount in amounts.items())
