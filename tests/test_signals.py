"""Monitors about a source: the arrival of its runs is the signal, each run is judged by content
checks, and down and recovery alerts say what piled up in the gap (checked against what
`recon failures` lists, run as a user would from the alert's own command line)."""

from __future__ import annotations

import re
import shlex
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from .conftest import HttpTarget, Recon
from .test_serve import post, server
from .test_watchdog import configure

# Many input cases through the CLI: run in this process (tests/support.py), not one
# interpreter each; the real-process contract is kept by test_setup, test_sample_data and others.
pytestmark = pytest.mark.in_process

FIRST_DAY = date(2026, 11, 2)  # a Monday


def run_log(folder: Path, day: date, rows: int, failed: int, *, skip: tuple[str, ...] = ()) -> Path:
    """A run log of `rows` transactions, the first `failed` of them failed, 10.00 each
    (the failed ones 100.00 + their number, so amounts are told apart)."""
    run = f"R-{day:%Y%m%d}"
    lines = ["txn_id,amount,currency,status,run_id,processed_at,error_code"]
    for n in range(rows):
        txn = f"T{day:%Y%m%d}-{n:03d}"
        if txn in skip:
            continue
        amount, status, code = (
            (f"{100 + n}.00", "FAILED", "E1") if n < failed else ("10.00", "OK", "")
        )
        lines.append(f"{txn},{amount},GBP,{status},{run},{day}T20:{n % 60:02d}:00Z,{code}")
    path = folder / f"{run}.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def at(recon: Recon, day: date, clock: str, *args: str | Path) -> Any:
    return recon(*args, env={"RECON_NOW": f"{day}T{clock}Z"})


def signals(recon: Recon) -> list[tuple[str, str]]:
    return [
        (kind, message)
        for kind, message in recon.query("SELECT kind, message FROM signals ORDER BY received_at")
    ]


def add_run_monitor(recon: Recon, *checks: str) -> None:
    added = at(
        recon,
        FIRST_DAY,
        "12:00:00",
        "monitor", "add", "loader", "--cron", "0 21 * * *", "--tz", "UTC",
        "--grace", "2h", "--early", "3h", "--source", "pay", *checks,
    )  # fmt: skip
    assert added.code == 0, added.stderr


def test_each_ingested_run_is_the_monitors_signal(recon: Recon, tmp_path: Path) -> None:
    add_run_monitor(recon)
    for offset in range(3):
        day = FIRST_DAY + timedelta(days=offset)
        assert (
            at(
                recon, day, "20:30:00", "ingest", "--source", "pay", run_log(tmp_path, day, 10, 1)
            ).code
            == 0
        )
        watched = at(recon, day, "22:30:00", "--json", "watch", "--once")
        assert watched.code == 0, watched.stderr
    assert [kind for kind, _ in signals(recon)] == ["success"] * 3
    assert "run R-20261104: 10 loaded, 1 failed, failure rate 10.0%" in signals(recon)[-1][1]
    shown = at(
        recon, FIRST_DAY + timedelta(days=2), "22:30:00", "--json", "monitor", "show", "loader"
    ).json()
    assert (shown["status"], shown["hears"], shown["source"]) == ("up", "run", "pay")
    assert [s["outcome"] for s in shown["slots"]] == ["on_time"] * 3
    # Another source's runs, and the same file again, are not this monitor's signal.
    at(
        recon,
        FIRST_DAY,
        "23:00:00",
        "ingest",
        "--source",
        "erp",
        run_log(tmp_path, FIRST_DAY, 5, 0),
    )
    at(
        recon,
        FIRST_DAY,
        "23:00:00",
        "ingest",
        "--source",
        "pay",
        run_log(tmp_path, FIRST_DAY, 10, 1),
    )
    assert len(signals(recon)) == 3


