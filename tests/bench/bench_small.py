"""Small work is fast: one new day of 5,000 records, and the failed-record list of the latest
day, against what they would cost with nothing but DuckDB or with nothing stored.

Run with `make bench` (or `.venv/bin/python -m tests.bench.bench_small [--history N]
[--day-rows N] [--repeats N]`). Not a pytest module. Every figure comes from fresh processes,
every ratio from timings taken in the same run.

1. *One new day*: `--day-rows` (5,000) expected and about as many processed records of one run
   in CSV, through the documented daily job (`recon daily --source S --expected MANIFEST
   RUN_LOG` when the installed recon has it, else `recon ingest --kind expected`, `recon
   ingest`, `recon reconcile --date DAY`) into a store that already holds one earlier day.
   The floor for that day, measured the same way: a fresh Python process that imports duckdb,
   bare-loads both CSVs into a new DuckDB file and runs the classification as one query (the
   end to end bench's floor). Target: ours <= 3x the floor.
2. *Failures of the latest day*: `recon failures --date last` on a store holding `--history`
   records (default 10M, spread over 100 earlier days, as the end to end bench generates them)
   plus the latest day, against the same command on a store holding only that day. Target: at
   most 2x. Building the 10M-record store takes minutes (most of this bench's time);
   `--history 1000000` shrinks it while iterating, `--history 0` skips this part, and
   `--keep DIR` keeps both stores in DIR and reuses them in later runs (built once by the recon
   being measured: a store kept from another version of recon measures that version's first
   reconciliation too).

Exit 1 when a target is missed; the figures are printed either way.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.bench_reconcile import (
    EXPECTED_SQL,
    PROCESSED_SQL,
    bench_env,
    daily_job,
    describe_job,
    floor_day,
    generate,
    recon_argv,
    run_measured,
)

DAY_TARGET = 3.0  # one new day: ours / DuckDB floor for that day
FAILURES_TARGET = 2.0  # failures --date last: large store / one-day store
HISTORY_DAYS = 100  # the large store's earlier days (and runs: one a day)
LATEST_DAY = "2026-06-01"


def day_files(tmp: Path, rows: int, number: int, day: str) -> tuple[Path, Path]:
    """One run's manifest and run log for `day` (txn numbers unique to `number`)."""
    expected, processed = tmp / f"day-{number}-expected.csv", tmp / f"day-{number}-run.csv"
    options: dict[str, Any] = {
        "rows": rows,
        "start": 10**9 + number * rows,
        "day0": day,
        "suffix": f"-D{number}",
        "runs": 1,
    }
    generate(expected, EXPECTED_SQL, **options)
    generate(processed, PROCESSED_SQL, **options)
    return expected, processed


def copy_store(source: Path, target: Path) -> None:
    """A copy of a store with the files beside it (.wal, .anchor, .pankey), modes kept."""
    for old in source.parent.glob(source.name + "*"):
        if old.is_file() and (old == source or old.name.startswith(source.name + ".")):
            shutil.copy2(old, target.with_name(target.name + old.name[len(source.name) :]))


def new_day(args: argparse.Namespace, env: dict[str, str], tmp: Path, one_day: Path) -> list[str]:
    ours: list[float] = []
    floor: list[float] = []
    store = tmp / "new-day.duckdb"
    for attempt in range(args.repeats):
        day = f"2026-07-{attempt + 1:02d}"
        expected, processed = day_files(tmp, args.day_rows, attempt + 1, day)
        floor.append(floor_day(env, expected, processed, tmp / "floor.duckdb")[0])
        for stale in tmp.glob(store.name + "*"):
            if stale.is_file():
                stale.unlink()
        copy_store(one_day, store)
        ours.append(daily_job(store, env, expected, processed, day)[0])
        print(
            f"  new day {attempt + 1}: DuckDB floor {floor[-1]:.2f}s, ours {ours[-1]:.2f}s",
            file=sys.stderr,
        )
    ours_s, floor_s = statistics.median(ours), statistics.median(floor)
    ratio = ours_s / floor_s
    print(
        f"\none new day of {args.day_rows:,} records into a store holding one day, median of "
        f"{args.repeats}, {os.cpu_count()} CPUs"
    )
    print(
        f"  DuckDB floor (python + import duckdb + bare load into a file + query): {floor_s:6.2f} s"
    )
    print(f"  ours: {describe_job(env)}: {ours_s:6.2f} s")
    print(f"  ratio ours / DuckDB floor: {ratio:.2f} (target <= {DAY_TARGET})")
    return [f"new day: ours / floor {ratio:.2f} > {DAY_TARGET}"] if ratio > DAY_TARGET else []


