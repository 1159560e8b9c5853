"""Build the report of one business date from the store: what the old daily "Failed
Transactions" email carried, and what it never could (the trend, the gaps, the comparison).

    build(session, day, source) -> model.Report
        day: a business date, or None for the latest loaded (of the source, or of any source);
        source: one source, or None for every source with results that day. The day is
        reconciled first (`refresh_stored`, as `recon failures` does), so the counts match
        `recon reconcile` and the attachments are the bytes `recon failures` writes.
    preview(session, day, source, out) -> Previewed: the same, written into a folder (or not),
        the access recorded, nothing sent.
    ReportError: nothing to build a report from, or a scope that names no known source.

What is read, all from stored results (never the raw files):
- per source, the day's latest result (`latest_day_results`), its runs (`runs`), its breaks
  per category and currency (the failure list's query), its amounts per currency
  (`currencies`), and the change against earlier business days with results: the previous
  one, and the mean of the previous `RECENT_DAYS`;
- the failed list of the day exactly as `recon failures --date D [--source S]` lists it by
  default (category failed, break status open), and the breaks still open from earlier days;
- monitors about a source in scope that are down now, or missed slots since the last report
  of this scope was delivered (`report_deliveries`; with none, the last 24 hours): what piled
  up in the gap (`watch.gap`);
- the upstream system's own failure report for the day, where one was ingested.

The texts are written by `render`; every value from the store is untrusted there.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from reconcile import formats
from reconcile.errors import ReconError
from reconcile.reconciliation import currencies, failures
from reconcile.reconciliation.compare import BREAK_CATEGORIES
from reconcile.reconciliation.export import record_access
from reconcile.reconciliation.refresh import refresh_stored
from reconcile.reconciliation.scope import Scope
from reconcile.report import chart, render
from reconcile.report.model import CSV_TYPE, XLSX_TYPE, Attachment, Report
from reconcile.session import Session
from reconcile.store.db import Connection, fetch_dicts
from reconcile.watch import gap
from reconcile.watch.metrics import AGE_BUCKETS

# The list the report carries: `recon failures`'s defaults (its --category and --status).
LISTED_CATEGORIES = ["failed"]
LISTED_STATUS = "open"
RECENT_DAYS = 5  # the trend: the mean of this many earlier business days with results
OLDEST_SHOWN = 5  # open breaks of earlier days named by id, oldest first
UPSTREAM_IDS_SHOWN = 20  # transactions named per side of a disagreement with upstream
GAP_WITHOUT_REPORT = timedelta(hours=24)  # the gap's window when no report was delivered yet


class ReportError(ReconError):
    """Nothing to build a report from, or a scope that names no known source."""


def build(session: Session, day: date | None, source: str | None) -> Report:
    """The report of `day` (None: the latest loaded) for `source` (None: every source)."""
    conn, now, config = session.conn, session.now, session.settings.report
    day = _resolve_day(conn, day, source)
    # The days the trend and the chart read are reconciled too (unchanged days cost a lookup):
    # a run log replaced last week shows in this morning's report as `recon reconcile` says.
    refresh_stored(session, Scope(source, since=chart.first_loaded(conn, day, source), until=day))
    days = _days(conn, day, source)
    if not days:
        where = f"source {source!r}" if source else "any source"
        raise ReportError(
            f"nothing is loaded for business date {day} of {where}: no run log or manifest of "
            "that day has been ingested; check the date (recon runs) or ingest the day first"
        )
    _add_details(conn, days, day, source, now)
    sql, params = failures.failures_query(
        day, day, LISTED_CATEGORIES, source, now, status=LISTED_STATUS
    )
    rows = fetch_dicts(conn, sql, params)
    attachments, omitted = _attachments(rows, day, source, now, config)
    picture = chart.report_chart(conn, day, source)
    if picture is not None:
        attachments.append(picture)
    facts: dict[str, Any] = {
        "business_date": day,
        "scope": source or "*",
        "generated_at": now,
        "sources": days,
        "totals": _totals(days),
        "failed_list": {
            "categories": LISTED_CATEGORIES,
            "break_status": LISTED_STATUS,
            "rows": len(rows),
            "shown": min(len(rows), config.body_rows),
            "command": _command(day, source, "csv"),
        },
        "open_earlier": _open_earlier(conn, day, source),
        "gaps": _gaps(session, source),
        "upstream": _upstream(conn, day, source, now),
        "attachments": [a.describe() for a in attachments],
        "omitted": omitted,
        "link": render.link(session.settings.base_url, day),
    }
    facts["status"] = _status(facts)
    texts = render.texts(facts, rows[: config.body_rows])
    return Report(
        business_date=day,
        source=source,
        status=facts["status"],
        title=texts.title,
        text=texts.text,
        html=texts.html,
        short=texts.short,
        attachments=tuple(attachments),
        facts=facts,
    )


@dataclass
class Previewed:
    """A built report and the files `preview` wrote (path -> SHA-256; {"stdout": None})."""

    report: Report
    written: dict[str, str | None]


def preview(session: Session, day: date | None, source: str | None, out: Path | None) -> Previewed:
    """Build the report (nothing sent) and, given a folder, write report.html, report.txt and
    the attachments into it (private files, whole or not at all); the access is recorded, as
    `recon failures` records its reads."""
    if out is not None:
        formats.check_output(out, folder=True)
    report = build(session, day, source)
    paths: list[Path] = []
    if out is not None:
        formats.output_folder(out)
        files = [
            ("report.html", report.html.encode("utf-8")),
            ("report.txt", report.text.encode("utf-8")),
            *((a.name, a.content) for a in report.attachments),
        ]
        for name, content in files:
            path = out / name
            with formats.private_file(path) as handle:
                handle.write(content)
            paths.append(path)
    written = record_access(
        session,
        "report.preview",
        f"{report.scope}:{report.business_date}",
        paths,
        {
            "status": report.status,
            "rows": report.facts["failed_list"]["rows"],
            "attachments": report.facts["attachments"],
            "omitted": [o["name"] for o in report.facts["omitted"]],
        },
    )
    return Previewed(report, written)


def safe_name(source: str) -> str:
    """A source's name made safe for a file name (the name is untrusted)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", source).strip("._-")
    return cleaned[:80] or "source"


