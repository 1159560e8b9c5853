"""Reconciling and reading results: `recon reconcile`, `failures`, `export`, `history`, `bisect`.

Each command parses its options into a `Scope`, opens one session, calls one library function
(`refresh`, `failures.list_for`, `export.finance`, `refresh.history`, `bisect.examine`) and
renders what it returns. The library names no option: the scope's and the categories' errors
are worded here with the command line's own names.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import click

from reconcile.cli.context import (
    DASH,
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_OK,
    App,
    cli,
    date_options,
    pass_app,
    stdout_output,
)
from reconcile.cli.output import _cell, emit_json, emit_table, info, terminal_text
from reconcile.cli.summary import (
    COUNT_COLUMNS,
    describe_reconciliation,
    reconciliation_json,
)
from reconcile.reconciliation import bisect as changepoint
from reconcile.reconciliation import compare, export, failures, workbook
from reconcile.reconciliation import refresh as reconciliation
from reconcile.reconciliation.scope import Scope, ScopeError, parse_date

# The scope's parts as this face names them.
OPTION_NAMES = {"date": "--date", "since": "--since", "until": "--until"}


def parse_scope(**given: Any) -> Scope:
    """`Scope.parse` with its errors as usage errors naming the options."""
    try:
        return Scope.parse(**given)
    except ScopeError as exc:
        text = exc.text(OPTION_NAMES)
        if exc.param:
            raise click.BadParameter(text, param_hint=OPTION_NAMES[exc.param]) from None
        raise click.UsageError(text) from None


def parse_categories(text: str) -> list[str]:
    """`compare.parse_categories`, refused as a bad --category."""
    try:
        return compare.parse_categories(text)
    except compare.CategoryError as exc:
        raise click.BadParameter(str(exc), param_hint="--category") from None


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
    scope = parse_scope(day=day, since=since, until=until, source=source, run_id=run_id)
    with app.session() as session:
        outcome = reconciliation.refresh(session, scope)
    if app.json:
        emit_json(reconciliation_json(outcome))
    else:
        describe_reconciliation(outcome, show_runs or bool(run_id))
    sys.exit(EXIT_FINDINGS if outcome.needs_attention else EXIT_OK)


FAILURE_FORMATS = list(failures.FORMATS)


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
@click.option(
    "--status",
    type=click.Choice(failures.STATUSES),
    default="open",
    show_default=True,
    help="Records whose break is open (the to-do list), resolved (by a person or by recon), "
    "or all.",
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
    status: str,
) -> None:
    """The failed-record list for a day or range: what the daily email carried, masked.

    The range is reconciled first (nothing changes when nothing new arrived), so the list
    always matches `recon reconcile`. A failure that a retry in the same run fixed is matched,
    not listed. Default: the latest business date loaded, each source's own (a source a day
    behind is listed on its latest day). By default only records whose break is still open
    are listed (the line above the table says how many resolved ones are not shown).

    \b
    Examples:
      recon failures --date 2026-11-13
      recon failures --since 2026-11-09 --until 2026-11-13 --category all --format csv > f.csv
      recon failures --date last --format xlsx -o failed.xlsx
    """
    wanted = parse_categories(categories)
    if fmt in failures.FILE_FORMATS and output is None:
        raise click.UsageError(f"--format {fmt} writes a file: give it with -o FILE")
    scope = parse_scope(day=day, since=since, until=until, source=source, default_last=True)
    binary = fmt in failures.FILE_FORMATS
    with (
        stdout_output(output, fmt, binary=binary, as_json=app.json) as target,
        app.session() as session,
    ):
        listing = failures.list_for(session, scope, wanted, fmt=fmt, output=target, status=status)
    output = output if target else None  # `-o -` of a text format: written to stdout below
    if listing is None:
        info("no transactions loaded yet: nothing to list")
        return
    rows, label, span_text = listing.rows, listing.label, listing.days_text
    if app.json:
        emit_json(
            {
                "since": listing.scope.since,
                "until": listing.scope.until,
                "latest": listing.latest,
                "categories": wanted,
                "status": status,
                "not_shown": listing.hidden,
                "failures": rows,
            }
        )
    elif fmt == "xlsx":
        info(f"wrote {len(rows)} {label}, business date {span_text}, to {output}")
    elif fmt == "parquet":
        info(f"wrote the {label} of business date {span_text} to {output}")
    elif fmt in failures.TEXT_WRITERS:
        writer = failures.TEXT_WRITERS[fmt]
        if output is not None:
            info(f"wrote {len(rows)} {label}, business date {span_text}, to {output}")
        elif sys.stdout.isatty():  # read on a terminal: its controls shown, not obeyed
            shown = io.StringIO()
            writer(rows, failures.COLUMNS, shown)
            lines = shown.getvalue().split("\r\n")  # the CSV's line ends are no controls
            click.echo("\n".join(terminal_text(line) for line in lines), nl=False)
        else:
            writer(rows, failures.COLUMNS, sys.stdout)
    else:
        status_text = "" if status == "all" else f" ({status})"
        hidden = ", ".join(f"{n} {name}" for name, n in listing.hidden.items())
        more = f"; not shown: {hidden} (--status all)" if hidden else ""
        info(f"{len(rows)} {label}{status_text}, business date {span_text}{more}")
        if rows:
            # The source when the list covers more than one; the note says why a record is
            # here when its row never loaded (quarantined).
            several = len(listing.sources) > 1 or (source is None and len(app.settings.sources) > 1)
            columns = [c for c in failures.COLUMNS if c not in ("source", "note")]
            sourced = ["source"] if several else []
            noted = ["note"] if any(row.get("note") for row in rows) else []
            emit_table(rows, [*sourced, *columns, *noted], wrap=noted)


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

    XLSX: a Summary sheet (generation time in UTC, product version, per-day totals, per day and
    currency, a grand total per currency, per-run totals, the source files with their SHA-256,
    replaced ones marked) and a Breaks sheet whose differences add up to each day's amount
    difference, with assignee, resolution, resolver and comments. Every sheet prints landscape,
    one page wide, its header repeated, frozen and filtered. CSV and Parquet: days, currencies,
    totals, runs, breaks and files in a folder. The scope is reconciled first; the same inputs
    give the same files.

    \b
    Examples:
      recon export --since 2026-11-09 --until 2026-11-13 --format xlsx -o week46.xlsx
      recon export --date 2026-11-13 --format csv -o export-2026-11-13/
    """
    scope = parse_scope(day=day, since=since, until=until, source=source)
    if output == DASH and fmt != "xlsx":
        raise click.UsageError(f"--format {fmt} writes a folder of files: give -o FOLDER")
    with (
        stdout_output(output, fmt, binary=True, as_json=app.json) as target,
        app.session() as session,
    ):
        exported = export.finance(session, scope, fmt, target or output)
    written, outcome = exported.written, exported.outcome
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
    try:
        when = parse_date(day)
    except ScopeError as exc:
        raise click.BadParameter(exc.text(OPTION_NAMES), param_hint="--date") from None
    with app.session() as session:
        rows = reconciliation.history(session.conn, source=source, run_id=run_id, day=when)
    if app.json:
        emit_json({"versions": rows})
        return
    if not rows:
        info("no stored results: run `recon reconcile` first")
        return
    # The same date or run in more than one source: each version says whose it is.
    sourced = ["source"] if len({row["source"] for row in rows}) > 1 else []
    emit_table(
        rows,
        [
            *sourced,
            "version",
            "reconciled_at",
            *COUNT_COLUMNS,
            "amount_difference",
            "inputs_sha256",
        ],
    )


