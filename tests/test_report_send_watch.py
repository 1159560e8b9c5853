"""The report in the outbox, driven by real `recon watch --once` processes: an SMTP server that
refuses the first attempts gets the report exactly once after the retries (files included);
a watcher killed while the server stalls in DATA leaves a claim that the next watcher takes
over once its lease has run out, and the report arrives exactly once; a monitor created by
`recon report schedule` goes down when no report is delivered by its slot plus grace, and is
up again after a delivered report (whichever process delivered it). The SMTP password of the
target appears in no message, output, log line or column of the store.

Reports are queued in this process (`send.deliver(..., attempt=False)`: what `recon report
send` records before its first attempt), then delivered by `recon watch` processes."""

from __future__ import annotations

import email
import email.policy
import json
import signal
import subprocess
from datetime import UTC, datetime, timedelta

import duckdb
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconcile.report import send

from .conftest import HttpTarget, Recon, Result
from .report_send_support import (
    DAY,
    SMTP_PASSWORD,
    Smtp,
    config,
    make_report,
    sessions_of,
    sha256,
    smtp,
)
from .support import start_recon

__all__ = ["smtp"]  # the fixture

# apprise (loaded in-process here) imports the standard library's deprecated imghdr.
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

T0 = datetime(2026, 11, 20, 7, 5, tzinfo=UTC)  # a Friday, just after the report's 07:00 slot


@pytest.fixture
def store(recon: Recon, monkeypatch: pytest.MonkeyPatch) -> Recon:
    for name, value in recon.env.items():
        if name.startswith("RECON_") and name != "RECON_NOW":
            monkeypatch.setenv(name, value)
    return recon


def at(recon: Recon, when: datetime, *args: str) -> Result:
    return recon(*args, env={"RECON_NOW": when.isoformat()})


def watch(recon: Recon, when: datetime, *extra: str) -> Result:
    done = at(recon, when, "--json", "watch", "--once", *extra)
    assert done.code in (0, 3), done.stderr
    return done


def queue(recon: Recon, when: datetime, tag: str | None = None) -> send.Sent:
    sessions = sessions_of(recon.workdir / "recon.toml", recon.db, when)
    return send.deliver(sessions, make_report(), tag, False, attempt=False)


def stored_text(recon: Recon) -> dict[str, str]:
    """Every text, JSON, list and BLOB value of the store, by table.column."""
    with duckdb.connect(str(recon.db), read_only=True) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE data_type IN ('VARCHAR', 'JSON', 'BLOB') OR data_type LIKE '%[]'"
        ).fetchall()
        return {
            f"{table}.{column}": "\n".join(
                value or ""
                for (value,) in conn.execute(
                    f'SELECT DISTINCT "{column}"::VARCHAR FROM "{table}"'
                ).fetchall()
            )
            for table, column in columns
        }


def test_a_refused_report_arrives_once_after_the_watchdogs_retries_and_no_secret_leaks(
    store: Recon, smtp: Smtp
) -> None:
    log = store.workdir / "recon.log"
    store.write_config(
        f'log_file = "{log}"\nlog_file_level = "DEBUG"\nlog_level = "DEBUG"\n'
        + config(mail=(smtp.url(), []))
    )
    assert store("init").code == 0
    scheduled = at(
        store, T0 - timedelta(days=1), "report", "schedule", "--cron", "0 7 * * 1-5",
        "--tz", "UTC", "--grace", "1h",
    )  # fmt: skip
    assert scheduled.code == 0, scheduled.stderr
    smtp.refuse_first = 2
    queued = queue(store, T0)
    [mail] = queued.targets
    outputs: list[Result] = [scheduled]

    first = watch(store, T0)  # refused: back to pending for 30 s
    second = watch(store, T0 + timedelta(seconds=40))  # refused: 60 s now
    metrics_file = store.workdir / "recon.prom"
    waiting = watch(store, T0 + timedelta(seconds=45), "--metrics-file", str(metrics_file))
    outputs += [first, second, waiting]

    assert smtp.attempts == 2 and not smtp.accepted
    assert [a["status"] for a in first.json()["alerts"]] == ["failed"]
    assert "451" in first.json()["alerts"][0]["error"]
    assert waiting.json()["alerts"] == []  # not due yet
    samples = {
        (s.labels["kind"], s.labels["state"]): s.value
        for family in text_string_to_metric_families(metrics_file.read_text())
        if family.name == "recon_alert_deliveries"
        for s in family.samples
    }
    assert samples == {
        ("alert", "pending"): 0.0,
        ("alert", "failing"): 0.0,
        ("report", "pending"): 0.0,
        ("report", "failing"): 1.0,
    }
    listed = at(store, T0 + timedelta(seconds=45), "--json", "alerts").json()["alerts"]
    assert [(r["alert_id"], r["kind"], r["status"], r["report_date"]) for r in listed] == [
        (mail.alert_id, "report_breaks", "pending", DAY.isoformat())
    ]
    shown = at(store, T0 + timedelta(seconds=45), "alerts")
    assert shown.code == 3  # not delivered yet
    [line] = [line for line in shown.stdout.splitlines() if mail.alert_id in line]
    assert f"report {DAY} (*)" in line and "report_breaks" in line and "pending" in line

    done = watch(store, T0 + timedelta(minutes=3))
    later = watch(store, T0 + timedelta(minutes=30))
    outputs += [done, later]

    assert [(a["id"], a["status"]) for a in done.json()["alerts"]] == [(mail.alert_id, "delivered")]
    assert later.json()["alerts"] == []
    assert smtp.attempts == 3
    [raw] = smtp.accepted
    message = email.message_from_bytes(raw, policy=email.policy.default)
    files = {p.get_filename(): p.get_payload(decode=True) for p in message.iter_attachments()}
    assert {name: sha256(content) for name, content in files.items()} == {
        a["name"]: a["sha256"] for a in mail.attachments
    }
    assert len(files) == 3
    assert store.query("SELECT status, attempts FROM deliveries") == [("delivered", 3)]
    # Delivered by the watchdog's retry: the report's own monitor heard it.
    monitors = at(store, T0 + timedelta(minutes=31), "--json", "monitor", "list").json()
    assert [(m["name"], m["status"]) for m in monitors["monitors"]] == [
        ("failed-transactions-report", "up")
    ]
    events = at(
        store, T0 + timedelta(minutes=31), "--json", "monitor", "log",
        "failed-transactions-report",
    ).json()["events"]  # fmt: skip
    heard = [e for e in events if e["event"] == "signal"]
    assert [(e["kind"], e["origin"], e["message"]) for e in heard] == [
        ("success", "report", f"report {DAY} (*) delivered to mail")
    ]
    # The password: in no message, output, log line or stored value.
    assert all(SMTP_PASSWORD.encode() not in m for m in smtp.accepted)
    for result in outputs:
        assert SMTP_PASSWORD not in result.stdout + result.stderr
    assert log.read_text().count("\n") > 10  # the log did record the sends
    assert SMTP_PASSWORD not in log.read_text()
    found = [where for where, text in stored_text(store).items() if SMTP_PASSWORD in text]
    assert found == []
    assert "alert_attachments.content" in stored_text(store)  # BLOB columns were scanned


