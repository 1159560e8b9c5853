"""Issue 14: the cost of an ingest grows linearly with the file's width.

Many extra columns without a role of their own (not canonical, sensitive, a card, an id or a
field never stored) travel through the stage as one list (`Stage.packed`), so each check is
written once for all of them. What is stored must not depend on it: a file ingested with its
extras packed and with every extra a column of its own leaves the same rows, quarantine (reasons,
lines, masked raw rows), masked counts and JSON answer.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from reconcile.ingest import readers, staging
from reconcile.settings import SourceConfig
from reconcile.store.db import Connection

pytestmark = pytest.mark.in_process

PAN = "4111111111111111"
BIG = "y" * (readers.MAX_FIELD_BYTES + 5)
CONFIG = (
    "[sources.src]\n"
    'sensitive_columns = ["customer_email"]\n'
    'card_columns = ["acct"]\n'
    'id_formats = { ref_code = "R[0-9]+" }\n'
)


def _extras(n: int, row: int) -> list[str]:
    values = [f"v{row}-{i}" for i in range(n)]
    values[1] = f"card {PAN} declined" if row % 2 else "fine"
    values[3] = '{"pan": "' + PAN + '", "note": "x"}' if row % 3 == 0 else "[1, 2]"
    values[5] = "multi\nline" if row == 2 else ""
    values[7] = "5555-5555-5555-4444" if row == 4 else "7"
    values[9] = 'é ünïcode "quoted"'
    return values


def _csv(rows: list[list[str | None]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def wide_csv(n: int = 40) -> str:
    """Canonical columns and special extras interleaved with `n` plain extras; rows that load,
    rows with problems (of the canonical columns, of an oversize field in a packed column, in a
    column of its own, in both), card numbers and nested JSON in the extras."""
    extras = [f"extra_{i:03d}" for i in range(n)]
    header: list[str | None] = [
        "run_id",
        *extras[:10],
        "txn_id",
        "customer_email",
        "amount",
        "acct",
        "ref_code",
        "order_id",
        "currency",
        "status",
        "cvv",
        "processed_at",
        *extras[10:],
        "notes",
    ]
    rows: list[list[str | None]] = [header]
    for r in range(1, 9):
        x = _extras(n, r)
        amount = {3: "abc", 5: "1,234.50"}.get(r, f"{r}.25")
        txn = "" if r == 6 else f"T{r}"
        status = "WHAT" if r == 7 else "PROCESSED"
        ref = "R123" if r % 2 else PAN
        if r == 8:
            x[20] = BIG  # a packed column after the columns of their own
        if r == 1:
            x[2] = BIG  # a packed column before one of its own that is also too long
            ref = BIG
        rows.append(
            [
                "R1",
                *x[:10],
                txn,
                f"p{r}@example.com",
                amount,
                PAN,
                ref,
                f"O-{r}",
                "GBP",
                status,
                "123",
                "2026-11-24T10:00:00",
                *x[10:],
                '{"card_number": "' + PAN + '"}',
            ]
        )
    return _csv(rows)


def wide_jsonl(n: int = 40) -> str:
    lines = []
    for r in range(1, 5):
        record: dict[str, Any] = {
            "run_id": "R2",
            "txn_id": f"J{r}",
            "amount": "bad" if r == 2 else "1.5",
            "currency": "EUR",
            "status": "PROCESSED",
            "processed_at": "2026-11-24T10:00:00",
        }
        record |= {f"extra_{i:03d}": v for i, v in enumerate(_extras(n, r))}
        record["meta"] = {"card_number": PAN, "ok": r}
        lines.append(json.dumps(record))
    lines.insert(2, f"not json {PAN}")
    return "\n".join(lines) + "\n"


def _stored(recon: Any) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: recon.query(f"SELECT * EXCLUDE (file_id) FROM {table} ORDER BY ALL")
        for table in ("transactions", "expected_transactions", "quarantine", "masked_values")
    }


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("wide.csv", wide_csv(), "processed"),
        ("wide-expected.csv", wide_csv(), "expected"),
        ("wide.jsonl", wide_jsonl(), "processed"),
    ],
)
def test_packed_extras_store_what_columns_store(
    recon: Any, write_file: Any, monkeypatch: pytest.MonkeyPatch, name: str, content: str, kind: str
) -> None:
    path = write_file(name, content)
    recon.write_config(CONFIG)
    answers, stored = [], []
    for pack_from in (10**9, 1):  # every extra a column of its own; then all packed
        monkeypatch.setattr(staging, "PACK_FROM", pack_from)
        recon.db.unlink(missing_ok=True)
        result, files = recon.ingest(path, kind=kind)
        assert result.code in (0, 3), result.stderr
        answers.append({k: v for k, v in files[0].items() if k != "file_id"})
        stored.append(_stored(recon))
    assert answers[0] == answers[1]
    assert stored[0] == stored[1]
    text = repr(stored[1])
    assert PAN not in text and "5555-5555-5555-4444" not in text and "example.com" not in text
    assert stored[1]["quarantine"], "the file has problem rows"
    assert stored[1]["masked_values"], "the file has masked values"


def _stage_sql(conn: Connection, path: Path) -> str:
    config = SourceConfig()
    plan = readers.read(conn, path, "csv", config)
    readers.map_columns(plan, "processed", config, None, "src")
    return staging.Stage(plan, config, None).sql("processed", None)


def test_stage_grows_linearly_with_width(tmp_path: Path) -> None:
    """Each extra column is named a fixed number of times in the stage, however many there are
    (it was ~22 mentions each, and DuckDB's planning time grew with the square of the width)."""
    import duckdb

    from reconcile.ingest.files import _register_functions

    sizes = {}
    for n in (100, 1000):
        path = tmp_path / f"w{n}.csv"
        canonical = "run_id,txn_id,amount,currency,status,processed_at"
        path.write_text(
            canonical + "".join(f",x{i:05d}" for i in range(n)) + "\n"
            "R,T,1.00,GBP,PROCESSED,2026-11-24T10:00:00" + ",v" * n + "\n",
            encoding="utf-8",
        )
        with duckdb.connect() as conn:
            _register_functions(conn, None)
            sql = _stage_sql(conn, path)
        mentions = max(len(re.findall(rf"x{i:05d}\b", sql)) for i in range(n))
        assert mentions <= 7, mentions  # the read (1), the list (2), its checks and JSON (4)
        sizes[n] = len(sql)
    assert sizes[1000] < 12 * sizes[100]
