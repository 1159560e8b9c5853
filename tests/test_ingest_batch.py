"""The ingest batch (`ingest.ingest_files`) in-process, on a real DuckDB file: what a batch of
files becomes (loaded, quarantined, refused, skipped, replaced), what the audit trail says of
each, what the runs' listeners hear, and the one table of ingest kinds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reconcile import audit, ingest
from reconcile.ingest import kinds
from reconcile.ingest.batch import Input, Refused
from reconcile.session import Session, open_session, trail_for
from reconcile.settings import Settings
from reconcile.store.db import Connection

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
GOOD = "txn_id,amount,status,run_id\nT1,10.00,OK,R1\nT2,abc,OK,R1\nT3,5.00,FAILED,R2\n"
NO_AMOUNT = "txn_id,status,run_id\nT1,OK,R1\n"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in [n for n in os.environ if n.startswith("RECON_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no recon.toml from elsewhere
    return Settings(db=tmp_path / "recon.duckdb", now=NOW, audit_key="test-audit-key-not-secret")


@pytest.fixture
def session(settings: Settings) -> Iterator[Session]:
    with open_session(settings, trail_for(settings, "cli", "tester")) as opened:
        yield opened


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def ingest_events(conn: Connection) -> list[dict[str, Any]]:
    return [
        {k: e[k] for k in ("actor", "action", "object", "outcome", "details")}
        for e in audit.events(conn, action="ingest")
    ]


def count(conn: Connection, sql: str) -> int:
    [(value,)] = conn.execute(sql).fetchall()
    return int(value)


def test_a_batch_loads_refuses_and_skips_each_file_and_audits_every_one(
    session: Session, tmp_path: Path
) -> None:
    good = write(tmp_path, "run.csv", GOOD)
    refused = write(tmp_path, "broken.csv", NO_AMOUNT)
    batch = ingest.ingest_files(
        session, [good, refused, good, tmp_path / "missing.csv"], source="pay"
    )

    assert [type(f).__name__ for f in batch.files] == [
        "FileResult",
        "Refused",
        "FileResult",
        "Refused",
    ]
    assert (len(batch.loaded), len(batch.skipped), len(batch.refused)) == (1, 1, 2)
    assert batch.quarantined  # T2's amount
    [loaded] = batch.loaded
    assert (loaded.rows_read, loaded.rows_loaded, loaded.rows_quarantined) == (3, 2, 1)
    assert loaded.rows_read == loaded.rows_loaded + loaded.rows_quarantined
    assert count(session.conn, "SELECT count(*) FROM transactions") == loaded.rows_loaded
    assert count(session.conn, "SELECT count(*) FROM quarantine") == loaded.rows_quarantined
    assert count(session.conn, "SELECT count(*) FROM ingested_files") == 1  # refused: nothing
    assert batch.refused[0].problem == (
        "missing required column(s): amount; columns found: txn_id, status, run_id"
    )
    assert batch.refused[0].hint.startswith("a processed file needs txn_id, amount, status")
    assert str(refused) in batch.refused[0].error and "nothing from this file" in (
        batch.refused[0].error
    )
    assert batch.refused[1].problem == "no such file"
    assert batch.as_json()["files"][1] == {
        "path": str(refused),
        "source": "pay",
        "kind": "processed",
        "error": batch.refused[0].error,
    }

    events = ingest_events(session.conn)
    assert [(e["object"], e["outcome"]) for e in events] == [
        ("pay:run.csv", "success"),
        ("pay:broken.csv", "failure"),
        ("pay:run.csv", "skipped"),
        ("pay:missing.csv", "failure"),
    ]
    assert {e["actor"] for e in events} == {"tester"}
    assert events[1]["details"] == {"problem": batch.refused[0].problem}
    assert events[2]["details"] == {"path": str(good), "sha256": loaded.sha256, "reason": "already"}
    assert events[0]["details"]["rows_loaded"] == 2


def test_rows_read_are_loaded_plus_quarantined_for_every_kind(
    session: Session, tmp_path: Path
) -> None:
    files = {
        "processed": "txn_id,amount,status,run_id\nT1,1.00,OK,R1\nT2,x,OK,R1\n",
        "expected": "txn_id,amount,run_id\nT1,1.00,R1\nT2,,R1\n",
        "totals": "run_id,expected_count,expected_amount\nR1,2,2.00\nR2,many,1.00\n",
        "report": "txn_id,amount,business_date\nT1,1.00,2026-11-23\nT2,1.00,someday\n",
    }
    assert set(files) == set(kinds.NAMES)
    for kind, text in files.items():
        batch = ingest.ingest_files(
            session, [write(tmp_path, f"{kind}.csv", text)], source="pay", kind=kind
        )
        [result] = batch.loaded
        assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (2, 1, 1), kind
        table = kinds.KINDS[kind].table
        assert count(session.conn, f"SELECT count(*) FROM {table} WHERE file_id IS NOT NULL") == 1
        quarantined = f"SELECT count(*) FROM quarantine WHERE kind = '{kind}'"
        assert count(session.conn, quarantined) == 1


def test_each_kind_fills_every_column_of_its_table(session: Session) -> None:
    """The one table of kinds: what each kind inserts matches its table, column for column."""
    for kind in kinds.KINDS.values():
        width = count(
            session.conn,
            f"SELECT count(*) FROM duckdb_columns() WHERE table_name = '{kind.table}'",
        )
        assert 1 + len(kind.insert.split(",")) == width, kind.name
        assert set(kind.required) <= set(kind.outputs) | {"status"}, kind.name
        assert kind.run_log == (kind.name == "processed")


def test_replace_counts_what_it_replaced_and_files_of_one_batch_keep_each_other(
    session: Session, tmp_path: Path
) -> None:
    first = write(tmp_path, "R1.csv", "txn_id,amount,status,run_id\nT1,1.00,OK,R1\nT2,x,OK,R1\n")
    ingest.ingest_files(session, [first], source="pay")
    fixed = write(
        tmp_path, "R1-fixed.csv", "txn_id,amount,status,run_id\nT1,1.00,OK,R1\nT2,2.00,OK,R1\n"
    )
    other = write(tmp_path, "R1-part2.csv", "txn_id,amount,status,run_id\nT3,3.00,OK,R1\n")
    batch = ingest.ingest_files(session, [fixed, other], source="pay", replace=True)

    assert [len(b) for b in (batch.loaded, batch.replaced, batch.refused)] == [2, 2, 0]
    replaced = batch.files[0].replaced  # type: ignore[union-attr]
    assert replaced is not None
    assert (replaced["rows"], replaced["quarantined"]) == (1, 1)
    assert [f["path"] for f in replaced["files"]] == [str(first)]
    second = batch.files[1].replaced  # type: ignore[union-attr]
    assert second is not None and second["rows"] == 0  # a run split over two files stays whole
    assert not batch.quarantined
    rows = session.conn.execute("SELECT txn_id FROM transactions ORDER BY txn_id").fetchall()
    assert rows == [("T1",), ("T2",), ("T3",)]
    assert count(session.conn, "SELECT count(*) FROM quarantine") == 0
    assert count(session.conn, "SELECT rows_loaded FROM runs WHERE run_id = 'R1'") == 3


def test_run_logs_are_told_to_on_runs_inside_their_transaction(
    session: Session, tmp_path: Path
) -> None:
    heard: list[tuple[str, list[str], str, str, int]] = []

    def on_runs(
        conn: Connection,
        source: str,
        run_ids: list[str],
        *,
        now: datetime,
        origin: str,
        what: str,
    ) -> None:
        assert now == NOW
        # Inside the file's transaction: its rows are visible, its record is written.
        loaded = count(conn, "SELECT count(*) FROM transactions")
        heard.append((source, run_ids, origin, what, loaded))

    log = write(tmp_path, "PL-1.csv", GOOD)
    ingest.ingest_files(session, [Input(log, "inbox/PL-1.csv")], source="pay", on_runs=on_runs)
    report = write(tmp_path, "report.csv", "txn_id,amount\nT1,1.00\n")
    ingest.ingest_files(session, [report], source="pay", kind="report", on_runs=on_runs)
    ingest.ingest_files(
        session, [write(tmp_path, "PL-2.csv", GOOD.replace("R", "S"))], source="pay"
    )

    assert heard == [("pay", ["R1", "R2"], "file", "PL-1.csv", 2)]  # not the report, nor PL-2
    stored = session.conn.execute("SELECT path FROM ingested_files ORDER BY file_id").fetchall()
    assert stored[0] == ("inbox/PL-1.csv",)  # the name it was given, not where it was read
    assert ingest_events(session.conn)[0]["object"] == "pay:PL-1.csv"


def test_a_refused_file_is_the_same_event_whoever_brings_it(
    settings: Settings, tmp_path: Path
) -> None:
    """The same refused file through three trails (as the CLI, the HTTP API and the mail
    watcher open them): one event each, equal but for actor and origin."""
    body = '{"txn_id": "T1", "status": "OK", "run_id": "R1"}\n'
    paths = {via: write(tmp_path / via, "pay-R1.jsonl", body) for via in ("cli", "http", "mail")}
    names = {"cli": None, "http": "api/pay-R1.jsonl", "mail": "imap:ops/uid7/pay-R1.jsonl"}
    kinds_by_via = {"cli": "processed", "http": "processed", "mail": "report"}
    for via, path in paths.items():
        with open_session(settings, trail_for(settings, via, f"{via}-actor")) as session:
            batch = ingest.ingest_files(
                session, [Input(path, names[via])], source="pay", kind=kinds_by_via[via]
            )
            assert isinstance(batch.files[0], Refused)
    with open_session(settings, trail_for(settings, "cli")) as session:
        events = audit.events(session.conn, action="ingest")
    assert [e["origin"]["via"] for e in events] == ["cli", "http", "mail"]
    assert [e["actor"] for e in events] == ["cli-actor", "http-actor", "mail-actor"]
    same = [{k: e[k] for k in ("action", "object", "outcome", "details")} for e in events]
    assert same == [same[0]] * 3
    assert same[0] == {
        "action": "ingest",
        "object": "pay:pay-R1.jsonl",
        "outcome": "failure",
        "details": {
            "problem": "missing required column(s): amount; columns found: run_id, status, txn_id"
        },
    }
