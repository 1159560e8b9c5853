"""Reading an operations mailbox over IMAP, against a real Dovecot on loopback (tests/dovecot.py).

Each test has its own account (an empty INBOX) on one Dovecot started for the session.
"""

from __future__ import annotations

import traceback
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from reconcile.settings import MailboxConfig, load_settings
from reconcile.watch.mailbox import MailboxError, fetch
from tests.dovecot import Dovecot
from tests.support import free_port

# 07:40 in India is 02:10 UTC: the arrival time must come back as the instant, in UTC.
ARRIVED = datetime(2026, 11, 4, 7, 40, 12, tzinfo=timezone(timedelta(hours=5, minutes=30)))
REPORT = "Failed Transactions — 4 Nov 2026 (3 failures)"
SENDER = "Payments Loader <Loader@Payments.Example>"
# CRLF and LF, a byte that is not UTF-8, no final newline: it must come back exactly.
REPORT_CSV = b"txn_id,amount,status\r\nT-1,10.00,FAILED\nT-2,\xa35.00,FAILED"


def config(dovecot: Dovecot, security: str = "tls", **overrides: object) -> MailboxConfig:
    return MailboxConfig.model_validate(dovecot.mailbox_config(security, **overrides))


def deliver_report(
    dovecot: Dovecot,
    *,
    attachments: list[tuple[str, bytes]] | None = None,
    folder: str = "INBOX",
) -> int:
    """The daily report as the loader sends it."""
    if attachments is None:
        attachments = [("failed-2026-11-04.csv", REPORT_CSV)]
    return dovecot.deliver(
        REPORT, SENDER, arrived_at=ARRIVED, attachments=attachments, folder=folder
    )


