"""Progress of a long ingest (issue 13, item 12): on a terminal, each file says it is being
read (with its size) and when it is done; never when stderr is a pipe, and never with --json."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

from tests.support import RECON

from .conftest import Recon


def _run(recon: Recon, args: list[str], stderr_tty: bool) -> tuple[int, str, str]:
    """`recon ARGS` as a real process, stderr on a pseudo-terminal or a pipe; stdout a pipe."""
    if not stderr_tty:
        done = subprocess.run(
            [*RECON, *args], cwd=recon.workdir, env=recon.env, capture_output=True, text=True
        )
        return done.returncode, done.stdout, done.stderr
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [*RECON, *args],
        cwd=recon.workdir,
        env=recon.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    stdout, _ = process.communicate(timeout=60)
    return process.returncode, stdout.decode(), seen.decode()


def _files(recon: Recon) -> list[Path]:
    paths = []
    for name in ("a.csv", "b.csv"):
        path = recon.workdir / name
        path.write_text(f"txn_id,amount,status,run_id\n{name}-1,1.00,OK,R-{name}\n")
        paths.append(path)
    return paths


def test_progress_shows_on_a_terminal(recon: Recon) -> None:
    a, b = _files(recon)
    code, stdout, stderr = _run(recon, ["ingest", "--source", "pay", str(a), str(b)], True)
    assert code == 0, stderr
    assert f"reading {a} (0.0 MB)... done in" in stderr
    assert f"reading {b} (0.0 MB)... done in" in stderr
    assert stderr.index(f"reading {a}") < stderr.index(f"loaded {a}") < stderr.index(f"reading {b}")
    assert stdout == ""


def test_no_progress_on_a_pipe(recon: Recon) -> None:
    a, b = _files(recon)
    code, _, stderr = _run(recon, ["ingest", "--source", "pay", str(a), str(b)], False)
    assert code == 0, stderr
    assert "reading" not in stderr and f"loaded {a}" in stderr


def test_no_progress_with_json_even_on_a_terminal(recon: Recon) -> None:
    a, b = _files(recon)
    code, stdout, stderr = _run(
        recon, ["--json", "ingest", "--source", "pay", str(a), str(b)], True
    )
    assert code == 0, stderr
    assert "reading" not in stderr and "reading" not in stdout
    assert [f["rows_loaded"] for f in json.loads(stdout)["files"]] == [1, 1]
