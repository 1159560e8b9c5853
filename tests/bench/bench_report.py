"""Building the daily report costs little more than listing the day's failures: `recon report
preview --date D -o DIR` (the report built, its files written, nothing sent) against `recon
failures --date D --format csv` (stdout to a file) for a business day of about 100,000 failed
records in a store of `--rows` records (default 10,000,000).

Run with `make bench` (or `.venv/bin/python -m tests.bench.bench_report [--rows N]
[--day-rows N] [--repeats N] [--keep DIR]`). Not a pytest module. The store: `--rows` minus
`--day-rows` records over 100 earlier days (the end to end bench's generator, 3% failed),
then the report's day, `--day-rows` (200,000) records of which half fail; loaded with `recon
ingest` and reconciled once. Then both commands run alternately, `--repeats` times each, the
first of each pair untimed (a warm-up; the day is already reconciled, so neither classifies it
again); medians compared. Target: ours <= 3x. Building the 10M-record store takes minutes;
`--rows 1000000` while iterating; `--keep DIR` keeps the store and reuses it.

Exit 1 when the target is missed; the figures are printed either way.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from tests.bench.bench_reconcile import (
    EXPECTED_SQL,
    PROCESSED_SQL,
    SOURCE,
    bench_env,
    generate,
    recon_argv,
    run_measured,
)

TARGET = 3.0  # report preview / failures --format csv, same day
HISTORY_DAYS = 100
DAY = "2026-06-01"  # the report's day, after the history's days (from 2026-02-01)
DAY_START = 900_000_000  # the day's txn numbers (9 digits: the generator pads ids to 9)
HISTORY_DAY0 = "2026-02-01"
HALF_FAILED = PROCESSED_SQL.replace("h < 30", "h < 500")  # the day: about half its records fail


def build_store(db: Path, tmp: Path, rows: int, day_rows: int, env: dict[str, str]) -> None:
    history = max(rows - day_rows, 0)
    files: list[tuple[str, Path]] = []
    if history:
        options = {"rows": history, "start": 0, "day0": HISTORY_DAY0, "suffix": "-H",
                   "runs": HISTORY_DAYS}  # fmt: skip
        generate(tmp / "history-expected.csv", EXPECTED_SQL, **options)
        generate(tmp / "history-run.csv", PROCESSED_SQL, **options)
        files += [
            ("expected", tmp / "history-expected.csv"),
            ("processed", tmp / "history-run.csv"),
        ]
    options = {"rows": day_rows, "start": DAY_START, "day0": DAY, "suffix": "-D", "runs": 1}
    generate(tmp / "day-expected.csv", EXPECTED_SQL, **options)
    generate(tmp / "day-run.csv", HALF_FAILED, **options)
    files += [("expected", tmp / "day-expected.csv"), ("processed", tmp / "day-run.csv")]
    for kind, path in files:
        run_measured(recon_argv(db, "ingest", "--source", SOURCE, "--kind", kind, str(path)), env)
        path.unlink()
    run_measured(recon_argv(db, "reconcile"), env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="records in the store")
    parser.add_argument("--day-rows", type=int, default=200_000, help="records of the day")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the store in this folder")
    args = parser.parse_args(argv)
    env = bench_env()
    with tempfile.TemporaryDirectory(prefix="bench-report-") as scratch:
        tmp = Path(scratch)
        folder = args.keep or tmp
        folder.mkdir(parents=True, exist_ok=True)
        db = folder / f"report-{args.rows}-{args.day_rows}.duckdb"
        if not db.exists():
            print(f"building a store of {args.rows:,} records ...", flush=True)
            build_store(db, tmp, args.rows, args.day_rows, env)
        out = tmp / "preview"
        ours_argv = recon_argv(db, "report", "preview", "--date", DAY, "-o", str(out))
        theirs_argv = recon_argv(db, "failures", "--date", DAY, "--format", "csv")
        ours: list[float] = []
        theirs: list[float] = []
        for repeat in range(args.repeats + 1):
            shutil.rmtree(out, ignore_errors=True)
            a = run_measured(ours_argv, env).seconds
            b = run_measured(theirs_argv, env).seconds
            if repeat:  # the first pair warms the caches
                ours.append(a)
                theirs.append(b)
        with (out / f"failed-transactions-{DAY}.csv").open("rb") as listed:
            rows = sum(1 for _ in listed) - 1
        attached = sorted(p.name for p in out.iterdir())
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"store: {args.rows:,} records; day {DAY}: {rows:,} failed records listed")
    print(f"  files written: {', '.join(attached)}")
    print(f"  recon report preview -o DIR: median {statistics.median(ours):.2f}s {ours}")
    print(f"  recon failures --format csv: median {statistics.median(theirs):.2f}s {theirs}")
    print(f"  ratio {ratio:.2f} (target <= {TARGET})", "ok" if ratio <= TARGET else "MISSED")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
