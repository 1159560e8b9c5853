"""Sending a built report (`reconcile.report.send.deliver`) to real receivers on loopback: an
SMTP server that checks a login (aiosmtpd, through apprise's mailto://) and a JSON webhook.

Email gets the HTML report with a text part and the files (the same bytes as recorded in
report_sends); the webhook gets the short text only, coloured by the report's status; a second
send for the same day and target sends nothing, --force sends again; a failed delivery stays
queued and the next send retries it rather than queueing another; the files live in a private
temporary folder during the send only."""

from __future__ import annotations

import email
import email.policy
import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconcile.report import send
from reconcile.report.model import PNG_TYPE, XLSX_TYPE
from reconcile.watch import notify

from .conftest import HttpTarget, Recon
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

__all__ = ["smtp"]  # the fixture

# apprise (sending in-process here) imports the standard library's deprecated imghdr.
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


@pytest.fixture
def store(recon: Recon, monkeypatch: pytest.MonkeyPatch) -> Recon:
    """This process sees the test's store as `recon` does (its RECON_ variables)."""
    for name, value in recon.env.items():
        if name.startswith("RECON_") and name != "RECON_NOW":
            monkeypatch.setenv(name, value)
    return recon


def _sessions(recon: Recon, now: datetime = NOW) -> notify.Sessions:
    return sessions_of(recon.workdir / "recon.toml", recon.db, now)


def _both(recon: Recon, smtp: Smtp, hook: HttpTarget) -> None:
    recon.write_config(config(mail=(smtp.url(), ["operations"]), chat=(hook.url, ["oncall"])))


