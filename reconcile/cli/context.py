"""What every command shares: the global options and settings (App), the `recon` group, parameter types and option bundles.

This module is imported by every `recon` run, `recon --version` and `recon --help` too, which
load nothing else of the package (tests/test_startup.py): what it needs of the library (the
settings, the session, the masking) is imported where it is used, on the first command that
needs it.
"""

from __future__ import annotations

import importlib
import logging
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from gettext import gettext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from reconcile.ingest.batch import Input
    from reconcile.session import Session
    from reconcile.settings import Settings

log = logging.getLogger("reconcile")


EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_FINDINGS = 0, 1, 2, 3

# The commands that may create the store where there is none: `init`, and those that write
# what arrives from outside (files, control totals, signals, tokens, monitors, a test alert) or
# serve others who do. Every other command reads, or changes what is already in a store
# (breaks, monitors, tokens, the audit key): where there is no store it refuses, "no database
# at PATH", exit 1, and creates nothing, so a command run in the wrong folder says so instead
# of answering from a new empty store.
CREATING_COMMANDS = frozenset(
    {
        "init",
        "ingest",
        "daily",
        "expect",
        "monitor add",
        "report schedule",
        "token create",
        "ping",
        "run",
        "watch",
        "serve",
        "notify test",
    }
)


def command_name() -> str:
    """The running command as typed after `recon` (`monitor add`), options left out."""
    ctx, names = click.get_current_context(silent=True), []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(reversed(names))


@dataclass
class App:
    """Global options, and the settings they resolve to (loaded on first use)."""

    db_path: str | None
    config: str | None
    now: str | None
    json: bool
    _settings: Settings | None = field(default=None, repr=False)
    _now: datetime | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from reconcile import logs
            from reconcile.settings import load_settings

            self._settings = load_settings(self.config, db=self.db_path, now=self.now)
            logs.configure(
                level=self._settings.log_level,
                log_file=self._settings.log_file,
                file_level=self._settings.log_file_level,
                secrets=self._settings.secret_values(),
            )
        return self._settings

    @property
    def now_time(self) -> datetime:
        """This command's `now`, read once (the session and everything it calls use it)."""
        if self._now is None:
            self._now = self.settings.current_time()
        return self._now

    @contextmanager
    def session(
        self, *, now: datetime | None = None, sync_config: bool = True
    ) -> Iterator[Session]:
        """This command's one session: the store, its audit trail (the OS user, via cli),
        `now` (the command's, unless given: a server's stop is later than its start); the
        chain's head is anchored on the way out, whatever happened. `sync_config=False` leaves
        the configuration file's changes unrecorded (`recon audit start-key` writes first).
        Only the CREATING_COMMANDS create a store where there is none."""
        from reconcile.session import open_session, trail_for

        settings = self.settings
        with open_session(
            settings,
            trail_for(settings, "cli"),
            now=now or self.now_time,
            sync_config=sync_config,
            create=command_name() in CREATING_COMMANDS,
        ) as session:
            yield session


def parse_day(value: str | None, param: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"expected a date as YYYY-MM-DD, got {value!r}", param_hint=param
        ) from None


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        from reconcile import redact

        return redact.mask_pans(value)
    if isinstance(value, tuple | list):
        return type(value)(_masked(item) for item in value)
    return value


