"""The product's own logs and files: one JSON line per record whatever the values hold, no card
number or secret anywhere it writes (a canary pushed through every input), private files, and
a refusal to keep data in a world-writable folder."""

from __future__ import annotations

import io
import json
import os
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import duckdb
import pytest

from reconcile import redact

from .conftest import HttpTarget, Recon, Result
from .test_serve import hit, ping_url, post, server

# Many input cases through the CLI: run in this process (tests/support.py), not one
# interpreter each; the real-process contract is kept by test_setup, test_sample_data and others.
pytestmark = pytest.mark.in_process

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


# --- card data named by its column, or hidden inside JSON ---------------------------------------


def stored_text(recon: Recon) -> dict[str, str]:
    """Every VARCHAR, JSON and list value in the database, by table.column; the test's own
    folder (its name holds a pytest number) is cut from the paths the database records."""
    with duckdb.connect(str(recon.db), read_only=True) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE data_type IN ('VARCHAR', 'JSON') OR data_type LIKE '%[]'"
        ).fetchall()
        assert columns
        stored = {}
        for table, column in columns:
            values = conn.execute(f'SELECT DISTINCT "{column}"::VARCHAR FROM "{table}"').fetchall()
            text = "\n".join(value or "" for (value,) in values)
            stored[f"{table}.{column}"] = text.replace(str(recon.workdir), "<workdir>")
    return stored


def assert_nowhere(recon: Recon, secrets: list[str]) -> None:
    """None of `secrets` in any text the database holds, as a whole value or word: a digit run
    that merely contains one (a digest, a masked number) does not count."""
    stored = stored_text(recon)
    for secret in secrets:
        pattern = re.compile(rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])")
        found = [where for where, text in stored.items() if pattern.search(text)]
        assert not found, f"{secret} found in {found}"


def run_json(recon: Recon, *args: str | Path) -> dict[str, Any]:
    result = recon("--json", "ingest", "--source", "acme", *args)
    assert result.code in (0, 3), result.stderr
    [entry] = result.json()["files"]
    assert entry["rows_read"] == entry["rows_loaded"] + entry["rows_quarantined"], entry
    return entry


CARD_SECRETS = ["321", "322", "1234", "4321", "555", "%B4111111111111111^X", "4111111111111111"]
MISTYPED_PAN = "4111111111111112"  # fails Luhn: only its column name says it is a card number


def test_columns_named_like_card_security_data_are_never_stored(recon: Recon) -> None:
    run = recon.workdir / "file.csv"
    run.write_text(
        "txn_id,amount,status,run_id,card_cvc,cvc_code,card_pin,pin_code,cvv_number,"
        "track1_data,pan_number,shipping,pinned,tracking_number,company\n"
        f"T1,10.00,OK,R1,321,322,1234,4321,555,%B4111111111111111^X,{MISTYPED_PAN},"
        "express,yes,TRK-77,Acme\n"
        # quarantined (bad amount): its raw row is kept, and must be as clean
        f"T2,oops,OK,R1,321,322,1234,4321,555,%B4111111111111111^X,{MISTYPED_PAN},"
        "express,no,TRK-78,Acme\n"
        # unreadable (a field too many): the raw line is withheld whole
        f"T3,1.00,OK,R1,321,322,1234,4321,555,%B4111111111111111^X,{MISTYPED_PAN},"
        "express,no,TRK-79,Acme,extra\n"
    )
    entry = run_json(recon, run)
    assert (entry["rows_loaded"], entry["rows_quarantined"]) == (1, 2)
    [(attributes,)] = recon.query("SELECT attributes FROM transactions")
    assert json.loads(attributes) == {
        "pan_number": "************1112",
        "shipping": "express",
        "pinned": "yes",
        "tracking_number": "TRK-77",
        "company": "Acme",
    }
    raws = [json.loads(raw) for (raw,) in recon.query("SELECT raw FROM quarantine ORDER BY line")]
    assert raws[0]["pan_number"] == "************1112" and raws[0]["tracking_number"] == "TRK-78"
    assert raws[1] == {"line": redact.WITHHELD}
    assert_nowhere(recon, [*CARD_SECRETS, MISTYPED_PAN])
    for name in ("card_cvc", "cvc_code", "card_pin", "pin_code", "cvv_number", "track1_data"):
        assert name not in attributes and all(name not in raw for raw in map(str, raws))