def test_a_matching_message_comes_back_with_its_arrival_time_decoded_subject_and_sender(
    dovecot: Dovecot,
) -> None:
    uid = deliver_report(dovecot)
    with dovecot.client() as imap:  # the subject travels RFC 2047-encoded, as mailers send it
        imap.select("INBOX", readonly=True)
        _, data = imap.uid("FETCH", str(uid), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"=?utf-8?" in data[0][1]

    fetched = fetch(
        config(dovecot), subject=r"failed transactions", sender="loader@payments.example"
    )

    [message] = fetched.messages
    assert message.uid == uid
    assert message.arrived_at == datetime(2026, 11, 4, 2, 10, 12, tzinfo=UTC)
    assert message.arrived_at.utcoffset() == timedelta(0)
    assert message.subject == REPORT
    assert message.sender == "loader@payments.example"
    assert message.message_id is not None and message.message_id.endswith("@example.test>")
    assert fetched.last_uid == uid


def test_subject_and_sender_filters_drop_other_messages(dovecot: Dovecot) -> None:
    wanted = deliver_report(dovecot)
    dovecot.deliver("Weekly newsletter", SENDER, arrived_at=ARRIVED)
    dovecot.deliver(REPORT, "someone@elsewhere.example", arrived_at=ARRIVED)
    # Sharing the address as a prefix is not the same sender.
    dovecot.deliver(REPORT, "loader@payments.example.evil.test", arrived_at=ARRIVED)
    last = dovecot.deliver("Re: " + REPORT, "LOADER@payments.EXAMPLE", arrived_at=ARRIVED)

    fetched = fetch(
        config(dovecot), subject=r"^(re: )?FAILED transactions —", sender="Loader@Payments.Example"
    )

    assert [m.uid for m in fetched.messages] == [wanted, last]
    assert fetched.last_uid == last
    everything = fetch(config(dovecot))
    assert len(everything.messages) == 5
    assert fetch(config(dovecot), subject="no such subject").messages == []


def test_after_uid_returns_only_what_arrived_since(dovecot: Dovecot) -> None:
    deliver_report(dovecot)
    deliver_report(dovecot)
    first = fetch(config(dovecot), subject="failed transactions")
    assert len(first.messages) == 2

    again = fetch(
        config(dovecot),
        after_uid=first.last_uid,
        uidvalidity=first.uidvalidity,
        subject="failed transactions",
    )
    assert again.messages == []
    assert again.last_uid == first.last_uid

    # A message that does not match still moves last_uid on, so it is not read again.
    noise = dovecot.deliver("Out of office", "someone@elsewhere.example", arrived_at=ARRIVED)
    newest = deliver_report(dovecot)
    later = fetch(
        config(dovecot),
        after_uid=first.last_uid,
        uidvalidity=first.uidvalidity,
        subject="failed transactions",
    )
    assert [m.uid for m in later.messages] == [newest]
    assert later.last_uid == newest > noise


def test_a_new_uidvalidity_starts_again_from_the_first_message(dovecot: Dovecot) -> None:
    deliver_report(dovecot, folder="Reports")
    deliver_report(dovecot, folder="Reports")
    before = fetch(config(dovecot, folder="Reports"))
    assert before.last_uid == 2
    # Deleting and re-creating a folder renumbers it: UIDs restart under a new UIDVALIDITY.
    with dovecot.client() as imap:
        assert imap.delete('"Reports"')[0] == "OK"
    uid = deliver_report(dovecot, folder="Reports")
    assert uid == 1

    after = fetch(
        config(dovecot, folder="Reports"),
        after_uid=before.last_uid,
        uidvalidity=before.uidvalidity,
    )

    assert after.uidvalidity != before.uidvalidity
    assert [m.uid for m in after.messages] == [1]
    assert after.last_uid == 1


def test_csv_attachments_come_back_byte_for_byte_and_others_are_ignored(
    dovecot: Dovecot,
) -> None:
    deliver_report(
        dovecot,
        attachments=[
            ("summary.pdf", b"%PDF-1.4 not a report"),
            ("failed-2026-11-04.csv", REPORT_CSV),
            ("notes.txt", b"a,b\n1,2\n"),
        ],
    )
    [message] = fetch(config(dovecot)).messages
    assert [(a.filename, a.content) for a in message.attachments] == [
        ("failed-2026-11-04.csv", REPORT_CSV)
    ]


def test_a_csv_is_recognised_by_its_type_or_its_name(dovecot: Dovecot) -> None:
    message = EmailMessage()
    message["From"] = SENDER
    message["Subject"] = REPORT
    message.set_content("two reports")
    message.add_attachment(
        b"a;b\r\n", maintype="application", subtype="octet-stream", filename="Report.CSV"
    )
    message.add_attachment(b"c,d\n", maintype="text", subtype="csv")  # no file name
    message.add_attachment(
        b"e,f\n", maintype="text", subtype="csv", filename="../../etc/cron.d/evil.csv"
    )
    dovecot.append(message.as_bytes(policy=SMTP), arrived_at=ARRIVED)

    [fetched] = fetch(config(dovecot)).messages

    assert [(a.filename, a.content) for a in fetched.attachments] == [
        ("Report.CSV", b"a;b\r\n"),
        ("attachment-2.csv", b"c,d\n"),
        ("evil.csv", b"e,f\n"),  # only the last part of a name a sender chose
    ]


@pytest.mark.parametrize("security", ["tls", "starttls", "none"])
def test_each_security_mode_reads_the_mailbox(dovecot: Dovecot, security: str) -> None:
    uid = deliver_report(dovecot)
    fetched = fetch(config(dovecot, security))
    assert [m.uid for m in fetched.messages] == [uid]


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_without_the_private_ca_certificate_verification_fails(
    dovecot: Dovecot, security: str
) -> None:
    with pytest.raises(MailboxError) as failure:
        fetch(config(dovecot, security, ca_file=None), alias="ops")
    text = str(failure.value)
    assert text.startswith(f"mailbox 'ops' ({dovecot.host}:")
    assert "certificate verification failed" in text
    assert "ca_file" in text  # what to do about it


def test_a_wrong_password_is_reported_without_either_password(dovecot: Dovecot) -> None:
    wrong = "wrong-" + dovecot.password
    with pytest.raises(MailboxError) as failure:
        fetch(config(dovecot, password=wrong), alias="ops")

    error = failure.value
    text = str(error)
    assert f"{dovecot.host}:{dovecot.imaps_port}" in text
    assert "login rejected" in text and dovecot.user in text
    everything = "\n".join(
        [
            text,
            repr(error),
            repr(error.__cause__),
            repr(error.__context__),
            "".join(traceback.format_exception(error)),
        ]
    )
    secret_part = dovecot.password.rsplit("-", 1)[1]  # random: appears only if leaked
    assert secret_part not in everything


def test_the_password_can_come_from_recon_toml_and_the_environment(
    dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uid = deliver_report(dovecot)
    settings = dovecot.mailbox_config("starttls")
    password = settings.pop("password")
    toml = "[mailboxes.ops]\n" + "".join(f"{key} = {value!r}\n" for key, value in settings.items())
    (tmp_path / "recon.toml").write_text(toml.replace("'", '"'), encoding="utf-8")
    monkeypatch.setenv("RECON_MAILBOXES__OPS__PASSWORD", password)

    loaded = load_settings(tmp_path / "recon.toml")

    assert password not in repr(loaded)
    assert [m.uid for m in fetch(loaded.mailboxes["ops"], alias="ops").messages] == [uid]


def test_the_password_can_come_from_a_file(dovecot: Dovecot, tmp_path: Path) -> None:
    uid = deliver_report(dovecot)
    secret = tmp_path / "imap-password"
    secret.write_text(dovecot.password + "\n", encoding="utf-8")
    mailbox = config(dovecot, password=None, password_file=str(secret))
    assert [m.uid for m in fetch(mailbox).messages] == [uid]


def test_no_password_at_all_says_where_to_set_it(dovecot: Dovecot) -> None:
    with pytest.raises(MailboxError, match="RECON_MAILBOXES__OPS__PASSWORD"):
        fetch(config(dovecot, password=None), alias="ops")


def test_a_missing_folder_is_named_with_the_folders_there_are(dovecot: Dovecot) -> None:
    deliver_report(dovecot, folder="Archive")
    with pytest.raises(MailboxError) as failure:
        fetch(config(dovecot, folder="Reports.Daily"), alias="ops")
    text = str(failure.value)
    assert text.startswith(f"mailbox 'ops' ({dovecot.host}:{dovecot.imaps_port}): ")
    assert "folder 'Reports.Daily' does not exist" in text
    assert "folders here: Archive, INBOX" in text


def test_a_folder_name_the_server_cannot_take_says_why(dovecot: Dovecot) -> None:
    # This Dovecot separates levels with '.', so '/' is not allowed in a name.
    with pytest.raises(MailboxError, match=r"folder 'Reports/Daily' cannot be opened \(.*'/'"):
        fetch(config(dovecot, folder="Reports/Daily"))


def test_an_empty_folder_gives_nothing_and_keeps_the_position(dovecot: Dovecot) -> None:
    fetched = fetch(config(dovecot), after_uid=7)
    assert fetched.messages == []
    assert fetched.last_uid == 7


def test_fetching_does_not_mark_messages_seen(dovecot: Dovecot) -> None:
    uid = deliver_report(dovecot)
    assert "\\Seen" not in dovecot.flags(uid)
    for security in ("tls", "starttls"):
        assert fetch(config(dovecot, security)).messages[0].attachments
    assert "\\Seen" not in dovecot.flags(uid)


def test_nothing_listening_is_reported_as_connection_refused() -> None:
    port = free_port()  # free, and nothing listens once the probe closes
    mailbox = MailboxConfig(host="127.0.0.1", port=port, user="u", password="p", security="none")
    with pytest.raises(MailboxError, match=rf"127\.0\.0\.1:{port}\): connection refused"):
        fetch(mailbox, alias="ops")


def test_a_plain_connection_to_the_tls_port_times_out_with_advice(dovecot: Dovecot) -> None:
    mailbox = config(dovecot, "none", port=dovecot.imaps_port, timeout="0.5s")
    with pytest.raises(MailboxError, match=r"no answer within 0\.5s .*security matches the port"):
        fetch(mailbox)


def test_an_invalid_subject_pattern_is_an_error_before_connecting() -> None:
    mailbox = MailboxConfig(host="127.0.0.1", port=9, user="u", password="p")
    with pytest.raises(MailboxError, match="not a valid regular expression"):
        fetch(mailbox, subject="Failed (daily")
