"""The alert outbox when sending outlasts the claim's lease: two real `recon watch --once`
processes and a real, slow HTTP receiver on loopback; every alert arrives once per target.

The lease is 2 minutes of the watcher's clock. The first watcher is given a time (`RECON_NOW`)
that is LEASE - MARGIN behind the wall clock the second one runs on, so to the second watcher
the first one's claims run out MARGIN seconds (of real time, less its start-up) after it claimed
them: sending all alerts takes longer than that, and a short lease would make a slow lock wait
(the machine loaded) look like a send outlasting it. This test takes 12 s or more, on purpose: the sends must
outlast the lease."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pytest

from reconcile.store.migrations import migrate
from reconcile.watch import notify

from .conftest import Recon
from .support import start_recon

MARGIN = 8.0  # seconds of real time the first watcher's leases last, seen by the second
DELAY = 0.4  # seconds the receiver takes to answer each alert
ALERTS = 12
TARGETS = ("one", "two")


class SlowReceiver:
    def __init__(self) -> None:
        self.received: list[tuple[str, str]] = []  # (path, title)
        self.first = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                receiver.received.append((self.path, body["title"]))
                receiver.first.set()
                time.sleep(DELAY)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}/{path}"


@pytest.fixture
def receiver() -> Iterator[SlowReceiver]:
    slow = SlowReceiver()
    thread = threading.Thread(target=slow.server.serve_forever, daemon=True)
    thread.start()
    yield slow
    slow.server.shutdown()
    slow.server.server_close()


def _watch(recon: Recon, env: dict[str, str]) -> subprocess.Popen[str]:
    return start_recon(
        ["--json", "watch", "--once"],
        cwd=recon.workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_watchers_with_a_target_slower_than_the_lease_deliver_each_alert_once(
    recon: Recon, receiver: SlowReceiver
) -> None:
    recon.write_config(
        "".join(f'[notify.targets.{t}]\nurl = "{receiver.url(t)}"\n' for t in TARGETS)
    )
    assert recon("init").code == 0
    wall = datetime.now(UTC)
    # The outbox holds ALERTS alerts for both targets, queued as the watchdog's tick does.
    with duckdb.connect(str(recon.db)) as conn:
        migrate(conn)
        queued = notify.enqueue(
            conn,
            [
                notify.NewAlert(None, f"m{n}", "down", f"[recon] DOWN: m{n}", "late", [])
                for n in range(ALERTS)
            ],
            [notify.Target(t, receiver.url(t)) for t in TARGETS],
            wall - timedelta(hours=1),
        )
    titles = {f"[recon] DOWN: m{n} [{alert_id}]" for n, (alert_id, _) in enumerate(queued)}

    env = {k: v for k, v in recon.env.items() if k != "RECON_NOW"} | {"RECON_LOCK_TIMEOUT": "60s"}
    behind = wall - notify.LEASE + timedelta(seconds=MARGIN)
    first = _watch(recon, env | {"RECON_NOW": behind.isoformat()})
    assert receiver.first.wait(60), "the first watcher never sent"
    # Wait until every claim the first watcher made at its start has run out for the second.
    while datetime.now(UTC) < behind + notify.LEASE + timedelta(seconds=0.5):
        time.sleep(0.1)
    assert first.poll() is None, "the first watcher finished too early for this test"
    second = _watch(recon, env)  # on the wall clock
    reports = []
    for watcher in (first, second):
        out, err = watcher.communicate(timeout=120)
        assert watcher.returncode == 0, err
        reports.append(json.loads(out)["alerts"])

    counts = Counter(receiver.received)
    assert {title for _, title in counts} == titles
    assert sorted(counts.items()) == sorted(
        ((f"/{t}", title), 1) for t in TARGETS for title in titles
    )
    assert all(reports), "both watchers sent: they overlapped"
    sent = Counter((a["id"], a["target"]) for report in reports for a in report)
    assert len(sent) == ALERTS * len(TARGETS) and set(sent.values()) == {1}
    statuses = recon.query("SELECT status, count(*) FROM deliveries GROUP BY ALL")
    assert statuses == [("delivered", ALERTS * len(TARGETS))]
