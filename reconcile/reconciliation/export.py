"""Exports as use cases: the finance export of a scope, and the access record every export of
stored (masked) transaction data leaves in the audit trail.

What the files hold is `workbook.py`'s; how they are written (private, whole or not at all,
amounts exact) is `reconcile.formats`'. Here: refresh the scope first, write, then give each
file its final mode and record its SHA-256, all in the caller's one session.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconcile import __version__, formats
from reconcile.errors import MemoryLimitError
from reconcile.reconciliation import workbook
from reconcile.reconciliation.refresh import Outcome, refresh
from reconcile.reconciliation.scope import Scope
from reconcile.session import Session
from reconcile.store.db import sql_literal

FORMATS = workbook.FORMATS

# An export written here (xlsx, csv) holds the writer and the rows in flight beside the engine:
# the engine gets this share of the process's `memory_limit` meanwhile and spills the rest (the
# scope's classification, the sorted breaks and their joins), so the export as a whole stays
# near the limit. At 1.1M break rows and the 1GB default, the whole engine limit took the
# process to 1.1 GB. Parquet is written by the engine alone and keeps the whole limit.
WRITER_ENGINE_SHARE = 0.5
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def memory_bytes(limit: str) -> int:
    """A `memory_limit` setting ("1GB", "512 MiB") in bytes, as DuckDB reads it."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*", limit, re.IGNORECASE)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not an amount of memory: {limit!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


@contextmanager
def _engine_share(session: Session, share: float) -> Iterator[None]:
    """The session's engine limited to `share` of the `memory_limit` setting meanwhile (the
    connection was opened with that setting, and gets it back)."""
    limit = session.settings.memory_limit
    if share >= 1:
        yield
        return
    session.conn.execute(f"SET memory_limit = '{int(memory_bytes(limit) * share)}B'")
    try:
        yield
    finally:
        session.conn.execute(f"SET memory_limit = {sql_literal(limit)}")


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


def _refresh_within(session: Session, scope: Scope, share: float) -> Outcome:
    """`refresh` within the engine's `share` of the limit; a scope too large for it even on
    one thread (the refresh stores nothing then) is refreshed again with the whole limit, as
    it would have been without the share: slower, never refused for the share's sake."""
    try:
        with _engine_share(session, share):
            return refresh(session, scope)
    except MemoryLimitError:
        if share >= 1:
            raise
    return refresh(session, scope)


def finance(session: Session, scope: Scope, fmt: str, out: Path) -> Exported:
    """The finance export of `scope` (refreshed first) to `out`: an .xlsx file, or a folder of
    csv or parquet files; the access recorded with each file's SHA-256."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    share = 1.0 if fmt == "parquet" else WRITER_ENGINE_SHARE
    outcome = _refresh_within(session, scope, share)
    with _engine_share(session, share):
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
