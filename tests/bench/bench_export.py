"""XLSX export benchmark: time grows with the rows and no faster, memory does not grow.

Run with `make bench` (or `.venv/bin/python -m tests.bench.bench_export [--rows 20000,200000]
[--big-rows 1100000] [--repeats N]`). Not a pytest module.

1. *Linear time*: for each size of `--rows`, the same Breaks rows (text, dates and exact
   four-decimal amounts) are written by `reconcile.formats.write_xlsx` and, as the obvious
   alternative, by `write_csv`; each figure is the median CPU time of `--repeats` runs in this
   process. Target: the largest size's XLSX time at most 1.2 times the size ratio times the
   smallest's (200,000 break rows at most 12x 20,000). The field report's writer asked openpyxl
   for the sheet's row count on every row (quadratic: 8,000 rows over two minutes).
2. *Bounded memory*: a store holding `--big-rows` (1,100,000) breaks (every record of ten
   days failed), built with the reconcile bench's generator, is exported with `recon export
   --format xlsx` in a child process: the Breaks sheet continues on "Breaks (2)" past Excel's
   1,048,576 rows. Target: the child's peak RSS (rusage) under 1 GB. This part takes several
   minutes (openpyxl writes some 6,000 rows a CPU second: 1,100,000 rows took 5-6 minutes on
   a busy 2-core machine); `--big-rows 0` skips it. Most of the memory is DuckDB's, not the
   writer's: the refresh before writing (the scope classified again) and the sorted breaks
   with their joins. With the whole 1GB default memory_limit the refresh alone took the
   process to 1.07 GB at 1.1M rows (1,119 MB peak); an export written in Python gives the
   engine half the limit (`reconciliation.export.WRITER_ENGINE_SHARE`), spilling the rest:
   700 MB peak.

Exit 1 when a target is missed; the figures are printed either way.
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from reconcile import formats
from reconcile.reconciliation import workbook
from tests.bench.bench_reconcile import (
    EXPECTED_SQL,
    bench_env,
    daily_job,
    describe_job,
    generate,
    mb,
    recon_argv,
    run_measured,
)

GROWTH = 1.2  # XLSX time ratio over size ratio, largest size against smallest
MEMORY_TARGET = 1e9  # bytes: peak RSS of the big export
BIG_DAYS = 10

# Every expected record has one attempt, and it failed: one break per record.
ALL_FAILED_SQL = """
COPY (
    SELECT 'T' || lpad(i::VARCHAR, 9, '0') AS txn_id,
           'RUN-' || lpad((i % {runs})::VARCHAR, 3, '0') || '{suffix}' AS run_id,
           (((hash(i, 'a') % 200000)::BIGINT - 5000) * 0.01)::DECIMAL(18, 2) AS amount,
           'GBP' AS currency, 'FAILED' AS status,
           (DATE '{day0}' + (i % {runs})::INTEGER) AS business_date,
           'E310' AS error_code, 'timeout posting to ledger' AS error_message
    FROM range({start}, {start} + {rows}) t(i) ORDER BY run_id, txn_id
) TO '{path}' (HEADER)
"""


def rows(count: int) -> list[dict[str, Any]]:
    return [
        {
            "business_date": date(2026, 11, 9),
            "source": "payments-loader",
            "run_id": "PL-20261109",
            "txn_id": f"CG20261109{n:06d}",
            "category": "failed",
            "expected_amount": Decimal(f"{n}.{n % 100:02d}01"),
            "processed_amount": Decimal("0.0000"),
            "difference": -Decimal(f"{n}.{n % 100:02d}01"),
            "currency": "EUR" if n % 3 else "GBP",
            "error_code": "E42",
            "error_message": "issuer timed out",
            "break_id": f"BRK-{n:012x}",
            "break_status": "open",
            "note": "",
        }
        for n in range(count)
    ]


def cpu(work: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.process_time()
        work()
        times.append(time.process_time() - started)
    return statistics.median(times)


def linear(sizes: list[int], repeats: int) -> list[str]:
    columns = workbook.BREAK_COLUMNS
    seconds = []
    print(f"XLSX export of Breaks rows, median CPU time of {repeats}")
    print(f"{'rows':>8} {'xlsx s':>8} {'csv s':>8} {'xlsx/csv':>9} {'xlsx us/row':>12}")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "bench.xlsx"
        for size in sizes:
            data = rows(size)
            sheet = formats.Sheet("Breaks", [formats.Table(None, columns, data)])
            created = datetime(2026, 11, 24, tzinfo=UTC)
            xlsx = cpu(lambda: formats.write_xlsx(out, [sheet], created), repeats)  # noqa: B023
            text = cpu(lambda: formats.write_csv(data, columns, io.StringIO()), repeats)  # noqa: B023
            seconds.append(xlsx)
            print(
                f"{size:>8} {xlsx:>8.2f} {text:>8.2f} {xlsx / text:>9.1f} {1e6 * xlsx / size:>12.1f}"
            )
    allowed = GROWTH * sizes[-1] / sizes[0]
    ratio = seconds[-1] / seconds[0]
    print(f"  XLSX time, {sizes[-1]:,} rows over {sizes[0]:,}: {ratio:.2f} (target <= {allowed:g})")
    return [f"XLSX time ratio {ratio:.2f} > {allowed:g}"] if ratio > allowed else []


def bounded(big_rows: int) -> list[str]:
    env = bench_env()
    tmp = Path(tempfile.mkdtemp(prefix="recon-bench-export-"))
    try:
        started = time.perf_counter()
        expected, processed = tmp / "expected.csv", tmp / "run.csv"
        options: dict[str, Any] = {
            "rows": big_rows,
            "start": 0,
            "day0": "2026-07-01",
            "suffix": "",
            "runs": BIG_DAYS,
        }
        generate(expected, EXPECTED_SQL, **options)
        generate(processed, ALL_FAILED_SQL, **options)
        db = tmp / "store.duckdb"
        daily_job(db, env, expected, processed)
        print(
            f"  store of {big_rows:,} breaks built in {time.perf_counter() - started:.0f}s "
            f"({describe_job(env)})",
            file=sys.stderr,
        )
        out = tmp / "big.xlsx"
        measured = run_measured(recon_argv(db, "export", "--format", "xlsx", "-o", str(out)), env)
        from openpyxl import load_workbook  # the sheet names only: read-only, rows not read

        book = load_workbook(out, read_only=True)
        sheets = [name for name in book.sheetnames if name.startswith("Breaks")]
        book.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nrecon export --format xlsx of {big_rows:,} breaks (sheets: {', '.join(sheets)})")
    print(f"  time: {measured.seconds:.1f} s wall, {measured.cpu:.1f} s CPU")
    print(f"  peak RSS: {mb(measured.rss)} (target < {mb(int(MEMORY_TARGET))})")
    missed = []
    if measured.rss >= MEMORY_TARGET:
        missed.append(f"export of {big_rows:,} rows: peak RSS {mb(measured.rss)}")
    room = formats.XLSX_MAX_ROWS - 1  # rows a sheet holds under its header
    expected_sheets = max(1, -(-big_rows // room))
    if len(sheets) != expected_sheets:
        missed.append(f"export of {big_rows:,} rows: {len(sheets)} Breaks sheets")
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="20000,200000", help="sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--big-rows", type=int, default=1_100_000, help="breaks of the memory run (0: skip it)"
    )
    args = parser.parse_args()
    sizes = [int(n) for n in args.rows.split(",")]
    misses = linear(sizes, args.repeats)
    if args.big_rows:
        misses += bounded(args.big_rows)
    if misses:
        print("\nTARGET MISSED: " + "; ".join(misses))
        return 1
    print("\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
