"""One file is one transaction, whatever kills the process (ingest/files.py, docs/contract.md).

A 1,000,000-row run log is ingested by the real CLI in a subprocess, which is killed with SIGKILL
part-way. The database must then hold all of that run or none of it (never a partial count) and
no `ingested_files` row unless every row is there. The same ingest then runs to completion, and a
third run of it is a no-op (`already_ingested`).

The kill aims at the most dangerous moment: the store step, when DuckDB is already writing the
new rows into the database file but has not committed (the file grows past its size before the
ingest). If the ingest finishes before that is seen, the attempt is repeated on a fresh database,
killed after a fraction of the time a full ingest just took.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from tests.conftest import Recon
from tests.support import start_recon

ROWS = 1_000_000
RUN_ID = "CRASH-RUN-1"
SOURCE = "src"
POLL_SECONDS = 0.005
# After a completed (unkilled) attempt: kill after this fraction of the time it took.
FALLBACK_FRACTIONS = (0.4, 0.2, 0.1)


def _write_run_log(path: Path) -> None:
    """1M processed rows of one run; ~3% FAILED. The txn ids carry no long digit chains, so the
    card-number prefilter leaves them alone and the test stays quick."""
    with duckdb.connect() as conn:
        conn.execute(
            f"""
            COPY (
                SELECT 'TX-' || lpad(to_hex(i), 8, '0') AS txn_id,
                       '{RUN_ID}' AS run_id,
                       ((i * 7919 % 250000 + 500)::DECIMAL(12, 0) / 100)::DECIMAL(12, 2) AS amount,
                       ['GBP', 'EUR', 'USD'][(i % 3)::BIGINT + 1] AS currency,
                       CASE WHEN i % 33 = 0 THEN 'FAILED' ELSE 'PROCESSED' END AS status,
                       strftime(TIMESTAMP '2026-11-24 01:30:00' + to_microseconds(i * 40000),
                                '%Y-%m-%dT%H:%M:%S') AS processed_at,
                       '2026-11-24' AS business_date,
                       CASE WHEN i % 33 = 0 THEN 'E310' END AS error_code,
                       CASE WHEN i % 33 = 0 THEN 'timeout posting to ledger' END AS error_message
                FROM range(1, {ROWS} + 1) t(i) ORDER BY i
            ) TO '{path}' (HEADER, DELIMITER ',')
            """
        )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def _remove_db(db: Path) -> None:
    for path in (db, db.with_name(db.name + ".wal")):
        path.unlink(missing_ok=True)


def _prepare_db(recon: Recon) -> tuple[int, int]:
    """Create and checkpoint the schema, so that any later growth of the files is the ingest's."""
    result = recon("init")
    assert result.code == 0, result.stderr
    with duckdb.connect(str(recon.db)) as conn:
        conn.execute("CHECKPOINT")
    return _size(recon.db), _size(recon.db.with_name(recon.db.name + ".wal"))


def _ingest_killed(recon: Recon, csv: Path, kill_after: float | None) -> tuple[bool, float, str]:
    """Run the ingest; SIGKILL it when the store step starts writing (kill_after None) or after
    kill_after seconds. Returns (killed while running, seconds elapsed, what triggered the kill);
    an ingest that ends by itself must have succeeded."""
    db_size, wal_size = _prepare_db(recon)
    wal = recon.db.with_name(recon.db.name + ".wal")
    stderr_path = recon.workdir / "killed-ingest.stderr"
    with stderr_path.open("wb") as stderr:
        process = start_recon(
            ["--json", "ingest", "--source", SOURCE, str(csv)],
            cwd=recon.workdir,
            env=recon.env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    start = time.monotonic()
    trigger = ""
    try:
        while process.poll() is None:
            elapsed = time.monotonic() - start
            if kill_after is not None and elapsed >= kill_after:
                trigger = f"after {elapsed:.2f}s"
            elif kill_after is None and (_size(recon.db) > db_size or _size(wal) > wal_size):
                trigger = f"store step writing (db {db_size} -> {_size(recon.db)} bytes) at {elapsed:.2f}s"
            if trigger:
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(POLL_SECONDS)
        code = process.wait(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    elapsed = time.monotonic() - start
    if code != -signal.SIGKILL:
        assert code == 0, f"ingest failed (exit {code}): {stderr_path.read_text(errors='replace')}"
    return code == -signal.SIGKILL, elapsed, trigger


def _state(recon: Recon) -> tuple[int, int, int, int]:
    """(transactions of the run, ingested_files rows, runs rows, quarantine rows)."""
    row = recon.query(
        "SELECT (SELECT count(*) FROM transactions WHERE source = ? AND run_id = ?), "
        "(SELECT count(*) FROM ingested_files WHERE source = ?), "
        "(SELECT count(*) FROM runs WHERE source = ? AND run_id = ?), "
        "(SELECT count(*) FROM quarantine WHERE source = ?)",
        [SOURCE, RUN_ID, SOURCE, SOURCE, RUN_ID, SOURCE],
    )[0]
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


@pytest.mark.slow
def test_sigkill_mid_ingest_leaves_all_or_nothing(recon: Recon) -> None:
    csv = recon.workdir / f"{RUN_ID}.csv"
    _write_run_log(csv)

    killed, elapsed, trigger = _ingest_killed(recon, csv, kill_after=None)
    tried = [
        f"store-step trigger: {'killed ' + trigger if killed else f'finished in {elapsed:.1f}s'}"
    ]
    if not killed:
        full_time = elapsed
        for fraction in FALLBACK_FRACTIONS:
            _remove_db(recon.db)
            killed, elapsed, trigger = _ingest_killed(recon, csv, kill_after=fraction * full_time)
            tried.append(
                f"{fraction:.0%} of {full_time:.1f}s: "
                f"{'killed ' + trigger if killed else f'finished in {elapsed:.1f}s'}"
            )
            if killed:
                break
    assert killed, "could not kill the ingest while it was running: " + "; ".join(tried)

    loaded, files, runs, quarantined = _state(recon)
    where = "; ".join(tried)
    print(f"after SIGKILL ({where}): {loaded:,} rows, {files} ingested_files row(s)")
    assert loaded in (0, ROWS), f"partial load after SIGKILL ({where}): {loaded:,} rows"
    if loaded == 0:
        assert (files, runs, quarantined) == (0, 0, 0), (
            f"bookkeeping without rows after SIGKILL ({where}): "
            f"ingested_files={files}, runs={runs}, quarantine={quarantined}"
        )
    else:
        assert (files, runs) == (1, 1), f"rows without their bookkeeping ({where})"

    result, files_json = recon.ingest(csv, source=SOURCE)
    assert result.code == 0, result.stderr
    assert files_json[0]["rows_loaded"] == ROWS or files_json[0]["already_ingested"]
    loaded, files, runs, quarantined = _state(recon)
    assert (loaded, files, runs, quarantined) == (ROWS, 1, 1, 0)

    result, files_json = recon.ingest(csv, source=SOURCE)
    assert result.code == 0, result.stderr
    assert files_json[0]["already_ingested"] is True
    assert files_json[0]["rows_loaded"] == ROWS
    assert _state(recon) == (ROWS, 1, 1, 0)
