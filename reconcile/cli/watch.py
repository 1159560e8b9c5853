"""Signals and the watchdog: `recon ping`, `run`, `watch`, `alerts`, `notify test`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from reconcile import redact
from reconcile.cli.context import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_OK,
    App,
    _record_event,
    cli,
    pass_app,
)
from reconcile.cli.output import _safe, emit_json, emit_table, info
from reconcile.errors import DatabaseError, ReconError
from reconcile.session import open_session, trail_for
from reconcile.watch import notify, signals, tick
from reconcile.watch.signals import Signal


def _sessions(app: App) -> notify.Sessions:
    """Sessions of one moment, read now: a tick of `recon watch`, a signal of `recon run`."""
    settings = app.settings
    trail, now = trail_for(settings, "cli"), settings.current_time()
    return lambda: open_session(settings, trail, now=now)


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
    with app.session() as session:
        signal = Signal(name, chosen, session.now, exit_code=exit_code, message=message)
        result = signals.record(session.conn, signal)
    if app.json:
        emit_json(result)
    else:
        info(f"{name}: {chosen} recorded")


@cli.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option(
    "--ok-exit",
    "ok_exits",
    type=click.IntRange(1, 255),
    multiple=True,
    metavar="CODE",
    help="An exit code that is a success too (repeatable): 3 for recon commands, whose 3 "
    "means done, with findings for a human.",
)
@pass_app
def run_command(app: App, name: str, command: tuple[str, ...], ok_exits: tuple[int, ...]) -> None:
    """Run a command, signalling its start and then its outcome (exit code, duration, output).

    The run is a success when the command exits 0 or with a code given with --ok-exit (the
    signal keeps the code either way). The last lines of the command's output are kept with the signal, masked. Exits with the
    command's own exit code. The command runs even when its signal cannot be recorded (an
    unknown monitor, a broken recon.toml, a locked store): the job comes first. Then recon
    says why on stderr and exits 1 if the command itself succeeded.

    \b
    Examples:
      recon run nightly-load -- ./load.sh --date yesterday
      recon run --ok-exit 3 watchdog -- recon watch --once
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
            "success" if code == 0 or code in ok_exits else "fail",
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
        with _sessions(app)() as session:  # the start and the end each at their own time
            signals.record(session.conn, Signal(name, kind, session.now, **details))
    except ReconError as exc:
        return _safe(str(exc))
    return None


@cli.command("watch")
@click.option("--once", is_flag=True, help="One tick, then exit (for cron).")
@click.option("--interval", type=click.FloatRange(1), default=60, show_default=True)
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="After each tick, write the Prometheus metrics there (node_exporter textfile "
    "format, atomically: a name ending in .prom).",
)
@pass_app
def watch_command(app: App, once: bool, interval: float, metrics_file: Path | None) -> None:
    """The watchdog: evaluate every monitor, record changes, deliver alerts from the outbox.

    Exit (with --once) 3 when a monitor is down, an alert could not be delivered, or a
    mailbox could not be read.

    \b
    Examples:
      recon watch --once          # from cron, every minute
      recon watch --interval 30   # as a service
      recon watch --once --metrics-file /var/lib/node_exporter/recon.prom
    """
    if not once:
        _record_event(app, "watch.start", "watchdog", {"interval_seconds": interval})
    try:
        _watch_loop(app, once, interval, metrics_file)
    finally:
        if not once:
            _record_event(app, "watch.stop", "watchdog", {})


def _watch_loop(app: App, once: bool, interval: float, metrics_file: Path | None) -> None:
    while True:
        try:
            report = tick.run(_sessions(app))
        except DatabaseError as exc:
            if once:
                raise
            info(f"error: {exc}; trying again in {interval:g}s")  # e.g. locked by a long ingest
            time.sleep(interval)
            continue
        _show_tick(report)
        if metrics_file is not None:
            try:
                _write_metrics(app, metrics_file)
            except ReconError as exc:
                if once:
                    raise
                info(f"error: {exc}")  # the watchdog goes on; the next tick writes them again
        if app.json:  # one JSON line per tick
            emit_json(report.as_json())
        if once:
            sys.exit(EXIT_FINDINGS if report.needs_attention else EXIT_OK)
        time.sleep(interval)


def _write_metrics(app: App, path: Path) -> None:
    from reconcile.watch import metrics

    with _sessions(app)() as session:
        numbers = metrics.gather(session)
    try:
        metrics.write_textfile(numbers, path)
    except OSError as exc:
        raise ReconError(f"could not write the metrics file {path}: {exc.strerror}") from None


def _show_tick(report: tick.TickReport) -> None:
    for arrival in report.emails:
        info(f"{arrival['monitor']}: email arrived at {arrival['arrived_at']:%Y-%m-%d %H:%M} UTC")
        for line in arrival["reports"]:
            info(f"  {line}")
    for error in report.errors:
        info(f"error: {error}")
    for change in report.transitions:
        info(f"{change['monitor']}: {change['from']} -> {change['to']}")
    for sent in report.deliveries:
        info(f"alert {sent['id']} to {sent['target']}: {sent['error'] or 'delivered'}")
    for alert in report.unrouted:
        info(
            f"alert {alert['id']} ({alert['monitor']} {alert['kind']}) reached no one: no "
            "notification target matches its tags; add one under [notify.targets.NAME] in "
            "recon.toml (see `recon alerts`)"
        )
    if report.dead_man_error:
        info(f"warning: the watchdog's own dead-man ping failed ({report.dead_man_error})")


@cli.command("alerts")
@click.option("--limit", type=int, default=50, show_default=True)
@pass_app
def alerts_command(app: App, limit: int) -> None:
    """Alerts, newest first, with each target's delivery status and attempts.

    Reports sent by `recon report send` are listed too: kind report_<status>, with the
    report's business date and scope.

    Exit 3 when an alert or a report is not delivered yet.

    \b
    Example:
      recon alerts --limit 20
    """
    with app.session() as session:
        rows = notify.history(session.conn, limit)
    if app.json:
        emit_json({"alerts": rows})
    elif rows:
        emit_table(
            [
                {**r, "monitor": f"report {r['report_date']} ({r['report_scope']})"}
                if r["report_date"]
                else r
                for r in rows
            ],
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
@click.option(
    "--tag", help="Only the targets with this tag, and those without tags (default: every target)."
)
@pass_app
def notify_test(app: App, tag: str | None) -> None:
    """Send a test alert through the outbox to the configured targets, now.

    Without --tag it goes to every target, tagged or not. A tag no target has is an error
    (exit 1, naming the tags there are; nothing is queued). Exit 3 when a target failed.

    \b
    Examples:
      recon notify test
      recon notify test --tag payments
    """
    try:
        sent = notify.send_test_alert(app.session, tag)
    except notify.NoTargets:
        raise click.UsageError(
            'no notification targets: add [notify.targets.ALIAS] url = "..." to recon.toml'
        ) from None
    for item, error in sent.outcomes:
        info(f"{item.target}: {error or 'delivered'}")
    if app.json:
        emit_json({"alert_id": sent.alert_id, "targets": sent.targets, "failed": sent.failed})
    sys.exit(EXIT_FINDINGS if sent.failed or not sent.targets else EXIT_OK)
