"""The failed-record list: what the daily "Failed Transactions" email used to carry, and more.

Rows come from the latest stored reconciliation of each run (`latest_record_results`), so a
failure that a retry in the same run fixed is `matched`, not listed; each row carries its break
status. By default the list holds the `failed` records; any break category can be asked for.

`list_for(session, ...)` is the use case: the dates resolved (the latest loaded by default),
refreshed first so the list matches `reconcile`, written to a file when one is given, and the
access recorded in the same session, with the SHA-256 of what was written.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from reconcile import formats
from reconcile.reconciliation.export import record_access
from reconcile.reconciliation.fingerprint import latest_dates
from reconcile.reconciliation.refresh import refresh_stored
from reconcile.reconciliation.scope import Scope
from reconcile.session import Session
from reconcile.store.db import Connection, fetch_dicts

COLUMNS = [
    "txn_id",
    "run_id",
    "business_date",
    "amount",
    "currency",
    "category",
    "error_code",
    "error_message",
    "age_days",
    "break_status",
    # Appended (positional readers of the CSV keep their columns): whose record, and why a
    # record is listed when its row never loaded ("row quarantined (FILE line N: REASON)").
    "source",
    "note",
]
STATUSES = ("open", "resolved", "all")  # of the record's break; open: the daily to-do list
FORMATS = ("table", "csv", "jsonl", "xlsx", "parquet")
FILE_FORMATS = ("xlsx", "parquet")  # these are written to a file, never to a stream
TEXT_WRITERS = {"csv": formats.write_csv, "jsonl": formats.write_jsonl}


def failures_query(
    since: date,
    until: date,
    categories: list[str],
    source: str | None,
    now: datetime,
    *,
    status: str = "all",
    latest: dict[str, date] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The SQL (and its parameters) of the list, so exports can hand it to DuckDB's writers.
    `status`: of the record's break (a matched record has none: it counts as open). `latest`:
    each source's own latest business date, the only date listed for it (`--date last`)."""
    # Plain matches are not stored (compare.PLAIN_SQL): only a list of matched records needs
    # the view that gives them back from their manifest rows.
    records = "latest_record_results" if "matched" in categories else "latest_stored_records"
    sql = f"""
        SELECT r.txn_id, r.run_id, r.business_date,
               coalesce(r.processed_amount, r.expected_amount)::DECIMAL(18, 2) AS amount,
               r.currency, r.category, r.error_code, r.error_message,
               greatest(date_diff('day', r.business_date, $now::DATE), 0) AS age_days,
               b.status AS break_status, r.break_id, r.note, r.source,
               r.expected_amount::DECIMAL(18, 2) AS expected_amount
        FROM {records} r
        LEFT JOIN breaks b USING (break_id)
        WHERE list_contains($categories, r.category)
          AND r.business_date BETWEEN $since AND $until
          AND ($source IS NULL OR r.source = $source)
          AND ($status = 'all' OR b.status = $status OR (b.status IS NULL AND $status = 'open'))
          AND ($latest IS NULL OR list_contains($latest, r.source || '=' || r.business_date))
        ORDER BY r.business_date, r.source, r.run_id, r.txn_id
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}")
    params = {
        "now": now,
        "categories": categories,
        "since": since,
        "until": until,
        "source": source,
        "status": status,
        "latest": [f"{name}={day}" for name, day in latest.items()] if latest else None,
    }
    return sql, params


def list_failures(
    conn: Connection,
    since: date,
    until: date,
    *,
    categories: list[str],
    source: str | None = None,
    now: datetime,
) -> list[dict[str, Any]]:
    """Records of the given categories with business_date in [since, until], masked as stored."""
    sql, params = failures_query(since, until, categories, source, now)
    return fetch_dicts(conn, sql, params)


@dataclass
class Listing:
    """What `list_for` found: the scope with its dates resolved, the rows (none when DuckDB
    wrote them as Parquet), and the files written with their SHA-256."""

    scope: Scope
    categories: list[str]
    fmt: str
    rows: list[dict[str, Any]]
    output: Path | None = None
    written: dict[str, str | None] = field(default_factory=dict)
    status: str = "all"
    # `last` with no source: each source's own latest business date (one may be a day behind).
    latest: dict[str, date] | None = None
    # Records of the scope's categories and dates left out by the status filter, per status.
    hidden: dict[str, int] = field(default_factory=dict)

    @property
    def sources(self) -> list[str]:
        """The sources the listing covers (each source's latest date, or the rows')."""
        return sorted(self.latest or {row["source"] for row in self.rows})

    @property
    def days_text(self) -> str:
        """The business dates listed, per source when each has its own latest."""
        if self.latest and len(set(self.latest.values())) > 1:
            return "latest of each source: " + ", ".join(
                f"{name} {day}" for name, day in sorted(self.latest.items())
            )
        return self.scope.days

    @property
    def label(self) -> str:
        """`failed transaction(s)`, or `record(s) (missing, duplicated)`."""
        if self.categories == ["failed"]:
            return "failed transaction(s)"
        return f"record(s) ({', '.join(self.categories)})"


def list_for(
    session: Session,
    scope: Scope,
    categories: list[str],
    *,
    fmt: str = "table",
    output: Path | None = None,
    status: str = "all",
) -> Listing | None:
    """The failures of `scope` (one date, `last` or a range; no date: the latest; its run is
    not used), refreshed first; written to `output` in `fmt` when given (xlsx and parquet need
    one). `status`: the records whose break is open (the command line's default: the daily
    to-do list), resolved, or all (the default here). The latest date, with no source given, is each source's own (a source a day
    behind is listed on its latest day, not dropped). None when the latest date was asked and
    nothing is loaded yet."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    if fmt in FILE_FORMATS and output is None:
        raise ValueError(f"{fmt} is written to a file: give its path")
    if scope.since is None and scope.until is None:
        scope = replace(scope, last=True)
    latest = latest_per_source(session.conn) if scope.last and scope.source is None else None
    first: date | None
    last: date | None
    if latest:
        first, last = min(latest.values()), max(latest.values())
    else:
        resolved = scope.resolve(session.conn)
        if resolved is None:
            return None
        first, last = resolved.since, resolved.until
    assert first is not None and last is not None, "a parsed scope of days has both ends"
    days = Scope(scope.source, since=first, until=last)
    refresh_stored(session, days)
    conn, now = session.conn, session.now
    hidden = _hidden(conn, first, last, categories, days.source, now, status, latest)
    sql, params = failures_query(
        first, last, categories, days.source, now, status=status, latest=latest
    )
    rows: list[dict[str, Any]] = []
    if fmt == "parquet" and output is not None:
        formats.write_parquet(conn, sql, params, output)
    else:
        rows = fetch_dicts(conn, sql, params)
    if fmt == "xlsx" and output is not None:
        write_xlsx(rows, output, now)
    elif fmt in TEXT_WRITERS and output is not None:
        with (
            formats.private_file(output) as handle,
            io.TextIOWrapper(handle, encoding="utf-8", newline="") as text,
        ):
            TEXT_WRITERS[fmt](rows, COLUMNS, text)
    written = record_access(
        session,
        "failures.list",
        f"{days.source or 'all'}:{days.days}",
        [output] if output else [],
        {
            "categories": categories,
            "format": fmt,
            "status": status,
            "rows": len(rows) if fmt != "parquet" else None,
        },
    )
    return Listing(days, categories, fmt, rows, output, written, status, latest, hidden)


