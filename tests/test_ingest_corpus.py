"""A corpus of awkward input files, each run through the real `recon --json ingest` and then
checked in the database, the way a user (or an auditor) would check it.

Contract under test (the ingest issue):
- CSV delimiter, quoting and header are detected; UTF-8 with or without BOM; JSON Lines; Parquet.
- A row with an empty key, an unparsable amount, an unknown status or an impossible date goes to
  `quarantine` with the file path, the physical line (header = line 1), the column, a reason and
  the masked raw row; the good rows load.
- For every file `rows_read == rows_loaded + rows_quarantined`, in the JSON and in the tables.
- A file that cannot be read at all exits 1 with a message naming the file, what is wrong and
  what to do, and loads nothing (no rows in any table, no `ingested_files` row).
- Re-ingesting the same bytes changes nothing (`already_ingested: true`); a txn_id repeated
  within a run is data; no input ever produces a Python traceback.
- Exit 0: all rows loaded; 3: some rows quarantined; 1: a file is unreadable.
"""

from __future__ import annotations

import gzip
import json
import random
import string
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.conftest import Recon, Result

# Many input cases through the CLI: run in this process (tests/support.py), not one
# interpreter each; the real-process contract is kept by test_setup, test_sample_data and others.
pytestmark = pytest.mark.in_process

WriteFile = Callable[[str, "str | bytes"], Path]

HEADER = "txn_id,amount,status,run_id"
ALL_TABLES = (
    "transactions",
    "quarantine",
    "ingested_files",
    "runs",
    "expected_transactions",
    "control_totals",
)
PAN = "4111111111111111"  # a Luhn-valid test card number


# --- helpers -------------------------------------------------------------------------------


def ingest(recon: Recon, *paths: Path, extra: tuple[str, ...] = ()) -> tuple[Result, list[dict]]:
    """`recon --json ingest --source src FILE...`; never a traceback, stdout always JSON."""
    result = recon("--json", "ingest", "--source", "src", *extra, *paths)
    assert "Traceback" not in result.stderr, result.stderr
    assert "internal error" not in result.stderr, result.stderr
    try:
        files = json.loads(result.stdout)["files"]
    except (ValueError, KeyError) as exc:  # pragma: no cover - reported with context
        raise AssertionError(
            f"stdout is not the ingest JSON ({exc}); exit {result.code}\n"
            f"stdout: {result.stdout[:2000]}\nstderr: {result.stderr[:2000]}"
        ) from None
    assert len(files) == len(paths)
    return result, files


