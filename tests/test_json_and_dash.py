"""`--json` in both places, a JSON answer from every command that changes things, and `-` as
stdin and stdout (issue 13, item 20)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import Recon
from .support import RECON, recon_env

pytestmark = pytest.mark.in_process

LOG = "txn_id,amount,status,run_id,business_date\nT1,1.00,OK,R1,2026-11-23\nT2,2.50,FAILED,R1,2026-11-23\n"


def _story(recon: Recon) -> str:
    """A store with one run, one failed transaction (an open break) and a monitor."""
    (recon.workdir / "run.csv").write_text(LOG)
    done = recon("ingest", "--source", "pay", recon.workdir / "run.csv")
    assert done.code == 0, done.stderr
    assert recon("reconcile").code in (0, 3)
    assert recon("monitor", "add", "job", "--every", "1h", "--grace", "5m").code == 0
    [brk] = recon("breaks", "--json").json()["breaks"]
    return str(brk["break_id"])


def test_json_after_the_command_is_the_same_as_before_it(recon: Recon) -> None:
    _story(recon)
    for command in (["runs"], ["breaks"], ["monitor", "list"], ["audit", "head"]):
        after = recon(*command, "--json")
        assert after.code == 0, after.stderr
        assert after.json().keys() == recon("--json", *command).json().keys()
    assert recon("monitor", "--json", "list").json()["monitors"][0]["name"] == "job"


def test_every_command_that_changes_things_answers_in_json(recon: Recon) -> None:
    brk = _story(recon)
    answers = {
        "breaks assign": recon("breaks", "assign", brk, "alice", "--json"),
        "breaks comment": recon("breaks", "comment", brk, "looking", "--json"),
        "breaks resolve": recon("breaks", "resolve", brk, "--reason", "posted", "--json"),
        "monitor pause": recon("monitor", "pause", "job", "--json"),
        "monitor resume": recon("monitor", "resume", "job", "--json"),
        "token create": recon("token", "create", "flow", "--source", "pay", "--json"),
        "token revoke": recon("token", "revoke", "flow", "--json"),
        "config revert": recon("config", "revert", "monitor:job", "--to", "1", "--json"),
        "watch --once": recon("watch", "--once", "--json"),
        "monitor remove": recon("monitor", "remove", "job", "--json"),
        "audit start-key": recon("audit", "start-key", "--json"),
    }
    for command, done in answers.items():
        assert done.code == 0, (command, done.stderr)
        assert isinstance(done.json(), dict), command
    assert answers["breaks assign"].json() == {"assigned": [brk], "assignee": "alice"}
    assert answers["breaks resolve"].json()["status"] == "resolved"
    assert answers["monitor pause"].json()["paused"] is True
    assert answers["monitor remove"].json()["removed"] is True
    assert answers["token revoke"].json() == {"name": "flow", "revoked": True}
    assert answers["config revert"].json()["applied"] is True
    assert answers["audit start-key"].json()["keyed"] is True
    shown = recon("breaks", "show", brk, "--json").json()
    assert (shown["assignee"], shown["status"]) == ("alice", "resolved")


def test_ingest_dash_reads_stdin(recon: Recon) -> None:
    done = recon("ingest", "--source", "pay", "-", "--json", input=LOG)
    assert done.code == 0, done.stderr
    [loaded] = done.json()["files"]
    assert (loaded["path"], loaded["rows_loaded"]) == ("stdin", 2)
    assert not (recon.workdir / "-").exists()
    again = recon("ingest", "--source", "pay", "-", input=LOG)
    assert "already ingested" in again.stderr  # the same bytes, by their SHA-256
    assert recon("runs", "--json").json()["runs"][0]["rows_loaded"] == 2


def test_output_dash_writes_csv_to_stdout(recon: Recon) -> None:
    _story(recon)
    done = recon("failures", "--date", "2026-11-23", "--format", "csv", "-o", "-")
    assert done.code == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("txn_id") and "T2" in done.stdout
    assert not (recon.workdir / "-").exists()
    both = recon("failures", "--format", "csv", "-o", "-", "--json")
    assert both.code == 2 and "both write to stdout" in both.stderr


def test_output_dash_writes_a_workbook_to_a_pipe(tmp_path: Path) -> None:
    """A real process: the workbook's bytes on stdout, nothing named `-` on disk."""
    env = recon_env(tmp_path / "recon.duckdb")
    run = [*RECON, "ingest", "--source", "pay", "-"]
    subprocess.run(run, input=LOG.encode(), env=env, cwd=tmp_path, check=True)
    for command in (
        ["failures", "--date", "2026-11-23", "--format", "xlsx", "-o", "-"],
        ["export", "--date", "2026-11-23", "--format", "xlsx", "-o", "-"],
    ):
        done = subprocess.run([*RECON, *command], env=env, cwd=tmp_path, capture_output=True)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(b"PK\x03\x04"), command  # a zip: the workbook
    assert not (tmp_path / "-").exists()
    folder = subprocess.run(
        [*RECON, "export", "--format", "csv", "-o", "-"], env=env, cwd=tmp_path,
        capture_output=True, text=True,
    )  # fmt: skip
    assert folder.returncode == 2 and "folder" in folder.stderr
    assert json.loads(
        subprocess.run(
            [*RECON, "runs", "--json"], env=env, cwd=tmp_path, capture_output=True, check=True
        ).stdout
    )["runs"]
