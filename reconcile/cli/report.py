"""The daily report: `recon report send`, `schedule`, `preview` and `chart`."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Any

import click

from reconcile.cli.context import DURATION, EXIT_ERROR, EXIT_OK, App, cli, parse_day, pass_app
from reconcile.cli.output import emit_json, info, terminal_text
from reconcile.reconciliation.scope import LAST, ScopeError, parse_date
from reconcile.report import build
from reconcile.watch import monitors, notify


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


def _send_parts() -> Any:  # imported when a send or schedule command runs
    from reconcile.report import send

    return send


@report_group.command("send")
@click.option(
    "--date", "day", metavar="DATE|last", default="last", show_default=True,
    help="The business date to report.",
)  # fmt: skip
@click.option("--source", help="One source's report (default: every source).")
@click.option(
    "--tag", help="Only the targets with this tag, and those without tags (default: every target)."
)
@click.option("--force", is_flag=True, help="Send again to targets that already got this report.")
@pass_app
def report_send(app: App, day: str, source: str | None, tag: str | None, force: bool) -> None:
    """Build the report of a business date and deliver it to the notification targets.

    Email targets get the HTML report (with a plain-text part) and its files (the failed list
    as CSV and XLSX, the chart); chat and webhook targets get a short text. Each send is
    recorded; a target that already got this date's report is skipped unless --force. A
    delivery that fails stays queued: `recon watch` retries it. Exit 0 when every target has
    the report (now or before), 1 when a delivery failed (queued for retry).

    \b
    Examples:
      recon report send --date last --tag operations
      recon report send --date 2026-11-13 --source payments-loader --force
    """
    send = _send_parts()
    when = None if day == "last" else parse_day(day, "--date")
    try:
        sent = send.send_report(app.session, when, source, tag, force)
    except notify.NoTargets:
        raise click.UsageError(
            'no notification targets: add [notify.targets.ALIAS] url = "..." to recon.toml'
        ) from None
    if app.json:
        emit_json(sent.as_json())
    else:
        scope = sent.source or "every source"
        info(f"report {sent.business_date.isoformat()} ({scope}): {sent.status}")
        for item in sent.targets:
            info(f"  {item.target}: {_outcome_line(item)}")
        if sent.attachments:
            info("attachments:")
            for attached in sent.attachments:
                info(
                    f"  {attached['name']}  {attached['bytes']} bytes  sha256 {attached['sha256']}"
                )
        if sent.failed:
            info("a delivery failed and stays queued: `recon watch` retries it")
    sys.exit(EXIT_ERROR if sent.failed else EXIT_OK)


def _outcome_line(item: Any) -> str:
    if item.outcome == "delivered":
        return f"delivered ({item.alert_id})"
    if item.outcome == "already_sent":
        when = item.delivered_at.isoformat() if item.delivered_at else "earlier"
        return f"already sent on {when} ({item.alert_id}), use --force to send it again"
    retry = f", next try after {item.next_attempt_at.isoformat()}" if item.next_attempt_at else ""
    return f"queued for retry ({item.alert_id}): {item.error or 'not tried yet'}{retry}"


@report_group.command("schedule")
@click.option("--cron", "cron_expr", required=True, metavar="EXPR", help="When the report is due.")
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone of the cron time.")
@click.option("--grace", type=DURATION, required=True, help="How late the report may be.")
@click.option("--early", type=DURATION, default=0, help="How early a report still counts.")
@click.option("--tag", "tags", multiple=True, help="Routes its alerts to targets with this tag.")
@click.option("--source", help="The report of one source (default: of every source).")
@click.option("--name", help="The monitor's name (default: failed-transactions-report[-SOURCE]).")
@click.option("--reason", help="Why (kept with the configuration version).")
@pass_app
def report_schedule(
    app: App,
    cron_expr: str,
    tz: str,
    grace: int,
    early: int,
    tags: tuple[str, ...],
    source: str | None,
    name: str | None,
    reason: str | None,
) -> None:
    """Watch the report itself: a monitor that hears each delivered report of the scope, so a
    business day with no report delivered by its due time plus grace pages on-call.

    The same as `recon monitor add NAME --hears report [--source S] --cron ... --grace ...`.
    Run `recon report send` at that time (jobs/ has a cron line and a systemd timer).

    \b
    Examples:
      recon report schedule --cron "0 7 * * 1-5" --tz Europe/London --grace 1h --tag oncall
      recon report schedule --cron "30 7 * * 1-5" --grace 30m --source payments-loader
    """
    send = _send_parts()
    try:
        with app.session() as session:
            added = send.schedule(
                session,
                cron=cron_expr,
                tz=tz,
                grace_seconds=grace,
                tags=tags,
                source=source,
                name=name,
                early_seconds=early,
                reason=reason,
            )
    except monitors.InvalidMonitor as refused:
        raise click.UsageError(str(refused)) from None
    if app.json:
        emit_json({"monitor": added.name, "next_due": [d["utc"] for d in added.next_due]})
        return
    info(f"monitor {added.name} created: it hears the report of {source or 'every source'}")
    info("next due:")
    for item in added.next_due:
        local = f"  ({item['local'].isoformat()})" if "local" in item else ""
        info(f"  {item['utc'].isoformat()}{local}")


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
