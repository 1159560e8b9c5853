"""Width benchmark: the cost of `recon ingest` grows linearly with a file's column count.

Run with `.venv/bin/python -m tests.bench.bench_width` (not a pytest module). Two checks, each
timing its contenders alternately in fresh interpreters, each into a fresh database file, and
comparing medians:

1. one row: a run log with the 8 canonical columns against the same row with `--extra` (2,000)
   more columns, both through `recon ingest`; target: wide / narrow <= 5;
2. `--rows` (100,000) rows of `--columns` (300) columns: `recon ingest` against the bare DuckDB
   load of the same file (a fresh process doing `duckdb.connect(db)` and
   `CREATE TABLE t AS FROM read_csv(file)`); target: ours / bare <= 2.

`--only row` or `--only wide` runs one check alone (e.g. `--only wide --rows 20000` to iterate).
Every figure is printed; the exit code is 1 when a target is missed (or a contender fails).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import duckdb

from tests.bench.bench_ingest import Run, fresh_db, measure

REPEATS = 5
ONE_ROW_TARGET = 5.0
WIDE_TARGET = 2.0
CANONICAL = "run_id, txn_id, amount, currency, status, processed_at, business_date, error_code"

BARE_CODE = (
    "import sys, duckdb\n"
    "duckdb.connect(sys.argv[1]).execute("
    "'CREATE TABLE t AS FROM read_csv(?)', [sys.argv[2]])\n"
)


def generate(path: Path, rows: int, extra: int) -> None:
    """A processed run log: the 8 canonical columns, then `extra` columns of short text
    (codes, numbers, words: what wide exports carry), deterministic (hashes of the row)."""
    kinds = (
        "'c' || (hash(i, {k}) % 1000)::VARCHAR",
        "(hash(i, {k}) % 100000)::VARCHAR",
        "['red', 'green', 'blue', 'amber', ''][(hash(i, {k}) % 5)::BIGINT + 1]",
    )
    extras = "".join(
        f", {kinds[k % len(kinds)].format(k=k)} AS extra_{k:04d}" for k in range(extra)
    )
    sql = (
        "COPY (SELECT 'W-RUN' AS run_id, 'T' || lpad(i::VARCHAR, 8, '0') AS txn_id, "
        "((hash(i, 'amount') % 250000 + 500) / 100)::DECIMAL(12, 2)::VARCHAR AS amount, "
        "'GBP' AS currency, 'PROCESSED' AS status, "
        "strftime(TIMESTAMP '2026-11-24 01:30:00' + to_microseconds(i * 4000), "
        "'%Y-%m-%dT%H:%M:%S') AS processed_at, '2026-11-24' AS business_date, "
        f"NULL::VARCHAR AS error_code{extras} FROM range(1, {rows} + 1) t(i) ORDER BY i) "
        f"TO '{str(path).replace(chr(39), chr(39) * 2)}' (HEADER, DELIMITER ',')"
    )
    with duckdb.connect() as conn:
        conn.execute(sql)


def ingest(path: Path, db: Path, env: dict[str, str], tmp: Path) -> Run:
    argv = [sys.executable, "-m", "reconcile", "--db", str(db), "--json", "ingest"]
    run = measure([*argv, "--source", "bench", str(path)], env, tmp)
    if run.code not in (0, 3):
        raise RuntimeError(f"recon ingest failed (exit {run.code}):\n{run.stdout}\n{run.stderr}")
    return run


def bare(path: Path, db: Path, env: dict[str, str], tmp: Path) -> Run:
    run = measure([sys.executable, "-c", BARE_CODE, str(db), str(path)], env, tmp)
    if run.code != 0:
        raise RuntimeError(f"bare load failed (exit {run.code}):\n{run.stderr}")
    return run


def alternate(
    contenders: dict[str, tuple[Path, str]], repeats: int, env: dict[str, str], tmp: Path
) -> dict[str, list[float]]:
    """Time each contender `repeats` times, alternating; name -> seconds."""
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for attempt in range(1, repeats + 1):
        for name, (path, how) in contenders.items():
            db = fresh_db(tmp, name.replace(" ", "_"))
            run = (ingest if how == "ingest" else bare)(path, db, env, tmp)
            seconds[name].append(run.seconds)
        print(
            f"  run {attempt}: "
            + ", ".join(f"{name} {times[-1]:.2f}s" for name, times in seconds.items()),
            file=sys.stderr,
        )
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", type=int, default=2000, help="extra columns of the 1-row file")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the wide file")
    parser.add_argument("--columns", type=int, default=300, help="columns of the wide file")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timed runs of each")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--only", choices=("row", "wide"), help="run one check alone (1: row, 2: wide)"
    )
    args = parser.parse_args(argv)

    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env["RECON_NOW"] = "2026-11-24T09:00:00+00:00"
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))

    tmp = Path(tempfile.mkdtemp(prefix="recon-bench-width-"))
    try:
        return bench(args, env, tmp)
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def bench(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> int:
    narrow, wide_row, wide = tmp / "narrow.csv", tmp / "wide-row.csv", tmp / "wide.csv"
    one: dict[str, list[float]] = {}
    two: dict[str, list[float]] = {}
    if args.only != "wide":
        generate(narrow, 1, 0)
        generate(wide_row, 1, args.extra)
        print("1. one row, 8 columns against 8 + extra", file=sys.stderr)
        one = alternate(
            {"narrow": (narrow, "ingest"), "wide row": (wide_row, "ingest")},
            args.repeats,
            env,
            tmp,
        )
    if args.only != "row":
        generate(wide, args.rows, args.columns - 8)
        print(
            f"2. {args.rows:,} rows x {args.columns} columns ({wide.stat().st_size / 1e6:.1f} MB): "
            "recon ingest against bare",
            file=sys.stderr,
        )
        two = alternate({"bare": (wide, "bare"), "ours": (wide, "ingest")}, args.repeats, env, tmp)

    medians = {name: statistics.median(times) for name, times in (one | two).items()}
    misses = []

    def row(label: str, value: str, target: str = "") -> str:
        return f"| {label:<40} | {value:>16} | {target:<8} |"

    print(
        f"\nwidth benchmark: median of {args.repeats}, duckdb {duckdb.__version__}, "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    print(row("measure", "value", "target"))
    print(f"|{'-' * 42}|{'-' * 18}|{'-' * 10}|")
    if one:
        one_ratio = medians["wide row"] / medians["narrow"]
        if one_ratio > ONE_ROW_TARGET:
            misses.append(f"1-row ratio {one_ratio:.2f} > {ONE_ROW_TARGET}")
        print(row("1 row, 8 columns (recon ingest)", f"{medians['narrow']:.2f} s"))
        print(
            row(f"1 row, 8 + {args.extra:,} columns (recon ingest)", f"{medians['wide row']:.2f} s")
        )
        print(row("ratio wide / narrow", f"{one_ratio:.2f}", f"<= {ONE_ROW_TARGET:g}"))
    if two:
        two_ratio = medians["ours"] / medians["bare"]
        if two_ratio > WIDE_TARGET:
            misses.append(f"wide ratio {two_ratio:.2f} > {WIDE_TARGET}")
        print(
            row(f"{args.rows:,} x {args.columns}: bare read_csv CTAS", f"{medians['bare']:.2f} s")
        )
        print(row(f"{args.rows:,} x {args.columns}: recon ingest", f"{medians['ours']:.2f} s"))
        print(row("ratio ours / bare", f"{two_ratio:.2f}", f"<= {WIDE_TARGET:g}"))
    for name, times in (one | two).items():
        print(row(f"all runs: {name} s", " ".join(f"{t:.2f}" for t in times)))
    if misses:
        print("\nTARGET MISSED: " + "; ".join(misses))
        return 1
    print("\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
