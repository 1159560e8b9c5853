"""The reconciliation use cases in-process: one session on a real DuckDB file, no subprocess.

`refresh(session, scope)` (the "reconcile first" rule, tolerances from the settings, `last`
resolved), the one `Scope` (parsed, described, serialised), the "latest result version" views,
and the reading use cases (failures, the finance export, bisect, the break register), each
checked as a user would: the categories against an independent oracle, the files written and
the access recorded in the same session.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from reconcile.ingest import files as ingest
from reconcile.reconciliation import bisect, breaks, compare, export, failures, refresh
from reconcile.reconciliation.scope import Scope, ScopeError
from reconcile.session import Session, open_session, trail_for
from reconcile.settings import load_settings
from reconcile.store.db import fetch_dicts

from .test_reconcile import SOURCE, make_story, oracle, write_story

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
OPTIONS = {"date": "--date", "since": "--since", "until": "--until"}

Opener = Callable[[], AbstractContextManager[Session]]


@pytest.fixture
def opener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Opener:
    """Opens a session on the test's store, as a command would (one `now`, one trail)."""
    for name in [n for n in os.environ if n.startswith("RECON_")]:
        monkeypatch.delenv(name)
    config = tmp_path / "recon.toml"
    config.write_text(
        '[sources.tol]\namount_tolerance = "0.05"\n[sources.pay]\ntimezone = "UTC"\n',
        encoding="utf-8",
    )
    settings = load_settings(config, db=str(tmp_path / "recon.duckdb"), audit_key="test-key")

    def open_one() -> AbstractContextManager[Session]:
        return open_session(settings, trail_for(settings, "cli"), now=NOW)

    return open_one


@pytest.fixture
def session(opener: Opener) -> Iterator[Session]:
    with opener() as one:
        yield one


def load(session: Session, path: Path, source: str = SOURCE, kind: str = "processed") -> None:
    ingest.ingest_file(
        session.conn,
        path,
        source=source,
        config=session.settings.source(source),
        kind=kind,
        now=session.now,
        user="test",
        pan_key=session.settings.pan_key_bytes(),
    )


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


MANIFEST = ["txn_id", "amount", "currency", "business_date", "run_id"]
LOG = ["txn_id", "run_id", "amount", "currency", "status", "processed_at", "business_date"]


def events(session: Session, action: str) -> list[dict[str, Any]]:
    return fetch_dicts(
        session.conn,
        "SELECT actor, object, details FROM audit_events WHERE action = ? ORDER BY seq",
        [action],
    )


# -- the combinatorial category cases, in-process -------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_refresh_and_the_failure_list_agree_with_an_independent_oracle(
    session: Session, tmp_path: Path, seed: int
) -> None:
    story = make_story(seed)
    manifests, logs = write_story(story, tmp_path / "in")
    for path in manifests:
        load(session, path, kind="expected")
    for path in logs:
        load(session, path)
    truth = oracle(story)

    outcome = refresh.refresh(session, Scope())
    assert outcome.needs_attention  # every story has breaks
    for run in outcome.runs:
        for category in compare.CATEGORIES:
            expected = sum(1 for (r, _), c in truth.items() if r == run["run_id"] and c == category)
            assert run[category] == expected, (run["run_id"], category)

    # Every break category, over every day of the story, as `recon failures --category all`.
    listing = failures.list_for(
        session, Scope.parse(since="2026-07-01", until="2026-07-31"), list(compare.BREAK_CATEGORIES)
    )
    assert listing is not None
    listed = {(row["run_id"], row["txn_id"]): row["category"] for row in listing.rows}
    assert listed == {key: c for key, c in truth.items() if c in compare.BREAK_CATEGORIES}
    # One category alone lists exactly its records.
    only = failures.list_for(session, Scope.parse(day="last"), ["missing"])
    assert only is not None and only.scope.since == only.scope.until == max(story.days.values())
    last_run = max(story.days, key=lambda run: story.days[run])
    assert {(r["run_id"], r["txn_id"]) for r in only.rows} == {
        key for key, c in truth.items() if c == "missing" and key[0] == last_run
    }


# -- the scope ------------------------------------------------------------------------------


