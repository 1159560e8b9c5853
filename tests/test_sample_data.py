"""The bundled sample story: reproducible, and ingested with exactly the findings it promises."""

from __future__ import annotations

import csv
import filecmp
import json
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from reconcile import redact

from .conftest import SAMPLE, Recon
from .support import ingest_sample_story

EXPECTED = json.loads((SAMPLE / "EXPECTED.json").read_text())
SOURCE = "payments-loader"


def test_generator_reproduces_the_committed_files_exactly(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(SAMPLE / "generate.py"), "--out", str(tmp_path), "--quiet"], check=True
    )
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated, "the generator wrote nothing"
    for relative in generated:
        assert filecmp.cmp(tmp_path / relative, SAMPLE / relative, shallow=False), relative


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Recon:
    """The sample story ingested once, as `make demo` does."""
    import os

    workdir = tmp_path_factory.mktemp("sample")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env |= {
        "RECON_DB": str(workdir / "recon.duckdb"),
        "RECON_CONFIG": str(SAMPLE / "recon.toml"),
        "RECON_NOW": "2026-11-16T08:00:00+00:00",
        "RECON_PAN_KEY": "test-only-key",
    }
    recon = Recon(workdir=workdir, db=workdir / "recon.duckdb", env=env)
    ingest_sample_story(recon, SAMPLE / SOURCE, SOURCE)
    return recon


def _runs(recon: Recon) -> dict[str, dict[str, Any]]:
    result = recon("--json", "runs")
    assert result.code == 0
    return {run["run_id"]: run for run in result.json()["runs"]}


def test_every_run_loads_what_its_log_holds(sample_db: Recon) -> None:
    runs = _runs(sample_db)
    assert set(runs) == set(EXPECTED["runs"])
    for run_id, truth in EXPECTED["runs"].items():
        run = runs[run_id]
        assert run["rows_loaded"] == truth["log_rows"] - truth["bad_rows"], run_id
        assert run["rows_quarantined"] == truth["bad_rows"], run_id
        assert run["rows_failed"] == truth["failed_rows"], run_id
        assert run["business_date"] == truth["business_date"], run_id


def test_success_amounts_are_exact(sample_db: Recon) -> None:
    rows = sample_db.query(
        "SELECT run_id, sum(amount) FROM transactions WHERE outcome = 'success' GROUP BY run_id"
    )
    for run_id, total in rows:
        assert total == Decimal(EXPECTED["runs"][run_id]["success_amount"]), run_id


def test_manifests_and_control_totals_agree(sample_db: Recon) -> None:
    manifests = dict(
        sample_db.query("SELECT run_id, count(*) FROM expected_transactions GROUP BY run_id")
    )
    totals = {
        r: (c, a)
        for r, c, a in sample_db.query(
            "SELECT run_id, expected_count, expected_amount FROM control_totals"
        )
    }
    for run_id, truth in EXPECTED["runs"].items():
        assert manifests[run_id] == truth["expected_count"]
        assert totals[run_id] == (truth["expected_count"], Decimal(truth["expected_amount"]))


def test_bad_rows_are_quarantined_with_line_column_and_reason(sample_db: Recon) -> None:
    result = sample_db("--json", "quarantine")
    rows = result.json()["quarantine"]
    assert len(rows) == sum(truth["bad_rows"] for truth in EXPECTED["runs"].values())
    assert {row["column"] for row in rows} == {"txn_id", "amount", "status"}
    log = (
        (SAMPLE / EXPECTED["runs"][EXPECTED["quarantine_run_id"]]["log_file"])
        .read_text()
        .splitlines()
    )
    for row in rows:
        line_text = log[row["line"] - 1]
        raw = json.loads(row["raw"])
        assert (raw["txn_id"] or "") in line_text  # the line number points at the bad row


