"""The audit trail: every action is recorded with who, what, when and from where, and every kind
of tampering (on a fresh copy each) is found by `recon audit verify`, which names the first bad
seq. The tampering is done the way an attacker with the file would: straight through DuckDB."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from reconcile import audit

from .conftest import Recon
from .support import start_recon

# Many tampering cases through `recon audit verify`: run in this process (tests/support.py).
pytestmark = pytest.mark.in_process

KEY = "test-audit-key-not-a-secret"
LOG = "txn_id,amount,status,run_id\nT1,10.00,OK,R1\nT2,5.00,FAILED,R1\n"


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with a dozen events of different kinds, built once; each test copies it."""
    folder = tmp_path_factory.mktemp("trail")
    recon = Recon(folder, folder / "recon.duckdb", _env(folder / "recon.duckdb"), in_process=True)
    (folder / "run.csv").write_text(LOG)
    steps = [
        ("init",),
        ("ingest", "--source", "pay", folder / "run.csv"),
        ("ingest", "--source", "pay", folder / "run.csv"),  # skipped: already ingested
        ("monitor", "add", "job", "--every", "1h", "--grace", "10m", "--tag", "ops"),
        ("monitor", "pause", "job", "--reason", "maintenance"),
        ("monitor", "resume", "job"),
        ("token", "create", "flow", "--source", "pay"),
        ("token", "revoke", "flow"),
        ("reconcile",),
        ("failures", "--date", "2026-11-24", "--format", "csv", "-o", folder / "failed.csv"),
        ("audit", "log"),
    ]
    for step in steps:
        done = recon(*step)
        assert done.code in (0, 3), (step, done.stderr)
    return folder


