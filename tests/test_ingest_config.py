"""Per-source settings change how files are read: mapping, vocabulary, encoding, zone, masking."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

from .conftest import Recon


def test_column_mapping_and_status_vocabulary_from_recon_toml(recon: Recon, write_file) -> None:  # type: ignore[no-untyped-def]
    recon.write_config(
        "[sources.erp]\n"
        'success_values = ["Posted"]\n'
        'failure_values = ["Bounced"]\n'
        "[sources.erp.columns]\n"
        'txn_id = "Transaction ID"\n'
        'amount = "Amount (GBP)"\n'
        'status = "Result"\n'
        'run_id = "Batch"\n'
    )
    path = write_file(
        "erp.csv",
        "Transaction ID,Amount (GBP),Result,Batch\nA1,10.00,posted,B1\nA2,5.50,BOUNCED,B1\nA3,1.00,Lost,B1\n",
    )
    result, files = recon.ingest(path, source="erp")
    assert result.code == 3, result.stderr
    assert (files[0]["rows_loaded"], files[0]["rows_quarantined"]) == (2, 1)
    rows = recon.query("SELECT txn_id, amount, outcome FROM transactions ORDER BY txn_id")
    assert rows == [("A1", Decimal("10.0000"), "success"), ("A2", Decimal("5.5000"), "failure")]
    reason = recon.query("SELECT reason FROM quarantine")[0][0]
    assert "unknown status 'Lost'" in reason and "POSTED, BOUNCED" in reason


def test_mapped_column_missing_names_the_mapping(recon: Recon, write_file) -> None:  # type: ignore[no-untyped-def]
    recon.write_config('[sources.erp.columns]\ntxn_id = "Transaction ID"\n')
    path = write_file("erp.csv", "id,amount,status,run_id\n1,1.00,OK,R\n")
    result, _ = recon.ingest(path, source="erp")
    assert result.code == 1
    assert "txn_id (mapped to 'Transaction ID')" in result.stderr
    assert "erp.csv" in result.stderr and "nothing from this file was loaded" in result.stderr


def test_declared_latin1_encoding_reads_accents(recon: Recon, write_file) -> None:  # type: ignore[no-untyped-def]
    recon.write_config('[sources.legacy]\nencoding = "latin-1"\n')
    path = write_file(
        "legacy.csv",
        "txn_id,amount,status,run_id,error_message\nT1,1.00,FAILED,R,Crédit refusé\n".encode(
            "latin-1"
        ),
    )
    result, _ = recon.ingest(path, source="legacy")
    assert result.code == 0, result.stderr
    assert recon.query("SELECT error_message FROM transactions") == [("Crédit refusé",)]


def test_undeclared_encoding_quarantines_only_the_bad_row(recon: Recon, write_file) -> None:  # type: ignore[no-untyped-def]
    path = write_file(
        "mixed.csv",
        b"txn_id,amount,status,run_id,error_message\nT1,1.00,OK,R,fine\nT2,2.00,FAILED,R,Cr\xe9dit\n",
    )
    result, files = recon.ingest(path)
    assert result.code == 3
    assert (files[0]["rows_loaded"], files[0]["rows_quarantined"]) == (1, 1)
    line, reason = recon.query("SELECT line, reason FROM quarantine")[0]
    assert line == 3 and "encoding" in reason


def test_naive_times_are_in_the_source_zone_and_cutoff_sets_the_business_day(
    recon: Recon,
    write_file,  # type: ignore[no-untyped-def]
) -> None:
    recon.write_config('[sources.ldn]\ntimezone = "Europe/London"\ncutoff = "17:00"\n')
    path = write_file(
        "times.csv",
        "txn_id,amount,status,run_id,processed_at\n"
        "T1,1.00,OK,R,2026-07-01T16:59:59\n"  # BST: 15:59:59Z, before the cut-off
        "T2,1.00,OK,R,2026-07-01T17:00:00\n"  # at the cut-off: next business day
        "T3,1.00,OK,R,2026-07-01T09:00:00-04:00\n",  # an explicit offset is honoured
    )
    result, _ = recon.ingest(path, source="ldn")
    assert result.code == 0, result.stderr
    rows = recon.query(
        "SELECT txn_id, processed_at, business_date FROM transactions ORDER BY txn_id"
    )
    assert rows == [
        ("T1", datetime(2026, 7, 1, 15, 59, 59, tzinfo=UTC), date(2026, 7, 1)),
        ("T2", datetime(2026, 7, 1, 16, 0, 0, tzinfo=UTC), date(2026, 7, 2)),
        ("T3", datetime(2026, 7, 1, 13, 0, 0, tzinfo=UTC), date(2026, 7, 1)),
    ]


def test_declared_sensitive_column_is_masked_whole(recon: Recon, write_file) -> None:  # type: ignore[no-untyped-def]
    recon.write_config('[sources.s]\nsensitive_columns = ["customer_email"]\n')
    path = write_file(
        "s.csv",
        "txn_id,amount,status,run_id,customer_email\nT1,1.00,OK,R,ann@example.com\nT2,x,OK,R,bob@example.com\n",
    )
    result, _ = recon.ingest(path, source="s")
    assert result.code == 3
    attributes = json.loads(recon.query("SELECT attributes FROM transactions")[0][0])
    assert attributes == {"customer_email": "[masked]"}
    raw = recon.query("SELECT raw FROM quarantine")[0][0]
    assert "bob@example.com" not in raw and "[masked]" in raw


def test_run_id_option_fills_files_without_a_run_column(recon: Recon, write_file) -> None:  # type: ignore[no-untyped-def]
    path = write_file("norun.csv", "txn_id,amount,status\nT1,1.00,OK\n")
    missing, _ = recon.ingest(path)
    assert missing.code == 1 and "--run-id" in missing.stderr
    result, files = recon.ingest(path, extra=("--run-id", "R-7"))
    assert result.code == 0 and files[0]["run_ids"] == ["R-7"]
    run = recon("--json", "runs").json()["runs"][0]
    assert (run["run_id"], run["rows_loaded"], run["ingested_by"]) == (
        "R-7",
        1,
        recon.query("SELECT ingested_by FROM ingested_files")[0][0],
    )


def test_date_only_processed_at_is_local_midnight_not_utc(recon: Recon, write_file) -> None:  # type: ignore[no-untyped-def]
    recon.write_config('[sources.ny]\ntimezone = "America/New_York"\n')
    path = write_file(
        "d.csv",
        "txn_id,amount,status,run_id,processed_at\n"
        "T1,1.00,OK,R,2026-07-01\n"
        "T2,1.00,OK,R,2026-07-01T23:30:00.5+02:00\n",
    )
    result, _ = recon.ingest(path, source="ny")
    assert result.code == 0, result.stderr
    rows = recon.query(
        "SELECT txn_id, processed_at, business_date FROM transactions ORDER BY txn_id"
    )
    assert rows == [
        ("T1", datetime(2026, 7, 1, 4, 0, tzinfo=UTC), date(2026, 7, 1)),
        ("T2", datetime(2026, 7, 1, 21, 30, 0, 500000, tzinfo=UTC), date(2026, 7, 1)),
    ]


def test_a_source_missing_from_the_settings_is_refused_unless_new(
    recon: Recon,
    write_file,  # type: ignore[no-untyped-def]
) -> None:
    recon.write_config('[sources.payments]\ntimezone = "Europe/London"\n')
    log = write_file("log.csv", "txn_id,amount,status,run_id\nT1,1.00,OK,R1\n")
    typo = recon("ingest", "--source", "paymnets", log)  # a typo would be a source for good
    assert typo.code == 2
    assert "source 'paymnets' is not configured in recon.toml (configured: payments)" in (
        " ".join(typo.stderr.split())
    )
    right = recon("ingest", "--source", "payments", log)
    assert right.code == 0 and "not configured" not in right.stderr
    new = recon("ingest", "--source", "refunds", "--new-source", log)
    assert new.code == 0 and "new source 'refunds'" in new.stderr
    assert recon.query("SELECT DISTINCT source FROM transactions ORDER BY 1") == [
        ("payments",),
        ("refunds",),
    ]