def test_no_full_card_number_anywhere_in_the_database(sample_db: Recon) -> None:
    tables = sample_db.query(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE data_type IN ('VARCHAR', 'JSON') OR data_type LIKE '%[]'"
    )
    assert tables
    for table, column in tables:
        values = sample_db.query(f'SELECT DISTINCT "{column}"::VARCHAR FROM "{table}"')
        for (value,) in values:
            assert not redact.find_pans(value or ""), f"{table}.{column} holds a card number"
            digits = re.sub(r"\D", "", value or "")
            for pan in EXPECTED["pans"]:
                assert pan not in digits, f"{table}.{column} holds {pan[-4:]}"


def test_cvv_is_never_stored(sample_db: Recon) -> None:
    card_run = EXPECTED["card_run_id"]
    attributes = sample_db.query(
        "SELECT attributes FROM transactions WHERE run_id = ? LIMIT 5", [card_run]
    )
    for (value,) in attributes:
        keys = set(json.loads(value))
        assert "cvv" not in keys and "card_number" in keys
        assert re.fullmatch(r"\*+\d{4}", json.loads(value)["card_number"])


def test_card_fingerprint_correlates_the_same_card(sample_db: Recon) -> None:
    rows = sample_db.query(
        "SELECT json_extract_string(attributes, '$.card_number') AS masked, "
        "count(DISTINCT card_hmac) FROM transactions WHERE run_id = ? GROUP BY masked",
        [EXPECTED["card_run_id"]],
    )
    assert rows and all(count == 1 for _, count in rows)


def test_failed_list_for_the_card_day_is_masked(sample_db: Recon) -> None:
    result = sample_db("failures", "--date", "2026-11-04", "--format", "csv")
    assert result.code == 0
    assert "declined by issuer" in result.stdout
    assert not redact.find_pans(result.stdout)


def test_reingesting_the_whole_story_changes_nothing(sample_db: Recon) -> None:
    before = sample_db.query("SELECT count(*) FROM transactions")
    files = sorted((SAMPLE / SOURCE / "runs").iterdir())
    result = sample_db("--json", "ingest", "--source", SOURCE, *files)
    assert result.code == 0
    assert all(entry["already_ingested"] for entry in result.json()["files"])
    assert sample_db.query("SELECT count(*) FROM transactions") == before


def test_failed_list_csv_has_exact_two_decimal_amounts(sample_db: Recon) -> None:
    result = sample_db(
        "failures",
        "--since",
        "2026-11-09",
        "--until",
        "2026-11-13",
        "--format",
        "csv",
        "--status",
        "all",
    )
    assert result.code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "txn_id,run_id,business_date,amount,currency,category,error_code,error_message,"
        "age_days,break_status,source,note"
    )
    amounts = [line.split(",")[3] for line in lines[1:]]
    assert amounts and all(re.fullmatch(r"-?\d+\.\d\d", amount) for amount in amounts)
    failed_in_week_3 = sum(
        len(truth["failed"])
        for truth in EXPECTED["runs"].values()
        if truth["business_date"] >= "2026-11-09"
    )
    assert len(lines) - 1 == failed_in_week_3


def test_failures_json_names_the_day_and_lists_masked_rows(sample_db: Recon) -> None:
    result = sample_db("--json", "failures", "--date", "last")
    assert result.code == 0
    payload = result.json()
    assert payload["since"] == payload["until"] == "2026-11-13"
    expected_failed = set(EXPECTED["runs"]["PL-20261113"]["failed"])
    assert {row["txn_id"] for row in payload["failures"]} == expected_failed
    lines = sample_db("failures", "--date", "2026-11-13", "--format", "jsonl").stdout.splitlines()
    assert len(lines) == len(expected_failed)