def test_a_scope_parses_what_a_person_gives() -> None:
    day = date(2026, 11, 13)
    assert Scope.parse(day="2026-11-13", source="pay") == Scope("pay", since=day, until=day)
    assert Scope.parse(day="last") == Scope(last=True)
    assert Scope.parse() == Scope()  # everything
    assert Scope.parse(default_last=True) == Scope(last=True)  # `recon failures`: the latest
    assert Scope.parse(since="2026-11-09") == Scope(since=date(2026, 11, 9), until=date.max)
    assert Scope.parse(until="2026-11-09", run_id="R1") == Scope(
        run_id="R1", since=date.min, until=date(2026, 11, 9)
    )


@pytest.mark.parametrize(
    ("given", "param", "plain", "worded"),
    [
        (
            {"day": "2026-11-13", "since": "2026-11-01"},
            None,
            "give either a date or since/until, not both",
            "give either --date or --since/--until, not both",
        ),
        (
            {"since": "2026-11-13", "until": "2026-11-09"},
            None,
            "since 2026-11-13 is after until 2026-11-09: swap them",
            "--since 2026-11-13 is after --until 2026-11-09: swap them",
        ),
        (
            {"day": "13/11/2026"},
            "date",
            "expected a date as YYYY-MM-DD, got '13/11/2026'",
            "expected a date as YYYY-MM-DD, got '13/11/2026'",
        ),
        ({"until": "soon"}, "until", "expected a date as YYYY-MM-DD, got 'soon'", None),
    ],
)
def test_a_scope_that_cannot_be_says_why_in_the_words_of_the_face(
    given: dict[str, Any], param: str | None, plain: str, worded: str | None
) -> None:
    with pytest.raises(ScopeError) as caught:
        Scope.parse(**given)
    assert caught.value.param == param
    assert str(caught.value) == plain  # the library names no flag
    if worded:
        assert caught.value.text(OPTIONS) == worded


def test_a_scope_describes_and_serialises_itself() -> None:
    day = Scope("pay", since=date(2026, 11, 13), until=date(2026, 11, 13))
    week = Scope(since=date(2026, 11, 9), until=date(2026, 11, 13))
    run = Scope("pay", run_id="R1")
    assert [day.text, week.text, run.text, Scope().text] == [
        "pay:2026-11-13..2026-11-13",
        "2026-11-09..2026-11-13",
        "pay:R1",
        "all",
    ]
    assert [day.days, week.days] == ["2026-11-13", "2026-11-09 to 2026-11-13"]
    assert day.describe() == "source pay, business dates 2026-11-13 to 2026-11-13"
    assert run.describe() == "source pay, run R1" and Scope().describe() == "everything"
    assert week.to_json() == {
        "source": None,
        "run_id": None,
        "since": "2026-11-09",
        "until": "2026-11-13",
    }
    for scope in (day, week, run, Scope()):
        assert Scope.from_json(json.loads(json.dumps(scope.to_json()))) == scope


# -- `--date last` and the "reconcile first" rule -------------------------------------------


def two_sources(session: Session, folder: Path) -> None:
    """pay: runs on 11-12 and 11-13; tol: one run on 11-10, 1 cent off its manifest."""
    write_csv(
        folder / "pay-manifest.csv",
        MANIFEST,
        [["P1", "10.00", "GBP", "2026-11-12", "R1"], ["P2", "20.00", "GBP", "2026-11-13", "R2"]],
    )
    write_csv(
        folder / "pay-log.csv",
        LOG,
        [
            ["P1", "R1", "10.00", "GBP", "PROCESSED", "2026-11-12T01:00:00", "2026-11-12"],
            ["P2", "R2", "20.00", "GBP", "FAILED", "2026-11-13T01:00:00", "2026-11-13"],
        ],
    )
    write_csv(folder / "tol-manifest.csv", MANIFEST, [["T1", "5.00", "EUR", "2026-11-10", "T"]])
    write_csv(
        folder / "tol-log.csv",
        LOG,
        [["T1", "T", "5.01", "EUR", "PROCESSED", "2026-11-10T01:00:00", "2026-11-10"]],
    )
    load(session, folder / "pay-manifest.csv", "pay", "expected")
    load(session, folder / "pay-log.csv", "pay")
    load(session, folder / "tol-manifest.csv", "tol", "expected")
    load(session, folder / "tol-log.csv", "tol")


