"""The failure list reconciles its scope first, but classifies its records again only when
something it reads changed (issue 14): a new file, a forgotten one, a changed tolerance, new
control totals. Each test below fails if the list skipped a classification it needed; the
first pins that a skipped classification records what one that changed nothing records."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reconcile.ingest import expected, forget
from reconcile.reconciliation import compare, failures, fingerprint, refresh
from reconcile.reconciliation.scope import Scope
from reconcile.session import Session, open_session, trail_for
from reconcile.settings import load_settings
from reconcile.store.db import fetch_dicts

from .test_reconciliation_session import LOG, MANIFEST, load, write_csv

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
DAY = "2026-11-23"
SOURCE = "pay"

Opener = Callable[[], AbstractContextManager[Session]]


@pytest.fixture
def opener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Opener:
    """Opens a session as a command would, reading recon.toml each time (so a test can edit it)."""
    for name in [n for n in os.environ if n.startswith("RECON_")]:
        monkeypatch.delenv(name)
    (tmp_path / "recon.toml").write_text(f"[sources.{SOURCE}]\ntimezone = 'UTC'\n")

    def open_one() -> AbstractContextManager[Session]:
        settings = load_settings(
            tmp_path / "recon.toml", db=str(tmp_path / "recon.duckdb"), audit_key="test-key"
        )
        return open_session(settings, trail_for(settings, "cli"), now=NOW)

    return open_one


@pytest.fixture
def classified(monkeypatch: pytest.MonkeyPatch) -> list[Scope]:
    """The scopes `compare.classify` was called with."""
    calls: list[Scope] = []
    real = compare.classify

    def counting(conn: Any, scope: Scope, tolerances: Any) -> None:
        calls.append(scope)
        real(conn, scope, tolerances)

    monkeypatch.setattr(compare, "classify", counting)
    return calls


@pytest.fixture
def story(opener: Opener, tmp_path: Path) -> Iterator[Path]:
    """One run of one day: T1 matched, T2 failed, T3 processed 0.03 off, T4 in a second log
    (failed)."""
    folder = tmp_path / "in"
    manifest = write_csv(
        folder / "manifest.csv",
        MANIFEST,
        [[f"T{i}", f"{i}0.00", "EUR", DAY, "R1"] for i in (1, 2, 3, 4)],
    )
    first = write_csv(
        folder / "log-1.csv",
        LOG,
        [
            ["T1", "R1", "10.00", "EUR", "OK", f"{DAY}T10:00:00Z", DAY],
            ["T2", "R1", "20.00", "EUR", "FAILED", f"{DAY}T10:01:00Z", DAY],
            ["T3", "R1", "30.03", "EUR", "OK", f"{DAY}T10:02:00Z", DAY],
        ],
    )
    second = write_csv(
        folder / "log-2.csv", LOG, [["T4", "R1", "40.00", "EUR", "FAILED", f"{DAY}T11:00:00Z", DAY]]
    )
    with opener() as session:
        for path, kind in ((manifest, "expected"), (first, "processed"), (second, "processed")):
            load(session, path, source=SOURCE, kind=kind)
    yield folder


def listed(opener: Opener) -> dict[str, str]:
    """`recon failures --date last --category all`: txn_id -> category."""
    with opener() as session:
        listing = failures.list_for(
            session, Scope.parse(day="last"), list(compare.BREAK_CATEGORIES)
        )
    assert listing is not None
    return {row["txn_id"]: row["category"] for row in listing.rows}


BEFORE = {"T2": "failed", "T3": "amount_mismatch", "T4": "failed"}


def unchanged_twice(opener: Opener, classified: list[Scope]) -> None:
    """The list as loaded; asked again, its records are not classified again."""
    assert listed(opener) == BEFORE
    calls = len(classified)
    assert calls >= 1
    assert listed(opener) == BEFORE
    assert len(classified) == calls  # nothing changed: no classification


def test_a_skipped_classification_records_what_one_that_changed_nothing_records(
    opener: Opener, story: Path, classified: list[Scope]
) -> None:
    unchanged_twice(opener, classified)
    with opener() as session:
        # The same scope reconciled in full: it changes nothing.
        day = Scope.parse(day=DAY)
        outcome = refresh.refresh(session, day)
        assert (outcome.runs_changed, outcome.days_changed) == (0, 0)
        assert (outcome.breaks_opened, outcome.breaks_resolved) == (0, 0)
    calls = len(classified)
    assert listed(opener) == BEFORE  # skipped
    assert len(classified) == calls
    with opener() as session:
        rows = fetch_dicts(session.conn, "SELECT * FROM reconciliations ORDER BY reconciliation_id")
        events = fetch_dicts(
            session.conn,
            "SELECT object, outcome, details FROM audit_events WHERE action = 'reconcile' "
            "ORDER BY seq",
        )
    # One row and one event per reconciliation, skipped or not.
    assert len(rows) == len(events) == 4
    full, skipped = rows[-2], rows[-1]
    assert skipped["reconciliation_id"] == full["reconciliation_id"] + 1
    for row in (full, skipped):
        row.pop("reconciliation_id")
    assert skipped == full
    full_event, skipped_event = events[-2], events[-1]
    full_details, skipped_details = (json.loads(e.pop("details")) for e in events[-2:])
    assert skipped_details.pop("reconciliation_id") == full_details.pop("reconciliation_id") + 1
    assert skipped_details == full_details
    assert skipped_event == full_event


def test_a_new_file_is_classified(opener: Opener, story: Path, classified: list[Scope]) -> None:
    unchanged_twice(opener, classified)
    retry = write_csv(
        story / "log-3.csv", LOG, [["T2", "R1", "20.00", "EUR", "OK", f"{DAY}T12:00:00Z", DAY]]
    )
    with opener() as session:
        load(session, retry, source=SOURCE)
    assert listed(opener) == {"T3": "amount_mismatch", "T4": "failed"}


def test_a_changed_tolerance_is_classified(
    opener: Opener, story: Path, classified: list[Scope], tmp_path: Path
) -> None:
    unchanged_twice(opener, classified)
    (tmp_path / "recon.toml").write_text(
        f"[sources.{SOURCE}]\ntimezone = 'UTC'\namount_tolerance = '0.05'\n"
    )
    assert listed(opener) == {"T2": "failed", "T4": "failed"}


def test_a_forgotten_file_is_classified(
    opener: Opener, story: Path, classified: list[Scope]
) -> None:
    unchanged_twice(opener, classified)
    with opener() as session:
        forget.forget(session, str(story / "log-2.csv"))
    assert listed(opener) == {"T2": "failed", "T3": "amount_mismatch", "T4": "missing"}


def test_new_control_totals_are_classified(
    opener: Opener, story: Path, classified: list[Scope]
) -> None:
    unchanged_twice(opener, classified)
    with opener() as session:
        expected.record_control_totals(session, source=SOURCE, run_id="R1", count=5, amount=None)
    calls = len(classified)
    assert listed(opener) == BEFORE
    assert len(classified) == calls + 1
    with opener() as session:
        [run] = fetch_dicts(
            session.conn, "SELECT has_totals, expected_count, version FROM latest_run_results"
        )
    assert run == {"has_totals": True, "expected_count": 5, "version": 2}


def test_another_scope_reconciled_since_is_classified(
    opener: Opener, story: Path, classified: list[Scope]
) -> None:
    """Results stored by another scope's reconciliation (here a run of the next day that
    processes T2 successfully, resolving its break) make the list classify again."""
    unchanged_twice(opener, classified)
    later = write_csv(
        story / "log-next.csv",
        LOG,
        [["T2", "R2", "20.00", "EUR", "OK", "2026-11-24T08:00:00Z", "2026-11-24"]],
    )
    with opener() as session:
        load(session, later, source=SOURCE)
        refresh.refresh(session, Scope.parse(day="2026-11-24"))
        state = fingerprint.stored(
            session.conn, fingerprint.key(session.conn, Scope.parse(day=DAY))
        )
        assert state is not None
    calls = len(classified)
    with opener() as session:
        listing = failures.list_for(
            session, Scope.parse(day=DAY), list(compare.BREAK_CATEGORIES), status="open"
        )
    assert listing is not None and len(classified) == calls + 1
    assert {row["txn_id"] for row in listing.rows} == {"T3", "T4"}  # T2's break resolved


def test_the_daily_jobs_reconciliation_serves_the_list_of_its_one_source(
    opener: Opener, story: Path, classified: list[Scope], tmp_path: Path
) -> None:
    """The daily job reconciles its source's days; the list (every source) of one of them,
    while the store knows that source only, is the same scope."""
    with opener() as session:
        refresh.refresh(session, Scope.parse(day=DAY, source=SOURCE))
    assert len(classified) == 1
    assert listed(opener) == BEFORE
    assert len(classified) == 1
    # With a second source in the store, the list's scope is its own.
    (tmp_path / "recon.toml").write_text(
        f"[sources.{SOURCE}]\ntimezone = 'UTC'\n[sources.other]\ntimezone = 'UTC'\n"
    )
    other = write_csv(
        story / "other.csv", LOG, [["X1", "O1", "1.00", "EUR", "FAILED", f"{DAY}T10:00:00Z", DAY]]
    )
    with opener() as session:
        load(session, other, source="other")
        refresh.refresh(session, Scope.parse(day=DAY, source=SOURCE))
    assert len(classified) == 2
    assert listed(opener) == {**BEFORE, "X1": "failed"}
    assert len(classified) == 3
