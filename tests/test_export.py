"""Exports finance and operations open in Excel: exact amounts, no formulas, same inputs same
files, private files, and breaks that explain each day's difference to the cent."""

from __future__ import annotations

import csv
import io
import stat
import time
import zipfile
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter

from reconcile import formats as export

from .conftest import Recon

SOURCE = "pay"
NASTY = ["=cmd|' /C calc'!A0", "+SUM(A1)", "-2+3", "@IMPORT", "\tTAB", "\rCR", "\nLF"]


@pytest.fixture
def loaded(recon: Recon, write_file) -> Recon:  # type: ignore[no-untyped-def]
    """Two days: a manifest run with breaks whose messages look like formulas, and one balanced."""
    manifest = write_file(
        "m.csv",
        "txn_id,amount,currency,business_date,run_id\n"
        + "".join(f"A{i},{10 + i}.10,GBP,2026-07-01,R1\n" for i in range(len(NASTY)))
        + "M1,5.00,GBP,2026-07-01,R1\n"  # missing
        + "P1,-1.25,GBP,2026-07-02,R2\nP2,2.50,EUR,2026-07-02,R2\n",
    )
    rows = []
    for i, message in enumerate(NASTY):
        quoted = '"' + message.replace('"', '""') + '"'
        rows.append(f"A{i},{10 + i}.10,GBP,FAILED,R1,2026-07-01,E9,{quoted}\n")
    rows.append("U1,7.77,GBP,OK,R1,2026-07-01,,\n")  # unexpected
    rows.append("P1,-1.25,GBP,OK,R2,2026-07-02,,\nP2,2.50,EUR,OK,R2,2026-07-02,,\n")
    log = write_file(
        "log.csv",
        "txn_id,amount,currency,status,run_id,business_date,error_code,error_message\n"
        + "".join(rows),
    )
    assert recon.ingest(manifest, source=SOURCE, kind="expected")[0].code == 0
    assert recon.ingest(log, source=SOURCE)[0].code == 0
    return recon


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_csv_export_neutralises_formulas_keeps_amounts_exact_and_explains_the_difference(
    loaded: Recon, tmp_path: Path
) -> None:
    out = tmp_path / "csv"
    result = loaded("export", "--format", "csv", "-o", out)
    assert result.code == 0, result.stderr
    breaks = read_csv(out / "breaks.csv")
    messages = {
        row["txn_id"]: row["error_message"] for row in breaks if row["txn_id"].startswith("A")
    }
    assert sorted(messages.values()) == sorted("'" + m for m in NASTY)
    assert all(row["difference"].lstrip("-")[0].isdigit() for row in breaks)  # amounts stay numbers
    days = {row["business_date"]: row for row in read_csv(out / "days.csv")}
    explained: dict[str, Decimal] = defaultdict(Decimal)
    for row in breaks:
        explained[row["business_date"]] += Decimal(row["difference"])
    assert explained["2026-07-01"] == Decimal(days["2026-07-01"]["amount_difference"]) != 0
    assert days["2026-07-02"]["status"] == "balanced"
    assert Decimal(days["2026-07-01"]["expected_amount"]) == sum(
        Decimal(f"{10 + i}.10") for i in range(len(NASTY))
    ) + Decimal("5.00")
    # Day 2 mixes GBP and EUR: its amounts add both; the currency rows split them and tie out.
    currencies = read_csv(out / "currencies.csv")
    day2 = {row["currency"]: row for row in currencies if row["business_date"] == "2026-07-02"}
    assert (day2["GBP"]["expected_amount"], day2["EUR"]["expected_amount"]) == ("-1.25", "2.50")
    assert (day2["GBP"]["processed_amount"], day2["EUR"]["processed_amount"]) == ("-1.25", "2.50")
    for day, totals in days.items():
        rows = [row for row in currencies if row["business_date"] == day]
        for field in ("expected_amount", "processed_amount", "amount_difference"):
            assert sum(Decimal(row[field]) for row in rows) == Decimal(totals[field]), (day, field)
    files = read_csv(out / "files.csv")
    assert {f["kind"] for f in files} == {"expected", "processed"}
    assert all(len(f["sha256"]) == 64 for f in files)
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_exporting_the_same_inputs_twice_gives_identical_files(
    loaded: Recon, tmp_path: Path
) -> None:
    for fmt in ("csv", "parquet"):
        first, second = tmp_path / f"{fmt}1", tmp_path / f"{fmt}2"
        assert loaded("export", "--format", fmt, "-o", first).code == 0
        later = {"RECON_NOW": "2026-12-01T00:00:00+00:00"}
        assert loaded("export", "--format", fmt, "-o", second, env=later).code == 0
        names = sorted(p.name for p in first.iterdir())
        assert names == sorted(p.name for p in second.iterdir()) and len(names) == 6
        for name in names:
            assert (first / name).read_bytes() == (second / name).read_bytes(), name
    with duckdb.connect() as conn:
        [(kind,)] = conn.execute(
            "SELECT typeof(amount_difference) FROM read_parquet(?) LIMIT 1",
            [str(tmp_path / "parquet1" / "days.parquet")],
        ).fetchall()
    assert kind.startswith("DECIMAL")