def fetch(recon: Recon, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """Rows as dicts, read straight from the database file."""
    with duckdb.connect(str(recon.db), read_only=True) as conn:
        cursor = conn.execute(sql, params or [])
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def loaded_rows(recon: Recon, file_id: int) -> list[dict[str, Any]]:
    return fetch(recon, "SELECT * FROM transactions WHERE file_id = ? ORDER BY line", [file_id])


def quarantined_rows(recon: Recon, file_id: int) -> list[dict[str, Any]]:
    return fetch(recon, "SELECT * FROM quarantine WHERE file_id = ? ORDER BY line", [file_id])


def by_txn(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["txn_id"]: row for row in rows}


def attributes(row: dict[str, Any]) -> dict[str, Any]:
    value = row["attributes"]
    return json.loads(value) if isinstance(value, str) else (value or {})


def assert_accounted(recon: Recon, entry: dict[str, Any]) -> None:
    """rows_read == rows_loaded + rows_quarantined, and the tables hold exactly those rows."""
    assert "error" not in entry, entry
    assert entry["rows_read"] == entry["rows_loaded"] + entry["rows_quarantined"], entry
    file_id = entry["file_id"]
    [(in_transactions,)] = recon.query(
        "SELECT count(*) FROM transactions WHERE file_id = ?", [file_id]
    )
    [(in_quarantine,)] = recon.query("SELECT count(*) FROM quarantine WHERE file_id = ?", [file_id])
    assert (in_transactions, in_quarantine) == (entry["rows_loaded"], entry["rows_quarantined"])
    [recorded] = fetch(recon, "SELECT * FROM ingested_files WHERE file_id = ?", [file_id])
    assert recorded["path"] == entry["path"]
    assert recorded["sha256"] == entry["sha256"]
    assert (recorded["rows_read"], recorded["rows_loaded"], recorded["rows_quarantined"]) == (
        entry["rows_read"],
        entry["rows_loaded"],
        entry["rows_quarantined"],
    )


def ingest_one(recon: Recon, path: Path, expected_exit: int) -> tuple[Result, dict[str, Any]]:
    """Ingest one readable file, check the exit code and the row accounting."""
    result, [entry] = ingest(recon, path)
    assert result.code == expected_exit, (result.code, result.stderr, entry)
    assert entry["already_ingested"] is False
    assert_accounted(recon, entry)
    return result, entry


def table_counts(recon: Recon) -> dict[str, int]:
    return {table: recon.query(f"SELECT count(*) FROM {table}")[0][0] for table in ALL_TABLES}


def assert_refused(
    recon: Recon, result: Result, files: list[dict], path: Path, *words: str
) -> None:
    """Exit 1, the message names the file, says what is wrong and what to do; nothing loaded."""
    assert result.code == 1, (result.code, result.stderr)
    assert str(path) in result.stderr, result.stderr
    assert "what to do" in result.stderr.lower(), result.stderr
    for word in words:
        assert word.lower() in result.stderr.lower(), (word, result.stderr)
    [entry] = [entry for entry in files if entry["path"] == str(path)]
    assert entry.get("error"), entry
    assert "file_id" not in entry
    assert recon.query("SELECT count(*) FROM ingested_files WHERE path = ?", [str(path)]) == [(0,)]
    assert recon.query("SELECT count(*) FROM quarantine WHERE path = ?", [str(path)]) == [(0,)]


def parquet_file(tmp_path: Path, name: str, select_sql: str) -> Path:
    """A valid Parquet file written by DuckDB itself."""
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as conn:
        conn.execute(f"COPY ({select_sql}) TO '{path}' (FORMAT parquet)")
    return path


PARQUET_1000_ROWS = (
    "SELECT 'T' || i AS txn_id, (i * 1.25)::DECIMAL(18, 2) AS amount, 'OK' AS status, "
    "'R1' AS run_id FROM range(1000) t(i)"
)


# --- files that cannot be read at all --------------------------------------------------------


def _png() -> bytes:
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4


def _random_binary() -> bytes:
    return random.Random(20261124).randbytes(4096)


def _xlsx() -> bytes:
    return b"PK\x03\x04\x14\x00\x06\x00" + b"[Content_Types].xml" + bytes(200)


UNREADABLE = [
    pytest.param("empty.csv", b"", ("empty",), id="empty-csv"),
    pytest.param("empty.jsonl", b"", ("empty",), id="empty-jsonl"),
    pytest.param("blank.csv", b"\n\r\n  \n", ("no records",), id="only-blank-lines-csv"),
    pytest.param("blank.jsonl", b"\n\n\n", ("no records",), id="only-blank-lines-jsonl"),
    pytest.param("picture.csv", _png(), ("PNG",), id="png-named-csv"),
    pytest.param("noise.csv", _random_binary(), ("text",), id="random-binary-named-csv"),
    pytest.param("book.csv", _xlsx(), ("Excel",), id="xlsx-named-csv"),
    pytest.param(
        "no_header.csv", b"T1,10.00,OK,R1\nT2,20.00,OK,R1\n", ("header",), id="csv-without-header"
    ),
    pytest.param(
        "misnamed.jsonl",
        (HEADER + "\nT1,10.00,OK,R1\n").encode(),
        ("JSON object",),
        id="csv-named-jsonl",
    ),
]


@pytest.mark.parametrize(("name", "content", "words"), UNREADABLE)
def test_unreadable_file_exits_1_names_it_and_loads_nothing(
    recon: Recon, write_file: WriteFile, name: str, content: bytes, words: tuple[str, ...]
) -> None:
    path = write_file(name, content)
    result, files = ingest(recon, path)
    assert_refused(recon, result, files, path, *words)
    assert table_counts(recon) == dict.fromkeys(ALL_TABLES, 0)


@pytest.mark.parametrize(
    "cut", [pytest.param(0.5, id="cut-in-half"), pytest.param(-8, id="footer-lost")]
)
def test_truncated_parquet_exits_1_and_loads_nothing(
    recon: Recon, tmp_path: Path, cut: float
) -> None:
    whole = parquet_file(tmp_path, "whole.parquet", PARQUET_1000_ROWS).read_bytes()
    size = int(len(whole) * cut) if cut > 0 else len(whole) + int(cut)
    path = tmp_path / "in" / "run.parquet"
    path.write_bytes(whole[:size])
    result, files = ingest(recon, path)
    assert_refused(recon, result, files, path, "parquet")
    assert table_counts(recon) == dict.fromkeys(ALL_TABLES, 0)


@pytest.mark.parametrize(
    ("name", "content", "missing"),
    [
        pytest.param("run.csv", "txn_id,status,run_id\nT1,OK,R1\n", "amount", id="csv-no-amount"),
        pytest.param(
            "run.jsonl",
            '{"txn_id": "T1", "amount": "1.00", "run_id": "R1"}\n',
            "status",
            id="jsonl-no-status",
        ),
        pytest.param("run.parquet", None, "txn_id", id="parquet-no-txn_id"),
    ],
)
def test_missing_required_column_exits_1_and_names_the_column(
    recon: Recon,
    write_file: WriteFile,
    tmp_path: Path,
    name: str,
    content: str | None,
    missing: str,
) -> None:
    if content is None:
        path = parquet_file(
            tmp_path, name, "SELECT 1.00::DECIMAL(18,2) AS amount, 'OK' AS status, 'R1' AS run_id"
        )
    else:
        path = write_file(name, content)
    result, files = ingest(recon, path)
    assert_refused(recon, result, files, path, missing, "missing")
    assert table_counts(recon) == dict.fromkeys(ALL_TABLES, 0)


UTF16_TEXT = "txn_id\tamount\tstatus\trun_id\r\nT1\t10.00\tOK\tR1\r\nT2\t2.50\tFAILED\tR1\r\n"


def test_utf16_file_is_never_called_binary_it_loads_or_gets_an_encoding_hint(
    recon: Recon, write_file: WriteFile
) -> None:
    # Excel's "Unicode Text" export: UTF-16 LE with a BOM, tab-delimited. Either outcome is
    # fine: read correctly, or refused with a message that names the encoding problem.
    path = write_file("excel_unicode.txt", UTF16_TEXT.encode("utf-16"))
    result, files = ingest(recon, path)
    if result.code == 0:
        assert_accounted(recon, files[0])
        got = {r["txn_id"]: r["amount"] for r in loaded_rows(recon, files[0]["file_id"])}
        assert got == {"T1": Decimal("10.00"), "T2": Decimal("2.50")}
        return
    assert_refused(recon, result, files, path)
    assert "utf-16" in result.stderr.lower() or "encoding" in result.stderr.lower(), result.stderr
    assert table_counts(recon) == dict.fromkeys(ALL_TABLES, 0)


def test_utf16_file_loads_when_the_source_declares_that_encoding(
    recon: Recon, write_file: WriteFile
) -> None:
    recon.write_config('[sources.src]\nencoding = "utf-16"\n')
    path = write_file("excel_unicode.txt", UTF16_TEXT.encode("utf-16"))
    _, entry = ingest_one(recon, path, expected_exit=0)
    got = {r["txn_id"]: r["amount"] for r in loaded_rows(recon, entry["file_id"])}
    assert got == {"T1": Decimal("10.00"), "T2": Decimal("2.50")}


def test_good_file_still_loads_when_another_file_in_the_command_is_bad(
    recon: Recon, write_file: WriteFile
) -> None:
    bad = write_file("bad.csv", "txn_id,status,run_id\nT1,OK,R1\n")
    good = write_file("good.csv", f"{HEADER}\nT1,10.00,OK,R1\nT2,20.00,OK,R1\n")
    result, files = ingest(recon, bad, good)
    assert_refused(recon, result, files, bad, "amount")
    [good_entry] = [entry for entry in files if entry["path"] == str(good)]
    assert good_entry["rows_loaded"] == 2
    assert_accounted(recon, good_entry)
    assert recon.query("SELECT DISTINCT file_id FROM transactions") == [(good_entry["file_id"],)]
    assert recon.query("SELECT path FROM ingested_files") == [(str(good),)]


# --- header only, idempotence, repeats -------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "csv-crlf", "parquet"])
def test_header_only_file_loads_zero_rows_and_exits_0(
    recon: Recon, write_file: WriteFile, tmp_path: Path, fmt: str
) -> None:
    if fmt == "parquet":
        path = parquet_file(
            tmp_path,
            "empty_run.parquet",
            "SELECT 'T1' AS txn_id, 1.00::DECIMAL(18,2) AS amount, 'OK' AS status, "
            "'R1' AS run_id WHERE false",
        )
    else:
        newline = "\r\n" if fmt == "csv-crlf" else "\n"
        path = write_file("empty_run.csv", HEADER + newline)
    _, entry = ingest_one(recon, path, expected_exit=0)
    assert (entry["rows_read"], entry["rows_loaded"], entry["rows_quarantined"]) == (0, 0, 0)
    assert recon.query("SELECT count(*) FROM ingested_files") == [(1,)]


def test_same_file_twice_changes_nothing_and_reports_already_ingested(
    recon: Recon, write_file: WriteFile
) -> None:
    path = write_file("run.csv", f"{HEADER}\nT1,10.00,OK,R1\nT2,20.00,FAILED,R1\n")
    _, first = ingest_one(recon, path, expected_exit=0)
    before = table_counts(recon)
    copy = write_file("run-copy.csv", path.read_bytes())  # same bytes under another name
    result, files = ingest(recon, path, copy)
    assert result.code == 0, result.stderr
    for entry in files:
        assert entry["already_ingested"] is True
        assert entry["file_id"] == first["file_id"]
        assert entry["sha256"] == first["sha256"]
        assert (entry["rows_read"], entry["rows_loaded"], entry["rows_quarantined"]) == (2, 2, 0)
    assert table_counts(recon) == before


def test_txn_id_repeated_within_a_run_loads_both_rows(recon: Recon, write_file: WriteFile) -> None:
    path = write_file(
        "retry.csv", f"{HEADER}\nT1,10.00,FAILED,R1\nT1,10.00,OK,R1\nT1,10.00,OK,R1\n"
    )
    _, entry = ingest_one(recon, path, expected_exit=0)
    rows = loaded_rows(recon, entry["file_id"])
    assert [(r["txn_id"], r["line"], r["outcome"]) for r in rows] == [
        ("T1", 2, "failure"),
        ("T1", 3, "success"),
        ("T1", 4, "success"),
    ]


# --- CSV dialects -----------------------------------------------------------------------------


def _dialect(delim: str) -> str:
    rows = [
        ["txn_id", "amount", "status", "run_id", "error_message"],
        ["T1", "10.50", "OK", "R1", "plain"],
        ["T2", "-3.25", "FAILED", "R1", '"has , comma ; semicolon | pipe"'],
        ["T3", '"1,234.56"', "OK", "R1", ""],
    ]
    return "".join(delim.join(row) + "\n" for row in rows)


@pytest.mark.parametrize(
    ("name", "delim"),
    [
        pytest.param("run.csv", ";", id="semicolon"),
        pytest.param("run.tsv", "\t", id="tab-tsv"),
        pytest.param("run.csv", "|", id="pipe"),
    ],
)
def test_delimiter_is_detected(recon: Recon, write_file: WriteFile, name: str, delim: str) -> None:
    path = write_file(name, _dialect(delim))
    _, entry = ingest_one(recon, path, expected_exit=0)
    rows = by_txn(loaded_rows(recon, entry["file_id"]))
    assert {t: r["amount"] for t, r in rows.items()} == {
        "T1": Decimal("10.50"),
        "T2": Decimal("-3.25"),
        "T3": Decimal("1234.56"),
    }
    assert rows["T2"]["error_message"] == "has , comma ; semicolon | pipe"
    assert rows["T1"]["error_message"] == "plain"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_utf8_bom_is_ignored_and_the_first_column_is_found(
    recon: Recon, write_file: WriteFile, fmt: str
) -> None:
    if fmt == "csv":
        text = f"{HEADER},merchant\nT1,10.00,OK,R1,Café Zürich €\nT2,2.00,OK,R1,naïve\n"
    else:
        text = (
            '{"txn_id": "T1", "amount": "10.00", "status": "OK", "run_id": "R1", '
            '"merchant": "Café Zürich €"}\n'
            '{"txn_id": "T2", "amount": "2.00", "status": "OK", "run_id": "R1", '
            '"merchant": "naïve"}\n'
        )
    path = write_file(f"bom.{fmt}", b"\xef\xbb\xbf" + text.encode("utf-8"))
    _, entry = ingest_one(recon, path, expected_exit=0)
    rows = by_txn(loaded_rows(recon, entry["file_id"]))
    assert sorted(rows) == ["T1", "T2"]
    assert attributes(rows["T1"]) == {"merchant": "Café Zürich €"}
    assert attributes(rows["T2"]) == {"merchant": "naïve"}


def test_crlf_line_endings_leave_no_carriage_returns_and_keep_line_numbers(
    recon: Recon, write_file: WriteFile
) -> None:
    text = f"{HEADER},note\r\nT1,10.00,OK,R1,a\r\nT2,abc,OK,R1,b\r\nT3,3.00,FAILED,R1,c\r\n"
    path = write_file("crlf.csv", text)
    _, entry = ingest_one(recon, path, expected_exit=3)
    rows = loaded_rows(recon, entry["file_id"])
    assert [(r["txn_id"], r["line"], r["status"], attributes(r)) for r in rows] == [
        ("T1", 2, "OK", {"note": "a"}),
        ("T3", 4, "FAILED", {"note": "c"}),
    ]
    assert [(q["line"], q["column_name"]) for q in quarantined_rows(recon, entry["file_id"])] == [
        (3, "amount")
    ]


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(f"{HEADER}\nT1,1.00,OK,R1\nT2,2.00,OK,R1\n\n\n", id="lf-trailing-blank-lines"),
        pytest.param(
            f"{HEADER}\r\nT1,1.00,OK,R1\r\nT2,2.00,OK,R1\r\n\r\n\r\n",
            id="crlf-trailing-blank-lines",
        ),
    ],
)
def test_line_endings_and_trailing_blank_lines_do_not_make_rows(
    recon: Recon, write_file: WriteFile, content: str
) -> None:
    path = write_file("endings.csv", content)
    _, entry = ingest_one(recon, path, expected_exit=0)
    assert (entry["rows_read"], entry["rows_loaded"], entry["rows_quarantined"]) == (2, 2, 0)
    rows = loaded_rows(recon, entry["file_id"])
    assert [(r["txn_id"], r["line"], r["run_id"]) for r in rows] == [
        ("T1", 2, "R1"),
        ("T2", 3, "R1"),
    ]