@pytest.mark.parametrize(
    ("checks", "rows", "failed", "expected_count", "problem"),
    [
        ((), 0, 0, None, "arrived with 0 transaction(s) loaded (at least 1 expected)"),
        (("--min-transactions", "20"), 10, 1, None, "10 transaction(s) loaded (at least 20"),
        (("--max-count-diff", "10"), 10, 1, 12, "loaded 10 transaction(s) against 12 expected (16.7% off, limit 10%)"),
        (("--max-count-diff", "20"), 10, 1, 12, None),
        (("--max-failure-rate", "25"), 10, 3, None, "failure rate 30.0% (3 of 10) is above the limit of 25%"),
        (("--max-failure-rate", "30"), 10, 3, None, None),
        (("--failure-rate-jump", "2.5"), 10, 3, None, "failure rate 30.0% is 3.0 times the median 10.0% of the 4 run(s) before it"),
        (("--failure-rate-jump", "3"), 10, 3, None, None),
    ],
)  # fmt: skip
def test_content_checks_fail_a_run_that_arrives_wrong(
    recon: Recon,
    tmp_path: Path,
    checks: tuple[str, ...],
    rows: int,
    failed: int,
    expected_count: int | None,
    problem: str | None,
) -> None:
    add_run_monitor(recon, *checks)
    for offset in range(4):  # four ordinary runs: 10 rows, 1 failed (10%)
        day = FIRST_DAY + timedelta(days=offset)
        at(recon, day, "20:30:00", "ingest", "--source", "pay", run_log(tmp_path, day, 10, 1))
    day = FIRST_DAY + timedelta(days=4)
    if expected_count is not None:
        totals = tmp_path / "totals.csv"
        totals.write_text(f"run_id,expected_count\nR-{day:%Y%m%d},{expected_count}\n")
        at(recon, day, "08:00:00", "ingest", "--source", "pay", "--kind", "totals", totals)
    at(recon, day, "20:30:00", "ingest", "--source", "pay", run_log(tmp_path, day, rows, failed))
    kind, message = signals(recon)[-1]
    if problem is None:
        assert kind == "success", message
        return
    assert kind == "fail" and problem in message, message
    status = at(recon, day, "20:31:00", "--json", "monitor", "show", "loader").json()["status"]
    assert status == "down"


def test_a_run_posted_over_http_signals_when_it_is_completed(recon: Recon) -> None:
    recon("init")
    add_run_monitor(recon, "--max-failure-rate", "40")
    token = recon("token", "create", "flow", "--source", "pay").stdout.strip()
    with server(recon) as base:
        url = f"{base}/api/v1/sources/pay/runs/R1/transactions"
        row = '{"txn_id": "T%d", "amount": "1.00", "status": "%s"}'
        assert post(url, ("[" + row % (1, "OK") + "]").encode(), token)[0] == 200
        assert post(url, ("[" + row % (2, "FAILED") + "]").encode(), token)[0] == 200
        assert signals(recon) == []  # half a run is not an arrival
        status, answer = post(f"{base}/api/v1/sources/pay/runs/R1/complete", b"", token)
        assert status == 200, answer
    [(kind, message)] = signals(recon)
    assert kind == "fail" and "failure rate 50.0% (1 of 2) is above the limit of 40%" in message


def gap_of(body: str) -> dict[str, Any]:
    """The gap paragraph of an alert, read back: counts, amounts and the command."""
    found = {
        category: int(count)
        for category, count in re.findall(r"- (failed|missing) records: (\d+)", body)
    }
    found["runs"] = int(
        re.search(r"- runs ingested: (\d+|none)", body).group(1).replace("none", "0")
    )  # type: ignore[union-attr]
    found["command"] = re.search(r"List them: (recon .+)", body).group(1)  # type: ignore[union-attr]
    return found


