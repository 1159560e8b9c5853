"""What a built report is: the texts each kind of target receives and the files it carries.

Built once (`build.build`), then stored with its sends and delivered through the alert outbox
(`send`): the same object whatever the target, so what is sent is what was recorded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from typing import Any

# The report's overall state, and the alert kind (so the notification type) it is sent as:
# chat tools colour balanced green, breaks amber, and a source whose monitor is down red.
STATUSES = ("balanced", "breaks", "down", "pending")
ALERT_KINDS = {
    "balanced": "report_balanced",
    "breaks": "report_breaks",
    "down": "report_down",
    "pending": "report_pending",
}

CSV_TYPE = "text/csv"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PNG_TYPE = "image/png"


@dataclass(frozen=True)
class Attachment:
    """One file the report carries: its name as the recipient sees it, its media type, bytes."""

    name: str
    media_type: str
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    def describe(self) -> dict[str, Any]:
        """As stored with a send and printed by `--json`: never the bytes."""
        return {
            "name": self.name,
            "media_type": self.media_type,
            "bytes": len(self.content),
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class Report:
    """The report of one business date for one scope (a source, or every source: None).

    `text` and `html` are the full report (email: HTML with a plain-text part); `short` is the
    few lines a chat target gets (counts, and a link when a base URL is configured). `facts`
    is what the texts were made from, for `--json` and the tests."""

    business_date: date
    source: str | None
    status: str  # one of STATUSES
    title: str
    text: str
    html: str
    short: str
    attachments: tuple[Attachment, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def scope(self) -> str:
        """The source scope as stored with a send: the source's name, or '*' for all."""
        return self.source or "*"

    @property
    def alert_kind(self) -> str:
        return ALERT_KINDS[self.status]
