"""Reading needs no signing key (issue 13, item 2): an analyst without `RECON_AUDIT_KEY` lists
failures and exports from a keyed store, each access recorded in the chain as a reader's
unkeyed event that the next keyed command seals; such an event can only be a read, so a key-less
process cannot forge a write; and the demo's key is suggested only on the demo's store."""

from __future__ import annotations

import os
import pwd
from datetime import UTC, datetime

import duckdb
import pytest

from reconcile import audit
from reconcile.audit.chain import _hash

from .conftest import Recon

pytestmark = pytest.mark.in_process
SOURCE = "payments-loader"
NO_KEY = {"RECON_AUDIT_KEY": ""}
ME = pwd.getpwuid(os.getuid()).pw_name


def _loaded(recon: Recon, write_file) -> str:  # type: ignore[no-untyped-def]
    """A keyed store, reconciled by the loader (who holds the key); the open break's id."""
    manifest = write_file("m.csv", "txn_id,amount,run_id\nA,1.00,R1\nB,2.00,R1\n")
    log = write_file("l.csv", "txn_id,amount,status,run_id\nA,1.00,OK,R1\nB,2.00,FAILED,R1\n")
    assert recon.ingest(manifest, source=SOURCE, kind="expected")[0].code == 0
    assert recon.ingest(log, source=SOURCE)[0].code == 0
    assert recon("reconcile").code == 3
    [listed] = recon("--json", "breaks").json()["breaks"]
    return str(listed["break_id"])


def test_a_reader_without_the_key_lists_and_exports_and_its_access_is_recorded(
    recon: Recon,
    write_file,  # type: ignore[no-untyped-def]
) -> None:
    _loaded(recon, write_file)
    listed = recon("--json", "failures", "--date", "last", env=NO_KEY)
    assert listed.code == 0, listed.stderr
    assert [row["txn_id"] for row in listed.json()["failures"]] == ["B"]
    book = recon.workdir / "week.xlsx"
    exported = recon("export", "--date", "last", "--format", "xlsx", "-o", book, env=NO_KEY)
    assert exported.code == 0, exported.stderr
    assert book.is_file()

    checked = recon("audit", "verify")  # by someone with the key
    assert checked.code == 0, checked.stderr
    assert "the last 2 event(s) are reads recorded without the audit key" in checked.stderr
    reads = [
        e
        for e in recon("--json", "audit", "log").json()["events"]
        if e["action"] in ("failures.list", "export")
    ]
    assert [(e["action"], e["actor"], e["alg"]) for e in reads] == [
        ("failures.list", ME, audit.ACCESS),
        ("export", ME, audit.ACCESS),
    ]
    # Sealed by the keyed events since (verify's own, the log's): nothing left unsealed.
    again = recon("audit", "verify")
    assert again.code == 0 and "without the audit key" not in again.stderr, again.stderr


def test_a_reader_without_the_key_cannot_write_and_is_never_told_the_demo_key(
    recon: Recon,
    write_file,  # type: ignore[no-untyped-def]
) -> None:
    break_id = _loaded(recon, write_file)
    refused = recon("breaks", "resolve", break_id, "--reason", "x", env=NO_KEY)
    assert refused.code == 1
    assert "recording 'breaks.resolve' needs its key" in refused.stderr, refused.stderr
    assert "demo" not in refused.stderr
    # New data not reconciled yet: reading it would record a reconciliation, which needs the key.
    more = write_file("l2.csv", "txn_id,amount,status,run_id\nC,3.00,OK,R1\n")
    assert recon.ingest(more, source=SOURCE)[0].code == 0
    stale = recon("failures", "--date", "last", env=NO_KEY)
    assert stale.code == 1 and "recording 'reconcile' needs its key" in stale.stderr
    assert recon("audit", "verify").code == 0
    assert recon("breaks", "resolve", break_id, "--reason", "x").code == 0


def test_the_demo_key_is_named_on_the_demo_store_only(
    recon: Recon,
    write_file,  # type: ignore[no-untyped-def]
) -> None:
    demo = {"RECON_AUDIT_KEY": audit.DEMO_AUDIT_KEY.decode()}
    manifest = write_file("m.csv", "txn_id,amount,run_id\nA,1.00,R1\n")
    assert recon("ingest", "--source", SOURCE, "--kind", "expected", manifest, env=demo).code == 0
    refused = recon("reconcile", env=NO_KEY)
    assert refused.code == 1 and "RECON_AUDIT_KEY=demo-only-not-a-secret-either" in refused.stderr
    wrong = recon("reconcile", env={"RECON_AUDIT_KEY": "another-key"})
    assert wrong.code == 1 and "make demo" in wrong.stderr


def test_an_unkeyed_event_that_is_not_a_read_is_reported_as_forged(
    recon: Recon,
    write_file,  # type: ignore[no-untyped-def]
) -> None:
    """What a key-less process could append by hand: a resolution dressed as a reader's event."""
    break_id = _loaded(recon, write_file)
    with duckdb.connect(str(recon.db)) as conn:
        [(seq, prev)] = conn.execute(
            "SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1"
        ).fetchall()
        now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
        event = {
            "seq": seq + 1,
            "ts": now.isoformat(),
            "actor": "cfo",
            "origin": {"via": "cli"},
            "action": "breaks.resolve",
            "object": break_id,
            "outcome": "success",
            "details": {"reason": "written off"},
            "alg": audit.ACCESS,
        }
        values = [
            seq + 1, now, "cfo", audit.canonical(event["origin"]), "breaks.resolve", break_id,
            "success", audit.canonical(event["details"]), audit.ACCESS, prev,
            _hash(event, prev, None),
        ]  # fmt: skip
        marks = ", ".join("?" * len(values))
        conn.execute(f"INSERT INTO audit_events ({audit.COLUMNS}) VALUES ({marks})", values)
        conn.execute(f"INSERT INTO audit_guard ({audit.COLUMNS}) VALUES ({marks})", values)
    done = recon("audit", "verify")
    assert done.code == 3, done.stderr
    assert f"BROKEN at seq {seq + 1}" in done.stderr
    assert "only reads may be, so it was forged" in done.stderr
