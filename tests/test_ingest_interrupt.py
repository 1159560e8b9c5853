"""Ctrl-C during a large ingest (issue 13, item 11): the file's transaction rolls back, the
command says it was interrupted (not that the file cannot be parsed), exits 130, and the audit
trail records the file with outcome "interrupted"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import duckdb

from tests.support import start_recon, wait_until

from .conftest import Recon


def _large_run_log(path: Path, rows: int) -> Path:
    with duckdb.connect() as conn:
        conn.execute(
            "COPY (SELECT 'T' || i AS txn_id, (i % 1000) / 100 AS amount, "
            "CASE WHEN i % 7 = 0 THEN 'FAILED' ELSE 'OK' END AS status, "
            "'R' || (i // 100000) AS run_id, "
            "TIMESTAMP '2026-03-23' + INTERVAL (i % 86400) SECOND AS processed_at "
            f"FROM range({rows}) t(i)) TO '{path}' (HEADER)"
        )
    return path


def _reading(pid: int, path: Path) -> bool:
    """The process has the file open: it is being hashed and read."""
    try:
        return any(
            os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd")
        )
    except OSError:
        return False


def test_ctrl_c_during_a_large_ingest_says_interrupted_and_audits_it(recon: Recon) -> None:
    assert recon("init").code == 0
    big = _large_run_log(recon.workdir / "big.csv", 2_000_000)
    process = start_recon(
        ["ingest", "--source", "pay", big],
        env=recon.env,
        cwd=recon.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: _reading(process.pid, big),
            timeout=60,
            what="recon ingest opening the file",
            process=process,
        )
        time.sleep(0.5)  # well inside the load: DuckDB is reading and staging the rows
        assert process.poll() is None, "the ingest finished before it could be interrupted"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert f"interrupted: nothing of {big} was loaded" in stderr
    assert "cannot be parsed" not in stderr and "TransactionContext" not in stderr
    assert "Traceback" not in stderr
    assert recon.query("SELECT count(*) FROM transactions") == [(0,)]
    assert recon.query("SELECT count(*) FROM ingested_files") == [(0,)]
    events = recon.query(
        "SELECT outcome, details FROM audit_events WHERE action = 'ingest' ORDER BY seq"
    )
    assert [(outcome, json.loads(details)["problem"]) for outcome, details in events] == [
        ("interrupted", "interrupted (SIGINT): nothing was loaded")
    ]
    verified = recon("audit", "verify")
    assert verified.code == 0, verified.stderr
    # The store is whole: the same file loads afterwards.
    small = recon.workdir / "small.csv"
    small.write_text("txn_id,amount,status,run_id\nA,1.00,OK,R\n")
    assert recon("ingest", "--source", "pay", small).code == 0
