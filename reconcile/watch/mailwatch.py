"""Email monitors: a matching message in an IMAP mailbox is the monitor's signal.

Each `recon watch` tick reads the mailboxes of the monitors that hear email (`mailbox.fetch`,
outside any database transaction: a slow server must not hold the store), then records each new
matching message as a success at its arrival time (the server's INTERNALDATE), so a report that
arrived at 06:55 counts for the 07:00 slot even when the tick runs at 07:30. A CSV attachment
is ingested first as that day's failure report (`--kind report`) of the monitor's source, by
the same batch as `recon ingest` (`ingest.ingest_files`): a refused or skipped attachment is on
the audit trail as it would be from the command line, with `via: mail` and the mailbox as its
origin. Then the signal and the mailbox position are committed together, so a crash reads the
message again and the report, already stored, is skipped as already ingested.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from reconcile import audit
from reconcile.ingest.batch import Input, Refused, ingest_files
from reconcile.session import Session, trail_for
from reconcile.settings import Settings
from reconcile.store.db import Connection, fetch_dicts, transaction
from reconcile.watch import mailbox
from reconcile.watch.schedule import zone
from reconcile.watch.signals import Signal, apply_signal

_DATE_IN_NAME = re.compile(r"(20\d\d)-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])")


@dataclass(frozen=True)
class Watched:
    """An email monitor as the poll needs it."""

    name: str
    tz: str
    source: str | None
    mailbox: str
    subject: str | None
    sender: str | None
    uidvalidity: int | None
    last_uid: int
    since: datetime  # messages up to here are already counted (or predate the monitor)


def watched(conn: Connection, now: datetime) -> list[Watched]:
    """The monitors that hear email and are not paused at `now`."""
    rows = fetch_dicts(
        conn,
        "SELECT name, tz, source, mailbox, subject_pattern AS subject, sender, "
        "mail_uidvalidity AS uidvalidity, "
        "coalesce(mail_last_uid, 0) AS last_uid, "
        "greatest(created_at, coalesce(last_success_at, created_at)) AS since "
        "FROM monitors WHERE signal = 'email' AND (paused_at IS NULL OR paused_until <= ?) "
        "ORDER BY name",
        [now],
    )
    return [Watched(**row) for row in rows]


def fetch_all(settings: Settings, monitors: list[Watched]) -> list[tuple[Watched, Any]]:
    """Read each monitor's mailbox; a mailbox that cannot be read gives its error instead."""
    found: list[tuple[Watched, Any]] = []
    for monitor in monitors:
        config = settings.mailboxes.get(monitor.mailbox)
        if config is None:
            found.append((monitor, f"no mailbox {monitor.mailbox!r} in the settings"))
            continue
        try:
            fetched = mailbox.fetch(
                config,
                alias=monitor.mailbox,
                after_uid=monitor.last_uid,
                uidvalidity=monitor.uidvalidity,
                subject=monitor.subject,
                sender=monitor.sender,
            )
        except mailbox.MailboxError as exc:
            found.append((monitor, str(exc)))
            continue
        found.append((monitor, fetched))
    return found


def record(
    conn: Connection, settings: Settings, monitor: Watched, fetched: mailbox.Fetched, now: datetime
) -> list[dict[str, Any]]:
    """Ingest the reports and record the arrivals of new matching messages; advance the
    mailbox position. Returns what was recorded, per message."""
    recorded = []
    for message in fetched.messages:
        if message.arrived_at <= monitor.since:
            continue  # before the monitor existed, or already counted
        reports = [
            _ingest_report(conn, settings, monitor, message, a, now) for a in message.attachments
        ]
        with transaction(conn):
            apply_signal(
                conn,
                Signal(
                    monitor.name,
                    "success",
                    message.arrived_at,
                    message=f"email {message.subject!r} from {message.sender or 'unknown sender'}"
                    + "".join(f"\n{line}" for line in reports),
                    origin="email",
                    request_id=f"imap:{monitor.mailbox}:{fetched.uidvalidity}:{message.uid}",
                ),
            )
            _advance(conn, monitor.name, fetched.uidvalidity, message.uid)
        recorded.append(
            {"monitor": monitor.name, "arrived_at": message.arrived_at, "reports": reports}
        )
    _advance(conn, monitor.name, fetched.uidvalidity, fetched.last_uid)
    return recorded


def _advance(conn: Connection, name: str, uidvalidity: int, uid: int) -> None:
    conn.execute(
        "UPDATE monitors SET mail_uidvalidity = ?, mail_last_uid = ? WHERE name = ?",
        [uidvalidity, uid, name],
    )


def report_date(filename: str, arrived_at: datetime, tz: str) -> date:
    """The day a report is about: a date in its file name, else the day it arrived (local)."""
    found = _DATE_IN_NAME.search(filename)
    if found:
        try:
            return date(*map(int, found.groups()))
        except ValueError:
            pass
    return arrived_at.astimezone(zone(tz)).date()


def _ingest_report(
    conn: Connection,
    settings: Settings,
    monitor: Watched,
    message: mailbox.Message,
    attachment: mailbox.Attachment,
    now: datetime,
) -> str:
    """One CSV attachment as a failure report of the monitor's source; a line saying how."""
    if monitor.source is None:
        return f"{attachment.filename}: not ingested (the monitor has no --source)"
    safe = f"{monitor.mailbox}-uid{message.uid}-{_safe_name(attachment.filename)}"
    # Who brought the file: the mailbox (the actor ingested_by names), by mail, which message.
    trail = trail_for(
        settings, "mail", f"email:{monitor.mailbox}", mailbox=monitor.mailbox, uid=str(message.uid)
    )
    with tempfile.TemporaryDirectory(prefix="recon-mail-") as folder, audit.acting(trail):
        path = Path(folder) / safe
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(attachment.content)
        # Stored as the mailbox, the message and the attachment's own name, not the folder it
        # was staged in (its audit events name the attachment, as they would a file).
        name = f"imap:{monitor.mailbox}/uid{message.uid}/{_safe_name(attachment.filename)}"
        batch = ingest_files(
            Session(conn, settings, now, trail),
            [Input(path, name)],
            source=monitor.source,
            kind="report",
            report_date=report_date(attachment.filename, message.arrived_at, monitor.tz),
        )
    [result] = batch.files
    if isinstance(result, Refused):
        return f"{safe}: not ingested: {result.problem}"
    if result.already_ingested:
        return f"{safe}: report already ingested"
    return f"{safe}: report of {result.rows_loaded} failed transaction(s) ingested" + (
        f", {result.rows_quarantined} quarantined" if result.rows_quarantined else ""
    )


def _safe_name(filename: str) -> str:
    """The attachment's name as the sender gave it, reduced to a safe file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", Path(filename).name)[-100:] or "report.csv"
