"""Ping benchmark: sustained `recon serve` ping throughput and p99 latency on loopback, with wrk.

Run with `make bench` (or `.venv/bin/python -m tests.bench.bench_ping [--duration S]
[--connections N]`). Not a pytest module. It builds a fresh store with the real CLI (`recon
init`, `recon monitor add`, the ping URL from `recon --json monitor show`), starts `recon serve`
as a real process on a free loopback port and loads its ping URL with wrk (`--latency`, one
thread, a few connections, after a warm-up). The alternative, measured the same way in the same
run just before: a bare Starlette app served by uvicorn with the same options, answering 200 "OK"
with no spool, no fsync and no lookup (the ceiling the framework gives).

Then the server is stopped, `recon watch --once` drains what is still spooled, and every
acknowledged ping must be in the store: exactly one signal per 2xx wrk counted (plus at most one
per connection and wrk run: a request in flight when wrk stops is acknowledged to a socket wrk no
longer reads). The per-monitor rate limit (RECON_PING_RATE_LIMIT, default 600 a minute) is raised
for the benchmark, since all the load goes to one monitor.

Target (2-core machine): at least 2,000 pings a second with p99 latency under 50 ms, no non-2xx
answer, no socket error, no ping lost. Exit 1 when missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]
TARGET_RPS = 2000.0
TARGET_P99_MS = 50.0
RATE_LIMIT = 1_000_000_000  # pings a minute per monitor, for the benchmark only
MONITOR = "bench-job"

# wrk's own summary, as one JSON line (its text output rounds and changes units).
WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK-JSON {"requests": %d, "duration_us": %d, "non_2xx": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""

# The alternative: the same framework and server options, nothing behind the answer.
BARE_APP = """
import sys
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from reconcile.server.app import run

async def ok(request):
    return PlainTextResponse("OK\\n")