def test_down_and_recovery_alerts_say_what_piled_up_in_the_gap(
    recon: Recon, tmp_path: Path, http_target: HttpTarget
) -> None:
    """The story: a report monitor about source `pay` (it hears pings) goes silent while runs
    keep arriving with failures and a manifest names a transaction that never came."""
    configure(recon, ops=http_target.url)
    day0 = FIRST_DAY
    added = at(
        recon, day0, "06:00:00",
        "monitor", "add", "report", "--cron", "0 7 * * *", "--tz", "Europe/London",
        "--grace", "1h", "--early", "1h", "--source", "pay", "--hears", "ping",
    )  # fmt: skip
    assert added.code == 0, added.stderr
    # Day 0: the report arrives; days 0-2 runs arrive, with failures; the report then stops.
    at(recon, day0, "06:50:00", "ping", "report")
    at(recon, day0, "07:30:00", "watch", "--once")
    expected = tmp_path / "expected.csv"
    expected.write_text(
        "txn_id,amount,run_id\n"
        + "".join(
            f"T{d:%Y%m%d}-{n:03d},{100 + n if n < f else 10}.00,R-{d:%Y%m%d}\n"
            for d, f in ((day0 + timedelta(days=k), k + 1) for k in range(1, 3))
            for n in range(6)
        )
    )
    at(recon, day0, "08:00:00", "ingest", "--source", "pay", "--kind", "expected", expected)
    failed_per_day = {}
    for k in range(3):
        day = day0 + timedelta(days=k)
        skip = ("T20261104-005",) if k == 2 else ()  # expected, never processed: missing
        at(
            recon,
            day,
            "20:30:00",
            "ingest",
            "--source",
            "pay",
            run_log(tmp_path, day, 6, k + 1, skip=skip),
        )
        failed_per_day[day] = k + 1
    down_day = day0 + timedelta(days=3)
    watched = at(recon, down_day, "08:05:00", "--json", "watch", "--once")
    assert watched.code == 3, watched.stderr
    [alert] = http_target.received
    assert alert["title"].startswith("[recon] DOWN: report")
    gap = gap_of(alert["message"])
    # From the last report (day 0, 06:50 London) to now: runs of days 0, 1 and 2.
    assert gap["runs"] == 3
    assert gap["failed"] == sum(failed_per_day.values()) and gap["missing"] == 1
    assert f"GBP {sum(100 + n for k in range(3) for n in range(k + 1)):,.2f}" in alert["message"]
    # The command in the alert lists exactly what it counted.
    args = shlex.split(gap["command"])[1:]
    listed = at(recon, down_day, "08:06:00", "--json", *args).json()
    assert sorted(r["category"] for r in listed["failures"]) == ["failed"] * gap["failed"] + [
        "missing"
    ]
    # The report comes back a day later: one recovery, with the gap of the whole incident.
    at(recon, down_day + timedelta(days=1), "06:55:00", "ping", "report")
    at(recon, down_day + timedelta(days=1), "07:00:00", "--json", "watch", "--once")
    assert [a["title"].split(" [")[0] for a in http_target.received] == [
        "[recon] DOWN: report",
        "[recon] RECOVERED: report",
    ]
    recovered = gap_of(http_target.received[1]["message"])
    assert (recovered["failed"], recovered["missing"], recovered["runs"]) == (6, 1, 3)
    assert "--since 2026-11-02 --until 2026-11-06" in recovered["command"]


def test_monitor_add_warns_when_an_early_arrival_would_count_for_the_previous_slot(
    recon: Recon,
) -> None:
    added = recon("monitor", "add", "x", "--cron", "0 3 * * *", "--grace", "1h", "--source", "pay")
    assert added.code == 0 and "--early 0" in added.stderr and "--early 3h" in added.stderr
    early = recon("monitor", "add", "y", "--cron", "0 3 * * *", "--grace", "1h", "--early", "3h",
                  "--source", "pay")  # fmt: skip
    assert early.code == 0 and "warning" not in early.stderr
    pinged = recon("monitor", "add", "z", "--cron", "0 3 * * *", "--grace", "1h")
    assert "warning" not in pinged.stderr  # a job's ping after it ran: --early 0 is right
