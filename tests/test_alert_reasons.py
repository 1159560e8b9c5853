"""A down alert states the rule that fired, with its figures (issue 13, item 15): delivered by
`recon watch --once` to a real webhook on loopback, read as the on-call reads it."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import HttpTarget, Recon

pytestmark = pytest.mark.in_process


def at(recon: Recon, when: str, *args: str) -> Any:
    result = recon(*args, env={"RECON_NOW": when})
    assert result.code in (0, 3), result.stderr
    return result


def down_alert(recon: Recon, http_target: HttpTarget, when: str) -> str:
    at(recon, when, "watch", "--once")
    [alert] = http_target.answered_ok
    assert alert["title"].startswith("[recon] DOWN: job")
    return str(alert["message"])


def test_a_run_past_its_max_runtime_says_so_not_grace(
    recon: Recon, http_target: HttpTarget
) -> None:
    recon.write_config(f'[notify.targets.oncall]\nurl = "{http_target.url}"\n')
    at(recon, "2026-11-02T01:00:00Z", "monitor", "add", "job", "--cron", "0 7 * * *",
       "--grace", "1h", "--max-runtime", "3h")  # fmt: skip
    at(recon, "2026-11-02T02:00:00Z", "ping", "job", "--start")
    body = down_alert(recon, http_target, "2026-11-02T05:10:00Z")
    assert (
        "the run started at Mon 02 Nov 2026 02:00 UTC (2026-11-02 02:00 UTC) has run 3h 10m, "
        "over its max runtime of 3h" in body
    )
    assert "grace" not in body  # the slot due at 07:00 is not even due yet


def test_a_success_too_early_for_its_slot_is_named_with_its_figures(
    recon: Recon, http_target: HttpTarget
) -> None:
    recon.write_config(f'[notify.targets.oncall]\nurl = "{http_target.url}"\n')
    at(recon, "2026-11-02T06:00:00Z", "monitor", "add", "job", "--cron", "0 7 * * *",
       "--grace", "1h", "--early", "2h")  # fmt: skip
    at(recon, "2026-11-02T06:40:00Z", "ping", "job")  # on time for Monday's slot
    at(recon, "2026-11-03T03:15:00Z", "ping", "job")  # 3h45m before Tuesday's: too early
    body = down_alert(recon, http_target, "2026-11-03T08:01:00Z")
    assert "with no signal that counts for it" in body
    assert (
        "a success arrived at Tue 03 Nov 2026 03:15 UTC (2026-11-03 03:15 UTC), 3h 45m before "
        "the slot due Tue 03 Nov 2026 07:00 UTC (2026-11-03 07:00 UTC), earlier than the 2h "
        "early window allows: it does not count for this slot" in body
    )
    assert "Last signal: Tue 03 Nov 2026 03:15 UTC" in body


def test_a_slot_with_no_signal_still_says_no_signal(recon: Recon, http_target: HttpTarget) -> None:
    recon.write_config(f'[notify.targets.oncall]\nurl = "{http_target.url}"\n')
    at(recon, "2026-11-02T06:00:00Z", "monitor", "add", "job", "--cron", "0 7 * * *",
       "--grace", "1h")  # fmt: skip
    at(recon, "2026-11-02T06:50:00Z", "ping", "job", "--start")
    body = down_alert(recon, http_target, "2026-11-02T08:01:00Z")
    assert (
        "the slot due Mon 02 Nov 2026 07:00 UTC (2026-11-02 07:00 UTC) passed its grace of 1h "
        "with no signal of its end: a run started at Mon 02 Nov 2026 06:50 UTC" in body
    )
