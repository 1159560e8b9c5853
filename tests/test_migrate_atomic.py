"""A new store's schema is made in one transaction: a step that fails (a crash part way) leaves
no half-made schema, and the next open makes the whole schema."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from reconcile.store import migrations
from reconcile.store.migrations import MIGRATIONS, applied, migrate


def _tables(conn: duckdb.DuckDBPyConnection) -> list[tuple[str]]:
    return conn.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()


def test_a_step_that_fails_leaves_no_half_made_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(conn: duckdb.DuckDBPyConnection) -> None:
        raise RuntimeError("crash part way")

    failing = [*MIGRATIONS[:5], ("005_crash", crash), *MIGRATIONS[5:]]
    monkeypatch.setattr(migrations, "MIGRATIONS", failing)
    with duckdb.connect(str(tmp_path / "s.duckdb")) as conn:
        with pytest.raises(RuntimeError, match="crash part way"):
            migrate(conn)
        assert _tables(conn) == []
    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS)
    with duckdb.connect(str(tmp_path / "s.duckdb")) as conn:
        assert migrate(conn) == [name for name, _ in MIGRATIONS]
        assert applied(conn) == [name for name, _ in MIGRATIONS]
        assert migrate(conn) == []


def test_only_the_missing_steps_run(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "s.duckdb")) as conn:
        migrate(conn)
        last = MIGRATIONS[-1][0]
        conn.execute("DELETE FROM schema_migrations WHERE name = ?", [last])
        assert migrate(conn) == [last]
        assert applied(conn) == [name for name, _ in MIGRATIONS]