@pytest.mark.parametrize(
    "content",
    [
        # Two exports concatenated: a Unix header, Windows rows.
        pytest.param(f"{HEADER}\nT1,1.00,OK,R1\r\nT2,2.00,OK,R1\r\n", id="mixed-lf-and-crlf"),
        pytest.param(f"{HEADER}\nT1,1.00,OK,R1\nT2,2.00,OK,R1\n\r\n", id="lf-then-crlf-blank-line"),
    ],
)
def test_mixed_line_endings_are_refused_with_a_clear_fix(
    recon: Recon, write_file: WriteFile, content: str
) -> None:
    """DuckDB's CSV sniffer cannot read a file whose lines end differently; say so plainly."""
    path = write_file("endings.csv", content)
    result, files = ingest(recon, path)
    assert_refused(recon, result, files, path, "line endings")


def test_columns_in_any_order_upper_case_headers_and_padded_values(
    recon: Recon, write_file: WriteFile
) -> None:
    text = (
        "STATUS , Amount,Run_ID, TXN_ID ,Currency\n"
        " ok , 10.50 , R1 , T1 , eur \n"
        "Failed,  -2.00,R1,T2,usd\n"
    )
    path = write_file("shuffled.csv", text)
    _, entry = ingest_one(recon, path, expected_exit=0)
    rows = by_txn(loaded_rows(recon, entry["file_id"]))
    assert sorted(rows) == ["T1", "T2"]
    assert (rows["T1"]["amount"], rows["T1"]["run_id"], rows["T1"]["outcome"]) == (
        Decimal("10.50"),
        "R1",
        "success",
    )
    assert rows["T1"]["currency"] == "EUR"
    assert (rows["T2"]["amount"], rows["T2"]["outcome"], rows["T2"]["currency"]) == (
        Decimal("-2.00"),
        "failure",
        "USD",
    )