def _entries(path: Path) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(path) as archive:
        return [(info, archive.read(info)) for info in archive.infolist()]


def _sheet_values(path: Path) -> list[list[tuple[object, ...]]]:
    book = load_workbook(path)
    return [list(ws.iter_rows(values_only=True)) for ws in book.worksheets]


def test_xlsx_exports_are_the_same_bytes_at_another_time_of_day(
    loaded: Recon, tmp_path: Path
) -> None:
    """A report stores each attachment's SHA-256 (issue 15): the same `now` and inputs give the
    same workbook bytes, whatever the clock says when it is written."""
    commands = {
        "failed": ("failures", "--date", "2026-07-01", "--category", "all", "--format", "xlsx"),
        "book": ("export", "--format", "xlsx"),
    }
    for name, command in commands.items():
        first, second = tmp_path / f"{name}1.xlsx", tmp_path / f"{name}2.xlsx"
        assert loaded(*command, "-o", first).code == 0
        time.sleep(2.1)  # zip dates count even seconds: a clock-stamped entry would differ
        assert loaded(*command, "-o", second).code == 0
        assert first.read_bytes() == second.read_bytes(), name
        values = _sheet_values(first)
        assert values == _sheet_values(second) and len(values[-1]) > 1
        book = load_workbook(first)
        now = datetime(2026, 11, 24, 9, 0)  # the fixture's RECON_NOW, in UTC
        assert book.properties.created == book.properties.modified == now
        for info, _ in _entries(first):
            assert info.date_time == (2026, 11, 24, 9, 0, 0), info.filename
            assert stat.S_IMODE(info.external_attr >> 16) == 0o600, info.filename
    # The rows are the failure list's, as its CSV gives them.
    failed = _sheet_values(tmp_path / "failed1.xlsx")[0]
    text = loaded(*commands["failed"][:-1], "csv").stdout
    listed = list(csv.reader(io.StringIO(text)))
    assert [str(v) for v in failed[0]] == listed[0] and len(failed) == len(listed)
    assert sorted(str(r[0]) for r in failed[1:]) == sorted(r[0] for r in listed[1:])


def test_xlsx_export_at_another_now_differs_only_where_the_time_is_written(
    loaded: Recon, tmp_path: Path
) -> None:
    # Both after the fixture's `now`, the files' load time (which is written too, and stays).
    first, second = tmp_path / "one.xlsx", tmp_path / "two.xlsx"
    sooner = {"RECON_NOW": "2026-11-25T09:00:00+00:00"}
    assert loaded("export", "--format", "xlsx", "-o", first, env=sooner).code == 0
    later = {"RECON_NOW": "2026-12-01T00:00:00+00:00"}
    assert loaded("export", "--format", "xlsx", "-o", second, env=later).code == 0
    assert first.read_bytes() != second.read_bytes()
    one, two = _entries(first), _entries(second)
    assert [i.filename for i, _ in one] == [i.filename for i, _ in two]
    changed = set()
    for (a, data_a), (b, data_b) in zip(one, two, strict=True):
        assert a.date_time == (2026, 11, 25, 9, 0, 0) and b.date_time == (2026, 12, 1, 0, 0, 0)
        if data_a != data_b:
            changed.add(a.filename)
            same = data_a.decode().replace("2026-11-25T09:00:00", "NOW")
            assert same == data_b.decode().replace("2026-12-01T00:00:00", "NOW"), a.filename
    # The document's times, and the Summary's "generated at".
    assert changed == {"docProps/core.xml", "xl/worksheets/sheet1.xml"}


