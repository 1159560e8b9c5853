"""CSV lines between 16 MB (max_line_size) and 32 MB (the read buffer), and a
line of exactly the maximum, keep their behaviour: quarantined with a clear reason, counts kept."""

from __future__ import annotations

from typing import Any

import pytest

from reconcile.ingest import readers

from .conftest import Recon

MB = 1024 * 1024
FIELDS = 30


def _quarantine(recon: Recon) -> list[dict[str, Any]]:
    result = recon("--json", "quarantine", "--limit", "0")
    assert result.code == 0, result.stderr
    return sorted(result.json()["quarantine"], key=lambda row: row["line"])


def _row(txn: str, total: int) -> str:
    """A CSV row of `total` bytes with its newline; every field under the 1 MB field limit."""
    head = f"{txn},1.00,OK,R1"
    room = total - len(head) - 1 - FIELDS  # commas before each extra field, the newline
    each, extra = divmod(room, FIELDS)
    fields = ["y" * (each + (1 if n < extra else 0)) for n in range(FIELDS)]
    line = head + "".join("," + f for f in fields) + "\n"
    assert len(line) == total
    return line


@pytest.mark.in_process
@pytest.mark.parametrize(
    ("size", "loaded"),
    [
        (20 * MB, False),  # between max_line_size and buffer_size
        (readers.MAX_LINE_BYTES + 1, False),
        (readers.MAX_LINE_BYTES, True),  # exactly the maximum, its newline included
        (readers.MAX_LINE_BYTES - 1, True),
    ],
)
def test_a_long_csv_line_is_quarantined_and_counts_kept(
    recon: Recon, write_file, size: int, loaded: bool
) -> None:  # type: ignore[no-untyped-def]
    header = "txn_id,amount,status,run_id," + ",".join(f"f{n}" for n in range(FIELDS)) + "\n"
    short = "," * FIELDS
    path = write_file(
        "run.csv",
        header + f"T1,1.00,OK,R1{short}\n" + _row("T2", size) + f"T3,1.00,OK,R1{short}\n",
    )
    result, [entry] = recon.ingest(path)
    quarantined = _quarantine(recon)
    if loaded:
        assert result.code == 0, result.stderr
        assert (entry["rows_read"], entry["rows_loaded"], entry["rows_quarantined"]) == (3, 3, 0)
    else:
        assert result.code == 3, result.stderr
        assert (entry["rows_read"], entry["rows_loaded"], entry["rows_quarantined"]) == (3, 2, 1)
        [long_line] = quarantined
        assert long_line["line"] == 3 and "line longer than 16 MB" in long_line["reason"]


@pytest.mark.in_process
@pytest.mark.parametrize("size", [20 * MB, readers.MAX_LINE_BYTES + 1, readers.MAX_LINE_BYTES])
def test_a_long_csv_line_past_the_sniffer_sample(recon: Recon, write_file, size: int) -> None:  # type: ignore[no-untyped-def]
    header = "txn_id,amount,status,run_id," + ",".join(f"f{n}" for n in range(FIELDS)) + "\n"
    short = "," * FIELDS
    rows = "".join(f"S{i},1.00,OK,R1{short}\n" for i in range(25_000))
    path = write_file("run.csv", header + rows + _row("T2", size) + f"T3,1.00,OK,R1{short}\n")
    result, [entry] = recon.ingest(path)
    quarantined = _quarantine(recon)
    if size > readers.MAX_LINE_BYTES:
        assert result.code == 3, result.stderr
        assert (entry["rows_read"], entry["rows_loaded"], entry["rows_quarantined"]) == (
            25_002,
            25_001,
            1,
        )
        [long_line] = quarantined
        assert long_line["line"] == 25_002 and "line longer than 16 MB" in long_line["reason"]
    else:
        assert result.code == 0, result.stderr
