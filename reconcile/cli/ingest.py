"""Getting data in: `recon init`, `ingest`, `expect`, `runs`, `quarantine`."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import click

from reconcile import redact
from reconcile.cli.context import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_OK,
    App,
    _pick_source,
    cli,
    parse_day,
    pass_app,
    stdin_inputs,
)
from reconcile.cli.output import emit_json, emit_table, format_amount, info, terminal_text
from reconcile.ingest import expected, kinds, runs
from reconcile.ingest.batch import Input, Refused, ingest_files
from reconcile.ingest.files import FileResult
from reconcile.ingest.forget import ForgetError, Forgotten, forget
from reconcile.reconciliation.refresh import refresh
from reconcile.reconciliation.scope import Scope
from reconcile.store import migrations
from reconcile.watch import signals

# Commands that load files: the source they came from, which recon.toml may not configure
# yet only when told.
SOURCE = click.option(
    "--source",
    "-s",
    metavar="NAME",
    help="Source the files came from ([sources.NAME] in recon.toml).",
)
NEW_SOURCE = click.option(
    "--new-source",
    is_flag=True,
    help="The --source is new: load it although recon.toml does not configure it.",
)


@cli.command()
@pass_app
def init(app: App) -> None:
    """Create the database, or bring its schema up to date. Safe to run again.

    \b
    Example:
      recon --db /var/lib/recon/recon.duckdb init
    """
    with app.session() as session:
        applied = migrations.applied(session.conn)
    app.settings.pan_key_bytes()  # without RECON_PAN_KEY: the store's key file, made now
    path = redact.mask_pans(str(app.settings.db))
    if app.json:
        emit_json({"db": path, "migrations": applied})
    else:
        info(f"database {path} is ready ({len(applied)} schema steps applied)")


@cli.command("ingest")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@SOURCE
@click.option(
    "--run-id", metavar="RUN", help="Run the rows belong to, where the file has no run_id column."
)
@click.option(
    "--kind",
    type=click.Choice(kinds.NAMES),
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
@NEW_SOURCE
@pass_app
def ingest_command(
    app: App,
    files: tuple[Path, ...],
    source: str | None,
    run_id: str | None,
    kind: str,
    report_date: datetime | None,
    replace: bool,
    new_source: bool,
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
    source_name = pick_source(app, source, new_source)
    progress, shown = feedback(app)
    with stdin_inputs(files) as inputs, app.session() as session, progress:
        batch = ingest_files(
            session,
            inputs,
            source=source_name,
            kind=kind,
            run_id=run_id,
            report_date=report_date.date() if report_date else None,
            replace=replace,
            on_runs=signals.runs_arrived,  # its monitors hear the runs of a run log
            on_file=shown,
            on_start=progress.start,
        )
    if app.json:
        emit_json(batch.as_json())
    elif batch.quarantined:
        info(quarantine_hint(source_name))
    sys.exit(EXIT_ERROR if batch.refused else EXIT_FINDINGS if batch.quarantined else EXIT_OK)


def pick_source(app: App, source: str | None, new_source: bool) -> str:
    """The --source of a command that loads files: the only configured one when not given; a
    name recon.toml does not configure is refused unless `new_source` (--new-source)."""
    settings = app.settings
    source_name = _pick_source(settings, source)
    if settings.sources and source_name not in settings.sources:
        # A typo in --source would make a source of its own whose rows stay: refused, unless
        # the new source is meant.
        configured = ", ".join(sorted(settings.sources))
        if not new_source:
            raise click.UsageError(
                f"source {source_name!r} is not configured in recon.toml (configured: "
                f"{configured}); check the name, or give --new-source to load a new source "
                "with the defaults (canonical columns, UTC)"
            )
        info(
            f"note: new source {source_name!r} (configured: {configured}); loading with the "
            "defaults (canonical columns, UTC)"
        )
    return source_name


def feedback(app: App) -> tuple[Progress, Callable[[FileResult | Refused], None]]:
    """What a command that loads files shows as each file goes: on a terminal the ticking
    `Progress` (its `start` is the batch's on_start), then each file's line (`shown`, its
    on_file): loaded or skipped (unless --json), its warnings, or why it was refused."""

    def show(outcome: FileResult | Refused) -> None:
        if isinstance(outcome, Refused):
            info(f"error: {outcome.error}")
            return
        if not app.json:
            info(_describe_ingest(outcome))
        for warning in outcome.warnings:
            info(f"  warning: {warning}")

    progress = Progress(enabled=not app.json and _stderr_is_terminal())

    def shown(outcome: FileResult | Refused) -> None:
        progress.done("refused" if isinstance(outcome, Refused) else None)
        show(outcome)

    return progress, shown


def quarantine_hint(source: str) -> str:
    return (
        f"some rows were quarantined: see them with `recon quarantine --source {source}`;"
        "\nonce fixed at the source, load the corrected file with `recon ingest --replace`"
    )


def _stderr_is_terminal() -> bool:
    # Under the masking wrapper (`output.MaskedStream`), the terminal is the stream it wraps.
    stream = getattr(sys.stderr, "_stream", sys.stderr)
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """On a terminal only (stderr a TTY, no --json): "reading FILE (N MB)... 12 s", the
    seconds ticking while DuckDB reads, then "done in 12.3 s" before the file's own line. Never
    on a pipe or a log file, where the lines that follow say everything."""

    TICK = 1.0  # seconds between updates of the ticking line

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._label = ""
        self._started = 0.0
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.done("interrupted" if exc[0] is not None else None)

    def _write(self, text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    def start(self, item: Input) -> None:
        if not self.enabled:
            return
        self.done()
        try:
            size = f" ({item.path.stat().st_size / 1_000_000:,.1f} MB)"
        except OSError:
            size = ""
        self._label = f"reading {terminal_text(item.shown)}{size}..."
        self._started = time.monotonic()
        self._stop.clear()
        self._write(self._label)
        self._ticker = threading.Thread(target=self._tick, name="recon-progress", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.TICK):
            with self._lock:
                if not self._stop.is_set():
                    elapsed = time.monotonic() - self._started
                    self._write(f"\r\x1b[K{self._label} {elapsed:.0f} s")

    def done(self, end: str | None = None) -> None:
        """End the ticking line: the file's own line (or the error) follows."""
        if self._ticker is None:
            return
        self._stop.set()
        self._ticker.join()
        self._ticker = None
        with self._lock:
            elapsed = time.monotonic() - self._started
            end = end or f"done in {elapsed:.1f} s"
            self._write(f"\r\x1b[K{self._label} {end}\n")


def _describe_ingest(result: FileResult) -> str:
    if result.already_ingested:
        when = f" on {result.ingested_at:%Y-%m-%d %H:%M} UTC" if result.ingested_at else ""
        return (
            f"skipped {result.path}: already ingested for {result.source} as {result.kind}"
            f"{when} (file {result.file_id}, same SHA-256 {result.sha256[:12]}…); nothing "
            f"changed. To load it again: --replace, or `recon forget {result.file_id}` first"
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
    with app.session() as session:
        expected.record_control_totals(
            session, source=source, run_id=run_id, count=count, amount=total
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
    first, last = parse_day(since, "--since"), parse_day(until, "--until")
    with app.session() as session:
        rows = runs.list_runs(session.conn, source, first, last)
    if app.json:
        emit_json({"runs": rows})
        return
    if not rows:
        info("no runs yet: load a run log with `recon ingest --source NAME FILE`")
        return
    emit_table(
        [{**row, "masked": runs.masked_text(row["masked"])} for row in rows],  # per column
        [
            "source",
            "run_id",
            "business_date",
            "rows_loaded",
            "rows_failed",
            "rows_quarantined",
            "masked",
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
    with app.session() as session:
        rows = runs.list_quarantine(session.conn, source, run_id, limit or None)
    if app.json:
        emit_json({"quarantine": rows})
        return
    if not rows:
        info("nothing quarantined")
        return
    emit_table(rows, ["path", "line", "column", "reason", "raw"], wrap=["reason"])


@cli.command("forget")
@click.argument("target", metavar="FILE-OR-ID")
@click.option("--source", "-s", metavar="NAME", help="Only a load of this source.")
@click.option("--kind", type=click.Choice(kinds.NAMES), help="Only a load of this kind.")
@pass_app
def forget_command(app: App, target: str, source: str | None, kind: str | None) -> None:
    """Take back what one load put in: a file loaded with the wrong --kind or --source.

    FILE-OR-ID is the file (matched by its bytes, so any copy will do), the name it was loaded
    under, or its file id (`recon ingest --json`: file_id). Its rows and quarantined rows are
    removed, and its record, so the same bytes can be loaded again; runs that only it made are
    gone. The business dates it touched are then reconciled again: results of runs that no
    longer exist are withdrawn and their open breaks resolved. Audited as `forget`.

    \b
    Examples:
      recon forget runs/PL-20261026.csv --kind expected
      recon forget 17
    """
    with app.session() as session:
        try:
            forgotten = forget(session, target, source=source, kind=kind)
        except ForgetError as exc:
            info(f"error: {exc}")
            sys.exit(EXIT_ERROR)
        scope = Scope(forgotten.source, since=forgotten.since, until=forgotten.until)
        outcome = refresh(session, scope)
    if app.json:
        emit_json(
            {
                **forgotten.as_json(),
                "reconciliation_id": outcome.reconciliation_id,
                "breaks_resolved": outcome.breaks_resolved,
            }
        )
        return
    info(_describe_forget(forgotten))
    info(
        f"reconciled {scope.describe()} again (reconciliation {outcome.reconciliation_id}): "
        f"breaks resolved {outcome.breaks_resolved}, opened {outcome.breaks_opened}"
    )


def _describe_forget(forgotten: Forgotten) -> str:
    lines = [
        f"forgot file {forgotten.file_id}: {forgotten.path} ({forgotten.kind} for "
        f"{forgotten.source}, loaded {forgotten.ingested_at:%Y-%m-%d %H:%M} UTC): "
        f"{forgotten.rows} row(s) and {forgotten.quarantined} quarantined row(s) removed"
    ]
    if forgotten.runs_removed:
        lines.append(f"  runs gone (only this file made them): {', '.join(forgotten.runs_removed)}")
    if forgotten.released:
        lines.append(
            f"  files it had replaced can be loaded again: {', '.join(forgotten.released)}"
        )
    return "\n".join(lines)
