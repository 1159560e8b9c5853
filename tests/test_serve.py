"""`recon serve` over real HTTP on loopback: every ping form, and no acknowledged ping lost,
whether the database is locked or the server is killed right after answering."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from reconcile import store
from reconcile.watch import spool

from .conftest import Recon
from .support import serving, start_recon
from .test_setup import lock_held


@contextmanager
def server(recon: Recon, drain: str = "0.1s") -> Iterator[str]:
    """`recon serve` in a subprocess on a free loopback port; yields its base URL."""
    with serving(recon.env, recon.workdir, drain=drain, timeout=30, stderr=subprocess.PIPE) as (
        base,
        _,
    ):
        yield base


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
        assert hit(url, method="HEAD")[0] == 200  # answered, not recorded
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
        ("start", None, None),
        ("success", None, None),
    ]
    messages = [message for _, _, message, _ in recorded]
    assert messages[3] == "card ************1111 refused"
    assert len(messages[7]) == 10240


def test_the_server_records_its_pings_itself_with_configured_secrets_masked(
    recon: Recon,
) -> None:
    recon.env["RECON_PAN_KEY"] = "canary-pan-key-0123456789"
    assert recon("monitor", "add", "job", "--every", "1d", "--grace", "1h").code == 0
    with server(recon) as base:  # its drainer runs every 0.1 s; no `recon watch` here
        url = ping_url(recon, "job", base)
        assert hit(url, data=b"key canary-pan-key-0123456789 leaked")[0] == 200
        deadline = time.monotonic() + 60
        while not (recorded := _signals_if_readable(recon)):
            assert time.monotonic() < deadline, "the server did not record its ping"
            time.sleep(0.1)
    [(kind, message)] = recorded
    assert kind == "success" and "canary-pan-key" not in message and "leaked" in message


def _signals_if_readable(recon: Recon) -> list[tuple[object, ...]]:
    """The signals stored so far, or none while the drainer holds the store."""
    try:
        return recon.query("SELECT kind, message FROM signals")
    except duckdb.IOException as error:
        if "lock" not in str(error).lower():
            raise
        return []


def test_pings_acknowledged_while_the_database_is_locked_are_all_recorded(recon: Recon) -> None:
    assert recon("monitor", "add", "job", "--every", "1d", "--grace", "1h").code == 0
    with server(recon) as base:
        url = ping_url(recon, "job", base)
        with lock_held(recon.db, 4):  # a long ingest, say
            answers = [hit(f"{url}/log", data=f"ping {n}".encode())[0] for n in range(300)]
        assert answers == [200] * 300
    assert len(signals(recon)) == 300


def write_big_run_log(path: Path, rows: int = 1_000_000) -> None:
    """A processed run log of `rows` rows, written by DuckDB in well under a second. Three rows
    in ten are declines quoting a card number: with 300,000 messages to mask, the ingest holds
    the store for about 3 s on 2 cores instead of 1.5 s."""
    with duckdb.connect() as conn:
        conn.execute(
            f"""
            COPY (
                SELECT 'TX-' || lpad(to_hex(i), 8, '0') AS txn_id, 'RUN-1' AS run_id,
                       ((i * 7919 % 250000 + 500)::DECIMAL(12, 0) / 100)::DECIMAL(12, 2) AS amount,
                       CASE WHEN i % 10 < 3 THEN 'FAILED' ELSE 'PROCESSED' END AS status,
                       CASE WHEN i % 10 < 3 THEN 'card 4111 1111 1111 1111 declined' END
                           AS error_message
                FROM range(1, {rows} + 1) t(i) ORDER BY i
            ) TO '{path}' (HEADER)
            """
        )


def store_locked(path: Path) -> bool:
    """Whether another process holds the store (even a read-only open is refused then)."""
    try:
        duckdb.connect(str(path), read_only=True).close()
    except duckdb.IOException as error:
        if "lock" not in str(error).lower():
            raise
        return True
    return False


def post_all(url: str, bodies: list[bytes], connections: int = 16) -> list[int]:
    """POST every body to `url` over a few keep-alive connections at once; the answers' statuses."""
    target = urllib.parse.urlsplit(url)

    def send(share: list[bytes]) -> list[int]:
        conn = http.client.HTTPConnection(target.hostname or "", target.port, timeout=30)
        statuses = []
        try:
            for body in share:
                conn.request("POST", target.path, body=body)
                with conn.getresponse() as answer:
                    answer.read()
                    statuses.append(answer.status)
        finally:
            conn.close()
        return statuses

    with ThreadPoolExecutor(connections) as pool:
        shares = [bodies[n::connections] for n in range(connections)]
        return [status for statuses in pool.map(send, shares) for status in statuses]