def write_xlsx(rows: list[dict[str, Any]], output: Path, created: datetime) -> None:
    """The list as `--format xlsx` writes it (one sheet, the CSV's columns)."""
    formats.write_xlsx(
        output, [formats.Sheet("Failures", [formats.Table(None, COLUMNS, rows)])], created
    )


def csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    """The bytes `--format csv` writes to stdout for these rows (UTF-8, CRLF line ends): the
    daily report attaches the same file."""
    buffer = io.BytesIO()
    with io.TextIOWrapper(buffer, encoding="utf-8", newline="", write_through=True) as text:
        formats.write_csv(rows, COLUMNS, text)
        text.flush()
        return buffer.getvalue()


def xlsx_bytes(rows: list[dict[str, Any]], created: datetime) -> bytes:
    """The bytes `--format xlsx -o FILE` writes for these rows under the same `--now`, through
    a private temporary folder (openpyxl writes to a file)."""
    with tempfile.TemporaryDirectory(prefix="recon-xlsx-") as folder:
        path = Path(folder) / "failures.xlsx"
        write_xlsx(rows, path, created)
        return path.read_bytes()


def latest_per_source(conn: Connection) -> dict[str, date]:
    """Each source's latest business date loaded."""
    return latest_dates(conn)


def _hidden(
    conn: Connection,
    first: date,
    last: date,
    categories: list[str],
    source: str | None,
    now: datetime,
    status: str,
    latest: dict[str, date] | None,
) -> dict[str, int]:
    """How many records the status filter leaves out, per break status (so a list can say)."""
    if status == "all":
        return {}
    sql, params = failures_query(first, last, categories, source, now, latest=latest)
    rows = conn.execute(
        f"SELECT break_status, count(*) FROM ({sql}) WHERE break_status IS DISTINCT FROM "
        "$shown AND NOT (break_status IS NULL AND $shown = 'open') GROUP BY ALL ORDER BY 1",
        {**params, "shown": status},
    ).fetchall()
    return {str(name): int(count) for name, count in rows}
