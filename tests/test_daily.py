"""`recon daily`: the day's manifests, control totals and run logs, then the days they touched
reconciled, in one process. The store it builds from the sample story is the one the three
separate commands build (runs, day results, failure lists, audit events); its exit codes are
the ingest's and the reconcile's; running it again changes nothing; a file it cannot read
leaves nothing half-written and nothing reconciled on part of the day's inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from .conftest import SAMPLE, Recon

SOURCE = "payments-loader"
BASE = SAMPLE / SOURCE
MANIFESTS = sorted((BASE / "expected").iterdir())
TOTALS = BASE / "control_totals.csv"
RUN_LOGS = sorted((BASE / "runs").iterdir())
DAILY_FILES = (
    *(arg for path in MANIFESTS for arg in ("--expected", str(path))),
    "--totals",
    str(TOTALS),
    *map(str, RUN_LOGS),
)


def sample_recon(workdir: Path) -> Recon:
    """A fresh store for the sample story, read on the Monday after its last run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env |= {
        "RECON_DB": str(workdir / "recon.duckdb"),
        "RECON_CONFIG": str(SAMPLE / "recon.toml"),
        "RECON_NOW": "2026-11-16T08:00:00+00:00",
        "RECON_PAN_KEY": "test-only-key",
        "RECON_AUDIT_KEY": "test-audit-key-not-a-secret",
        "RECON_LOCK_TIMEOUT": "5s",
    }
    recon = Recon(workdir=workdir, db=workdir / "recon.duckdb", env=env)
    assert recon("init").code == 0
    return recon


@pytest.fixture(scope="module")
def separate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recon, dict[str, Any]]:
    """The sample story loaded by the three commands of the daily job, then reconciled."""
    recon = sample_recon(tmp_path_factory.mktemp("separate"))
    for kind, files in [("expected", MANIFESTS), ("totals", [TOTALS]), ("processed", RUN_LOGS)]:
        result = recon("--json", "ingest", "--source", SOURCE, "--kind", kind, *files)
        assert result.code in (0, 3), result.stderr
    reconciled = recon("--json", "reconcile")
    assert reconciled.code == 3, reconciled.stderr
    return recon, reconciled.json()


@pytest.fixture(scope="module")
def daily(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recon, dict[str, Any]]:
    """The sample story loaded and reconciled by one `recon daily`."""
    recon = sample_recon(tmp_path_factory.mktemp("daily"))
    result = recon("--json", "daily", "--source", SOURCE, *DAILY_FILES)
    assert result.code == 3, result.stderr  # quarantined rows, and breaks
    return recon, result.json()


def test_daily_loads_what_the_three_commands_load(separate: Any, daily: Any) -> None:
    (alone, _), (together, out) = separate, daily
    runs = together("--json", "runs")
    assert runs.code == 0
    assert runs.json() == alone("--json", "runs").json()
    assert len(runs.json()["runs"]) == len(RUN_LOGS)
    assert [f["kind"] for f in out["files"]] == (
        ["expected"] * len(MANIFESTS) + ["totals"] + ["processed"] * len(RUN_LOGS)
    )
    assert not any(f["already_ingested"] for f in out["files"])
    quarantine = together("--json", "quarantine", "--limit", "0").json()
    assert quarantine == alone("--json", "quarantine", "--limit", "0").json()


def test_daily_reconciles_the_days_it_loaded_as_recon_reconcile_does(
    separate: Any, daily: Any
) -> None:
    (_, reconciled), (_, out) = separate, daily
    assert out["scope"] == {
        "source": SOURCE,
        "run_id": None,
        "since": "2026-10-26",
        "until": "2026-11-13",
    }
    mine = out["reconciliation"]
    assert [(d["business_date"], d["status"]) for d in mine["days"]] == [
        (d["business_date"], d["status"]) for d in reconciled["days"]
    ]
    assert mine["days"] == reconciled["days"]
    assert mine["runs"] == reconciled["runs"]
    for count in ("runs_changed", "days_changed"):
        assert mine[count] == reconciled[count] == len(RUN_LOGS)


@pytest.mark.parametrize(
    "args",
    [
        ("failures", "--date", "last"),
        ("failures", "--since", "2026-10-26", "--until", "2026-11-13", "--category", "all"),
        ("--json", "failures", "--since", "2026-10-26", "--category", "all", "--status", "all"),
    ],
)
def test_the_failure_lists_are_the_same(separate: Any, daily: Any, args: tuple[str, ...]) -> None:
    (alone, _), (together, _) = separate, daily
    mine, theirs = together(*args), alone(*args)
    assert (mine.code, mine.stdout) == (theirs.code, theirs.stdout)
    assert mine.stdout.strip()


