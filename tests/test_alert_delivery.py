"""How alerts reach people, through real receivers on loopback: an email with an HTML part that
keeps the alert's lines and a readable text part (aiosmtpd), the notification type a webhook
receives (failure for down, success for recovered), markdown where the target takes it;
`recon notify test` with tagged targets; an apprise URL apprise cannot load refused at once
with the target named; apprise's own reason kept with a failed delivery, its secrets masked."""

from __future__ import annotations

import email
import email.policy
from typing import Any

import pytest

from .conftest import HttpTarget, Mailbox, Recon
from .support import free_port

pytestmark = pytest.mark.in_process


def configure(recon: Recon, text: str) -> None:
    recon.write_config(text)


def target(alias: str, url: str, tags: list[str] | None = None) -> str:
    found = f'[notify.targets.{alias}]\nurl = "{url}"\n'
    return found + (f"tags = {tags!r}\n".replace("'", '"') if tags else "")


def at(recon: Recon, when: str, *args: str) -> Any:
    return recon(*args, env={"RECON_NOW": when})


def incident(recon: Recon, message: str = "ledger refused 3 rows\nrow 7: bad amount") -> None:
    """`load` fails (its output quoted in the alert) and is down, then recovers."""
    at(recon, "2026-07-01T00:00:00Z", "monitor", "add", "load", "--every", "1h", "--grace", "5m")
    failed = at(recon, "2026-07-01T00:30:00Z", "ping", "load", "--exit-code", "2", "-m", message)
    assert failed.code == 0, failed.stderr
    at(recon, "2026-07-01T00:31:00Z", "watch", "--once")
    assert at(recon, "2026-07-01T00:40:00Z", "ping", "load").code == 0
    at(recon, "2026-07-01T00:41:00Z", "watch", "--once")


def test_an_email_alert_has_an_html_part_with_its_lines_and_a_readable_text_part(
    recon: Recon, mailbox: Mailbox
) -> None:
    configure(recon, target("mail", mailbox.url))
    incident(recon)
    assert len(mailbox.messages) == 2
    down = email.message_from_bytes(mailbox.raw[0], policy=email.policy.default)
    assert down["Subject"].startswith("[recon] DOWN: load")
    assert down.get_content_type() == "multipart/alternative"
    html_part = down.get_body(("html",))
    text_part = down.get_body(("plain",))
    assert html_part is not None and text_part is not None
    page = html_part.get_content().replace("\r\n", "\n")
    # Each line of the alert is a line of the page, the quoted output kept as it was.
    assert page.count("<p>") >= 3 and "<br>" in page
    assert "<pre>  ledger refused 3 rows\n  row 7: bad amount" in page
    assert "<p>alert id: A-000001</p>" in page
    text = text_part.get_content().replace("\r\n", "\n")
    lines = [line.strip() for line in text.splitlines()]
    assert "ledger refused 3 rows" in lines  # each line a line, none run together
    assert any(line.startswith("row 7: bad amount") for line in lines)
    assert any(line.startswith("Last signal:") for line in lines)
    assert any(line.startswith("Schedule:") for line in text.splitlines())
    assert "alert id: A-000001" in lines
    assert "<" not in text  # no markup in the text part


def test_a_webhook_gets_failure_for_down_and_success_for_recovered(
    recon: Recon, http_target: HttpTarget
) -> None:
    configure(recon, target("oncall", http_target.url))
    incident(recon)
    got = [(m["title"].split(" [")[0], m["type"]) for m in http_target.answered_ok]
    assert got == [("[recon] DOWN: load", "failure"), ("[recon] RECOVERED: load", "success")]
    down = http_target.answered_ok[0]["message"]
    assert "\n  ledger refused 3 rows\n" in down and "<" not in down  # text, as written
    tested = recon("notify", "test")
    assert tested.code == 0, tested.stderr
    assert http_target.answered_ok[-1]["type"] == "info"


def test_a_target_that_takes_markdown_gets_markdown(recon: Recon, http_target: HttpTarget) -> None:
    configure(recon, target("chat", http_target.url + "?format=markdown"))
    incident(recon, message="step_one failed")
    down = http_target.answered_ok[0]["message"]
    assert "```\n  step_one failed" in down  # quoted output: as it was, in a code block
    assert "  \nSchedule:" in down and "recon monitor show load" in down  # hard line breaks


def test_notify_test_without_tag_reaches_every_tagged_target(
    recon: Recon, http_target: HttpTarget
) -> None:
    configure(
        recon,
        target("payments", http_target.url, ["payments"])
        + target("ledger", http_target.url.replace("/alerts", "/ledger"), ["ledger"]),
    )
    tested = recon("notify", "test")
    assert tested.code == 0, tested.stderr
    assert "ledger: delivered" in tested.stderr and "payments: delivered" in tested.stderr
    assert len(http_target.answered_ok) == 2
    assert recon.query("SELECT count(*) FROM deliveries WHERE status <> 'delivered'") == [(0,)]


def test_notify_test_with_a_tag_no_target_has_says_which_tags_exist(
    recon: Recon, http_target: HttpTarget
) -> None:
    configure(recon, target("payments", http_target.url, ["payments"]))
    tested = recon("notify", "test", "--tag", "nobody")
    assert tested.code == 1
    assert "no notification target has the tag 'nobody'" in tested.stderr
    assert "payments" in tested.stderr
    assert recon.query("SELECT count(*) FROM deliveries") == [(0,)]  # nothing left pending


def test_an_apprise_url_apprise_cannot_load_is_refused_naming_the_target(
    recon: Recon, http_target: HttpTarget
) -> None:
    configure(
        recon,
        target("oncall", http_target.url)
        + target("chat", "slak://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"),
    )
    for args in (("notify", "test"), ("watch", "--once")):
        refused = recon(*args)
        assert refused.code == 1, (args, refused.stderr)
        assert "notify target 'chat': apprise does not understand its URL" in refused.stderr
        assert "'slak'" in refused.stderr
        assert "TIiajkdnlazkcOXrIdevi7FQ" not in refused.stderr + refused.stdout
    assert http_target.received == []


def test_a_failed_delivery_keeps_apprises_reason_not_its_status(recon: Recon) -> None:
    port = free_port()  # nothing listens there
    secret = "s3cr3t-token-value"
    configure(recon, target("oncall", f"json://user:{secret}@127.0.0.1:{port}/hook"))
    tested = recon("--json", "notify", "test")
    assert tested.code == 3
    [(error,)] = recon.query("SELECT last_error FROM deliveries")
    assert error.startswith("apprise reported FAILURE: ")
    assert "Connection refused" in error, error
    listed = recon("alerts")
    assert secret not in error and secret not in listed.stdout + listed.stderr
    assert secret not in tested.stdout + tested.stderr