def test_reconcile_finds_exactly_the_story_in_expected_json(sample_db: Recon) -> None:
    result = sample_db("--json", "reconcile")
    assert result.code == 3  # every day of the story has breaks
    runs = {run["run_id"]: run for run in result.json()["runs"]}
    assert set(runs) == set(EXPECTED["runs"])
    records = sample_db.query(
        "SELECT run_id, category, list(txn_id ORDER BY txn_id) FROM record_results "
        "WHERE category <> 'matched' GROUP BY ALL"
    )
    found = {(run, category): ids for run, category, ids in records}
    for run_id, truth in EXPECTED["runs"].items():
        run = runs[run_id]
        for category in ("failed", "missing", "duplicated", "unexpected", "amount_mismatch"):
            assert found.get((run_id, category), []) == sorted(truth[category]), (run_id, category)
            assert run[category] == len(truth[category]), (run_id, category)
        # Payments re-processed from the day before are matched in the run that loaded them.
        assert run["matched"] == truth["matched"] + len(truth["reprocessed_next_day"])
        assert run["reprocessed"] == len(truth["reprocessed_next_day"])
        assert run["retried"] == len(truth["retried_then_matched"])
        assert (run["expected_count"], run["expected_amount"]) == (
            truth["expected_count"],
            truth["expected_amount"],
        )
        assert Decimal(run["processed_amount"]) == Decimal(truth["success_amount"])
    resolved = sample_db.query(
        "SELECT txn_id, run_id, resolution FROM breaks WHERE status = 'resolved' ORDER BY txn_id"
    )
    assert [(t, r) for t, r, _ in resolved] == sorted(
        (item["txn_id"], item["failed_in"]) for item in EXPECTED["reprocessed_next_day"]
    )
    assert all(
        reason == f"processed successfully in run {item['processed_in']}"
        for (_, _, reason), item in zip(
            resolved,
            sorted(EXPECTED["reprocessed_next_day"], key=lambda i: i["txn_id"]),
            strict=True,
        )
    )


def test_daily_report_rows_are_exactly_the_failed_list_of_their_day(sample_db: Recon) -> None:
    for day in EXPECTED["report_days"]:
        report = SAMPLE / SOURCE / "reports" / f"failed-transactions-{day}.csv"
        with report.open() as handle:
            reported = sorted(row["txn_id"] for row in csv.DictReader(handle))
        # The old email listed every failure of its day, also those reprocessed since.
        listed = sample_db("--json", "failures", "--date", day, "--status", "all").json()
        assert sorted(row["txn_id"] for row in listed["failures"]) == reported, day


def test_date_last_means_the_latest_business_date(sample_db: Recon) -> None:
    result = sample_db("--json", "reconcile", "--date", "last")
    assert [day["business_date"] for day in result.json()["days"]] == ["2026-11-13"]
    listed = sample_db("--json", "breaks", "--date", "last").json()["breaks"]
    assert listed and {b["business_date"] for b in listed} == {"2026-11-13"}


def test_bisect_finds_the_sample_storys_change_day(sample_db: Recon) -> None:
    """The application broke after one of many releases: bisect names the run and the version,
    with the levels computed here from the story's truth."""
    change = EXPECTED["change_run_id"]
    runs = EXPECTED["runs"]
    rates = {r: 100 * v["failed_rows"] / (v["log_rows"] - v["bad_rows"]) for r, v in runs.items()}
    before = [rate for run, rate in rates.items() if run < change]
    after = [rate for run, rate in rates.items() if run >= change]
    found = sample_db("--json", "bisect", "--source", SOURCE)
    assert found.code == 3, found.stderr
    shift = found.json()
    assert shift["run"]["run_id"] == change and shift["significant"]
    assert abs(shift["before"] - sum(before) / len(before)) < 1e-9
    assert abs(shift["after"] - sum(after) / len(after)) < 1e-9
    previous = max(run for run in runs if run < change)
    assert shift["app_versions"] == {
        previous: [runs[previous]["app_version"]],
        change: [runs[change]["app_version"]],
    }
    text = sample_db("bisect", "--source", SOURCE)
    assert f"failure_rate shifted at run {change}" in text.stderr
    assert (
        f"application version: {runs[previous]['app_version']} ({previous}) -> "
        f"{runs[change]['app_version']} ({change})"
    ) in text.stderr
