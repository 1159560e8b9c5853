"""`recon serve` over real HTTP on loopback: every ping form, and no acknowledged ping lost,
whether the database is locked or the server is killed right after answering."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from .conftest import Recon
from .test_setup import lock_held


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def server(recon: Recon, drain: str = "0.1s") -> Iterator[str]:
    """`recon serve` in a subprocess on a free loopback port; yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**recon.env, "RECON_SPOOL_DRAIN_INTERVAL": drain, "RECON_BASE_URL": base}
    env.pop("RECON_NOW", None)  # pings carry the real time
    process = subprocess.Popen(
        [sys.executable, "-m", "reconcile", "serve", "--port", str(port)],
        cwd=recon.workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("recon serve did not start")
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def hit(url: str, data: bytes | None = None, method: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def ping_url(recon: Recon, name: str, base: str) -> str:
    shown = recon("--json", "monitor", "show", name, env={"RECON_BASE_URL": base}).json()
    assert shown["curl"].endswith(shown["ping_url"])
    return str(shown["ping_url"])


def signals(recon: Recon) -> list[tuple[object, ...]]:
    """After draining what is left in the spool (as every watch tick does)."""
    assert recon("watch", "--once").code in (0, 3)
    return recon.query(
        "SELECT kind, exit_code, message, run_key FROM signals ORDER BY received_at, kind"
    )


def test_every_ping_form_is_recorded_and_unknown_urls_are_404(recon: Recon) -> None:
    assert recon("monitor", "add", "job", "--every", "1d", "--grace", "1h").code == 0
    [(key,)] = recon.query("SELECT ping_key FROM ping_keys")
    with server(recon) as base:
        url = ping_url(recon, "job", base)
        assert hit(url) == (200, "OK\n")
        assert hit(f"{url}/start?rid=run-1")[0] == 200
        assert hit(f"{url}/0?rid=run-1", data=b"done in 3s")[0] == 200
        assert hit(f"{url}/fail", data=b"card 4111 1111 1111 1111 refused")[0] == 200
        assert hit(f"{url}/log", data=b"just saying")[0] == 200
        assert hit(f"{url}/7")[0] == 200
        assert hit(url, method="HEAD")[0] == 200
        assert hit(f"{base}/ping/{key}/job/start")[0] == 200
        status, text = hit(url, data=b"x" * 20_000)
        assert status == 200 and "cut to 10240 bytes" in text
        assert hit(f"{base}/ping/00000000-0000-0000-0000-000000000000")[0] == 404
        assert hit(f"{url}/256")[0] == 404
        assert hit(f"{base}/ping/{key}/nobody")[0] == 404
    recorded = signals(recon)
    assert [(kind, code, run_key) for kind, code, _, run_key in recorded] == [
        ("success", None, None),
        ("start", None, "run-1"),
        ("success", 0, "run-1"),
        ("fail", None, None),
        ("log", None, None),
        ("fail", 7, None),
        ("success", None, None),
        ("start", None, None),
        ("success", None, None),
    ]
    messages = [message for _, _, message, _ in recorded]
    assert messages[3] == "card ************1111 refused"
    assert len(messages[8]) == 10240


def test_pings_acknowledged_while_the_database_is_locked_are_all_recorded(recon: Recon) -> None:
    assert recon("monitor", "add", "job", "--every", "1d", "--grace", "1h").code == 0
    with server(recon) as base:
        url = ping_url(recon, "job", base)
        with lock_held(recon.db, 4):  # a long ingest, say
            answers = [hit(f"{url}/log", data=f"ping {n}".encode())[0] for n in range(300)]
        assert answers == [200] * 300
    assert len(signals(recon)) == 300


@pytest.mark.slow
def test_a_server_killed_right_after_answering_loses_no_ping(recon: Recon) -> None:
    assert recon("monitor", "add", "job", "--every", "1d", "--grace", "1h").code == 0
    with server(recon, drain="1h") as base:  # nothing is drained while it runs
        url = ping_url(recon, "job", base)
        answers = [hit(f"{url}/log", data=f"ping {n}".encode())[0] for n in range(200)]
        [pid] = [int(p) for p in os.listdir("/proc") if p.isdigit() and _is_server(int(p), base)]
        os.kill(pid, signal.SIGKILL)
    assert answers == [200] * 200
    assert recon.query("SELECT count(*) FROM signals") == [(0,)]
    assert len(signals(recon)) == 200  # the next tick drains the spool
    assert len(signals(recon)) == 200  # and never twice


def _is_server(pid: int, base: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    return b"serve" in argv and base.rsplit(":", 1)[1].encode() in argv


def post(url: str, body: bytes, token: str | None) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def test_a_flow_posts_transactions_with_its_token_and_gets_what_was_quarantined(
    recon: Recon,
) -> None:
    token = recon("token", "create", "flow", "--source", "pay").stdout.strip()
    other = recon("token", "create", "elsewhere", "--source", "erp").stdout.strip()
    assert token.startswith("rct_") and token not in repr(recon.query("SELECT * FROM api_tokens"))
    rows = [
        {"txn_id": "T1", "amount": 12.10, "status": "PROCESSED", "currency": "GBP"},
        {"txn_id": "T2", "amount": "abc", "status": "PROCESSED"},
        {
            "txn_id": "T3",
            "amount": "5.00",
            "status": "FAILED",
            "error_message": "card 4111 1111 1111 1111 declined",
        },
    ]
    body = json.dumps(rows).encode()
    with server(recon) as base:
        url = f"{base}/api/v1/sources/pay/runs/R1/transactions"
        assert post(url, body, None)[0] == 401
        assert post(url, body, "rct_wrong")[0] == 401
        assert post(url, body, other)[0] == 403
        status, answer = post(url, b'[{"txn_id": "T1", "amount": }]', token)
        assert status == 400 and "line 1, column" in str(answer["error"])
        status, answer = post(url, body, token)
        assert status == 200, answer
        assert (answer["rows_read"], answer["rows_loaded"], answer["rows_quarantined"]) == (3, 2, 1)
        assert answer["quarantined"] == [
            {
                "item": 2,
                "column": "amount",
                "reason": "amount is not a number (write digits with a '.' decimal point)",
            }
        ]
        assert post(url, body, token)[1]["already_ingested"] is True
        lines = b'{"txn_id": "T4", "amount": "1.00", "status": "OK"}\n{"txn_id": "T5"'
        status, answer = post(url, lines, token)
        assert status == 400 and "line 2" in str(answer["error"])
        status, answer = post(f"{base}/api/v1/sources/pay/runs/R1/complete", b"", token)
        assert status == 200 and answer["rows_loaded"] == 2
        assert recon("token", "revoke", "flow").code == 0
        assert post(url, body, token)[0] == 401
    loaded = recon.query("SELECT txn_id, amount, error_message FROM transactions ORDER BY txn_id")
    assert [(t, str(a)) for t, a, _ in loaded] == [("T1", "12.1000"), ("T3", "5.0000")]
    assert loaded[1][2] == "card ************1111 declined"
    assert recon.query("SELECT ingested_by FROM ingested_files") == [("token:flow",)]
    assert not list((recon.db.parent / "recon.duckdb.spool" / "api").iterdir())


def get(url: str, token: str | None) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as a:
            return a.status, json.loads(a.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def test_the_read_api_serves_monitors_runs_a_day_and_its_failures(
    recon: Recon,
    write_file,  # type: ignore[no-untyped-def]
) -> None:
    log = write_file(
        "l.csv",
        "txn_id,amount,status,run_id,business_date\nA,1.00,OK,R1,2026-07-01\n"
        "B,2.00,FAILED,R1,2026-07-01\n",
    )
    assert recon.ingest(log, source="pay")[0].code == 0
    assert recon("reconcile").code == 3
    assert recon("monitor", "add", "job", "--every", "1d", "--grace", "1h").code == 0
    token = recon("token", "create", "reader", "--source", "pay").stdout.strip()
    with server(recon) as base:
        api = f"{base}/api/v1"
        assert get(f"{api}/monitors", None)[0] == 401
        assert [m["name"] for m in get(f"{api}/monitors", token)[1]["monitors"]] == ["job"]
        assert [r["run_id"] for r in get(f"{api}/runs", token)[1]["runs"]] == ["R1"]
        day = get(f"{api}/reconciliation?date=2026-07-01", token)[1]["days"]
        assert (day[0]["status"], day[0]["failed"], day[0]["matched"]) == ("breaks", 1, 1)
        failed = get(f"{api}/failures?date=2026-07-01", token)[1]["failures"]
        assert [(f["txn_id"], f["amount"], f["break_status"]) for f in failed] == [
            ("B", "2.00", "open")
        ]
        assert get(f"{api}/failures", token)[0] == 400
        assert get(f"{api}/failures?date=2026-07-01&category=bogus", token)[0] == 400
        assert get(f"{api}/secrets", token)[0] == 404