def test_extra_columns_are_kept_as_attributes(recon: Recon, write_file: WriteFile) -> None:
    text = (
        f"{HEADER},merchant_id,app_version,channel\n"
        "T1,10.00,OK,R1,M1026,1.4.2,web\n"
        "T2,20.00,OK,R1,M1038,,pos\n"
    )
    path = write_file("extras.csv", text)
    _, entry = ingest_one(recon, path, expected_exit=0)
    rows = by_txn(loaded_rows(recon, entry["file_id"]))
    assert attributes(rows["T1"]) == {
        "merchant_id": "M1026",
        "app_version": "1.4.2",
        "channel": "web",
    }
    t2 = attributes(rows["T2"])
    assert t2["merchant_id"] == "M1038" and t2["channel"] == "pos"
    assert t2.get("app_version") in (None, "")


def test_gzip_compressed_csv_loads(recon: Recon, write_file: WriteFile) -> None:
    text = f"{HEADER}\nT1,10.00,OK,R1\nT2,0.01,OK,R1\n"
    path = write_file("run.csv.gz", gzip.compress(text.encode()))
    _, entry = ingest_one(recon, path, expected_exit=0)
    rows = by_txn(loaded_rows(recon, entry["file_id"]))
    assert {t: r["amount"] for t, r in rows.items()} == {
        "T1": Decimal("10.00"),
        "T2": Decimal("0.01"),
    }