def _json_after(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    app = ctx.find_object(App)
    if value and app is not None:
        app.json = True


JSON_HELP = "Machine-readable output on stdout."


class _MaskedParameters(click.Command):
    """Every identifier typed on the command line enters here: each text argument and option
    value (run ids, source, monitor and token names, tags, reasons...) has its card numbers
    masked before any command sees it, so none reaches a table, a log or an alert. Paths are
    the exception (the file must still be found): what is stored or printed of a file name is
    masked where the file is read (`ingest.ingest_file`), and the command run by `recon run` is
    passed through as given.

    Every command also takes `--json` after its name (`recon runs --json`), as the group takes
    it before; but a command that passes unknown options on (`recon run`, whose output is its
    job's) keeps every option after its name for the job."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.context_settings.get("ignore_unknown_options") and not any(
            "--json" in getattr(p, "opts", ()) for p in self.params
        ):
            self.params.append(
                click.Option(
                    ["--json", "json_after"],
                    is_flag=True,
                    expose_value=False,
                    callback=_json_after,
                    help=JSON_HELP,
                )
            )

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        for param in self.get_params(ctx):
            if param.name in ctx.params and not isinstance(
                param.type, click.Path | click.types.UnprocessedParamType
            ):
                ctx.params[param.name] = _masked(ctx.params[param.name])
        return rest


class _MaskedGroup(_MaskedParameters, click.Group):
    command_class = _MaskedParameters
    group_class: type[click.Group] | type[type] | None = type  # subgroups: this class too


# click 8.4+ says which commands are close to a mistyped one (older versions: nothing to catch).
_NO_SUCH_COMMAND: Any = getattr(click.exceptions, "NoSuchCommand", ())


class _LazyGroup(_MaskedGroup):
    """The `recon` group, whose commands are loaded when they run (click's "lazily loading
    subcommands"): `lazy_commands` names each command's module and object ("module:object",
    the command as its module registers it on `cli`) and the first sentence of its help, which
    `recon --help` lists without importing any command's module. So a command pays for what it
    uses, and `recon --version` and `recon --help` for nothing but click."""

    group_class = _MaskedGroup  # `recon audit` and the other subgroups load eagerly

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands: dict[str, tuple[str, str]] = {}

    def add_lazy_commands(self, commands: Mapping[str, tuple[str, str]]) -> None:
        self.lazy_commands.update(commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def _load(self, name: str) -> None:
        module, _, attribute = self.lazy_commands[name][0].partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module}:{attribute} is not a click command")
        if name not in self.commands:  # its module made it without registering it on `cli`
            self.add_command(command, name)

    def listed(self, ctx: click.Context, name: str) -> click.Command | None:
        """The command as `recon --help` lists it: the loaded one, else a stand-in carrying
        the help's first sentence (its short help is the same, whatever the width)."""
        if name in self.commands or name not in self.lazy_commands:
            return super().get_command(ctx, name)
        return click.Command(name, help=self.lazy_commands[name][1])

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own, with `listed` for `get_command`: listing loads no command.
        commands = []
        for name in self.list_commands(ctx):
            command = self.listed(ctx, name)
            if command is not None and not command.hidden:
                commands.append((name, command))
        if commands:
            limit = formatter.width - 6 - max(len(name) for name, _ in commands)
            rows = [(name, command.get_short_help_str(limit)) for name, command in commands]
            with formatter.section(gettext("Commands")):
                formatter.write_dl(rows)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except _NO_SUCH_COMMAND as exc:  # suggest among all the commands, not the loaded ones
            raise _NO_SUCH_COMMAND(
                exc.command_name, possibilities=self.list_commands(ctx), ctx=ctx
            ) from None


def _show_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """click's `version_option`, with the version read only when it is asked for."""
    if not value or ctx.resilient_parsing:
        return
    import reconcile

    shown = {"prog": "recon", "package": "reconcile", "version": reconcile.__version__}
    click.echo(gettext("%(prog)s, version %(version)s") % shown, color=ctx.color)
    ctx.exit()


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--db",
    metavar="PATH",
    type=click.Path(),
    help="DuckDB file (env RECON_DB; default ./recon.duckdb).",
)
@click.option(
    "--config",
    metavar="PATH",
    type=click.Path(),
    help="recon.toml to read (env RECON_CONFIG; default ./recon.toml if present).",
)
@click.option("--now", metavar="ISO8601", help="Pretend it is this time (env RECON_NOW).")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_version,
    help=gettext("Show the version and exit."),
)
@click.pass_context
def cli(
    ctx: click.Context, db: str | None, config: str | None, now: str | None, as_json: bool
) -> None:
    """reconcile: run logs into DuckDB (validated, masked), reconciled against what was
    expected, failures listed, and every recurring signal watched.

    \b
    Example, on the bundled sample data:
      recon --config sample_data/recon.toml init
      recon ingest --source payments-loader sample_data/payments-loader/runs/*
      recon reconcile --date last
      recon failures --date last
    """
    from reconcile import logs

    ctx.obj = App(db_path=db, config=config, now=now, json=as_json)
    logs.set_command(ctx.invoked_subcommand or "")


