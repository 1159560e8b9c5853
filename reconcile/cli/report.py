"""The daily report: `recon report send`, `schedule`, `preview` and `chart`."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from reconcile.cli.context import App, cli, parse_day, pass_app
from reconcile.cli.output import emit_json, info, terminal_text
from reconcile.reconciliation.scope import LAST, ScopeError, parse_date
from reconcile.report import build


@cli.group("report")
def report_group() -> None:
    """The daily Failed Transactions report: built, sent, recorded and watched by recon.

    \b
    Examples:
      recon report send --date last --tag operations
      recon report schedule --cron "0 7 * * 1-5" --tz Europe/London --grace 1h --tag oncall
      recon report preview --date 2026-11-13 -o report-preview/
      recon report chart --source payments-loader -o failures.png
    """


# ----------------------------------------------------------------------------------------------
# recon report send, recon report schedule (helper "send")
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# recon report preview (helper "build")
# ----------------------------------------------------------------------------------------------


@report_group.command("preview")
@click.option("--date", "day", metavar="DATE|last", help="The business date (default: last).")
@click.option("--source", "-s", metavar="NAME", help="Only this source (default: every source).")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write report.html, report.txt and the attachments into this folder.",
)
@pass_app
def preview_command(app: App, day: str | None, source: str | None, output: Path | None) -> None:
    """Build the report of a business date without sending it, and print its text.

    The day is reconciled first, as `recon failures` does. With -o, the HTML body, the text
    and the attachments (the failed list as CSV and XLSX, the chart) are written into the
    folder, private (0600). --json prints what the report says (its facts) instead.

    \b
    Examples:
      recon report preview --date 2026-11-13
      recon report preview --source payments-loader -o report-preview/
      recon --json report preview --date last
    """
    when = _report_day(day)
    with app.session() as session:
        previewed = build.preview(session, when, source, output)
    report = previewed.report
    if app.json:
        emit_json(
            {
                "title": report.title,
                "status": report.status,
                "alert_kind": report.alert_kind,
                "short": report.short,
                "facts": report.facts,
                "written": previewed.written,
            }
        )
        return
    click.echo(terminal_text(report.text), nl=False)
    if output is not None:
        info(f"wrote {', '.join(p for p in previewed.written if p != 'stdout')}")


def _report_day(day: str | None) -> date | None:
    """--date: a business date, or `last` (or none) for the latest loaded."""
    if day is None or day == LAST:
        return None
    try:
        return parse_date(day)
    except ScopeError as exc:
        raise click.BadParameter(exc.text({"date": "--date"}), param_hint="--date") from None


# ----------------------------------------------------------------------------------------------
# recon report chart (helper "chart")
# ----------------------------------------------------------------------------------------------


@report_group.command("chart")
@click.option(
    "--since",
    metavar="DATE",
    help="First business date (default: the first of the last 30 with data up to --until).",
)
@click.option(
    "--until",
    metavar="DATE",
    help="Last business date, marked on the chart (default: the latest loaded).",
)
@click.option("--source", "-s", metavar="NAME", help="Only this source (default: every source).")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The PNG file to write (private: mode 0600).",
)
@pass_app
def chart_command(
    app: App, since: str | None, until: str | None, source: str | None, output: Path
) -> None:
    """The report's chart alone, as a PNG file (1200x600) to paste elsewhere.

    Per source, for each business day with results: the failure rate (failed records among
    the records processed that day, in %) and the failed count (the records `recon failures`
    lists), the last day marked. The range is reconciled first, as `recon failures` does; at
    most its last 400 business days are drawn. The same data gives the same bytes.

    \b
    Examples:
      recon report chart -o failures.png
      recon report chart --source payments-loader --since 2026-10-01 --until 2026-11-13 -o pl.png
    """
    from reconcile.report import chart

    if str(output) == "-":
        raise click.BadParameter("the chart is a PNG file: give its path", param_hint="-o")
    first, last = parse_day(since, "--since"), parse_day(until, "--until")
    if first and last and first > last:
        raise click.BadParameter(f"--since {first} is after --until {last}: swap them")
    try:
        with app.session() as session:
            drawn = chart.write_chart(session, first, last, source, output)
    except chart.ChartError as exc:
        scope = f" --source {source}" if source else ""
        span = f" --since {exc.since} --until {exc.until}" if exc.since and exc.until else ""
        raise click.ClickException(
            f"{exc}\n  what to do: load the days' files with `recon ingest{scope} ...` (or "
            f"`recon daily`), then `recon reconcile{span}{scope}`"
        ) from None
    if app.json:
        emit_json(drawn.to_json())
    else:
        span = f"{drawn.since} to {drawn.until}" if drawn.days > 1 else str(drawn.until)
        info(
            f"wrote {output}: {drawn.days} business day(s), {span}, {len(drawn.sources)} source(s)"
        )
