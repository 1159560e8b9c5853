"""`recon bisect` calls a shift only when the two sides' proportions differ significantly
(Fisher's exact test, p < 0.01) with at least three runs on each side: a couple of runs with a
failure or two more is noise, and exits 0."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from reconcile.reconciliation.bisect import fisher_exact

from .conftest import Recon

pytestmark = pytest.mark.in_process


def load_runs(recon: Recon, tmp_path: Path, runs: list[tuple[int, int]]) -> None:
    """One run per day: (rows, failed rows)."""
    start = date(2026, 11, 2)
    for number, (rows, failed) in enumerate(runs):
        day = start + timedelta(days=number)
        lines = [
            f"T{number}-{n},1.00,{'FAILED' if n < failed else 'OK'},R{number}" for n in range(rows)
        ]
        path = tmp_path / f"R{number}.csv"
        path.write_text("txn_id,amount,status,run_id\n" + "\n".join(lines) + "\n")
        done = recon("ingest", "--source", "pay", path, env={"RECON_NOW": f"{day}T22:00:00Z"})
        assert done.code == 0, done.stderr


def test_a_failure_or_two_more_in_the_last_two_runs_is_no_shift(
    recon: Recon, tmp_path: Path
) -> None:
    # Steady at one failure a run, then 2 of 22 twice: 6 of 100 against 4 of 44.
    steady = [(17, 1), (17, 1), (16, 1), (17, 1), (17, 1), (16, 1)]
    load_runs(recon, tmp_path, [*steady, (22, 2), (22, 2)])
    found = recon("bisect", "--source", "pay")
    assert found.code == 0, found.stderr
    assert "no significant shift in failure_rate" in found.stderr
    assert "<- shift" not in found.stdout
    shown = recon("--json", "bisect", "--source", "pay")
    assert shown.code == 0
    answer = shown.json()
    assert answer["significant"] is False and answer["p_value"] >= 0.01
    # The best split leaves at least three runs on each side.
    after = [p["run_id"] for p in answer["series"] if p["n"] >= answer["run"]["n"]]
    assert len(after) >= 3 and answer["run"]["n"] - 1 >= 3


def test_a_real_shift_over_three_runs_is_found_with_its_evidence(
    recon: Recon, tmp_path: Path
) -> None:
    load_runs(recon, tmp_path, [(50, 1)] * 5 + [(50, 8)] * 3)
    found = recon("bisect", "--source", "pay")
    assert found.code == 3, found.stderr
    assert "failure_rate shifted at run R5" in found.stderr
    assert "5 of 250 before, 24 of 150 from it on; Fisher's exact test p = " in found.stderr
    answer = recon("--json", "bisect", "--source", "pay").json()
    assert answer["counts"] == {"before": [5, 250], "after": [24, 150]}
    assert answer["p_value"] < 0.01


def test_too_few_runs_on_each_side_is_said_so(recon: Recon, tmp_path: Path) -> None:
    load_runs(recon, tmp_path, [(20, 1)] * 3 + [(20, 10)] * 2)
    found = recon("bisect", "--source", "pay")
    assert found.code == 1 and "at least 6 are needed" in found.stderr


def test_fisher_exact_matches_the_textbook_values() -> None:
    # Fisher's tea-tasting table (3 of 4 against 1 of 4): two-sided p = 34/70.
    assert fisher_exact(3, 4, 1, 4) == pytest.approx(34 / 70)
    assert fisher_exact(4, 44, 3, 50) == pytest.approx(0.702019093890755)
    assert fisher_exact(0, 10, 0, 10) == 1.0
    assert fisher_exact(10, 10, 0, 10) == pytest.approx(2 / 184756)
