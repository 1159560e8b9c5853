"""The daily job in one process: `recon daily` (manifests, control totals and run logs in, then
the business days they touched reconciled; the library's `reconcile.daily.run_daily`)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click

from reconcile.cli.context import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, App, cli, pass_app
from reconcile.cli.ingest import NEW_SOURCE, SOURCE, feedback, pick_source, quarantine_hint
from reconcile.cli.output import emit_json, info
from reconcile.cli.summary import describe_reconciliation, reconciliation_json
from reconcile.daily import run_daily
from reconcile.watch import signals

FILE = click.Path(path_type=Path)


def _files(given: tuple[Path, ...]) -> list[Path]:
    """The files as given, a folder standing for the files in it (by name, hidden ones left
    out): a job names the folder its exports land in, without a shell to expand a glob."""
    found: list[Path] = []
    for path in given:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        else:
            found.append(path)
    return found


@cli.command("daily")
@click.argument("run_logs", metavar="RUN_LOG...", nargs=-1, type=FILE)
@SOURCE
@click.option(
    "--expected",
    "expected",
    metavar="FILE",
    multiple=True,
    type=FILE,
    help="An expected manifest (as `recon ingest --kind expected`), or a folder of them; "
    "repeat for more.",
)
@click.option(
    "--totals",
    "totals",
    metavar="FILE",
    multiple=True,
    type=FILE,
    help="A control totals file (as `recon ingest --kind totals`), or a folder of them; "
    "repeat for more.",
)
@click.option(
    "--date",
    "report_date",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Business date of run log rows without business_date and processed_at (default: "
    "the day of ingesting).",
)
@click.option("--runs", "show_runs", is_flag=True, help="Also print the per-run table.")
@NEW_SOURCE
@pass_app
def daily_command(
    app: App,
    run_logs: tuple[Path, ...],
    source: str | None,
    expected: tuple[Path, ...],
    totals: tuple[Path, ...],
    report_date: datetime | None,
    show_runs: bool,
    new_source: bool,
) -> None:
    """The daily job: load the manifests, the control totals, then the run logs, and reconcile
    the business days they touched, in one process.

    The same as `recon ingest --kind expected`, `recon ingest --kind totals`, `recon ingest`
    and `recon reconcile --since FIRST --until LAST` run one after the other, with the same
    output and audit events, without paying three start-ups. A file already loaded is
    skipped, so running it again changes nothing. When a file cannot be read, the others
    still load but nothing is reconciled: fix it and run the job again. Exit 3 when rows were
    quarantined or a day has breaks or is pending, 1 when a file could not be read. A folder
    given for files stands for every file in it (hidden ones left out), by name.

    \b
    Examples:
      recon daily --source payments-loader \\
          --expected expected/PL-20261113.csv --totals control_totals.csv \\
          runs/PL-20261113.csv
      recon daily --source payments-loader --expected expected/ runs/
    """
    if not (run_logs or expected or totals):
        raise click.UsageError("give the day's files: RUN_LOG..., --expected FILE, --totals FILE")
    source_name = pick_source(app, source, new_source)
    progress, shown = feedback(app)
    # Like `recon ingest`, the daily job creates the store where there is none.
    with app.session() as session, progress:
        daily = run_daily(
            session,
            source=source_name,
            expected=_files(expected),
            totals=_files(totals),
            run_logs=_files(run_logs),
            report_date=report_date.date() if report_date else None,
            on_runs=signals.runs_arrived,  # its monitors hear the runs of a run log
            on_file=shown,
            on_start=progress.start,
        )
    outcome = daily.outcome
    if app.json:
        emit_json(
            {
                "source": daily.source,
                "files": [f.as_json() for f in daily.files],
                "scope": daily.scope.to_json() if daily.scope else None,
                "reconciliation": reconciliation_json(outcome) if outcome else None,
            }
        )
    else:
        if daily.quarantined:
            info(quarantine_hint(source_name))
        if daily.refused:
            info(
                "not reconciled: a file could not be read (the others are loaded); fix it and "
                "run `recon daily` again with the same files (those loaded are skipped)"
            )
        elif outcome is None:
            info("nothing to reconcile: the files named no run and dated no row")
        else:
            describe_reconciliation(outcome, show_runs)
    sys.exit(EXIT_ERROR if daily.refused else EXIT_FINDINGS if daily.needs_attention else EXIT_OK)
