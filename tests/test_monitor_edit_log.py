"""`recon monitor edit` (same monitor, same ping URL, versioned like add) and `recon monitor
log` (a monitor's own events), through the CLI (issue 13, item 17)."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from .conftest import Recon

pytestmark = pytest.mark.in_process


def at(recon: Recon, when: str, *args: str) -> Any:
    return recon(*args, env={"RECON_NOW": when})


def test_edit_keeps_the_ping_uuid_and_is_a_new_configuration_version(recon: Recon) -> None:
    at(recon, "2026-11-02T06:00:00Z", "monitor", "add", "report", "--cron", "0 7 * * *",
       "--grace", "1h", "--tag", "payments")  # fmt: skip
    before = at(recon, "2026-11-02T06:00:00Z", "--json", "monitor", "show", "report").json()
    edited = at(recon, "2026-11-02T06:10:00Z", "--json", "monitor", "edit", "report",
                "--grace", "2h", "--max-runtime", "3h", "--reason", "December runs longer")  # fmt: skip
    assert edited.code == 0, edited.stderr
    assert edited.json()["changed"] == {
        "grace_seconds": {"before": 3600, "after": 7200},
        "max_runtime_seconds": {"before": None, "after": 10800},
    }
    after = at(recon, "2026-11-02T06:10:00Z", "--json", "monitor", "show", "report").json()
    assert after["ping_uuid"] == before["ping_uuid"]
    assert (after["grace_seconds"], after["max_runtime_seconds"], after["tags"]) == (
        7200, 10800, ["payments"])  # fmt: skip
    rows = recon("--json", "config", "history", "monitor:report").json()["versions"]
    assert [(v["via"], v["reason"]) for v in rows] == [
        ("command", None),
        ("edit", "December runs longer"),
    ]
    assert rows[-1]["value"]["grace_seconds"] == 7200
    # The rules of add hold: a run-only content check on a pinged monitor is refused.
    refused = at(recon, "2026-11-02T06:11:00Z", "monitor", "edit", "report",
                 "--min-transactions", "5")  # fmt: skip
    assert refused.code == 2 and "--source" in refused.stderr
    assert at(recon, "2026-11-02T06:11:00Z", "monitor", "edit", "nobody", "--grace", "1h").code == 1
    # A new grace applies at once: at 08:30 the 07:00 slot is late, not down.
    shown = at(recon, "2026-11-02T08:30:00Z", "--json", "monitor", "show", "report").json()
    assert shown["status"] == "late"


def test_log_lists_pings_messages_run_output_and_slot_outcomes_newest_first(
    recon: Recon,
) -> None:
    at(recon, "2026-07-01T00:00:00Z", "monitor", "add", "job", "--every", "1d", "--grace", "1h")
    at(recon, "2026-07-02T00:10:00Z", "ping", "job", "--message", "loaded 1200 rows")
    ran = at(recon, "2026-07-03T00:15:00Z", "run", "job", "--", sys.executable, "-c",
             "print('disk full'); raise SystemExit(4)")  # fmt: skip
    assert ran.code == 4
    listed = at(recon, "2026-07-03T00:16:00Z", "--json", "monitor", "log", "job").json()
    events = [(e["event"], e["kind"] or e["outcome"]) for e in listed["events"]]
    assert events[:2] == [("slot", "failed"), ("signal", "fail")]
    fail = listed["events"][1]
    assert fail["exit_code"] == 4 and "disk full" in fail["message"]
    assert ("signal", "success") in events and ("slot", "late") in events
    ok = next(e for e in listed["events"] if e["kind"] == "success")
    assert ok["message"] == "loaded 1200 rows"
    times = [e["at"] for e in listed["events"]]
    assert times == sorted(times, reverse=True)
    human = at(recon, "2026-07-03T00:16:00Z", "monitor", "log", "job", "--limit", "2")
    assert human.code == 0 and "exit 4" in human.stdout and "disk full" in human.stdout
    assert "loaded 1200 rows" not in human.stdout  # --limit 2: the two newest only
