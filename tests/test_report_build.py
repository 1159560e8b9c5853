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
        [("" if v is None else str(v)) for v in row] for row in sheet.iter_rows(values_only=True)
    ]
    book.close()
    rows = list(csv.reader(io.StringIO(csv_out.stdout.decode())))
    assert len(cells) == len(rows) == 26 and cells[0] == rows[0]
    assert [r[0] for r in cells] == [r[0] for r in rows]
    chart = name.replace(".csv", "-chart.png")  # the chart helper's, when days have results
    files = {"report.html", "report.txt", name, name.replace(".csv", ".xlsx"), chart}
    assert {p.name for p in out.iterdir()} == files
    for path in out.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600
    assert shown.stdout.decode() == (out / "report.txt").read_text()
    # The read is audited as `recon failures`'s is.
    events = recon(store, "--json", "audit", "log", "--action", "report.preview").stdout
    assert b'"report.preview"' in events


def _report_file(folder: Path, txns: list[str]) -> Path:
    path = folder / "upstream.csv"
    lines = ["txn_id,run_id,amount,currency,error_code,error_message"]
    lines += [f"{txn},PL-20261113,10.00,GBP,E512,Field mapping" for txn in txns]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_upstream_comparison_names_the_differences(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = [
        r["txn_id"]
        for r in json.loads(recon(store, "--json", "failures", "--date", DAY).stdout)["failures"]
    ]
    theirs = [*ours[1:], "T20261113-9999"]  # one of ours left out, one extra
    path = _report_file(store, theirs)
    done = recon(store, "ingest", "--source", SOURCE, "--kind", "report", "--date", DAY, path)
    assert done.returncode == 0, done.stderr
    with session_in(store, monkeypatch) as session:
        report = build.build(session, DAY, SOURCE)
    (upstream,) = report.facts["upstream"]
    assert not upstream["agrees"]
    assert upstream["only_upstream_ids"] == ["T20261113-9999"]
    assert upstream["only_ours_ids"] == [ours[0]]
    assert (upstream["upstream"], upstream["ours"]) == (25, 25)
    for text in (report.text, report.html):
        assert "T20261113-9999" in text and ours[0] in text
    assert "differs" in report.short


def test_upstream_comparison_agrees_on_the_story_report(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = date(2026, 11, 6)
    path = SAMPLE / SOURCE / "reports" / f"failed-transactions-{day}.csv"
    done = recon(store, "ingest", "--source", SOURCE, "--kind", "report", "--date", day, path)
    assert done.returncode == 0, done.stderr
    with session_in(store, monkeypatch) as session:
        report = build.build(session, day, None)
    (upstream,) = report.facts["upstream"]
    assert upstream["agrees"], upstream
    assert upstream["upstream"] == 7
    assert "agrees" in report.text


def test_caps_leave_files_out_and_the_body_says_so(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with session_in(store, monkeypatch, RECON_REPORT__BODY_ROWS="5") as session:
        report = build.build(session, DAY, SOURCE)
    attached = build.file_name(DAY, SOURCE, "csv")
    assert attached in [a.name for a in report.attachments]
    assert f"and 20 more in the attachment {attached}" in report.text
    caps = {
        "RECON_REPORT__BODY_ROWS": "5",
        "RECON_REPORT__XLSX_MAX_ROWS": "10",
        "RECON_REPORT__ATTACH_MAX_BYTES": "1000",
    }
    with session_in(store, monkeypatch, **caps) as session:
        report = build.build(session, DAY, SOURCE)
    assert [a.name for a in report.attachments if not a.name.endswith(".png")] == []
    omitted = {o["name"]: o for o in report.facts["omitted"]}
    csv_name, xlsx_name = (build.file_name(DAY, SOURCE, ext) for ext in ("csv", "xlsx"))
    assert set(omitted) == {csv_name, xlsx_name}
    assert "report.attach_max_bytes" in omitted[csv_name]["reason"]
    assert "25 rows, over the 10-row limit" in omitted[xlsx_name]["reason"]
    assert omitted[xlsx_name]["command"] == (
        f"recon failures --date {DAY} --source {SOURCE} --format xlsx -o {xlsx_name}"
    )
    for text in (report.text, report.html):
        assert "and 20 more in the full list" in text
    for o in omitted.values():
        assert o["command"] in report.text and html.escape(o["command"]) in report.html
    assert report.text.count("T20261113-") == 5


def test_no_card_number_anywhere(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    day = date(2026, 11, 4)  # the log carried full card numbers, also in error messages
    with session_in(store, monkeypatch) as session:
        report = build.build(session, day, None)
    assert report.facts["sources"][0]["failed"] == 4
    assert "************1117" in report.text  # masked, as stored
    blobs = [report.title, report.text, report.html, report.short,
             json.dumps(report.facts, default=str)]  # fmt: skip
    blobs += [a.content.decode("latin-1") for a in report.attachments]
    for blob in blobs:
        digits = re.sub(r"[ \-]", "", blob)
        for pan in PANS:
            assert pan not in digits


def test_hostile_values_are_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = "evil<b>\"src'"
    day = "2026-11-13"
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "txn_id,amount,currency,business_date,run_id\n"
        f'"<script>alert(1)</script>",10.00,GBP,{day},R1\n'
        f"T2,5.00,GBP,{day},R1\n"
    )
    log = tmp_path / "log.csv"
    log.write_text(
        "txn_id,run_id,amount,currency,status,processed_at,business_date,error_code,error_message\n"
        f'"<script>alert(1)</script>",R1,10.00,GBP,FAILED,{day}T01:00:00,{day},E1,"<img src=x onerror=y> & ""q"""\n'
        f"T2,R1,5.00,GBP,PROCESSED,{day}T01:00:01,{day},,\n"
    )
    for kind, path in (("expected", manifest), ("processed", log)):
        done = recon(tmp_path, "ingest", "--source", source, "--kind", kind, path)
        assert done.returncode in (0, 3), done.stderr
    with session_in(tmp_path, monkeypatch, RECON_BASE_URL="https://recon.example/x y/") as session:
        report = build.build(session, date(2026, 11, 13), source)
    assert report.facts["sources"][0]["failed"] == 1
    for raw in ("<script>", "<img", "<b>", 'src"'):
        assert raw not in report.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in report.html
    assert "evil&lt;b&gt;&quot;src&#x27;" in report.html
    assert "<script>alert(1)</script>" in report.text  # plain text is not HTML
    assert report.facts["link"] == "https://recon.example/x%20y/api/v1/failures?date=2026-11-13"
    assert report.facts["link"] in report.short
    assert all("/" not in a.name and "<" not in a.name for a in report.attachments)


def test_a_monitor_down_makes_the_report_down_with_the_gap(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    added = recon(store, "monitor", "add", "loader-runs", "--cron", "30 1 * * 1-5", "--tz",
                  "Europe/London", "--grace", "1h", "--source", SOURCE)  # fmt: skip
    assert added.returncode == 0, added.stderr
    with session_in(store, monkeypatch) as session:  # Monday 08:00: nothing due yet
        assert build.build(session, DAY, None).facts["gaps"] == []
    later = "2026-11-17T09:00:00+00:00"  # Tuesday's 01:30 run never came
    assert recon(store, "watch", "--once", RECON_NOW=later).returncode == 3
    with session_in(store, monkeypatch, RECON_NOW=later) as session:
        report = build.build(session, DAY, None)
    assert report.status == "down" and report.alert_kind == "report_down"
    (found,) = report.facts["gaps"]
    assert (found["monitor"], found["down"], found["missed_slots"]) == ("loader-runs", True, 1)
    assert (found["since"], found["until"]) == (date(2026, 11, 16), date(2026, 11, 17))
    assert "MONITOR DOWN" in report.title
    for text in (report.text, report.html, report.short):
        assert "loader-runs" in text
    assert "runs ingested: none" in report.text
    assert report.facts["sources"][0]["status"] == "breaks"  # the day's own status stays


@given(st.text())
def test_values_from_the_store_cannot_become_markup_or_paths(value: str) -> None:
    shown = render.esc(value)
    assert not set(shown) & set("<>\"'") and not re.search(r"[\x00-\x1f\x7f-\x9f]", shown)
    assert re.fullmatch(r"[A-Za-z0-9._-]+", build.safe_name(value))
    assert re.fullmatch(r"failed-transactions-2026-11-13-[A-Za-z0-9._-]+\.csv",
                        build.file_name(DAY, value, "csv"))  # fmt: skip


def test_nothing_loaded_is_a_clear_error(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with session_in(store, monkeypatch) as session, pytest.raises(build.ReportError) as caught:
        build.build(session, date(2026, 12, 1), None)
    assert "nothing is loaded for business date 2026-12-01" in str(caught.value)
    with session_in(store, monkeypatch) as session, pytest.raises(build.ReportError) as caught:
        build.build(session, None, "no-such-source")
    assert "no-such-source" in str(caught.value)
    done = recon(store, "report", "preview", "--date", "2026-12-01")
    assert done.returncode == 1
    assert b"nothing is loaded for business date 2026-12-01" in done.stderr


def test_a_day_with_only_its_manifest_is_pending(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = store / "PL-20261116.csv"
    manifest.write_text(
        "txn_id,amount,currency,business_date,run_id\n"
        "T20261116-0001,10.00,GBP,2026-11-16,PL-20261116\n"
    )
    done = recon(store, "ingest", "--source", SOURCE, "--kind", "expected", manifest)
    assert done.returncode == 0, done.stderr
    with session_in(store, monkeypatch) as session:
        report = build.build(session, date(2026, 11, 16), SOURCE)
    assert report.status == "pending" and report.alert_kind == "report_pending"
    assert report.facts["sources"][0]["status"] == "pending"
    assert report.title.endswith("(payments-loader) - PENDING")


def test_preview_usage_errors(store: Path) -> None:
    done = recon(store, "report", "preview", "--date", "13/11/2026")
    assert done.returncode == 2 and b"--date" in done.stderr
    (store / "a-file").write_text("")
    done = recon(store, "report", "preview", "--date", DAY, "-o", store / "a-file")
    assert done.returncode == 2 and b"a-file" in done.stderr


def test_empty_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with session_in(tmp_path, monkeypatch) as session, pytest.raises(build.ReportError) as caught:
        build.build(session, None, None)
    assert "no transactions loaded yet" in str(caught.value)


def test_preview_json_shape(store: Path) -> None:
    done = recon(store, "--json", "report", "preview", "--date", "last", "--source", SOURCE)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert set(shown) == {"title", "status", "alert_kind", "short", "facts", "written"}
    facts = shown["facts"]
    assert facts["business_date"] == "2026-11-13" and facts["scope"] == SOURCE
    assert set(facts) >= {"sources", "totals", "failed_list", "open_earlier", "gaps",
                          "upstream", "attachments", "omitted", "link", "status"}  # fmt: skip
    assert shown["written"] == {"stdout": None}
    assert datetime.fromisoformat(facts["generated_at"]) == datetime(2026, 11, 16, 8, tzinfo=UTC)
