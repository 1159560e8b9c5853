"""Monitors: `recon monitor add|edit|preview|list|show|log|pause|resume|remove`."""

from __future__ import annotations

import sys
import urllib.parse
from datetime import datetime
from typing import Any

import click

from reconcile.cli.context import (
    DURATION,
    EXIT_FINDINGS,
    EXIT_OK,
    INSTANT,
    App,
    cli,
    pass_app,
)
from reconcile.cli.output import _cell, emit_json, emit_table, info
from reconcile.watch import configure, monitors, schedule, views


@cli.group("monitor")
def monitor_group() -> None:
    """Monitors: recurring signals that must arrive on schedule (reports, nightly loads, runs).

    \b
    Examples:
      recon monitor add daily-report --cron "0 7 * * 1-5" --tz Europe/London --grace 1h
      recon monitor add nightly-load --every 1d --grace 2h --tag payments
      recon monitor list
    """


# How this command words the rules of a monitor's configuration (`monitors.InvalidMonitor`).
_REFUSALS = {
    "schedule": "give either --cron EXPR (with --tz) or --every DURATION",
    "every": "--every must be a period longer than zero, such as 15m or 1d",
    "mail_options": "--mailbox, --subject and --from are for monitors hearing email",
    "email_mailbox": "a monitor hearing email needs --mailbox ALIAS",
    "run_source": "a monitor hearing runs needs --source NAME",
    "checks": "content checks judge arriving runs: use them with --source NAME (hearing runs)",
}
_EARLY_WARNING = (
    "with --early 0, a run or an email that lands before its due time counts for the "
    "previous slot; if it may come early (a 03:00 deadline, a run at 02:10), give "
    "--early, e.g. --early 3h"
)


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
    type=click.Choice(monitors.HEARS),
    help="The signal: ping, run (of --source), email (in --mailbox) or report (recon's own "
    "report of --source, or of every source, delivered). "
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
    spec = monitors.Spec(
        cron_expr,
        tz,
        every,
        grace,
        early,
        max_runtime,
        realert,
        tags,
        hears or "",  # empty: by what the monitor is linked to
        source,
        min_transactions,
        max_count_diff,
        max_failure_rate,
        failure_rate_jump,
        mailbox,
        subject,
        sender,
    )
    try:
        with app.session() as session:
            added = configure.add(session, name, spec, reason=reason)
    except monitors.InvalidMonitor as refused:
        if refused.rule == "subject":
            raise click.BadParameter(str(refused), param_hint="--subject") from None
        raise click.UsageError(_REFUSALS.get(refused.rule, str(refused))) from None
    warning = added.warning and (
        _EARLY_WARNING if added.warning.rule == "early" else added.warning.text
    )
    due = added.next_due
    if app.json:
        emit_json({"monitor": name, "next_due": [d["utc"] for d in due], "warning": warning})
        return
    info(f"monitor {name} created; next due:")
    for item in due:
        local = f"  ({item['local'].isoformat()})" if "local" in item else ""
        info(f"  {item['utc'].isoformat()}{local}")
    if warning:
        info(f"warning: {warning}")


@monitor_group.command("edit")
@click.argument("name")
@click.option("--cron", "cron_expr", metavar="EXPR", help="A new cron expression (drops --every).")
@click.option("--tz", help="A new IANA time zone of the cron time.")
@click.option("--every", type=DURATION, help="A plain period instead (drops --cron).")
@click.option("--grace", type=DURATION, help="How late a signal may be.")
@click.option("--early", type=DURATION, help="How early a signal still counts.")
@click.option("--tag", "tags", multiple=True, help="The tags, replacing the old ones.")
@click.option("--no-tags", is_flag=True, help="Remove every tag.")
@click.option("--max-runtime", type=DURATION, help="A started run longer than this is down.")
@click.option("--no-max-runtime", is_flag=True, help="No limit on a run's length.")
@click.option("--realert", type=DURATION, help="Alert again this often while down.")
@click.option("--no-realert", is_flag=True, help="Alert once per incident.")
@click.option("--source", help="The source this monitor is about.")
@click.option("--hears", type=click.Choice(monitors.HEARS), help="The signal it hears.")
@click.option("--mailbox", metavar="ALIAS", help="Watch this mailbox ([mailboxes.ALIAS]).")
@click.option("--subject", metavar="REGEX", help="Email: subject pattern (case-insensitive).")
@click.option("--from", "sender", metavar="ADDRESS", help="Email: the sender's address.")
@click.option("--min-transactions", type=click.IntRange(0), help="Content check (runs).")
@click.option("--max-count-diff", type=click.FloatRange(0), metavar="PERCENT")
@click.option("--max-failure-rate", type=click.FloatRange(0, 100), metavar="PERCENT")
@click.option("--failure-rate-jump", type=click.FloatRange(1), metavar="TIMES")
@click.option("--reason", help="Why (kept with the configuration version).")
@pass_app
def monitor_edit(app: App, name: str, **given: object) -> None:
    """Change a monitor's settings; the rest, its ping URL (uuid), signals and slot ledger stay.
    The same rules as `add`; each change is audited and a new configuration version.

    \b
    Examples:
      recon monitor edit daily-report --grace 2h --reason "the report runs longer in December"
      recon monitor edit nightly-load --cron "30 2 * * *" --tz Europe/Berlin --no-max-runtime
    """
    reason = given.pop("reason")
    assert reason is None or isinstance(reason, str)
    changes = {
        field: given[option]
        for option, field in _EDITED.items()
        if given.get(option) is not None and given[option] != ()
    }
    for flag, field, cleared in (
        ("no_tags", "tags", ()),
        ("no_max_runtime", "max_runtime_seconds", None),
        ("no_realert", "realert_seconds", None),
    ):
        if given[flag]:
            if field in changes:
                raise click.UsageError(f"--{flag.replace('_', '-')} and a new value: pick one")
            changes[field] = cleared
    if given["cron_expr"] is not None and given["every"] is not None:
        raise click.UsageError("give either --cron EXPR or --every DURATION, not both")
    if given["cron_expr"] is not None:
        changes["every_seconds"] = None
    if given["every"] is not None:
        changes["cron"] = None
    if not changes:
        raise click.UsageError("nothing to change: give the settings to change, e.g. --grace 2h")
    if "tags" in changes:
        assert isinstance(given["tags"], tuple)  # click gives a tuple for a multiple option
        changes["tags"] = tuple(given["tags"])
    try:
        with app.session() as session:
            edited = configure.edit(session, name, changes, reason=reason)
    except monitors.InvalidMonitor as refused:
        if refused.rule == "subject":
            raise click.BadParameter(str(refused), param_hint="--subject") from None
        raise click.UsageError(_REFUSALS.get(refused.rule, str(refused))) from None
    before, after = edited.before.config(), edited.after.config()
    changed = {f: {"before": before[f], "after": after[f]} for f in edited.changed}
    if app.json:
        emit_json({"monitor": name, "changed": changed, "next_due": edited.next_due})
        return
    if not changed:
        info(f"{name}: nothing changed (it already has these settings)")
        return
    info(f"monitor {name} changed (its ping URL stays):")
    for field, values in changed.items():
        info(f"  {field}: {_cell(values['before'], True)} -> {_cell(values['after'], True)}")
    info(f"next due: {edited.next_due.isoformat()}")