def _events(recon: Recon) -> list[tuple[str, str, str, dict[str, Any]]]:
    rows = recon.query(
        "SELECT action, object, outcome, details FROM audit_events "
        "WHERE action IN ('ingest', 'reconcile') ORDER BY seq"
    )
    events = [(a, o, outcome, json.loads(d)) for a, o, outcome, d in rows]
    # Up to the first reconciliation (reading commands reconcile their scope again later).
    return events[: [e[0] for e in events].index("reconcile") + 1]


def test_every_file_and_the_reconciliation_are_audited_as_when_run_separately(
    separate: Any, daily: Any
) -> None:
    (alone, _), (together, _) = separate, daily
    mine, theirs = _events(together), _events(alone)
    assert [e[0] for e in mine] == ["ingest"] * (len(MANIFESTS) + 1 + len(RUN_LOGS)) + ["reconcile"]
    assert mine[:-1] == theirs[:-1]  # each file: the same event
    # The reconciliation: the same findings; its object is its scope (the days loaded here,
    # everything there), and the inputs' digest covers that scope's reconciliations.
    (_, scope, outcome, details), (_, everything, their_outcome, their_details) = (
        mine[-1],
        theirs[-1],
    )
    assert (scope, everything) == (f"{SOURCE}:2026-10-26..2026-11-13", "all")
    assert outcome == their_outcome == "success"
    same = ("runs_changed", "days_changed", "breaks_opened", "breaks_resolved", "runs_withdrawn")
    assert {k: details[k] for k in same} == {k: their_details[k] for k in same}
    verified = together("audit", "verify")
    assert verified.code == 0, verified.stderr


def test_running_it_again_skips_every_file_and_changes_nothing(daily: Any) -> None:
    recon, _ = daily
    again = recon("daily", "--source", SOURCE, *DAILY_FILES)
    assert again.code == 3, again.stderr  # the breaks are still there
    lines = again.stderr.splitlines()
    skipped = [line for line in lines if line.startswith("skipped ")]
    assert len(skipped) == len(MANIFESTS) + 1 + len(RUN_LOGS)
    assert not any(line.startswith("loaded ") for line in lines)
    assert "no change since the last reconciliation (inputs unchanged)" in again.stderr
    assert "breaks opened 0, resolved 0" in again.stderr
    assert "2026-11-13" in again.stdout  # the day table, as `recon reconcile` prints it
    # Folders stand for the files in them: the same files, by name, all skipped.
    folders = ("--expected", BASE / "expected", "--totals", TOTALS, BASE / "runs")
    as_json = recon("--json", "daily", "--source", SOURCE, *folders).json()
    assert [f["path"] for f in as_json["files"]] == [
        str(p) for p in (*MANIFESTS, TOTALS, *RUN_LOGS)
    ]
    assert all(f["already_ingested"] for f in as_json["files"])
    assert as_json["reconciliation"]["runs_changed"] == 0
    assert as_json["reconciliation"]["days_changed"] == 0
    skips = recon.query(
        "SELECT count(*) FROM audit_events WHERE action = 'ingest' AND outcome = 'skipped'"
    )
    assert skips == [(2 * (len(MANIFESTS) + 1 + len(RUN_LOGS)),)]


def test_one_new_day_reconciles_only_that_day(tmp_path: Path) -> None:
    recon = sample_recon(tmp_path)
    first = recon(
        "--json", "daily", "--source", SOURCE, "--expected", MANIFESTS[0], "--totals", TOTALS,
        RUN_LOGS[0],
    )  # fmt: skip
    assert first.code == 3, first.stderr
    assert first.json()["scope"]["since"] == first.json()["scope"]["until"] == "2026-10-26"
    second = recon("--json", "daily", "--source", SOURCE, "--expected", MANIFESTS[1], RUN_LOGS[1])
    assert second.code == 3, second.stderr
    days = second.json()["reconciliation"]["days"]
    assert [d["business_date"] for d in days] == ["2026-10-27"]
    [run] = second.json()["reconciliation"]["runs"]
    assert run["has_totals"] and run["has_manifest"]  # the totals loaded the day before


