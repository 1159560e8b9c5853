"""Startup benchmark: small work is fast (issue 14). Target: `recon --version` and `recon --help`
each take at most 3 times as long as `python -c 'import click'` (the floor any click program
pays), measured in the same run.

Run with `make bench` (or `.venv/bin/python -m tests.bench.bench_startup [--repeats N]`). Not a
pytest module. Every measurement is a fresh process (`python -m reconcile`, as the `recon`
script runs it), the three commands interleaved round by round so that load from elsewhere on
the machine falls on all of them alike; the figure for each is the median. The package's
bytecode is written first (`make bytecode`), as pip writes it for an installed package.

For the record (no target): the wall time of `recon ingest` of a one-row run log into a fresh
store, and of the same ingest again into that store (the file is known: nothing to load), the
fixed cost every command pays. Exit 1 when either ratio is above 3.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = 3.0
REPEATS = 15
ONE_ROW = (
    "txn_id,run_id,amount,currency,status,processed_at,business_date\n"
    "T1,PL-20261124,12.50,EUR,PROCESSED,2026-11-24T01:30:07,2026-11-24\n"
)


def timed(command: list[str], env: dict[str, str], cwd: Path, ok: tuple[int, ...] = (0,)) -> float:
    """Wall seconds of one fresh process; its output is discarded, a failure stops the run."""
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode not in ok:
        sys.exit(
            f"{' '.join(command)} failed (exit {done.returncode}):\n"
            f"{done.stdout.decode(errors='replace')}{done.stderr.decode(errors='replace')}"
        )
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timed runs of each")
    args = parser.parse_args(argv)

    compileall.compile_dir(ROOT / "reconcile", quiet=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["RECON_NOW"] = "2026-11-24T09:00:00+00:00"
    recon = [sys.executable, "-m", "reconcile"]
    commands = {
        "import click": [sys.executable, "-c", "import click"],
        "recon --version": [*recon, "--version"],
        "recon --help": [*recon, "--help"],
    }

    tmp = Path(tempfile.mkdtemp(prefix="recon-bench-startup-"))
    try:
        os.chmod(tmp, 0o700)
        run_log = tmp / "PL-20261124.csv"
        run_log.write_text(ONE_ROW, encoding="utf-8")
        times: dict[str, list[float]] = {name: [] for name in commands}
        times["ingest, one row, fresh store"] = []
        times["ingest, same file again"] = []
        for command in commands.values():  # warm the file cache
            timed(command, env, tmp)
        for n in range(args.repeats):
            for name, command in commands.items():
                times[name].append(timed(command, env, tmp))
            if n < max(3, args.repeats // 3):  # the ingests are for the record: fewer rounds
                db = tmp / f"store-{n}.duckdb"
                ingest = [*recon, "--db", str(db), "ingest", "--source", "bench", str(run_log)]
                times["ingest, one row, fresh store"].append(timed(ingest, env, tmp, (0, 3)))
                times["ingest, same file again"].append(timed(ingest, env, tmp, (0, 3)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    median = {name: statistics.median(values) for name, values in times.items()}
    floor = median["import click"]
    failed = False
    print(f"median of {args.repeats} fresh processes each ({sys.executable}):")
    for name, seconds in median.items():
        line = f"  {name:30} {seconds * 1000:7.0f} ms"
        if name in ("recon --version", "recon --help"):
            ratio = seconds / floor
            failed |= ratio > TARGET
            verdict = "ok" if ratio <= TARGET else "MISSED"
            line += f"   {ratio:4.2f}x import click (target <= {TARGET:g}x: {verdict})"
        print(line)
    print("reproduce: .venv/bin/python -m tests.bench.bench_startup")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
