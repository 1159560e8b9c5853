"""A corrected file takes the place of what was loaded before (`recon ingest --replace`): the
fix-at-the-source loop ends with the right counts, nothing counted twice, history kept."""

from __future__ import annotations

import json

import pytest

from .conftest import Recon

# Many input cases through the CLI: run in this process (tests/support.py), not one
# interpreter each; the real-process contract is kept by test_setup, test_sample_data and others.
pytestmark = pytest.mark.in_process

HEADER = "txn_id,amount,status,run_id,business_date\n"
MANIFEST = "txn_id,amount,run_id,business_date\n" + "".join(
    f"A{i},{i}.00,R1,2026-07-01\n" for i in range(1, 5)
)
BROKEN = HEADER + (
    "A1,1.00,OK,R1,2026-07-01\n"
    "A2,two,OK,R1,2026-07-01\n"  # bad amount: quarantined
    "A3,3.00,FAILED,R1,2026-07-01\n"
    "A4,4.00,DONE,R1,2026-07-01\n"  # unknown status: quarantined
)
FIXED = BROKEN.replace("two", "2.00").replace("DONE", "OK")


def test_a_corrected_run_log_replaces_the_broken_one(recon: Recon, write_file) -> None:  # type: ignore[no-untyped-def]
    assert recon.ingest(write_file("m.csv", MANIFEST), kind="expected")[0].code == 0
    first, [broken] = recon.ingest(write_file("r1.csv", BROKEN))
    assert (first.code, broken["rows_loaded"], broken["rows_quarantined"]) == (3, 2, 2)
    before = recon("--json", "reconcile").json()["days"][0]
    assert (before["missing"], before["failed"]) == (2, 1)  # A2, A4 never loaded

    # Without --replace the corrected file would count A1 and A3 twice.
    result, [fixed] = recon.ingest(write_file("r1-fixed.csv", FIXED), extra=("--replace",))
    assert result.code == 0 and fixed["rows_loaded"] == 4
    assert fixed["replaced"] == {
        "files": [{"path": broken["path"], "sha256": broken["sha256"]}],
        "partly": [],
        "rows": 2,
        "quarantined": 2,
        "runs": ["R1"],
    }
    after = recon("--json", "reconcile").json()["days"][0]
    assert (after["matched"], after["failed"], after["missing"], after["duplicated"]) == (
        3,
        1,
        0,
        0,
    )
    assert after["processed_amount"] == "7.00"  # 1 + 2 + 4: each posted once
    [run] = recon("--json", "runs").json()["runs"]
    assert (run["rows_loaded"], run["rows_quarantined"]) == (4, 0)
    assert recon.query("SELECT count(*) FROM quarantine") == [(0,)]
    # The broken file stays on record, marked, so a folder run again does not bring it back.
    assert recon.query(
        "SELECT path, replaced_by FROM ingested_files WHERE kind = 'processed' ORDER BY file_id"
    ) == [(broken["path"], fixed["file_id"]), (fixed["path"], None)]
    again, [skipped] = recon.ingest(write_file("r1.csv", BROKEN))
    assert skipped["already_ingested"] and "replaced later by" in again.stderr
    assert [v["version"] for v in recon("--json", "history", "--run", "R1").json()["versions"]] == [
        1,
        2,
    ]
    resolved = recon.query("SELECT txn_id, status FROM breaks ORDER BY txn_id")
    assert resolved == [("A2", "resolved"), ("A3", "open"), ("A4", "resolved")]
    [(details,)] = recon.query(
        "SELECT details FROM audit_events WHERE action = 'ingest' AND object LIKE '%r1-fixed.csv'"
    )
    assert json.loads(details)["replaced"]["rows"] == 2


def test_the_same_file_is_read_again_after_a_settings_fix(recon: Recon, write_file) -> None:  # type: ignore[no-untyped-def]
    log = write_file("r1.csv", FIXED.replace("A4,4.00,OK", "A4,4.00,DONE"))
    assert recon.ingest(log)[1][0]["rows_quarantined"] == 1  # DONE is not a known status
    recon.write_config('[sources.src]\nsuccess_values = ["OK", "DONE"]\n')
    _, [again] = recon.ingest(log)
    assert again["already_ingested"]  # without --replace the same bytes are skipped
    result, [reread] = recon.ingest(log, extra=("--replace",))
    assert result.code == 0 and not reread["already_ingested"]
    assert (reread["rows_loaded"], reread["rows_quarantined"]) == (4, 0)
    assert recon.query("SELECT count(*), sum(amount)::VARCHAR FROM transactions") == [
        (4, "10.0000")
    ]
    assert recon.query("SELECT count(*) FROM ingested_files") == [(1,)]


def test_replace_touches_only_the_runs_of_the_new_file(recon: Recon, write_file) -> None:  # type: ignore[no-untyped-def]
    both = HEADER + "A1,1.00,OK,R1,2026-07-01\nB1,9.00,OK,R2,2026-07-02\n"
    recon.ingest(write_file("both.csv", both))
    recon.ingest(write_file("r3.csv", HEADER + "C1,5.00,OK,R3,2026-07-03\n"))
    result, [fixed] = recon.ingest(
        write_file("r1.csv", HEADER + "A1,1.50,OK,R1,2026-07-01\n"), extra=("--replace",)
    )
    assert result.code == 0 and fixed["replaced"]["rows"] == 1 and fixed["replaced"]["files"] == []
    rows = recon.query("SELECT run_id, txn_id, amount::VARCHAR FROM transactions ORDER BY 1")
    assert rows == [("R1", "A1", "1.5000"), ("R2", "B1", "9.0000"), ("R3", "C1", "5.0000")]
    # both.csv still holds R2, so it stays on record; nothing of R3 was touched.
    assert recon.query("SELECT count(*) FROM ingested_files") == [(3,)]


