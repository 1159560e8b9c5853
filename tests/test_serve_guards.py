"""`recon serve` under attack, over real HTTP on loopback: concurrent clients keep one audit
chain and get no 500, strangers cannot hold the store, bodies and connections are bounded, and
no card number that arrives over HTTP is stored or left on disk."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from .conftest import HttpTarget, Recon
from .support import start_recon
from .test_serve import _server_pid, get, hit, ping_url, post, server, signals
from .test_watchdog import configure, kinds

CARD = "4111111111111111"  # the test card; its first 15 digits are not Luhn-valid alone
LOG = (
    "txn_id,amount,status,run_id,business_date\nA,1.00,OK,R1,2026-11-24\nB,2.00,OK,R1,2026-11-24\n"
)


def hammer(
    base: str, path: str, token: str | None, stop: threading.Event, method: str = "GET"
) -> Counter[int | str]:
    """Send requests to `path` over one keep-alive connection until `stop`; count statuses
    (and connection errors by name)."""
    target = urllib.parse.urlsplit(base)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    seen: Counter[int | str] = Counter()
    conn = http.client.HTTPConnection(target.hostname or "", target.port, timeout=60)
    n = 0
    while not stop.is_set():
        n += 1
        row = {"txn_id": f"T{threading.get_ident()}-{n}", "amount": "1.00", "status": "OK"}
        body = json.dumps(row)
        try:
            conn.request(method, path, body=body if method == "POST" else None, headers=headers)
            with conn.getresponse() as answer:
                answer.read()
                seen[answer.status] += 1
        except (OSError, http.client.HTTPException) as error:
            seen[type(error).__name__] += 1
            conn.close()
            conn = http.client.HTTPConnection(target.hostname or "", target.port, timeout=60)
    conn.close()
    return seen


def crowd(base: str, jobs: list[tuple[str, str | None, str]]) -> tuple[threading.Event, list]:
    """Start one hammering thread per (path, token, method); returns the stop event and the
    threads' results (filled once they end)."""
    stop = threading.Event()
    results: list[Counter[int | str]] = []
    threads = []
    for path, token, method in jobs:

        def run(path: str = path, token: str | None = token, method: str = method) -> None:
            results.append(hammer(base, path, token, stop, method))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
    return stop, [threads, results]


def finish(stop: threading.Event, handle: list) -> Counter[int | str]:
    stop.set()
    threads, results = handle
    for thread in threads:
        thread.join(timeout=120)
    return sum(results, Counter())


def refusal_events(recon: Recon) -> list[dict[str, object]]:
    rows = recon.query(
        "SELECT details FROM audit_events WHERE action = 'auth.failure' ORDER BY seq"
    )
    return [json.loads(details) for (details,) in rows]


def test_concurrent_readers_keep_one_audit_chain_and_get_no_500(recon: Recon) -> None:
    token = recon("token", "create", "reader", "--source", "pay").stdout.strip()
    with server(recon) as base:
        stop, handle = crowd(
            base,
            [("/api/v1/runs", token, "GET")] * 4
            + [("/api/v1/sources/pay/runs/R1/transactions", token, "POST")] * 2
            + [("/api/v1/runs", None, "GET")] * 4,
        )
        time.sleep(3)
        statuses = finish(stop, handle)
    assert statuses[200] > 0 and statuses[401] > 0
    assert set(statuses) <= {200, 401, 503}, statuses
    verified = recon("audit", "verify")
    assert verified.code == 0, verified.stdout + verified.stderr
    # Every refusal is counted, in a handful of summary events, not one event each.
    summaries = refusal_events(recon)
    assert 1 <= len(summaries) <= 2
    assert sum(int(s["refusals"]) for s in summaries) == statuses[401]  # type: ignore[call-overload]
    [(used,)] = recon.query("SELECT last_used_at FROM api_tokens")
    assert used is not None


def test_clients_without_a_token_cannot_keep_ingest_and_watch_from_the_store(
    recon: Recon,
    write_file,
    http_target: HttpTarget,  # type: ignore[no-untyped-def]
) -> None:
    configure(recon, oncall=http_target.url)
    assert recon("monitor", "add", "job", "--every", "1h", "--grace", "5m").code == 0
    log = write_file("R1.csv", LOG)
    with server(recon) as base:
        stop, handle = crowd(
            base,
            [("/api/v1/runs", None, "GET")] * 4
            + [("/api/v1/sources/pay/runs/R1/transactions", "rct_guess", "POST")] * 4,
        )
        try:
            time.sleep(0.5)
            ingested = recon("ingest", "--source", "pay", log)
            watched = recon("watch", "--once", env={"RECON_NOW": "2026-11-24T12:00:00+00:00"})
        finally:
            statuses = finish(stop, handle)
    assert ingested.code == 0, ingested.stderr
    assert watched.code in (0, 3), watched.stderr
    assert kinds(http_target.answered_ok) == ["DOWN"]
    assert set(statuses) == {401}, statuses
    summaries = refusal_events(recon)
    assert 1 <= len(summaries) <= 2  # one a minute at most, and one as the server stopped
    assert sum(int(s["refusals"]) for s in summaries) == statuses[401]  # type: ignore[call-overload]
    assert {c["client"] for s in summaries for c in s["clients"]} == {"127.0.0.1"}  # type: ignore[attr-defined]
    assert recon("audit", "verify").code == 0


