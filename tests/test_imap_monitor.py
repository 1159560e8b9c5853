"""The report email itself as the signal, read from a real Dovecot on loopback: on time (up),
missing (one down alert with the gap and the failed-record count), late (one recovery)."""

from __future__ import annotations

import re
import shlex
from datetime import UTC, date, datetime
from pathlib import Path

from .conftest import HttpTarget, Recon
from .dovecot import Dovecot
from .test_signals import run_log

SENDER = "reports@example.com"
SUBJECT = "Failed Transactions {day}"


def configure(recon: Recon, dovecot: Dovecot, target: HttpTarget, password: str) -> None:
    """Mailbox `ops` in recon.toml, its password only in the environment (a secret setting)."""
    box = dovecot.mailbox_config("tls")
    lines = "".join(
        f"{key} = {value!r}\n".replace("'", '"') for key, value in box.items() if key != "password"
    )
    recon.write_config(f'[mailboxes.ops]\n{lines}\n[notify.targets.ops]\nurl = "{target.url}"\n')
    recon.env["RECON_MAILBOXES__OPS__PASSWORD"] = password


def watch(recon: Recon, when: str) -> tuple[int, str]:
    done = recon("watch", "--once", env={"RECON_NOW": when})
    return done.code, done.stderr


def test_the_report_email_on_time_missing_then_late(
    recon: Recon, dovecot: Dovecot, http_target: HttpTarget, tmp_path: Path
) -> None:
    configure(recon, dovecot, http_target, dovecot.password)
    added = recon(
        "monitor", "add", "report-email", "--cron", "0 7 * * 1-5", "--tz", "Europe/London",
        "--grace", "1h", "--early", "2h", "--mailbox", "ops", "--subject", "^Failed Transactions",
        "--from", SENDER, "--source", "pay",
        env={"RECON_NOW": "2026-11-08T12:00:00Z"},
    )  # fmt: skip
    assert added.code == 0, added.stderr
    # Runs keep arriving whatever the email does: Friday 6 and Monday 9 November.
    for day, failed in ((date(2026, 11, 6), 2), (date(2026, 11, 9), 3), (date(2026, 11, 10), 4)):
        log = run_log(tmp_path, day, 8, failed)
        recon("ingest", "--source", "pay", log, env={"RECON_NOW": f"{day}T21:00:00Z"})

    # Monday: the report arrives at 06:50 with its CSV; a look-alike from elsewhere does not count.
    report = b"txn_id,run_id,amount,currency,error_code\nT20261106-000,R-20261106,100.00,GBP,E1\n"
    dovecot.deliver(
        SUBJECT.format(day="2026-11-06"), SENDER,
        arrived_at=datetime(2026, 11, 9, 6, 50, tzinfo=UTC),
        attachments=[("failed-transactions-2026-11-06.csv", report)],
    )  # fmt: skip
    dovecot.deliver(
        "Failed Transactions (phishing)", "someone@example.net",
        arrived_at=datetime(2026, 11, 9, 6, 55, tzinfo=UTC),
    )  # fmt: skip
    code, said = watch(recon, "2026-11-09T07:30:00Z")  # polled after the slot: still on time
    assert code == 0, said
    assert "report-email: email arrived at 2026-11-09 06:50 UTC" in said
    assert "report of 1 failed transaction(s) ingested" in said
    assert recon.query("SELECT report_date, txn_id FROM reported_failures") == [
        (date(2026, 11, 6), "T20261106-000")
    ]
    shown = recon(
        "--json", "monitor", "show", "report-email", env={"RECON_NOW": "2026-11-09T07:30:00Z"}
    ).json()
    assert shown["status"] == "up"
    assert [(s["outcome"], s["arrived_at"]) for s in shown["slots"]] == [
        ("on_time", "2026-11-09T06:50:00+00:00")
    ]
    assert http_target.received == []

    # Tuesday: nothing arrives. One down alert after the grace, naming the gap.
    assert watch(recon, "2026-11-10T07:59:00Z")[0] == 0  # late, within grace: no alert yet
    code, said = watch(recon, "2026-11-10T08:01:00Z")
    assert code == 3, said
    assert watch(recon, "2026-11-10T08:30:00Z")[0] == 3  # still down: no second alert
    [down] = http_target.received
    assert down["title"].startswith("[recon] DOWN: report-email")
    assert "passed its grace of 1h with no signal" in down["message"]
    failed = int(re.search(r"- failed records: (\d+)", down["message"]).group(1))  # type: ignore[union-attr]
    command = re.search(r"List them: (recon .+)", down["message"]).group(1)  # type: ignore[union-attr]
    assert "--since 2026-11-09 --until 2026-11-10" in command
    listed = recon("--json", *shlex.split(command)[1:]).json()["failures"]
    assert failed == len(listed) == 3 + 4  # Monday's and Tuesday's runs since the last report

    # The report turns up at 09:10: one recovery, the slot recorded as missed.
    dovecot.deliver(
        SUBJECT.format(day="2026-11-09"), SENDER.upper(),
        arrived_at=datetime(2026, 11, 10, 9, 10, tzinfo=UTC),
    )  # fmt: skip
    code, said = watch(recon, "2026-11-10T09:15:00Z")
    assert code == 0, said
    assert watch(recon, "2026-11-10T09:20:00Z")[0] == 0  # nothing read twice, nothing new
    assert [m["title"].split(" [")[0] for m in http_target.received] == [
        "[recon] DOWN: report-email",
        "[recon] RECOVERED: report-email",
    ]
    assert "slots missed: 1" in http_target.received[1]["message"]
    assert recon.query("SELECT count(*) FROM signals WHERE origin = 'email'") == [(2,)]


def test_a_mailbox_that_cannot_be_read_is_an_error_without_its_password(
    recon: Recon, dovecot: Dovecot, http_target: HttpTarget
) -> None:
    wrong = "not-the-password-" + dovecot.password[::-1]
    configure(recon, dovecot, http_target, wrong)
    recon(
        "monitor", "add", "report-email", "--cron", "0 7 * * *", "--grace", "1h",
        "--mailbox", "ops", env={"RECON_NOW": "2026-11-08T12:00:00Z"},
    )  # fmt: skip
    code, said = watch(recon, "2026-11-09T06:00:00Z")
    assert code == 3
    assert "report-email" in said and "login" in said.lower() and wrong not in said
    assert (
        recon("monitor", "add", "x", "--every", "1h", "--grace", "1h", "--mailbox", "nope").code
        == 2
    )