def test_people_see_why_a_record_is_missing_and_the_whole_reason(recon: Recon, write_file) -> None:  # type: ignore[no-untyped-def]
    recon.ingest(write_file("m.csv", MANIFEST), kind="expected")
    recon.ingest(write_file("r1.csv", BROKEN))
    listed = recon("failures", "--date", "2026-07-01", "--category", "missing")
    text = " ".join(listed.stdout.split())  # the note column wraps onto further lines
    assert "row quarantined (r1.csv line 3: " in text
    shown = recon("quarantine").stdout
    assert "..." not in shown.split("raw")[0]  # the reason is wrapped, not cut
    assert "success_values or failure_values in recon.toml)" in shown


def test_reading_the_same_bytes_again_gives_reconcile_a_new_version(
    recon: Recon, write_file
) -> None:  # type: ignore[no-untyped-def]
    recon.ingest(write_file("m.csv", MANIFEST), kind="expected")
    log = write_file("r1.csv", FIXED.replace("A4,4.00,OK", "A4,4.00,DONE"))
    recon.ingest(log)
    first = recon("--json", "reconcile").json()["days"][0]
    assert first["missing"] == 1  # A4's row was quarantined
    recon.write_config('[sources.src]\nsuccess_values = ["OK", "DONE"]\n')
    recon.ingest(log, extra=("--replace",))
    second = recon("--json", "reconcile").json()["days"][0]
    assert (second["missing"], second["matched"]) == (0, 3)
    versions = recon("--json", "history", "--run", "R1").json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert recon.query("SELECT status FROM breaks WHERE txn_id = 'A4'") == [("resolved",)]


def test_a_record_the_correction_removed_loses_its_open_break(recon: Recon, write_file) -> None:  # type: ignore[no-untyped-def]
    recon.ingest(write_file("m.csv", MANIFEST), kind="expected")
    recon.ingest(write_file("r1.csv", FIXED + "X9,9.00,OK,R1,2026-07-01\n"))  # X9: unexpected
    recon("reconcile")
    assert recon.query("SELECT status FROM breaks WHERE txn_id = 'X9'") == [("open",)]
    recon.ingest(write_file("r1-fixed.csv", FIXED), extra=("--replace",))
    recon("reconcile")
    [(status, resolution)] = recon.query(
        "SELECT status, resolution FROM breaks WHERE txn_id = 'X9'"
    )
    assert status == "resolved" and "replaced" in resolution


def test_files_of_one_command_do_not_replace_each_other_and_bad_rows_cover_nothing(
    recon: Recon,
    write_file,  # type: ignore[no-untyped-def]
) -> None:
    recon.ingest(
        write_file("old.csv", HEADER + "A1,1.00,OK,R1,2026-07-01\nB1,2.00,OK,R2,2026-07-02\n")
    )
    halves = [
        write_file("p1.csv", HEADER + "A1,1.00,OK,R1,2026-07-01\n"),
        write_file("p2.csv", HEADER + "A2,2.00,OK,R1,2026-07-01\n,3.00,OK,R2,2026-07-02\n"),
    ]
    result, entries = recon.ingest(*halves, extra=("--replace",))
    assert result.code == 3  # p2's second row has no txn_id: quarantined
    rows = recon.query("SELECT run_id, txn_id FROM transactions ORDER BY 1, 2")
    # R1 is the two halves; R2 keeps B1, since p2's only R2 row was quarantined.
    assert rows == [("R1", "A1"), ("R1", "A2"), ("R2", "B1")]
    assert entries[1]["replaced"]["rows"] == 0


def test_a_failure_report_is_replaced_by_its_date(recon: Recon, write_file) -> None:  # type: ignore[no-untyped-def]
    report = "txn_id,amount,error_code\nT1,1.00,E1\nT2,2.00,E2\n"
    first = write_file("report.csv", report)
    assert recon.ingest(first, kind="report", extra=("--date", "2026-07-01"))[0].code == 0
    corrected = write_file("report-fixed.csv", report.replace("T2,2.00,E2\n", ""))
    result, [entry] = recon.ingest(
        corrected, kind="report", extra=("--date", "2026-07-01", "--replace")
    )
    assert result.code == 0 and entry["replaced"]["rows"] == 2
    assert recon.query("SELECT txn_id FROM reported_failures") == [("T1",)]


def test_an_undated_log_is_given_its_day_by_reading_it_again(recon: Recon, write_file) -> None:  # type: ignore[no-untyped-def]
    log = write_file(
        "undated.csv", "txn_id,amount,status,run_id\nU1,1.00,OK,R9\nU2,2.00,FAILED,R9\n"
    )
    result, _ = recon.ingest(log)
    assert "ingest it again with --replace --date YYYY-MM-DD" in result.stderr
    recon("reconcile")
    today = recon.env["RECON_NOW"][:10]
    assert [
        f["txn_id"] for f in recon("--json", "failures", "--date", today).json()["failures"]
    ] == ["U2"]
    recon.ingest(log, extra=("--replace", "--date", "2026-07-01"))
    recon("reconcile")
    on = recon("--json", "failures", "--date", "2026-07-01").json()["failures"]
    assert [(f["txn_id"], f["business_date"]) for f in on] == [("U2", "2026-07-01")]
    assert recon("--json", "failures", "--date", today).json()["failures"] == []