pass_app = click.make_pass_decorator(App)


def _pick_source(settings: Settings, given: str | None) -> str:
    if given:
        return given
    if len(settings.sources) == 1:
        return next(iter(settings.sources))
    configured = ", ".join(sorted(settings.sources)) or "none configured"
    raise click.UsageError(f"name the source with --source (configured sources: {configured})")


def date_options(function: Any) -> Any:
    """--date / --since / --until / --source, shared by the commands that work on days."""
    for option in reversed(
        [
            click.option("--date", "day", metavar="DATE|last", help="One business date."),
            click.option("--since", metavar="DATE", help="First business date of a range."),
            click.option("--until", metavar="DATE", help="Last business date of a range."),
            click.option("--source", "-s", metavar="NAME", help="Only this source."),
        ]
    ):
        function = option(function)
    return function


class Duration(click.ParamType):
    """`90s`, `15m`, `2h`, `1d` -> whole seconds."""

    name = "DURATION"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        from reconcile.settings import parse_duration

        try:
            return int(parse_duration(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Instant(click.ParamType):
    """An ISO 8601 time; without an offset it is UTC."""

    name = "TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        from reconcile.settings import parse_now

        try:
            return parse_now(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION, INSTANT = Duration(), Instant()


def _record_event(
    app: App, action: str, target: str, details: dict[str, Any], now: datetime | None = None
) -> None:
    """An event on its own, in a session of its own (start, stop, files written), at the
    command's `now` unless given."""
    with app.session(now=now) as session:
        session.record_alone(action, target, details=details)


DASH = Path("-")


@contextmanager
def stdin_inputs(files: Sequence[Path]) -> Iterator[list[Path | Input]]:
    """The files to ingest, with `-` read from stdin: its bytes are kept in a private temporary
    file (a file loads in one transaction, and its SHA-256 is its identity), called `stdin` in
    the store, the audit trail and messages."""
    if DASH not in files:
        yield list(files)
        return
    from reconcile.ingest.batch import Input

    with tempfile.TemporaryDirectory(prefix="recon-stdin-") as folder:
        path = Path(folder) / "stdin"
        with path.open("wb") as copy:
            shutil.copyfileobj(sys.stdin.buffer, copy)
        yield [Input(path, name="stdin") if given == DASH else given for given in files]


@contextmanager
def stdout_output(
    output: Path | None, fmt: str, *, binary: bool, as_json: bool
) -> Iterator[Path | None]:
    """`-o -`: the output goes to stdout. A text format is written there as without `-o`
    (None); a binary one (xlsx, parquet) is written to a private temporary file, then copied
    to stdout, unless stdout is a terminal."""
    if output != DASH:
        yield output
        return
    if as_json:
        raise click.UsageError("--json and -o - both write to stdout: give -o FILE")
    if not binary:
        yield None
        return
    if sys.stdout.isatty():
        raise click.UsageError(
            f"{fmt} is binary: redirect stdout to a file or a pipe, or give -o FILE"
        )
    with tempfile.TemporaryDirectory(prefix="recon-stdout-") as folder:
        path = Path(folder) / f"stdout.{fmt}"
        yield path
        sys.stdout.flush()
        with path.open("rb") as written:
            shutil.copyfileobj(written, sys.stdout.buffer)
        sys.stdout.buffer.flush()