def file_name(day: date, source: str | None, extension: str) -> str:
    """failed-transactions-<day>[-<source>].<extension>"""
    scope = f"-{safe_name(source)}" if source is not None else ""
    return f"failed-transactions-{day}{scope}.{extension}"


def _command(day: date, source: str | None, fmt: str) -> str:
    """The `recon failures` command that writes the same list."""
    scope = f" --source {shlex.quote(source)}" if source else ""
    name = shlex.quote(file_name(day, source, fmt))
    target = f"-o {name}" if fmt == "xlsx" else f"> {name}"
    return f"recon failures --date {day}{scope} --format {fmt} {target}"


def _resolve_day(conn: Connection, day: date | None, source: str | None) -> date:
    """The day asked for, or the latest business date loaded (of the source, or of any)."""
    if source is not None:
        known = conn.execute(
            "SELECT 1 FROM ingested_files WHERE source = $s LIMIT 1", {"s": source}
        ).fetchone()
        if known is None:
            raise ReportError(
                f"no file of source {source!r} has been ingested; check the name (recon runs "
                "lists the sources loaded) or ingest its files first"
            )
    if day is not None:
        return day
    latest = failures.latest_per_source(conn)
    if source is not None:
        latest = {name: when for name, when in latest.items() if name == source}
    if not latest:
        raise ReportError(
            "no transactions loaded yet: nothing to report; ingest a run log first "
            "(recon ingest --source NAME FILE)"
        )
    return max(latest.values())