@pytest.fixture
def balanced(recon: Recon, write_file: Any) -> tuple[Path, Path]:
    manifest = write_file(
        "expected.csv",
        "run_id,txn_id,amount,currency,business_date\n"
        "R1,T1,10.00,GBP,2026-11-23\nR1,T2,5.50,GBP,2026-11-23\n",
    )
    log = write_file(
        "run.csv",
        "run_id,txn_id,amount,currency,status,business_date\n"
        "R1,T1,10.00,GBP,PROCESSED,2026-11-23\nR1,T2,5.50,GBP,PROCESSED,2026-11-23\n",
    )
    assert recon("init").code == 0
    return manifest, log


def test_a_balanced_day_exits_0(recon: Recon, balanced: tuple[Path, Path]) -> None:
    manifest, log = balanced
    result = recon("daily", "--source", "src", "--expected", manifest, log)
    assert result.code == 0, result.stderr
    assert result.stderr.splitlines()[0].startswith(f"loaded {manifest} (expected, csv)")
    assert "all balanced" in result.stderr
    assert recon("daily", "--source", "src", "--expected", manifest, log).code == 0


def test_a_file_it_cannot_read_leaves_nothing_half_written_and_nothing_reconciled(
    recon: Recon, balanced: tuple[Path, Path], write_file: Any
) -> None:
    manifest, log = balanced
    broken = write_file("broken.csv", "txn_id,amount\nT9,1.00\n")  # a run log needs status
    result = recon("daily", "--source", "src", "--expected", manifest, log, broken)
    assert result.code == 1
    assert f"error: {broken}" in result.stderr or "error:" in result.stderr
    assert "status" in result.stderr
    assert "not reconciled" in result.stderr
    assert recon.query("SELECT count(*) FROM reconciliations") == [(0,)]
    assert recon.query("SELECT count(*) FROM transactions WHERE txn_id = 'T9'") == [(0,)]
    assert recon.query("SELECT count(*) FROM quarantine") == [(0,)]
    refused = recon.query(
        "SELECT count(*) FROM audit_events WHERE action = 'ingest' AND outcome = 'failure'"
    )
    assert refused == [(1,)]
    # The others loaded; the same job without the bad file skips them and reconciles the day.
    fixed = recon("daily", "--source", "src", "--expected", manifest, log)
    assert fixed.code == 0, fixed.stderr
    assert fixed.stderr.count("skipped ") == 2
    assert recon.query("SELECT count(*) FROM reconciliations") == [(1,)]


def test_it_creates_the_store_where_there_is_none_as_recon_ingest_does(
    recon: Recon, write_file: Any
) -> None:
    log = write_file(
        "run.csv", "run_id,txn_id,amount,status,business_date\nR1,T1,1.00,OK,2026-11-23\n"
    )
    assert not recon.db.exists()
    result = recon("daily", "--source", "src", log)
    assert result.code == 0, result.stderr  # no manifest: judged on its log alone
    assert recon.query("SELECT count(*) FROM transactions") == [(1,)]


def test_a_missing_file_is_an_error(recon: Recon, balanced: tuple[Path, Path]) -> None:
    manifest, _ = balanced
    result = recon("daily", "--source", "src", "--expected", manifest, recon.workdir / "nope.csv")
    assert result.code == 1
    assert "nope.csv" in result.stderr and "not reconciled" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("daily", "--source", "src"),  # no file
        ("daily", "--source", "src", "--bogus", "x.csv"),
        ("daily", "--source", "src", "--date", "26/10/2026", "x.csv"),
    ],
)
def test_usage_errors_exit_2(recon: Recon, args: tuple[str, ...]) -> None:
    result = recon(*args)
    assert result.code == 2, result.stderr
    assert "Traceback" not in result.stderr


def test_help_exits_0(recon: Recon) -> None:
    result = recon("daily", "--help")
    assert result.code == 0
    assert "--expected" in result.stdout and "--totals" in result.stdout


def test_control_totals_alone_reconcile_every_run_of_the_source(
    recon: Recon, balanced: tuple[Path, Path], write_file: Any
) -> None:
    totals = write_file("totals.csv", "run_id,expected_count,expected_amount\nR2,3,30.00\n")
    result = recon("--json", "daily", "--source", "src", "--totals", totals)
    assert result.code == 3, result.stderr  # R2 is expected but has not arrived: pending
    out = result.json()
    assert out["scope"] == {"source": "src", "run_id": None, "since": None, "until": None}
    assert [(r["run_id"], r["status"]) for r in out["reconciliation"]["runs"]] == [
        ("R2", "pending")
    ]
