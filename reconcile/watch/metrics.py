"""Prometheus metrics: the numbers on-call dashboards read, gathered in SQL through a session,
rendered in the text exposition format (`recon serve`'s `GET /metrics`) or written as a
node_exporter textfile (`recon watch --metrics-file`, atomically: a temporary file, then a
rename). The only importer of prometheus_client, loaded on first use.

Labels carry only monitor names, source names, break categories and fixed words (statuses, age
buckets, delivery states, outbox kinds): never a card number, a secret or free text. Names are
the user's, so prometheus_client escapes them (a quote, a backslash or a newline in a name
cannot end the label value or the line).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconcile.session import Session
from reconcile.store.db import fetch_dicts
from reconcile.watch import views

MONITOR_STATUSES = ("new", "up", "late", "down", "paused")
OUTBOX_KINDS = ("alert", "report")  # an outbox alert of a `report_*` kind is a report
AGE_BUCKETS = (("0-1d", 0, 1), ("2-7d", 2, 7), ("8-30d", 8, 30), ("31d+", 31, None))


@dataclass
class Numbers:
    """Everything the metrics say, read at one moment."""

    monitors: list[dict[str, Any]] = field(default_factory=list)
    slots_missed: dict[str, int] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)
    open_breaks: list[dict[str, Any]] = field(default_factory=list)
    last_days: list[dict[str, Any]] = field(default_factory=list)
    outbox: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, state) -> count
    now_epoch: float = 0.0


def gather(session: Session) -> Numbers:
    """The numbers at `session.now` (monitors as `recon monitor list` shows them: the spool
    drained first)."""
    now = session.now
    conn = session.conn
    numbers = Numbers(now_epoch=now.timestamp())
    numbers.monitors = views.listing(session)
    numbers.slots_missed = {
        r["name"]: int(r["missed"])
        for r in fetch_dicts(
            conn,
            "SELECT m.name, count(s.due_at) AS missed FROM monitors m "
            "LEFT JOIN slots s ON s.monitor_id = m.monitor_id AND s.outcome = 'missed' "
            "GROUP BY m.name",
        )
    }
    numbers.sources = fetch_dicts(
        conn,
        "SELECT source, sum(rows_loaded) AS loaded, sum(rows_quarantined) AS quarantined "
        "FROM runs GROUP BY source ORDER BY source",
    )
    buckets = " ".join(
        f"WHEN age_days <= {high} THEN '{name}'" for name, _, high in AGE_BUCKETS if high
    )
    numbers.open_breaks = fetch_dicts(
        conn,
        f"""
        SELECT source, category,
               CASE {buckets} ELSE '{AGE_BUCKETS[-1][0]}' END AS age, count(*) AS n
        FROM (SELECT source, category,
                     greatest(date_diff('day', coalesce(business_date, first_seen::DATE),
                                        $now::DATE), 0) AS age_days
              FROM breaks WHERE status = 'open')
        GROUP BY ALL ORDER BY ALL
        """,
        {"now": now},
    )
    numbers.last_days = fetch_dicts(
        conn,
        """
        SELECT source, business_date, status FROM day_results
        QUALIFY row_number() OVER (PARTITION BY source
                                   ORDER BY business_date DESC, version DESC) = 1
        ORDER BY source
        """,
    )
    numbers.outbox = {
        (r["kind"], r["state"]): int(r["n"])
        for r in fetch_dicts(
            conn,
            "SELECT CASE WHEN starts_with(a.kind, 'report_') THEN 'report' ELSE 'alert' END "
            "AS kind, CASE WHEN d.last_error IS NULL THEN 'pending' ELSE 'failing' END AS state, "
            "count(*) AS n FROM deliveries d JOIN alerts a USING (alert_id) "
            "WHERE d.status <> 'delivered' GROUP BY ALL",
        )
    }
    return numbers


def _families(numbers: Numbers) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    up = GaugeMetricFamily(
        "recon_monitor_up", "1 when the monitor is not down, 0 when it is.", labels=["monitor"]
    )
    status = GaugeMetricFamily(
        "recon_monitor_status",
        "1 for the monitor's status now (new, up, late, down, paused), 0 for the others.",
        labels=["monitor", "status"],
    )
    since = GaugeMetricFamily(
        "recon_monitor_seconds_since_last_signal",
        "Seconds since the monitor's last signal (absent when it never had one).",
        labels=["monitor"],
    )
    missed = CounterMetricFamily(
        "recon_monitor_slots_missed",
        "Slots of the monitor's schedule that passed with no signal.",
        labels=["monitor"],
    )
    for monitor in numbers.monitors:
        name = str(monitor["name"])
        up.add_metric([name], 0.0 if monitor["status"] == "down" else 1.0)
        for word in MONITOR_STATUSES:
            status.add_metric([name, word], 1.0 if monitor["status"] == word else 0.0)
        if monitor["last_signal_at"] is not None:
            seconds = numbers.now_epoch - monitor["last_signal_at"].timestamp()
            since.add_metric([name], max(seconds, 0.0))
        missed.add_metric([name], float(numbers.slots_missed.get(name, 0)))
    yield from (up, status, since, missed)

    loaded = CounterMetricFamily(
        "recon_source_rows_loaded", "Rows loaded from the source's run logs.", labels=["source"]
    )
    quarantined = CounterMetricFamily(
        "recon_source_rows_quarantined",
        "Rows of the source's files set aside in quarantine.",
        labels=["source"],
    )
    for row in numbers.sources:
        loaded.add_metric([row["source"]], float(row["loaded"] or 0))
        quarantined.add_metric([row["source"]], float(row["quarantined"] or 0))
    yield from (loaded, quarantined)

    breaks = GaugeMetricFamily(
        "recon_breaks_open",
        "Open breaks by source, category and age bucket (days since the business date).",
        labels=["source", "category", "age"],
    )
    for row in numbers.open_breaks:
        breaks.add_metric([row["source"], row["category"], row["age"]], float(row["n"]))
    yield breaks

    day = GaugeMetricFamily(
        "recon_last_day_status",
        "1 for the status of the source's last reconciled business day.",
        labels=["source", "status"],
    )
    when = GaugeMetricFamily(
        "recon_last_day_timestamp_seconds",
        "The source's last reconciled business day (midnight UTC, Unix seconds).",
        labels=["source"],
    )
    for row in numbers.last_days:
        day.add_metric([row["source"], row["status"]], 1.0)
        d = row["business_date"]
        midnight = datetime(d.year, d.month, d.day, tzinfo=UTC)
        when.add_metric([row["source"]], midnight.timestamp())
    yield from (day, when)

    outbox = GaugeMetricFamily(
        "recon_alert_deliveries",
        "Deliveries in the outbox not done yet, of alerts and of reports (kind): pending (not "
        "tried or not failed yet) and failing (the last attempt failed; retried with backoff).",
        labels=["state", "kind"],
    )
    for kind in OUTBOX_KINDS:
        for state in ("pending", "failing"):
            outbox.add_metric([state, kind], float(numbers.outbox.get((kind, state), 0)))
    yield outbox


class _Collector:
    def __init__(self, numbers: Numbers) -> None:
        self.numbers = numbers

    def collect(self) -> Iterator[Any]:
        return _families(self.numbers)


def _registry(numbers: Numbers) -> Any:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(numbers))
    return registry


def content_type() -> str:
    """The exposition format's content type, as prometheus_client names it."""
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    return str(CONTENT_TYPE_LATEST)


def render(numbers: Numbers) -> bytes:
    """The text exposition format (`content_type()`)."""
    from prometheus_client.exposition import generate_latest

    return bytes(generate_latest(_registry(numbers)))


def write_textfile(numbers: Numbers, path: Path) -> None:
    """The node_exporter textfile: written beside `path`, then renamed over it."""
    from prometheus_client.exposition import write_to_textfile

    write_to_textfile(str(path), _registry(numbers))