def _days(conn: Connection, day: date, source: str | None) -> list[dict[str, Any]]:
    """Each source's latest result of the day, with its runs' rows and the failure rate: failed
    records per record processed (at least one attempt), in percent, as the chart draws it
    (None when nothing was processed)."""
    return fetch_dicts(
        conn,
        """
        SELECT d.source, d.status, d.run_ids, len(d.run_ids) AS runs,
               coalesce((SELECT sum(u.rows_loaded) FROM runs u WHERE u.source = d.source
                          AND list_contains(d.run_ids, u.run_id)), 0)::BIGINT AS rows_loaded,
               coalesce((SELECT sum(u.rows_quarantined) FROM runs u WHERE u.source = d.source
                          AND list_contains(d.run_ids, u.run_id)), 0)::BIGINT AS rows_quarantined,
               d.expected_count, d.processed_count, d.matched, d.failed, d.missing,
               d.duplicated, d.unexpected, d.amount_mismatch, d.pending_records,
               d.expected_amount, d.processed_amount, d.amount_difference,
               round(100.0 * d.failed / nullif(d.processed_count, 0), 2) AS failure_rate
        FROM latest_day_results d
        WHERE d.business_date = $day AND ($source IS NULL OR d.source = $source)
        ORDER BY d.source
        """,
        {"day": day, "source": source},
    )


def _add_details(
    conn: Connection, days: list[dict[str, Any]], day: date, source: str | None, now: datetime
) -> None:
    """Give each source its breaks per category and currency, its amounts per currency, and
    its change against earlier business days."""
    sql, params = failures.failures_query(day, day, list(BREAK_CATEGORIES), source, now)
    breaks = fetch_dicts(
        conn,
        f"SELECT source, category, currency, count(*) AS records, "
        f"coalesce(sum(amount), 0) AS amount FROM ({sql}) GROUP BY ALL ORDER BY ALL",
        params,
    )
    scoped = "(SELECT * FROM latest_record_results WHERE business_date = $day " + (
        "AND source = $source)" if source else ")"
    )
    given = {"day": day, **({"source": source} if source else {})}
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE report_fine AS "
        + currencies.fine_sql(scoped, "latest_run_results"),
        given,
    )
    try:
        amounts = currencies.totals(conn, "report_fine", ["business_date"])
    finally:
        conn.execute("DROP TABLE IF EXISTS report_fine")
    trend = {row["source"]: row for row in _trend(conn, day, source)}
    for item in days:
        name = item["source"]
        item["breaks"] = [
            {k: row[k] for k in ("category", "currency", "records", "amount")}
            for row in breaks
            if row["source"] == name
        ]
        item["currencies"] = [
            {k: row[k] for k in currencies.TOTAL_COLUMNS}
            for row in amounts
            if row["source"] == name
        ]
        item.update(_change(item, trend.get(name)))


def _trend(conn: Connection, day: date, source: str | None) -> list[dict[str, Any]]:
    """Per source: the previous business day with results, and the mean of the previous
    RECENT_DAYS, for the failed count and the failure rate."""
    return fetch_dicts(
        conn,
        """
        WITH earlier AS (
            SELECT source, business_date, failed,
                   100.0 * failed / nullif(processed_count, 0) AS rate,
                   row_number() OVER (PARTITION BY source ORDER BY business_date DESC) AS n
            FROM latest_day_results
            WHERE business_date < $day AND ($source IS NULL OR source = $source))
        SELECT source,
               max(business_date) FILTER (WHERE n = 1) AS previous_date,
               max(failed) FILTER (WHERE n = 1) AS previous_failed,
               round(max(rate) FILTER (WHERE n = 1), 2) AS previous_rate,
               count(*) AS recent_days,
               min(business_date) AS recent_since,
               round(avg(failed), 2) AS recent_failed,
               round(avg(rate), 2) AS recent_rate
        FROM earlier WHERE n <= $recent GROUP BY source
        """,
        {"day": day, "source": source, "recent": RECENT_DAYS},
    )


def _change(item: dict[str, Any], trend: dict[str, Any] | None) -> dict[str, Any]:
    """The day against the previous business day and the recent mean (None: no earlier day)."""
    if trend is None:
        return {"previous": None, "recent": None}

    def delta(now: Any, before: Any) -> float | None:
        return None if now is None or before is None else round(float(now) - float(before), 2)

    rate = item["failure_rate"]
    return {
        "previous": {
            "business_date": trend["previous_date"],
            "failed": trend["previous_failed"],
            "failure_rate": trend["previous_rate"],
            "failed_change": delta(item["failed"], trend["previous_failed"]),
            "failure_rate_change": delta(rate, trend["previous_rate"]),
        },
        "recent": {
            "days": trend["recent_days"],
            "since": trend["recent_since"],
            "failed_mean": trend["recent_failed"],
            "failure_rate_mean": trend["recent_rate"],
            "failed_change": delta(item["failed"], trend["recent_failed"]),
            "failure_rate_change": delta(rate, trend["recent_rate"]),
        },
    }


