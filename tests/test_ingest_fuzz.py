"""Whatever bytes arrive, ingest either loads them with every row accounted for, or refuses the
file with a clear error; it never crashes and never half-writes."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile import store
from reconcile.errors import InputFileError
from reconcile.ingest import files as ingest
from reconcile.settings import SourceConfig

HEADER = "txn_id,amount,status,run_id,error_message\n"
NOW = datetime(2026, 11, 24, 9, tzinfo=UTC)

cell = st.one_of(
    st.sampled_from(
        ["T1", "", "12.50", "-3", "1,234.50", "OK", "FAILED", "PENDNG", "R1", '"q""uoted"']
    ),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
)
csv_line = st.lists(cell, min_size=1, max_size=7).map(",".join)
csv_text = st.lists(csv_line, max_size=12).map(lambda rows: HEADER + "\n".join(rows) + "\n")
jsonl_text = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"txn_id": cell, "amount": cell, "status": cell, "run_id": cell},
            optional={"error_message": cell},
        ).map(lambda d: __import__("json").dumps(d)),
        st.text(max_size=30),
    ),
    max_size=10,
).map("\n".join)


def _check(content: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(content)
        with store.connect(Path(tmp) / "recon.duckdb", 5) as conn:
            try:
                result = ingest.ingest_file(
                    conn, path, source="fuzz", config=SourceConfig(), now=NOW, user="test"
                )
            except InputFileError as error:
                assert str(path) in str(error) and "what to do" in str(error)
                row = conn.execute("SELECT count(*) FROM ingested_files").fetchone()
                assert row == (0,)  # a refused file leaves nothing behind
                return
            assert result.rows_read == result.rows_loaded + result.rows_quarantined
            loaded = conn.execute("SELECT count(*) FROM transactions").fetchone()
            quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()
            assert loaded == (result.rows_loaded,)
            assert quarantined == (result.rows_quarantined,)


@given(csv_text)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_csv_is_loaded_and_accounted_for_or_refused(text: str) -> None:
    _check(text.encode("utf-8", "surrogatepass"), ".csv")


@given(jsonl_text)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_json_lines_file_is_loaded_and_accounted_for_or_refused(text: str) -> None:
    _check(text.encode("utf-8"), ".jsonl")


@given(st.binary(max_size=300))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bytes_never_crash_the_ingest(data: bytes) -> None:
    _check(data, ".csv")