def test_xlsx_bytes_depend_only_on_the_rows_and_created(tmp_path: Path) -> None:
    rows = [
        {"n": i, "amount": Decimal(i) / 100, "day": datetime(2026, 7, 1).date()} for i in range(9)
    ]
    sheet = export.Sheet("Breaks", [export.Table(None, ["n", "amount", "day"], rows)])
    created = datetime(2026, 7, 1, 10, 30, 5, tzinfo=UTC)
    paths = [tmp_path / "a.xlsx", tmp_path / "b.xlsx"]
    for path in paths:
        export.write_xlsx(path, [sheet], created, max_rows=4)
        time.sleep(1.1)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert [i.date_time for i, _ in _entries(paths[0])] == [(2026, 7, 1, 10, 30, 4)] * len(
        _entries(paths[0])
    )
    assert load_workbook(paths[0]).sheetnames == ["Breaks", "Breaks (2)", "Breaks (3)"]
    before = tmp_path / "old.xlsx"
    export.write_xlsx(before, [sheet], datetime(1970, 1, 1, tzinfo=UTC))  # before zip dates
    assert {i.date_time for i, _ in _entries(before)} == {(1980, 1, 1, 0, 0, 0)}


def test_xlsx_workbook_has_summary_and_breaks_with_exact_numbers(
    loaded: Recon, tmp_path: Path
) -> None:
    path = tmp_path / "book.xlsx"
    result = loaded("export", "--format", "xlsx", "-o", path)
    assert result.code == 0, result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    book = load_workbook(path)
    assert book.sheetnames == ["Summary", "Breaks"]
    summary = [[c.value for c in row] for row in book["Summary"].iter_rows()]
    labels = {row[0]: row[1] for row in summary if row and row[0]}
    assert labels["generated at (UTC)"] == "2026-11-24T09:00:00+00:00"
    assert labels["product"].startswith("recon ")
    assert len(labels["inputs SHA-256"]) == 64
    assert any(isinstance(v, str) and v.endswith("log.csv") for row in summary for v in row)
    heading = next(
        i
        for i, row in enumerate(summary)
        if str(row[0]).startswith("Per business day and currency")
    )
    assert summary[heading + 1][:3] == ["source", "business_date", "currency"]
    assert [row[2] for row in summary[heading + 2 : heading + 5]] == ["GBP", "EUR", "GBP"]
    sheet = book["Breaks"]
    header = [c.value for c in sheet[1]]
    messages = [
        row[header.index("error_message")] for row in sheet.iter_rows(min_row=2, values_only=True)
    ]
    # XML reads a CR inside text back as LF; what matters is the leading quote.
    assert sorted(m for m in messages if m) == sorted("'" + m.replace("\r", "\n") for m in NASTY)
    amounts = list(sheet[get_column_letter(header.index("difference") + 1)])[1:]
    assert all(c.data_type == "n" for c in amounts if c.value is not None)
    with zipfile.ZipFile(path) as archive:
        xml = archive.read("xl/worksheets/sheet2.xml").decode()
    assert "<v>-15.1</v>" not in xml and "<v>-15.10</v>" in xml  # written exact, two decimals
    again = tmp_path / "again.xlsx"
    assert loaded("export", "--format", "xlsx", "-o", again).code == 0
    values = lambda p: [  # noqa: E731
        [[c.value for c in row] for row in ws.iter_rows()] for ws in load_workbook(p).worksheets
    ]
    assert values(path) == values(again)


