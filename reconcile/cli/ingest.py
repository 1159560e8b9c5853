"""Getting data in: `recon init`, `ingest`, `expect`, `runs`, `quarantine`."""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from reconcile import audit, logs, redact
from reconcile.cli.context import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_OK,
    App,
    _pick_source,
    cli,
    current_user,
    log,
    parse_day,
    pass_app,
)
from reconcile.cli.output import _safe, emit_json, emit_table, format_amount, info
from reconcile.errors import InputFileError
from reconcile.ingest import expected, runs
from reconcile.ingest import files as ingest
from reconcile.store import migrations


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