def test_keys_named_like_card_security_data_are_never_stored_inside_json(recon: Recon) -> None:
    row = {"amount": "1.00", "status": "OK", "run_id": "R1"}
    lines = [
        {**row, "txn_id": "T1", "customer": {"name": "x", "cvv": "123"}},
        {
            **row,
            "txn_id": "T2",
            "customer": {"name": "y", "cards": [{"cardPin": 4321, "pan_number": MISTYPED_PAN}]},
            "history": [{"Track1Data": "%B4111111111111111^X", "ok": True}],
            "note": json.dumps({"cvc_code": "322", "memo": "sent"}),  # JSON inside a string
        },
        # quarantined (bad amount): the nested key must not reach its raw row either
        {**row, "txn_id": "T3", "amount": "oops", "customer": {"name": "z", "card_cvc": "321"}},
    ]
    text = "\n".join(json.dumps(line) for line in lines)
    # a broken line (its closing brace lost) that names a nested cvv is withheld whole
    text += '\n{"txn_id": "T4", "amount": "1.00", "customer": {"cvv_number": "555"}\n'
    run = recon.workdir / "nested.jsonl"
    run.write_text(text)
    entry = run_json(recon, run)
    assert (entry["rows_read"], entry["rows_loaded"], entry["rows_quarantined"]) == (4, 2, 2)
    stored = {
        txn: json.loads(attributes)
        for txn, attributes in recon.query("SELECT txn_id, attributes FROM transactions")
    }
    assert json.loads(stored["T1"]["customer"]) == {"name": "x"}
    assert json.loads(stored["T2"]["customer"]) == {
        "name": "y",
        "cards": [{"pan_number": "************1112"}],
    }
    assert json.loads(stored["T2"]["history"]) == [{"ok": True}]
    assert json.loads(stored["T2"]["note"]) == {"memo": "sent"}
    raws = dict(recon.query("SELECT line, raw FROM quarantine"))
    assert json.loads(json.loads(raws[3])["customer"]) == {"name": "z"}
    assert raws[4] == redact.WITHHELD
    assert_nowhere(recon, ["123", *CARD_SECRETS, MISTYPED_PAN])


def test_keys_named_like_card_security_data_are_never_stored_from_parquet_or_csv_json(
    recon: Recon,
) -> None:
    parquet = recon.workdir / "nested.parquet"
    with duckdb.connect() as conn:
        conn.execute(
            "COPY (SELECT 'T1' AS txn_id, '1.00' AS amount, 'OK' AS status, 'R1' AS run_id, "
            "{'name': 'x', 'cvv': '123', 'pan': '4111111111111112'} AS customer, "
            "MAP {'pin': '4321'} AS extra, [{'track2': '555'}] AS trail) "
            f"TO '{parquet}' (FORMAT parquet)"
        )
    run_json(recon, parquet)
    csv = recon.workdir / "cell.csv"
    csv.write_text(
        "txn_id,amount,status,run_id,payload\n"
        'T2,1.00,OK,R1,"{""name"": ""y"", ""card_pin"": ""1234""}"\n'
    )
    run_json(recon, csv)
    stored = {
        txn: json.loads(attributes)
        for txn, attributes in recon.query("SELECT txn_id, attributes FROM transactions")
    }
    assert json.loads(stored["T1"]["customer"]) == {"name": "x", "pan": "************1112"}
    assert json.loads(stored["T1"]["extra"]) == {}
    assert json.loads(stored["T1"]["trail"]) == [{}]
    assert json.loads(stored["T2"]["payload"]) == {"name": "y"}
    assert_nowhere(recon, ["123", "4321", "555", "1234", MISTYPED_PAN])
