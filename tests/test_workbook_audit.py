"""The finance workbook as an auditor opens and prints it (`recon export --format xlsx`): every
sheet landscape and one page wide with its header repeated, frozen and filtered; ids readable;
a grand total per currency; manual resolutions with reason, resolver and comments; and every
source file, one replaced with `--replace` included and marked. Also: a large export is whole
and exact (its speed is measured in tests/bench/bench_export.py, not asserted here)."""

from __future__ import annotations

import zipfile
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter

from .conftest import Recon

pytestmark = pytest.mark.in_process

SOURCE = "pay"
WEEK = [date(2026, 11, 9) + timedelta(days=n) for n in range(5)]
HEADER = "txn_id,amount,currency,status,run_id,business_date,error_message\n"


def txn(day: date, n: int) -> str:
    return f"CG{day:%Y%m%d}{n:04d}-SETTLEMENT-REF"  # a long id, as real sources have


@pytest.fixture
def week(recon: Recon, tmp_path: Path) -> Recon:
    """Five days, GBP and EUR each day, one failure a day; Monday's log loaded broken then
    replaced; one break resolved by hand with a comment."""
    for day in WEEK:
        run = f"R{day:%m%d}"
        manifest = tmp_path / f"m-{run}.csv"
        manifest.write_text(
            "txn_id,amount,currency,business_date,run_id\n"
            + "".join(
                f"{txn(day, n)},{10 + n}.{n}5,{'EUR' if n % 2 else 'GBP'},{day},{run}\n"
                for n in range(4)
            )
        )
        rows = "".join(
            f"{txn(day, n)},{10 + n}.{n}5,{'EUR' if n % 2 else 'GBP'},"
            f"{'FAILED' if n == 3 else 'OK'},{run},{day},{'timeout' if n == 3 else ''}\n"
            for n in range(4)
        )
        log = tmp_path / f"log-{run}.csv"
        if day == WEEK[0]:
            broken = tmp_path / f"log-{run}-broken.csv"
            broken.write_text(HEADER + rows.replace("OK", "DONE", 1))
            assert recon.ingest(broken, source=SOURCE)[0].code == 3  # a row quarantined
            log.write_text(HEADER + rows)
            assert recon.ingest(log, source=SOURCE, extra=("--replace",))[0].code == 0
        else:
            log.write_text(HEADER + rows)
            assert recon.ingest(log, source=SOURCE)[0].code == 0
        assert recon.ingest(manifest, source=SOURCE, kind="expected")[0].code == 0
    assert recon("reconcile").code == 3
    listed = recon("--json", "breaks", "--date", str(WEEK[1])).json()["breaks"]
    [chosen] = [b for b in listed if b["txn_id"] == txn(WEEK[1], 3)]
    brk = chosen["break_id"]
    assert recon("breaks", "comment", brk, "ledger team checked J-1182").code == 0
    assert recon("breaks", "resolve", brk, "--reason", "posted by hand, ref J-1182").code == 0
    return recon


def export(recon: Recon, tmp_path: Path) -> Path:
    path = tmp_path / "week.xlsx"
    result = recon("export", "--since", str(WEEK[0]), "--until", str(WEEK[-1]), "--format",
                   "xlsx", "-o", path)  # fmt: skip
    assert result.code == 0, result.stderr
    return path


def table(ws, heading: str) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """The rows of the table under `heading` on a sheet, as dicts."""
    rows = [list(r) for r in ws.iter_rows(values_only=True)]
    start = next(i for i, r in enumerate(rows) if r and str(r[0]).startswith(heading))
    header = [c for c in rows[start + 1] if c is not None]
    out = []
    for row in rows[start + 2 :]:
        if not any(v is not None for v in row):
            break
        out.append(dict(zip(header, row, strict=False)))
    return out


def test_every_sheet_prints_landscape_one_page_wide_with_its_header_frozen_and_filtered(
    week: Recon, tmp_path: Path
) -> None:
    book = load_workbook(export(week, tmp_path))
    assert book.sheetnames == ["Summary", "Breaks"]
    for ws in book.worksheets:
        assert ws.page_setup.orientation == "landscape", ws.title
        assert ws.sheet_properties.pageSetUpPr.fitToPage, ws.title
        assert (ws.page_setup.fitToWidth, ws.page_setup.fitToHeight) == (1, 0), ws.title
        assert ws.freeze_panes, ws.title
        header_row = int(ws.freeze_panes[1:]) - 1
        assert ws.print_title_rows == f"${header_row}:${header_row}", ws.title
        assert ws.auto_filter.ref and ws.auto_filter.ref.startswith(f"A{header_row}:"), ws.title
        assert ws.cell(header_row, 1).value in ("source", "business_date"), ws.title
    breaks = book["Breaks"]
    assert breaks.freeze_panes == "A2" and breaks.print_title_rows == "$1:$1"
    header = [c.value for c in breaks[1]]
    assert breaks.auto_filter.ref == f"A1:{get_column_letter(len(header))}{breaks.max_row}"
    # The txn_id column is wide enough for the ids it holds.
    letter = get_column_letter(header.index("txn_id") + 1)
    assert breaks.column_dimensions[letter].width >= len(txn(WEEK[0], 0))


