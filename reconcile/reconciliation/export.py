"""Exports as use cases: the finance export of a scope, and the access record every export of
stored (masked) transaction data leaves in the audit trail.

What the files hold is `workbook.py`'s; how they are written (private, whole or not at all,
amounts exact) is `reconcile.formats`'. Here: refresh the scope first, write, then give each
file its final mode and record its SHA-256, all in the caller's one session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconcile import __version__, formats
from reconcile.reconciliation import workbook
from reconcile.reconciliation.refresh import Outcome, refresh
from reconcile.reconciliation.scope import Scope
from reconcile.session import Session

FORMATS = workbook.FORMATS


def record_access(
    session: Session, action: str, target: str, paths: Sequence[Path], details: dict[str, Any]
) -> dict[str, str | None]:
    """Reading stored (masked) transaction data is an access: record what was written where,
    with the SHA-256 of each file (given its final mode, `export_mode`, first), once the files
    are complete. Returns path -> SHA-256 ({"stdout": None} when no file was written)."""
    mode = int(session.settings.export_mode, 8)  # private (0600) unless export_mode shares them
    written: dict[str, str | None] = {
        str(path): formats.seal_output(path, mode) for path in paths if path.is_file()
    }
    written = written or {"stdout": None}
    session.record_alone(action, target, details={**details, "written": written})
    return written


@dataclass
class Exported:
    """What `finance` wrote, and the reconciliation it was written from."""

    written: workbook.Written
    outcome: Outcome

    @property
    def scope(self) -> Scope:
        return self.outcome.scope


def finance(session: Session, scope: Scope, fmt: str, out: Path) -> Exported:
    """The finance export of `scope` (refreshed first) to `out`: an .xlsx file, or a folder of
    csv or parquet files; the access recorded with each file's SHA-256."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    outcome = refresh(session, scope)
    written = workbook.write(
        session.conn,
        outcome.scope,
        fmt,
        out,
        generated_at=session.now,
        product_version=__version__,
        inputs_sha256=outcome.inputs_sha256,
    )
    record_access(
        session,
        "export",
        outcome.scope.text,
        written.paths,
        {"format": fmt, "days": written.days, "runs": written.runs, "breaks": written.breaks},
    )
    return Exported(written, outcome)
