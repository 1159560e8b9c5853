"""The `recon` command line: a thin layer over the library.

Each command opens the store, calls one library function, renders the result and picks the
exit code (PRODUCT.md): 0 done; 1 could not do its job; 2 usage error; 3 done, with findings
that need a human. No SQL and no business rules live here.
"""

from __future__ import annotations

import getpass
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from tabulate import tabulate

from reconcile import (
    __version__,
    audit,
    breaks,
    changepoint,
    compare,
    content,
    currencies,
    db,
    expected,
    export,
    failures,
    gap,
    ingest,
    logs,
    migrations,
    notify,
    reconciliation,
    redact,
    runs,
    schedule,
    spool,
    tokens,
    versions,
    watchdog,
    workbook,
)
from reconcile.errors import ConfigError, DatabaseError, InputFileError, ReconError
from reconcile.reconciliation import scope_text as audit_scope
from reconcile.settings import Settings, load_settings, parse_duration, parse_now

log = logging.getLogger("reconcile")

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_FINDINGS = 0, 1, 2, 3


@dataclass
class App:
    """Global options, and the settings they resolve to (loaded on first use)."""

    db_path: str | None
    config: str | None
    now: str | None
    json: bool
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config, db=self.db_path, now=self.now)
            logs.configure(
                level=self._settings.log_level,
                log_file=self._settings.log_file,
                file_level=self._settings.log_file_level,
                secrets=self._settings.secret_values(),
            )
        return self._settings

    @contextmanager
    def connect(self) -> Iterator[db.Connection]:
        """The store, with this command's audit trail active; the chain's head is anchored
        outside the database on the way out, whatever happened."""
        settings = self.settings
        trail = audit.cli_trail(settings.audit_key_bytes(), settings.anchor_path())
        with db.connect(Path(settings.db), settings.lock_timeout) as conn, audit.acting(trail):
            try:
                versions.sync_file_config(conn, settings, settings.current_time())
                yield conn
            finally:
                audit.anchor(conn, settings.anchor_path())


format_amount = export.amount_text


# Characters a terminal acts on instead of showing: C0 controls but LF and TAB (ESC starts colour,
# cursor and OSC 8 hyperlink sequences, BEL ends them, CR overwrites the line), DEL, C1 controls
# (U+009B is a one-character CSI) and the bidirectional overrides that reorder what is shown.
_TERMINAL_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# In JSON text, C0 controls are escaped by json.dumps already; these are not (ensure_ascii off).
_JSON_RAW_CONTROLS = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_text(text: str) -> str:
    """`text` with every control character a terminal would act on shown as its escape
    (`\\x1b`, `\\u202e`): field values cannot colour, move, link or rewrite the screen."""
    return _TERMINAL_CONTROLS.sub(lambda m: ascii(m.group())[1:-1], text)


def emit_json(payload: Any) -> None:
    # The same JSON value, with C1 and bidi controls written as \u escapes, so that JSON shown
    # on a terminal cannot drive it either.
    line = export.json_line(payload)
    click.echo(_JSON_RAW_CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", line))


def info(message: str) -> None:
    """Human messages and progress go to stderr, so stdout stays clean for data."""
    click.echo(terminal_text(message), err=True)


def _cell(value: Any, wrapped: bool = False) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, Decimal):
        return format_amount(value)
    if isinstance(value, str):
        value = terminal_text(value)
        if len(value) > 60 and not wrapped:
            return value[:57] + "..."
    return value


def emit_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], wrap: Sequence[str] = ()
) -> None:
    """A table for people: long text is cut at 60 characters, except in the `wrap` columns
    (reasons and notes, whose end says what to do), which wrap onto further lines."""
    click.echo(
        tabulate(
            [[_cell(row.get(c), c in wrap) for c in columns] for row in rows],
            headers=[terminal_text(c) for c in columns],
            disable_numparse=True,
            maxcolwidths=[60 if c in wrap else None for c in columns],
        )
    )