# `monitor edit` options and the configuration fields (`monitors.Spec`) they set.
_EDITED = {
    "cron_expr": "cron",
    "tz": "tz",
    "every": "every_seconds",
    "grace": "grace_seconds",
    "early": "early_seconds",
    "tags": "tags",
    "max_runtime": "max_runtime_seconds",
    "realert": "realert_seconds",
    "source": "source",
    "hears": "hears",
    "mailbox": "mailbox",
    "subject": "subject_pattern",
    "sender": "sender",
    "min_transactions": "min_transactions",
    "max_count_diff": "max_count_diff_percent",
    "max_failure_rate": "max_failure_rate_percent",
    "failure_rate_jump": "failure_rate_jump",
}


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
    rows = schedule.preview(cron, start or app.now_time, count)
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
    with app.session() as session:
        rows = views.listing(session)
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
    with app.session() as session:
        found = views.show(session, name)
    base = app.settings.base_url
    found["ping_url"] = f"{base.rstrip('/')}/ping/{found['ping_uuid']}" if base else None
    if base and found["ping_key"]:
        by_name = f"{found['ping_key']}/{urllib.parse.quote(name, safe='')}"
        found["ping_url_by_name"] = f"{base.rstrip('/')}/ping/{by_name}"
    if found["ping_url"]:
        found["curl"] = f"curl -fsS -m 10 --retry 5 -o /dev/null {found['ping_url']}"
    if app.json:
        emit_json(found)
        return
    for key, value in found.items():
        if key != "slots":  # whole values: a URL or a command cut short is of no use
            click.echo(f"{key:>20}: {_cell(value, True) if value is not None else ''}")
    click.echo("\nrecent slots:")
    emit_table(found["slots"], ["due_at", "outcome", "arrived_at"])


@monitor_group.command("log")
@click.argument("name")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@pass_app
def monitor_log(app: App, name: str, limit: int) -> None:
    """One monitor's events, newest first: the signals it heard (pings with their messages,
    `recon run` with its output and exit code), each slot's outcome, its status changes.

    \b
    Examples:
      recon monitor log daily-report
      recon --json monitor log nightly-load --limit 200
    """
    with app.session() as session:
        rows = views.events(session, name, limit)
    if app.json:
        emit_json({"monitor": name, "events": rows})
        return
    if not rows:
        info(f"{name} has heard nothing yet")
        return
    emit_table(
        [_event_line(row) for row in rows], ["at", "event", "what", "message"], ["what", "message"]
    )


def _event_line(row: dict[str, Any]) -> dict[str, Any]:
    """One event of `monitor log` in words."""
    if row["event"] == "signal":
        what = [row["kind"], row["origin"]]
        if row["exit_code"] is not None:
            what.append(f"exit {row['exit_code']}")
        if row["duration_seconds"] is not None:
            what.append(f"{row['duration_seconds']:.1f}s")
        return {**row, "what": ", ".join(what), "message": row["message"] or ""}
    if row["event"] == "slot":
        due = _cell(row["due_at"])
        arrived = f", arrived {_cell(row['arrived_at'])}" if row["arrived_at"] else ""
        return {**row, "what": f"slot due {due}: {row['outcome']}{arrived}", "message": ""}
    return {**row, "what": f"{row['from_status']} -> {row['to_status']}", "message": ""}


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
    with app.session() as session:
        configure.pause(session, name, until=until, reason=reason)
    if app.json:
        emit_json({"monitor": name, "paused": True, "until": until, "reason": reason})
        return
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
    with app.session() as session:
        configure.resume(session, name)
    if app.json:
        emit_json({"monitor": name, "paused": False})
        return
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
    with app.session() as session:
        configure.remove(session, name, reason=reason)
    if app.json:
        emit_json({"monitor": name, "removed": True, "reason": reason})
        return
    info(f"{name} removed")
