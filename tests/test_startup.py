"""Small work is fast (issue 14): `recon --version` and `recon --help` load click and the
command line's own frame, not the library (no DuckDB, pandas, pydantic or apprise), and a
command loads only its own module. What they cost is measured by tests/bench/bench_startup.py;
here, what they import, in a real process.

`recon --help` lists each command from the registry (reconcile.cli.COMMANDS) without importing
it: the registry must say what the command itself says, at every terminal width."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from reconcile.cli import COMMANDS, cli

from .support import ROOT

HEAVY = ("duckdb", "pandas", "numpy", "pydantic", "pydantic_settings", "apprise", "tabulate")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _imported(*args: str) -> set[str]:
    """The modules `python -X importtime -m reconcile ARGS` imported, in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "reconcile", *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # importtime lines: "import time: SELF | CUMULATIVE | <indent>module"
    return {
        line.rpartition("|")[2].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


# `recon ARGS` run as `python -m reconcile` runs it, then the names of the modules it loaded.
# (Once a command writes to stderr, -X importtime's lines pass through recon's masking stderr,
# which may drop some: the process itself is asked.)
LOADED = """
import atexit, runpy, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write("\\n".join(sys.modules)))
runpy.run_module("reconcile", run_name="__main__", alter_sys=True)
"""


def _loaded(tmp: Path, *args: str) -> set[str]:
    out = tmp / "modules.txt"
    done = subprocess.run(
        [sys.executable, "-c", LOADED, str(out), *args],
        env=_env(),
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(out.read_text().splitlines())


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("-h",)], ids=" ".join)
def test_version_and_help_load_no_library(args: tuple[str, ...]) -> None:
    modules = _imported(*args)
    assert "click" in modules  # the measurement saw the imports
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == [], heavy
    ours = sorted(m for m in modules if m.startswith("reconcile."))
    assert ours == [
        "reconcile.cli",
        "reconcile.cli.context",
        "reconcile.cli.output",
        "reconcile.errors",
    ], ours


def test_help_does_not_read_the_installed_version() -> None:
    assert "importlib.metadata" not in _imported("--help")


def test_the_version_is_read_on_first_use() -> None:
    import reconcile

    done = subprocess.run(
        [sys.executable, "-m", "reconcile", "--version"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == f"recon, version {reconcile.__version__}\n"
    assert reconcile.__version__ == importlib.metadata.version("reconcile")


def test_a_command_loads_its_own_module_only(tmp_path: Path) -> None:
    modules = _loaded(tmp_path, "monitor", "preview", "0 6 * * *")  # needs no store
    assert "reconcile.cli.monitor" in modules
    others = {f"reconcile.cli.{name}" for name in ("audit", "breaks", "ingest", "serve", "watch")}
    assert not modules & others, sorted(modules & others)
    assert not {"reconcile.cli.reconcile", "reconcile.cli.config"} & modules


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_registry_lists_each_command_as_the_command_says(name: str) -> None:
    """`recon --help` shows the registry's line for a command not loaded: it is the loaded
    command's own short help, at every width the help may be laid out in."""
    target, summary = COMMANDS[name]
    listed = click.Command(name, help=summary)
    command = cli.get_command(click.Context(cli), name)
    assert command is not None and command.name == name
    assert command.callback is not None
    assert command.callback.__module__ == target.partition(":")[0]
    for limit in range(10, 200):
        assert listed.get_short_help_str(limit) == command.get_short_help_str(limit), (
            f"COMMANDS[{name!r}] in reconcile/cli/__init__.py: give the first sentence of the "
            f"command's help ({command.get_short_help_str(500)!r})"
        )


def test_every_command_is_registered() -> None:
    """A command that its module registers on `cli` but COMMANDS does not name would never be
    loaded (or only after a sibling in its module): every module of reconcile/cli loaded, every
    command on `cli` is in the registry."""
    import reconcile.cli as package

    for module in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        importlib.import_module(module.name)
    missing = sorted(set(cli.commands) - set(COMMANDS))
    assert not missing, f"add them to COMMANDS in reconcile/cli/__init__.py: {missing}"
    ctx = click.Context(cli)
    assert all(cli.get_command(ctx, name) is not None for name in COMMANDS)
    assert set(cli.commands) == set(COMMANDS)


def test_help_is_the_same_before_and_after_the_commands_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "100")  # the width both listings are laid out in
    listing = subprocess.run(
        [sys.executable, "-m", "reconcile", "--help"],
        env={**_env(), "COLUMNS": "100"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    ctx = click.Context(cli, info_name="recon", **cli.context_settings)
    for name in COMMANDS:
        cli.get_command(ctx, name)
    with ctx:
        loaded = cli.get_help(ctx)
    assert "Commands:" in loaded and listing.rstrip("\n") == loaded.rstrip("\n")
