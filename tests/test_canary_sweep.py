"""The canary sweep: a card number pushed through every door, and found nowhere.

Each injection vector (an identifier, a header, a key, a name, a config value, a body, a file
name, an error path) carries a canary of its own: a Luhn-valid number with random digits,
written in one of eight shapes (contiguous Visa, Amex 4-6-5, Mastercard with hyphens, 19
digits, full-width digits, zero-width joiners, dots, spaces with zero-width spaces). They go in
through real `recon` processes, a real `recon serve` on loopback (transactions and pings) and
recon.toml / RECON_* settings; then every table and column of the DuckDB file, every file recon
wrote (spool, log file, exports), everything printed on stdout and stderr (the server's too)
and every alert a loopback receiver got is read back: no canary may show whole, nor any 12 of
its digits in a row (after Unicode digits are normalised and separators and invisible
characters dropped). A vector that leaks fails on its own, named.
"""

from __future__ import annotations

import http.server
import json
import os
import random
import re
import subprocess
import threading
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pytest

from .canary import SHAPES, leaks, make, read_files, read_store
from .conftest import Recon, Result
from .support import free_port, start_recon, stop, wait_for_http

# Every door, by name. The shape of each one's canary goes round the eight shapes.
VECTORS = [
    # command line: identifiers given as options and arguments
    "ingest --run-id",
    "ingest --source",
    "expect --run-id",
    "expect --source",
    "quarantine --run-id",
    "reconcile --run",
    "runs --source",
    "failures --source",
    "monitor add NAME",
    "monitor add --tag",
    "monitor add --reason",
    "monitor pause --reason",
    "ping --message",
    "ping --fail --message",
    "run: the command's output",
    "token create NAME",
    "token create --source",
    "breaks assign ASSIGNEE",
    "breaks comment TEXT",
    "breaks resolve --reason",
    "audit log --actor",
    "config history OBJECT",
    "--db folder",
    # command line: usage errors echo what they refuse
    "usage: --limit not an integer",
    "usage: unexpected extra argument",
    "usage: no such command",
    "usage: --kind not a choice",
    "usage: --date not a date",
    "usage: --grace not a duration",
    "usage: --now not a time",
    "usage: no such option",
    "usage: --config file missing",
    # files: names, column names, keys, values
    "file name (loaded)",
    "file name (loaded twice: skipped)",
    "file name (missing)",
    "file name (refused: missing columns)",
    "CSV column name",
    "JSON Lines key",
    "nested JSON key",
    "Parquet column name",
    "run_id value",
    "txn_id value",
    "error_message text",
    "attribute value",
    "quarantined row",
    # settings: recon.toml and RECON_* values
    "recon.toml source name",
    "recon.toml target alias",
    "recon.toml target tag",
    "recon.toml column mapping",
    "recon.toml success value",
    "recon.toml mailbox folder",
    "RECON_BASE_URL",
    "RECON_EXPORT_MODE",
    "RECON_LOCK_TIMEOUT",
    # HTTP API
    "API: run id in the URL",
    "API: source in the URL",
    "API: run id in the complete URL",
    "API: JSON key",
    "API: txn_id value",
    "API: error_message value",
    "API: malformed JSON body",
    "API: Authorization header",
    "API: other headers",
    "API: unknown resource in the URL",
    "API: query string",
    # pings
    "ping ?rid=",
    "ping /start?rid=",
    "ping body",
    "ping /fail body",
    "ping body across the 10 kB cut",
    "ping unknown URL",
    "ping bad suffix",
]

SHAPE_NAMES = list(SHAPES)
_rng = random.Random(20261202)
CANARY = {name: make(SHAPE_NAMES[i % len(SHAPE_NAMES)], _rng) for i, name in enumerate(VECTORS)}


def c(vector: str) -> str:
    """The canary text of a vector, as written into the input."""
    return CANARY[vector].text


@dataclass
class Receiver:
    """An apprise `json://` target on loopback: records each alert it gets."""

    port: int = 0
    received: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/alerts"


@dataclass
class Sweep:
    places: dict[str, str]
    outputs: list[Result]
    alerts: list[str]
    answers: dict[str, int]


def _receiver() -> tuple[Receiver, http.server.ThreadingHTTPServer]:
    target = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            target.received.append(self.rfile.read(length).decode("utf-8", errors="replace"))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    target.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return target, server