# --- quoting and physical line numbers ------------------------------------------------------


def test_quoted_fields_keep_newlines_delimiters_and_doubled_quotes_exactly(
    recon: Recon, write_file: WriteFile
) -> None:
    text = (
        '"txn_id","amount","status","run_id","error_message"\n'  # line 1
        'T1,1.00,FAILED,R1,"first line\n'  # line 2
        'second, line with ""quotes"" and ; and |\n'  # line 3
        'third line"\n'  # line 4
        'T2,2.00,OK,R1,""""\n'  # line 5
        'T3,3.00,OK,R1,"a,b"\n'  # line 6
    )
    path = write_file("quoted.csv", text)
    _, entry = ingest_one(recon, path, expected_exit=0)
    rows = by_txn(loaded_rows(recon, entry["file_id"]))
    assert rows["T1"]["error_message"] == (
        'first line\nsecond, line with "quotes" and ; and |\nthird line'
    )
    assert rows["T2"]["error_message"] == '"'
    assert rows["T3"]["error_message"] == "a,b"
    assert {t: r["line"] for t, r in rows.items()} == {"T1": 2, "T2": 5, "T3": 6}


def test_bad_rows_after_multiline_quoted_rows_get_their_physical_line(
    recon: Recon, write_file: WriteFile
) -> None:
    lines = [
        f"{HEADER},note",  # 1
        'T1,1.00,OK,R1,"two',  # 2
        'lines"',  # 3
        "T2,abc,OK,R1,bad amount",  # 4
        "T3,3.00,OK,R1,extra,field,here",  # 5: too many fields
        'T4,4.00,OK,R1,"three',  # 6
        "",  # 7 (inside quotes)
        'lines"',  # 8
        "T5,5.00,PENDING,R1,unknown status",  # 9
        "T6,6.00,OK,R1",  # 10: too few fields
        "T7,7.00,OK,R1,fine",  # 11
    ]
    path = write_file("lines.csv", "\n".join(lines) + "\n")
    _, entry = ingest_one(recon, path, expected_exit=3)
    assert {r["txn_id"]: r["line"] for r in loaded_rows(recon, entry["file_id"])} == {
        "T1": 2,
        "T4": 6,
        "T7": 11,
    }
    quarantine = quarantined_rows(recon, entry["file_id"])
    assert [q["line"] for q in quarantine] == [4, 5, 9, 10]
    by_line = {q["line"]: q for q in quarantine}
    assert by_line[4]["column_name"] == "amount"
    assert by_line[9]["column_name"] == "status"
    for q in quarantine:
        assert q["path"] == str(path)
        assert q["reason"]
    assert "extra" in by_line[5]["raw"]
    assert "T6" in by_line[10]["raw"]
    assert entry["rows_read"] == 7


# --- validation and quarantine ------------------------------------------------------------


def test_bad_rows_go_to_quarantine_with_path_line_column_reason_and_raw_row(
    recon: Recon, write_file: WriteFile
) -> None:
    lines = [
        f"{HEADER},business_date,processed_at,currency",  # 1
        "T1,10.00,OK,R1,2026-11-24,2026-11-24T10:00:00Z,EUR",  # 2 good
        ",11.00,OK,R1,2026-11-24,,EUR",  # 3 empty txn_id
        "T3,,OK,R1,2026-11-24,,EUR",  # 4 empty amount
        "T4,12.3.4,OK,R1,2026-11-24,,EUR",  # 5 unparsable amount
        "T5,13.00,PENDING,R1,2026-11-24,,EUR",  # 6 unknown status
        "T6,14.00,OK,R1,2026-02-30,,EUR",  # 7 impossible business_date
        "T7,15.00,OK,R1,,2026-13-01T10:00:00,EUR",  # 8 impossible processed_at
        "T8,16.00,OK,,2026-11-24,,EUR",  # 9 empty run_id
        "T9,17.00,,R1,2026-11-24,,EUR",  # 10 empty status
        "T10,18.00,failed,R1,2026-11-24,,EUR",  # 11 good (status case-insensitive)
    ]
    path = write_file("mixed.csv", "\n".join(lines) + "\n")
    _, entry = ingest_one(recon, path, expected_exit=3)
    assert (entry["rows_read"], entry["rows_loaded"], entry["rows_quarantined"]) == (10, 2, 8)
    good = by_txn(loaded_rows(recon, entry["file_id"]))
    assert sorted(good) == ["T1", "T10"]
    assert (good["T1"]["line"], good["T10"]["line"]) == (2, 11)
    assert str(good["T1"]["business_date"]) == "2026-11-24"
    quarantine = quarantined_rows(recon, entry["file_id"])
    assert [(q["line"], q["column_name"]) for q in quarantine] == [
        (3, "txn_id"),
        (4, "amount"),
        (5, "amount"),
        (6, "status"),
        (7, "business_date"),
        (8, "processed_at"),
        (9, "run_id"),
        (10, "status"),
    ]
    for q in quarantine:
        assert q["path"] == str(path)
        assert q["reason"].strip()
        assert q["kind"] == "processed"
        raw = json.loads(q["raw"])
        assert isinstance(raw, dict)
    by_line = {q["line"]: q for q in quarantine}
    assert "PENDING" in by_line[6]["reason"]
    assert json.loads(by_line[5]["raw"])["amount"] == "12.3.4"
    assert json.loads(by_line[7]["raw"])["business_date"] == "2026-02-30"
    assert json.loads(by_line[8]["raw"])["processed_at"] == "2026-13-01T10:00:00"
    assert json.loads(by_line[3]["raw"])["amount"] == "11.00"


