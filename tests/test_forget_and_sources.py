"""Two configured sources, as operations run them (issue 13, items 5 to 8): a file loaded with
the wrong kind or under a mistyped source can be taken back (`recon forget`) and loaded right;
a quarantined row says so where its record is listed as missing; the daily failure list shows
open breaks, each source on its own latest day, with the source named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import Recon

pytestmark = pytest.mark.in_process

CONFIG = """
[sources.nyc]
timezone = "America/New_York"
delimiter = ";"
[sources.nyc.columns]
txn_id = "TransactionRef"

[sources.ber]
timezone = "Europe/Berlin"
delimiter = "\\t"
"""

NYC_MANIFEST = "TransactionRef;amount;run_id;business_date\n" + "".join(
    f"N{i};{i}0.00;{run};{day}\n"
    for i, run, day in (
        (1, "NY1", "2026-03-23"),
        (2, "NY1", "2026-03-23"),
        (3, "NY1", "2026-03-23"),
        (4, "NY1", "2026-03-23"),
        (5, "NY2", "2026-03-24"),
        (6, "NY2", "2026-03-24"),
    )
)
NYC_23 = (
    "TransactionRef;amount;status;run_id;business_date\n"
    "N1;10.00;OK;NY1;2026-03-23\n"
    "N2;20.00;FAILED;NY1;2026-03-23\n"
    "N3;30.00;OK;NY1;2026-03-23\n"
    "N4;40.00;DONE;NY1;2026-03-23\n"  # line 5: unknown status, quarantined
)
NYC_24 = (
    "TransactionRef;amount;status;run_id;business_date\n"
    "N5;50.00;OK;NY2;2026-03-24\n"
    "N6;60.00;FAILED;NY2;2026-03-24\n"
)
BER_MANIFEST = "txn_id\tamount\trun_id\tbusiness_date\n" + "".join(
    f"B{i}\t{i}.00\tBE1\t2026-03-23\n" for i in (1, 2, 3)
)
BER_23 = (  # Berlin is a day behind: its latest day is the 23rd
    "txn_id\tamount\tstatus\trun_id\tbusiness_date\n"
    "B1\t1.00\tOK\tBE1\t2026-03-23\n"
    "B2\t2.00\tFAILED\tBE1\t2026-03-23\n"
    "B3\t3.00\tOK\tBE1\t2026-03-23\n"
)


def _load_both(recon: Recon, folder: Path) -> None:
    recon.write_config(CONFIG)
    files = {
        "nyc-manifest.csv": NYC_MANIFEST,
        "nyc-23.csv": NYC_23,
        "nyc-24.csv": NYC_24,
        "ber-manifest.tsv": BER_MANIFEST,
        "ber-23.tsv": BER_23,
    }
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    assert recon.ingest("nyc-manifest.csv", source="nyc", kind="expected")[0].code == 0
    assert recon.ingest("nyc-23.csv", "nyc-24.csv", source="nyc")[0].code == 3  # N4 quarantined
    assert recon.ingest("ber-manifest.tsv", source="ber", kind="expected")[0].code == 0
    assert recon.ingest("ber-23.tsv", source="ber")[0].code == 0


def test_a_quarantined_row_says_so_where_its_record_is_missing(recon: Recon) -> None:
    _load_both(recon, recon.workdir)
    listed = recon("failures", "--date", "2026-03-23", "--source", "nyc", "--category", "missing")
    text = " ".join(listed.stdout.split())  # the note column wraps
    assert listed.code == 0 and "N4" in text
    assert "row quarantined (nyc-23.csv line 5: " in text and "DONE" in text
    # The exports carry it too, in a column of their own.
    csv_text = recon(
        "failures", "--date", "2026-03-23", "--category", "missing", "--format", "csv"
    ).stdout
    header, row = csv_text.splitlines()[:2]
    assert header.endswith(",source,note")
    assert row.startswith("N4,") and ',nyc,"row quarantined (nyc-23.csv line 5: ' in row
    [record] = recon("--json", "failures", "--date", "2026-03-23", "--category", "missing").json()[
        "failures"
    ]
    assert record["note"].startswith("row quarantined (nyc-23.csv line 5: ")


def test_a_file_loaded_as_the_wrong_kind_is_loaded_right_and_the_wrong_load_forgotten(
    recon: Recon,
) -> None:
    recon.write_config(CONFIG)
    (recon.workdir / "nyc-23.csv").write_text(NYC_23, encoding="utf-8")
    _, [wrong] = recon.ingest("nyc-23.csv", source="nyc", kind="expected")  # the mistake
    assert wrong["rows_loaded"] == 4
    again = recon("ingest", "--source", "nyc", "--kind", "expected", "nyc-23.csv")
    assert "already ingested for nyc as expected on " in again.stderr
    assert f"file {wrong['file_id']}" in again.stderr
    # The same bytes as the right kind load; the warning names the earlier load.
    right, [log] = recon.ingest("nyc-23.csv", source="nyc")
    assert right.code == 3 and not log["already_ingested"] and log["rows_loaded"] == 3
    assert any(f"recon forget {wrong['file_id']}" in w for w in log["warnings"])
    before = recon("--json", "reconcile").json()["days"][0]
    assert (before["missing"], before["failed"]) == (1, 1)  # N4 "expected" by the log itself

    gone = recon("forget", "nyc-23.csv", "--kind", "expected")
    assert gone.code == 0, gone.stderr
    assert f"forgot file {wrong['file_id']}: nyc-23.csv (expected for nyc" in gone.stderr
    assert "4 row(s)" in gone.stderr
    assert recon.query("SELECT count(*) FROM expected_transactions") == [(0,)]
    after = recon("--json", "reconcile").json()["days"][0]
    assert (after["missing"], after["failed"]) == (0, 1)  # judged on the log alone
    assert recon.query("SELECT status FROM breaks WHERE txn_id = 'N4'") == [("resolved",)]
    [(details,)] = recon.query("SELECT details FROM audit_events WHERE action = 'forget'")
    assert json.loads(details)["rows_removed"] == 4 and json.loads(details)["kind"] == "expected"
    # Forgotten, its bytes can be loaded as that kind again.
    _, [reloaded] = recon.ingest("nyc-23.csv", source="nyc", kind="expected")
    assert not reloaded["already_ingested"]
    # Naming a file that two loads share is refused, listing them.
    both = recon("forget", "nyc-23.csv")
    assert both.code == 1 and "names 2 loads" in both.stderr and "as processed" in both.stderr


def test_an_unknown_source_is_refused_and_a_typo_can_be_taken_back(recon: Recon) -> None:
    _load_both(recon, recon.workdir)
    typo = recon("ingest", "--source", "bre", "ber-23.tsv")
    assert typo.code == 2
    assert "source 'bre' is not configured" in typo.stderr and "ber, nyc" in typo.stderr
    assert "--new-source" in typo.stderr
    assert recon.query("SELECT count(*) FROM transactions WHERE source = 'bre'") == [(0,)]

    loaded = recon("--json", "ingest", "--source", "bre", "--new-source", "ber-23.tsv")
    assert loaded.code == 0
    [file] = loaded.json()["files"]
    failing = recon("--json", "failures", "--date", "2026-03-23", "--category", "all").json()
    assert "bre" in {row["source"] for row in failing["failures"]}

    gone = recon("forget", str(file["file_id"]))
    assert gone.code == 0 and "runs gone (only this file made them): BE1" in gone.stderr
    assert recon.query("SELECT count(*) FROM transactions WHERE source = 'bre'") == [(0,)]
    assert recon("--json", "runs", "--source", "bre").json()["runs"] == []
    failing = recon("--json", "failures", "--date", "2026-03-23", "--category", "all").json()
    assert {row["source"] for row in failing["failures"]} == {"ber", "nyc"}
    assert recon.query("SELECT DISTINCT status FROM breaks WHERE source = 'bre'") == [("resolved",)]
    assert recon.query("SELECT count(*) FROM latest_day_results WHERE source = 'bre'") == [(0,)]


def test_the_daily_list_shows_open_breaks_of_each_source_on_its_own_latest_day(
    recon: Recon,
) -> None:
    _load_both(recon, recon.workdir)
    daily = recon("--json", "failures", "--date", "last").json()
    assert [(r["source"], r["txn_id"]) for r in daily["failures"]] == [
        ("ber", "B2"),  # Berlin's latest day is listed, though New York is a day ahead
        ("nyc", "N6"),
    ]
    assert daily["latest"] == {"ber": "2026-03-23", "nyc": "2026-03-24"}
    shown = recon("failures")
    assert "latest of each source: ber 2026-03-23, nyc 2026-03-24" in shown.stderr
    assert shown.stdout.split("\n")[0].split()[0] == "source"

    [n6] = [r for r in daily["failures"] if r["txn_id"] == "N6"]
    assert recon("breaks", "resolve", n6["break_id"], "--reason", "refunded by hand").code == 0
    open_only = recon("failures", "--date", "last")
    assert "N6" not in open_only.stdout and "B2" in open_only.stdout
    assert "not shown: 1 resolved (--status all)" in open_only.stderr
    resolved = recon("--json", "failures", "--status", "resolved").json()["failures"]
    assert [r["txn_id"] for r in resolved] == ["N6"]
    everything = recon("--json", "failures", "--status", "all").json()["failures"]
    assert [r["txn_id"] for r in everything] == ["B2", "N6"]


def test_reconcile_and_history_name_the_source_and_count_source_days(recon: Recon) -> None:
    _load_both(recon, recon.workdir)
    result = recon("reconcile")
    assert result.code == 3
    assert result.stdout.split("\n")[0].split()[:2] == ["source", "business_date"]
    assert "3 source-day(s)" in result.stderr
    assert "3 source-day(s) have breaks (ber: 1, nyc: 2)" in result.stderr
    history = recon("history", "--date", "2026-03-23")
    lines = history.stdout.splitlines()
    assert lines[0].split()[0] == "source"
    assert sum(line.startswith("ber") for line in lines) == 1
    assert sum(line.startswith("nyc") for line in lines) == 1
