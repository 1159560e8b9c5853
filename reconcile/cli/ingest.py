"""Getting data in: `recon init`, `ingest`, `expect`, `runs`, `quarantine`."""

from __future__ import annotations

import sys
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
)
from reconcile.cli.output import emit_json, emit_table, format_amount, info
from reconcile.ingest import expected, kinds, runs
from reconcile.ingest.batch import Refused, ingest_files
from reconcile.ingest.files import FileResult
from reconcile.store import migrations
from reconcile.watch import signals


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
    if settings.sources and source_name not in settings.sources:
        info(
            f"warning: source {source_name!r} is not in the settings (configured: "
            f"{', '.join(sorted(settings.sources))}); loading with the defaults (canonical "
            "columns, UTC). If that is a typo, nothing is lost: fix the name and ingest again."
        )

    def show(outcome: FileResult | Refused) -> None:
        if isinstance(outcome, Refused):
            info(f"error: {outcome.error}")
            return
        if not app.json:
            info(_describe_ingest(outcome))
        for warning in outcome.warnings:
            info(f"  warning: {warning}")

    with app.session() as session:
        batch = ingest_files(
            session,
            files,
            source=source_name,
            kind=kind,
            run_id=run_id,
            report_date=report_date.date() if report_date else None,
            replace=replace,
            on_runs=signals.runs_arrived,  # its monitors hear the runs of a run log
            on_file=show,
        )
    if app.json:
        emit_json(batch.as_json())
    elif batch.quarantined:
        info(
            f"some rows were quarantined: see them with `recon quarantine --source {source_name}`;"
            "\nonce fixed at the source, load the corrected file with `recon ingest --replace`"
        )
    sys.exit(EXIT_ERROR if batch.refused else EXIT_FINDINGS if batch.quarantined else EXIT_OK)


def _describe_ingest(result: FileResult) -> str:
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
