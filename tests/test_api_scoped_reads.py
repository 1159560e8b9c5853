"""The read API as a source's flow sees it, over real HTTP (`recon serve` in a process): a token
for one source reads that source's monitors only, and a run it has just posted is in the day's
failures without anyone running `recon reconcile` (reading reconciles first, as the CLI does)."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request

from .conftest import Recon
from .support import serving


def call(url: str, token: str, body: bytes | None = None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url,
        data=body,
        headers={"Authorization": f"Bearer {token}"},
        method="POST" if body else None,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def test_a_source_token_lists_only_its_own_sources_monitors(recon: Recon) -> None:
    for name, source in (("pay-run", "pay"), ("ship-run", "ship")):
        added = recon("monitor", "add", name, "--every", "1d", "--grace", "1h", "--source", source)
        assert added.code == 0, added.stderr
    assert recon("monitor", "add", "heartbeat", "--every", "1h", "--grace", "5m").code == 0
    pay = recon("token", "create", "pay-reader", "--source", "pay").stdout.strip()
    ship = recon("token", "create", "ship-reader", "--source", "ship").stdout.strip()
    with serving(recon.env, recon.workdir, timeout=30, stderr=subprocess.PIPE) as (base, _):
        status, answer = call(f"{base}/api/v1/monitors", pay)
        assert status == 200, answer
        assert [m["name"] for m in answer["monitors"]] == ["pay-run"]  # type: ignore[index]
        status, answer = call(f"{base}/api/v1/monitors", ship)
        assert [m["name"] for m in answer["monitors"]] == ["ship-run"]  # type: ignore[index]
    # The command line still lists every monitor.
    listed = recon("--json", "monitor", "list").json()
    names = {m["name"] for m in (listed["monitors"] if isinstance(listed, dict) else listed)}
    assert names == {"pay-run", "ship-run", "heartbeat"}


def test_failures_of_a_run_just_posted_are_read_without_running_reconcile(recon: Recon) -> None:
    token = recon("token", "create", "flow", "--source", "pay").stdout.strip()
    rows = [
        {"txn_id": "T1", "amount": "10.00", "status": "OK", "business_date": "2026-07-01"},
        {
            "txn_id": "T2",
            "amount": "7.50",
            "status": "FAILED",
            "business_date": "2026-07-01",
            "error_message": "timeout",
        },
    ]
    with serving(recon.env, recon.workdir, timeout=30, stderr=subprocess.PIPE) as (base, _):
        api = f"{base}/api/v1"
        status, answer = call(
            f"{api}/sources/pay/runs/R1/transactions", token, json.dumps(rows).encode()
        )
        assert status == 200 and answer["rows_loaded"] == 2, answer
        status, answer = call(f"{api}/failures?date=2026-07-01", token)
        assert status == 200, answer
        failed = answer["failures"]
        assert [(f["txn_id"], f["amount"]) for f in failed] == [("T2", "7.50")]  # type: ignore[union-attr]
        status, answer = call(f"{api}/reconciliation?date=2026-07-01", token)
        [day] = answer["days"]  # type: ignore[misc]
        assert (day["failed"], day["matched"]) == (1, 1)  # type: ignore[index]
        # A second read adds no reconciliation version: the inputs did not change.
        call(f"{api}/failures?date=2026-07-01", token)
    assert recon.query("SELECT count(*) FROM run_results") == [(1,)]
