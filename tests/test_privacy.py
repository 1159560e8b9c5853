"""The product's own logs and files: one JSON line per record whatever the values hold, no card
number or secret anywhere it writes (a canary pushed through every input), private files, and
a refusal to keep data in a world-writable folder."""

from __future__ import annotations

import io
import json
import os
import random
import zipfile
from pathlib import Path
from typing import Any

import duckdb
import pytest

from .conftest import HttpTarget, Recon, Result
from .test_serve import hit, ping_url, post, server

EVIL = {
    "CR": "\r",
    "LF": "\n",
    "LINE SEPARATOR": "\u2028",
    "PARAGRAPH SEPARATOR": "\u2029",
    "NEXT LINE": "\u0085",
    "ANSI escape": "\x1b[2J\x1b[31m",
    "JSON smuggling": '","level":"INFO","message":"all good',
}


def log_records(path: Path) -> list[dict[str, Any]]:
    """Every line of a log file as JSON; splitlines() also splits on U+2028, U+0085..."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("name", list(EVIL))
def test_a_hostile_value_stays_inside_one_log_line(recon: Recon, name: str) -> None:
    log = recon.workdir / "recon.log"
    env = {"RECON_LOG_FILE": str(log), "RECON_LOG_FILE_LEVEL": "DEBUG", "RECON_LOG_LEVEL": "DEBUG"}
    recon("monitor", "add", "job", "--every", "1h", "--grace", "1m", env=env)
    value = f"before{EVIL[name]}after"
    pinged = recon("ping", "job", "-m", value, env=env)
    assert pinged.code == 0, pinged.stderr
    records = log_records(log)
    [signal] = [r for r in records if r["message"] == "success signal"]
    assert signal["note"] == value and signal["level"] == "DEBUG" and signal["command"] == "ping"
    assert all(r["level"] in ("DEBUG", "INFO", "WARNING", "ERROR") for r in records)
    # The same record on stderr, one line, among the human messages.
    on_stderr = [json.loads(line) for line in pinged.stderr.splitlines() if line.startswith("{")]
    assert [r["note"] for r in on_stderr if r["message"] == "success signal"] == [value]
    # A file name is a value too.
    hostile = recon.workdir / f"run{EVIL[name]}.csv"
    hostile.write_text("txn_id,amount,status,run_id\nT1,1.00,OK,R1\n")
    recon("ingest", "--source", "pay", hostile, env=env)
    [ingested] = [r for r in log_records(log) if r["message"] == "file ingested"]
    assert ingested["path"] == str(hostile) and ingested["run_id"] == "R1"
    assert log.stat().st_mode & 0o777 == 0o600


def luhn_pan(rng: random.Random, prefix: str = "4") -> str:
    digits = [int(d) for d in prefix] + [rng.randrange(10) for _ in range(15 - len(prefix))]
    total = 0
    for index, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if index % 2 == 0 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def test_canaries_pushed_through_every_input_are_found_nowhere(
    recon: Recon, http_target: HttpTarget
) -> None:
    rng = random.Random(20261125)
    pans = [luhn_pan(rng) for _ in range(8)]
    token = "CanaryTok" + "".join(rng.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(24))
    secret_url = f"json://ops:{token}@127.0.0.1:{http_target.port}/alerts/{token}?key={token}"
    log = recon.workdir / "recon.log"
    recon.write_config(f'[notify.targets.ops]\nurl = "{secret_url}"\n')
    recon.env.update(
        {"RECON_LOG_FILE": str(log), "RECON_LOG_FILE_LEVEL": "DEBUG", "RECON_LOG_LEVEL": "DEBUG"}
    )
    outputs: list[Result] = []
    run = recon.workdir / "run.csv"
    run.write_text(
        "txn_id,amount,status,run_id,card_number,cvv,error_message,memo\n"
        f"T1,10.00,OK,R1,{pans[0]},123,,card {pans[1]}\n"
        f'T2,20.00,FAILED,R1,{pans[2]},456,"declined for {pans[3]}; see {secret_url}",x\n'
        f"T3,oops,OK,R1,{pans[4]},789,,{pans[4]}\n"  # quarantined: its raw row is kept, masked
    )
    outputs.append(recon("ingest", "--source", "pay", run))
    outputs.append(recon("ingest", "--source", "pay", recon.workdir / f"missing-{pans[5]}.csv"))
    outputs.append(recon("monitor", "add", "job", "--every", "1h", "--grace", "1m", "--tag", "x"))
    outputs.append(recon("ping", "job", "--fail", "-m", f"exit with {pans[6]} at {secret_url}"))
    tok = recon("token", "create", "flow", "--source", "pay")
    with server(recon) as base:
        body = json.dumps([{"txn_id": "H1", "amount": "1.00", "status": "FAILED",
                            "error_message": f"{pans[7]} {secret_url}"}]).encode()  # fmt: skip
        url = f"{base}/api/v1/sources/pay/runs/R2/transactions"
        status, answer = post(url, body, tok.stdout.strip())
        assert status == 200, answer
        assert hit(ping_url(recon, "job", base) + "/fail", f"{pans[0]} {token}".encode())[0] == 200
    for args in (
        ("reconcile",),
        ("failures", "--date", "2026-11-24", "--category", "all", "--format", "csv", "-o", "f.csv"),
        ("failures", "--date", "2026-11-24", "--format", "xlsx", "-o", "f.xlsx"),
        ("failures", "--date", "2026-11-24", "--format", "jsonl"),
        ("export", "--date", "2026-11-24", "--format", "xlsx", "-o", "w.xlsx"),
        ("export", "--date", "2026-11-24", "--format", "csv", "-o", "w"),
        ("quarantine",),
        ("watch", "--once"),
        ("notify", "test"),
        ("audit", "log"),
        ("monitor", "show", "job"),
        ("alerts",),
    ):
        outputs.append(recon(*args))
        outputs.append(recon("--json", *args) if args[0] != "export" else outputs[-1])
    assert http_target.received, "the alerts must have been delivered for this test to mean much"
    assert any(r["logger"].startswith("apprise") for r in log_records(log)), "apprise DEBUG logs"

    places: dict[str, str] = {}
    for number, out in enumerate(outputs):
        places[f"command output {number}"] = out.stdout + out.stderr
    for item in http_target.received:
        places[f"alert {item['title']}"] = json.dumps(item, ensure_ascii=False)
    for path in sorted(recon.workdir.rglob("*")):
        if path.is_file() and path.name not in ("run.csv", "recon.toml"):  # our own inputs
            data = path.read_bytes()
            if path.suffix == ".xlsx":
                with zipfile.ZipFile(io.BytesIO(data)) as book:
                    data = b"".join(book.read(n) for n in book.namelist())
            places[str(path)] = data.decode("utf-8", errors="replace")
    with duckdb.connect(str(recon.db), read_only=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        for table in tables:
            rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
            places[f"table {table}"] = repr(rows)
    assert "table audit_events" in places and "table signals" in places
    for canary in [*pans, token]:
        found = [where for where, text in places.items() if canary in text]
        assert not found, f"{canary} found in {found}"
    assert "cvv" not in places["table transactions"]  # never stored, not even its name
    # The masked forms are there: nothing was simply dropped.
    assert "************" + pans[3][-4:] in places["table transactions"]
    assert (recon.workdir / "f.csv").stat().st_mode & 0o777 == 0o600


def test_data_in_a_world_writable_folder_is_refused(recon: Recon, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    done = recon("init", env={"RECON_DB": str(shared / "recon.duckdb")})
    assert done.code == 1
    assert "world-writable" in done.stderr and "chmod o-w" in done.stderr
    assert not (shared / "recon.duckdb").exists()
    made = recon("init")
    assert made.code == 0 and recon.db.stat().st_mode & 0o777 == 0o600
    anchor = recon.workdir / "recon.duckdb.anchor"
    recon("monitor", "add", "job", "--every", "1h", "--grace", "1m")
    assert anchor.stat().st_mode & 0o777 == 0o600
