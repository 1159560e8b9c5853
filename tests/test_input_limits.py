"""Input size limits: a field over 1 MB, a JSON Lines line over 16 MB, and a gzip bomb."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from reconcile.ingest import readers

from .conftest import Recon

MB = 1024 * 1024


def _quarantine(recon: Recon) -> list[dict[str, Any]]:
    result = recon("--json", "quarantine", "--limit", "0")
    assert result.code == 0, result.stderr
    return sorted(result.json()["quarantine"], key=lambda row: row["line"])


def test_a_small_gzip_that_expands_past_the_limit_is_refused_and_nothing_loads(
    recon: Recon, write_file
) -> None:  # type: ignore[no-untyped-def]
    assert recon("init").code == 0
    # 60 MB of valid rows (4.3 million of them) in about 120 kB: a ratio of 500.
    body = b"txn_id,amount,status,run_id\n" + b"T1,1.00,OK,R1\n" * 4_300_000
    bomb = write_file("run.csv.gz", gzip.compress(body, 9))
    assert bomb.stat().st_size < 150_000
    result, _ = recon.ingest(bomb)
    assert result.code == 1, result.stderr
    assert str(bomb) in result.stderr and "decompression bomb" in result.stderr
    assert recon.query("SELECT count(*) FROM ingested_files") == [(0,)]
    assert recon.query("SELECT count(*) FROM transactions") == [(0,)]
    assert recon.query("SELECT count(*) FROM quarantine") == [(0,)]
    # A genuine gzip log (within the ratio) still loads.
    fine = write_file("ok.csv.gz", gzip.compress(b"txn_id,amount,status,run_id\nT1,1.00,OK,R1\n"))
    assert recon.ingest(fine)[0].code == 0


def test_a_json_lines_field_over_the_limit_is_quarantined_naming_the_field(
    recon: Recon, write_file
) -> None:  # type: ignore[no-untyped-def]
    def line(txn: str, **extra: str) -> str:
        return json.dumps({"txn_id": txn, "amount": "1.00", "status": "OK", "run_id": "R1"} | extra)

    wide = {f"f{n}": "y" * (600 * 1024) for n in range(30)}  # each field fine, the line not
    path = write_file(
        "run.jsonl",
        "\n".join(
            [line("T1"), line("T2", note="x" * (2 * MB)), line("T3"), line("T4", **wide), ""]
        ),
    )
    result, [entry] = recon.ingest(path)
    assert result.code == 3, result.stderr
    assert (entry["rows_read"], entry["rows_loaded"], entry["rows_quarantined"]) == (4, 2, 2)
    long_field, long_line = _quarantine(recon)
    assert (long_field["line"], long_field["column"]) == (2, "note")
    assert long_field["path"] == str(path)
    assert "field note holds 2097" in long_field["reason"]
    assert f"limit of {readers.MAX_FIELD_BYTES} bytes (1 MB) per field" in long_field["reason"]
    assert long_line["line"] == 4 and "line longer than 16 MB" in long_line["reason"]
    for row in (long_field, long_line):  # neither value is kept, in the quarantine either
        assert len(json.dumps(row)) < 10_000
    assert recon.query("SELECT max(strlen(raw)) < 10000 FROM quarantine") == [(True,)]


def test_a_csv_field_over_the_limit_is_quarantined_and_later_lines_keep_their_numbers(
    recon: Recon, write_file
) -> None:  # type: ignore[no-untyped-def]
    long = "\n".join(["z" * (700 * 1024)] * 3)  # 2.1 MB over lines 2 to 4
    path: Path = write_file(
        "run.csv",
        "txn_id,amount,status,run_id,note\n"  # line 1
        f'T1,1.00,OK,R1,"{long}"\n'  # lines 2-4
        "T2,,OK,R1,fine\n"  # line 5: empty amount
        "T3,1.00,OK,R1,fine\n",  # line 6
    )
    result, [entry] = recon.ingest(path)
    assert result.code == 3, result.stderr
    assert (entry["rows_read"], entry["rows_loaded"], entry["rows_quarantined"]) == (3, 1, 2)
    long_field, empty = _quarantine(recon)
    assert (long_field["line"], long_field["column"]) == (2, "note")
    assert "over the limit" in long_field["reason"] and len(json.dumps(long_field)) < 10_000
    assert (empty["line"], empty["column"], empty["reason"]) == (5, "amount", "empty amount")
