"""A corrected file takes the place of what was loaded before (`recon ingest --replace`): the
fix-at-the-source loop ends with the right counts, nothing counted twice, history kept."""

from __future__ import annotations

import json

from .conftest import Recon

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
    assert fixed["replaced"] == {"files": [str(broken["path"])], "rows": 2, "quarantined": 2,
                                 "runs": ["R1"]}  # fmt: skip
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
    assert recon.query("SELECT path FROM ingested_files WHERE kind = 'processed'") == [
        (fixed["path"],)
    ]
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
    assert "a row for it was quarantined" in text and "line 3)" in text
    shown = recon("quarantine").stdout
    assert "..." not in shown.split("raw")[0]  # the reason is wrapped, not cut
    assert "success_values or failure_values in recon.toml)" in shown