def test_last_is_the_latest_business_date_loaded_of_the_source_asked(
    session: Session, tmp_path: Path
) -> None:
    assert Scope(last=True).resolve(session.conn) is None  # nothing loaded yet
    empty = refresh.refresh(session, Scope(last=True))  # every date, which is none
    assert empty.runs == [] and empty.scope == Scope()
    two_sources(session, tmp_path / "in")
    assert Scope(last=True).resolve(session.conn) == Scope(
        since=date(2026, 11, 13), until=date(2026, 11, 13)
    )
    assert Scope("tol", last=True).resolve(session.conn) == Scope(
        "tol", since=date(2026, 11, 10), until=date(2026, 11, 10)
    )
    outcome = refresh.refresh(session, Scope("pay", last=True))
    assert [r["run_id"] for r in outcome.runs] == ["R2"]
    assert outcome.scope.text == "pay:2026-11-13..2026-11-13"


def test_refresh_uses_each_sources_tolerance_and_records_who_and_what(
    session: Session, tmp_path: Path
) -> None:
    two_sources(session, tmp_path / "in")
    first = refresh.refresh(session, Scope())
    runs = {r["run_id"]: r for r in first.runs}
    assert runs["T"]["matched"] == 1  # 0.01 off, within tol's 0.05
    assert runs["R2"]["failed"] == 1 and runs["R1"]["status"] == "balanced"
    again = refresh.refresh(session, Scope())  # unchanged inputs: nothing new is stored
    assert (again.runs_changed, again.days_changed) == (0, 0)
    assert again.inputs_sha256 == first.inputs_sha256
    recorded = events(session, "reconcile")
    assert [(e["actor"], e["object"]) for e in recorded] == [(session.actor, "all")] * 2
    stored = fetch_dicts(session.conn, "SELECT reconciled_by, scope FROM reconciliations")
    assert stored[0]["reconciled_by"] == session.actor
    assert json.loads(stored[0]["scope"]) == Scope().to_json()


# -- "latest result version": one set of views ---------------------------------------------


