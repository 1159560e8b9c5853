"""What the tests of sending the report share: a report built by hand (as the builder makes
them: title, text, HTML, short text, a CSV, an XLSX and a PNG), a real SMTP server on loopback
that checks a login and can refuse or stall the first messages, and sessions of the library on
a test's store."""

from __future__ import annotations

import asyncio
import hashlib
import io
import stat
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from reconcile.report.model import CSV_TYPE, PNG_TYPE, XLSX_TYPE, Attachment, Report
from reconcile.session import Session, open_session, trail_for
from reconcile.settings import load_settings

from .support import free_port

DAY = date(2026, 11, 20)
SMTP_USER = "reports"
SMTP_PASSWORD = "Sm7p-pa55-wOrd-x9"  # the secret of the mailto URL: must appear nowhere
FAILED = [
    ("T-1001", "2026-11-20", "42.10", "EUR", "declined"),
    ("T-1002", "2026-11-20", "7.00", "GBP", "missing"),
    ("T-1003", "2026-11-20", "120.55", "EUR", "amount_mismatch"),
]


def png(width: int = 12, height: int = 6) -> bytes:
    """A valid PNG image of the given size (grey)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    rows = b"".join(b"\x00" + b"\x80\x80\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def xlsx(rows: list[tuple[str, ...]]) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["txn_id", "business_date", "amount", "currency", "category"])
    for row in rows:
        sheet.append(list(row))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def make_report(
    day: date = DAY, source: str | None = None, status: str = "breaks", files: bool = True
) -> Report:
    """A report as the builder makes one: 3 failed transactions of `day`."""
    scope = source or "every source"
    suffix = f"-{source}" if source else ""
    csv = "txn_id,business_date,amount,currency,category\r\n" + "".join(
        ",".join(row) + "\r\n" for row in FAILED
    )
    attachments = (
        Attachment(f"failed-transactions-{day}{suffix}.csv", CSV_TYPE, csv.encode()),
        Attachment(f"failed-transactions-{day}{suffix}.xlsx", XLSX_TYPE, xlsx(FAILED)),
        Attachment(f"failed-transactions-{day}{suffix}-chart.png", PNG_TYPE, png()),
    )
    counts = "runs 2, rows loaded 1500, failed 3, missing 1, duplicated 0"
    return Report(
        business_date=day,
        source=source,
        status=status,
        title=f"[recon] Failed transactions {day} ({scope}): 3 failed",
        text=f"Failed transactions {day} ({scope})\n\n{counts}\n\nT-1001 declined 42.10 EUR",
        html=(
            f"<html><body><h1>Failed transactions {day} ({scope})</h1>"
            f"<p>{counts}</p><table><tr><td>T-1001</td><td>declined</td>"
            "<td>42.10 EUR</td></tr></table></body></html>"
        ),
        short=f"Failed transactions {day} ({scope}): {status}, 3 failed, 1 missing",
        attachments=attachments if files else (),
        facts={"failed": 3, "missing": 1},
    )


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@dataclass
class Smtp:
    """aiosmtpd on loopback with a login (SMTP_USER / SMTP_PASSWORD). It refuses the first
    `refuse_first` messages (451), or stalls on the first one until `release` is set (then
    refuses it: a message whose sender is gone is not delivered). `accepted` holds the raw
    messages it took; `attempts` counts every message offered; `spool` is what the temporary
    folder held while the first message was being sent (path -> mode)."""

    port: int
    refuse_first: int = 0
    stall_first: bool = False
    attempts: int = 0
    accepted: list[bytes] = field(default_factory=list)
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    watch_folder: Path | None = None
    spool: dict[str, int] = field(default_factory=dict)

    def url(self, password: str = SMTP_PASSWORD) -> str:
        return (
            f"mailto://{SMTP_USER}:{password}@127.0.0.1:{self.port}"
            "?from=recon@example.com&to=ops@example.com&mode=insecure"
        )


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    server = Smtp(free_port())

    def authenticator(
        _server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any
    ) -> AuthResult:
        good = isinstance(data, LoginPassword) and (data.login, data.password) == (
            SMTP_USER.encode(),
            SMTP_PASSWORD.encode(),
        )
        return AuthResult(success=good)

    class Handler:
        async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
            server.attempts += 1
            if server.watch_folder is not None and not server.spool:
                for path in server.watch_folder.rglob("*"):
                    server.spool[str(path.relative_to(server.watch_folder))] = stat.S_IMODE(
                        path.stat().st_mode
                    )
            if server.stall_first and server.attempts == 1:
                server.stalled.set()
                while not server.release.is_set():
                    await asyncio.sleep(0.05)
                return "451 4.3.0 the sender went away"
            if server.attempts <= server.refuse_first:
                return "451 4.3.0 try again later"
            server.accepted.append(envelope.content)
            return "250 OK"

    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=server.port,
        authenticator=authenticator,
        auth_require_tls=False,
    )
    controller.start()
    yield server
    server.release.set()
    controller.stop()


def config(**targets: tuple[str, list[str]]) -> str:
    """recon.toml with these notification targets (alias = (url, tags))."""
    text = ""
    for alias, (url, tags) in targets.items():
        text += f'[notify.targets.{alias}]\nurl = "{url}"\n'
        if tags:
            text += "tags = [" + ", ".join(f'"{t}"' for t in tags) + "]\n"
    return text


def sessions_of(
    config_file: Path, db: Path, now: datetime
) -> Callable[[], AbstractContextManager[Session]]:
    """Sessions of the library on the test's store and settings, at `now` (as `recon` opens
    them)."""
    settings = load_settings(str(config_file), db=str(db))
    trail = trail_for(settings, "cli")
    return lambda: open_session(settings, trail, now=now)
