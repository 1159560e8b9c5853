"""One watch tick: everything `recon watch` does each time round, as named steps.

1. read the mailboxes of the monitors that hear email (no store held: a slow server must not
   hold it) and record what arrived (`mailwatch`);
2. record the pings waiting in the spool (`spool.drain`);
3. reconcile the windows an alert of this tick may summarise (`alerts.gap_windows`), so its
   counts are the ones `recon failures` lists;
4. evaluate every monitor: ledger, transitions, alerts queued (`alerts.evaluate`);
5. deliver the due alerts from the outbox (`notify.deliver_due`), holding the store only
   between sends;
6. tell the dead man's URL that the watchdog ticked.

Each step's store work runs in a session of the tick (one `now`, one actor); the network steps
(1, 5, 6) run with the store released, since it takes one writing process at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconcile import logs
from reconcile.reconciliation import compare, refresh
from reconcile.settings import Settings
from reconcile.watch import alerts, gap, monitors, notify, spool

log = logging.getLogger(__name__)


@dataclass
class TickReport:
    """What one tick did; `as_json` is the shape `recon --json watch --once` prints."""

    transitions: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # each send: id, target...
    queued: list[dict[str, Any]] = field(default_factory=list)  # alerts queued this tick
    down: int = 0
    emails: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dead_man_error: str | None = None  # why the dead man's URL could not be told, if it could not

    @property
    def unrouted(self) -> list[dict[str, Any]]:
        """Alerts queued for no target: no target's tags match theirs."""
        return [alert for alert in self.queued if not alert["targets"]]

    @property
    def needs_attention(self) -> bool:
        """A monitor is down, something failed, or an alert could not be delivered."""
        return bool(
            self.down or self.errors or any(d["status"] != "delivered" for d in self.deliveries)
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "transitions": self.transitions,
            "alerts": self.deliveries,
            "queued": self.queued,
            "down": self.down,
            "emails": self.emails,
            "errors": self.errors,
        }


def run(sessions: notify.Sessions) -> TickReport:
    """One tick (see the module's steps). `sessions` opens a session of this tick: the same
    `now` each time."""
    from reconcile.watch import mailwatch  # imaplib and email: only the tick needs them

    with sessions() as session:
        settings, now = session.settings, session.now
        clock = notify.running_clock(now)  # leases are measured from here on
        listening = mailwatch.watched(session.conn, now)
    targets = notify.targets_of(settings)
    mail = mailwatch.fetch_all(settings, listening) if listening else []  # no store held
    report = TickReport(
        errors=[f"{m.name}: {found}" for m, found in mail if isinstance(found, str)]
    )
    with sessions() as session:
        conn = session.conn
        report.emails = [
            arrival
            for monitor, found in mail
            if not isinstance(found, str)
            for arrival in mailwatch.record(conn, settings, monitor, found, now)
        ]
        spool.drain(conn, spool.folder_for(Path(settings.db), settings.spool_dir))
        zones = {}
        for source, since in alerts.gap_windows(conn, now):
            zones[source] = settings.source(source).timezone
            first, last = gap.dates(since, now, zones[source])
            refresh.refresh_stored(session, compare.Scope(source=source, since=first, until=last))
        evaluation = alerts.evaluate(conn, now, targets, zones)
        # The rest one by one, after sending; a report's files only for the email targets.
        first_claim = notify.claim(
            conn, clock(), limit=1, with_files=notify.file_targets(targets) if targets else ()
        )
        report.down = monitors.count_down(conn)
    report.transitions, report.queued = evaluation.transitions, evaluation.alerts
    report.errors = evaluation.errors + report.errors
    _log(report)
    outcomes = notify.deliver_due(
        sessions, targets, settings.notify_timeout, clock, claimed=first_claim
    )
    report.deliveries = [
        {
            "id": item.alert_id,
            "target": item.target,
            "status": "delivered" if not error else "failed",
            "attempts": item.attempts,
            "error": error or None,
        }
        for item, error in outcomes
    ]
    report.dead_man_error = ping_dead_man(settings)
    return report


def _log(report: TickReport) -> None:
    for arrival in report.emails:
        logs.event(log, logging.INFO, "email arrived", **arrival)
    for error in report.errors:
        logs.event(log, logging.ERROR, "watch tick error", error=error)
    for change in report.transitions:
        logs.event(log, logging.WARNING if change["to"] == "down" else logging.INFO,
                   f"monitor {change['monitor']} is {change['to']}", **change)  # fmt: skip


def ping_dead_man(settings: Settings) -> str | None:
    """Tell an outside service the watchdog ticked, so its own silence is noticed. Returns why
    it could not be told (the kind of error only: the URL is a secret), or None."""
    if settings.watchdog_ping_url is None:
        return None
    import urllib.request  # only when a dead man's URL is configured

    try:
        with urllib.request.urlopen(settings.watchdog_ping_url.get_secret_value(), timeout=10):
            pass
    except (OSError, ValueError) as exc:
        return type(exc).__name__
    return None
