"""What a report carries through the alert outbox beyond an alert's title and text.

A report is an alert of a `report_*` kind (`notify.NewAlert` with `html`, `short` and `files`):
its plain text is the alert's body; `alert_bodies` keeps the HTML body email targets get and
the short text every other target gets; `alert_attachments` keeps the files (email targets
only), so that a retry by `recon watch` sends the same bytes the send recorded. Once every
delivery of a report is delivered its files are dropped (their SHA-256 stay in `report_sends`).

When a delivery of a report is confirmed, the monitors that hear reports of its scope get a
success signal (`delivered`), in the transaction of the confirmation: whoever delivered it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from reconcile.store.db import Connection
from reconcile.watch.signals import Signal, apply_signal


@dataclass(frozen=True)
class File:
    """A file a report carries: the name its recipient sees, its media type, its bytes."""

    name: str
    media_type: str
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class Parts:
    """A report's bodies, and its files when loaded (None: this claim's target gets none)."""

    html: str
    short: str
    files: tuple[File, ...] | None


def store(conn: Connection, alert_id: str, html: str, short: str, files: tuple[File, ...]) -> None:
    """Keep a report's bodies and files with its alert (inside the caller's transaction)."""
    conn.execute("INSERT INTO alert_bodies VALUES (?, ?, ?)", [alert_id, html, short])
    for position, item in enumerate(files):
        conn.execute(
            "INSERT INTO alert_attachments VALUES (?, ?, ?, ?, ?, ?)",
            [alert_id, position, item.name, item.media_type, item.sha256, item.content],
        )


def load(
    conn: Connection, alert_ids: Collection[str], with_files: Collection[str]
) -> dict[str, Parts]:
    """The parts of the reports among `alert_ids` (an alert that is no report has none); the
    files only of the alerts in `with_files`."""
    if not alert_ids:
        return {}
    bodies = conn.execute(
        "SELECT alert_id, html, short FROM alert_bodies WHERE list_contains(?, alert_id)",
        [sorted(alert_ids)],
    ).fetchall()
    wanted = sorted(set(with_files) & {row[0] for row in bodies})
    files: dict[str, list[File]] = {alert_id: [] for alert_id in wanted}
    if wanted:
        for alert_id, name, media_type, content in conn.execute(
            "SELECT alert_id, name, media_type, content FROM alert_attachments "
            "WHERE list_contains(?, alert_id) ORDER BY alert_id, position",
            [wanted],
        ).fetchall():
            files[alert_id].append(File(name, media_type, bytes(content)))
    return {
        alert_id: Parts(html, short, tuple(files[alert_id]) if alert_id in files else None)
        for alert_id, html, short in bodies
    }


def safe_name(name: str) -> str:
    """A file name that stays one file in a folder: no folder part, no control characters,
    not hidden, not empty."""
    base = re.split(r"[\\/]", name)[-1]
    base = re.sub(r"[\x00-\x1f\x7f]", "_", base).strip().lstrip(".")
    return base[:200] or "attachment"


@contextlib.contextmanager
def written(files: tuple[File, ...]) -> Iterator[list[tuple[Path, File]]]:
    """The files written to a private temporary folder (0700, each file 0600) for the sending
    library to read, under their own names; the folder is removed afterwards, whatever
    happened."""
    if not files:
        yield []
        return
    with tempfile.TemporaryDirectory(prefix="recon-report-") as folder:
        os.chmod(folder, 0o700)
        paths: list[tuple[Path, File]] = []
        used: set[str] = set()
        for number, item in enumerate(files, start=1):
            name = safe_name(item.name)
            if name in used:  # two files of one name: the second in a folder of its own
                sub = Path(folder) / str(number)
                sub.mkdir(mode=0o700)
                path = sub / name
            else:
                path = Path(folder) / name
            used.add(name)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(item.content)
            paths.append((path, item))
        yield paths


def delivered(conn: Connection, alert_id: str, target: str, now: datetime) -> list[dict[str, Any]]:
    """A delivery of `alert_id` to `target` was just confirmed (inside `confirm`'s
    transaction): when it is a report, each monitor that hears reports of its scope (its
    source; a monitor with no source: the every-source report '*') gets a success signal, and
    once every delivery of the report is done its files are dropped. Returns the signals."""
    sent = conn.execute(
        "SELECT business_date, scope FROM report_sends WHERE alert_id = ? LIMIT 1", [alert_id]
    ).fetchone()
    if sent is None:
        return []
    day, scope = sent
    conn.execute(
        "DELETE FROM alert_attachments WHERE alert_id = $id AND NOT EXISTS "
        "(SELECT 1 FROM deliveries WHERE alert_id = $id AND status <> 'delivered' "
        "AND target <> '(no target)')",
        {"id": alert_id},
    )
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM monitors WHERE signal = 'report' AND coalesce(source, '*') = ? "
            "ORDER BY name",
            [scope],
        ).fetchall()
    ]
    message = f"report {day.isoformat()} ({scope}) delivered to {target}"
    return [
        apply_signal(conn, Signal(name, "success", now, message=message, origin="report"))
        for name in names
    ]
