"""`recon report send` and `recon report schedule` at the command line: the refusals that come
before any report is built (no target; a tag no target has, naming the tags there are, with
nothing queued), and the report's monitor: the same as `recon monitor add --hears report`,
named after its scope, refused twice, audited and versioned."""

from __future__ import annotations

import pytest

from .conftest import HttpTarget, Recon
from .report_send_support import config

pytestmark = [
    pytest.mark.in_process,
    pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning"),
]

SCHEDULE = ("--cron", "0 7 * * 1-5", "--tz", "Europe/London", "--grace", "1h")


def test_send_without_targets_or_with_a_tag_no_target_has_is_refused_before_building(
    recon: Recon, http_target: HttpTarget
) -> None:
    assert recon("init").code == 0
    none = recon("report", "send", "--date", "2026-11-20")
    assert none.code == 2
    assert "no notification targets" in none.stderr and "[notify.targets.ALIAS]" in none.stderr

    recon.write_config(config(chat=(http_target.url, ["oncall"])))
    wrong = recon("report", "send", "--tag", "finance")
    assert wrong.code == 1
    assert "no notification target has the tag 'finance'" in wrong.stderr
    assert "oncall" in wrong.stderr
    assert recon.query("SELECT count(*) FROM alerts") == [(0,)]
    assert recon.query("SELECT count(*) FROM report_sends") == [(0,)]
    assert not http_target.received

    bad_day = recon("report", "send", "--date", "20-11-2026")
    assert bad_day.code == 2 and "YYYY-MM-DD" in bad_day.stderr


def test_schedule_creates_the_same_monitor_as_monitor_add_hearing_reports(recon: Recon) -> None:
    made = recon("--json", "report", "schedule", *SCHEDULE, "--tag", "oncall")
    assert made.code == 0, made.stderr
    assert made.json()["monitor"] == "failed-transactions-report"
    one = recon("report", "schedule", *SCHEDULE, "--source", "payments/loader 2")
    assert one.code == 0, one.stderr
    assert "failed-transactions-report-payments-loader-2" in one.stderr
    added = recon("monitor", "add", "by-hand", "--hears", "report", *SCHEDULE, "--tag", "oncall")
    assert added.code == 0, added.stderr

    shown = {
        name: recon("--json", "monitor", "show", name).json()
        for name in ("failed-transactions-report", "by-hand")
    }
    fields = ("schedule", "tz", "grace_seconds", "early_seconds", "tags", "hears", "source")
    assert {f: shown["by-hand"][f] for f in fields} == {
        f: shown["failed-transactions-report"][f] for f in fields
    }
    assert shown["by-hand"]["hears"] == "report" and shown["by-hand"]["source"] is None
    source = recon("--json", "monitor", "show", "failed-transactions-report-payments-loader-2")
    assert source.json()["source"] == "payments/loader 2"

    again = recon("report", "schedule", *SCHEDULE)
    assert again.code == 1 and "exists" in again.stderr
    named = recon("report", "schedule", *SCHEDULE, "--name", "ops-report", "--early", "30m")
    assert named.code == 0, named.stderr
    assert recon("--json", "monitor", "show", "ops-report").json()["early_seconds"] == 1800
    broken = recon("report", "schedule", "--cron", "0 7 * *", "--grace", "1h", "--name", "x")
    assert broken.code == 1 and "has 4 fields; write five" in broken.stderr
    history = recon("--json", "config", "history").stdout
    assert "monitor:failed-transactions-report" in history and "monitor:ops-report" in history
    audited = recon.query(
        "SELECT object FROM audit_events WHERE action = 'monitor.add' ORDER BY seq"
    )
    assert [name for (name,) in audited] == [
        "failed-transactions-report",
        "failed-transactions-report-payments-loader-2",
        "by-hand",
        "ops-report",
    ]
    # A report monitor hears reports: content checks and mailboxes are refused.
    refused = recon(
        "monitor", "add", "r2", "--hears", "report", *SCHEDULE, "--max-failure-rate", "5"
    )
    assert refused.code == 2
