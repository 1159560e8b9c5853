"""The daily report as built (not sent): its counts are `recon reconcile`'s and `recon
failures`'s on the sample story, its attachments are the bytes `recon failures` writes, it
compares with an ingested upstream report, leaves big files out and says so, never carries a
full card number, and escapes what the store holds in its HTML."""

from __future__ import annotations

import csv
import html
import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.report import build, render
from reconcile.session import Session, open_session, trail_for
from reconcile.settings import load_settings
from tests.support import RECON, SAMPLE, ingest_sample_story, recon_env, run_recon

SOURCE = "payments-loader"
NOW = "2026-11-16T08:00:00+00:00"
DAY = date(2026, 11, 13)
PANS = json.loads((SAMPLE / "EXPECTED.json").read_text())["pans"]


@pytest.fixture(scope="module")
def story_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample story ingested and reconciled once (a folder with recon.toml and the store);
    tests copy it before changing it."""
    folder = tmp_path_factory.mktemp("story")
    shutil.copy(SAMPLE / "recon.toml", folder / "recon.toml")
    env = recon_env(folder / "recon.duckdb", RECON_NOW=NOW)

    def recon(*args: Any) -> Any:
        return run_recon(args, env=env, cwd=folder)

    ingest_sample_story(recon, SAMPLE / SOURCE, SOURCE)
    assert recon("reconcile").code == 3  # the story has breaks
    return folder


@pytest.fixture
def store(story_store: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "store"
    shutil.copytree(story_store, folder)
    return folder


def env_for(folder: Path, **extra: str) -> dict[str, str]:
    return recon_env(folder / "recon.duckdb", **{"RECON_NOW": NOW, **extra})


def recon(folder: Path, *args: Any, **extra: str) -> subprocess.CompletedProcess[bytes]:
    """`recon ARGS` as a process, stdout as bytes (the CSV is compared byte for byte)."""
    return subprocess.run(
        [*RECON, *map(str, args)], cwd=folder, env=env_for(folder, **extra), capture_output=True
    )


@contextmanager
def session_in(folder: Path, monkeypatch: pytest.MonkeyPatch, **extra: str) -> Iterator[Session]:
    for name, value in env_for(folder, **extra).items():
        if name.startswith("RECON_"):
            monkeypatch.setenv(name, value)
    config = folder / "recon.toml"
    if not config.exists():
        config.write_text("")
    settings = load_settings(config)
    with open_session(settings, trail_for(settings, "cli")) as session:
        yield session


def test_counts_match_reconcile_and_failures(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reconciled = json.loads(recon(store, "--json", "reconcile", "--date", DAY).stdout)
    listed = json.loads(recon(store, "--json", "failures", "--date", DAY).stdout)
    with session_in(store, monkeypatch) as session:
        report = build.build(session, DAY, None)
    (day,) = reconciled["days"]
    (item,) = report.facts["sources"]
    for key in ("failed", "missing", "duplicated", "unexpected", "amount_mismatch", "status"):
        assert item[key] == day[key], key
    assert item["run_ids"] == day["run_ids"] == ["PL-20261113"]
    assert item["failed"] == 25  # sample_data/README.md
    assert item["rows_loaded"] == 200

    # Amounts per currency as `recon reconcile` totals the day.
    def exact(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: Decimal(str(v)) if "amount" in k else v for k, v in r.items()} for r in rows]

    assert exact(item["currencies"]) == exact(day["currencies"])
    # The trend: 12 Nov had 22 failed (sample_data/README.md), the 5 days before 13 Nov
    # (6, 9, 10, 11, 12 Nov) 7 + 4 + 24 + 26 + 22 = 83 failed.
    assert item["previous"]["business_date"] == date(2026, 11, 12)
    assert item["previous"]["failed"] == 22
    assert item["previous"]["failed_change"] == 3
    assert item["recent"]["failed_mean"] == pytest.approx(83 / 5)
    assert report.facts["failed_list"]["rows"] == len(listed["failures"]) == 25
    assert report.status == "breaks" and report.alert_kind == "report_breaks"
    assert report.title == (
        "[recon] Failed transactions 2026-11-13: 25 failed, 0 missing (all sources)"
    )
    shown = [row["txn_id"] for row in listed["failures"]]
    for txn in shown:
        assert txn in report.text and txn in report.html
    assert "25 failed" in report.short.replace("failed 25", "25 failed")
    # Earlier breaks still open, with their age: 11 Nov's 3 missing are 2 days old.
    earlier = report.facts["open_earlier"]
    assert earlier["by_category"]["missing"]["2-7d"] >= 3
    assert earlier["oldest"][0]["business_date"] == date(2026, 10, 26)


@pytest.mark.parametrize("source", [None, SOURCE])
def test_attachments_are_the_bytes_recon_failures_writes(
    store: Path, source: str | None, tmp_path: Path
) -> None:
    scope = ["--source", source] if source else []
    csv_out = recon(store, "failures", "--date", DAY, *scope, "--format", "csv")
    assert csv_out.returncode == 0, csv_out.stderr
    xlsx = tmp_path / "f.xlsx"
    assert (
        recon(store, "failures", "--date", DAY, *scope, "--format", "xlsx", "-o", xlsx).returncode
        == 0
    )
    out = tmp_path / "preview"
    shown = recon(store, "report", "preview", "--date", DAY, *scope, "-o", out)
    assert shown.returncode == 0, shown.stderr
    name = build.file_name(DAY, source, "csv")
    assert name == ("failed-transactions-2026-11-13" + (f"-{source}" if source else "") + ".csv")
    assert (out / name).read_bytes() == csv_out.stdout
    assert (out / name.replace(".csv", ".xlsx")).read_bytes() == xlsx.read_bytes()
    # The rows as openpyxl reads them are the CSV's.
    from openpyxl import load_workbook

    book = load_workbook(out / name.replace(".csv", ".xlsx"), read_only=True)
    sheet = book.active
    assert sheet is not None
    cells = [
        ["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)
    ]
    book.close()
