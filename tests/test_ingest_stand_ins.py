"""A file whose values need no Python masker loads without registering one (registering makes
DuckDB import numpy, 70-130 ms per process); a value that needs one loads it and is masked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json, sys
from datetime import datetime, timezone
from pathlib import Path
from reconcile.ingest.files import ingest_file
from reconcile.settings import SourceConfig
from reconcile.store import connect
with connect(Path(sys.argv[1])) as conn:
  results = []
  for path in sys.argv[2:]:
    r = ingest_file(conn, Path(path), source="s", config=SourceConfig(), now=datetime.now(timezone.utc), user="t")
    results.append([r.rows_loaded, r.rows_quarantined, "numpy" in sys.modules])
  stored = conn.execute("SELECT error_message FROM transactions ORDER BY file_id, line").fetchall()
print(json.dumps({"results": results, "stored": [s[0] for s in stored]}))
"""


def test_numpy_only_when_a_value_needs_python(tmp_path: Path) -> None:
    plain = tmp_path / "plain.csv"
    plain.write_text(
        "txn_id,run_id,amount,currency,status,error_message\n"
        "T1,R1,1.00,GBP,PROCESSED,\nT2,R1,2.00,GBP,FAILED,timeout\n"
    )
    card = tmp_path / "card.csv"
    card.write_text(
        "txn_id,run_id,amount,currency,status,error_message\n"
        "T3,R2,1.00,GBP,PROCESSED,\nT4,R2,2.00,GBP,FAILED,card 4111 1111 1111 1111 declined\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "db.duckdb"), str(plain), str(card)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    answer = json.loads(out.stdout)
    assert answer["results"] == [[2, 0, False], [2, 0, True]]
    assert answer["stored"][:2] == [None, "timeout"]
    assert "4111 1111 1111 1111" not in answer["stored"][3]
    assert "1111" in answer["stored"][3]  # masked, last four kept
