"""The finance export: control totals per day and per run, the breaks that explain the
differences, and the files they came from, as one XLSX workbook or as CSV / Parquet files.

Every amount is exact. For a day whose runs have manifests, the `difference` column of the
Breaks table adds up to the day's amount difference to the cent: a matched record contributes
nothing, and every record that does contribute (breaks, and transactions re-processed from an
earlier day) is listed. A day's amounts add all currencies together, as control totals do; the
per-day-and-currency table splits them (see `currencies.py`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from reconcile import formats
from reconcile.reconciliation import compare, currencies
from reconcile.reconciliation.refresh import DAY_FIELDS, RUN_FIELDS
from reconcile.reconciliation.scope import Scope
from reconcile.store.db import Connection, fetch_dicts

FORMATS = ("xlsx", "csv", "parquet")
BREAK_COLUMNS = [
    "business_date",
    "source",
    "run_id",
    "txn_id",
    "category",
    "expected_amount",
    "processed_amount",
    "difference",
    "currency",
    "error_code",
    "error_message",
    "break_id",
    "break_status",
    "note",
    "assignee",
    "resolved_at",
    "resolved_by",
    "resolution",
    "comments",
]
FILE_COLUMNS = [
    "source",
    "kind",
    "path",
    "sha256",
    "rows_read",
    "rows_loaded",
    "ingested_at",
    "replaced_by",
]
DAY_COLUMNS = ["source", "business_date", "version", *DAY_FIELDS]
CURRENCY_COLUMNS = ["source", "business_date", *currencies.TOTAL_COLUMNS]
GRAND_TOTAL_COLUMNS = ["source", *currencies.TOTAL_COLUMNS]
RUN_COLUMNS = ["source", "run_id", "version", *RUN_FIELDS]


@dataclass
class Written:
    paths: list[Path]
    days: int
    runs: int
    breaks: int


def _filters(scope: Scope) -> tuple[str, dict[str, Any]]:
    where = (
        "($source IS NULL OR source = $source) AND ($since IS NULL OR business_date >= $since) "
        "AND ($until IS NULL OR business_date <= $until)"
    )
    params = {"source": scope.source, "since": scope.since, "until": scope.until}
    return where, params


def _queries(scope: Scope) -> dict[str, tuple[str, dict[str, Any]]]:
    """The four tables of the export, each as SQL over the latest stored results."""
    where, params = _filters(scope)
    runs = (
        f"SELECT {', '.join(RUN_COLUMNS)} FROM latest_run_results WHERE {where} "
        "ORDER BY source, business_date, run_id"
    )
    days = (
        f"SELECT {', '.join(DAY_COLUMNS)} FROM latest_day_results "
        f"WHERE {where} ORDER BY source, business_date"
    )
    record_where = (
        "($source IS NULL OR r.source = $source) AND ($since IS NULL OR r.business_date >= $since) "
        "AND ($until IS NULL OR r.business_date <= $until)"
    )
    breaks = f"""
        SELECT r.business_date, r.source, r.run_id, r.txn_id, r.category,
               r.expected_amount::DECIMAL(38, 4) AS expected_amount,
               r.processed_total AS processed_amount,
               (r.processed_total - CASE WHEN r.is_expected THEN r.expected_amount ELSE 0 END)
                   ::DECIMAL(38, 4) AS difference,
               r.currency, r.error_code, r.error_message, r.break_id, b.status AS break_status,
               r.note, b.assignee, b.resolved_at, b.resolved_by, b.resolution, c.comments
        FROM latest_stored_records r  -- a plain match is neither a break nor moves money
        JOIN latest_run_results l USING (source, run_id, version)
        LEFT JOIN breaks b USING (break_id)
        LEFT JOIN (
            SELECT break_id,
                   string_agg(strftime(commented_at AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M UTC')
                              || ' ' || commented_by || ': ' || comment, chr(10)
                              ORDER BY commented_at, commented_by, comment) AS comments
            FROM break_comments GROUP BY break_id) c USING (break_id)
        WHERE (r.category IN {compare.BREAK_CATEGORIES}
               OR (l.has_manifest AND r.processed_total
                   <> CASE WHEN r.is_expected THEN r.expected_amount ELSE 0 END))
          AND {record_where}
        ORDER BY r.business_date, r.source, r.run_id, r.txn_id
    """
    latest_records = f"(SELECT r.* FROM latest_record_results r WHERE {record_where})"
    fine = f"({currencies.fine_sql(latest_records, 'latest_run_results')})"
    per_currency = currencies.totals_sql(fine, ["business_date"])
    grand_totals = currencies.totals_sql(fine, [])
    # A file whose rows a corrected file took over (`ingest --replace`) is listed too, marked
    # with the file that replaced it: the auditor sees every file the scope was read from.
    files = f"""
        SELECT f.source, f.kind, f.path, f.sha256, f.rows_read, f.rows_loaded, f.ingested_at,
               CASE WHEN f.replaced_by IS NOT NULL
                    THEN 'replaced by ' || coalesce(n.path, '#' || f.replaced_by::VARCHAR)
                         || coalesce(' (' || n.sha256[:12] || ')', '') END AS replaced_by
        FROM ingested_files f LEFT JOIN ingested_files n ON n.file_id = f.replaced_by
        WHERE EXISTS (SELECT 1 FROM ({runs}) s
                      WHERE s.source = f.source AND list_contains(f.run_ids, s.run_id))
        ORDER BY f.source, f.kind, f.path, f.sha256
    """
    return {
        "days": (days, params),
        "currencies": (per_currency, params),
        "totals": (grand_totals, params),
        "runs": (runs, params),
        "breaks": (breaks, params),
        "files": (files, params),
    }


def write(
    conn: Connection,
    scope: Scope,
    fmt: str,
    out: Path,
    *,
    generated_at: datetime,
    product_version: str,
    inputs_sha256: str,
) -> Written:
    """Write the export of `scope` (already reconciled) to `out`: a file for xlsx, else a folder."""
    queries = _queries(scope)
    if fmt == "parquet":
        formats.output_folder(out)
        counts = {}
        for name, (sql, params) in queries.items():
            formats.write_parquet(conn, sql, params, out / f"{name}.parquet")
            counts[name] = len(fetch_dicts(conn, f"SELECT 1 FROM ({sql})", params))
        return Written(
            [out / f"{name}.parquet" for name in queries],
            counts["days"],
            counts["runs"],
            counts["breaks"],
        )
    # The breaks can run to millions of rows: counted here, then read in batches while they
    # are written (no other query runs meanwhile); the other tables are small.
    tables: dict[str, formats.Rows] = {
        name: formats.QueryRows(conn, sql, params)
        if name == "breaks"
        else fetch_dicts(conn, sql, params)
        for name, (sql, params) in queries.items()
    }
    columns = {
        "days": DAY_COLUMNS,
        "currencies": CURRENCY_COLUMNS,
        "totals": GRAND_TOTAL_COLUMNS,
        "runs": RUN_COLUMNS,
        "breaks": BREAK_COLUMNS,
        "files": FILE_COLUMNS,
    }
    if fmt == "csv":
        formats.output_folder(out)
        paths = []
        for name, rows in tables.items():
            path = out / f"{name}.csv"
            with (
                formats.private_file(path) as handle,
                io.TextIOWrapper(handle, encoding="utf-8", newline="") as text,
            ):
                formats.write_csv(rows, columns[name], text)
            paths.append(path)
        return Written(paths, len(tables["days"]), len(tables["runs"]), len(tables["breaks"]))
    preamble = [
        ("generated at (UTC)", generated_at.isoformat()),
        ("product", f"recon {product_version}"),
        ("inputs SHA-256", inputs_sha256),
        ("scope", scope.describe()),
    ]
    summary = formats.Sheet(
        "Summary",
        [
            formats.Table("Per business day", DAY_COLUMNS, tables["days"]),
            formats.Table(
                "Per business day and currency (the day's amounts above add all currencies)",
                CURRENCY_COLUMNS,
                tables["currencies"],
            ),
            formats.Table(
                "Grand total per currency (each source, every day of the scope)",
                GRAND_TOTAL_COLUMNS,
                tables["totals"],
            ),
            formats.Table("Per run", RUN_COLUMNS, tables["runs"]),
            formats.Table("Source files", FILE_COLUMNS, tables["files"]),
        ],
        preamble,
    )
    detail = formats.Sheet("Breaks", [formats.Table(None, BREAK_COLUMNS, tables["breaks"])])
    formats.write_xlsx(out, [summary, detail], generated_at)
    return Written([out], len(tables["days"]), len(tables["runs"]), len(tables["breaks"]))