def _totals(days: list[dict[str, Any]]) -> dict[str, int]:
    keys = ["runs", "rows_loaded", "failed", "missing", "duplicated", "unexpected"]
    return {key: sum(int(item[key]) for item in days) for key in [*keys, "amount_mismatch"]}


def _open_earlier(conn: Connection, day: date, source: str | None) -> dict[str, Any]:
    """Breaks still open from business days before the report's, by category and age (days
    before the report's date), and the oldest few by id."""
    buckets = " ".join(
        f"WHEN age_days <= {high} THEN '{name}'" for name, _, high in AGE_BUCKETS if high
    )
    base = """
        SELECT break_id, source, run_id, txn_id, category, business_date,
               date_diff('day', business_date, $day::DATE) AS age_days
        FROM breaks
        WHERE status = 'open' AND business_date < $day AND ($source IS NULL OR source = $source)
    """
    params: dict[str, object] = {"day": day, "source": source}
    counts = fetch_dicts(
        conn,
        f"SELECT category, CASE {buckets} ELSE '{AGE_BUCKETS[-1][0]}' END AS age, "
        f"count(*) AS breaks FROM ({base}) GROUP BY ALL ORDER BY ALL",
        params,
    )
    oldest = fetch_dicts(
        conn,
        f"SELECT * FROM ({base}) ORDER BY business_date, source, break_id LIMIT {OLDEST_SHOWN}",
        params,
    )
    by_category: dict[str, dict[str, int]] = {}
    for row in counts:
        by_category.setdefault(row["category"], {})[row["age"]] = int(row["breaks"])
    return {
        "total": sum(int(row["breaks"]) for row in counts),
        "by_category": by_category,
        "age_buckets": [name for name, _, _ in AGE_BUCKETS],
        "oldest": oldest,
    }


def _gaps(session: Session, source: str | None) -> list[dict[str, Any]]:
    """Monitors about a source in scope (every source's, for the report of all) that are down
    now or missed slots since this scope's last delivered report (none yet: the last 24 h),
    with what piled up meanwhile."""
    conn, now = session.conn, session.now
    row = conn.execute(
        "SELECT max(delivered_at) FROM report_deliveries "
        "WHERE scope = $scope AND delivery = 'delivered'",
        {"scope": source or "*"},
    ).fetchone()
    since: datetime = row[0] if row and row[0] is not None else now - GAP_WITHOUT_REPORT
    monitors = fetch_dicts(
        conn,
        """
        SELECT m.name, m.source, m.status, m.down_since, m.last_success_at, m.created_at,
               (SELECT count(*) FROM slots s WHERE s.monitor_id = m.monitor_id
                  AND s.outcome = 'missed' AND s.due_at > $since AND s.due_at <= $now)
                   AS missed_slots
        FROM monitors m
        WHERE m.source IS NOT NULL AND ($source IS NULL OR m.source = $source)
        ORDER BY m.source, m.name
        """,
        {"since": since, "now": now, "source": source},
    )
    found = []
    for monitor in monitors:
        down = monitor["status"] == "down"
        if not down and not monitor["missed_slots"]:
            continue
        start = since
        if down:  # from its last good signal, as its down alert counts
            start = min(since, monitor["last_success_at"] or monitor["created_at"])
        zone = session.settings.source(monitor["source"]).timezone
        piled = gap.find(conn, monitor["source"], start, now, zone, now)
        found.append(
            {
                "monitor": monitor["name"],
                "source": monitor["source"],
                "status": monitor["status"],
                "down": down,
                "down_since": monitor["down_since"],
                "missed_slots": int(monitor["missed_slots"]),
                "since": piled.since,
                "until": piled.until,
                "runs": len(piled.runs),
                "breaks": {
                    category: {"records": records, "amounts": amounts}
                    for category, (records, amounts) in piled.breaks.items()
                },
                "command": piled.command,
                "text": gap.describe(piled),
            }
        )
    return found