def test_email_gets_html_text_and_files_and_the_webhook_only_the_short_text(
    store: Recon, smtp: Smtp, http_target: HttpTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    _both(store, smtp, http_target)
    spool = store.workdir / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    smtp.watch_folder = spool
    report = make_report()

    sent = send.deliver(_sessions(store), report, None, False)

    assert [(t.target, t.outcome) for t in sent.targets] == [
        ("chat", "delivered"),
        ("mail", "delivered"),
    ]
    assert sent.targets[0].alert_id == sent.targets[1].alert_id  # one alert, two deliveries
    assert sent.targets[0].attachments == []  # chat gets no files
    assert [a["name"] for a in sent.targets[1].attachments] == [a.name for a in report.attachments]
    # The email: HTML and text parts with the day's counts, the three files byte for byte.
    [raw] = smtp.accepted
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"].startswith(f"[recon] Failed transactions {DAY}")
    assert message.get_content_type() == "multipart/mixed"
    html_part, text_part = message.get_body(("html",)), message.get_body(("plain",))
    assert html_part is not None and text_part is not None
    assert "rows loaded 1500, failed 3, missing 1" in html_part.get_content()
    text = text_part.get_content()
    assert "rows loaded 1500, failed 3, missing 1" in text and "<" not in text
    files = {
        part.get_filename(): (part.get_content_type(), part.get_payload(decode=True))
        for part in message.iter_attachments()
    }
    recorded = json.loads(
        store.query(
            "SELECT attachments FROM report_sends WHERE target = 'mail' AND alert_id = ?",
            [sent.targets[1].alert_id],
        )[0][0]
    )
    assert {a["name"]: a["sha256"] for a in recorded} == {
        name: sha256(content) for name, (_, content) in files.items()
    }
    assert {name: kind for name, (kind, _) in files.items()} == {
        f"failed-transactions-{DAY}.csv": "text/csv",
        f"failed-transactions-{DAY}.xlsx": XLSX_TYPE,
        f"failed-transactions-{DAY}-chart.png": PNG_TYPE,
    }
    assert files[f"failed-transactions-{DAY}-chart.png"][1].startswith(b"\x89PNG\r\n\x1a\n")
    # While it was sent, the files were in a private folder; nothing is left of them.
    folders = {p: m for p, m in smtp.spool.items() if "/" not in p}
    assert len(folders) == 1 and set(folders.values()) == {0o700}
    written = {Path(p).name: m for p, m in smtp.spool.items() if "/" in p}
    assert written == {a.name: 0o600 for a in report.attachments}
    assert list(spool.iterdir()) == []
    # The webhook: the short text, no files, a warning (the day has breaks).
    [hook] = http_target.answered_ok
    assert hook["message"] == report.short
    assert hook["type"] == "warning"
    assert not hook.get("attachments")
    assert hook["title"] == f"{report.title} [{sent.targets[0].alert_id}]"
    # Recorded and audited, without a URL, a body or the password.
    rows = store.query(
        "SELECT target, business_date, scope, report_status, forced, delivery "
        "FROM report_deliveries ORDER BY target"
    )
    assert rows == [
        ("chat", DAY, "*", "breaks", False, "delivered"),
        ("mail", DAY, "*", "breaks", False, "delivered"),
    ]
    [(details,)] = store.query("SELECT details FROM audit_events WHERE action = 'report.send'")
    audited = json.loads(details)
    assert audited["targets"] == ["chat", "mail"] and audited["forced"] is False
    assert [a["sha256"] for a in audited["attachments"]] == [a.sha256 for a in report.attachments]
    assert SMTP_PASSWORD not in details and "Failed transactions" not in details
    # The files are dropped from the outbox once every delivery is done.
    assert store.query("SELECT count(*) FROM alert_attachments") == [(0,)]


def test_a_second_send_sends_nothing_and_force_sends_again(
    store: Recon, smtp: Smtp, http_target: HttpTarget
) -> None:
    _both(store, smtp, http_target)
    first = send.deliver(_sessions(store), make_report(), None, False)
    later = NOW + timedelta(hours=1)

    again = send.deliver(_sessions(store, later), make_report(), None, False)

    assert len(smtp.accepted) == 1 and len(http_target.received) == 1
    assert [t.outcome for t in again.targets] == ["already_sent", "already_sent"]
    assert [t.alert_id for t in again.targets] == [t.alert_id for t in first.targets]
    delivered_at = again.targets[1].delivered_at
    assert delivered_at is not None and NOW <= delivered_at < NOW + timedelta(minutes=1)
    assert not again.failed
    [(details,)] = store.query(
        "SELECT details FROM audit_events WHERE action = 'report.send' ORDER BY seq DESC LIMIT 1"
    )
    assert json.loads(details)["skipped"] == ["chat", "mail"]
    assert json.loads(details)["targets"] == []

    forced = send.deliver(_sessions(store, later), make_report(), None, True)

    assert [t.outcome for t in forced.targets] == ["delivered", "delivered"]
    assert forced.targets[0].alert_id != first.targets[0].alert_id
    assert len(smtp.accepted) == 2 and len(http_target.answered_ok) == 2
    assert store.query("SELECT forced, count(*) FROM report_sends GROUP BY ALL ORDER BY 1") == [
        (False, 2),
        (True, 2),
    ]
    # Another day, or another scope, is another report.
    other = send.deliver(_sessions(store, later), make_report(source="payments"), None, False)
    assert [t.outcome for t in other.targets] == ["delivered", "delivered"]
    assert len(smtp.accepted) == 3


def test_a_tag_picks_its_targets_and_the_status_colours_the_message(
    store: Recon, smtp: Smtp, http_target: HttpTarget
) -> None:
    _both(store, smtp, http_target)
    types = {}
    for day, status in zip(range(16, 20), ("balanced", "down", "pending", "breaks"), strict=True):
        sent = send.deliver(
            _sessions(store), make_report(DAY.replace(day=day), status=status), "oncall", False
        )
        assert [t.target for t in sent.targets] == ["chat"]
        types[status] = http_target.answered_ok[-1]["type"]
    assert types == {
        "balanced": "success",
        "down": "failure",
        "pending": "info",
        "breaks": "warning",
    }
    assert smtp.attempts == 0  # the mail target has another tag
    with pytest.raises(notify.NoTargetWithTag, match="operations"):
        send.deliver(_sessions(store), make_report(), "finance", False)


def test_a_failed_delivery_stays_queued_and_the_next_send_retries_it(
    store: Recon, smtp: Smtp, http_target: HttpTarget
) -> None:
    _both(store, smtp, http_target)
    smtp.refuse_first = 1

    first = send.deliver(_sessions(store), make_report(), None, False)

    mail = first.targets[1]
    assert (mail.target, mail.outcome) == ("mail", "queued")
    assert mail.error and "451" in mail.error and SMTP_PASSWORD not in mail.error
    retry_at = mail.next_attempt_at
    assert retry_at is not None
    assert NOW + notify.BACKOFF_FIRST <= retry_at < NOW + notify.BACKOFF_FIRST * 2
    assert first.failed == [mail]
    assert first.targets[0].outcome == "delivered"
    assert store.query("SELECT count(*) FROM alert_attachments") == [(3,)]  # kept for the retry

    # Asked again before the backoff is over: the same alert is tried now, none queued.
    again = send.deliver(_sessions(store, NOW + timedelta(seconds=5)), make_report(), None, False)

    assert [(t.target, t.outcome) for t in again.targets] == [
        ("chat", "already_sent"),
        ("mail", "delivered"),
    ]
    assert again.targets[1].alert_id == mail.alert_id
    assert len(smtp.accepted) == 1 and smtp.attempts == 2
    [message] = [email.message_from_bytes(m, policy=email.policy.default) for m in smtp.accepted]
    assert len(list(message.iter_attachments())) == 3  # the retry carried the files
    assert store.query("SELECT count(*) FROM report_sends") == [(2,)]
    assert store.query("SELECT count(*) FROM alerts") == [(1,)]
    assert SMTP_PASSWORD not in json.dumps(store.query("SELECT * FROM deliveries"), default=str)


def test_a_report_without_files_and_a_queued_only_send(
    store: Recon, smtp: Smtp, http_target: HttpTarget
) -> None:
    _both(store, smtp, http_target)
    queued = send.deliver(_sessions(store), make_report(files=False), None, False, attempt=False)
    assert [t.outcome for t in queued.targets] == ["queued", "queued"]
    assert [t.error for t in queued.targets] == [None, None]
    assert smtp.attempts == 0 and not http_target.received
    rows = store.query("SELECT kind FROM alerts")
    assert rows == [("report_breaks",)]