def test_the_views_hold_the_latest_version_as_every_former_query_did(
    session: Session, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    write_csv(
        folder / "m.csv",
        MANIFEST,
        [["A", "1.00", "GBP", "2026-11-12", "R1"], ["B", "2.00", "GBP", "2026-11-12", "R1"]],
    )
    write_csv(
        folder / "l1.csv",
        LOG,
        [["A", "R1", "1.00", "GBP", "PROCESSED", "2026-11-12T01:00:00", "2026-11-12"]],
    )
    load(session, folder / "m.csv", kind="expected")
    load(session, folder / "l1.csv")
    refresh.refresh(session, Scope())
    write_csv(  # B arrives late: a second version of R1 and of its day
        folder / "l2.csv",
        LOG,
        [["B", "R1", "2.00", "GBP", "PROCESSED", "2026-11-12T02:00:00", "2026-11-12"]],
    )
    load(session, folder / "l2.csv")
    late = refresh.refresh(session, Scope())
    assert late.runs_changed == 1 and late.days[0]["version"] == 2

    def rows(sql: str) -> list[tuple[Any, ...]]:
        return sorted(session.conn.execute(sql).fetchall())

    view = rows("SELECT source, run_id, version, missing FROM latest_run_results")
    assert view == [("pay", "R1", 2, 0)]
    # The five former spellings of "latest", each giving what the view gives.
    assert view == rows(
        "SELECT source, run_id, version, missing FROM run_results JOIN (SELECT source, run_id, "
        "max(version) AS version FROM run_results GROUP BY ALL) USING (source, run_id, version)"
    )
    assert view == rows(
        "SELECT source, run_id, version, missing FROM run_results QUALIFY row_number() OVER "
        "(PARTITION BY source, run_id ORDER BY version DESC) = 1"
    )
    assert view == rows(
        "SELECT source, run_id, max(version), arg_max(missing, version) FROM run_results "
        "GROUP BY ALL"
    )
    days = rows("SELECT source, business_date, version, matched FROM latest_day_results")
    assert days == [("pay", date(2026, 11, 12), 2, 2)]
    assert refresh.latest_days(session.conn, "pay", date(2026, 11, 12))[0]["version"] == 2
    records = rows("SELECT run_id, txn_id, version, category FROM latest_record_results")
    assert records == [("R1", "A", 2, "matched"), ("R1", "B", 2, "matched")]
    # Version 1 is kept, not shown (plain matches are not stored, issue 14: its missing B).
    assert rows("SELECT version, txn_id, category FROM record_results") == [(1, "B", "missing")]
    assert refresh.history(session.conn, source=None, run_id="R1", day=None)[0]["missing"] == 1


# -- the reading use cases: one session, the access recorded in it --------------------------


def test_the_failure_list_is_written_and_its_access_recorded_in_the_same_session(
    opener: Opener, tmp_path: Path
) -> None:
    with opener() as session:
        two_sources(session, tmp_path / "in")
        out = tmp_path / "failed.csv"
        listing = failures.list_for(
            session, Scope.parse(source="pay"), ["failed"], fmt="csv", output=out
        )
        # Recorded by this session's connection, before it closes: no second store session.
        recorded = events(session, "failures.list")
    assert listing is not None and listing.scope.days == "2026-11-13"
    assert [(r["txn_id"], r["category"]) for r in listing.rows] == [("P2", "failed")]
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert listing.written == {str(out): digest}
    assert len(recorded) == 1 and recorded[0]["object"] == "pay:2026-11-13"
    details = json.loads(recorded[0]["details"])
    assert details["written"] == {str(out): digest} and details["rows"] == 1
    assert out.read_text().splitlines()[1].startswith("P2,R2,2026-11-13,20.00,GBP,failed")
    assert out.stat().st_mode & 0o777 == 0o600


def test_nothing_loaded_lists_nothing_and_records_no_access(session: Session) -> None:
    assert failures.list_for(session, Scope.parse(default_last=True), ["failed"]) is None
    assert events(session, "failures.list") == [] and events(session, "reconcile") == []


def test_the_finance_export_refreshes_writes_and_records_in_one_session(
    session: Session, tmp_path: Path
) -> None:
    two_sources(session, tmp_path / "in")
    out = tmp_path / "export"
    exported = export.finance(session, Scope.parse(day="last", source="pay"), "csv", out)
    assert exported.scope.text == "pay:2026-11-13..2026-11-13"
    assert (exported.written.days, exported.written.runs, exported.written.breaks) == (1, 1, 1)
    assert [e["object"] for e in events(session, "reconcile")] == [exported.scope.text]
    recorded = events(session, "export")
    assert [e["object"] for e in recorded] == [exported.scope.text]
    written = json.loads(recorded[0]["details"])["written"]
    assert sorted(Path(p).name for p in written) == [
        "breaks.csv",
        "currencies.csv",
        "days.csv",
        "files.csv",
        "runs.csv",
        "totals.csv",
    ]
    for path, digest in written.items():
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest


def test_bisect_counts_reconciled_metrics_on_current_results(
    session: Session, tmp_path: Path
) -> None:
    story = make_story(7, runs=2 * bisect.MIN_SIDE)  # enough runs for a split
    manifests, logs = write_story(story, tmp_path / "in")
    for path in manifests:
        load(session, path, kind="expected")
    for path in logs:
        load(session, path)
    # Never reconciled: `examine` refreshes first, so every run has its count of missing.
    shift = bisect.examine(session, SOURCE, "missing")
    assert shift is not None
    truth = oracle(story)
    assert {p["run_id"]: p["value"] for p in shift.series} == {
        run: float(sum(1 for (r, _), c in truth.items() if r == run and c == "missing"))
        for run in story.manifests
    }


def test_the_break_register_resolves_last_without_reconciling(
    session: Session, tmp_path: Path
) -> None:
    two_sources(session, tmp_path / "in")
    assert breaks.listing(session, Scope(last=True)) == []  # not reconciled yet: no breaks
    refresh.refresh(session, Scope())
    latest = breaks.listing(session, Scope("pay", last=True), categories=["failed"])
    assert [(b["txn_id"], b["business_date"]) for b in latest] == [("P2", date(2026, 11, 13))]
    assert [b["txn_id"] for b in breaks.listing(session, Scope(), status="all")] == ["P2"]