def _upstream(
    conn: Connection, day: date, source: str | None, now: datetime
) -> list[dict[str, Any]]:
    """Per source with an upstream failure report for the day: our failed list of the day
    (every break status) against theirs, ids compared as stored (both masked the same way)."""
    sql, params = failures.failures_query(day, day, ["failed"], source, now)
    rows = fetch_dicts(
        conn,
        f"""
        WITH theirs AS (
            SELECT DISTINCT source, txn_id FROM reported_failures
            WHERE report_date = $day AND ($source IS NULL OR source = $source)),
        ours AS (
            SELECT DISTINCT source, txn_id FROM ({sql})
            WHERE source IN (SELECT source FROM theirs)),
        sides AS (
            SELECT source, txn_id, o.txn_id IS NOT NULL AS in_ours,
                   t.txn_id IS NOT NULL AS in_theirs
            FROM ours o FULL JOIN theirs t USING (source, txn_id))
        SELECT source,
               count(*) FILTER (WHERE in_theirs) AS upstream,
               count(*) FILTER (WHERE in_ours) AS ours,
               count(*) FILTER (WHERE in_theirs AND NOT in_ours) AS only_upstream,
               count(*) FILTER (WHERE in_ours AND NOT in_theirs) AS only_ours,
               list(txn_id ORDER BY txn_id) FILTER (WHERE in_theirs AND NOT in_ours)
                   [1:$shown] AS only_upstream_ids,
               list(txn_id ORDER BY txn_id) FILTER (WHERE in_ours AND NOT in_theirs)
                   [1:$shown] AS only_ours_ids
        FROM sides GROUP BY source ORDER BY source
        """,
        {**params, "day": day, "shown": UPSTREAM_IDS_SHOWN},
    )
    for row in rows:
        row["agrees"] = row["only_upstream"] == 0 and row["only_ours"] == 0
        row["only_upstream_ids"] = row["only_upstream_ids"] or []
        row["only_ours_ids"] = row["only_ours_ids"] or []
    return rows


def _attachments(
    rows: list[dict[str, Any]], day: date, source: str | None, now: datetime, config: Any
) -> tuple[list[Attachment], list[dict[str, Any]]]:
    """The failed list as CSV and XLSX, the bytes `recon failures` writes, within the caps;
    each file left out is named with why and the command that writes it."""
    attached: list[Attachment] = []
    omitted: list[dict[str, Any]] = []
    content = failures.csv_bytes(rows)
    name = file_name(day, source, "csv")
    if len(content) <= config.attach_max_bytes:
        attached.append(Attachment(name, CSV_TYPE, content))
    else:
        omitted.append(
            {
                "name": name,
                "reason": f"{len(content):,} bytes, over the {config.attach_max_bytes:,}-byte "
                "limit (report.attach_max_bytes)",
                "command": _command(day, source, "csv"),
            }
        )
    name = file_name(day, source, "xlsx")
    if len(rows) > config.xlsx_max_rows:
        omitted.append(
            {
                "name": name,
                "reason": f"{len(rows):,} rows, over the {config.xlsx_max_rows:,}-row limit "
                "(report.xlsx_max_rows)",
                "command": _command(day, source, "xlsx"),
            }
        )
    else:
        content = failures.xlsx_bytes(rows, now)
        if len(content) <= config.attach_max_bytes:
            attached.append(Attachment(name, XLSX_TYPE, content))
        else:
            omitted.append(
                {
                    "name": name,
                    "reason": f"{len(content):,} bytes, over the {config.attach_max_bytes:,}-"
                    "byte limit (report.attach_max_bytes)",
                    "command": _command(day, source, "xlsx"),
                }
            )
    return attached, omitted


def _status(facts: dict[str, Any]) -> str:
    """down: a monitor about the scope is down now; breaks: any break of the day; balanced:
    every source balanced; pending: otherwise (nothing reconciled to a result yet)."""
    if any(g["down"] for g in facts["gaps"]):
        return "down"
    statuses = {item["status"] for item in facts["sources"]}
    if "breaks" in statuses:
        return "breaks"
    if statuses == {"balanced"}:
        return "balanced"
    return "pending"