def test_amount_forms_load_as_exact_decimals(recon: Recon, write_file: WriteFile) -> None:
    amounts = {
        "A1": ("10.5", "10.5"),
        "A2": ("-5.25", "-5.25"),
        "A3": ("-0.01", "-0.01"),
        "A4": ('"1,234.56"', "1234.56"),
        "A5": ('"-1,234,567.89"', "-1234567.89"),
        "A6": ("(12.00)", "-12.00"),
        "A7": ("0.1", "0.1"),
        "A8": ("99999999999999.9999", "99999999999999.9999"),
        "A9": ("+3.00", "3.00"),
        "A10": ("7", "7"),
        "A11": ("0.0001", "0.0001"),
        "A12": ("00012.30", "12.30"),
    }
    body = "".join(f"{txn},{raw},OK,R1\n" for txn, (raw, _) in amounts.items())
    path = write_file("amounts.csv", f"{HEADER}\n{body}")
    _, entry = ingest_one(recon, path, expected_exit=0)
    got = {r["txn_id"]: r["amount"] for r in loaded_rows(recon, entry["file_id"])}
    for txn, (_, want) in amounts.items():
        assert isinstance(got[txn], Decimal), (txn, got[txn])
        assert got[txn] == Decimal(want), (txn, got[txn], want)
    [(total,)] = recon.query("SELECT sum(amount) FROM transactions")
    assert total == sum(Decimal(want) for _, want in amounts.values())


def test_padded_typed_values_parse_and_blank_ones_count_as_empty(
    recon: Recon, write_file: WriteFile
) -> None:
    """Spaces around amounts, dates and times are ignored; a field of spaces is empty."""
    text = (
        f"{HEADER},processed_at,business_date\n"
        'T1," (1,234.50) ",OK,R1, 2026-07-01T16:59:59 , 2026-07-01 \n'  # 2
        "T2,   ,OK,R1,,\n"  # 3 empty amount
        "T3,1.00,OK,R1,  ,  \n"  # 4 blank times: loads, dated the day it was ingested
    )
    path = write_file("padded.csv", text)
    _, entry = ingest_one(recon, path, expected_exit=3)
    rows = by_txn(loaded_rows(recon, entry["file_id"]))
    assert sorted(rows) == ["T1", "T3"]
    assert rows["T1"]["amount"] == Decimal("-1234.50")
    assert rows["T1"]["processed_at"] == datetime(2026, 7, 1, 16, 59, 59, tzinfo=UTC)
    assert rows["T1"]["business_date"] == date(2026, 7, 1)
    ingested_on = date.fromisoformat(recon.env["RECON_NOW"][:10])
    assert (rows["T3"]["processed_at"], rows["T3"]["business_date"]) == (None, ingested_on)
    quarantine = quarantined_rows(recon, entry["file_id"])
    assert [(q["line"], q["column_name"], q["reason"]) for q in quarantine] == [
        (3, "amount", "empty amount")
    ]


def test_unparsable_or_unstorable_amounts_are_quarantined_never_guessed(
    recon: Recon, write_file: WriteFile
) -> None:
    bad = [
        "abc",
        "12.3.4",
        "NaN",
        "Infinity",
        "0x1F",
        '"1,23"',  # not a thousands grouping
        '"12,50"',  # decimal comma: 12.50 or 1250? never guess
        "12 50",
        "999999999999999999999.00",  # does not fit the stored DECIMAL(18, 4)
        "--5",
        "1e3",  # scientific notation and digit separators: no ledger writes these
        "1.2E-2",
        "1_000",
    ]
    body = "T0,1.00,OK,R1\n" + "".join(f"B{i},{raw},OK,R1\n" for i, raw in enumerate(bad))
    path = write_file("amounts_bad.csv", f"{HEADER}\n{body}T9,9.00,OK,R1\n")
    _, entry = ingest_one(recon, path, expected_exit=3)
    assert [r["txn_id"] for r in loaded_rows(recon, entry["file_id"])] == ["T0", "T9"]
    quarantine = quarantined_rows(recon, entry["file_id"])
    assert [(q["line"], q["column_name"]) for q in quarantine] == [
        (3 + i, "amount") for i in range(len(bad))
    ]
    assert [json.loads(q["raw"])["amount"] for q in quarantine] == [b.strip('"') for b in bad]


def test_amount_with_more_decimal_places_than_stored_is_quarantined_not_rounded(
    recon: Recon, write_file: WriteFile
) -> None:
    path = write_file(
        "precise.csv", f"{HEADER}\nT1,1.00,OK,R1\nT2,1.23456,OK,R1\nT3,0.00005,OK,R1\n"
    )
    _, entry = ingest_one(recon, path, expected_exit=3)
    assert [r["txn_id"] for r in loaded_rows(recon, entry["file_id"])] == ["T1"]
    assert [(q["line"], q["column_name"]) for q in quarantined_rows(recon, entry["file_id"])] == [
        (3, "amount"),
        (4, "amount"),
    ]