app = Starlette(routes=[Route("/health", ok), Route("/ping/{a}", ok, methods=["GET", "POST", "HEAD"])])
run(app, "127.0.0.1", int(sys.argv[1]))
"""


@dataclass
class Load:
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    text: str  # wrk's own report

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def find_wrk() -> str | None:
    """wrk from Debian; installed here when running as root and missing."""
    found = shutil.which("wrk")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: apt-get install wrk", file=sys.stderr)
        quiet = {
            "stdout": subprocess.DEVNULL,
            "env": {**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        }
        if subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], **quiet).returncode:
            subprocess.run(["apt-get", "update", "-q"], **quiet)
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], **quiet)
        found = shutil.which("wrk")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(argv: list[str], env: dict[str, str], cwd: Path, base: str) -> subprocess.Popen[bytes]:
    """Start a server; its messages go to cwd/server.log, shown if it does not come up."""
    with (cwd / "server.log").open("ab") as log:
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=log)
    for _ in range(200):
        if process.poll() is None:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=1):
                    return process
            except OSError:
                time.sleep(0.05)
                continue
        break
    process.kill()
    messages = (cwd / "server.log").read_text(errors="replace")
    raise SystemExit(f"{' '.join(argv[:4])} did not answer on {base}:\n{messages}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def load(wrk: str, url: str, seconds: int, connections: int, script: Path) -> Load:
    argv = [wrk, "--latency", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("WRK-JSON ")]
    if done.returncode or not lines:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    report = json.loads(lines[0].removeprefix("WRK-JSON "))
    errors = sum(report[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return Load(
        requests=report["requests"],
        seconds=report["duration_us"] / 1e6,
        non_2xx=report["non_2xx"],
        socket_errors=errors,
        p50_ms=report["p50_us"] / 1000,
        p90_ms=report["p90_us"] / 1000,
        p99_ms=report["p99_us"] / 1000,
        max_ms=report["max_us"] / 1000,
        text="\n".join(line for line in done.stdout.splitlines() if line not in lines),
    )


def recon(env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "reconcile", *args], env=env, cwd=cwd, capture_output=True, text=True
    )
    if done.returncode not in (0, 3):
        raise SystemExit(f"recon {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def count_signals(db: Path) -> tuple[int, int]:
    """(signals of the benchmark's monitor, distinct request ids among them)."""
    with duckdb.connect(str(db), read_only=True) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT request_id) FROM signals "
            "JOIN monitors USING (monitor_id) WHERE name = ?",
            [MONITOR],
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def show(name: str, load_: Load) -> str:
    return (
        f"{name}: {load_.rps:,.0f} pings/s ({load_.requests:,} in {load_.seconds:.1f} s), "
        f"latency p50 {load_.p50_ms:.2f} ms, p90 {load_.p90_ms:.2f} ms, p99 {load_.p99_ms:.2f} ms, "
        f"max {load_.max_ms:.1f} ms; non-2xx {load_.non_2xx}, socket errors {load_.socket_errors}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of measured load")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before measuring")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    args = parser.parse_args(argv)
    reproduce = (
        f".venv/bin/python -m tests.bench.bench_ping --duration {args.duration} "
        f"--warmup {args.warmup} --connections {args.connections}"
    )
    wrk = find_wrk()
    if wrk is None:
        print("wrk is needed: apt-get install wrk (Debian), then run again:\n  " + reproduce)
        return 1
    load_1m = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="recon-bench-ping-"))
    try:
        script = tmp / "report.lua"
        script.write_text(WRK_REPORT, encoding="utf-8")
        db = tmp / "ping.duckdb"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env.update({"RECON_DB": str(db), "RECON_PING_RATE_LIMIT": str(RATE_LIMIT)})
        recon(env, tmp, "init")
        recon(env, tmp, "monitor", "add", MONITOR, "--every", "1d", "--grace", "1h")

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        bare = start([sys.executable, "-c", BARE_APP, str(port)], env, tmp, base)
        try:
            load(wrk, f"{base}/ping/x", args.warmup, args.connections, script)
            baseline = load(wrk, f"{base}/ping/x", args.duration, args.connections, script)
        finally:
            stop(bare)

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        shown = json.loads(
            recon({**env, "RECON_BASE_URL": base}, tmp, "--json", "monitor", "show", MONITOR)
        )
        url = str(shown["ping_url"])
        server = start(
            [sys.executable, "-m", "reconcile", "serve", "--port", str(port)], env, tmp, base
        )
        try:
            warm = load(wrk, url, args.warmup, args.connections, script)
            ours = load(wrk, url, args.duration, args.connections, script)
        finally:
            stop(server)

        recorded_by_server = count_signals(db)[0]
        started = time.perf_counter()
        recon(env, tmp, "watch", "--once")  # drains what the server had not recorded yet
        drain_seconds = time.perf_counter() - started
        recorded, distinct = count_signals(db)
        left = sorted(p.name for p in (tmp / "ping.duckdb.spool").glob("*.jsonl"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    acknowledged = warm.requests + ours.requests
    in_flight = 2 * args.connections
    print(
        f"\nping throughput on loopback: wrk --latency -t1 -c{args.connections}, "
        f"{args.warmup} s warm-up then {args.duration} s, one monitor "
        f"(RECON_PING_RATE_LIMIT raised to {RATE_LIMIT:,} a minute for the benchmark; default 600), "
        f"{os.cpu_count()} cores"
    )
    print("  wrk on recon serve:\n" + "\n".join("    " + line for line in ours.text.splitlines()))
    print(f"  load average before the run: {load_1m:.2f} (other work on the machine skews this)")
    print("  " + show("bare Starlette/uvicorn app answering OK (no spool)", baseline))
    print("  " + show("recon serve (fsync before 200, drained into the store)", ours))
    print(
        f"  ratio recon serve / bare app: {ours.rps / baseline.rps:.2f} in throughput, "
        f"{ours.p99_ms / baseline.p99_ms:.1f}x the p99 latency"
    )
    print(
        f"  store: {recorded:,} signals ({distinct:,} distinct request ids) for {acknowledged:,} "
        f"acknowledged pings (warm-up included); spool files left: {len(left)}"
    )
    drained = recorded - recorded_by_server
    print(
        f"  recording: the server's drainer had recorded {recorded_by_server:,} when it stopped; "
        f"recon watch --once recorded the other {drained:,} in {drain_seconds:.1f} s "
        f"({drained / drain_seconds:,.0f} pings/s, CLI start-up included)"
    )
    if drained / drain_seconds < ours.rps:
        print(
            "  NOTE: the store records pings more slowly than the server acknowledges them; "
            "above that rate the spool grows (durably) until the load eases"
        )
    missed = []
    if ours.rps < TARGET_RPS:
        missed.append(f"{ours.rps:,.0f} pings/s < {TARGET_RPS:,.0f}")
    if ours.p99_ms >= TARGET_P99_MS:
        missed.append(f"p99 {ours.p99_ms:.1f} ms >= {TARGET_P99_MS:.0f} ms")
    if ours.non_2xx or ours.socket_errors or warm.non_2xx or warm.socket_errors:
        missed.append("answers other than 2xx, or socket errors")
    if distinct != recorded or not acknowledged <= recorded <= acknowledged + in_flight or left:
        missed.append(
            f"store holds {recorded:,} signals ({distinct:,} distinct) for {acknowledged:,} "
            f"acknowledged pings (up to {in_flight} more may have been in flight), "
            f"spool files left {left}"
        )
    if missed:
        print("\nTARGET MISSED: " + "; ".join(missed))
        print(f"reproduce with: {reproduce}")
        return 1
    print(f"\ntarget met (>= {TARGET_RPS:,.0f} pings/s, p99 < {TARGET_P99_MS:.0f} ms, none lost)")
    print(f"reproduce with: {reproduce}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
