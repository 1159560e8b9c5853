"""The Python API (README "Python API"): the README's example runs as it stands, its DataFrames
hold what the commands print, amounts stay exact, and every action is audited via "python"."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import reconcile
from reconcile import audit

from .conftest import ROOT, SAMPLE, Recon

EXPECTED = json.loads((SAMPLE / "EXPECTED.json").read_text())
DEMO_KEYS = {
    "RECON_PAN_KEY": "demo-only-not-a-secret",
    "RECON_AUDIT_KEY": "demo-only-not-a-secret-either",
}
NOW = "2026-11-16T08:00:00+00:00"


def readme_example() -> str:
    """The one fenced python block of the README's "Python API" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Python API section should hold exactly one python example"
    return blocks[0]


@contextlib.contextmanager
def environment(workdir: Path, extra: dict[str, str]) -> Iterator[None]:
    """Run in `workdir` with no RECON_* setting but `extra`, as a fresh shell would."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("RECON_")]:
            patch.delenv(name)
        for name, value in extra.items():
            patch.setenv(name, value)
        patch.chdir(workdir)
        yield


@dataclass
class Example:
    workdir: Path
    printed: str
    names: dict[str, Any]

    def recon(self) -> Recon:
        """The CLI on the example's store, to compare the API with the commands."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
        env |= DEMO_KEYS | {
            "RECON_DB": str(self.workdir / "notebook.duckdb"),
            "RECON_CONFIG": str(SAMPLE / "recon.toml"),
            "RECON_NOW": NOW,
        }
        return Recon(workdir=self.workdir, db=self.workdir / "notebook.duckdb", env=env)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Example:
    """The README's example, run once in a fresh folder (beside a link to sample_data/) with
    the demo's keys, as a reader would run it from the repository's root."""
    workdir = tmp_path_factory.mktemp("notebook")
    (workdir / "sample_data").symlink_to(SAMPLE)
    printed = io.StringIO()
    names: dict[str, Any] = {"__name__": "__readme__"}
    with environment(workdir, DEMO_KEYS), contextlib.redirect_stdout(printed):
        exec(compile(readme_example(), "README.md (Python API)", "exec"), names)
    return Example(workdir, printed.getvalue(), names)


def test_the_readme_example_runs_and_prints_the_sample_story(example: Example) -> None:
    lines = [line.split() for line in example.printed.splitlines()]
    assert ["15", "run", "logs,", "3", "rows", "quarantined"] in lines
    # the week of 9 November: every day has breaks; the 11th as the README says
    days = {t[1]: t[2:] for t in lines if len(t) == 6 and t[1].startswith("2026-")}
    assert sorted(days) == [f"2026-11-{d}" for d in ("09", "10", "11", "12", "13")]
    assert all(row[0] == "breaks" for row in days.values())
    assert days["2026-11-11"][1:3] == ["26", "3"]
    assert Decimal(days["2026-11-11"][3]) == Decimal("-6566.44")
    assert ["EUR", "1831.35"] in lines and ["GBP", "4421.17"] in lines
    # what the example leaves behind is what the sample story promises
    failed = example.names["failed"]
    assert sorted(failed.txn_id) == sorted(EXPECTED["runs"]["PL-20261111"]["failed"])
    assert set(failed.category) == {"failed"}
    assert example.names["result"].needs_attention
    with pytest.raises(ValueError, match="closed"):  # the example's `with` closed it
        example.names["store"].runs()


def test_failures_frame_is_the_commands_list(example: Example) -> None:
    """Same rows, same columns, same exact amounts as `recon --json failures`."""
    with (
        environment(example.workdir, DEMO_KEYS),
        reconcile.open("notebook.duckdb", config=SAMPLE / "recon.toml", now=NOW) as store,
    ):
        frame = store.failures(date="2026-11-11", categories="all")
    listed = example.recon()("--json", "failures", "--date", "2026-11-11", "--category", "all")
    assert listed.code == 0, listed.stderr
    rows = listed.json()["failures"]
    assert list(frame.columns) == list(rows[0])
    assert len(frame) == len(rows) == 30
    assert [(r["txn_id"], r["category"], Decimal(r["amount"])) for r in rows] == list(
        zip(frame.txn_id, frame.category, frame.amount, strict=True)
    )
    assert {type(a) for a in frame.amount} == {Decimal}
    missing = frame[frame.category == "missing"]
    assert sorted(missing.txn_id) == EXPECTED["runs"]["PL-20261111"]["missing"]