@cli.command("bisect")
@click.option("--source", "-s", metavar="NAME", required=True, help="The source to examine.")
@click.option(
    "--metric", type=click.Choice(changepoint.METRICS), default="failure_rate", show_default=True
)
@pass_app
def bisect_command(app: App, source: str, metric: str) -> None:
    """Find the first run where a metric shifted, and what changed just before it.

    The per-run series is split where two levels fit it best (at least 3 runs on each side);
    the split is a shift only when the two sides' proportions (failed rows among rows loaded;
    missing or mismatched records among expected ones) differ significantly: Fisher's exact
    test, p < 0.01. Then: configuration versions recorded between the run before and that run
    (who, why), and the application versions their logs carry. Exit 3 for a shift, 0 for none.

    \b
    Examples:
      recon bisect --source payments-loader
      recon bisect --source payments-loader --metric missing
    """
    with app.session() as session:
        shift = changepoint.examine(session, source, metric)
    if shift is None:
        info(
            f"too few runs of {source} to look for a shift "
            f"(at least {2 * changepoint.MIN_SIDE} are needed)"
        )
        sys.exit(EXIT_ERROR)
    run = shift.run
    if app.json:
        emit_json(shift.__dict__)
    else:
        unit = "%" if metric == "failure_rate" else " record(s)"
        for point in shift.series:
            mark = "  <- shift" if point["run_id"] == run["run_id"] and shift.significant else ""
            click.echo(f"  {_cell(point['run_id'], True):<24} {point['value']:8.2f}{unit}{mark}")
        (events_before, trials_before), (events_after, trials_after) = (
            shift.counts["before"],
            shift.counts["after"],
        )
        evidence = (
            f"{events_before} of {trials_before} before, {events_after} of {trials_after} "
            f"from it on; Fisher's exact test p = {shift.p_value:.2g}"
        )
        if not shift.significant:
            info(
                f"no significant shift in {metric}: the best split (at run {run['run_id']}) "
                f"moves it from {shift.before:.2f}{unit} to {shift.after:.2f}{unit} "
                f"({evidence}; a shift needs p < {changepoint.ALPHA:g})"
            )
            sys.exit(EXIT_OK)
        info(
            f"{metric} shifted at run {run['run_id']} (first processed "
            f"{run['started']:%Y-%m-%d %H:%M} UTC): from {shift.before:.2f}{unit} to "
            f"{shift.after:.2f}{unit} on average ({evidence})"
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
