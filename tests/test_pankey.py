"""Fingerprints of card numbers are always keyed (issue 11, item 5).

Without RECON_PAN_KEY, a masked id used to end in an unkeyed SHA-256 prefix: with the BIN known,
10^5 Luhn-valid candidates remain and the suffix picks the card. Now a store without a
configured key gets its own random key, in `<db>.pankey` beside the database (0600), never in it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from .conftest import Recon

CARD = "4111111111111111"
TXN = f"TX-{CARD}"


def masked_ids(recon: Recon) -> list[str]:
    return [row[0] for row in recon.query("SELECT txn_id FROM transactions ORDER BY txn_id")]


def every_value(db: Path) -> str:
    with duckdb.connect(str(db), read_only=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        return "".join(repr(conn.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)


def test_a_masked_id_cannot_be_recomputed_from_the_card_without_the_store_key(
    recon: Recon, write_file
) -> None:
    assert "RECON_PAN_KEY" not in recon.env
    assert recon("init").code == 0
    key_file = recon.db.with_name("recon.duckdb.pankey")
    assert key_file.is_file()
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    assert len(key) >= 64

    header = "txn_id,amount,status,run_id,card_number"
    first = write_file("a.csv", f"{header}\n{TXN},1.00,OK,R1,{CARD}\n")
    result, _ = recon.ingest(first)
    assert result.code == 0, result.stderr
    [masked] = masked_ids(recon)
    prefix, suffix = masked.split("#")
    assert prefix == "TX-************1111"

    # The attacker's recipe from the issue: for each Luhn-valid candidate with this BIN and
    # last four, the unkeyed SHA-256 of the id; it no longer matches, even for the right card.
    assert hashlib.sha256(TXN.encode()).hexdigest()[:8] != suffix
    # Keyed with the store's key, the suffix is what it is: only the key holder can check it.
    assert suffix == hmac.new(key.encode(), TXN.encode(), hashlib.sha256).hexdigest()[:8]
    # The card fingerprint column is keyed the same way.
    [(card_hmac,)] = recon.query("SELECT card_hmac FROM transactions")
    assert card_hmac == hmac.new(key.encode(), CARD.encode(), hashlib.sha256).hexdigest()
    assert card_hmac != hashlib.sha256(CARD.encode()).hexdigest()

    # Stable across commands: the same id in another run, by another process, masks the same.
    second = write_file("b.csv", f"{header}\n{TXN},2.00,OK,R2,{CARD}\n")
    result, _ = recon.ingest(second)
    assert result.code == 0, result.stderr
    assert set(masked_ids(recon)) == {masked}

    # The key is not in the database, and shows up nowhere in what the commands print.
    assert key not in every_value(recon.db)
    assert key.encode() not in recon.db.read_bytes()
    assert key not in result.stdout + result.stderr


def test_a_store_without_a_key_file_gets_one_on_first_use(recon: Recon, write_file) -> None:
    """Stores made before the key file existed: the first command that needs a key makes it."""
    recon("init")
    key_file = recon.db.with_name("recon.duckdb.pankey")
    key_file.unlink()
    result, _ = recon.ingest(
        write_file("a.csv", f"txn_id,amount,status,run_id\n{TXN},1.00,OK,R1\n")
    )
    assert result.code == 0, result.stderr
    assert key_file.stat().st_mode & 0o777 == 0o600
    [masked] = masked_ids(recon)
    key = key_file.read_text().strip().encode()
    assert masked.endswith("#" + hmac.new(key, TXN.encode(), hashlib.sha256).hexdigest()[:8])


def test_a_configured_key_is_used_and_no_key_file_is_written(recon: Recon, write_file) -> None:
    env = {"RECON_PAN_KEY": "configured-pan-key-0123456789"}
    assert recon("init", env=env).code == 0
    path = write_file("a.csv", f"txn_id,amount,status,run_id\n{TXN},1.00,OK,R1\n")
    result = recon("ingest", "--source", "src", path, env=env)
    assert result.code == 0, result.stderr
    assert not recon.db.with_name("recon.duckdb.pankey").exists()
    [masked] = masked_ids(recon)
    digest = hmac.new(env["RECON_PAN_KEY"].encode(), TXN.encode(), hashlib.sha256).hexdigest()
    assert masked == f"TX-************1111#{digest[:8]}"


def test_two_processes_creating_the_key_at_once_agree(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    code = (
        "import sys, time; from pathlib import Path; from reconcile import pankey\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "print(pankey.load_or_create(Path(sys.argv[1])).decode())\n"
    )
    start = str(time.time() + 1.0)
    env = {**os.environ}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(db), start],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(8)
    ]
    keys = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert len(keys) == 1 and all(keys)
    path = tmp_path / "store.duckdb.pankey"
    assert keys == {path.read_text().strip()}
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.duckdb.pankey"]  # no leftovers


def test_a_key_file_others_can_read_is_refused(recon: Recon, write_file) -> None:
    recon("init")
    key_file = recon.db.with_name("recon.duckdb.pankey")
    key_file.chmod(0o644)
    result, _ = recon.ingest(
        write_file("a.csv", f"txn_id,amount,status,run_id\n{TXN},1.00,OK,R1\n")
    )
    assert result.code == 1
    assert "recon.duckdb.pankey" in result.stderr and "chmod 600" in result.stderr
    assert key_file.read_text().strip() not in result.stderr