def test_runs_breaks_and_days_frames_match_the_commands(example: Example) -> None:
    recon = example.recon()
    with (
        environment(example.workdir, DEMO_KEYS),
        reconcile.open("notebook.duckdb", config=SAMPLE / "recon.toml", now=NOW) as store,
    ):
        runs = store.runs(since="2026-11-09")
        breaks = store.breaks(since=date(2026, 11, 9), until=date(2026, 11, 13))
        days = store.days(since="2026-11-09", until="2026-11-13")
    listed_runs = recon("--json", "runs", "--since", "2026-11-09").json()["runs"]
    assert list(runs.columns) == list(listed_runs[0])
    assert list(runs.run_id) == [r["run_id"] for r in listed_runs]
    assert list(runs.rows_quarantined) == [r["rows_quarantined"] for r in listed_runs]

    listed_breaks = recon(
        "--json", "breaks", "--since", "2026-11-09", "--until", "2026-11-13"
    ).json()["breaks"]
    assert list(breaks.columns) == list(listed_breaks[0])
    assert list(breaks.break_id) == [b["break_id"] for b in listed_breaks]
    assert list(breaks.amount) == [Decimal(b["amount"]) for b in listed_breaks]

    reconciled = recon("--json", "reconcile", "--since", "2026-11-09", "--until", "2026-11-13")
    assert reconciled.code == 3, reconciled.stderr  # breaks: findings
    by_day = {d["business_date"]: d for d in reconciled.json()["days"]}
    assert [str(d.date()) for d in days.business_date] == sorted(by_day)
    for _, day in days.iterrows():
        shown = by_day[str(day.business_date.date())]
        assert day.status == shown["status"] and day.failed == shown["failed"]
        assert day.expected_amount == Decimal(shown["expected_amount"])
        assert day.amount_difference == Decimal(shown["amount_difference"])
        assert type(day.amount_difference) is Decimal


def test_amounts_stay_exact_where_floats_would_not(tmp_path: Path) -> None:
    """Cents that floats cannot hold, and a total past float's 15 significant digits."""
    log = tmp_path / "run.csv"
    log.write_text(
        "txn_id,run_id,amount,status,business_date\n"
        "T1,R1,0.10,FAILED,2026-11-20\n"
        "T2,R1,0.20,FAILED,2026-11-20\n"
        "T3,R1,12345678901234.01,FAILED,2026-11-20\n"
        "T4,R1,1.00,PROCESSED,2026-11-20\n",
        encoding="utf-8",
    )
    with (
        environment(tmp_path, {}),
        reconcile.open("exact.duckdb", now="2026-11-24T09:00:00Z") as store,
    ):
        loaded = store.ingest([log], source="src")
        outcome = store.reconcile(date="last")
        failed = store.failures(date="2026-11-20")
        days = store.days()
    assert list(loaded.rows_loaded) == [4]
    assert failed.amount.sum() == Decimal("12345678901234.31")
    assert 0.10 + 0.20 != 0.30  # what a float column would have done to the first two
    assert failed.amount[failed.txn_id.isin(["T1", "T2"])].sum() == Decimal("0.30")
    assert outcome.days.processed_amount.iloc[0] == Decimal("1.00")
    assert days.processed_amount.iloc[0] == Decimal("1.00")
    assert outcome.days.failed.iloc[0] == days.failed.iloc[0] == 3


