"""Step 016 stores `attributes` with ZSTD (a wide file's several-KB objects checkpoint faster and
smaller): a store made before it keeps every row, in order, with the same values and types."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from reconcile.store import migrations
from reconcile.store.migrations import MIGRATIONS, migrate

STEP = "016_attributes_zstd"
ROWS = {
    "transactions": (
        "SELECT 's', 'R1', 'T' || i, i, 'GBP', 'PROCESSED', 'success', "
        "TIMESTAMPTZ '2026-11-24 01:00:00+00', DATE '2026-11-24', NULL, NULL, NULL, "
        "json_object('app_version', '1.4.' || (i % 3), 'memo', 'x' || i), 1, i + 1 "
        "FROM range(5000) r(i)"
    ),
    "expected_transactions": (
        "SELECT 's', 'R1', 'T' || i, i, 'GBP', DATE '2026-11-24', "
        "CASE WHEN i % 2 = 0 THEN json_object('memo', 'e' || i) END, 2, i + 1 "
        "FROM range(3000) r(i)"
    ),
}


def _compression(conn: duckdb.DuckDBPyConnection, table: str) -> str:
    [(sql,)] = conn.execute(
        "SELECT sql FROM duckdb_tables() WHERE table_name = ?", [table]
    ).fetchall()
    return sql


def test_a_store_made_before_the_step_keeps_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = [step for step in MIGRATIONS if step[0] != STEP]
    db = str(tmp_path / "s.duckdb")
    monkeypatch.setattr(migrations, "MIGRATIONS", before)
    with duckdb.connect(db) as conn:
        migrate(conn)
        for table, rows in ROWS.items():
            conn.execute(f"INSERT INTO {table} {rows}")
            assert "ZSTD" not in _compression(conn, table)
        kept = {t: conn.execute(f"SELECT * FROM {t}").fetchall() for t in ROWS}
        described = {t: conn.execute(f"DESCRIBE {t}").fetchall() for t in ROWS}
    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS)
    with duckdb.connect(db) as conn:
        assert migrate(conn) == [STEP]
        for table in ROWS:
            assert "attributes JSON USING COMPRESSION ZSTD" in _compression(conn, table)
            assert conn.execute(f"DESCRIBE {table}").fetchall() == described[table]
            assert conn.execute(f"SELECT * FROM {table}").fetchall() == kept[table]
        assert conn.execute(
            "SELECT count(DISTINCT attributes->>'app_version') FROM transactions"
        ).fetchall() == [(3,)]
        conn.execute("CHECKPOINT")
        assert conn.execute(
            "SELECT DISTINCT compression FROM pragma_storage_info('transactions') "
            "WHERE column_name = 'attributes' AND segment_type = 'JSON'"
        ).fetchall() == [("ZSTD",)]
    with duckdb.connect(db) as conn:  # reopened: the rows were written
        assert conn.execute("SELECT * FROM transactions").fetchall() == kept["transactions"]
        assert migrate(conn) == []
