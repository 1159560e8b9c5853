"""The `recon` command line: a thin layer over the library.

Each command opens the store, calls one library function, renders the result and picks the
exit code (PRODUCT.md): 0 done; 1 could not do its job; 2 usage error; 3 done, with findings
that need a human. No SQL and no business rules live here.
"""

from __future__ import annotations

import csv
import getpass
import json
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from tabulate import tabulate

from reconcile import __version__, db, expected, failures, ingest, migrations, redact, runs
from reconcile.errors import ConfigError, InputFileError, ReconError
from reconcile.settings import Settings, load_settings

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
        return self._settings

    @contextmanager
    def connect(self) -> Iterator[db.Connection]:
        with db.connect(Path(self.settings.db), self.settings.lock_timeout) as conn:
            yield conn


CENT = Decimal("0.01")


def format_amount(value: Decimal) -> str:
    """Amounts as finance reads them: 12.90, never 12.9000, and never rounded (12.3456 stays)."""
    cents = value.quantize(CENT)
    return str(cents) if cents == value else str(value.normalize())


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format_amount(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def emit_json(payload: Any) -> None:
    click.echo(json.dumps(payload, default=_json_default, ensure_ascii=False))


def info(message: str) -> None:
    """Human messages and progress go to stderr, so stdout stays clean for data."""
    click.echo(message, err=True)


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, Decimal):
        return format_amount(value)
    if isinstance(value, str) and len(value) > 60:
        return value[:57] + "..."
    return value


def emit_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    click.echo(
        tabulate(
            [[_cell(row.get(c)) for c in columns] for row in rows],
            headers=list(columns),
            disable_numparse=True,
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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--db", metavar="PATH", help="DuckDB file (env RECON_DB; default ./recon.duckdb).")
@click.option(
    "--config",
    metavar="PATH",
    help="recon.toml to read (env RECON_CONFIG; default ./recon.toml if present).",
)
@click.option("--now", metavar="ISO8601", help="Pretend it is this time (env RECON_NOW).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@click.version_option(__version__, prog_name="recon")
@click.pass_context
def cli(
    ctx: click.Context, db: str | None, config: str | None, now: str | None, as_json: bool
) -> None:
    """reconcile: transaction logs into DuckDB, validated and masked; failures listed.

    \b
    Example, on the bundled sample data:
      recon --config sample_data/recon.toml init
      recon ingest --source payments-loader sample_data/payments-loader/runs/*
      recon runs
    """
    ctx.obj = App(db_path=db, config=config, now=now, json=as_json)


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
    path = str(app.settings.db)
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
    help="processed run log, expected manifest, or control totals.",
)
@pass_app
def ingest_command(
    app: App, files: tuple[Path, ...], source: str | None, run_id: str | None, kind: str
) -> None:
    """Load run logs (CSV, JSON Lines, Parquet) into the store, validated and masked.

    Each file loads whole or not at all; a file already loaded for the source is skipped.
    Bad rows are quarantined with file, line, column and reason (see `recon quarantine`).
    Exit 3 when any row was quarantined, 1 when a file could not be read.

    \b
    Examples:
      recon ingest --source payments-loader runs/PL-20261026.csv
      recon ingest --source payments-loader --kind expected expected/*.csv
      recon ingest --source payments-loader --kind totals control_totals.csv
    """
    settings = app.settings
    source_name = _pick_source(settings, source)
    config = settings.source(source_name)
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
                )
            except InputFileError as exc:
                failed = True
                results.append(
                    {"path": str(path), "source": source_name, "kind": kind, "error": str(exc)}
                )
                info(f"error: {exc}")
                continue
            quarantined |= result.rows_quarantined > 0 and not result.already_ingested
            results.append(result.as_json())
            if not app.json:
                info(_describe_ingest(result))
            for warning in result.warnings:
                info(f"  warning: {warning}")
    if app.json:
        emit_json({"files": results})
    elif quarantined:
        info(f"some rows were quarantined: see them with `recon quarantine --source {source_name}`")
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
    return (
        f"loaded {result.path} ({result.kind}, {result.format}): {result.rows_read} rows read, "
        f"{result.rows_loaded} loaded, {result.rows_quarantined} quarantined"
        + (f"; runs {runs_text}" if runs_text else "")
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
    emit_table(rows, ["path", "line", "column", "reason", "raw"])


@cli.command("failures")
@click.option(
    "--date", "day", metavar="DATE|last", help="Business date (default: the latest loaded)."
)
@click.option("--since", metavar="DATE", help="First business date of a range.")
@click.option("--until", metavar="DATE", help="Last business date of a range.")
@click.option("--source", "-s", metavar="NAME", help="Only this source.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "jsonl"]),
    default="table",
    show_default=True,
)
@pass_app
def failures_command(
    app: App, day: str | None, since: str | None, until: str | None, source: str | None, fmt: str
) -> None:
    """The failed-record list for a day or range: what the daily email carried, masked.

    A failure that a retry in the same run fixed is not listed.

    \b
    Examples:
      recon failures --date 2026-11-13
      recon failures --since 2026-11-09 --until 2026-11-13 --format csv > failed.csv
    """
    if day and (since or until):
        raise click.UsageError("give either --date or --since/--until, not both")
    with app.connect() as conn:
        if since or until:
            first = parse_day(since, "--since") or date.min
            last = parse_day(until, "--until") or date.max
        elif day and day != "last":
            first = last = parse_day(day, "--date") or date.min
        else:
            latest = failures.latest_business_date(conn, source)
            if latest is None:
                info("no transactions loaded yet: nothing to list")
                return
            first = last = latest
        rows = failures.list_failures(conn, first, last, source)
    columns = [
        "business_date",
        "run_id",
        "txn_id",
        "amount",
        "currency",
        "error_code",
        "error_message",
    ]
    if app.json:
        emit_json({"since": first, "until": last, "failures": rows})
    elif fmt == "jsonl":
        for row in rows:
            emit_json(row)
    elif fmt == "csv":
        writer = csv.DictWriter(
            sys.stdout, fieldnames=columns, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(
            {k: format_amount(v) if isinstance(v, Decimal) else v for k, v in row.items()}
            for row in rows
        )
    else:
        span = str(first) if first == last else f"{first} to {last}"
        info(f"{len(rows)} failed transaction(s), business date {span}")
        if rows:
            emit_table(rows, columns)


def _safe(text: str) -> str:
    """Error text may quote input; never let a card number through."""
    return redact.mask_pans(text) or text


def main(argv: list[str] | None = None) -> None:
    """Entry point: translate every failure into a message and an exit code, never a traceback."""
    try:
        cli.main(args=argv, prog_name="recon", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        info("aborted")
        sys.exit(EXIT_ERROR)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code)
    except ConfigError as exc:
        info(f"error: {_safe(str(exc))}")
        sys.exit(EXIT_ERROR)
    except ReconError as exc:
        info(f"error: {_safe(str(exc))}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        info("interrupted: nothing half-written (each file loads in one transaction)")
        sys.exit(130)
    except Exception as exc:  # the last line of defence: a message, not a traceback
        if os.environ.get("RECON_DEBUG"):
            traceback.print_exc()
        info(
            f"internal error: {type(exc).__name__}: {_safe(str(exc))[:500]}\n"
            "  this is a bug in recon; set RECON_DEBUG=1 to see the traceback and report it"
        )
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_OK)