def test_a_watcher_killed_mid_send_leaves_the_report_to_the_next_one_and_it_arrives_once(
    store: Recon, smtp: Smtp
) -> None:
    store.write_config(config(mail=(smtp.url(), [])))
    assert store("init").code == 0
    smtp.stall_first = True
    [mail] = queue(store, T0).targets

    stuck = start_recon(
        ["watch", "--once"],
        cwd=store.workdir,
        env={**store.env, "RECON_NOW": T0.isoformat()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert smtp.stalled.wait(60), "the watcher never reached DATA"
        stuck.send_signal(signal.SIGKILL)
        stuck.wait(30)
    finally:
        if stuck.poll() is None:
            stuck.kill()
    smtp.release.set()
    assert store.query("SELECT status FROM deliveries") == [("claimed",)]

    held = watch(store, T0 + timedelta(minutes=1))  # the dead watcher's lease still holds
    assert held.json()["alerts"] == [] and not smtp.accepted
    taken = watch(store, T0 + timedelta(minutes=3))  # run out: taken over, sent
    after = watch(store, T0 + timedelta(minutes=30))

    assert [(a["id"], a["status"]) for a in taken.json()["alerts"]] == [
        (mail.alert_id, "delivered")
    ]
    assert after.json()["alerts"] == []
    assert len(smtp.accepted) == 1 and smtp.attempts == 2
    message = email.message_from_bytes(smtp.accepted[0], policy=email.policy.default)
    assert len(list(message.iter_attachments())) == 3
    assert store.query("SELECT status, attempts FROM deliveries") == [("delivered", 2)]


def test_a_business_day_without_a_delivered_report_pages_and_a_delivered_one_ends_it(
    store: Recon, smtp: Smtp, http_target: HttpTarget
) -> None:
    store.write_config(
        config(mail=(smtp.url(), ["operations"]), oncall=(http_target.url, ["oncall"]))
    )
    assert store("init").code == 0
    monday = datetime(2026, 11, 23, tzinfo=UTC)
    for extra in ((), ("--source", "payments")):
        made = at(
            store, monday + timedelta(hours=6), "report", "schedule", "--cron", "0 7 * * 1-5",
            "--tz", "UTC", "--grace", "1h", "--tag", "oncall", *extra,
        )  # fmt: skip
        assert made.code == 0, made.stderr

    late = watch(store, monday + timedelta(hours=7, minutes=30))
    assert late.json()["alerts"] == []
    down = watch(store, monday + timedelta(hours=8, minutes=1))

    assert down.code == 3 and down.json()["errors"] == []
    changes = {(t["monitor"], t["to"]) for t in down.json()["transitions"]}
    assert ("failed-transactions-report", "down") in changes
    assert ("failed-transactions-report-payments", "down") in changes
    paged = [(m["title"].split(" [")[0], m["type"]) for m in http_target.answered_ok]
    assert ("[recon] DOWN: failed-transactions-report", "failure") in paged

    sessions = sessions_of(
        store.workdir / "recon.toml", store.db, monday + timedelta(hours=8, minutes=10)
    )
    sent = send.deliver(sessions, make_report(), "operations", False)  # the every-source report
    assert [(t.target, t.outcome) for t in sent.targets] == [("mail", "delivered")]

    then = monday + timedelta(hours=8, minutes=15)
    listed = at(store, then, "--json", "monitor", "list").json()["monitors"]
    assert {m["name"]: m["status"] for m in listed} == {
        "failed-transactions-report": "up",
        "failed-transactions-report-payments": "down",  # another scope's report is not its own
    }
    recovered = watch(store, then)
    assert {(t["monitor"], t["to"]) for t in recovered.json()["transitions"]} == {
        ("failed-transactions-report", "up")
    }
    assert (
        "[recon] RECOVERED: failed-transactions-report",
        "success",
    ) in [(m["title"].split(" [")[0], m["type"]) for m in http_target.answered_ok]
    audited = store.query(
        "SELECT count(*) FROM audit_events WHERE action = 'monitor.add' "
        "AND object LIKE 'failed-transactions-report%'"
    )
    assert audited == [(2,)]
    versions = at(store, then, "--json", "config", "history").json()
    assert "monitor:failed-transactions-report" in json.dumps(versions)