@pytest.mark.slow
def test_1000_pings_sent_while_a_million_row_ingest_holds_the_store_are_all_recorded(
    recon: Recon,
) -> None:
    recon.env["RECON_PING_RATE_LIMIT"] = "1000"  # 1,000 pings to one monitor within a minute
    assert recon("monitor", "add", "job", "--every", "1d", "--grace", "1h").code == 0
    log = recon.workdir / "RUN-1.csv"
    write_big_run_log(log)
    bodies = [f"ping {n}".encode() for n in range(1000)]
    with server(recon, drain="1h") as base:  # the spool keeps every ping until `recon watch`
        url = ping_url(recon, "job", base)
        ingest = start_recon(
            ["--json", "ingest", "--source", "pay", str(log)],
            cwd=recon.workdir,
            env=recon.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            started = time.monotonic()
            while not store_locked(recon.db):
                assert ingest.poll() is None, (
                    "the ingest ended before it was seen holding the store"
                )
                assert time.monotonic() - started < 60, "the ingest never took the store"
                time.sleep(0.01)
            locked_at = time.monotonic()
            statuses = post_all(url, bodies)
            answered_at = time.monotonic()
            # Proof of the overlap: a test whose pings all came after the ingest proves nothing.
            assert ingest.poll() is None, (
                f"the ingest ended before the last ping was answered "
                f"({answered_at - locked_at:.2f}s after it took the store): make it longer"
            )
            stdout, stderr = ingest.communicate(timeout=300)
        finally:
            if ingest.poll() is None:
                ingest.kill()
                ingest.communicate()
        assert ingest.returncode == 0, stderr
        assert json.loads(stdout)["files"][0]["rows_loaded"] == 1_000_000
        assert statuses == [200] * 1000
    spooled = {
        json.loads(line)["request_id"]
        for path in (recon.db.parent / "recon.duckdb.spool").glob("*.jsonl")
        for line in path.read_text(encoding="utf-8").splitlines()
    }
    assert len(spooled) == 1000
    assert recon("watch", "--once").code in (0, 3)  # drains the spool
    recorded = recon.query(
        "SELECT request_id, message FROM signals JOIN monitors USING (monitor_id) "
        "WHERE name = 'job'"
    )
    assert len(recorded) == 1000
    assert {request_id for request_id, _ in recorded} == spooled
    assert sorted(message for _, message in recorded) == sorted(b.decode() for b in bodies)
    assert not list((recon.db.parent / "recon.duckdb.spool").glob("*.jsonl"))


@pytest.mark.slow
def test_a_server_killed_right_after_answering_loses_no_ping(recon: Recon) -> None:
    assert recon("monitor", "add", "job", "--every", "1d", "--grace", "1h").code == 0
    with server(recon, drain="1h") as base:  # nothing is drained while it runs
        url = ping_url(recon, "job", base)
        answers = [hit(f"{url}/log", data=f"ping {n}".encode())[0] for n in range(200)]
        os.kill(_server_pid(base), signal.SIGKILL)  # its drainer then stops by itself
    assert answers == [200] * 200
    assert recon.query("SELECT count(*) FROM signals") == [(0,)]
    assert len(signals(recon)) == 200  # the next tick drains the spool
    assert len(signals(recon)) == 200  # and never twice


def test_a_drain_cut_short_keeps_what_it_committed_and_records_nothing_twice(
    recon: Recon,
) -> None:
    assert recon("monitor", "add", "job", "--every", "1d", "--grace", "1h").code == 0
    folder = spool.folder_for(recon.db, None)
    at = datetime(2026, 11, 24, 9, tzinfo=UTC)
    pings = [spool.Ping(str(uuid.uuid4()), "job", "log", at, body=f"{n}") for n in range(1500)]
    spool.append(folder, pings)
    with store.connect(recon.db) as conn:
        assert spool.drain(conn, folder, limit=spool.CHUNK) == spool.CHUNK  # as if killed here
    assert spool.waiting(folder)
    with store.connect(recon.db) as conn:
        assert spool.drain(conn, folder) == 1500 - spool.CHUNK
        assert spool.drain(conn, folder) == 0
    assert not spool.waiting(folder)
    assert recon.query("SELECT count(*), count(DISTINCT request_id) FROM signals") == [(1500, 1500)]


def test_a_line_cut_by_a_crash_does_not_swallow_the_next_ping(recon: Recon) -> None:
    assert recon("monitor", "add", "job", "--every", "1d", "--grace", "1h").code == 0
    folder = spool.folder_for(recon.db, None)
    at = datetime(2026, 11, 24, 9, tzinfo=UTC)
    (folder / spool.PENDING).write_text('{"request_id": "cut-by-a-cr', encoding="utf-8")
    spool.append(folder, [spool.Ping("acknowledged", "job", "log", at, body="after the crash")])
    with store.connect(recon.db) as conn:
        assert spool.drain(conn, folder) == 1
    assert recon.query("SELECT request_id, message FROM signals") == [
        ("acknowledged", "after the crash")
    ]


def _server_pid(base: str) -> int:
    """The pid of the server at `base`: of the processes with its command line (the drainer it
    forked has the same), the one whose parent is not another of them."""
    found = {int(p) for p in os.listdir("/proc") if p.isdigit() and _is_server(int(p), base)}
    [pid] = [pid for pid in found if _parent(pid) not in found]
    return pid


def _is_server(pid: int, base: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    return b"serve" in argv and base.rsplit(":", 1)[1].encode() in argv


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[1])  # after "pid (name) state"


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
    linked = ("monitor", "add", "job", "--every", "1d", "--grace", "1h", "--source", "pay")
    assert recon(*linked).code == 0  # a source's token lists the monitors linked to it
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