def test_every_action_is_audited_via_python(tmp_path: Path) -> None:
    """Ingested, skipped and refused files, the reconcile and the failures read are events
    of the OS user via "python"; the chain (anchored by each call) verifies with the key."""
    log = tmp_path / "run.csv"
    log.write_text(
        "txn_id,run_id,amount,status\nT1,R1,5.00,FAILED\nT2,R1,7.00,PROCESSED\n",
        encoding="utf-8",
    )
    key = {"RECON_AUDIT_KEY": "test-audit-key-not-a-secret"}
    with (
        environment(tmp_path, key),
        reconcile.open("audited.duckdb", now="2026-11-24T09:00:00Z") as store,
    ):
        first = store.ingest([log], source="src", date="2026-11-20")
        again = store.ingest([log, tmp_path / "missing.csv"], source="src")
        store.reconcile()
        store.failures(date="2026-11-20")
    assert list(first.already_ingested) == [False]
    assert bool(again.already_ingested[0])  # the same bytes: skipped
    assert pd.isna(again.error[0]) and "missing.csv" in again.error[1]

    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")} | key
    recon = Recon(workdir=tmp_path, db=tmp_path / "audited.duckdb", env=env)
    recon.env["RECON_DB"] = str(recon.db)
    events = recon("--json", "audit", "log", "--limit", "100").json()["events"]
    acted = [
        (e["action"], e["object"], e["outcome"])
        for e in events
        if e["action"] in ("ingest", "reconcile", "failures.list")
    ]
    assert acted == [
        ("ingest", "src:run.csv", "success"),
        ("ingest", "src:run.csv", "skipped"),
        ("ingest", "src:missing.csv", "failure"),
        ("reconcile", "all", "success"),
        ("reconcile", "2026-11-20..2026-11-20", "success"),  # failures reconciles its day first
        ("failures.list", "all:2026-11-20", "success"),
    ]
    mine = [e for e in events if e["action"] != "audit.log"]
    assert {e["origin"]["via"] for e in mine} == {"python"}
    assert {e["actor"] for e in mine} == {audit.os_user()}
    read = next(e for e in events if e["action"] == "failures.list")
    assert read["details"]["rows"] == 1 and read["details"]["format"] == "dataframe"
    verified = recon("--json", "audit", "verify")
    assert verified.code == 0, verified.stdout + verified.stderr
    assert verified.json()["intact"]


def test_bad_arguments_raise_value_errors(tmp_path: Path) -> None:
    with environment(tmp_path, {}), reconcile.open("args.duckdb") as store:
        with pytest.raises(ValueError, match="unknown category"):
            store.failures(categories="nope")
        with pytest.raises(ValueError, match="either date or since/until"):
            store.breaks(date="2026-11-11", since="2026-11-01")
        with pytest.raises(ValueError, match="must be a date"):
            store.days(date="11/11/2026")
        with pytest.raises(ValueError, match="kind must be one of"):
            store.ingest([], source="src", kind="bogus")
        with pytest.raises(ValueError, match="name the source"):
            store.ingest([])
        assert store.failures().empty  # nothing loaded yet: the list is empty, not an error
        assert "txn_id" in store.failures().columns
    with pytest.raises(ValueError, match="closed"):
        store.runs()


def test_import_reconcile_stays_cheap() -> None:
    """`import reconcile` and `recon --version` load neither the API nor pandas."""
    script = (
        "import sys, reconcile; "
        "print('pandas' in sys.modules, 'reconcile.scripting' in sys.modules); "
        "print(reconcile.Store.__module__, 'pandas' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    shown = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert shown.stdout.split() == ["False", "False", "reconcile.scripting", "True"]
    timed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "reconcile", "--version"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "recon, version" in timed.stdout
    assert not re.search(r"\|\s+pandas\b", timed.stderr)


def test_the_package_is_typed() -> None:
    assert (ROOT / "reconcile" / "py.typed").is_file()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["reconcile"]


def test_the_repository_cites_no_file_outside_it() -> None:
    """The contract lives here: no PRODUCT.md (team material, not in the repository), and
    every relative link of the README and the docs leads to a file that exists."""
    skip = {".venv", ".git", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__"}
    texts = [
        p
        for p in ROOT.rglob("*")
        if p.suffix in {".py", ".md", ".json", ".toml", ".cfg", ".txt"}
        and p.is_file()
        and not skip & set(p.relative_to(ROOT).parts)
        and p != Path(__file__)
    ]
    citing = [str(p.relative_to(ROOT)) for p in texts if "PRODUCT.md" in p.read_text("utf-8")]
    assert citing == []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)", page.read_text(encoding="utf-8")):
            if not re.match(r"[a-z]+://", target):
                assert (page.parent / target).exists(), f"{page.name} links to {target}"