def failures(args: argparse.Namespace, env: dict[str, str], big: Path, one_day: Path) -> list[str]:
    timings: dict[str, list[float]] = {"one": [], "big": []}
    for attempt in range(args.repeats):
        for name, db in (("one", one_day), ("big", big)):
            argv = recon_argv(db, "failures", "--date", "last")
            timings[name].append(run_measured(argv, env)[0])
        print(
            f"  failures --date last {attempt + 1}: one day {timings['one'][-1]:.2f}s, "
            f"{args.history:,} records {timings['big'][-1]:.2f}s",
            file=sys.stderr,
        )
    one, many = statistics.median(timings["one"]), statistics.median(timings["big"])
    ratio = many / one
    print(
        f"\nrecon failures --date last ({args.day_rows:,} records that day), median of {args.repeats}"
    )
    print(f"  store holding one day:                            {one:6.2f} s")
    print(f"  store holding {args.history:>12,} records more:       {many:6.2f} s")
    print(f"  ratio: {ratio:.2f} (target <= {FAILURES_TARGET})")
    return (
        [f"failures: large / one-day {ratio:.2f} > {FAILURES_TARGET}"]
        if ratio > FAILURES_TARGET
        else []
    )


def build_history(
    args: argparse.Namespace, env: dict[str, str], tmp: Path, big: Path, latest: tuple[Path, Path]
) -> None:
    """The large store: `--history` records over the earlier days, then the latest day."""
    started = time.perf_counter()
    old_expected, old_processed = tmp / "old-expected.csv", tmp / "old-processed.csv"
    options: dict[str, Any] = {
        "rows": args.history,
        "start": 10**8,
        "day0": "2026-01-01",
        "suffix": "-H",
        "runs": HISTORY_DAYS,
    }
    generate(old_expected, EXPECTED_SQL, **options)
    generate(old_processed, PROCESSED_SQL, **options)
    daily_job(big, env, old_expected, old_processed)
    daily_job(big, env, *latest, LATEST_DAY)
    old_expected.unlink()
    old_processed.unlink()
    print(
        f"  store of {args.history:,} records + the latest day built in "
        f"{time.perf_counter() - started:.0f}s",
        file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--history",
        type=int,
        default=10_000_000,
        help="records of the large store's earlier days (0: skip the failures part)",
    )
    parser.add_argument("--day-rows", type=int, default=5_000, help="records of one day")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--keep", type=Path, help="keep the failures part's stores here, and reuse them if there"
    )
    args = parser.parse_args(argv)

    env = bench_env()
    print(f"daily job: {describe_job(env)}", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="recon-bench-small-"))
    misses: list[str] = []
    try:
        # The latest day, alone in a store and on top of the history in another.
        latest = day_files(tmp, args.day_rows, 0, LATEST_DAY)
        one_day, big = tmp / "one-day.duckdb", tmp / "big.duckdb"
        daily_job(one_day, env, *latest, LATEST_DAY)
        misses += new_day(args, env, tmp, one_day)
        if args.history <= 0:
            return _verdict(misses)

        if args.keep:  # stores kept from an earlier run, or kept from this one
            args.keep.mkdir(parents=True, exist_ok=True)
            if not (args.keep / one_day.name).exists():
                copy_store(one_day, args.keep / one_day.name)
            one_day, big = args.keep / one_day.name, args.keep / f"big-{args.history}.duckdb"
        if not big.exists():
            build_history(args, env, tmp, big, latest)
        misses += failures(args, env, big, one_day)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _verdict(misses)


def _verdict(misses: list[str]) -> int:
    if misses:
        print("\nTARGET MISSED: " + "; ".join(misses))
        return 1
    print("\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