def test_non_utf8_bytes_quarantine_only_their_row(recon: Recon, write_file: WriteFile) -> None:
    content = (
        f"{HEADER},merchant\n".encode()
        + b"T1,1.00,OK,R1,Cafe\n"
        + b"T2,2.00,OK,R1,Caf\xe9 \xff\xfe\n"  # latin-1 / garbage bytes
        + "T3,3.00,OK,R1,Café\n".encode()
    )
    path = write_file("mixed_encoding.csv", content)
    _, entry = ingest_one(recon, path, expected_exit=3)
    rows = by_txn(loaded_rows(recon, entry["file_id"]))
    assert sorted(rows) == ["T1", "T3"]
    assert attributes(rows["T3"]) == {"merchant": "Café"}
    [q] = quarantined_rows(recon, entry["file_id"])
    assert q["line"] == 3
    assert q["path"] == str(path)
    assert "utf-8" in q["reason"].lower()
    assert "T2" in q["raw"]


def test_nul_byte_quarantines_its_row_and_the_rest_load(
    recon: Recon, write_file: WriteFile
) -> None:
    content = f"{HEADER},note\nT1,1.00,OK,R1,a\nT2,2.00,OK,R1,x\x00y\nT3,3.00,OK,R1,c\n".encode()
    path = write_file("nul.csv", content)
    _, entry = ingest_one(recon, path, expected_exit=3)
    assert [r["txn_id"] for r in loaded_rows(recon, entry["file_id"])] == ["T1", "T3"]
    [q] = quarantined_rows(recon, entry["file_id"])
    assert q["line"] == 3
    assert "nul" in q["reason"].lower()


def test_one_megabyte_field_loads_intact(recon: Recon, write_file: WriteFile) -> None:
    alphabet = string.ascii_letters + string.digits + " .-_"
    big = "".join(random.Random(7).choices(alphabet, k=1_048_576))
    path = write_file(
        "big.csv", f"{HEADER},error_message\nT1,1.00,FAILED,R1,{big}\nT2,2.00,OK,R1,\n"
    )
    _, entry = ingest_one(recon, path, expected_exit=0)
    rows = by_txn(loaded_rows(recon, entry["file_id"]))
    assert rows["T1"]["error_message"] == big.strip()
    assert rows["T2"]["line"] == 3


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_formula_like_text_is_stored_verbatim(
    recon: Recon, write_file: WriteFile, fmt: str
) -> None:
    formulas = ["=cmd|' /C calc'!A0", "+SUM(A1:A9)", "-2+3", '@HYPERLINK("http://x")']
    if fmt == "csv":
        body = "".join(
            f'T{i},1.00,FAILED,R1,"{f.replace(chr(34), chr(34) * 2)}"\n'
            for i, f in enumerate(formulas)
        )
        path = write_file("formula.csv", f"{HEADER},error_message\n{body}")
    else:
        body = "".join(
            json.dumps(
                {
                    "txn_id": f"T{i}",
                    "amount": "1.00",
                    "status": "FAILED",
                    "run_id": "R1",
                    "error_message": f,
                }
            )
            + "\n"
            for i, f in enumerate(formulas)
        )
        path = write_file("formula.jsonl", body)
    _, entry = ingest_one(recon, path, expected_exit=0)
    rows = by_txn(loaded_rows(recon, entry["file_id"]))
    assert [rows[f"T{i}"]["error_message"] for i in range(len(formulas))] == formulas


# --- card data --------------------------------------------------------------------------------


def test_card_numbers_are_masked_and_cvv_is_never_stored(
    recon: Recon, write_file: WriteFile
) -> None:
    text = (
        f"{HEADER},card_number,cvv,error_message\n"
        f"T1,10.00,FAILED,R1,4111 1111 1111 1111,739,card {PAN} declined by issuer\n"
        "T2,oops,OK,R1,5500-0000-0000-0004,846,\n"
        'T3,5.00,OK,R1,4012888888881881,592,"paid with 4012 8888 8888 1881"\n'
    )
    path = write_file("cards.csv", text)
    result, entry = ingest_one(recon, path, expected_exit=3)
    rows = by_txn(loaded_rows(recon, entry["file_id"]))

    def assert_masked(value: str, last4: str) -> None:
        assert value.endswith(last4), value
        assert "".join(ch for ch in value if ch.isdigit()) == last4, value

    assert_masked(attributes(rows["T1"])["card_number"], "1111")
    assert_masked(attributes(rows["T3"])["card_number"], "1881")
    assert rows["T1"]["error_message"].startswith("card ")
    assert rows["T1"]["error_message"].endswith(" declined by issuer")
    assert_masked(rows["T1"]["error_message"][5 : -len(" declined by issuer")], "1111")
    assert "4012888888881881" not in rows["T3"]["error_message"].replace(" ", "")
    assert rows["T3"]["error_message"].endswith("1881")
    for row in rows.values():
        assert "cvv" not in attributes(row)

    [q] = quarantined_rows(recon, entry["file_id"])
    raw = json.loads(q["raw"])
    assert_masked(raw["card_number"], "0004")
    assert "cvv" not in raw

    secrets = [PAN, "5500000000000004", "4012888888881881", "739", "846", "592"]
    stored = json.dumps(
        [
            # card_hmac: a keyed hex digest (the store's random key) may hold "739" by chance
            fetch(recon, "SELECT * EXCLUDE (amount, card_hmac) FROM transactions"),
            fetch(recon, "SELECT * FROM quarantine"),
        ],
        default=str,
    )
    for secret in secrets:
        assert secret not in stored.replace(" ", "").replace("-", ""), secret
    for secret in secrets[:3]:
        assert secret not in result.stdout and secret not in result.stderr


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_cvv_is_never_stored_even_in_rows_that_cannot_be_parsed(
    recon: Recon, write_file: WriteFile, fmt: str
) -> None:
    if fmt == "csv":
        text = (
            f"{HEADER},card_number,cvv,note\n"
            f"T1,1.00,OK,R1,{PAN},739,fine\n"
            "T2,2.00,OK,R1,5500000000000004,846,unquoted, comma\n"  # too many fields
            "T3,3.00,OK,R1,4012888888881881,592\n"  # too few fields
        )
        bad_lines = [3, 4]
    else:
        row = {"txn_id": "T1", "amount": "1.00", "status": "OK", "run_id": "R1"}
        text = (
            json.dumps({**row, "card_number": PAN, "cvv": "739"})
            + "\n"
            + json.dumps({**row, "txn_id": "T2", "card_number": "5500000000000004", "cvv": "846"})[
                :-1
            ]
            + "\n"  # the closing brace is lost
            + json.dumps({**row, "txn_id": "T3", "card_number": "4012888888881881", "cvv": "592"})
            + "\n"
        )
        bad_lines = [2]
    path = write_file(f"cards_broken.{fmt}", text)
    _, entry = ingest_one(recon, path, expected_exit=3)
    quarantine = quarantined_rows(recon, entry["file_id"])
    assert [q["line"] for q in quarantine] == bad_lines
    stored = json.dumps(
        [
            # card_hmac: a keyed hex digest (the store's random key) may hold "739" by chance
            fetch(recon, "SELECT * EXCLUDE (amount, card_hmac) FROM transactions"),
            fetch(recon, "SELECT * FROM quarantine"),
        ],
        default=str,
    )
    for secret in ["739", "846", "592", PAN, "5500000000000004", "4012888888881881"]:
        assert secret not in stored, secret


