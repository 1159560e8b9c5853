"""Exports under attack: run ids that look like formulas, planted symlinks, files of other users,
an export killed while writing."""

from __future__ import annotations

import csv
import io
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest
from openpyxl import load_workbook

from .conftest import Recon

SOURCE = "pay"
# Run ids a spreadsheet would run as formulas, each on a business day of its own, so that each
# day's run_ids list starts with one of them.
RUN_IDS = ['=HYPERLINK("http://127.0.0.1/x","y")', "+1+1", "@SUM(A1)", "-2+3"]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


@pytest.fixture
def formula_runs(recon: Recon, write_file) -> Recon:  # type: ignore[no-untyped-def]
    manifest = ["txn_id,amount,currency,business_date,run_id"]
    log = ["txn_id,amount,currency,status,run_id,business_date,error_code,error_message"]
    for day, run_id in enumerate(RUN_IDS, start=1):
        date = f"2026-07-0{day}"
        manifest += [f"T{day}a,10.00,GBP,{date},{_quoted(run_id)}"]
        manifest += [f"T{day}b,5.00,GBP,{date},{_quoted(run_id)}"]  # missing: a break
        log += [f"T{day}a,10.00,GBP,FAILED,{_quoted(run_id)},{date},E1,declined"]
    expected = write_file("m.csv", "\n".join(manifest) + "\n")
    processed = write_file("log.csv", "\n".join(log) + "\n")
    assert recon.ingest(expected, source=SOURCE, kind="expected")[0].code == 0
    assert recon.ingest(processed, source=SOURCE)[0].code == 0
    assert recon("reconcile", "--since", "2026-07-01", "--until", "2026-07-04").code == 3
    return recon


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except InvalidOperation:
        return False
    return True


def _assert_inert(cells: list[str], where: str) -> None:
    """No text cell starts as a formula (numbers like -5.00 may), and every run id is readable,
    prefixed with the quote a spreadsheet shows as text."""
    for cell in cells:
        assert not cell.startswith(FORMULA_STARTS) or _is_number(cell), (where, cell)
    for run_id in RUN_IDS:
        assert any(cell.startswith("'" + run_id) for cell in cells), (where, run_id)


def _csv_cells(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [cell for row in csv.reader(handle) for cell in row]


def _xlsx_cells(path: Path) -> list[str]:
    cells = []
    for sheet in load_workbook(path).worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (path.name, sheet.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str):
                    cells.append(cell.value)
    return cells


def test_run_ids_that_look_like_formulas_stay_text_in_every_export(
    formula_runs: Recon, tmp_path: Path
) -> None:
    recon = formula_runs
    folder = tmp_path / "csv"
    assert recon("export", "--format", "csv", "-o", folder).code == 0
    days = _csv_cells(folder / "days.csv")
    _assert_inert(days, "days.csv")  # the run_ids list column
    assert "'" + RUN_IDS[0] in days
    for name in ("runs.csv", "breaks.csv", "currencies.csv", "files.csv"):
        cells = _csv_cells(folder / name)
        assert not [c for c in cells if c.startswith(FORMULA_STARTS) and not _is_number(c)], name
    _assert_inert(_csv_cells(folder / "runs.csv"), "runs.csv")

    book = tmp_path / "book.xlsx"
    assert recon("export", "--format", "xlsx", "-o", book).code == 0
    _assert_inert(_xlsx_cells(book), "book.xlsx")

    for fmt in ("csv", "xlsx"):
        out = tmp_path / f"failed.{fmt}"
        listed = recon(
            "failures", "--since", "2026-07-01", "--until", "2026-07-04", "--category", "all",
            "--format", fmt, "-o", out,
        )  # fmt: skip
        assert listed.code == 0, listed.stderr
        cells = _csv_cells(out) if fmt == "csv" else _xlsx_cells(out)
        _assert_inert(cells, out.name)
    stdout = recon(
        "failures", "--since", "2026-07-01", "--until", "2026-07-04", "--format", "csv"
    ).stdout
    _assert_inert([c for row in csv.reader(io.StringIO(stdout)) for c in row], "stdout")
