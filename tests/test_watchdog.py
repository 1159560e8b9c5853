"""The watchdog end to end: monitors, signals, the slot ledger, and alerts delivered through
apprise to real servers on loopback (HTTP for json://, SMTP for mailto://)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reconcile.store.migrations import migrate
from reconcile.watch import monitors
from reconcile.watch.configure import create as create_monitor
from reconcile.watch.signals import Signal, apply_signal, apply_signals

from .conftest import HttpTarget, Mailbox, Recon
from .support import start_recon

# Many input cases through the CLI: run in this process (tests/support.py), not one
# interpreter each; the real-process contract is kept by test_setup, test_sample_data and others.
pytestmark = pytest.mark.in_process


def configure(recon: Recon, **urls: str) -> None:
    recon.write_config(
        "".join(f'[notify.targets.{alias}]\nurl = "{url}"\n' for alias, url in urls.items())
    )


def at(recon: Recon, when: str, *args: str) -> Any:
    return recon(*args, env={"RECON_NOW": when})


def kinds(received: list[dict[str, Any]]) -> list[str]:
    return [m["title"].split(":")[0].removeprefix("[recon] ") for m in received]


def test_one_down_and_one_recovery_arrive_by_webhook_and_email(
    recon: Recon, http_target: HttpTarget, mailbox: Mailbox
) -> None:
    configure(recon, oncall=http_target.url, mail=mailbox.url)
    added = at(
        recon,
        "2026-11-02T06:00:00Z",
        "monitor",
        "add",
        "daily-report",
        "--cron",
        "0 7 * * 1-5",
        "--tz",
        "Europe/London",
        "--grace",
        "1h",
        "--early",
        "2h",
    )
    assert added.code == 0, added.stderr
    assert "2026-11-02T07:00:00+00:00" in added.stderr  # the next three due times are shown
    assert at(recon, "2026-11-02T06:40:00Z", "ping", "daily-report").code == 0
    assert at(recon, "2026-11-02T07:30:00Z", "watch", "--once").code == 0
    for minute in ("08:01", "08:30", "12:00"):  # the 3 Nov report never comes
        at(recon, f"2026-11-03T{minute}:00Z", "watch", "--once")
    assert at(recon, "2026-11-04T06:50:00Z", "ping", "daily-report").code == 0
    assert at(recon, "2026-11-04T06:51:00Z", "watch", "--once").code == 0
    at(recon, "2026-11-04T07:30:00Z", "watch", "--once")
    assert kinds(http_target.answered_ok) == ["DOWN", "RECOVERED"]
    assert len(mailbox.messages) == 2
    assert "Subject: [recon] DOWN: daily-report" in mailbox.messages[0]
    down = http_target.answered_ok[0]["message"]
    assert "Tue 03 Nov 2026 07:00 Europe/London" in down and "Slots missed so far: 1" in down
    assert "alert id: A-000001" in down
    recovered = http_target.answered_ok[1]["message"]
    assert "slots missed: 1" in recovered
    shown = at(recon, "2026-11-04T07:30:00Z", "--json", "monitor", "show", "daily-report").json()
    assert shown["status"] == "up"
    assert [(s["due_at"][:10], s["outcome"]) for s in shown["slots"]] == [
        ("2026-11-04", "on_time"),
        ("2026-11-03", "missed"),
        ("2026-11-02", "on_time"),
    ]
    listed = at(recon, "2026-11-04T07:30:00Z", "--json", "alerts").json()["alerts"]
    assert {(a["kind"], a["target"], a["status"]) for a in listed} == {
        ("down", "oncall", "delivered"),
        ("down", "mail", "delivered"),
        ("recovered", "oncall", "delivered"),
        ("recovered", "mail", "delivered"),
    }
    config = (recon.workdir / "recon.toml").read_text()
    assert str(http_target.port) in config
    for table in ("alerts", "deliveries", "monitors"):  # only aliases are ever stored
        dump = repr(recon.query(f"SELECT * FROM {table}"))
        assert f"127.0.0.1:{http_target.port}" not in dump and "mailto:" not in dump


def test_a_target_answering_500_still_gets_the_alert_once(
    recon: Recon, http_target: HttpTarget
) -> None:
    http_target.fail_first = 2
    configure(recon, oncall=http_target.url)
    at(recon, "2026-07-01T00:00:00Z", "monitor", "add", "load", "--every", "1h", "--grace", "5m")
    first = at(recon, "2026-07-01T01:10:00Z", "--json", "watch", "--once")
    assert first.json()["alerts"][0]["status"] == "failed"
    at(recon, "2026-07-01T01:10:10Z", "watch", "--once")  # backoff: not yet due again
    assert len(http_target.received) == 1
    at(recon, "2026-07-01T01:11:00Z", "watch", "--once")  # 30 s later: second attempt
    at(recon, "2026-07-01T01:13:00Z", "watch", "--once")  # 60 s after that: third
    at(recon, "2026-07-01T01:20:00Z", "watch", "--once")
    assert len(http_target.received) == 3
    assert kinds(http_target.answered_ok) == ["DOWN"]
    [(status, attempts)] = recon.query("SELECT status, attempts FROM deliveries")
    assert (status, attempts) == ("delivered", 3)


def test_a_watcher_killed_mid_send_delivers_after_restart(
    recon: Recon, http_target: HttpTarget
) -> None:
    http_target.stall_first = 20
    configure(recon, oncall=http_target.url)
    at(recon, "2026-07-01T00:00:00Z", "monitor", "add", "load", "--every", "1h", "--grace", "5m")
    env = {**recon.env, "RECON_NOW": "2026-07-01T01:10:00Z"}
    watcher = start_recon(
        ["watch", "--once"],
        cwd=recon.workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert http_target.first_request.wait(30), "the watcher never sent"
    os.kill(watcher.pid, signal.SIGKILL)
    watcher.wait()
    [(status,)] = recon.query("SELECT status FROM deliveries")
    assert status == "claimed"
    at(recon, "2026-07-01T01:11:00Z", "watch", "--once")  # lease not expired: left alone
    assert len(http_target.received) == 1
    at(recon, "2026-07-01T01:13:00Z", "watch", "--once")  # lease expired: sent again
    assert [(s, n) for s, n in recon.query("SELECT status, attempts FROM deliveries")] == [
        ("delivered", 2)
    ]
    assert kinds(http_target.answered_ok) == ["DOWN"]


def test_two_watchers_at_once_send_each_alert_once(recon: Recon, http_target: HttpTarget) -> None:
    configure(recon, oncall=http_target.url)
    for name in ("a", "b", "c"):
        at(recon, "2026-07-01T00:00:00Z", "monitor", "add", name, "--every", "1h", "--grace", "5m")
    env = {**recon.env, "RECON_NOW": "2026-07-01T01:10:00Z", "RECON_LOCK_TIMEOUT": "30s"}
    watchers = [
        start_recon(
            ["watch", "--once"],
            cwd=recon.workdir,
            env=env,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for watcher in watchers:
        _, err = watcher.communicate(timeout=60)
        assert watcher.returncode == 3, err
    assert sorted(m["title"] for m in http_target.received) == [
        "[recon] DOWN: a [A-000001]",
        "[recon] DOWN: b [A-000002]",
        "[recon] DOWN: c [A-000003]",
    ]
    assert recon.query("SELECT count(*) FROM transitions WHERE to_status = 'down'") == [(3,)]


def test_a_new_monitor_alerts_when_its_first_slot_is_missed_and_pause_silences(
    recon: Recon, http_target: HttpTarget
) -> None:
    configure(recon, oncall=http_target.url)
    at(
        recon,
        "2026-07-01T10:00:00Z",
        "monitor",
        "add",
        "fresh",
        "--cron",
        "0 12 * * *",
        "--grace",
        "30m",
    )
    at(
        recon,
        "2026-07-01T10:00:00Z",
        "monitor",
        "add",
        "quiet",
        "--cron",
        "0 12 * * *",
        "--grace",
        "30m",
    )
    at(recon, "2026-07-01T11:00:00Z", "monitor", "pause", "quiet", "--reason", "maintenance")
    listed = at(recon, "2026-07-01T11:00:00Z", "--json", "monitor", "list").json()["monitors"]
    assert {m["name"]: m["status"] for m in listed} == {"fresh": "new", "quiet": "paused"}
    result = at(recon, "2026-07-01T12:31:00Z", "--json", "watch", "--once")
    assert result.code == 3
    assert [t["monitor"] for t in result.json()["transitions"] if t["to"] == "down"] == ["fresh"]
    assert kinds(http_target.answered_ok) == ["DOWN"]
    at(recon, "2026-07-02T09:00:00Z", "monitor", "resume", "quiet")
    shown = at(recon, "2026-07-02T09:00:00Z", "--json", "monitor", "show", "quiet").json()
    assert (shown["status"], shown["next_due"]) == ("new", "2026-07-02T12:00:00+00:00")


def test_failure_signals_max_runtime_and_run(recon: Recon, http_target: HttpTarget) -> None:
    configure(recon, oncall=http_target.url)
    at(
        recon,
        "2026-07-01T00:00:00Z",
        "monitor",
        "add",
        "job",
        "--every",
        "1d",
        "--grace",
        "1h",
        "--max-runtime",
        "10m",
    )
    at(recon, "2026-07-01T01:00:00Z", "ping", "job", "--start")
    assert (
        at(recon, "2026-07-01T01:05:00Z", "--json", "monitor", "show", "job").json()["status"]
        == "new"
    )
    assert (
        at(recon, "2026-07-01T01:11:00Z", "--json", "monitor", "show", "job").json()["status"]
        == "down"
    )  # started 11 minutes ago, never finished
    ran = at(
        recon,
        "2026-07-01T02:00:00Z",
        "run",
        "job",
        "--",
        sys.executable,
        "-c",
        "print('card 4111 1111 1111 1111 refused'); raise SystemExit(4)",
    )
    assert ran.code == 4
    [(kind, code, message)] = recon.query(
        "SELECT kind, exit_code, message FROM signals WHERE kind <> 'start' ORDER BY received_at"
    )
    assert (kind, code) == ("fail", 4)
    assert "************1111 refused" in message and "4111 1111" not in message
    shown = at(recon, "2026-07-01T02:00:01Z", "--json", "monitor", "show", "job").json()
    assert shown["status"] == "down"
    huge = "x" * 20_000
    at(recon, "2026-07-01T03:00:00Z", "ping", "job", "--message", huge)
    [(length,)] = recon.query("SELECT max(length(message)) FROM signals")
    assert length == 10 * 1024


def test_preview_marks_dst_days_and_add_warns_about_minute_schedules(recon: Recon) -> None:
    preview = recon(
        "--json",
        "monitor",
        "preview",
        "30 1 * * *",
        "--tz",
        "Europe/London",
        "--from",
        "2026-03-27T12:00:00Z",
        "--count",
        "3",
    )
    assert preview.json() == {
        "due": [
            {
                "utc": "2026-03-28T01:30:00+00:00",
                "local": "2026-03-28T01:30:00+00:00",
                "dst_change": False,
            },
            {
                "utc": "2026-03-29T01:00:00+00:00",
                "local": "2026-03-29T02:00:00+01:00",
                "dst_change": True,
            },
            {
                "utc": "2026-03-30T00:30:00+00:00",
                "local": "2026-03-30T01:30:00+01:00",
                "dst_change": False,
            },
        ]
    }
    added = recon("monitor", "add", "oops", "--cron", "* 9 * * *", "--grace", "1h")
    assert added.code == 0 and "every minute from 09:00 to 09:59" in added.stderr
    refused = recon("monitor", "add", "bad", "--cron", "0 0 31 2 *", "--grace", "1h")
    assert refused.code == 1 and "never fires" in refused.stderr
    assert recon("monitor", "add", "x", "--grace", "1h").code == 2


def test_notify_test_reaches_the_target(recon: Recon, http_target: HttpTarget) -> None:
    configure(recon, oncall=http_target.url)
    result = recon("notify", "test")
    assert result.code == 0, result.stderr
    assert [m["title"] for m in http_target.answered_ok] == ["[recon] test alert [A-000001]"]
    assert "oncall: delivered" in result.stderr and "127.0.0.1" not in result.stderr


STATES = st.fixed_dictionaries(
    {
        "grace": st.integers(0, 7200),
        "early": st.integers(0, 3600),
        "max_runtime": st.one_of(st.none(), st.integers(60, 7200)),
        "success": st.one_of(st.none(), st.integers(0, 10 * 86400)),
        "failure": st.one_of(st.none(), st.integers(0, 10 * 86400)),
        "start": st.one_of(st.none(), st.integers(0, 10 * 86400)),
        "paused": st.one_of(st.none(), st.integers(0, 10 * 86400)),
        "paused_for": st.one_of(st.none(), st.integers(1, 86400)),
        "resumed": st.one_of(st.none(), st.integers(0, 10 * 86400)),
        "now": st.integers(0, 12 * 86400),
        "cron": st.sampled_from(["0 7 * * 1-5", "*/15 * * * *", "30 1 * * *", None]),
    }
)


@given(STATES)
@settings(max_examples=200, deadline=None)
def test_the_sql_status_is_the_python_status(state: dict[str, Any]) -> None:
    """One SQL statement evaluates every monitor; it must agree with the pure function."""
    base = datetime(2026, 3, 20, tzinfo=UTC)

    def t(offset: int | None) -> datetime | None:
        return None if offset is None else base + timedelta(seconds=offset)

    paused = t(state["paused"])
    monitor = monitors.Monitor(
        name="m",
        cron=state["cron"],
        tz="Europe/London",
        every_seconds=None if state["cron"] else 3600,
        grace_seconds=state["grace"],
        early_seconds=state["early"],
        max_runtime_seconds=state["max_runtime"],
        created_at=base,
        last_success_at=t(state["success"]),
        last_failure_at=t(state["failure"]),
        last_start_at=t(state["start"]),
        paused_at=paused,
        paused_until=(paused + timedelta(seconds=state["paused_for"]))
        if paused and state["paused_for"]
        else None,
        resumed_at=t(state["resumed"]),
    )
    now = base + timedelta(seconds=state["now"])
    with duckdb.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        migrate(conn)
        conn.execute(
            "INSERT INTO monitors (monitor_id, name, ping_uuid, cron, tz, every_seconds, grace_seconds, "
            "early_seconds, max_runtime_seconds, tags, created_at, created_by, paused_at, "
            "paused_until, resumed_at, last_success_at, last_failure_at, last_start_at, "
            "awaited_due, ledger_due, status, status_since) VALUES "
            "(1, 'm', 'u', ?, ?, ?, ?, ?, ?, [], ?, 'x', ?, ?, ?, ?, ?, ?, ?, ?, 'new', ?)",
            [
                monitor.cron,
                monitor.tz,
                monitor.every_seconds,
                monitor.grace_seconds,
                monitor.early_seconds,
                monitor.max_runtime_seconds,
                base,
                monitor.paused_at,
                monitor.paused_until,
                monitor.resumed_at,
                monitor.last_success_at,
                monitor.last_failure_at,
                monitor.last_start_at,
                monitor.awaited_due(),
                monitor.awaited_due(),
                base,
            ],
        )
        [(in_sql,)] = conn.execute(
            f"SELECT {monitors.STATUS_SQL} FROM monitors", {"now": now}
        ).fetchall()
    assert in_sql == monitors.status(monitor, now)


def test_realert_while_down_and_the_watchdog_pings_its_own_dead_man_url(
    recon: Recon, http_target: HttpTarget
) -> None:
    recon.write_config(
        f'watchdog_ping_url = "http://127.0.0.1:{http_target.port}/ping/watchdog"\n'
        f'[notify.targets.oncall]\nurl = "{http_target.url}"\n'
    )
    at(
        recon,
        "2026-07-01T00:00:00Z",
        "monitor",
        "add",
        "load",
        "--every",
        "1h",
        "--grace",
        "5m",
        "--realert",
        "2h",
    )
    for when in ("01:10", "02:00", "03:09", "03:11", "04:00"):
        at(recon, f"2026-07-01T{when}:00Z", "watch", "--once")
    assert kinds(http_target.answered_ok) == ["DOWN", "still DOWN"]
    assert http_target.pinged == ["/ping/watchdog"] * 5


def test_a_failing_target_escalates_to_its_fallback_and_config_files_work(
    recon: Recon, http_target: HttpTarget, mailbox: Mailbox, tmp_path: Any
) -> None:
    http_target.fail_first = 100  # the webhook is broken for good
    apprise_config = tmp_path / "apprise.yml"
    apprise_config.write_text(f"urls:\n  - {mailbox.url}:\n      tag: backup\n")
    recon.write_config(
        f'[notify]\nconfig_file = "{apprise_config}"\n'
        f'[notify.targets.oncall]\nurl = "{http_target.url}"\n'
        'fallback = "apprise.yml#1"\nescalate_after = 2\ntags = ["payments"]\n'
    )
    at(
        recon,
        "2026-07-01T00:00:00Z",
        "monitor",
        "add",
        "load",
        "--every",
        "1h",
        "--grace",
        "5m",
        "--tag",
        "payments",
    )
    for when in ("01:10:00", "01:11:00", "01:12:00", "01:13:00"):
        at(recon, f"2026-07-01T{when}Z", "watch", "--once")
    assert len(http_target.received) == 3 and not http_target.answered_ok  # 30 s, 60 s backoff
    assert len(mailbox.messages) == 1 and "DOWN: load" in mailbox.messages[0]
    targets = {t: s for t, s in recon.query("SELECT target, status FROM deliveries")}
    assert targets == {"oncall": "pending", "apprise.yml#1": "delivered"}


SIGNALS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "gone"]),
        st.sampled_from(["success", "fail", "start", "log"]),
        st.integers(0, 6 * 3600),  # seconds after the previous signal
    ),
    max_size=25,
)


@given(SIGNALS, st.sampled_from(["*/15 * * * *", "0 7 * * *", None]), st.integers(0, 1800))
@example([("a", "success", 900), ("a", "fail", 900), ("b", "start", 1)], "*/15 * * * *", 0)
@settings(max_examples=60, deadline=None)
def test_signals_applied_in_one_batch_equal_one_by_one(
    signals: list[tuple[str, str, int]], cron: str | None, early: int
) -> None:
    """The spool records pings with `apply_signals`; its result must be exactly that of
    `apply_signal` called for each, in order: monitors, slot ledger and signals alike."""
    base = datetime(2026, 3, 27, 23, tzinfo=UTC)  # DST in London begins within the range
    stores = []
    for batched in (False, True):
        conn = duckdb.connect()
        conn.execute("SET TimeZone = 'UTC'")
        migrate(conn)
        for name in ("a", "b"):
            spec = monitors.Spec(cron, "Europe/London", None if cron else 3600, 600, early)
            create_monitor(conn, name, spec, now=base, user="t")
        moment, items = base, []
        for number, (name, kind, gap) in enumerate(signals):
            moment += timedelta(seconds=gap)
            items.append(Signal(name, kind, moment, message=f"m{number}",
                                origin="http", request_id=f"r{number}"))  # fmt: skip
        if batched:
            assert apply_signals(conn, items) == sum(i.monitor != "gone" for i in items)
        else:
            for item in items:
                with contextlib.suppress(monitors.MonitorError):  # "gone": no such monitor
                    apply_signal(conn, item)
        stores.append(
            [
                conn.execute(f"SELECT * {columns} FROM {table} ORDER BY ALL").fetchall()
                for table, columns in (
                    ("monitors", "EXCLUDE (ping_uuid)"),  # random by design
                    ("slots", ""),
                    ("signals", ""),
                )
            ]
        )
        conn.close()
    assert stores[0] == stores[1]


def test_run_with_an_unknown_monitor_still_runs_the_job_and_says_so(
    recon: Recon, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    job = [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('done')"]
    ran = recon("run", "nigthly-load", "--", *job)  # a typo in the cron line
    assert marker.read_text() == "done"  # the job came first
    assert ran.code == 1  # and cron hears that the monitoring is broken
    assert (
        "the command ran (exit 0" in ran.stderr and "no monitor named 'nigthly-load'" in ran.stderr
    )
    failed = recon("run", "nigthly-load", "--", sys.executable, "-c", "raise SystemExit(5)")
    assert failed.code == 5  # the job's own failure is what cron sees


def test_every_zero_is_refused_as_such(recon: Recon) -> None:
    result = recon("monitor", "add", "bad", "--every", "0s", "--grace", "1h")
    assert result.code == 2 and "longer than zero" in result.stderr


def test_an_alert_that_reaches_no_one_is_said_out_loud(recon: Recon) -> None:
    recon(
        "--now", "2026-07-01T00:00:00Z", "monitor", "add", "job", "--every", "1h", "--grace", "5m"
    )
    tick = recon("--now", "2026-07-01T01:10:00Z", "watch", "--once")
    assert tick.code == 3
    assert "alert A-000001 (job down) reached no one: no notification target matches" in tick.stderr