def test_the_summary_has_a_grand_total_per_currency_that_ties_out(
    week: Recon, tmp_path: Path
) -> None:
    summary = load_workbook(export(week, tmp_path))["Summary"]
    per_day = table(summary, "Per business day and currency")
    grand = table(summary, "Grand total per currency")
    assert sorted(str(r["currency"]) for r in grand) == ["EUR", "GBP"]
    sums: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in per_day:
        for field in ("expected_amount", "processed_amount", "amount_difference"):
            sums[str(row["currency"])][field] += Decimal(str(row[field]))
    for row in grand:
        for field in ("expected_amount", "processed_amount", "amount_difference"):
            assert Decimal(str(row[field])) == sums[str(row["currency"])][field], (row, field)
    gbp = next(r for r in grand if r["currency"] == "GBP")
    # Per day GBP is expected 10.05 + 12.25; EUR 11.15 + 13.35 (failed, hence the difference).
    assert Decimal(str(gbp["expected_amount"])) == 5 * (Decimal("10.05") + Decimal("12.25"))
    eur = next(r for r in grand if r["currency"] == "EUR")
    assert Decimal(str(eur["amount_difference"])) == -5 * Decimal("13.35")


def test_manual_resolutions_carry_reason_resolver_and_comments(week: Recon, tmp_path: Path) -> None:
    breaks = load_workbook(export(week, tmp_path))["Breaks"]
    rows = [list(r) for r in breaks.iter_rows(values_only=True)]
    header = rows[0]
    for column in ("resolved_at", "resolved_by", "resolution", "comments"):
        assert column in header
    records = [dict(zip(header, r, strict=True)) for r in rows[1:]]
    [resolved] = [r for r in records if r["txn_id"] == txn(WEEK[1], 3)]
    shown = week("--json", "breaks", "show", str(resolved["break_id"])).json()
    assert resolved["break_status"] == "resolved"
    assert resolved["resolution"] == "posted by hand, ref J-1182"
    assert resolved["resolved_by"] and resolved["resolved_by"] == (
        shown.get("resolved_by") or shown.get("break", {}).get("resolved_by")
    )
    assert "ledger team checked J-1182" in str(resolved["comments"])
    others = [r for r in records if r["txn_id"] != txn(WEEK[1], 3)]
    assert others and all(r["resolution"] is None for r in others)


def test_a_replaced_file_is_listed_and_marked_replaced(week: Recon, tmp_path: Path) -> None:
    summary = load_workbook(export(week, tmp_path))["Summary"]
    files = table(summary, "Source files")
    by_name = {Path(str(f["path"])).name: f for f in files}
    run = f"R{WEEK[0]:%m%d}"
    broken, fixed = by_name[f"log-{run}-broken.csv"], by_name[f"log-{run}.csv"]
    assert str(broken["replaced_by"]).startswith("replaced by ")
    assert str(broken["replaced_by"]).split(" (")[0].endswith(f"log-{run}.csv")
    assert fixed["replaced_by"] is None
    assert sum(1 for f in files if f["replaced_by"]) == 1
    assert len(files) == 10 + 1  # five logs, five manifests, and the replaced log


def test_a_large_export_is_whole_and_exact(recon: Recon, tmp_path: Path) -> None:
    """20,000 failed transactions of one day: every one on the Breaks sheet, amounts exact."""
    day = WEEK[0]
    count = 20_000
    amount = lambda n: f"{n}.{n % 100:02d}01"  # noqa: E731  four decimals, none alike
    manifest, log = tmp_path / "m.csv", tmp_path / "big.csv"
    with manifest.open("w") as m, log.open("w") as handle:
        m.write("txn_id,amount,currency,business_date,run_id\n")
        handle.write(HEADER)
        for n in range(count):
            m.write(f"{txn(day, n)},{amount(n)},GBP,{day},R1\n")
            handle.write(f"{txn(day, n)},{amount(n)},GBP,FAILED,R1,{day},timeout\n")
    assert recon.ingest(manifest, source=SOURCE, kind="expected")[0].code == 0
    assert recon.ingest(log, source=SOURCE)[0].code == 0
    path = tmp_path / "big.xlsx"
    result = recon("export", "--date", str(day), "--format", "xlsx", "-o", path)
    assert result.code == 0, result.stderr
    book = load_workbook(path, read_only=True)
    rows = book["Breaks"].iter_rows(values_only=True)
    header = list(next(rows))
    at, expected = header.index("txn_id"), header.index("expected_amount")
    seen = {row[at]: row[expected] for row in rows}
    assert len(seen) == count
    for n in (0, 1, 4_321, count - 1):
        assert Decimal(str(seen[txn(day, n)])) == Decimal(amount(n))
    with zipfile.ZipFile(path) as archive:  # the cell text is the exact decimal
        xml = archive.read("xl/worksheets/sheet2.xml").decode()
    assert f"<v>{amount(count - 1)}</v>" in xml
