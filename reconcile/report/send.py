"""Sending the daily report: built once, recorded, delivered through the alert outbox.

`send_report` builds the report of a business date (`build.build`) and `deliver`s it to the
notification targets (every target; with a tag, those a tagged alert would reach). Per target:

- a report of that date and scope already delivered there is not sent again (unless `force`);
- one still waiting in the outbox (pending, or claimed by a process that may have died) is not
  queued again: it is made due now and tried;
- else the report is queued: one alert of the report's kind (`Report.alert_kind`), one delivery
  per target, its bodies and files in the outbox (`watch.outbox_parts`), one row per target in
  `report_sends` (the SHA-256 of each file that target gets) and the audit event `report.send`,
  all in one transaction. Then its deliveries are tried (`notify.deliver_due`).

A delivery that fails stays queued: `recon watch` retries it with backoff, files included. Each
confirmed delivery is a success signal of the monitors hearing reports of its scope (`schedule`
creates one), whichever process delivered it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from reconcile.report import build
from reconcile.report.model import Report
from reconcile.session import Session
from reconcile.store.db import fetch_dicts, transaction
from reconcile.watch import configure, monitors, notify
from reconcile.watch.outbox_parts import File

DEFAULT_MONITOR = "failed-transactions-report"
OUTCOMES = ("delivered", "queued", "already_sent")


@dataclass(frozen=True)
class TargetOutcome:
    """What became of the report for one target."""

    target: str
    alert_id: str
    outcome: str  # delivered | queued (failed or not tried yet: recon watch retries) | already_sent
    error: str | None = None  # why the last attempt failed (masked; never the URL)
    delivered_at: datetime | None = None
    next_attempt_at: datetime | None = None
    attachments: list[dict[str, Any]] = field(
        default_factory=list
    )  # name, media_type, bytes, sha256


@dataclass(frozen=True)
class Sent:
    """A `recon report send`: the report's date, scope and status, and each target's outcome.
    `as_json` is the shape `recon --json report send` prints (docs/contract.md)."""

    business_date: date
    source: str | None
    status: str
    kind: str
    forced: bool
    targets: list[TargetOutcome]
    attachments: list[dict[str, Any]]

    @property
    def failed(self) -> list[TargetOutcome]:
        """The targets the report has not reached yet (they stay queued)."""
        return [t for t in self.targets if t.outcome == "queued"]

    def as_json(self) -> dict[str, Any]:
        return {
            "business_date": self.business_date,
            "source": self.source,
            "scope": self.source or "*",
            "status": self.status,
            "kind": self.kind,
            "forced": self.forced,
            "targets": [
                {
                    "target": t.target,
                    "alert_id": t.alert_id,
                    "outcome": t.outcome,
                    "error": t.error,
                    "delivered_at": t.delivered_at,
                    "next_attempt_at": t.next_attempt_at,
                    "attachments": t.attachments,
                }
                for t in self.targets
            ],
            "attachments": self.attachments,
            "failed": len(self.failed),
        }


def send_report(
    sessions: notify.Sessions, day: date | None, source: str | None, tag: str | None, force: bool
) -> Sent:
    """Build the report of `day` (None: the latest loaded) for `source` (None: every source)
    and deliver it (`deliver`)."""
    with sessions() as session:
        _chosen(session, tag)  # no target, or none with the tag: refused before building
        report = build.build(session, day, source)
    return deliver(sessions, report, tag, force)


def deliver(
    sessions: notify.Sessions,
    report: Report,
    tag: str | None,
    force: bool,
    *,
    attempt: bool = True,
) -> Sent:
    """Record and deliver a built report (see the module's notes). `attempt=False` only queues
    it (the outbox's next cycle, `recon watch`, delivers it)."""
    with sessions() as session:
        chosen, with_files = _chosen(session, tag)
        conn, now = session.conn, session.now
        with transaction(conn):
            earlier = {
                row["target"]: row
                for row in fetch_dicts(
                    conn,
                    """
                    SELECT target, alert_id, delivery FROM report_deliveries
                    WHERE business_date = $day AND scope = $scope
                      AND list_contains($targets, target) AND delivery IS NOT NULL
                    QUALIFY row_number() OVER (
                        PARTITION BY target
                        ORDER BY delivery = 'delivered' DESC, created_at DESC, alert_id DESC) = 1
                    """,
                    {
                        "day": report.business_date,
                        "scope": report.scope,
                        "targets": [t.alias for t in chosen],
                    },
                )
            }
            skipped = [a for a, row in earlier.items() if row["delivery"] == "delivered"]
            skipped = [] if force else skipped
            waiting = {
                a: row["alert_id"] for a, row in earlier.items() if row["delivery"] != "delivered"
            }
            fresh = [t for t in chosen if t.alias not in skipped and t.alias not in waiting]
            if waiting:  # tried now, not after their backoff: someone asked for the report
                conn.execute(
                    "UPDATE deliveries SET next_attempt_at = least(next_attempt_at, $now) "
                    "WHERE status = 'pending' AND list_contains($keys, alert_id || chr(31) || target)",
                    {"now": now, "keys": [f"{i}\x1f{a}" for a, i in waiting.items()]},
                )
            alert_id = _queue(session, report, fresh, with_files, tag, force) if fresh else None
            session.record(
                "report.send",
                f"report {report.business_date.isoformat()} {report.scope}",
                details={
                    "business_date": report.business_date,
                    "scope": report.scope,
                    "status": report.status,
                    "alert_id": alert_id,
                    "targets": [t.alias for t in fresh],
                    "retried": sorted(waiting),
                    "skipped": sorted(skipped),
                    "forced": force,
                    "attachments": [
                        {"name": a.name, "sha256": a.sha256} for a in report.attachments
                    ],
                },
            )
        clock = notify.running_clock(now)
        timeout = session.settings.notify_timeout
        targets = notify.targets_of(session.settings)
    ids = sorted({*waiting.values(), *([alert_id] if alert_id else [])})
    if attempt and ids:
        notify.deliver_due(sessions, targets, timeout, clock, only=ids)
    with sessions() as session:
        outcomes = _outcomes(session, report, [t.alias for t in chosen], skipped, ids)
    return Sent(
        report.business_date,
        report.source,
        report.status,
        report.alert_kind,
        force,
        outcomes,
        [a.describe() for a in report.attachments],
    )


def _chosen(session: Session, tag: str | None) -> tuple[list[notify.Target], set[str]]:
    """The targets a report tagged `tag` goes to (every target without a tag), and which of
    them get its files (email)."""
    targets = notify.targets_of(session.settings)
    if not targets:
        raise notify.NoTargets("no notification targets are configured")
    chosen = [t for t in targets if tag is None or t.wants([tag])]
    if not chosen:
        tags = sorted({t for target in targets for t in target.tags})
        raise notify.NoTargetWithTag(
            f"no notification target has the tag {tag!r}; the targets' tags are: "
            f"{', '.join(tags)} (without --tag the report goes to every target)"
        )
    return chosen, notify.file_targets(chosen)


def _queue(
    session: Session,
    report: Report,
    fresh: list[notify.Target],
    with_files: set[str],
    tag: str | None,
    force: bool,
) -> str:
    """The report as one outbox alert for the `fresh` targets, and its `report_sends` rows
    (inside the caller's transaction). Returns the alert's id."""
    files = tuple(File(a.name, a.media_type, a.content) for a in report.attachments)
    alert = notify.NewAlert(
        None,
        None,
        report.alert_kind,
        report.title,
        report.text,
        [tag] if tag else [],
        everyone=True,
        html=report.html,
        short=report.short,
        files=files,
    )
    [(alert_id, _)] = notify.enqueue(session.conn, [alert], fresh, session.now)
    described = json.dumps([a.describe() for a in report.attachments])
    for target in fresh:
        session.conn.execute(
            "INSERT INTO report_sends VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                alert_id,
                target.alias,
                report.business_date,
                report.scope,
                report.status,
                force,
                session.now,
                session.actor,
                described if target.alias in with_files else "[]",
            ],
        )
    return alert_id


def _outcomes(
    session: Session, report: Report, aliases: list[str], skipped: list[str], ids: list[str]
) -> list[TargetOutcome]:
    """Each chosen target's outcome, as the store has it now: for a target `skipped`, its
    earlier delivered send; for the others, the delivery this send queued or retried."""
    rows = fetch_dicts(
        session.conn,
        """
        SELECT target, alert_id, delivery, delivered_at, next_attempt_at, last_error, attachments
        FROM report_deliveries
        WHERE business_date = $day AND scope = $scope AND list_contains($targets, target)
        QUALIFY row_number() OVER (
            PARTITION BY target
            ORDER BY CASE WHEN list_contains($skipped, target) THEN delivery = 'delivered'
                          ELSE list_contains($ids, alert_id) END DESC,
                     created_at DESC, alert_id DESC) = 1
        """,
        {
            "day": report.business_date,
            "scope": report.scope,
            "targets": aliases,
            "ids": ids,
            "skipped": skipped,
        },
    )
    found = []
    for row in sorted(rows, key=lambda r: r["target"]):
        if row["target"] in skipped:
            outcome = "already_sent"
        else:
            outcome = "delivered" if row["delivery"] == "delivered" else "queued"
        attachments = row["attachments"]
        found.append(
            TargetOutcome(
                row["target"],
                row["alert_id"],
                outcome,
                row["last_error"] if outcome == "queued" else None,
                row["delivered_at"],
                row["next_attempt_at"] if outcome == "queued" else None,
                json.loads(attachments) if isinstance(attachments, str) else list(attachments),
            )
        )
    return found


def monitor_name(source: str | None) -> str:
    """The default name of the monitor of a scope's report: `failed-transactions-report`, with
    `-<source>` for one source (the source's name made safe for a monitor's name)."""
    if source is None:
        return DEFAULT_MONITOR
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", source).strip("-.") or "source"
    return f"{DEFAULT_MONITOR}-{safe}"


def schedule(
    session: Session,
    *,
    cron: str,
    tz: str,
    grace_seconds: int,
    tags: tuple[str, ...],
    source: str | None,
    name: str | None,
    early_seconds: int = 0,
    reason: str | None = None,
) -> configure.Added:
    """Create the monitor that hears the report of `source` (None: of every source) delivered:
    a business day with no report delivered by its slot plus `grace` is down, and alerts the
    targets of `tags`. The same path as `recon monitor add --hears report` (validated, audited,
    versioned)."""
    spec = monitors.Spec(
        cron, tz, None, grace_seconds, early_seconds, tags=tags, hears="report", source=source
    )
    chosen = name if name is not None else monitor_name(source)
    if not chosen.strip():
        raise monitors.InvalidMonitor("name", "a monitor's name cannot be empty")
    return configure.add(session, chosen, spec, reason=reason)