def test_a_long_table_continues_on_further_sheets(tmp_path: Path) -> None:
    rows = [{"n": i, "amount": Decimal(i) / 100} for i in range(25)]
    path = tmp_path / "long.xlsx"
    sheet = export.Sheet("Breaks", [export.Table(None, ["n", "amount"], rows)])
    export.write_xlsx(path, [sheet], datetime(2026, 7, 1, tzinfo=UTC), max_rows=10)
    book = load_workbook(path)
    assert book.sheetnames == ["Breaks", "Breaks (2)", "Breaks (3)"]
    seen = [r[0] for ws in book.worksheets for r in ws.iter_rows(min_row=2, values_only=True)]
    assert seen == list(range(25))
    assert all([c.value for c in ws[1]] == ["n", "amount"] for ws in book.worksheets)


def test_failures_xlsx_and_csv_for_operations(loaded: Recon, tmp_path: Path) -> None:
    path = tmp_path / "failed.xlsx"
    result = loaded("failures", "--date", "2026-07-01", "--format", "xlsx", "-o", path)
    assert result.code == 0, result.stderr
    rows = list(load_workbook(path).active.iter_rows(values_only=True))
    assert rows[0][:6] == ("txn_id", "run_id", "business_date", "amount", "currency", "category")
    assert len(rows) - 1 == len(NASTY)
    text = loaded("failures", "--date", "2026-07-01", "--category", "all", "--format", "csv").stdout
    listed = list(csv.DictReader(io.StringIO(text)))
    assert {r["category"] for r in listed} == {"failed", "missing", "unexpected"}
    assert all(r["break_status"] == "open" for r in listed)
    missing = loaded("failures", "--date", "2026-07-01", "--format", "parquet")
    assert missing.code == 2 and "-o FILE" in missing.stderr


def test_reconcile_prints_amounts_per_currency_when_currencies_mix(
    loaded: Recon,
    write_file,  # type: ignore[no-untyped-def]
) -> None:
    mixed = loaded("reconcile")
    assert mixed.code == 3
    lines = mixed.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("amounts per currency"))
    rows = {line.split()[1]: line.split()[2:] for line in lines[start + 4 :] if line.strip()}
    # currency: expected_count, expected_amount, processed_count, processed_amount, difference
    assert rows["EUR"] == ["1", "2.50", "1", "2.50", "0.00"]
    manifest_gbp = (
        sum(10 + i + Decimal("0.10") for i in range(7)) + Decimal("5.00") - Decimal("1.25")
    )
    assert rows["GBP"][1] == str(manifest_gbp)
    assert loaded("reconcile", "--date", "2026-07-01").stdout.count("amounts per currency") == 0


def test_negative_counts_stay_numbers_while_formula_like_text_is_neutralised() -> None:
    stream = io.StringIO()
    export.write_csv(
        [{"count_difference": -3, "amount_difference": Decimal("-1.5"), "note": "-2+3"}],
        ["count_difference", "amount_difference", "note"],
        stream,
    )
    assert stream.getvalue().splitlines()[1] == "-3,-1.50,'-2+3"


def test_a_missing_output_folder_or_reversed_range_gets_a_clear_error(
    loaded: Recon, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-folder" / "week.xlsx"
    result = loaded("export", "--format", "xlsx", "-o", missing)
    assert result.code == 1 and "internal error" not in result.stderr
    assert f"{missing}: No such file or directory" in result.stderr
    reversed_range = loaded("reconcile", "--since", "2026-07-02", "--until", "2026-07-01")
    assert reversed_range.code == 2 and "swap them" in reversed_range.stderr


def test_a_manifest_without_currencies_is_read_in_the_posted_currency(
    recon: Recon,
    write_file,  # type: ignore[no-untyped-def]
) -> None:
    manifest = write_file("m.csv", "txn_id,amount,run_id,business_date\nA1,10.00,R1,2026-07-01\n")
    log = write_file(
        "log.csv",
        "txn_id,amount,currency,status,run_id,business_date\n"
        "A1,10.00,GBP,OK,R1,2026-07-01\nA2,5.00,GBP,OK,R1,2026-07-01\n",
    )
    recon.ingest(manifest, kind="expected")
    recon.ingest(log)
    [day] = recon("--json", "reconcile").json()["days"]
    assert day["currencies"] == [
        {
            "currency": "GBP",
            "expected_count": 1,
            "expected_amount": "10.00",
            "processed_count": 2,
            "processed_amount": "15.00",
            "amount_difference": "5.00",
        }
    ]
