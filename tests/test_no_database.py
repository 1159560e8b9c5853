"""A command that reads, run where there is no store, refuses and creates nothing (issue 13,
item 9): `recon runs` in the wrong folder used to answer "no runs yet" from a store it had just
created. Only `init` and the commands that write what arrives create one (CREATING_COMMANDS)."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest

from reconcile.cli import cli
from reconcile.cli.context import CREATING_COMMANDS

from .support import recon_env, run_recon, run_recon_in_process

READS = [
    ("runs",),
    ("failures",),
    ("reconcile",),
    ("breaks",),
    ("audit", "log"),
    ("monitor", "list"),
]


def _env_without_store() -> dict[str, str]:
    env = recon_env(Path("unused"))
    del env["RECON_DB"]  # the default: ./recon.duckdb
    return env


@pytest.mark.parametrize("command", READS, ids=" ".join)
def test_a_read_command_in_an_empty_folder_refuses_and_creates_nothing(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    done = run_recon(command, env=_env_without_store(), cwd=tmp_path)
    assert done.code == 1, done
    assert f"no database at {tmp_path / 'recon.duckdb'} (set RECON_DB or --db)" in done.stderr, (
        done.stderr
    )
    assert done.stdout == ""
    assert os.listdir(tmp_path) == []


def test_a_missing_db_given_by_flag_is_named(tmp_path: Path) -> None:
    wanted = tmp_path / "elsewhere" / "recon.duckdb"
    done = run_recon(("--db", wanted, "runs"), env=_env_without_store(), cwd=tmp_path)
    assert done.code == 1 and f"no database at {wanted}" in done.stderr
    assert os.listdir(tmp_path) == []


def _leaf_commands() -> list[str]:
    found = []

    def walk(group: click.Group, prefix: str) -> None:
        # Through click's API: `recon` loads a command's module when it is asked for (lazily).
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            path = f"{prefix} {name}".strip()
            if isinstance(command, click.Group):
                walk(command, path)
                if getattr(command, "invoke_without_command", False):
                    found.append(path)
            else:
                found.append(path)

    walk(cli, "")
    return sorted(found)


# Arguments enough for each reading command to reach the store.
ARGS = {
    "breaks assign": ["BRK-1", "alice"],
    "breaks comment": ["BRK-1", "note"],
    "breaks resolve": ["BRK-1", "--reason", "r"],
    "breaks show": ["BRK-1"],
    "bisect": ["--source", "pay"],
    "config diff": ["1", "2"],
    "config revert": ["monitor:x", "--to", "1"],
    "export": ["--format", "xlsx", "-o", "out.xlsx"],
    "history": ["--date", "2026-11-02"],
    "monitor pause": ["x"],
    "monitor remove": ["x"],
    "monitor resume": ["x"],
    "monitor show": ["x"],
    "monitor edit": ["x", "--grace", "1h"],
    "monitor log": ["x"],
    "forget": ["1"],
    "token revoke": ["x"],
    "report chart": ["-o", "chart.png"],
}
NO_STORE = {"monitor preview"}  # works on its arguments alone


def test_every_other_command_refuses_where_there_is_no_store(tmp_path: Path) -> None:
    """Each command is either one that creates the store, or refuses without one: a command
    added later must be put on one side."""
    env = _env_without_store()
    for command in _leaf_commands():
        if command in CREATING_COMMANDS or command in NO_STORE:
            continue
        done = run_recon_in_process(
            [*command.split(), *ARGS.get(command, [])], env=env, cwd=tmp_path
        )
        assert done.code == 1 and "no database at" in done.stderr, (command, done)
        assert os.listdir(tmp_path) == [], command
