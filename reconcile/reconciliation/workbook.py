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
from datetime import date, datetime
from pathlib import Path
from typing import Any

from reconcile.reconciliation import compare, currencies, export
from reconcile.reconciliation.refresh import DAY_FIELDS, RUN_FIELDS
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
]
FILE_COLUMNS = ["source", "kind", "path", "sha256", "rows_read", "rows_loaded", "ingested_at"]
DAY_COLUMNS = ["source", "business_date", "version", *DAY_FIELDS]
CURRENCY_COLUMNS = ["source", "business_date", *currencies.TOTAL_COLUMNS]
RUN_COLUMNS = ["source", "run_id", "version", *RUN_FIELDS]


@dataclass
class Written:
    paths: list[Path]
    days: int
    runs: int
    breaks: int


def _filters(scope: compare.Scope) -> tuple[str, dict[str, Any]]:
    where = (
        "($source IS NULL OR source = $source) AND ($since IS NULL OR business_date >= $since) "
        "AND ($until IS NULL OR business_date <= $until)"
    )
    params = {"source": scope.source, "since": scope.since, "until": scope.until}
    return where, params


def _queries(scope: compare.Scope) -> dict[str, tuple[str, dict[str, Any]]]:
    """The four tables of the export, each as SQL over the latest stored results."""
    where, params = _filters(scope)
    latest_runs = (
        "SELECT * FROM run_results QUALIFY row_number() OVER "
        "(PARTITION BY source, run_id ORDER BY version DESC) = 1"
    )
    runs = (
        f"SELECT {', '.join(RUN_COLUMNS)} FROM ({latest_runs}) WHERE {where} "
        "ORDER BY source, business_date, run_id"
    )
    days = (
        f"SELECT {', '.join(DAY_COLUMNS)} FROM (SELECT * FROM day_results QUALIFY row_number() "
        "OVER (PARTITION BY source, business_date ORDER BY version DESC) = 1) "
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
               r.note
        FROM record_results r
        JOIN ({latest_runs}) l USING (source, run_id, version)
        LEFT JOIN breaks b USING (break_id)
        WHERE (r.category IN {compare.BREAK_CATEGORIES}
               OR (l.has_manifest AND r.processed_total
                   <> CASE WHEN r.is_expected THEN r.expected_amount ELSE 0 END))
          AND {record_where}
        ORDER BY r.business_date, r.source, r.run_id, r.txn_id
    """
    latest_records = f"""(
        SELECT r.* FROM record_results r JOIN ({latest_runs}) l USING (source, run_id, version)
        WHERE {record_where})"""
    fine = f"({currencies.fine_sql(latest_records, f'({latest_runs})')})"
    per_currency = currencies.totals_sql(fine, ["business_date"])
    files = f"""
        SELECT f.source, f.kind, f.path, f.sha256, f.rows_read, f.rows_loaded, f.ingested_at
        FROM ingested_files f
        WHERE f.replaced_by IS NULL AND EXISTS (SELECT 1 FROM ({runs}) s
                      WHERE s.source = f.source AND list_contains(f.run_ids, s.run_id))
        ORDER BY f.source, f.kind, f.path, f.sha256
    """
    return {
        "days": (days, params),
        "currencies": (per_currency, params),
        "runs": (runs, params),
        "breaks": (breaks, params),
        "files": (files, params),
    }


def write(
    conn: Connection,
    scope: compare.Scope,
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
        export.output_folder(out)
        counts = {}
        for name, (sql, params) in queries.items():
            export.write_parquet(conn, sql, params, out / f"{name}.parquet")
            counts[name] = len(fetch_dicts(conn, f"SELECT 1 FROM ({sql})", params))
        return Written(
            [out / f"{name}.parquet" for name in queries],
            counts["days"],
            counts["runs"],
            counts["breaks"],
        )
    tables = {name: fetch_dicts(conn, sql, params) for name, (sql, params) in queries.items()}
    columns = {
        "days": DAY_COLUMNS,
        "currencies": CURRENCY_COLUMNS,
        "runs": RUN_COLUMNS,
        "breaks": BREAK_COLUMNS,
        "files": FILE_COLUMNS,
    }
    if fmt == "csv":
        export.output_folder(out)
        paths = []
        for name, rows in tables.items():
            path = out / f"{name}.csv"
            with (
                export.private_file(path) as handle,
                io.TextIOWrapper(handle, encoding="utf-8", newline="") as text,
            ):
                export.write_csv(rows, columns[name], text)
            paths.append(path)
        return Written(paths, len(tables["days"]), len(tables["runs"]), len(tables["breaks"]))
    preamble = [
        ("generated at (UTC)", generated_at.isoformat()),
        ("product", f"recon {product_version}"),
        ("inputs SHA-256", inputs_sha256),
        ("scope", _describe(scope)),
    ]
    summary = export.Sheet(
        "Summary",
        [
            export.Table("Per business day", DAY_COLUMNS, tables["days"]),
            export.Table(
                "Per business day and currency (the day's amounts above add all currencies)",
                CURRENCY_COLUMNS,
                tables["currencies"],
            ),
            export.Table("Per run", RUN_COLUMNS, tables["runs"]),
            export.Table("Source files", FILE_COLUMNS, tables["files"]),
        ],
        preamble,
    )
    detail = export.Sheet("Breaks", [export.Table(None, BREAK_COLUMNS, tables["breaks"])])
    export.write_xlsx(out, [summary, detail], generated_at)
    return Written([out], len(tables["days"]), len(tables["runs"]), len(tables["breaks"]))


def _describe(scope: compare.Scope) -> str:
    parts = []
    if scope.source:
        parts.append(f"source {scope.source}")
    if scope.run_id:
        parts.append(f"run {scope.run_id}")
    if scope.since or scope.until:
        first: date | str = scope.since or "start"
        last: date | str = scope.until or "end"
        parts.append(f"business dates {first} to {last}")
    return ", ".join(parts) or "everything"
