"""Audit benchmark: what the audit trail adds to ingest (target: at most 10%).

Run with `make bench` (or `.venv/bin/python -m tests.bench.bench_audit`). The same ingest runs
through the library twice, alternating, each time into a fresh database: once as shipped (one
HMAC-chained audit event per file, in the file's transaction) and once with `audit.record`
replaced by a no-op (the obvious alternative: no trail). Two shapes: the ingest benchmark's
1,000,000-row run log, and 300 small files of 200 rows (where a per-file cost would show).
Exit 1 when either ratio (median with / median without) is above 1.10.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from reconcile import audit, store
from reconcile.ingest import files as ingest
from reconcile.settings import SourceConfig
from tests.bench.bench_ingest import GENERATE_SQL

TARGET = 1.10
NOW = datetime(2026, 11, 24, 9, tzinfo=UTC)


def make_files(folder: Path, rows: int, count: int) -> list[Path]:
    """`count` run logs of `rows` rows each, shaped as in the ingest benchmark."""
    folder.mkdir()
    paths = []
    with duckdb.connect() as conn:
        for n in range(count):
            path = folder / f"run-{n:04d}.csv"
            sql = GENERATE_SQL.format(rows=rows, path=str(path))
            sql = sql.replace("'PL-20261124'", f"'R{n:04d}'").replace("'T20261124-'", f"'T{n}-'")
            conn.execute(sql)
            paths.append(path)
    return paths


def timed_ingest(paths: list[Path], folder: Path, tag: str, audited: bool) -> float:
    path = folder / f"{tag}.duckdb"
    trail = audit.Trail("bench", {"via": "cli"}, b"bench-key", folder / f"{tag}.anchor")
    original: Callable[..., Any] = audit.record
    if not audited:
        audit.record = lambda *args, **kwargs: 0  # type: ignore[assignment]
    try:
        with store.connect(path) as conn, audit.acting(trail):
            started = time.perf_counter()
            for file in paths:
                ingest.ingest_file(
                    conn, file, source="bench", config=SourceConfig(), now=NOW, user="bench"
                )
            if audited:
                audit.anchor(conn, folder / f"{tag}.anchor")  # once per command, as the CLI
            return time.perf_counter() - started
    finally:
        audit.record = original  # type: ignore[assignment]
        for leftover in folder.glob(f"{tag}.*"):
            leftover.unlink()


def compare(name: str, paths: list[Path], folder: Path, repeats: int) -> float:
    times: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(repeats):
        for audited in (round_ % 2 == 0, round_ % 2 != 0):
            times[audited].append(timed_ingest(paths, folder, f"r{round_}{audited}", audited))
    with_trail, without = statistics.median(times[True]), statistics.median(times[False])
    ratio = with_trail / without
    verdict = "met" if ratio <= TARGET else "NOT MET"
    print(
        f"{name}: with the audit trail {with_trail:.3f}s, without {without:.3f}s, "
        f"ratio {ratio:.3f} (target <= {TARGET}: {verdict})"
    )
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="recon-bench-audit-") as tmp:
        folder = Path(tmp)
        big = make_files(folder / "big", args.rows, 1)
        small = make_files(folder / "small", 200, 300)
        ratios = [
            compare(f"one file of {args.rows:,} rows", big, folder, args.repeats),
            compare("300 files of 200 rows", small, folder, args.repeats),
        ]
    print("reproduce: .venv/bin/python -m tests.bench.bench_audit")
    return 0 if max(ratios) <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