def test_a_body_is_refused_by_its_length_before_it_is_read(recon: Recon) -> None:
    token = recon("token", "create", "flow", "--source", "pay").stdout.strip()
    with server(recon) as base:
        port = int(base.rsplit(":", 1)[1])
        for auth, expected in ((f"Authorization: Bearer {token}\r\n", 413), ("", 401)):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(
                    (
                        "POST /api/v1/sources/pay/runs/R1/transactions HTTP/1.1\r\n"
                        f"Host: x\r\n{auth}Content-Length: 400000000\r\n\r\n"
                    ).encode()
                )  # and not a byte of the 400 MB: the answer comes anyway
                answer = sock.recv(4096).decode()
            assert answer.startswith(f"HTTP/1.1 {expected} "), answer


def test_a_ping_body_cut_at_the_limit_leaves_no_part_of_a_card_number(recon: Recon) -> None:
    assert recon("monitor", "add", "job", "--every", "1d", "--grace", "1h").code == 0
    with server(recon) as base:
        url = ping_url(recon, "job", base)
        for shift in range(0, 18, 3):  # the card straddles the 10 kB cut at every offset
            body = "x" * (10240 - 15 + shift) + CARD + " end"
            assert hit(f"{url}/log", data=body.encode())[0] == 200
    messages = [message for _, _, message, _ in signals(recon)]
    assert len(messages) == 6
    for message in messages:
        assert len(message.encode()) <= 10240
        assert not re.search(r"\d{5}", message), message[-40:]


def test_identifiers_that_arrive_over_http_are_masked_where_they_enter(recon: Recon) -> None:
    assert recon("monitor", "add", "job", "--every", "1d", "--grace", "1h").code == 0
    token = recon("token", "create", "flow", "--source", "pay").stdout.strip()
    card = "5500 0055 5555 5559"
    with server(recon) as base:
        url = ping_url(recon, "job", base)
        quoted = urllib.parse.quote(card)
        assert hit(f"{url}/start?rid={quoted}")[0] == 200
        forwarded = urllib.request.Request(f"{url}/log", headers={"X-Forwarded-For": card})
        with urllib.request.urlopen(forwarded, timeout=10) as answer:
            assert answer.status == 200
        rows = json.dumps([{"txn_id": "T1", "amount": "1.00", "status": "OK"}]).encode()
        status, answer = post(f"{base}/api/v1/sources/pay/runs/{quoted}/transactions", rows, token)
        assert status == 200, answer
        assert "5559" in str(answer["run_id"]) and "5500" not in str(answer["run_id"])
        status, answer = post(f"{base}/api/v1/sources/pay/runs/{quoted}/complete", b"", token)
        assert status == 200, answer
        status, answer = post(f"{base}/api/v1/sources/{quoted}/runs/R1/complete", b"", token)
        assert status == 403 and "5500" not in json.dumps(answer)
        assert get(f"{base}/api/v1/{quoted}", None)[0] == 401  # refused, and counted masked
        assert get(f"{base}/api/v1/runs?date={quoted}", token)[0] == 400
    signals(recon)
    assert not store_mentions(recon.db, "5500005555555559")
    assert not store_mentions(recon.db, "5500 0055 5555 5559")