def current_user() -> str:
    """Who ran the command: the OS user (recorded with every ingest)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


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
        return redact.mask_pans(value)
    if isinstance(value, tuple | list):
        return type(value)(_masked(item) for item in value)
    return value


class _MaskedParameters(click.Command):
    """Every identifier typed on the command line enters here: each text argument and option
    value (run ids, source, monitor and token names, tags, reasons...) has its card numbers
    masked before any command sees it, so none reaches a table, a log or an alert. Paths are
    the exception (the file must still be found): what is stored or printed of a file name is
    masked where the file is read (`ingest.ingest_file`), and the command run by `recon run` is
    passed through as given."""

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
    group_class = type  # subgroups are of this class too


@click.group(
    cls=_MaskedGroup,
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
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@click.version_option(__version__, prog_name="recon")
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
    ctx.obj = App(db_path=db, config=config, now=now, json=as_json)
    logs.set_command(ctx.invoked_subcommand or "")


pass_app = click.make_pass_decorator(App)


@cli.command()
@pass_app
def init(app: App) -> None:
    """Create the database, or bring its schema up to date. Safe to run again.

    \b
    Example:
      recon --db /var/lib/recon/recon.duckdb init
    """
    with app.connect() as conn:
        applied = migrations.applied(conn)
    app.settings.pan_key_bytes()  # without RECON_PAN_KEY: the store's key file, made now
    path = redact.mask_pans(str(app.settings.db))
    if app.json:
        emit_json({"db": path, "migrations": applied})
    else:
        info(f"database {path} is ready ({len(applied)} schema steps applied)")


@cli.command("ingest")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--source",
    "-s",
    metavar="NAME",
    help="Source the files came from ([sources.NAME] in recon.toml).",
)
@click.option(
    "--run-id", metavar="RUN", help="Run the rows belong to, where the file has no run_id column."
)
@click.option(
    "--kind",
    type=click.Choice(ingest.KINDS),
    default="processed",
    show_default=True,
    help="processed run log, expected manifest, control totals, or a failure report.",
)
@click.option(
    "--date",
    "report_date",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Business date of rows that carry none: a failure report's date, or a run log's "
    "without business_date and processed_at (default for run logs: the day of ingesting).",
)
@click.option(
    "--replace",
    is_flag=True,
    help="The files are corrected versions: what earlier files loaded for the same runs (for "
    "reports: the same dates), and an earlier load of the same bytes, is removed first.",
)
@pass_app
def ingest_command(
    app: App,
    files: tuple[Path, ...],
    source: str | None,
    run_id: str | None,
    kind: str,
    report_date: datetime | None,
    replace: bool,
) -> None:
    """Load run logs (CSV, JSON Lines, Parquet) into the store, validated and masked.

    Each file loads whole or not at all; a file already loaded for the source is skipped.
    Bad rows are quarantined with file, line, column and reason (see `recon quarantine`).
    Once they are fixed at the source, load the corrected file with --replace (also to re-read
    the same file after a settings fix). Exit 3 when any row was quarantined, 1 when a file
    could not be read.

    \b
    Examples:
      recon ingest --source payments-loader runs/PL-20261026.csv
      recon ingest --source payments-loader --kind expected expected/*.csv
      recon ingest --source payments-loader --kind totals control_totals.csv
      recon ingest --source payments-loader --kind report --date 2026-10-26 \\
          reports/failed-transactions-2026-10-26.csv
      recon ingest --source payments-loader --replace runs/PL-20261030-corrected.csv
    """
    settings = app.settings
    source_name = _pick_source(settings, source)
    config = settings.source(source_name)
    if settings.sources and source_name not in settings.sources:
        info(
            f"warning: source {source_name!r} is not in the settings (configured: "
            f"{', '.join(sorted(settings.sources))}); loading with the defaults (canonical "
            "columns, UTC). If that is a typo, nothing is lost: fix the name and ingest again."
        )
    results: list[dict[str, Any]] = []
    failed = quarantined = False
    with app.connect() as conn:
        for path in files:
            try:
                result = ingest.ingest_file(
                    conn,
                    path,
                    source=source_name,
                    config=config,
                    kind=kind,
                    run_id=run_id,
                    now=settings.current_time(),
                    user=current_user(),
                    pan_key=settings.pan_key_bytes(),
                    report_date=report_date.date() if report_date else None,
                    replace=replace,
                    keep=[r["file_id"] for r in results if "file_id" in r],
                )
            except InputFileError as exc:
                failed = True
                problem = _safe(str(exc))
                results.append(
                    {
                        "path": _safe(str(path)),
                        "source": source_name,
                        "kind": kind,
                        "error": problem,
                    }
                )
                info(f"error: {problem}")
                logs.event(log, logging.WARNING, "file refused", path=str(path), error=str(exc))
                audit.record_alone(
                    conn,
                    "ingest",
                    f"{source_name}:{path.name}",
                    now=settings.current_time(),
                    outcome="failure",  # nothing of it was written, but the attempt is recorded
                    details={"problem": problem},
                )
                continue
            if result.already_ingested:
                audit.record_alone(
                    conn,
                    "ingest",
                    f"{source_name}:{path.name}",
                    now=settings.current_time(),
                    outcome="skipped",
                    details={"path": str(path), "sha256": result.sha256, "reason": "already"},
                )
            with logs.correlate(run_id=result.run_ids[0] if len(result.run_ids) == 1 else None):
                logs.event(
                    log,
                    logging.INFO,
                    "file skipped: already ingested"
                    if result.already_ingested
                    else "file ingested",
                    path=str(path),
                    source=source_name,
                    kind=kind,
                    sha256=result.sha256,
                    run_ids=result.run_ids[:50],
                    rows_read=result.rows_read,
                    rows_loaded=result.rows_loaded,
                    rows_quarantined=result.rows_quarantined,
                )
            quarantined |= result.rows_quarantined > 0 and not result.already_ingested
            results.append(result.as_json())
            if not app.json:
                info(_describe_ingest(result))
            for warning in result.warnings:
                info(f"  warning: {warning}")
    if app.json:
        emit_json({"files": results})
    elif quarantined:
        info(
            f"some rows were quarantined: see them with `recon quarantine --source {source_name}`;"
            "\nonce fixed at the source, load the corrected file with `recon ingest --replace`"
        )
    sys.exit(EXIT_ERROR if failed else EXIT_FINDINGS if quarantined else EXIT_OK)


def _pick_source(settings: Settings, given: str | None) -> str:
    if given:
        return given
    if len(settings.sources) == 1:
        return next(iter(settings.sources))
    configured = ", ".join(sorted(settings.sources)) or "none configured"
    raise click.UsageError(f"name the source with --source (configured sources: {configured})")


def _describe_ingest(result: ingest.FileResult) -> str:
    if result.already_ingested:
        return (
            f"skipped {result.path}: already ingested for {result.source} "
            f"(same SHA-256 {result.sha256[:12]}…); nothing changed"
        )
    runs_text = ", ".join(result.run_ids[:5]) + (" …" if len(result.run_ids) > 5 else "")
    replaced = result.replaced
    replaced_text = ""
    if replaced is not None:
        what = f"{replaced['rows']} row(s) and {replaced['quarantined']} quarantined row(s)"
        named = [f["path"] for f in replaced["files"] + replaced["partly"]]
        whence = f"that {', '.join(named)} loaded" if named else "that earlier files loaded"
        removed = replaced["rows"] or replaced["quarantined"] or replaced["files"]
        replaced_text = (
            f"\n  replaced {what} {whence}"
            if removed
            else "\n  replaced nothing: no earlier rows for these runs"
        )
    return (
        f"loaded {result.path} ({result.kind}, {result.format}): {result.rows_read} rows read, "
        f"{result.rows_loaded} loaded, {result.rows_quarantined} quarantined"
        + (f"; runs {runs_text}" if runs_text else "")
        + replaced_text
    )


@cli.command("expect")
@click.option("--source", "-s", metavar="NAME", required=True, help="Source the run belongs to.")
@click.option("--run-id", metavar="RUN", required=True, help="The run these totals are for.")
@click.option("--count", type=click.IntRange(min=0), required=True, help="Expected transactions.")
@click.option("--amount", metavar="X", help="Expected amount total, e.g. 43895.06.")
@pass_app
def expect_command(app: App, source: str, run_id: str, count: int, amount: str | None) -> None:
    """Record the control totals a run should match (recording again replaces them).

    \b
    Example:
      recon expect --source payments-loader --run-id PL-20261116 --count 204 --amount 48211.90
    """
    total = None
    if amount is not None:
        try:
            total = Decimal(amount.replace(",", ""))
        except ArithmeticError:
            raise click.BadParameter(
                f"expected a decimal amount such as 1234.50, got {amount!r}", param_hint="--amount"
            ) from None
        if not total.is_finite():
            raise click.BadParameter("expected a finite amount", param_hint="--amount")
    with app.connect() as conn:
        expected.record_control_totals(
            conn,
            source=source,
            run_id=run_id,
            count=count,
            amount=total,
            now=app.settings.current_time(),
            user=current_user(),
        )
    if app.json:
        emit_json(
            {"source": source, "run_id": run_id, "expected_count": count, "expected_amount": total}
        )
    else:
        shown = f", amount {format_amount(total)}" if total is not None else ""
        info(f"recorded control totals for {source} run {run_id}: {count} transactions{shown}")


@cli.command("runs")
@click.option("--source", "-s", metavar="NAME", help="Only this source.")
@click.option("--since", metavar="DATE", help="Runs with business date on or after DATE.")
@click.option("--until", metavar="DATE", help="Runs with business date on or before DATE.")
@pass_app
def runs_command(app: App, source: str | None, since: str | None, until: str | None) -> None:
    """Per run: rows loaded, succeeded, failed and quarantined, and who ingested it when.

    \b
    Example:
      recon runs --source payments-loader --since 2026-11-01
    """
    with app.connect() as conn:
        rows = runs.list_runs(
            conn, source, parse_day(since, "--since"), parse_day(until, "--until")
        )
    if app.json:
        emit_json({"runs": rows})
        return
    if not rows:
        info("no runs yet: load a run log with `recon ingest --source NAME FILE`")
        return
    emit_table(
        rows,
        [
            "source",
            "run_id",
            "business_date",
            "rows_loaded",
            "rows_failed",
            "rows_quarantined",
            "first_processed_at",
            "ingested_by",
        ],
    )


@cli.command("quarantine")
@click.option("--source", "-s", metavar="NAME", help="Only this source.")
@click.option("--run-id", metavar="RUN", help="Only rows of this run.")
@click.option(
    "--limit", type=int, default=50, show_default=True, help="At most this many rows (0: all)."
)
@pass_app
def quarantine_command(app: App, source: str | None, run_id: str | None, limit: int) -> None:
    """Rows that could not be loaded: file, line, column, reason and the masked raw row.

    Fix the rows at the source and ingest the corrected file; the good rows are already in.

    \b
    Example:
      recon quarantine --source payments-loader
    """
    with app.connect() as conn:
        rows = runs.list_quarantine(conn, source, run_id, limit or None)
    if app.json:
        emit_json({"quarantine": rows})
        return
    if not rows:
        info("nothing quarantined")
        return
    emit_table(rows, ["path", "line", "column", "reason", "raw"], wrap=["reason"])


def _day_range(
    conn: db.Connection, day: str | None, since: str | None, until: str | None, source: str | None
) -> tuple[date, date] | None:
    """--date D | --date last | --since/--until, as a closed range; None: nothing loaded yet."""
    if day and (since or until):
        raise click.UsageError("give either --date or --since/--until, not both")
    if since or until:
        first = parse_day(since, "--since") or date.min
        last = parse_day(until, "--until") or date.max
        if first > last:
            raise click.UsageError(f"--since {since} is after --until {until}: swap them")
        return first, last
    if day and day != "last":
        only = parse_day(day, "--date") or date.min
        return only, only
    latest = failures.latest_business_date(conn, source)
    return (latest, latest) if latest else None


def _scope_range(
    conn: db.Connection, day: str | None, since: str | None, until: str | None, source: str | None
) -> tuple[date | None, date | None]:
    """Like `_day_range`, but no date option at all means every day: (None, None)."""
    if not (day or since or until):
        return None, None
    span = _day_range(conn, day, since, until, source)
    return span if span else (None, None)


def _tolerances(settings: Settings) -> dict[str, compare.Tolerance]:
    return {
        name: compare.Tolerance(config.amount_tolerance, config.amount_tolerance_percent)
        for name, config in settings.sources.items()
    }


def _reconcile(app: App, conn: db.Connection, scope: compare.Scope) -> reconciliation.Outcome:
    return reconciliation.reconcile(
        conn,
        scope,
        _tolerances(app.settings),
        now=app.settings.current_time(),
        user=current_user(),
        product_version=__version__,
    )


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


COUNT_COLUMNS = ["status", *reconciliation.COUNT_FIELDS]
DAY_COLUMNS = [
    "business_date",
    *COUNT_COLUMNS,
    "expected_amount",
    "processed_amount",
    "amount_difference",
]
RUN_COLUMNS = ["run_id", *DAY_COLUMNS]


@cli.command("reconcile")
@date_options
@click.option("--run", "run_id", metavar="RUN", help="Only this run.")
@click.option("--runs", "show_runs", is_flag=True, help="Also print the per-run table.")
@pass_app
def reconcile_command(
    app: App,
    day: str | None,
    since: str | None,
    until: str | None,
    source: str | None,
    run_id: str | None,
    show_runs: bool,
) -> None:
    """Expected versus processed, per run and per business day; results and breaks are kept.

    Every record gets one category: matched, failed, missing, duplicated, unexpected or
    amount_mismatch. Without a date, every run is reconciled. Re-running on unchanged inputs
    changes nothing; a run that arrived late adds a new version (see `recon history`).
    Exit 3 when a run or day in scope has breaks or is pending, 0 when all balance.

    \b
    Examples:
      recon reconcile --date 2026-11-13
      recon reconcile --since 2026-11-09 --until 2026-11-13 --runs
      recon reconcile --run PL-20261111
    """
    with app.connect() as conn:
        first, last = _scope_range(conn, day, since, until, source)
        scope = compare.Scope(source=source, run_id=run_id, since=first, until=last)
        outcome = _reconcile(app, conn, scope)
    if app.json:
        emit_json(
            {
                "reconciliation_id": outcome.reconciliation_id,
                "inputs_sha256": outcome.inputs_sha256,
                "runs_changed": outcome.runs_changed,
                "days_changed": outcome.days_changed,
                "runs": outcome.runs,
                "days": outcome.days,
            }
        )
    else:
        _describe_reconciliation(outcome, show_runs or bool(run_id))
    sys.exit(EXIT_FINDINGS if outcome.needs_attention else EXIT_OK)


def _describe_reconciliation(outcome: reconciliation.Outcome, show_runs: bool) -> None:
    if not outcome.runs:
        info("nothing to reconcile in that scope: ingest run logs and manifests first")
        return
    if outcome.days:
        emit_table(outcome.days, DAY_COLUMNS)
    if show_runs or not outcome.days:
        click.echo()
        emit_table(outcome.runs, RUN_COLUMNS)
    if currencies.mixed(outcome.currency_totals):
        click.echo()
        click.echo("amounts per currency (the amounts above add all currencies together, as")
        click.echo("control totals do; per day and currency: --json, or recon export):")
        emit_table(outcome.currency_totals, ["source", *currencies.TOTAL_COLUMNS])
    changed = (
        f"{outcome.runs_changed} run(s) and {outcome.days_changed} day(s) changed since the "
        "last reconciliation"
        if outcome.runs_changed or outcome.days_changed
        else "no change since the last reconciliation (inputs unchanged)"
    )
    info(
        f"reconciliation {outcome.reconciliation_id}: {len(outcome.runs)} run(s), "
        f"{len(outcome.days)} day(s); {changed}; breaks opened {outcome.breaks_opened}, "
        f"resolved {outcome.breaks_resolved}"
    )
    troubled = [d for d in outcome.days if d["status"] == "breaks"]
    pending = [r for r in outcome.runs if r["status"] == "pending"]
    if troubled:
        latest = troubled[-1]
        info(
            f"{len(troubled)} day(s) have breaks. Latest: {latest['business_date']}; see it with\n"
            f"  recon failures --date {latest['business_date']} --category all\n"
            f"  recon breaks --date {latest['business_date']}"
        )
    if pending:
        names = ", ".join(r["run_id"] for r in pending[:5])
        info(f"{len(pending)} run(s) expected but not arrived (pending): {names}")
    broken_runs = [r for r in outcome.runs if r["status"] == "breaks"]
    if broken_runs and not troubled:  # runs with no business date have no day to show them
        names = ", ".join(r["run_id"] for r in broken_runs[:5])
        info(f"{len(broken_runs)} run(s) have breaks: {names}; see them with recon breaks")
    unchecked = [r for r in outcome.runs if not r["has_manifest"] and not r["has_totals"]]
    if unchecked:
        names = ", ".join(r["run_id"] for r in unchecked[:5])
        info(
            f"{len(unchecked)} run(s) had nothing to compare with (no manifest, no control "
            f"totals): {names}; judged on their logs alone (failed, duplicated), nothing can be "
            "missing. Give what was expected with `recon ingest --kind expected|totals` or "
            "`recon expect`"
        )
    if not troubled and not pending and not broken_runs:
        info("all balanced")


FAILURE_FORMATS = ["table", "csv", "jsonl", "xlsx", "parquet"]


@cli.command("failures")
@date_options
@click.option(
    "--category",
    "categories",
    metavar="C,...",
    default="failed",
    show_default=True,
    help="Categories to list, comma-separated, or 'all' for every kind of break.",
)
@click.option(
    "--format", "fmt", type=click.Choice(FAILURE_FORMATS), default="table", show_default=True
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write to this file (needed for xlsx and parquet).",
)
@pass_app
def failures_command(
    app: App,
    day: str | None,
    since: str | None,
    until: str | None,
    source: str | None,
    categories: str,
    fmt: str,
    output: Path | None,
) -> None:
    """The failed-record list for a day or range: what the daily email carried, masked.

    The range is reconciled first (nothing changes when nothing new arrived), so the list
    always matches `recon reconcile`. A failure that a retry in the same run fixed is matched,
    not listed. Default: the latest business date loaded.

    \b
    Examples:
      recon failures --date 2026-11-13
      recon failures --since 2026-11-09 --until 2026-11-13 --category all --format csv > f.csv
      recon failures --date last --format xlsx -o failed.xlsx
    """
    wanted = _categories(categories)
    if fmt in ("xlsx", "parquet") and output is None:
        raise click.UsageError(f"--format {fmt} writes a file: give it with -o FILE")
    now = app.settings.current_time()
    with app.connect() as conn:
        span = _day_range(conn, day, since, until, source)
        if span is None:
            info("no transactions loaded yet: nothing to list")
            return
        first, last = span
        _reconcile(app, conn, compare.Scope(source=source, since=first, until=last))
        if fmt == "parquet" and output is not None:
            sql, params = failures.failures_query(first, last, wanted, source, now)
            export.write_parquet(conn, sql, params, output)
            rows = []
        else:
            rows = failures.list_failures(
                conn, first, last, categories=wanted, source=source, now=now
            )
    span_text = str(first) if first == last else f"{first} to {last}"
    label = "failed transaction(s)" if wanted == ["failed"] else f"record(s) ({', '.join(wanted)})"
    if app.json:
        emit_json({"since": first, "until": last, "categories": wanted, "failures": rows})
    elif fmt == "xlsx" and output is not None:
        sheet = export.Sheet("Failures", [export.Table(None, failures.COLUMNS, rows)])
        export.write_xlsx(output, [sheet], now)
        info(f"wrote {len(rows)} {label}, business date {span_text}, to {output}")
    elif fmt == "parquet":
        info(f"wrote the {label} of business date {span_text} to {output}")
    elif fmt in ("csv", "jsonl"):
        writer = export.write_csv if fmt == "csv" else export.write_jsonl
        if output is not None:
            with (
                export.private_file(output) as handle,
                io.TextIOWrapper(handle, encoding="utf-8", newline="") as text,
            ):
                writer(rows, failures.COLUMNS, text)
            info(f"wrote {len(rows)} {label}, business date {span_text}, to {output}")
        elif sys.stdout.isatty():  # read on a terminal: its controls shown, not obeyed
            shown = io.StringIO()
            writer(rows, failures.COLUMNS, shown)
            lines = shown.getvalue().split("\r\n")  # the CSV's line ends are no controls
            click.echo("\n".join(terminal_text(line) for line in lines), nl=False)
        else:
            writer(rows, failures.COLUMNS, sys.stdout)
    else:
        info(f"{len(rows)} {label}, business date {span_text}")
        if rows:
            # The note says why a record is here when its row never loaded (quarantined).
            noted = ["note"] if any(row.get("note") for row in rows) else []
            emit_table(rows, [*failures.COLUMNS, *noted], wrap=noted)
    _record_access(
        app,
        "failures.list",
        f"{source or 'all'}:{span_text}",
        [output] if output else [],
        {"categories": wanted, "format": fmt, "rows": len(rows) if fmt != "parquet" else None},
    )


def _record_access(
    app: App, action: str, target: str, paths: Sequence[Path], details: dict[str, Any]
) -> None:
    """Reading stored (masked) transaction data is an access: record what was written where,
    with the SHA-256 of each file, once the files are complete."""
    mode = int(app.settings.export_mode, 8)  # private (0600) unless export_mode shares them
    written: dict[str, str | None] = {
        str(path): export.seal_output(path, mode) for path in paths if path.is_file()
    }
    _record_event(app, action, target, {**details, "written": written or {"stdout": None}})


def _categories(text: str) -> list[str]:
    if text.strip() == "all":
        return list(compare.BREAK_CATEGORIES)
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [c for c in chosen if c not in compare.CATEGORIES]
    if unknown or not chosen:
        raise click.BadParameter(
            f"unknown category {', '.join(unknown) or '(none)'}; choose from "
            f"{', '.join(compare.CATEGORIES)} or 'all'",
            param_hint="--category",
        )
    return chosen


BREAK_COLUMNS = [
    "break_id",
    "business_date",
    "run_id",
    "txn_id",
    "category",
    "amount",
    "currency",
    "age_days",
    "status",
    "assignee",
    "note",
]


@cli.group("breaks", invoke_without_command=True)
@date_options
@click.option("--status", type=click.Choice(breaks.STATUSES), default="open", show_default=True)
@click.option("--category", "categories", metavar="C,...", default="all", show_default=True)
@click.pass_context
def breaks_group(
    ctx: click.Context,
    day: str | None,
    since: str | None,
    until: str | None,
    source: str | None,
    status: str,
    categories: str,
) -> None:
    """The break register: every non-matched record, kept across reconciliations.

    A break is resolved by itself when a later run processes the transaction, or by a person
    with `recon breaks resolve`. Age counts days since the business date.

    \b
    Examples:
      recon breaks --date 2026-11-13
      recon breaks --status all --category missing,duplicated
      recon breaks assign BRK-1a2b3c4d5e6f alice
      recon breaks comment BRK-1a2b3c4d5e6f "ledger team looking at it"
      recon breaks resolve BRK-1a2b3c4d5e6f --reason "posted by hand, ref J-1182"
    """
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(App)
    assert app is not None
    wanted = _categories(categories)
    with app.connect() as conn:
        first, last = _scope_range(conn, day, since, until, source)
        rows = breaks.list_breaks(
            conn,
            now=app.settings.current_time(),
            status=status,
            source=source,
            since=first,
            until=last,
            categories=wanted,
        )
    if app.json:
        emit_json({"breaks": rows})
        return
    if not rows:
        info(f"no {status} breaks in that scope" if status != "all" else "no breaks")
        return
    emit_table(rows, BREAK_COLUMNS)
    info(f"{len(rows)} break(s); details: recon breaks show BREAK_ID")


@breaks_group.command("show")
@click.argument("break_id")
@pass_app
def breaks_show(app: App, break_id: str) -> None:
    """One break with its history of comments.

    \b
    Example:
      recon breaks show BRK-1a2b3c4d5e6f
    """
    with app.connect() as conn:
        found = breaks.show(conn, break_id, app.settings.current_time())
    if app.json:
        emit_json(found)
        return
    for key, value in found.items():
        if key != "comments":
            click.echo(f"{key:>16}: {_cell(value) if value is not None else ''}")
    for note in found["comments"]:
        click.echo(
            f"  {_cell(note['commented_at'])} {_cell(note['commented_by'], True)}: "
            f"{_cell(note['comment'], True)}"
        )


@breaks_group.command("assign")
@click.argument("break_id")
@click.argument("assignee")
@pass_app
def breaks_assign(app: App, break_id: str, assignee: str) -> None:
    """Give a break to someone to work.

    \b
    Example:
      recon breaks assign BRK-1a2b3c4d5e6f alice
    """
    with app.connect() as conn:
        breaks.assign(
            conn, break_id, assignee, now=app.settings.current_time(), user=current_user()
        )
    info(f"{break_id} assigned to {assignee}")


@breaks_group.command("comment")
@click.argument("break_id")
@click.argument("text")
@pass_app
def breaks_comment(app: App, break_id: str, text: str) -> None:
    """Add a note to a break (kept with who wrote it and when).

    \b
    Example:
      recon breaks comment BRK-1a2b3c4d5e6f "ledger team looking at it"
    """
    with app.connect() as conn:
        breaks.comment(
            conn, break_id, _safe(text), now=app.settings.current_time(), user=current_user()
        )
    info(f"comment added to {break_id}")


@breaks_group.command("resolve")
@click.argument("break_id")
@click.option("--reason", required=True, help="Why it is resolved (kept in the register).")
@pass_app
def breaks_resolve(app: App, break_id: str, reason: str) -> None:
    """Resolve a break by hand, with a reason; the resolution stands on later reconciles.

    \b
    Example:
      recon breaks resolve BRK-1a2b3c4d5e6f --reason "posted by hand, ref J-1182"
    """
    with app.connect() as conn:
        breaks.resolve(
            conn, break_id, _safe(reason), now=app.settings.current_time(), user=current_user()
        )
    info(f"{break_id} resolved")


@cli.command("export")
@date_options
@click.option(
    "--format", "fmt", type=click.Choice(workbook.FORMATS), required=True, help="Output format."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="The .xlsx file, or the folder for csv and parquet files.",
)
@pass_app
def export_command(
    app: App,
    day: str | None,
    since: str | None,
    until: str | None,
    source: str | None,
    fmt: str,
    output: Path,
) -> None:
    """The finance export: control totals per day and per run, breaks, and source files.

    XLSX: a Summary sheet (generation time in UTC, product version, per-day and per-run totals,
    the source files with their SHA-256) and a Breaks sheet whose differences add up to each
    day's amount difference. CSV and Parquet: days, runs, breaks and files in a folder. The
    scope is reconciled first; the same inputs give the same files.

    \b
    Examples:
      recon export --since 2026-11-09 --until 2026-11-13 --format xlsx -o week46.xlsx
      recon export --date 2026-11-13 --format csv -o export-2026-11-13/
    """
    now = app.settings.current_time()
    with app.connect() as conn:
        first, last = _scope_range(conn, day, since, until, source)
        scope = compare.Scope(source=source, since=first, until=last)
        outcome = _reconcile(app, conn, scope)
        written = workbook.write(
            conn,
            scope,
            fmt,
            output,
            generated_at=now,
            product_version=__version__,
            inputs_sha256=outcome.inputs_sha256,
        )
    if app.json:
        emit_json(
            {
                "paths": [str(p) for p in written.paths],
                "days": written.days,
                "runs": written.runs,
                "breaks": written.breaks,
                "inputs_sha256": outcome.inputs_sha256,
            }
        )
    else:
        info(
            f"wrote {', '.join(str(p) for p in written.paths)}: {written.days} day(s), "
            f"{written.runs} run(s), {written.breaks} break row(s)"
        )
    _record_access(
        app,
        "export",
        audit_scope(scope),
        written.paths,
        {"format": fmt, "days": written.days, "runs": written.runs, "breaks": written.breaks},
    )


@cli.command("history")
@click.option("--date", "day", metavar="DATE", help="Versions of this business day's result.")
@click.option("--run", "run_id", metavar="RUN", help="Versions of this run's result.")
@click.option("--source", "-s", metavar="NAME", help="Only this source.")
@pass_app
def history_command(app: App, day: str | None, run_id: str | None, source: str | None) -> None:
    """Every stored version of a day's or a run's reconciliation, oldest first.

    A new version appears only when the inputs changed (a late run, a corrected manifest).

    \b
    Examples:
      recon history --date 2026-11-11
      recon history --run PL-20261111
    """
    if bool(day) == bool(run_id):
        raise click.UsageError("give one of --date or --run")
    with app.connect() as conn:
        rows = reconciliation.history(
            conn, source=source, run_id=run_id, day=parse_day(day, "--date")
        )
    if app.json:
        emit_json({"versions": rows})
        return
    if not rows:
        info("no stored results: run `recon reconcile` first")
        return
    emit_table(
        rows,
        ["version", "reconciled_at", *COUNT_COLUMNS, "amount_difference", "inputs_sha256"],
    )


class Duration(click.ParamType):
    """`90s`, `15m`, `2h`, `1d` -> whole seconds."""

    name = "DURATION"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
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
        try:
            return parse_now(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION, INSTANT = Duration(), Instant()


@cli.group("monitor")
def monitor_group() -> None:
    """Monitors: recurring signals that must arrive on schedule (reports, nightly loads, runs).

    \b
    Examples:
      recon monitor add daily-report --cron "0 7 * * 1-5" --tz Europe/London --grace 1h
      recon monitor add nightly-load --every 1d --grace 2h --tag payments
      recon monitor list
    """


def _preview_rows(cron: schedule.Cron, start: datetime, count: int) -> list[dict[str, Any]]:
    tz = schedule.zone(cron.tz)
    rows, moment = [], start
    for _ in range(count):
        due = cron.next_after(moment)
        if due is None:
            break
        local = due.astimezone(tz)
        day_start = datetime(local.year, local.month, local.day, tzinfo=tz)
        day_end = day_start + timedelta(days=1)
        dst_change = day_start.utcoffset() != day_end.astimezone(tz).utcoffset()
        rows.append({"utc": due, "local": local, "dst_change": dst_change})
        moment = due
    return rows


@monitor_group.command("add")
@click.argument("name")
@click.option("--cron", "cron_expr", metavar="EXPR", help="Five-field cron expression.")
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone of the cron time.")
@click.option("--every", type=DURATION, help="A plain period instead of cron, e.g. 1h.")
@click.option("--grace", type=DURATION, required=True, help="How late a signal may be.")
@click.option("--early", type=DURATION, default=0, help="How early a signal still counts.")
@click.option("--tag", "tags", multiple=True, help="Routes alerts to targets with this tag.")
@click.option("--max-runtime", type=DURATION, help="A started run longer than this is down.")
@click.option("--realert", type=DURATION, help="Alert again this often while down.")
@click.option("--source", help="The source this monitor is about: its runs are the signal.")
@click.option(
    "--hears",
    type=click.Choice(watchdog.HEARS),
    help="The signal: ping, run (of --source) or email (in --mailbox). "
    "Default: email with --mailbox, run with --source, else ping.",
)
@click.option("--mailbox", metavar="ALIAS", help="Watch this mailbox ([mailboxes.ALIAS]).")
@click.option("--subject", metavar="REGEX", help="Email: subject pattern (case-insensitive).")
@click.option("--from", "sender", metavar="ADDRESS", help="Email: the sender's address.")
@click.option(
    "--min-transactions",
    type=click.IntRange(0),
    help="A run with fewer loaded transactions fails (default 1 for monitors hearing runs).",
)
@click.option(
    "--max-count-diff",
    type=click.FloatRange(0),
    metavar="PERCENT",
    help="A run whose loaded count is this far off its expected count fails.",
)
@click.option(
    "--max-failure-rate",
    type=click.FloatRange(0, 100),
    metavar="PERCENT",
    help="A run with a higher failure rate fails.",
)
@click.option(
    "--failure-rate-jump",
    type=click.FloatRange(1),
    metavar="TIMES",
    help="A run whose failure rate is this many times the median of the 7 before fails.",
)
@click.option("--reason", help="Why (kept with the configuration version).")
@pass_app
def monitor_add(
    app: App,
    name: str,
    cron_expr: str | None,
    tz: str,
    every: int | None,
    grace: int,
    early: int,
    tags: tuple[str, ...],
    max_runtime: int | None,
    realert: int | None,
    source: str | None,
    hears: str | None,
    mailbox: str | None,
    subject: str | None,
    sender: str | None,
    min_transactions: int | None,
    max_count_diff: float | None,
    max_failure_rate: float | None,
    failure_rate_jump: float | None,
    reason: str | None,
) -> None:
    """Create a monitor; it expects its first slot after now and alerts if that one is missed.

    A monitor with --source hears the arrival of that source's runs (a file ingested, or a
    run completed over HTTP) and judges each by its content checks; its alerts say what
    piled up while it was silent. With --mailbox it hears a matching email instead.

    \b
    Examples:
      recon monitor add daily-report --cron "0 7 * * 1-5" --tz Europe/London --grace 1h
      recon monitor add nightly-load --every 1d --grace 2h --tag payments --max-runtime 3h
      recon monitor add loader-runs --cron "30 22 * * 1-5" --tz Europe/London --grace 1h \\
          --source payments-loader --failure-rate-jump 3 --max-count-diff 5
      recon monitor add report-email --cron "0 7 * * 1-5" --tz Europe/London --grace 1h \\
          --mailbox ops --subject "^Failed Transactions" --from reports@example.com \\
          --source payments-loader
    """
    if bool(cron_expr) == (every is not None):
        raise click.UsageError("give either --cron EXPR (with --tz) or --every DURATION")
    if every is not None and every <= 0:
        raise click.UsageError("--every must be a period longer than zero, such as 15m or 1d")
    hears = hears or ("email" if mailbox else "run" if source else "ping")
    if (subject or sender or mailbox) and hears != "email":
        raise click.UsageError("--mailbox, --subject and --from are for monitors hearing email")
    if hears == "email" and not mailbox:
        raise click.UsageError("a monitor hearing email needs --mailbox ALIAS")
    if hears == "run" and not source:
        raise click.UsageError("a monitor hearing runs needs --source NAME")
    checks = (min_transactions, max_count_diff, max_failure_rate, failure_rate_jump)
    if any(c is not None for c in checks) and hears != "run":
        raise click.UsageError(
            "content checks judge arriving runs: use them with --source NAME (hearing runs)"
        )
    if hears == "email" and mailbox and mailbox not in app.settings.mailboxes:
        known = ", ".join(sorted(app.settings.mailboxes)) or "none configured"
        raise click.UsageError(
            f"no mailbox {mailbox!r} in the settings ({known}); add [mailboxes.{mailbox}] "
            "to recon.toml"
        )
    if subject:
        try:
            re.compile(subject)
        except re.error as exc:
            raise click.BadParameter(
                f"not a regular expression: {exc}", param_hint="--subject"
            ) from None
    if min_transactions is None and hears == "run":
        min_transactions = 1
    link = watchdog.Link(
        source,
        hears,
        content.Thresholds(min_transactions, max_count_diff, max_failure_rate, failure_rate_jump),
        mailbox,
        subject,
        sender.lower() if sender else None,
    )
    now = app.settings.current_time()
    with app.connect() as conn:
        watchdog.create(
            conn,
            name,
            cron=cron_expr,
            tz=tz,
            every_seconds=every,
            grace_seconds=grace,
            early_seconds=early,
            max_runtime_seconds=max_runtime,
            realert_seconds=realert,
            tags=list(tags),
            now=now,
            user=current_user(),
            link=link,
            reason=reason,
        )
    due: list[dict[str, Any]] = []
    if cron_expr:
        due = _preview_rows(schedule.Cron.parse(cron_expr, tz), now, 3)
    else:
        assert every
        due = [{"utc": now + timedelta(seconds=every * (i + 1))} for i in range(3)]
    warning = _frequency_warning(due, grace)
    if warning is None and hears in ("run", "email") and early == 0:
        warning = (
            "with --early 0, a run or an email that lands before its due time counts for the "
            "previous slot; if it may come early (a 03:00 deadline, a run at 02:10), give "
            "--early, e.g. --early 3h"
        )
    if app.json:
        emit_json({"monitor": name, "next_due": [d["utc"] for d in due], "warning": warning})
        return
    info(f"monitor {name} created; next due:")
    for item in due:
        local = f"  ({item['local'].isoformat()})" if "local" in item else ""
        info(f"  {item['utc'].isoformat()}{local}")
    if warning:
        info(f"warning: {warning}")


def _frequency_warning(due: list[dict[str, Any]], grace: int) -> str | None:
    """`* 9 * * *` fires every minute of 09:00-09:59: say so when that looks unintended."""
    if len(due) < 2:
        return None
    gap = (due[1]["utc"] - due[0]["utc"]).total_seconds()
    if gap < grace / 4 or gap < 300 <= grace:
        return (
            f"this schedule fires every {int(gap)}s, much more often than its grace of "
            f"{grace}s suggests; '* 9 * * *' means every minute from 09:00 to 09:59 "
            "(write '0 9 * * *' for once at 09:00)"
        )
    return None


@monitor_group.command("preview")
@click.argument("expression")
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone.")
@click.option("--from", "start", type=INSTANT, help="Start after this time (default: now).")
@click.option("--count", type=click.IntRange(1, 1000), default=10, show_default=True)
@pass_app
def monitor_preview(app: App, expression: str, tz: str, start: datetime | None, count: int) -> None:
    """The next due times of a cron expression, in UTC and local time; DST days marked.

    \b
    Example:
      recon monitor preview "30 1 * * *" --tz Europe/London --from 2026-03-27 --count 4
    """
    cron = schedule.Cron.parse(expression, tz)
    rows = _preview_rows(cron, start or app.settings.current_time(), count)
    if app.json:
        emit_json({"due": rows})
        return
    emit_table(
        [
            {"utc": r["utc"], "local": r["local"], "dst": "DST change" if r["dst_change"] else ""}
            for r in rows
        ],
        ["utc", "local", "dst"],
    )


@monitor_group.command("list")
@pass_app
def monitor_list(app: App) -> None:
    """Every monitor with its status now and the slot it waits for.

    \b
    Example:
      recon monitor list
    """
    with app.connect() as conn:
        rows = watchdog.list_monitors(conn, app.settings.current_time())
    if app.json:
        emit_json({"monitors": rows})
        return
    if not rows:
        info('no monitors yet: recon monitor add NAME --cron "0 7 * * 1-5" --grace 1h')
        return
    emit_table(rows, ["name", "status", "schedule", "tz", "next_due", "last_signal_at", "tags"])
    sys.exit(EXIT_FINDINGS if any(r["status"] == "down" for r in rows) else EXIT_OK)


@monitor_group.command("show")
@click.argument("name")
@pass_app
def monitor_show(app: App, name: str) -> None:
    """One monitor: status, schedule, next due, and its recent slots (the ledger).

    \b
    Example:
      recon monitor show daily-report
    """
    with app.connect() as conn:
        found = watchdog.describe(conn, name, app.settings.current_time())
    base = app.settings.base_url
    found["ping_url"] = f"{base.rstrip('/')}/ping/{found['ping_uuid']}" if base else None
    if found["ping_url"]:
        found["curl"] = f"curl -fsS -m 10 --retry 5 -o /dev/null {found['ping_url']}"
    if app.json:
        emit_json(found)
        return
    for key, value in found.items():
        if key != "slots":
            click.echo(f"{key:>20}: {_cell(value) if value is not None else ''}")
    click.echo("\nrecent slots:")
    emit_table(found["slots"], ["due_at", "outcome", "arrived_at"])


@monitor_group.command("pause")
@click.argument("name")
@click.option("--until", type=INSTANT, help="Resume by itself at this time.")
@click.option("--reason", help="Why (shown in `monitor show`).")
@pass_app
def monitor_pause(app: App, name: str, until: datetime | None, reason: str | None) -> None:
    """Stop alerting for a monitor (maintenance, holidays).

    \b
    Example:
      recon monitor pause daily-report --until 2026-12-28T00:00:00Z --reason "office closed"
    """
    with app.connect() as conn:
        watchdog.pause(conn, name, now=app.settings.current_time(), until=until, reason=reason)
    info(f"{name} paused" + (f" until {until.isoformat()}" if until else ""))


@monitor_group.command("resume")
@click.argument("name")
@pass_app
def monitor_resume(app: App, name: str) -> None:
    """Watch a paused monitor again; the next slot after now is the one expected.

    \b
    Example:
      recon monitor resume daily-report
    """
    with app.connect() as conn:
        watchdog.resume(conn, name, now=app.settings.current_time())
    info(f"{name} resumed")


@monitor_group.command("remove")
@click.argument("name")
@click.option("--reason", help="Why (kept with the configuration version).")
@pass_app
def monitor_remove(app: App, name: str, reason: str | None) -> None:
    """Delete a monitor (its signals, slots and alerts stay as history).

    \b
    Example:
      recon monitor remove old-report
    """
    with app.connect() as conn:
        watchdog.remove(conn, name, now=app.settings.current_time(), reason=reason)
    info(f"{name} removed")


@cli.command("ping")
@click.argument("name")
@click.option("--start", "kind", flag_value="start", help="A run has started.")
@click.option("--fail", "kind", flag_value="fail", help="The run failed.")
@click.option("--exit-code", type=click.IntRange(0, 255), help="The run's exit status.")
@click.option("--message", "-m", help="Up to 10 kB kept with the signal (masked).")
@pass_app
def ping_command(
    app: App, name: str, kind: str | None, exit_code: int | None, message: str | None
) -> None:
    """Record a signal for a monitor: success (default), start, or failure.

    \b
    Examples:
      recon ping daily-report
      recon ping nightly-load --start
      recon ping nightly-load --exit-code 2 --message "ledger refused 3 rows"
    """
    chosen = kind or ("fail" if exit_code else "success")
    with app.connect() as conn:
        result = watchdog.record_signal(
            conn,
            name,
            chosen,
            now=app.settings.current_time(),
            exit_code=exit_code,
            message=message,
        )
    if app.json:
        emit_json(result)
    else:
        info(f"{name}: {chosen} recorded")


@cli.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_app
def run_command(app: App, name: str, command: tuple[str, ...]) -> None:
    """Run a command, signalling its start and then its outcome (exit code, duration, output).

    The last lines of the command's output are kept with the signal, masked. Exits with the
    command's own exit code. The command runs even when its signal cannot be recorded (an
    unknown monitor, a broken recon.toml, a locked store): the job comes first. Then recon
    says why on stderr and exits 1 if the command itself succeeded.

    \b
    Example:
      recon run nightly-load -- ./load.sh --date yesterday
    """
    problems = [_try_signal(app, name, "start")]
    started = time.monotonic()
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, errors="replace")
        code, stdout, stderr = done.returncode, done.stdout, done.stderr
    except OSError as exc:
        code, stdout, stderr = 127, "", f"could not start {command[0]}: {exc.strerror}\n"
    duration = time.monotonic() - started
    sys.stdout.write(redact.mask_pans(stdout) or "")  # the job's own output, passed on
    sys.stderr.write(stderr)
    output = stdout + stderr
    tail = "\n".join(output.splitlines()[-20:])
    problems.append(
        _try_signal(
            app,
            name,
            "success" if code == 0 else "fail",
            exit_code=code,
            message=tail,
            duration_seconds=duration,
        )
    )
    problem = next((p for p in problems if p), None)
    if problem is None:
        info(f"{name}: exit {code} after {duration:.1f}s recorded")
        sys.exit(code)
    info(
        f"error: the command ran (exit {code} after {duration:.1f}s), but its signal was not "
        f"recorded: {problem}"
    )
    sys.exit(code or EXIT_ERROR)


def _try_signal(app: App, name: str, kind: str, **details: Any) -> str | None:
    """Record a signal of `recon run`; on failure return why instead of raising."""
    try:
        with app.connect() as conn:
            watchdog.record_signal(conn, name, kind, now=app.settings.current_time(), **details)
    except ReconError as exc:
        return _safe(str(exc))
    return None


@cli.command("watch")
@click.option("--once", is_flag=True, help="One tick, then exit (for cron).")
@click.option("--interval", type=click.FloatRange(1), default=60, show_default=True)
@pass_app
def watch_command(app: App, once: bool, interval: float) -> None:
    """The watchdog: evaluate every monitor, record changes, deliver alerts from the outbox.

    Exit (with --once) 3 when a monitor is down, an alert could not be delivered, or a
    mailbox could not be read.

    \b
    Examples:
      recon watch --once          # from cron, every minute
      recon watch --interval 30   # as a service
    """
    if not once:
        _record_event(app, "watch.start", "watchdog", {"interval_seconds": interval})
    try:
        _watch_loop(app, once, interval)
    finally:
        if not once:
            _record_event(app, "watch.stop", "watchdog", {})


def _record_event(app: App, action: str, target: str, details: dict[str, Any]) -> None:
    """An event on its own, in a connection of its own (start, stop, files written)."""
    with app.connect() as conn:
        audit.record_alone(conn, action, target, now=app.settings.current_time(), details=details)


def _watch_loop(app: App, once: bool, interval: float) -> None:
    while True:
        try:
            report = _watch_tick(app)
        except DatabaseError as exc:
            if once:
                raise
            info(f"error: {exc}; trying again in {interval:g}s")  # e.g. locked by a long ingest
            time.sleep(interval)
            continue
        if once:
            if app.json:
                emit_json(report)
            attention = (
                report["down"]
                or report["errors"]
                or any(a["status"] != "delivered" for a in report["alerts"])
            )
            sys.exit(EXIT_FINDINGS if attention else EXIT_OK)
        time.sleep(interval)


def _watch_tick(app: App) -> dict[str, Any]:
    from reconcile import mailwatch  # imaplib and email: only the watchdog needs them

    settings = app.settings
    targets = settings.targets()
    now = settings.current_time()
    clock = notify.running_clock(now)  # leases are measured from here on
    with app.connect() as conn:
        listening = mailwatch.watched(conn, now)
    mail = mailwatch.fetch_all(settings, listening) if listening else []  # no lock held
    mail_errors = [f"{m.name}: {found}" for m, found in mail if isinstance(found, str)]
    with app.connect() as conn:
        heard = [
            arrival
            for monitor, found in mail
            if not isinstance(found, str)
            for arrival in mailwatch.record(conn, settings, monitor, found, now)
        ]
        spool.drain(conn, spool.folder_for(Path(settings.db), settings.spool_dir))
        zones = {}
        for source, since in watchdog.gap_windows(conn, now):
            zones[source] = settings.source(source).timezone
            first, last = gap.dates(since, now, zones[source])
            _reconcile(app, conn, compare.Scope(source=source, since=first, until=last))
        result = watchdog.tick(conn, now, targets, zones)
        first_claim = notify.claim(conn, clock(), limit=1)  # the rest one by one, after sending
        down = conn.execute("SELECT count(*) FROM monitors WHERE status = 'down'").fetchone()
    for arrival in heard:
        info(f"{arrival['monitor']}: email arrived at {arrival['arrived_at']:%Y-%m-%d %H:%M} UTC")
        logs.event(log, logging.INFO, "email arrived", **arrival)
        for line in arrival["reports"]:
            info(f"  {line}")
    for error in result["errors"] + mail_errors:
        info(f"error: {error}")
        logs.event(log, logging.ERROR, "watch tick error", error=error)
    # One delivery at a time, each confirmed before the next is claimed (see notify.py).
    outcomes = notify.deliver_due(
        app.connect,
        targets,
        settings.notify_timeout,
        clock,
        settings.current_time,
        claimed=first_claim,
    )
    for change in result["transitions"]:
        info(f"{change['monitor']}: {change['from']} -> {change['to']}")
        logs.event(log, logging.WARNING if change["to"] == "down" else logging.INFO,
                   f"monitor {change['monitor']} is {change['to']}", **change)  # fmt: skip
    delivered = []
    for item, error in outcomes:
        delivered.append(
            {
                "id": item.alert_id,
                "target": item.target,
                "status": "delivered" if not error else "failed",
                "attempts": item.attempts,
                "error": error or None,
            }
        )
        info(f"alert {item.alert_id} to {item.target}: {error or 'delivered'}")
    for alert in result["alerts"]:
        if not alert["targets"]:
            info(
                f"alert {alert['id']} ({alert['monitor']} {alert['kind']}) reached no one: no "
                "notification target matches its tags; add one under [notify.targets.NAME] in "
                "recon.toml (see `recon alerts`)"
            )
    _ping_dead_man(settings)
    return {
        "transitions": result["transitions"],
        "alerts": delivered,
        "queued": result["alerts"],
        "down": int(down[0]) if down else 0,
        "emails": heard,
        "errors": result["errors"] + mail_errors,
    }


def _ping_dead_man(settings: Settings) -> None:
    """Tell an outside service the watchdog ticked, so its own silence is noticed."""
    if settings.watchdog_ping_url is None:
        return
    import urllib.request  # only when a dead man's URL is configured

    try:
        with urllib.request.urlopen(settings.watchdog_ping_url.get_secret_value(), timeout=10):
            pass
    except (OSError, ValueError) as exc:
        info(f"warning: the watchdog's own dead-man ping failed ({type(exc).__name__})")


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@pass_app
def serve_command(app: App, host: str, port: int) -> None:
    """HTTP ping URLs (healthchecks-compatible) for scripts and low-code flows.

    Every acknowledged ping is on disk before the answer, and reaches the store even while an
    ingest holds it. Set RECON_BASE_URL so `recon monitor show` prints each monitor's URL.

    \b
    Examples:
      recon serve --host 127.0.0.1 --port 8000
      curl -fsS -m 10 --retry 5 http://127.0.0.1:8000/ping/<uuid>
    """
    from reconcile import web

    _record_event(app, "serve.start", f"{host}:{port}", {})  # migrates before serving, too
    info(f"serving pings on http://{host}:{port}/ping/<uuid>")
    web.serve(
        app.settings,
        host,
        port,
        on_stop=lambda: _record_event(app, "serve.stop", f"{host}:{port}", {}),
    )


@cli.group("token")
def token_group() -> None:
    """Bearer tokens for the HTTP API, one source each (only a hash is stored).

    \b
    Example:
      recon token create loader-flow --source payments-loader
    """


@token_group.command("create")
@click.argument("name")
@click.option("--source", "-s", metavar="NAME", required=True, help="The source it may post to.")
@pass_app
def token_create(app: App, name: str, source: str) -> None:
    """Create a token; it is printed once, now, and never stored.

    \b
    Example:
      recon token create loader-flow --source payments-loader
    """
    with app.connect() as conn:
        token = tokens.create(
            conn, name, source, now=app.settings.current_time(), user=current_user()
        )
    if app.json:
        emit_json({"name": name, "source": source, "token": token})
        return
    click.echo(token)
    info(f"token {name} for source {source}: keep it now, it is not shown again")


@token_group.command("list")
@pass_app
def token_list(app: App) -> None:
    """Tokens by name, with their source, when they were made and last used.

    \b
    Example:
      recon token list
    """
    with app.connect() as conn:
        rows = tokens.list_tokens(conn)
    if app.json:
        emit_json({"tokens": rows})
    elif rows:
        emit_table(
            rows, ["name", "source", "created_at", "created_by", "last_used_at", "revoked_at"]
        )
    else:
        info("no tokens: recon token create NAME --source S")


@token_group.command("revoke")
@click.argument("name")
@pass_app
def token_revoke(app: App, name: str) -> None:
    """Revoke a token; calls with it get 401 from then on.

    \b
    Example:
      recon token revoke loader-flow
    """
    with app.connect() as conn:
        tokens.revoke(conn, name, now=app.settings.current_time())
    info(f"token {name} revoked")


@cli.group("audit")
def audit_group() -> None:
    """The audit trail: who did what, when, from where; tamper-evident.

    \b
    Examples:
      recon audit verify
      recon audit log --action monitor --since 2026-11-01T00:00:00Z
    """


def _head_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    seq, _, digest = value.partition(":")
    if not seq.isdigit() or int(seq) < 1 or len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise click.BadParameter("expected SEQ:HASH as `recon audit head` prints it", ctx, param)
    return int(seq), digest


@audit_group.command("verify")
@click.option(
    "--expect-head",
    metavar="SEQ:HASH",
    callback=_head_option,
    help="A head printed by `recon audit head` and kept elsewhere: the trail must hold it.",
)
@pass_app
def audit_verify(app: App, expect_head: tuple[int, str] | None) -> None:
    """Check every event of the chain and the anchor outside the database.

    Exit 0 when intact, 3 when broken (the first bad seq and what is wrong are printed), 1 when
    it cannot be checked (keyed rows and no key configured, or not their key).

    \b
    Examples:
      RECON_AUDIT_KEY=... recon audit verify
      RECON_AUDIT_KEY=... recon audit verify --expect-head 1234:9f86d0...
    """
    settings = app.settings
    with app.connect() as conn:
        verdict = audit.verify(
            conn, settings.audit_key_bytes(), settings.anchor_path(), expect_head
        )
        try:
            audit.record_alone(
                conn,
                "audit.verify",
                now=settings.current_time(),
                outcome="success" if verdict.intact else "failure",
                details={
                    "checked": verdict.checked,
                    "first_bad_seq": verdict.first_bad_seq,
                    "problem": verdict.problem,
                },
            )
        except ConfigError as exc:  # a broken or foreign-keyed chain is not extended
            if not verdict.unverifiable:  # else the verdict already says why, and what to do
                verdict.warnings.append(f"this check was not recorded: {exc}")
    _report_verdict(app, verdict)


@audit_group.command("head")
@pass_app
def audit_head(app: App) -> None:
    """Print the trail's head (SEQ:HASH) to keep outside this machine.

    A copy of the database and its anchor file taken at one moment cannot be told from the real
    ones later; a head kept elsewhere (a remote store, a dead-man service, the on-call's mail)
    can: `recon audit verify --expect-head SEQ:HASH` checks that the trail still holds it. The
    hash of a keyed event is an HMAC under the audit key: nobody without the key can make one
    that verifies. Reading the head is recorded; the head printed is that event.

    \b
    Example:
      recon audit head | ssh vault 'cat >> heads.txt'
    """
    settings = app.settings
    with app.connect() as conn:
        seq = audit.record_alone(conn, "audit.head", now=settings.current_time())
        [(digest, alg, ts)] = conn.execute(
            "SELECT hash, alg, ts FROM audit_events WHERE seq = ?", [seq]
        ).fetchall()
    if app.json:
        emit_json({"seq": seq, "hash": digest, "alg": alg, "ts": ts})
    else:
        click.echo(f"{seq}:{digest}")


@audit_group.command("start-key")
@pass_app
def audit_start_key(app: App) -> None:
    """Key a trail written without an audit key, from its next event on.

    Checks the trail as it is (unkeyed, with its anchor), then records the event that starts
    the key. Until then a command with a key configured refuses to write to an unkeyed trail:
    that is what a trail rechained without the key (a downgrade) would look like.

    \b
    Example:
      RECON_AUDIT_KEY=... recon audit start-key
    """
    settings = app.settings
    trail = audit.cli_trail(settings.audit_key_bytes(), settings.anchor_path())
    with db.connect(Path(settings.db), settings.lock_timeout) as conn, audit.acting(trail):
        try:
            last = conn.execute("SELECT alg FROM audit_events ORDER BY seq DESC LIMIT 1").fetchall()
            if last and last[0][0] == audit.KEYED:
                info("the audit trail is keyed already: nothing to do")
                return
            verdict = audit.start_key(conn, settings.anchor_path(), now=settings.current_time())
            start = audit.head(conn)
        finally:
            audit.anchor(conn, settings.anchor_path())
    if not verdict.intact:
        _report_verdict(app, verdict)
    info(
        f"{verdict.checked} unkeyed event(s) checked; the audit trail is keyed from seq "
        f"{start[0] if start else 1} on"
    )


def _report_verdict(app: App, verdict: audit.Verdict) -> None:
    if app.json:
        emit_json(verdict.__dict__)
    for warning in verdict.warnings:
        info(f"warning: {warning}")
    if verdict.intact:
        end = f", head seq {verdict.head[0]}" if verdict.head else ""
        info(f"audit trail intact: {verdict.checked} event(s) checked{end}")
        sys.exit(EXIT_OK)
    if verdict.unverifiable:
        info(f"cannot check the audit trail: {verdict.problem}")
        sys.exit(EXIT_ERROR)
    info(f"audit trail BROKEN at seq {verdict.first_bad_seq}: {verdict.problem}")
    info("  keep this database as evidence (copy it, and the anchor file, before anything else)")
    sys.exit(EXIT_FINDINGS)


@audit_group.command("log")
@click.option("--since", type=INSTANT, help="Events at or after this time.")
@click.option("--until", type=INSTANT, help="Events at or before this time.")
@click.option("--actor", help="Only this actor (OS user, token:<name>, ...).")
@click.option("--action", help="Only this action, or a family: `monitor` finds monitor.add.")
@click.option("--object", "target", help="Only this object (or its prefix before ':').")
@click.option("--limit", type=click.IntRange(1), default=200, show_default=True)
@pass_app
def audit_log(
    app: App,
    since: datetime | None,
    until: datetime | None,
    actor: str | None,
    action: str | None,
    target: str | None,
    limit: int,
) -> None:
    """Audit events, oldest first (the latest LIMIT). Reading the trail is itself recorded.

    \b
    Examples:
      recon audit log --action monitor --since 2026-11-01T00:00:00Z
      recon audit log --actor token:loader-flow --json
    """
    settings = app.settings
    with app.connect() as conn:
        rows = audit.events(
            conn, since=since, until=until, actor=actor, action=action, target=target, limit=limit
        )
        audit.record_alone(
            conn,
            "audit.log",
            now=settings.current_time(),
            details={"since": since, "until": until, "actor": actor, "action": action,
                     "object": target, "returned": len(rows)},
        )  # fmt: skip
    if app.json:
        emit_json({"events": rows})
        return
    for row in rows:
        row["origin"] = row["origin"].get("via", "")
        row["details"] = audit.canonical(row["details"])
    emit_table(rows, ["seq", "ts", "actor", "origin", "action", "object", "outcome", "details"])


@cli.command("bisect")
@click.option("--source", "-s", metavar="NAME", required=True, help="The source to examine.")
@click.option(
    "--metric", type=click.Choice(changepoint.METRICS), default="failure_rate", show_default=True
)
@pass_app
def bisect_command(app: App, source: str, metric: str) -> None:
    """Find the first run where a metric shifted, and what changed just before it.

    The per-run series is split where two levels fit it best; the shift counts when the levels
    differ by more than three times the noise. Then: configuration versions recorded between
    the run before and that run (who, why), and the application versions their logs carry.

    \b
    Examples:
      recon bisect --source payments-loader
      recon bisect --source payments-loader --metric missing
    """
    with app.connect() as conn:
        if metric != "failure_rate":
            _reconcile(app, conn, compare.Scope(source=source))
        shift = changepoint.find(conn, source, metric)
    if shift is None:
        info(f"too few runs of {source} to look for a shift (at least 4 are needed)")
        sys.exit(EXIT_ERROR)
    run = shift.run
    if app.json:
        emit_json(shift.__dict__)
    else:
        unit = "%" if metric == "failure_rate" else " record(s)"
        for point in shift.series:
            mark = "  <- shift" if point["run_id"] == run["run_id"] and shift.significant else ""
            click.echo(f"  {_cell(point['run_id'], True):<24} {point['value']:8.2f}{unit}{mark}")
        if not shift.significant:
            info(
                f"no clear shift in {metric}: the best split (before {run['run_id']}) moves it "
                f"from {shift.before:.2f} to {shift.after:.2f}, within the noise ({shift.noise:.2f})"
            )
            sys.exit(EXIT_OK)
        info(
            f"{metric} shifted at run {run['run_id']} (first processed "
            f"{run['started']:%Y-%m-%d %H:%M} UTC): from {shift.before:.2f}{unit} to "
            f"{shift.after:.2f}{unit} on average"
        )
        info("what changed just before it:")
        (before_run, apps_before), (this_run, apps_now) = shift.app_versions.items()
        if apps_before != apps_now:
            info(f"  application version: {', '.join(apps_before) or 'not in the log'} "
                 f"({before_run}) -> {', '.join(apps_now) or 'not in the log'} ({this_run})")  # fmt: skip
        for change in shift.config_changes:
            info(
                f"  configuration version {change['version']}: {change['object']} changed "
                f"{change['changed_at']:%Y-%m-%d %H:%M} UTC by {change['changed_by']} "
                f"({change['via']}{'; ' + change['reason'] if change['reason'] else ''})"
            )
        if apps_before == apps_now and not shift.config_changes:
            info("  nothing recorded: no configuration version and the same application version")
        info(f"see the runs: recon runs --source {source}")
        if shift.config_changes:
            info("and each change: recon config history OBJECT; recon config diff V1 V2")
    sys.exit(EXIT_FINDINGS if shift.significant else EXIT_OK)


@cli.group("config")
def config_group() -> None:
    """Configuration history: every change of a monitor, source, target or setting.

    \b
    Examples:
      recon config history monitor:daily-report
      recon config diff 3 7
      recon config revert monitor:daily-report --to 3 --reason "grace was too short"
    """


@config_group.command("history")
@click.argument("target", metavar="[OBJECT]", required=False)
@pass_app
def config_history(app: App, target: str | None) -> None:
    """Every version, oldest first: monitor:NAME, source:NAME, target:ALIAS, mailbox:ALIAS or
    settings.

    \b
    Example:
      recon config history source:payments-loader
    """
    with app.connect() as conn:
        rows = versions.history(conn, target)
    if app.json:
        emit_json({"versions": rows})
        return
    if not rows:
        info("no configuration versions" + (f" of {target}" if target else ""))
        return
    for row in rows:
        row["value"] = "(removed)" if row["value"] is None else audit.canonical(row["value"])
    emit_table(rows, ["version", "object", "changed_at", "changed_by", "via", "reason", "value"])


@config_group.command("diff")
@click.argument("first", type=int)
@click.argument("second", type=int)
@pass_app
def config_diff(app: App, first: int, second: int) -> None:
    """What differs between two versions, field by field.

    \b
    Example:
      recon config diff 3 7
    """
    with app.connect() as conn:
        found = versions.diff(conn, first, second)
    if app.json:
        emit_json(found)
        return
    a, b = found["from"], found["to"]
    info(f"{first} ({a['object']}, {a['changed_at']:%Y-%m-%d %H:%M} UTC, {a['changed_by']}) -> "
         f"{second} ({b['object']}, {b['changed_at']:%Y-%m-%d %H:%M} UTC, {b['changed_by']})")  # fmt: skip
    if not found["changes"]:
        info("no difference")
    for key, change in found["changes"].items():
        click.echo(f"  {key}: {json.dumps(change['from'])} -> {json.dumps(change['to'])}")


@config_group.command("revert")
@click.argument("target", metavar="OBJECT")
@click.option("--to", "version", type=int, required=True, help="The version to go back to.")
@click.option("--reason", help="Why (kept with the new version).")
@pass_app
def config_revert(app: App, target: str, version: int, reason: str | None) -> None:
    """Put a monitor back as it was at a version; the revert is itself a new version.

    Sources, targets, mailboxes and settings live in recon.toml: for those, the old values are
    printed to put back in the file (recon does not rewrite your configuration file).

    \b
    Example:
      recon config revert monitor:daily-report --to 3 --reason "grace was too short"
    """
    now = app.settings.current_time()
    with app.connect() as conn:
        old = versions.get(conn, version)
        if old["object"] != target:
            raise click.BadParameter(f"version {version} is of {old['object']}, not {target}")
        kind, _, name = target.partition(":")
        if kind != "monitor":
            info(f"{target} comes from recon.toml; version {version} was:")
            click.echo(json.dumps(old["value"], indent=2))
            info("edit recon.toml to match; the next command records the change as a version")
            sys.exit(EXIT_ERROR)
        why = reason or f"revert to version {version}"
        exists = any(m["name"] == name for m in watchdog.list_monitors(conn, now))
        value = old["value"]
        if value is None:
            if exists:
                watchdog.remove(conn, name, now=now, reason=why)
        elif exists:
            watchdog.reconfigure(conn, name, value, now=now, reason=why)
        else:
            watchdog.create(
                conn,
                name,
                cron=value["cron"],
                tz=value["tz"],
                every_seconds=value["every_seconds"],
                grace_seconds=value["grace_seconds"],
                early_seconds=value["early_seconds"],
                max_runtime_seconds=value["max_runtime_seconds"],
                realert_seconds=value["realert_seconds"],
                tags=value["tags"],
                now=now,
                user=current_user(),
                link=watchdog.Link.of(value),
                reason=why,
            )
        latest = versions.current(conn)
    info(f"{target} is as at version {version} (recorded as version {latest})")


@cli.command("alerts")
@click.option("--limit", type=int, default=50, show_default=True)
@pass_app
def alerts_command(app: App, limit: int) -> None:
    """Alerts, newest first, with each target's delivery status and attempts.

    Exit 3 when an alert is not delivered yet.

    \b
    Example:
      recon alerts --limit 20
    """
    with app.connect() as conn:
        rows = notify.history(conn, limit)
    if app.json:
        emit_json({"alerts": rows})
    elif rows:
        emit_table(
            rows,
            [
                "alert_id",
                "created_at",
                "monitor",
                "kind",
                "target",
                "status",
                "attempts",
                "last_error",
            ],
        )
    else:
        info("no alerts yet")
    sys.exit(EXIT_FINDINGS if any(r["status"] != "delivered" for r in rows) else EXIT_OK)


@cli.group("notify")
def notify_group() -> None:
    """Notification targets: apprise URLs under aliases in recon.toml.

    \b
    Example:
      recon notify test --tag payments
    """


@notify_group.command("test")
@click.option("--tag", help="Only targets with this tag (targets without tags get everything).")
@pass_app
def notify_test(app: App, tag: str | None) -> None:
    """Send a test alert through the outbox to the configured targets, now.

    \b
    Example:
      recon notify test --tag payments
    """
    settings = app.settings
    targets = settings.targets()
    if not targets:
        raise click.UsageError(
            'no notification targets: add [notify.targets.ALIAS] url = "..." to recon.toml'
        )
    now = settings.current_time()
    with app.connect() as conn, db.transaction(conn):
        test = notify.NewAlert(
            None,
            None,
            "test",
            "[recon] test alert",
            "This is a test from recon notify test: alerts reach this target.",
            [tag] if tag else [],
        )
        chosen_targets = [t for t in targets if tag is None or t.wants([tag])]
        [(alert_id, chosen)] = notify.enqueue(conn, [test], chosen_targets, now)
    outcomes = notify.deliver_due(
        app.connect,
        targets,
        settings.notify_timeout,
        notify.running_clock(now),
        settings.current_time,
        only=[alert_id],
    )
    failed = [item.target for item, error in outcomes if error]
    for item, error in outcomes:
        info(f"{item.target}: {error or 'delivered'}")
    if app.json:
        emit_json({"alert_id": alert_id, "targets": chosen, "failed": failed})
    sys.exit(EXIT_FINDINGS if failed or not chosen else EXIT_OK)


def _safe(text: str) -> str:
    """Error text may quote input; never let a card number through."""
    return redact.mask_secrets(text)


class MaskedStream(io.TextIOBase):
    """stderr with card numbers masked in whatever is written to it: the last guard for text
    recon did not produce itself (click's messages, warnings, tracebacks with RECON_DEBUG, the
    server's own log lines, what `recon run` passes on). Text is held until a line ends (or a
    flush), so a number written in pieces is still seen whole.

    stdout carries data (tables, CSV, JSON) made of stored values, masked when they were
    stored, and identifiers masked where they entered; masking it all again would cost more
    than the data took to read, so only what comes from elsewhere is masked on its way there
    (the output `recon run` passes on, the database path)."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self._stream = stream
        self._pending = ""

    def __getattr__(self, name: str) -> Any:  # buffer, fileno, isatty...
        return getattr(self._stream, name)

    @property
    def encoding(self) -> Any:  # type: ignore[override]  # click writes to a stream whose
        return self._stream.encoding  # encoding it knows, else to its buffer, around us

    @property
    def errors(self) -> Any:  # type: ignore[override]
        return self._stream.errors

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._pending += text
        end = self._pending.rfind("\n") + 1
        if end:
            ready, self._pending = self._pending[:end], self._pending[end:]
            self._stream.write(redact.mask_pans(ready))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            ready, self._pending = self._pending, ""
            self._stream.write(redact.mask_pans(ready))
        self._stream.flush()


def _show_click_error(exc: click.ClickException, argv: Sequence[str]) -> None:
    """click's own message, masked: a usage error quotes the value it refused, often as its
    repr, where invisible characters inside a number are written as escapes (`\\u200b`) the
    masker cannot see through; each argument holding a card number is replaced as given and
    as its repr before the message is masked."""
    shown = io.StringIO()
    exc.show(file=shown)
    text = shown.getvalue()
    for arg in argv:
        for value in {arg, arg.partition("=")[2]} - {""}:
            masked = redact.mask_pans(value)
            if masked != value:
                text = text.replace(repr(value)[1:-1], masked or "").replace(value, masked or "")
    sys.stderr.write(_safe(text))


def main(argv: list[str] | None = None) -> None:
    """Entry point: translate every failure into a message and an exit code, never a traceback."""
    os.umask(0o077)  # everything recon creates (WAL, spool, logs, exports) is private
    if not isinstance(sys.stderr, MaskedStream) and sys.stderr is not None:
        sys.stderr = MaskedStream(sys.stderr)
    try:
        _main(argv)
    finally:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()


def _main(argv: list[str] | None) -> None:
    try:
        cli.main(args=argv, prog_name="recon", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        info("aborted")
        sys.exit(EXIT_ERROR)
    except click.ClickException as exc:
        _show_click_error(exc, sys.argv[1:] if argv is None else argv)
        sys.exit(EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code)
    except ConfigError as exc:
        info(f"error: {_safe(str(exc))}")
        sys.exit(EXIT_ERROR)
    except ReconError as exc:
        info(f"error: {_safe(str(exc))}")
        logs.event(log, logging.ERROR, "command failed", error=str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        info("interrupted: nothing half-written (each file loads in one transaction)")
        sys.exit(130)
    except OSError as exc:  # the machine said no (a missing folder, no permission, disk full)
        where = f"{exc.filename}: " if exc.filename else ""
        info(
            f"error: {_safe(where + (exc.strerror or str(exc)))}\n"
            "  check that the folder exists and is writable, then run the command again"
        )
        logs.event(log, logging.ERROR, "command failed", error=str(exc))
        sys.exit(EXIT_ERROR)
    except Exception as exc:  # the last line of defence: a message, not a traceback
        if os.environ.get("RECON_DEBUG"):
            traceback.print_exc()
        log.error("internal error", exc_info=exc)
        info(
            f"internal error: {type(exc).__name__}: {_safe(str(exc))[:500]}\n"
            "  this is a bug in recon; set RECON_DEBUG=1 to see the traceback and report it"
        )
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_OK)
