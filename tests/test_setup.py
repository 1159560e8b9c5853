"""Settings, the store and the CLI surface: what a newcomer meets first."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import duckdb
import pytest

from reconcile.cli import cli
from reconcile.store.migrations import MIGRATIONS

from .conftest import Recon
from .support import run_recon, timed

STEPS = [name for name, _ in MIGRATIONS]


def test_init_creates_a_private_database_and_is_idempotent(recon: Recon) -> None:
    first = recon("--json", "init")
    assert first.code == 0, first.stderr
    assert first.json()["migrations"] == STEPS
    assert recon.db.stat().st_mode & 0o777 == 0o600
    again = recon("--json", "init")
    assert again.code == 0 and again.json() == first.json()
    names = recon.query("SELECT name FROM schema_migrations")
    assert names == [(step,) for step in STEPS]


def test_every_command_migrates_on_open(recon: Recon) -> None:
    duckdb.connect(str(recon.db)).close()  # a store of a version before any schema step
    result = recon("--json", "runs")
    assert result.code == 0, result.stderr
    assert result.json() == {"runs": []}
    assert recon.query("SELECT count(*) FROM schema_migrations") == [(len(STEPS),)]


def test_invalid_setting_names_the_key_and_expected_form(recon: Recon) -> None:
    recon.write_config('[sources.pay]\ntimezone = "Europe/Lodnon"\n')
    result = recon("runs")
    assert result.code == 1
    assert "sources.pay.timezone" in result.stderr
    assert "IANA time zone" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_env_setting_names_the_key(recon: Recon) -> None:
    result = recon("runs", env={"RECON_LOCK_TIMEOUT": "soon"})
    assert result.code == 1
    assert "lock_timeout" in result.stderr and "30s" in result.stderr


def test_unknown_toml_key_is_reported_not_ignored(recon: Recon) -> None:
    recon.write_config('[sorces.pay]\ntimezone = "UTC"\n')
    result = recon("runs")
    assert result.code == 1 and "sorces" in result.stderr


def test_broken_toml_says_where(recon: Recon) -> None:
    recon.write_config("[sources.pay\n")
    result = recon("runs")
    assert (
        result.code == 1
        and "recon.toml is not valid TOML" in result.stderr
        and "line 1" in result.stderr
    )


def test_cli_flag_beats_env_which_beats_toml(recon: Recon) -> None:
    toml_db = recon.workdir / "toml.duckdb"
    env_db = recon.workdir / "env.duckdb"
    flag_db = recon.workdir / "flag.duckdb"
    recon.write_config(f'db = "{toml_db}"\n')
    env_without_db = {k: v for k, v in recon.env.items() if k != "RECON_DB"}
    done = run_recon(["init"], cwd=recon.workdir, env=env_without_db)
    assert done.code == 0, done.stderr
    assert toml_db.exists()
    done = run_recon(["init"], cwd=recon.workdir, env={**env_without_db, "RECON_DB": str(env_db)})
    assert done.code == 0, done.stderr
    assert env_db.exists()
    done = run_recon(
        ["--db", flag_db, "init"],
        cwd=recon.workdir,
        env={**env_without_db, "RECON_DB": str(env_db)},
    )
    assert done.code == 0, done.stderr
    assert flag_db.exists()


def test_missing_config_file_is_an_error(recon: Recon) -> None:
    result = recon("--config", "nope.toml", "runs")
    assert result.code == 1 and "nope.toml does not exist" in result.stderr


@contextmanager
def lock_held(db: Path, seconds: float) -> Iterator[None]:
    """Another process holds the database's write lock for `seconds`, then lets go."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
            "time.sleep(float(sys.argv[2])); c.close()",
            str(db),
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        if seconds > 5:
            holder.kill()
        holder.communicate()


def test_locked_database_waits_then_names_the_file(recon: Recon) -> None:
    assert recon("init").code == 0
    with lock_held(recon.db, 30), timed() as waited:
        result = recon("runs", env={"RECON_LOCK_TIMEOUT": "1s"})
    assert result.code == 1
    assert str(recon.db) in result.stderr and "locked" in result.stderr
    assert "lock_timeout" in result.stderr
    assert waited.elapsed >= 1.0  # it retried for the whole timeout before giving up


def test_lock_released_within_timeout_lets_the_command_finish(recon: Recon) -> None:
    assert recon("init").code == 0
    with lock_held(recon.db, 1.5):
        result = recon("--json", "runs", env={"RECON_LOCK_TIMEOUT": "20s"})
    assert result.code == 0, result.stderr


def _commands(group=cli, prefix=()):  # type: ignore[no-untyped-def]
    # Through click's API: `recon` loads a command's module when it is asked for (lazily).
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


@pytest.mark.parametrize(
    "path,command", list(_commands()), ids=lambda v: " ".join(v) if isinstance(v, tuple) else ""
)
def test_every_command_has_help_with_an_example(path: tuple[str, ...], command) -> None:  # type: ignore[no-untyped-def]
    assert command.help and "Example" in command.help, (
        f"recon {' '.join(path)} needs help with an example"
    )


def test_usage_error_exits_2(recon: Recon) -> None:
    result = recon("ingest")
    assert result.code == 2
    assert "Traceback" not in result.stderr


def test_ingest_without_source_lists_the_configured_ones(recon: Recon, write_file) -> None:  # type: ignore[no-untyped-def]
    path = write_file("a.csv", "txn_id,amount,status,run_id\n1,1.00,OK,R\n")
    recon.write_config("[sources.alpha]\n[sources.beta]\n")
    result = recon("ingest", path)
    assert result.code == 2 and "alpha, beta" in result.stderr


def test_expect_records_control_totals_and_replaces_them(recon: Recon) -> None:
    first = recon(
        "expect", "--source", "pay", "--run-id", "R1", "--count", "204", "--amount", "48,211.90"
    )
    assert first.code == 0, first.stderr
    again = recon("--json", "expect", "--source", "pay", "--run-id", "R1", "--count", "205")
    assert again.code == 0 and again.json()["expected_count"] == 205
    rows = recon.query(
        "SELECT source, run_id, expected_count, expected_amount, recorded_at FROM control_totals"
    )
    assert len(rows) == 1 and rows[0][:4] == ("pay", "R1", 205, None)
    assert rows[0][4].isoformat() == "2026-11-24T09:00:00+00:00"  # RECON_NOW, not the clock
    bad = recon("expect", "--source", "pay", "--run-id", "R1", "--count", "1", "--amount", "lots")
    assert bad.code == 2 and "--amount" in bad.stderr