def store_mentions(path: Path, text: str) -> list[str]:
    """The tables of the store in which `text` appears anywhere, as an auditor would look."""
    found = []
    with duckdb.connect(str(path), read_only=True) as conn:
        tables = [t for (t,) in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        for table in tables:
            dump = repr(conn.execute(f'SELECT * FROM "{table}"').fetchall())
            if text in dump or text in dump.replace(" ", ""):
                found.append(table)
    return found


def test_the_same_body_posted_to_another_run_is_that_runs_rows(recon: Recon) -> None:
    token = recon("token", "create", "flow", "--source", "pay").stdout.strip()
    body = json.dumps([{"txn_id": "T1", "amount": "1.00", "status": "OK"}]).encode()
    with server(recon) as base:
        api = f"{base}/api/v1/sources/pay/runs"
        first = post(f"{api}/A/transactions", body, token)[1]
        second = post(f"{api}/B/transactions", body, token)[1]
        again = post(f"{api}/B/transactions", body, token)[1]
    assert (first["rows_loaded"], first["already_ingested"]) == (1, False)
    assert (second["rows_loaded"], second["already_ingested"]) == (1, False)
    assert (again["rows_loaded"], again["already_ingested"]) == (0, True)
    assert recon.query("SELECT run_id FROM transactions ORDER BY run_id") == [("A",), ("B",)]


def test_posted_rows_never_touch_the_disk_even_when_the_server_is_killed(recon: Recon) -> None:
    token = recon("token", "create", "flow", "--source", "pay").stdout.strip()
    rows = [
        {"txn_id": f"T{n}", "amount": "1.00", "status": "FAILED", "error_message": f"card {CARD}"}
        for n in range(50_000)
    ]
    body = json.dumps(rows).encode()
    api_folder = recon.db.parent / "recon.duckdb.spool" / "api"
    api_folder.mkdir(parents=True)
    left = api_folder / "pay-R0-0123abcd.jsonl"  # as an earlier version left it after a crash
    left.write_text(json.dumps({"txn_id": "T0", "error_message": CARD}) + "\n")
    with server(recon) as base:
        assert not left.exists()
        pid = _server_pid(base)
        url = f"{base}/api/v1/sources/pay/runs/R1/transactions"

        def send() -> None:
            with contextlib.suppress(OSError):  # the server dies before it answers
                post(url, body, token)

        sender = threading.Thread(target=send)
        sender.start()
        deadline = time.monotonic() + 120
        while not (api_folder.exists() and os.listdir(api_folder)):
            assert time.monotonic() < deadline and sender.is_alive(), "no staging seen"
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)  # mid-ingest
        sender.join(timeout=60)
    leftovers = [
        path
        for path in recon.workdir.rglob("*")
        if path.is_file() and not path.is_symlink() and CARD.encode() in path.read_bytes()
    ]
    assert leftovers == []


@pytest.mark.slow
def test_slow_and_idle_connections_cannot_use_up_the_server(recon: Recon) -> None:
    """Over a thousand connections that never finish their headers: the server keeps at most
    its cap of them (closing the oldest), answers pings meanwhile, and closes the slow ones
    after its header timeout; headers over the size limit are refused."""
    assert recon("monitor", "add", "job", "--every", "1d", "--grace", "1h").code == 0
    with server(recon) as base:
        url = ping_url(recon, "job", base)
        port = int(base.rsplit(":", 1)[1])
        pid = _server_pid(base)
        slow = []
        for _ in range(1200):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            slow.append(sock)
        assert hit(f"{url}/log", data=b"still answered")[0] == 200
        assert len(os.listdir(f"/proc/{pid}/fd")) < 1100
        with socket.create_connection(("127.0.0.1", port), timeout=30) as big:
            big.sendall(b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
            # Closed before our last bytes were read, it is refused all the same.
            with contextlib.suppress(ConnectionResetError):
                assert big.recv(100).startswith(b"HTTP/1.1 431")
        last = slow[-1]  # the newest slow connection, kept so far, is closed by the timeout
        assert last.recv(100) == b""
        for sock in slow:
            sock.close()
        assert hit(f"{url}/log", data=b"and after")[0] == 200


@pytest.mark.slow
def test_sixteen_clients_with_tokens_and_sixteen_without_while_ingest_and_watch_run(
    recon: Recon,
    write_file,
    http_target: HttpTarget,  # type: ignore[no-untyped-def]
) -> None:
    """The issue's acceptance test: 10 s of 32 clients; the chain verifies, no 500, ingest and
    watch finish, the watch's alert is delivered."""
    configure(recon, oncall=http_target.url)
    assert recon("monitor", "add", "job", "--every", "1h", "--grace", "5m").code == 0
    token = recon("token", "create", "flow", "--source", "pay").stdout.strip()
    log = write_file("R1.csv", LOG)
    cli_env = {"RECON_LOCK_TIMEOUT": "30s"}  # the default outside tests
    with server(recon) as base:
        writes = ("/api/v1/sources/pay/runs/R2/transactions", token, "POST")
        stop, handle = crowd(
            base,
            [("/api/v1/runs", token, "GET")] * 12
            + [writes] * 4
            + [("/api/v1/runs", None, "GET")] * 8
            + [("/api/v1/monitors", "rct_guess", "GET")] * 8,
        )
        try:
            started = time.monotonic()
            time.sleep(1)
            ingest = start_recon(
                ["ingest", "--source", "pay", str(log)],
                cwd=recon.workdir,
                env={**recon.env, **cli_env},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            watched = recon(
                "watch", "--once", env={**cli_env, "RECON_NOW": "2026-11-24T12:00:00+00:00"}
            )
            _, ingest_err = ingest.communicate(timeout=120)
            time.sleep(max(0.0, 10 - (time.monotonic() - started)))
        finally:
            statuses = finish(stop, handle)
    assert ingest.returncode == 0, ingest_err
    assert watched.code in (0, 3), watched.stderr
    assert kinds(http_target.answered_ok) == ["DOWN"]
    assert statuses[200] > 0 and statuses[401] > 0
    assert set(statuses) <= {200, 401, 503}, statuses
    verified = recon("audit", "verify")
    assert verified.code == 0, verified.stdout + verified.stderr
