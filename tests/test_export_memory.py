"""An export written in Python (xlsx, csv) gives the engine half the process's memory_limit
while it runs (the writer holds the rest), and the session gets its whole limit back after."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconcile.errors import DatabaseError, MemoryLimitError
from reconcile.reconciliation import export
from reconcile.reconciliation.scope import Scope
from reconcile.session import open_session, trail_for
from reconcile.settings import load_settings

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def test_memory_amounts_read_as_duckdb_reads_them() -> None:
    assert export.memory_bytes("1GB") == 10**9
    assert export.memory_bytes("512 MiB") == 512 * 2**20
    assert export.memory_bytes("1.5gb") == 15 * 10**8
    assert export.memory_bytes("4GiB") == 4 * 2**30
    with pytest.raises(ValueError):
        export.memory_bytes("lots")


@pytest.mark.parametrize(("fmt", "share"), [("xlsx", 0.5), ("csv", 0.5), ("parquet", 1.0)])
def test_the_engine_gets_its_share_while_exporting_and_the_whole_limit_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, share: float
) -> None:
    for name in [n for n in os.environ if n.startswith("RECON_")]:
        monkeypatch.delenv(name)
    settings = load_settings(None, db=str(tmp_path / "recon.duckdb"), memory_limit="800MB")
    seen: list[str] = []
    write = export.workbook.write

    def spying(conn, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(conn.execute("SELECT current_setting('memory_limit')").fetchone()[0])
        return write(conn, *args, **kwargs)

    monkeypatch.setattr(export.workbook, "write", spying)
    with open_session(settings, trail_for(settings, "cli"), now=NOW) as session:
        limit = "SELECT current_setting('memory_limit')"
        whole = session.conn.execute(limit).fetchone()[0]
        out = tmp_path / ("out.xlsx" if fmt == "xlsx" else "out")
        export.finance(session, Scope(None), fmt, out)
        assert session.conn.execute(limit).fetchone()[0] == whole
        session.conn.execute(f"SET memory_limit = '{int(800e6 * share)}B'")
        assert seen == [session.conn.execute(limit).fetchone()[0]]


def test_a_scope_too_large_for_the_share_is_refreshed_with_the_whole_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("RECON_")]:
        monkeypatch.delenv(name)
    settings = load_settings(None, db=str(tmp_path / "recon.duckdb"), memory_limit="800MB")
    limits: list[str] = []
    refresh = export.refresh

    def too_large_for_the_share(session, scope):  # type: ignore[no-untyped-def]
        limit = "SELECT current_setting('memory_limit')"
        limits.append(session.conn.execute(limit).fetchone()[0])
        if len(limits) == 1:
            raise MemoryLimitError("reconciling needs more memory than memory_limit allows")
        return refresh(session, scope)

    monkeypatch.setattr(export, "refresh", too_large_for_the_share)
    with open_session(settings, trail_for(settings, "cli"), now=NOW) as session:
        whole = session.conn.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        exported = export.finance(session, Scope(None), "csv", tmp_path / "out")
    assert limits[1] == whole != limits[0]
    assert exported.written.paths


def test_another_database_error_is_not_retried_with_the_whole_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("RECON_")]:
        monkeypatch.delenv(name)
    settings = load_settings(None, db=str(tmp_path / "recon.duckdb"), memory_limit="800MB")
    calls: list[int] = []

    def broken(session, scope):  # type: ignore[no-untyped-def]
        calls.append(1)
        raise DatabaseError("the store is damaged")

    monkeypatch.setattr(export, "refresh", broken)
    with open_session(settings, trail_for(settings, "cli"), now=NOW) as session:
        whole = session.conn.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        with pytest.raises(DatabaseError, match="damaged"):
            export.finance(session, Scope(None), "csv", tmp_path / "out")
        after = session.conn.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert calls == [1]  # refused once, not tried again
    assert after == whole  # and the whole limit is back
