"""Signals and the watchdog: `recon ping`, `run`, `watch`, `alerts`, `notify test`."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from reconcile import logs, redact
from reconcile.cli.context import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_OK,
    App,
    _record_event,
    cli,
    log,
    pass_app,
)
from reconcile.cli.output import _safe, emit_json, emit_table, info
from reconcile.cli.reconcile import _reconcile
from reconcile.errors import DatabaseError, ReconError
from reconcile.reconciliation import compare
from reconcile.settings import Settings
from reconcile.store import db
from reconcile.watch import gap, notify, spool, watchdog


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
    from reconcile.watch import mailwatch  # imaplib and email: only the watchdog needs them

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
