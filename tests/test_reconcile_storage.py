"""Issue 14: what a reconciliation stores, and the store's bounded memory.

Plain matches (compare.PLAIN_SQL) are not stored; `latest_record_results` gives them back from
their manifest rows, so that every record reads as before. Each connection gets a memory limit
and spills to a private folder beside the database, removed when empty.
"""

from __future__ import annotations

import gc
import stat
from datetime import date
from pathlib import Path

from reconcile.reconciliation import failures, refresh
from reconcile.reconciliation.scope import Scope
from reconcile.session import Session
from reconcile.store import db

from . import support
from . import test_reconciliation_session as sessions
from .test_reconcile import make_story, oracle, write_story
from .test_reconciliation_session import LOG, MANIFEST, load, write_csv

opener = sessions.opener  # the fixtures of an in-process session on a fresh store
session = sessions.session


def test_only_records_that_are_not_plain_matches_are_stored(
    session: Session, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    write_csv(
        folder / "m.csv",
        MANIFEST,
        [
            ["A", "1.00", "GBP", "2026-11-12", "R1"],  # plain: stored by the view alone
            ["B", "2.00", "GBP", "2026-11-12", "R1"],  # succeeds on retry: a note, stored
            ["C", "3.00", "GBP", "2026-11-12", "R1"],  # missing: a break, stored
        ],
    )
    write_csv(
        folder / "l.csv",
        LOG,
        [
            ["A", "R1", "1.00", "GBP", "PROCESSED", "2026-11-12T01:00:00", "2026-11-12"],
            ["B", "R1", "2.00", "GBP", "FAILED", "2026-11-12T01:00:00", "2026-11-12"],
            ["B", "R1", "2.00", "GBP", "PROCESSED", "2026-11-12T02:00:00", "2026-11-12"],
        ],
    )
    load(session, folder / "m.csv", kind="expected")
    load(session, folder / "l.csv")
    refresh.refresh(session, Scope())
    conn = session.conn
    stored = conn.execute("SELECT txn_id FROM record_results ORDER BY txn_id").fetchall()
    assert stored == [("B",), ("C",)]
    view = conn.execute(
        "SELECT txn_id, category, is_expected, expected_amount, processed_amount, "
        "processed_total, currency, attempts, successes, failures, note, break_id "
        "FROM latest_record_results ORDER BY txn_id"
    ).fetchall()
    assert [row[:2] for row in view] == [("A", "matched"), ("B", "matched"), ("C", "missing")]
    a = view[0]
    assert a[2:] == (True, a[3], a[3], a[3], "GBP", 1, 1, 0, "", None)
    assert str(a[3]) == "1.0000"
    # A list of matched records still holds the plain ones.
    day = date(2026, 11, 12)
    listed = failures.list_failures(conn, day, day, categories=["matched"], now=session.now)
    assert [row["txn_id"] for row in listed] == ["A", "B"]


def test_the_view_gives_every_record_the_oracle_expects(session: Session, tmp_path: Path) -> None:
    story = make_story(5)
    manifests, logs = write_story(story, tmp_path / "in")
    for path in manifests:
        load(session, path, kind="expected")
    for path in logs:
        load(session, path)
    refresh.refresh(session, Scope())
    rows = session.conn.execute(
        "SELECT run_id, txn_id, category FROM latest_record_results"
    ).fetchall()
    assert {(run, txn): category for run, txn, category in rows} == oracle(story)
    [(stored,)] = session.conn.execute("SELECT count(*) FROM record_results").fetchall()
    assert stored < len(rows)


def test_a_connection_has_a_memory_limit_and_a_private_spill_folder(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    conn = db.open_connection(path, 1.0, "256MB")
    folder = db.temp_folder(path)
    [(limit, temp)] = conn.execute(
        "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
    ).fetchall()
    assert limit.replace(" ", "") in ("256.0MiB", "244.1MiB", "256MB") and temp == str(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    conn.close()
    del conn
    gc.collect()
    assert not folder.exists()  # removed once empty


def test_the_engine_draws_no_progress_bar_of_its_own(tmp_path: Path) -> None:
    """A long query (a 10M-record daily job) must not write DuckDB's bar into a job's log."""
    conn = db.open_connection(tmp_path / "s.duckdb", 1.0)
    try:
        [(enabled,)] = conn.execute("SELECT current_setting('enable_progress_bar')").fetchall()
        assert enabled is False
    finally:
        db.close_connection(conn)


def test_work_on_one_thread_gives_the_setting_back(tmp_path: Path) -> None:
    """The reconcile that ran past memory_limit runs again on one thread; after it, the
    connection has the threads it had (a long-lived server connection keeps its speed)."""
    conn = db.open_connection(tmp_path / "s.duckdb", 1.0)
    try:
        conn.execute("SET threads = 2")
        with db.single_threaded(conn):
            [(inside,)] = conn.execute("SELECT current_setting('threads')").fetchall()
        [(after,)] = conn.execute("SELECT current_setting('threads')").fetchall()
        assert (int(inside), int(after)) == (1, 2)
    finally:
        db.close_connection(conn)


def test_a_reconcile_past_memory_limit_says_which_setting_and_stores_nothing(
    tmp_path: Path,
) -> None:
    """Past memory_limit, even on one thread, the command fails with the setting to raise,
    not as a bug, and no reconciliation is half-stored: the next one, with room, is number 1."""
    story = support.SAMPLE / "payments-loader"
    env = support.recon_env(tmp_path / "r.duckdb", RECON_CONFIG=str(support.SAMPLE / "recon.toml"))
    for args in (
        ["--kind", "expected", *sorted((story / "expected").iterdir())],
        sorted((story / "runs").iterdir()),
    ):
        loaded = support.run_recon(
            ["ingest", "--source", "payments-loader", *args], env=env, cwd=tmp_path
        )
        assert loaded.code in (0, 3), loaded.stderr
    tight = support.run_recon(["reconcile"], env={**env, "RECON_MEMORY_LIMIT": "8MB"}, cwd=tmp_path)
    assert tight.code == 1, tight.stderr
    assert "RECON_MEMORY_LIMIT" in tight.stderr and "nothing was stored" in tight.stderr
    assert "bug" not in tight.stderr
    roomy = support.run_recon(["reconcile"], env=env, cwd=tmp_path)
    assert roomy.code == 3 and "reconciliation 1:" in roomy.stderr, roomy.stderr
