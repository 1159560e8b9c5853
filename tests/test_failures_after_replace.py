# ruff: noqa: F811  (pytest fixtures imported from test_failures_unchanged)
"""refresh_stored's fingerprint: inputs changed without a new business
fact (a run log replaced by the same bytes; a manifest replaced by one that drops a record)
must still make the failure list classify again."""

from __future__ import annotations

from pathlib import Path

from reconcile.ingest import files as ingest_files
from reconcile.reconciliation import refresh
from reconcile.reconciliation.scope import Scope

from .test_failures_unchanged import (  # noqa: F401  (fixtures)
    BEFORE,
    DAY,
    LOG,
    MANIFEST,
    SOURCE,
    Opener,
    classified,
    listed,
    opener,
    story,
    unchanged_twice,
)
from .test_reconciliation_session import write_csv


def _current(opener: Opener) -> None:
    """The invariant: after the list, a full reconciliation of its day changes nothing."""
    with opener() as session:
        outcome = refresh.refresh(session, Scope.parse(day=DAY))
    changes = (outcome.runs_changed, outcome.days_changed)
    assert (*changes, outcome.breaks_opened, outcome.breaks_resolved) == (0, 0, 0, 0)


def _replace(opener: Opener, path: Path, kind: str) -> None:
    with opener() as session:
        ingest_files.ingest_file(
            session.conn,
            path,
            source=SOURCE,
            config=session.settings.source(SOURCE),
            kind=kind,
            now=session.now,
            user="test",
            pan_key=session.settings.pan_key_bytes(),
            replace=True,
        )


def test_a_run_log_replaced_by_the_same_bytes_is_classified(
    opener: Opener, story: Path, classified: list[Scope]
) -> None:
    unchanged_twice(opener, classified)
    calls = len(classified)
    _replace(opener, story / "log-2.csv", "processed")
    listed(opener)
    assert len(classified) == calls + 1  # a new file id: a new version, classified
    _current(opener)


def test_a_run_log_replaced_by_a_corrected_one_is_classified(
    opener: Opener, story: Path, classified: list[Scope]
) -> None:
    unchanged_twice(opener, classified)
    corrected = story / "log-2.csv"
    write_csv(corrected, LOG, [["T4", "R1", "40.00", "EUR", "OK", f"{DAY}T11:00:00Z", DAY]])
    _replace(opener, corrected, "processed")
    calls = len(classified)
    listed(opener)
    assert len(classified) == calls + 1
    _current(opener)


def test_a_manifest_replaced_is_classified(
    opener: Opener, story: Path, classified: list[Scope]
) -> None:
    unchanged_twice(opener, classified)
    manifest = story / "manifest.csv"
    write_csv(manifest, MANIFEST, [[f"T{i}", f"{i}0.00", "EUR", DAY, "R1"] for i in (1, 2, 3)])
    _replace(opener, manifest, "expected")
    calls = len(classified)
    listed(opener)
    assert len(classified) == calls + 1
    _current(opener)
