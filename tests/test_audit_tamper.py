"""Tampering that used to pass `recon audit verify` (issue 11, item 6), each done the way an
attacker with write access to the files would (straight through DuckDB, and editing the anchor
file), each now answered with exit 3 (BROKEN) and a named reason; and the head kept elsewhere,
for what the files alone cannot tell (a copy of the database and anchor from an earlier moment).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import duckdb
import pytest

from reconcile import audit

from .conftest import Recon
from .test_audit import KEY, LOG, UNGUARD, _rehash, copy_of, tamper, trail, verify

__all__ = ["trail"]  # the module-scoped store every test here copies
pytestmark = pytest.mark.in_process  # many tampering cases through `recon audit verify`


def anchor_lines(recon: Recon) -> list[str]:
    return (recon.workdir / "recon.duckdb.anchor").read_text().splitlines()


def write_anchor(recon: Recon, lines: list[str]) -> None:
    (recon.workdir / "recon.duckdb.anchor").write_text("".join(line + "\n" for line in lines))


def broken(recon: Recon, seq: int | None, *reason: str, args: tuple[str, ...] = ()) -> None:
    done = recon("audit", "verify", *args)
    assert done.code == 3, done.stderr
    assert "audit trail BROKEN at seq " in done.stderr, done.stderr
    if seq is not None:
        assert f"BROKEN at seq {seq}: " in done.stderr, done.stderr
    for words in reason:
        assert words in done.stderr, done.stderr


def append_made_up_row(recon: Recon) -> None:
    """One more event after the head, its hash a made-up HMAC (a key the attacker chose)."""
    with duckdb.connect(str(recon.db)) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        [(seq, digest, ts)] = conn.execute(
            "SELECT seq, hash, ts FROM audit_events ORDER BY seq DESC LIMIT 1"
        ).fetchall()
        fake = hmac.new(b"made-up", b"anything", hashlib.sha256).hexdigest()
        conn.execute(
            f"INSERT INTO audit_events ({audit.COLUMNS}) VALUES "
            "(?, ?, 'mallory', '{\"via\":\"cli\"}', 'audit.log', '', 'success', '{}', "
            "'hmac-sha256', ?, ?)",
            [seq + 1, ts, digest, fake],
        )


@pytest.mark.parametrize("seq", [4, 1])
def test_an_edited_event_and_a_made_up_row_are_tampering_not_a_wrong_key(
    trail: Path, tmp_path: Path, seq: int
) -> None:
    """It used to say "wrong key" (exit 1): the newest row did not verify and the anchored
    hashes were all still there. The anchor's MACs (and the rows before the edit) verify with
    the configured key, so the key is right and the edit is tampering, even at seq 1."""
    recon = copy_of(trail, tmp_path)
    tamper(recon, UNGUARD, f"UPDATE audit_events SET actor = 'mallory' WHERE seq = {seq}")
    append_made_up_row(recon)
    broken(recon, seq, "the hash does not recompute")
    # The key really is wrong: still exit 1, not a finding.
    done = recon("audit", "verify", env={"RECON_AUDIT_KEY": "some-other-key"})
    assert done.code == 1 and "not the one this trail was written with" in done.stderr


def test_anchor_lines_carry_a_chained_mac_under_the_audit_key(trail: Path, tmp_path: Path) -> None:
    recon = copy_of(trail, tmp_path)
    lines = anchor_lines(recon)
    assert len(lines) >= 3
    first = json.loads(lines[0])
    assert first["alg"] == "hmac-sha256" and set(first) == {"alg", "hash", "mac", "seq"}
    expected = hmac.new(
        KEY.encode(),
        ("anchor\n" + "0" * 64 + "\n"
         + audit.canonical({"alg": first["alg"], "hash": first["hash"], "seq": first["seq"]})
         ).encode(),
        hashlib.sha256,
    ).hexdigest()  # fmt: skip
    assert first["mac"] == expected


def _forged(line: str, **change: object) -> str:
    return audit.canonical({**json.loads(line), **change})


@pytest.mark.parametrize(
    "edit",
    ["remove a middle line", "remove the first line", "edit a hash", "swap two lines"],
)
def test_an_edited_anchor_file_is_broken(trail: Path, tmp_path: Path, edit: str) -> None:
    recon = copy_of(trail, tmp_path)
    lines = anchor_lines(recon)
    if edit == "remove a middle line":
        del lines[1]
    elif edit == "remove the first line":
        del lines[0]
    elif edit == "edit a hash":
        lines[1] = _forged(lines[1], hash="f" * 64)
    else:
        lines[1], lines[2] = lines[2], lines[1]
    write_anchor(recon, lines)
    broken(recon, None, "anchor file", "line ")


def _cut_tail(recon: Recon, keep: int) -> None:
    """Cut events after seq `keep` and the anchor lines naming them: consistent, as if taken
    from an earlier moment."""
    tamper(
        recon,
        f"DELETE FROM audit_guard WHERE seq > {keep}",
        f"DELETE FROM audit_events WHERE seq > {keep}",
    )
    write_anchor(recon, [line for line in anchor_lines(recon) if json.loads(line)["seq"] <= keep])


def test_a_cut_tail_shows_against_a_head_kept_elsewhere(trail: Path, tmp_path: Path) -> None:
    """A cut of the trail and of the anchor's last lines, made consistently, looks like the
    store at an earlier moment: only a head kept outside tells (README, Audit trail)."""
    recon = copy_of(trail, tmp_path)
    early = recon("audit", "head")
    assert early.code == 0, early.stderr
    kept = early.stdout.strip()
    seq, digest = kept.split(":")
    [(stored,)] = recon.query("SELECT hash FROM audit_events WHERE seq = ?", [int(seq)])
    assert stored == digest
    assert recon("audit", "log").code == 0  # a read: it leaves nothing but its event
    assert recon("audit", "verify", "--expect-head", kept).code == 0
    _cut_tail(recon, int(seq) - 1)  # the head itself, and everything after it, goes
    assert verify(recon)[0] == 0  # what the two files alone cannot tell (README)
    broken(recon, int(seq), "head recorded outside", args=("--expect-head", kept))
    # A head that was never this trail's: the chain differs from it.
    forged = f"{int(seq) - 2}:{'a' * 64}"
    broken(recon, int(seq) - 2, "differs from the head recorded outside",
           args=("--expect-head", forged))  # fmt: skip
    bad = recon("audit", "verify", "--expect-head", "12:nothex")
    assert bad.code == 2 and "SEQ:HASH" in bad.stderr


@pytest.mark.parametrize("action", ["config.change", "ingest"])
def test_a_cut_tail_is_found_when_the_cut_events_effects_stay(
    trail: Path, tmp_path: Path, action: str
) -> None:
    """Cutting the events of a change whose rows stay in the store: each row is written in
    the same transaction as its event, so the rows tell the trail is short."""
    recon = copy_of(trail, tmp_path)
    if action == "ingest":
        (tmp_path / "more.csv").write_text(LOG.replace("T1,", "T9,"))
        assert recon("ingest", "--source", "pay", tmp_path / "more.csv").code == 0
    else:
        assert recon("monitor", "add", "late", "--every", "1h", "--grace", "1m").code == 0
    [(seq,)] = recon.query(
        "SELECT max(seq) FROM audit_events WHERE action = ? AND outcome = 'success'", [action]
    )
    _cut_tail(recon, seq - 1)
    broken(recon, seq, "has no event in the trail", "cut off the end")


def test_a_deleted_anchor_file_is_broken_for_a_keyed_trail(trail: Path, tmp_path: Path) -> None:
    recon = copy_of(trail, tmp_path)
    (recon.workdir / "recon.duckdb.anchor").unlink()
    broken(recon, 1, "anchor file", "is missing")
    write_anchor(recon, [])  # an empty one is no better
    broken(recon, 1, "is missing or empty")


def test_an_emptied_trail_in_a_store_with_data_is_broken(trail: Path, tmp_path: Path) -> None:
    recon = copy_of(trail, tmp_path)
    tamper(recon, UNGUARD, "DELETE FROM audit_events")
    (recon.workdir / "recon.duckdb.anchor").unlink()
    broken(recon, 1, "the trail is empty while the store holds data", "ingested_files")
    # A new, empty store is not broken: nothing happened in it yet.
    fresh = Recon(
        tmp_path / "new", tmp_path / "new" / "recon.duckdb", dict(recon.env), recon.in_process
    )
    fresh.workdir.mkdir()
    fresh.env["RECON_DB"] = str(fresh.db)
    assert fresh("init").code == 0  # reading commands do not create a store
    assert fresh("audit", "verify").code == 0


def test_a_trail_rechained_without_the_key_is_a_downgrade(trail: Path, tmp_path: Path) -> None:
    """Rechained as plain SHA-256, with a new unkeyed anchor to match: with the key configured,
    no keyed event at all is BROKEN, and stays so (nothing keyed may follow unkeyed events
    but `recon audit start-key`); without the key, the keyed anchor left behind tells."""
    recon = copy_of(trail, tmp_path)
    original = anchor_lines(recon)
    _rehash(recon, 1, None)
    rows = recon.query("SELECT seq, hash FROM audit_events ORDER BY seq")
    prev, lines = "0" * 64, []
    for seq, digest in rows[-3:]:  # an unkeyed anchor chain an attacker can compute
        body = audit.canonical({"alg": "sha256", "hash": digest, "seq": seq})
        mac = hashlib.sha256(("anchor\n" + prev + "\n" + body).encode()).hexdigest()
        lines.append(audit.canonical({"alg": "sha256", "hash": digest, "mac": mac, "seq": seq}))
        prev = mac
    write_anchor(recon, lines)
    broken(recon, 1, "no event is keyed", "downgrade")
    refused = recon("monitor", "add", "z", "--every", "1h", "--grace", "1m")
    assert refused.code == 1 and "recon audit start-key" in refused.stderr, refused.stderr
    broken(recon, 1, "no event is keyed", "downgrade")  # the evidence stays
    write_anchor(recon, original)
    del recon.env["RECON_AUDIT_KEY"]
    broken(recon, None, "differs from the one anchored outside the database")
    assert recon("audit", "start-key", env={"RECON_AUDIT_KEY": KEY}).code == 3


def test_a_trail_written_without_a_key_is_keyed_by_start_key_only(recon: Recon) -> None:
    del recon.env["RECON_AUDIT_KEY"]
    assert recon("monitor", "add", "job", "--every", "1h", "--grace", "10m").code == 0
    recon.env["RECON_AUDIT_KEY"] = KEY
    refused = recon("monitor", "pause", "job")
    assert refused.code == 1 and "recon audit start-key" in refused.stderr, refused.stderr
    broken(recon, 1, "no event is keyed", "start-key")
    started = recon("audit", "start-key")
    assert started.code == 0 and "keyed from seq" in started.stderr, started.stderr
    assert recon("monitor", "pause", "job").code == 0
    done = recon("audit", "verify")
    assert done.code == 0, done.stderr
    assert "were written without an audit key" in done.stderr and "start-key" in done.stderr
    assert "keyed already" in recon("audit", "start-key").stderr


def test_a_duplicate_key_in_the_details_json_is_broken(trail: Path, tmp_path: Path) -> None:
    """Python's json keeps the last of two equal keys, DuckDB's JSON functions the first: the
    hash covered one value while the database shows another."""
    recon = copy_of(trail, tmp_path)
    [(seq, details)] = recon.query(
        "SELECT seq, details FROM audit_events WHERE action = 'ingest' ORDER BY seq LIMIT 1"
    )
    assert '"rows_loaded":2' in details
    forged = details.replace('"rows_loaded":2', '"rows_loaded":999,"rows_loaded":2')
    tamper(
        recon,
        UNGUARD,
        f"UPDATE audit_events SET details = '{forged}' WHERE seq = {seq}",
        f"INSERT INTO audit_guard SELECT {audit.COLUMNS} FROM audit_events",
    )
    [(shown,)] = recon.query(
        "SELECT details->>'rows_loaded' FROM audit_events WHERE seq = ?", [seq]
    )
    assert shown == "999"  # what a query of the trail would report
    broken(recon, seq, "details: duplicate key 'rows_loaded'")


def test_a_store_whose_trail_forked_before_the_unique_seq_migrates_and_is_reported(
    trail: Path, tmp_path: Path
) -> None:
    """As a store written by an earlier version under concurrency: two events with one seq.
    The migration that makes seq unique leaves such a trail as it is (evidence), and verify
    names the duplicate; a store without duplicates gets the unique index."""
    recon = copy_of(trail, tmp_path)
    tamper(
        recon,
        "DROP INDEX audit_events_seq",
        "DELETE FROM schema_migrations WHERE name = '009_audit_seq'",
    )
    assert recon("monitor", "add", "x", "--every", "1h", "--grace", "1m").code == 0
    assert recon.query("SELECT count(*) FROM duckdb_indexes() WHERE index_name = "
                       "'audit_events_seq'") == [(1,)]  # fmt: skip
    tamper(
        recon,
        "DROP INDEX audit_events_seq",
        "DELETE FROM schema_migrations WHERE name = '009_audit_seq'",
        "INSERT INTO audit_events SELECT seq, ts, 'other', origin, action, object, outcome, "
        "details, alg, prev_hash, hash FROM audit_events WHERE seq = 5",
    )
    broken(recon, 5, "seq 5 appears twice")
    assert recon.query("SELECT count(*) FROM schema_migrations WHERE name = '009_audit_seq'") == [
        (1,)
    ]
    assert recon.query("SELECT count(*) FROM duckdb_indexes() WHERE index_name = "
                       "'audit_events_seq'") == [(0,)]  # fmt: skip


def test_an_anchor_written_before_lines_had_a_mac_still_verifies(
    trail: Path, tmp_path: Path
) -> None:
    """Old anchor lines ({seq, hash}) are read as before; lines after them carry a MAC; a line
    without one after lines with one is a rewrite."""
    recon = copy_of(trail, tmp_path)
    old = [audit.canonical({"hash": json.loads(line)["hash"], "seq": json.loads(line)["seq"]})
           for line in anchor_lines(recon)]  # fmt: skip
    write_anchor(recon, old)
    assert verify(recon)[0] == 0
    assert recon("monitor", "add", "y", "--every", "1h", "--grace", "1m").code == 0
    lines = anchor_lines(recon)
    assert "mac" in json.loads(lines[-1]) and "mac" not in json.loads(lines[0])
    assert verify(recon)[0] == 0
    write_anchor(recon, [*lines, old[-1]])
    broken(recon, None, "no MAC after lines that do")