def request(
    url: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
) -> tuple[int, str]:
    """One HTTP request; the status and the answer's text, whatever the status. Header values
    go out as UTF-8 (a canary with full-width digits is not Latin-1)."""
    encoded = {k: v.encode().decode("latin-1") for k, v in (headers or {}).items()}
    req = urllib.request.Request(url, data=data, headers=encoded, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:
            return answer.status, answer.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode("utf-8", errors="replace")


def quoted(text: str) -> str:
    return urllib.request.quote(text, safe="")


class Server:
    """`recon serve` on a free loopback port, its stderr kept for the sweep."""

    def __init__(self, recon: Recon) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**recon.env, "RECON_SPOOL_DRAIN_INTERVAL": "0.1s", "RECON_BASE_URL": self.base}
        env.pop("RECON_NOW", None)  # pings carry the real time
        self.process = start_recon(
            ["serve", "--port", str(self.port)],
            cwd=recon.workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_http(f"{self.base}/health", timeout=30, process=self.process)
        except AssertionError:
            self.stop()
            raise AssertionError("recon serve did not start") from None

    def stop(self) -> Result:
        out, err = stop(self.process, timeout=15)
        return Result(self.process.returncode, out, err)


def _write_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    files = {
        "run": folder / "run.csv",
        "named": folder / f"run-{c('file name (loaded)')}.csv",
        "twice": folder / f"twice-{c('file name (loaded twice: skipped)')}.csv",
        "missing": folder / f"missing-{c('file name (missing)')}.csv",
        "refused": folder / f"refused-{c('file name (refused: missing columns)')}.csv",
        "jsonl": folder / "run.jsonl",
        "parquet": folder / "run.parquet",
        "norun": folder / "norun.csv",
        "other": folder / "other.csv",
    }
    files["run"].write_text(
        f"txn_id,amount,status,run_id,error_message,memo,{c('CSV column name')}\n"
        f"{c('txn_id value')},10.00,FAILED,{c('run_id value')},"
        f"declined {c('error_message text')} retry,{c('attribute value')},x\n"
        f"T2,oops,OK,{c('run_id value')},,{c('quarantined row')},y\n"
        "T3,5.00,FAILED,R-2,insufficient funds,,z\n",
        encoding="utf-8",
    )
    files["named"].write_text("txn_id,amount,status,run_id\nN1,1.00,OK,R-3\n")
    files["twice"].write_text("txn_id,amount,status,run_id\nW1,1.00,OK,R-3\n")
    files["refused"].write_text("txn_id,amount\nX1,1.00\n")
    files["jsonl"].write_text(
        json.dumps(
            {
                "txn_id": "J1",
                "amount": "1.00",
                "status": "FAILED",
                "run_id": "R-4",
                c("JSON Lines key"): "v",
                "nested": {c("nested JSON key"): "w"},
            },
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    with duckdb.connect() as conn:
        conn.execute(
            f"COPY (SELECT 'P1' AS txn_id, '3.00' AS amount, 'OK' AS status, 'R-5' AS run_id, "
            f"'p' AS \"{c('Parquet column name')}\") TO '{files['parquet']}' (FORMAT parquet)"
        )
    files["norun"].write_text("txn_id,amount,status\nK1,1.00,FAILED\n")
    files["other"].write_text("txn_id,amount,status,run_id\nO1,1.00,OK,R-6\n")
    return files


def _cli(recon: Recon, files: dict[str, Path], outputs: list[Result]) -> Path:
    def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
        done = recon(*args, env=env)
        outputs.append(done)
        return done

    every = ("--every", "1h", "--grace", "1m")
    run("init")
    loaded = run(
        "--json",
        "ingest",
        "--source",
        "pay",
        files["run"],
        files["named"],
        files["twice"],
        files["twice"],
        files["missing"],
        files["refused"],
        files["jsonl"],
        files["parquet"],
    )
    assert loaded.code == 1, loaded.stderr  # the missing and refused files
    assert len(loaded.json()["files"]) == 8
    run("ingest", "--source", "pay", "--run-id", c("ingest --run-id"), files["norun"])
    run("ingest", "--source", c("ingest --source"), files["other"])
    run("expect", "--source", "pay", "--run-id", c("expect --run-id"), "--count", "2")
    run("expect", "--source", c("expect --source"), "--run-id", "R-9", "--count", "1")
    run("quarantine", "--run-id", c("quarantine --run-id"))
    run("reconcile")
    run("reconcile", "--run", c("reconcile --run"))
    run("runs", "--source", c("runs --source"))
    run("failures", "--date", "2026-11-24", "--source", c("failures --source"))
    name = c("monitor add NAME")
    run("monitor", "add", name, *every, "--tag", c("monitor add --tag"),
        "--reason", c("monitor add --reason"))  # fmt: skip
    run("monitor", "add", "quiet", *every)
    run("monitor", "pause", "quiet", "--reason", c("monitor pause --reason"))
    run("ping", name, "-m", f"done {c('ping --message')}")
    run("ping", name, "--fail", "-m", c("ping --fail --message"))
    output = c("run: the command's output")
    command = f"echo 'loaded {output}'"
    run("run", name, "--", "sh", "-c", command)
    run("--json", "monitor", "list")
    run("token", "create", c("token create NAME"), "--source", "pay")
    run("token", "create", "other", "--source", c("token create --source"))
    listed = run("--json", "breaks", "--date", "2026-11-24")
    ids = sorted(set(re.findall(r"BRK-[0-9a-f]{12}", listed.stdout)))
    assert len(ids) >= 2, listed.stdout + listed.stderr
    run("breaks", "assign", ids[0], c("breaks assign ASSIGNEE"))
    run("breaks", "comment", ids[0], f"see {c('breaks comment TEXT')}")
    run("breaks", "resolve", ids[1], "--reason", c("breaks resolve --reason"))
    run("audit", "log", "--actor", c("audit log --actor"))
    run("config", "history", c("config history OBJECT"))
    db_folder = recon.workdir / f"db-{c('--db folder')}"
    db_folder.mkdir(mode=0o700)
    run("--db", db_folder / "x.duckdb", "init")
    # Usage errors: click quotes what it refuses.
    run("quarantine", "--limit", f"{c('usage: --limit not an integer')}x")
    run("runs", c("usage: unexpected extra argument"))
    run(c("usage: no such command"))
    run("ingest", "--kind", c("usage: --kind not a choice"), files["other"])
    run("failures", "--date", c("usage: --date not a date"))
    run("monitor", "add", "j", "--grace", c("usage: --grace not a duration"))
    run("--now", c("usage: --now not a time"), "runs")
    run("runs", f"--{c('usage: no such option')}")
    run("--config", recon.workdir / f"{c('usage: --config file missing')}.toml", "runs")
    # Settings refused, each naming the setting.
    bad = recon.workdir / "bad.toml"
    bad.write_text(
        f'[sources."{c("recon.toml source name")}"]\nformat = "csv"\n'
        f'[sources.pay]\nsuccess_values = ["{c("recon.toml success value")}"]\n'
        f'[sources.pay.columns]\ntxn_id = "{c("recon.toml column mapping")}"\n'
        f'[notify.targets."{c("recon.toml target alias")}"]\nurl = "json://127.0.0.1:1/"\n'
        f'[notify.targets.two]\nurl = "json://127.0.0.1:1/"\n'
        f'tags = ["{c("recon.toml target tag")}"]\n'
        f'[mailboxes.box]\nhost = "h"\nuser = "u"\nfolder = "{c("recon.toml mailbox folder")}"\n',
        encoding="utf-8",
    )
    variables = {
        "RECON_BASE_URL": f"http://127.0.0.1/{c('RECON_BASE_URL')}",
        "RECON_EXPORT_MODE": c("RECON_EXPORT_MODE"),
        "RECON_LOCK_TIMEOUT": c("RECON_LOCK_TIMEOUT"),
    }
    refused = run("--config", bad, "runs", env=variables)  # every refusal is listed at once
    assert refused.code == 1 and "sources" in refused.stderr, refused.stderr
    assert all(variable in refused.stderr for variable in variables), refused.stderr
    return bad


def _http(recon: Recon, base: str, answers: dict[str, int]) -> None:
    token = recon("token", "create", "api", "--source", "pay").stdout.strip()
    assert token.startswith("rct_")
    bearer = {"Authorization": f"Bearer {token}"}

    def post(vector: str, url: str, rows: Any, headers: dict[str, str] | None = None) -> None:
        body = rows if isinstance(rows, bytes) else json.dumps(rows, ensure_ascii=False).encode()
        answers[vector] = request(url, body, {**bearer, **(headers or {})})[0]

    row = {"txn_id": "H1", "amount": "1.00", "status": "FAILED"}
    api = f"{base}/api/v1/sources"
    post("API: run id in the URL", f"{api}/pay/runs/{quoted(c('API: run id in the URL'))}"
         "/transactions", [row])  # fmt: skip
    post("API: source in the URL", f"{api}/{quoted(c('API: source in the URL'))}/runs/R-7"
         "/transactions", [row])  # fmt: skip
    post("API: JSON key", f"{api}/pay/runs/R-8/transactions",
         [{**row, "txn_id": "H2", c("API: JSON key"): "k"}])  # fmt: skip
    post("API: txn_id value", f"{api}/pay/runs/R-8/transactions",
         [{**row, "txn_id": c("API: txn_id value")}])  # fmt: skip
    post("API: error_message value", f"{api}/pay/runs/R-8/transactions",
         [{**row, "txn_id": "H3", "error_message": c("API: error_message value")}])  # fmt: skip
    post("API: malformed JSON body", f"{api}/pay/runs/R-8/transactions",
         f'[{{"txn_id": "{c("API: malformed JSON body")}", "amount": }}]'.encode())  # fmt: skip
    post("API: other headers", f"{api}/pay/runs/R-8/transactions", [{**row, "txn_id": "H4"}],
         {"X-Request-Id": c("API: other headers"), "User-Agent": c("API: other headers"),
          "Idempotency-Key": c("API: other headers")})  # fmt: skip
    answers["API: run id in the complete URL"] = request(
        f"{api}/pay/runs/{quoted(c('API: run id in the complete URL'))}/complete", b"", bearer
    )[0]
    answers["API: Authorization header"] = request(
        f"{api}/pay/runs/R-8/transactions",
        b"[]",
        {"Authorization": f"Bearer {c('API: Authorization header')}"},
    )[0]
    answers["API: unknown resource in the URL"] = request(
        f"{base}/api/v1/{quoted(c('API: unknown resource in the URL'))}", headers=bearer
    )[0]
    answers["API: query string"] = request(
        f"{base}/api/v1/runs?source={quoted(c('API: query string'))}", headers=bearer
    )[0]
    [(uuid,)] = recon.query("SELECT ping_uuid FROM monitors WHERE name <> 'quiet'")
    url = f"{base}/ping/{uuid}"
    answers["ping ?rid="] = request(f"{url}?rid={quoted(c('ping ?rid='))}")[0]
    answers["ping /start?rid="] = request(f"{url}/start?rid={quoted(c('ping /start?rid='))}")[0]
    answers["ping body"] = request(url, f"ok {c('ping body')}".encode())[0]
    answers["ping /fail body"] = request(f"{url}/fail", c("ping /fail body").encode())[0]
    # The body is kept up to 10 kB: a number cut at its last digit must not leave 15 behind.
    text = c("ping body across the 10 kB cut")
    pad = 10 * 1024 - (len(text.encode()) - len(text[-1].encode()))
    answers["ping body across the 10 kB cut"] = request(
        f"{url}/log", (b"x " * pad)[:pad] + text.encode()
    )[0]
    answers["ping unknown URL"] = request(f"{base}/ping/{quoted(c('ping unknown URL'))}")[0]
    answers["ping bad suffix"] = request(f"{url}/{quoted(c('ping bad suffix'))}")[0]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sweep]:
    workdir = tmp_path_factory.mktemp("sweep")
    target, receiver = _receiver()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env |= {
        "RECON_DB": str(workdir / "recon.duckdb"),
        "RECON_NOW": "2026-11-24T09:00:00+00:00",
        "RECON_LOCK_TIMEOUT": "20s",
        "RECON_AUDIT_KEY": "test-audit-key-not-a-secret",
        "RECON_LOG_FILE": str(workdir / "recon.log"),
        "RECON_LOG_FILE_LEVEL": "DEBUG",
        "RECON_LOG_LEVEL": "DEBUG",
    }
    recon = Recon(workdir=workdir, db=workdir / "recon.duckdb", env=env)
    recon.write_config(f'[sources.pay]\n\n[notify.targets.ops]\nurl = "{target.url}"\n')
    files = _write_inputs(workdir / "in")
    outputs: list[Result] = []
    answers: dict[str, int] = {}
    try:
        bad_settings = _cli(recon, files, outputs)
        server = Server(recon)
        try:
            _http(recon, server.base, answers)
        finally:
            outputs.append(server.stop())
        later = {"RECON_NOW": "2027-01-10T09:00:00+00:00"}  # every monitor is late by then
        for args in (
            ("watch", "--once"),
            ("--json", "alerts"),
            ("export", "--date", "2026-11-24", "--format", "xlsx", "-o", "w.xlsx"),
            ("--json", "export", "--date", "2026-11-24", "--format", "csv", "-o", "wcsv"),
            ("failures", "--date", "2026-11-24", "--category", "all", "--format", "csv"),
            ("failures", "--date", "2026-11-24", "--format", "xlsx", "-o", "f.xlsx"),
            ("--json", "audit", "log", "--limit", "1000"),
        ):
            outputs.append(recon(*args, env=later if args[0] == "watch" else None))
        places = read_store(recon.db) | read_files(workdir, {*files.values(), bad_settings})
        for number, out in enumerate(outputs):
            places[f"command {number} stdout"] = out.stdout
            places[f"command {number} stderr"] = out.stderr
        for number, alert in enumerate(target.received):
            places[f"alert {number}"] = alert
        yield Sweep(places, outputs, list(target.received), answers)
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_the_sweep_has_at_least_60_vectors_in_at_least_6_shapes() -> None:
    assert len(VECTORS) == len(set(VECTORS)) >= 60
    assert len({canary.shape for canary in CANARY.values()}) >= 6
    assert len({canary.digits for canary in CANARY.values()}) == len(VECTORS)


def test_the_sweep_reached_every_place(sweep: Sweep) -> None:
    """What is scanned holds the masked forms: the vectors went in, and were not dropped."""
    assert sweep.alerts, "the watch must have delivered alerts for the sweep to mean much"
    assert any(name.startswith("file recon.log") for name in sweep.places)
    assert any(name.startswith("file wcsv") for name in sweep.places)
    assert "table transactions" in sweep.places and "table signals" in sweep.places
    store = sweep.places["table transactions"] + sweep.places["table quarantine"]
    for vector in ("txn_id value", "CSV column name", "quarantined row", "error_message text"):
        assert "*" * 8 + CANARY[vector].digits[-4:] in store, vector
    pings = [v for v in VECTORS if v.startswith("ping ") and v in sweep.answers]
    expected = {v: 404 if v in ("ping unknown URL", "ping bad suffix") else 200 for v in pings}
    assert {v: sweep.answers[v] for v in pings} == expected
    alerts = " ".join(sweep.alerts)
    assert CANARY["monitor add NAME"].digits[-4:] in alerts


def _params() -> list[Any]:
    return [pytest.param(vector, id=vector) for vector in VECTORS]


@pytest.mark.parametrize("vector", _params())
def test_no_canary_leaks_from(sweep: Sweep, vector: str) -> None:
    canary = CANARY[vector]
    found = [where for where, text in sweep.places.items() if leaks(text, [canary])]
    assert not found, f"{vector} ({canary.shape}) shows in {found}"


_CARD_LIKE = re.compile(r"(?<![0-9])[0-9](?:[ \-./]?[0-9]){11,18}(?![0-9])")
# Digests (SHA-256, HMAC: the audit chain, file hashes, fingerprints) and UUIDs (ping URLs) are
# hex: a run of decimal digits inside one is chance, not a card number (about one sweep in
# thirty found a Luhn-valid run with a canary's issuer prefix in an audit hash or a ping UUID).
_DIGEST = re.compile(
    r"(?<![0-9A-Za-z])(?:[0-9a-f]{32,}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
    r"(?![0-9A-Za-z])"
)


def _in_digest(text: str, start: int, end: int) -> bool:
    return any(d.start() <= start and end <= d.end() for d in _DIGEST.finditer(text))


def _plain_digits(text: str) -> str:
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in text)


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def test_a_luhn_scan_finds_no_full_card_number_anywhere(sweep: Sweep) -> None:
    """Independently of the canaries: no Luhn-valid number of 12 to 19 digits, contiguous or in
    single-separator groups, that starts with a canary's issuer prefix."""
    prefixes = tuple({canary.digits[:2] for canary in CANARY.values()})
    found = {}
    for where, text in sweep.places.items():
        plain = _plain_digits(text)
        for match in _CARD_LIKE.finditer(plain):
            digits = re.sub(r"[^0-9]", "", match.group())
            if _in_digest(plain, match.start(), match.end()):
                continue
            if digits.startswith(prefixes) and len(digits) >= 13 and _luhn(digits):
                found.setdefault(where, []).append(match.group())
    assert not found