# --- JSON Lines ---------------------------------------------------------------------------------


def test_jsonl_broken_line_is_quarantined_with_its_line_number(
    recon: Recon, write_file: WriteFile
) -> None:
    lines = [
        '{"txn_id": "T1", "amount": "1.00", "status": "OK", "run_id": "R1"}',  # 1
        "",  # 2 blank
        '{"txn_id": "T2", "amount": ',  # 3 broken (truncated)
        '["not", "an", "object"]',  # 4 valid JSON, not an object
        '{"run_id": "R1", "status": "FAILED", "amount": "4.00", "txn_id": "T4"}',  # 5
        '{"txn_id": "T5", "amount": "x", "status": "OK", "run_id": "R1"}',  # 6 bad amount
    ]
    path = write_file("broken.jsonl", "\n".join(lines) + "\n")
    _, entry = ingest_one(recon, path, expected_exit=3)
    assert {r["txn_id"]: r["line"] for r in loaded_rows(recon, entry["file_id"])} == {
        "T1": 1,
        "T4": 5,
    }
    quarantine = quarantined_rows(recon, entry["file_id"])
    assert [q["line"] for q in quarantine] == [3, 4, 6]
    assert quarantine[0]["raw"] == lines[2]
    assert quarantine[2]["column_name"] == "amount"
    assert entry["rows_read"] == 5


def test_jsonl_amounts_given_as_json_numbers_load_exactly(
    recon: Recon, write_file: WriteFile
) -> None:
    amounts = {
        "T1": "19.99",
        "T2": "0.1",
        "T3": "10",
        "T4": "-0.5",
        "T5": "1234567.89",
        "T6": "12345678901234.56",
        "T7": "1234567890123.4567",
        "T8": "99999999999999.9999",
    }
    body = "".join(
        f'{{"txn_id": "{t}", "amount": {a}, "status": "OK", "run_id": "R1", "n": 1}}\n'
        for t, a in amounts.items()
    )
    path = write_file("numbers.jsonl", body)
    _, entry = ingest_one(recon, path, expected_exit=0)
    got = {r["txn_id"]: r["amount"] for r in loaded_rows(recon, entry["file_id"])}
    assert got == {t: Decimal(a) for t, a in amounts.items()}


# --- Parquet ------------------------------------------------------------------------------------


def test_parquet_loads_exact_decimals_and_quarantines_by_row_number(
    recon: Recon, tmp_path: Path
) -> None:
    path = parquet_file(
        tmp_path,
        "run.parquet",
        "SELECT * FROM (VALUES "
        "('T1', 10.25::DECIMAL(18,2), 'OK', 'R1', 'web'), "
        "('T2', 99999999999999.9999::DECIMAL(18,4), 'OK', 'R1', NULL), "
        "('T3', 3.00::DECIMAL(18,2), 'PENDING', 'R1', 'pos'), "
        "('T4', -0.01::DECIMAL(18,2), 'FAILED', 'R1', 'web')"
        ") t(txn_id, amount, status, run_id, channel)",
    )
    _, entry = ingest_one(recon, path, expected_exit=3)
    rows = by_txn(loaded_rows(recon, entry["file_id"]))
    assert {t: r["amount"] for t, r in rows.items()} == {
        "T1": Decimal("10.25"),
        "T2": Decimal("99999999999999.9999"),
        "T4": Decimal("-0.01"),
    }
    assert {t: r["line"] for t, r in rows.items()} == {"T1": 1, "T2": 2, "T4": 4}
    assert attributes(rows["T1"]) == {"channel": "web"}
    [q] = quarantined_rows(recon, entry["file_id"])
    assert (q["line"], q["column_name"]) == (3, "status")
