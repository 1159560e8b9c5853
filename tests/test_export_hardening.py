"""Exports under attack: run ids that look like formulas, planted symlinks, files of other users,
an export killed while writing."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest
from openpyxl import load_workbook

from .conftest import Recon
from .support import start_recon

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


# --- -o PATH: no symlink followed, no other user's file written, whole files only -------------


@pytest.fixture
def failing(recon: Recon, write_file) -> Recon:  # type: ignore[no-untyped-def]
    log = write_file(
        "log.csv",
        "txn_id,amount,status,run_id,business_date,error_code\n"
        + "".join(f"T{n},1.00,FAILED,R1,2026-07-01,E1\n" for n in range(20)),
    )
    assert recon.ingest(log, source=SOURCE)[0].code == 0
    return recon


def _outputs(tmp_path: Path) -> list[tuple[str, ...]]:
    """Every command that writes a file the user names, with that file's name."""
    failures = ("failures", "--date", "2026-07-01", "--format")
    return [
        (*failures, "csv", "-o", str(tmp_path / "out.csv")),
        (*failures, "jsonl", "-o", str(tmp_path / "out.jsonl")),
        (*failures, "xlsx", "-o", str(tmp_path / "out.xlsx")),
        (*failures, "parquet", "-o", str(tmp_path / "out.parquet")),
        ("export", "--date", "2026-07-01", "--format", "xlsx", "-o", str(tmp_path / "book.xlsx")),
    ]


def test_an_output_path_that_is_a_symlink_is_refused(failing: Recon, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"someone else's data\n")
    for command in _outputs(tmp_path):
        out = Path(command[-1])
        out.symlink_to(victim)
        result = failing(*command)
        assert result.code == 1, (command, result.stderr)
        assert "symbolic link" in result.stderr, result.stderr
        assert out.is_symlink() and victim.read_bytes() == b"someone else's data\n"
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (tmp_path / "csv").symlink_to(folder)
    for fmt in ("csv", "parquet"):
        result = failing("export", "--format", fmt, "-o", tmp_path / "csv")
        assert result.code == 1 and "symbolic link" in result.stderr, result.stderr
    assert list(folder.iterdir()) == []
    # A link planted inside the export's folder, where a file is to go, is refused as well.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "days.csv").symlink_to(victim)
    result = failing("export", "--format", "csv", "-o", tmp_path / "mine")
    assert result.code == 1 and "symbolic link" in result.stderr, result.stderr
    assert victim.read_bytes() == b"someone else's data\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_an_output_file_of_another_user_is_refused(failing: Recon, tmp_path: Path) -> None:
    for command in _outputs(tmp_path):
        out = Path(command[-1])
        out.write_bytes(b"nobody's file\n")
        os.chown(out, 65534, 65534)
        result = failing(*command)
        assert result.code == 1, (command, result.stderr)
        assert "another user" in result.stderr, result.stderr
        assert out.read_bytes() == b"nobody's file\n" and out.stat().st_uid == 65534
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    result = failing("export", "--format", "csv", "-o", theirs)
    assert result.code == 1 and "another user" in result.stderr, result.stderr
    assert list(theirs.iterdir()) == []


def test_an_export_killed_while_writing_leaves_the_previous_file_whole(
    recon: Recon, write_file, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    rows = 1_000  # enough for the workbook to take a while to write
    log = write_file(
        "log.csv",
        "txn_id,amount,status,run_id,business_date,error_code,error_message\n"
        + "".join(f"T{n},1.00,FAILED,R1,2026-07-01,E1,declined {n}\n" for n in range(rows)),
    )
    assert recon.ingest(log, source=SOURCE)[0].code == 0
    out = tmp_path / "failed.xlsx"
    command = ("failures", "--date", "2026-07-01", "--format", "xlsx", "-o", str(out))
    assert recon(*command).code == 0  # the previous good file; reconciled already
    previous = out.read_bytes()
    before = out.stat()
    writer = start_recon(
        command,
        cwd=recon.workdir,
        env=recon.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Kill it as soon as it starts writing: a temporary file appears, or the file changes.
        while writer.poll() is None:
            now = out.stat()
            temps = [p for p in tmp_path.iterdir() if p.name.startswith(".failed.xlsx.")]
            if temps or (now.st_size, now.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                os.kill(writer.pid, signal.SIGKILL)
                break
            time.sleep(0.001)
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == -signal.SIGKILL, "the export finished before it could be killed"
    assert out.read_bytes() == previous
    assert load_workbook(out).active.max_row == rows + 1