def _env(db: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    return {**env, "RECON_DB": str(db), "RECON_NOW": "2026-11-24T09:00:00+00:00",
            "RECON_AUDIT_KEY": KEY}  # fmt: skip


def copy_of(trail: Path, tmp_path: Path) -> Recon:
    for name in ("recon.duckdb", "recon.duckdb.anchor"):
        shutil.copy2(trail / name, tmp_path / name)
    return Recon(
        tmp_path, tmp_path / "recon.duckdb", _env(tmp_path / "recon.duckdb"), in_process=True
    )


def tamper(recon: Recon, *statements: str) -> None:
    with duckdb.connect(str(recon.db)) as conn:
        for sql in statements:
            conn.execute(sql)


def verify(recon: Recon) -> tuple[int, str]:
    done = recon("audit", "verify")
    return done.code, done.stderr


def test_every_action_is_on_the_record_with_who_what_and_where(trail: Path, tmp_path: Path) -> None:
    recon = copy_of(trail, tmp_path)
    events = recon("--json", "audit", "log").json()["events"]
    changes = [e["object"] for e in events if e["action"] == "config.change"]
    assert changes == ["monitor:job"]  # configuration versions are audited too (no recon.toml)
    events = [e for e in events if e["action"] != "config.change"]
    actions = [e["action"] for e in events]
    assert actions[:11] == [
        "ingest", "ingest", "monitor.add", "monitor.pause", "monitor.resume", "token.create",
        "token.revoke", "reconcile", "reconcile", "failures.list", "audit.log",
    ]  # fmt: skip
    # (failures reconciles its range first: the second reconcile)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    by_action = {e["action"]: e for e in events}
    first, skipped = events[0], events[1]
    assert first["object"] == "pay:run.csv" and first["outcome"] == "success"
    digest = hashlib.sha256(LOG.encode()).hexdigest()
    assert first["details"]["sha256"] == digest and first["details"]["rows_loaded"] == 2
    assert (skipped["outcome"], skipped["details"]["sha256"]) == ("skipped", digest)
    assert all(e["origin"]["via"] == "cli" and e["origin"]["host"] for e in events)
    assert len({e["actor"] for e in events}) == 1 and events[0]["actor"]
    added = by_action["monitor.add"]["details"]["after"]
    assert (added["every_seconds"], added["grace_seconds"], added["tags"]) == (3600, 600, ["ops"])
    assert by_action["monitor.pause"]["details"]["reason"] == "maintenance"
    written = by_action["failures.list"]["details"]["written"]
    assert written == {
        str(trail / "failed.csv"): hashlib.sha256((trail / "failed.csv").read_bytes()).hexdigest()
    }
    assert all(e["alg"] == "hmac-sha256" for e in events)
    # Filters, and reading the trail is itself an event.
    paused = recon("--json", "audit", "log", "--action", "monitor").json()["events"]
    assert [e["action"] for e in paused] == ["monitor.add", "monitor.pause", "monitor.resume"]
    assert (
        recon("--json", "audit", "log", "--object", "pay").json()["events"][0]["action"] == "ingest"
    )
    assert recon("--json", "audit", "log").json()["events"][-1]["action"] == "audit.log"


def test_an_intact_trail_verifies_and_the_guard_refuses_edits(trail: Path, tmp_path: Path) -> None:
    recon = copy_of(trail, tmp_path)
    code, said = verify(recon)
    assert code == 0 and "audit trail intact" in said, said
    for sql in (
        "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2",
        "DELETE FROM audit_events WHERE seq = 2",
        "DROP TABLE audit_events",
    ):
        with pytest.raises(duckdb.Error):
            tamper(recon, sql)
    assert verify(recon)[0] == 0
    assert (tmp_path / "recon.duckdb.anchor").stat().st_mode & 0o777 == 0o600


def _rehash(recon: Recon, start: int, key: bytes | None) -> None:
    """Recompute every hash from `start` on, as someone without the real key would."""
    with duckdb.connect(str(recon.db)) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("DELETE FROM audit_guard")
        rows = conn.execute(f"SELECT {audit.COLUMNS} FROM audit_events ORDER BY seq").fetchall()
        names = [c.strip() for c in audit.COLUMNS.split(",")]
        prev = audit.GENESIS
        for values in rows:
            row = dict(zip(names, values, strict=True))
            if row["seq"] >= start:
                event = audit._row_event({**row, "alg": "hmac-sha256" if key else "sha256"})
                message = (prev + "\n" + audit.canonical(event)).encode()
                digest = (
                    hmac.new(key, message, hashlib.sha256).hexdigest()
                    if key
                    else hashlib.sha256(message).hexdigest()
                )
                conn.execute(
                    "UPDATE audit_events SET prev_hash = ?, hash = ?, alg = ? WHERE seq = ?",
                    [prev, digest, event["alg"], row["seq"]],
                )
                row["hash"] = digest
            prev = row["hash"]
        conn.execute(f"INSERT INTO audit_guard SELECT {audit.COLUMNS} FROM audit_events")


UNGUARD = "DELETE FROM audit_guard"
CASES: dict[str, tuple[Callable[[Recon], Any], int, str]] = {
    "edit one field": (
        lambda r: tamper(r, UNGUARD, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 4"),
        4,
        "the hash does not recompute",
    ),
    "edit the details JSON": (
        lambda r: tamper(
            r,
            UNGUARD,
            "UPDATE audit_events SET details = replace(details, '}', ',\"x\":1}') WHERE seq = 1",
        ),
        1,
        "the hash does not recompute",
    ),
    "delete a middle row": (
        lambda r: tamper(r, UNGUARD, "DELETE FROM audit_events WHERE seq = 5"),
        5,
        "seq 5 is missing",
    ),
    "swap two rows": (
        lambda r: tamper(
            r,
            UNGUARD,
            "UPDATE audit_events SET seq = -1 WHERE seq = 6",
            "UPDATE audit_events SET seq = 6 WHERE seq = 7",
            "UPDATE audit_events SET seq = 7 WHERE seq = -1",
        ),
        6,
        "prev_hash is not the hash of the row before",
    ),
    "cut off the last rows": (
        lambda r: tamper(
            r, "DELETE FROM audit_guard WHERE seq >= 9", "DELETE FROM audit_events WHERE seq >= 9"
        ),
        9,
        "rows were cut off the end",
    ),
    "recompute later hashes with a wrong key": (
        lambda r: _rehash(r, 3, b"a-guessed-key"),
        3,
        "recomputed with another key",
    ),
    "recompute the whole chain without a key": (
        lambda r: _rehash(r, 1, None),
        1,
        "differs from the one anchored outside",
    ),
    "drop the guard and update": (
        lambda r: tamper(
            r, "DROP TABLE audit_guard", "UPDATE audit_events SET outcome = 'failure' WHERE seq = 2"
        ),
        2,
        "the hash does not recompute",
    ),
    "drop the guard only": (
        lambda r: tamper(r, "DROP TABLE audit_guard"),
        1,
        "guard table audit_guard was dropped",
    ),
    "remove a guard row": (
        lambda r: tamper(r, "DELETE FROM audit_guard WHERE seq = 8"),
        8,
        "guard row of this event was removed",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tampering_is_detected_at_the_first_bad_seq(trail: Path, tmp_path: Path, case: str) -> None:
    recon = copy_of(trail, tmp_path)
    change, seq, problem = CASES[case]
    change(recon)
    code, said = verify(recon)
    assert code == 3, said
    assert f"BROKEN at seq {seq}: " in said and problem in said, said
    recon("monitor", "add", "later", "--every", "1h", "--grace", "1m")  # life goes on...
    code, again = verify(recon)  # ...and the evidence stays
    assert code == 3 and f"BROKEN at seq {seq}: " in again, again


def test_a_keyed_trail_without_its_key_cannot_be_called_intact(trail: Path, tmp_path: Path) -> None:
    recon = copy_of(trail, tmp_path)
    del recon.env["RECON_AUDIT_KEY"]
    code, said = verify(recon)
    assert code == 1 and "RECON_AUDIT_KEY" in said, said
    assert "BROKEN" not in said
    recon.env["RECON_AUDIT_KEY"] = "some-other-key"
    code, said = verify(recon)  # the anchored hashes are intact: it is the key that is wrong
    assert code == 1 and "not the one this trail was written with" in said, said
    assert "BROKEN" not in said and "run `recon audit verify`" not in said


def test_an_unkeyed_trail_verifies_with_a_warning(recon: Recon) -> None:
    del recon.env["RECON_AUDIT_KEY"]
    recon("monitor", "add", "job", "--every", "1h", "--grace", "10m")
    code, said = verify(recon)
    assert code == 0 and "not keyed" in said, said
    events = recon("--json", "audit", "log").json()["events"]
    assert {e["alg"] for e in events} == {"sha256"} and len(events) >= 2
    assert (
        json.loads((recon.workdir / "recon.duckdb.anchor").read_text().splitlines()[-1])["seq"] >= 2
    )


def test_a_wrong_key_is_refused_before_it_writes_anything(trail: Path, tmp_path: Path) -> None:
    recon = copy_of(trail, tmp_path)
    before = recon.query("SELECT count(*) FROM audit_events")
    refused = recon("monitor", "add", "x", "--every", "1h", "--grace", "1m",
                    env={"RECON_AUDIT_KEY": "not-the-key"})  # fmt: skip
    assert refused.code == 1 and "not the one this trail was written with" in refused.stderr
    assert recon.query("SELECT count(*) FROM audit_events") == before
    assert recon.query("SELECT count(*) FROM monitors WHERE name = 'x'") == [(0,)]
    assert verify(recon)[0] == 0


def test_concurrent_writers_in_one_process_and_across_processes_keep_one_chain(
    recon: Recon,
) -> None:
    """As `recon serve` does: threads, each with its own connection to the one file, record
    events at once (each also anchoring the head), while `recon` processes write too. One chain
    comes out: seqs 1..N, each once, and `audit verify` finds it intact."""
    import subprocess
    import threading
    from datetime import UTC, datetime

    from reconcile import store

    assert recon("init").code == 0
    anchor = recon.workdir / "recon.duckdb.anchor"
    trail = audit.Trail("tester", {"via": "test"}, KEY.encode(), anchor)
    now = datetime(2026, 11, 24, 9, tzinfo=UTC)
    threads, per_thread, errors = 8, 25, []
    start = threading.Barrier(threads + 1)

    def writer(number: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                with store.connect(recon.db, 120) as conn, audit.acting(trail):
                    audit.record_alone(conn, "test.write", f"t{number}", now=now, details={"i": i})
                    audit.anchor(conn, anchor)
        except Exception as exc:  # reported below, with the thread's number
            errors.append(f"thread {number}: {type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    env = {**recon.env, "RECON_LOCK_TIMEOUT": "120s"}
    processes = [
        start_recon(
            ["monitor", "add", f"m{n}", "--every", "1h", "--grace", "1m"],
            cwd=recon.workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    start.wait()
    for worker in workers:
        worker.join()
    outcomes = [(p.communicate(timeout=300)[1], p.returncode) for p in processes]
    assert not errors, errors
    assert all(code == 0 for _, code in outcomes), outcomes
    [(rows, distinct, low, high)] = recon.query(
        "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM audit_events"
    )
    assert (rows, distinct, low, high) == (rows, rows, 1, rows), (rows, distinct, low, high)
    assert recon.query("SELECT count(*) FROM audit_events WHERE action = 'test.write'") == [
        (threads * per_thread,)
    ]
    code, said = verify(recon)
    assert code == 0 and "audit trail intact" in said, said
