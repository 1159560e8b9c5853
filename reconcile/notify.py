"""Alerts: a durable outbox in the store, delivered through apprise, at least once.

The only module that imports apprise (and only when sending). Flow per alert and target:

1. `enqueue` writes the alert and one `pending` delivery per target alias, in the same
   transaction that recorded the state change (record, then act);
2. `claim` marks due deliveries `claimed` with a lease, and commits;
3. `send` calls apprise with no database connection open; only an `AppriseResult` whose status
   is SUCCESS counts (FAILURE, PARTIAL, TIMEOUT and NOMATCH, where nothing was sent, do not);
4. `confirm` marks successes `delivered` and puts failures back to `pending` with exponential
   backoff (capped). A claim never confirmed (the process died mid-send) is claimed again once
   its lease has expired.

Every message carries its stable alert id, so a target can drop a repeat. Only a target's alias
is ever stored, printed or logged; its URL carries secrets and stays in settings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from reconcile import audit, logs, redact
from reconcile.db import Connection, fetch_dicts, transaction

log = logging.getLogger(__name__)

BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
LEASE = timedelta(minutes=2)


@dataclass(frozen=True)
class Target:
    """A notification target: an alias, its apprise URL (secret) and the tags it receives."""

    alias: str
    url: str
    tags: tuple[str, ...] = ()
    fallback: str | None = None  # alias that also gets the alert once this one keeps failing
    escalate_after: int = 3

    def wants(self, tags: list[str] | tuple[str, ...]) -> bool:
        """A target without tags receives every alert; else those sharing a tag."""
        return not self.tags or bool(set(self.tags) & set(tags))


@dataclass(frozen=True)
class Claim:
    alert_id: str
    target: str
    attempts: int
    title: str
    body: str


@dataclass(frozen=True)
class NewAlert:
    monitor_id: int | None
    monitor: str | None
    kind: str
    title: str
    body: str
    tags: tuple[str, ...] | list[str]


def enqueue(
    conn: Connection, alerts: list[NewAlert], targets: list[Target], now: datetime
) -> list[tuple[str, list[str]]]:
    """Write alerts and their deliveries, a few statements for any number of alerts (call inside
    the transaction that decided them). Returns (alert id, target aliases) per alert."""
    if not alerts:
        return []
    numbers = [
        int(row[0])
        for row in conn.execute(
            "SELECT nextval('alert_seq') FROM range(?) ORDER BY 1", [len(alerts)]
        ).fetchall()
    ]
    ids = [f"A-{number:06d}" for number in numbers]
    chosen = [
        [t.alias for t in targets if t.wants(list(a.tags))] or ["(no target)"] for a in alerts
    ]
    conn.execute(
        "INSERT INTO alerts SELECT unnest($ids), unnest($monitor_ids), unnest($monitors), "
        "unnest($kinds), $now, unnest($titles), unnest($bodies)",
        {
            "ids": ids,
            "monitor_ids": [a.monitor_id for a in alerts],
            "monitors": [a.monitor for a in alerts],
            "kinds": [a.kind for a in alerts],
            "now": now,
            "titles": [f"{a.title} [{i}]" for a, i in zip(alerts, ids, strict=True)],
            "bodies": [f"{a.body}\n\nalert id: {i}" for a, i in zip(alerts, ids, strict=True)],
        },
    )
    pairs = [(i, alias) for i, aliases in zip(ids, chosen, strict=True) for alias in aliases]
    conn.execute(
        "INSERT INTO deliveries SELECT alert_id, target, 'pending', 0, $now, NULL, NULL, "
        "CASE WHEN target = '(no target)' "
        "THEN 'no notification target matches this alert''s tags' END "
        "FROM (SELECT unnest($ids) AS alert_id, unnest($targets) AS target)",
        {"ids": [i for i, _ in pairs], "targets": [alias for _, alias in pairs], "now": now},
    )
    return [
        (i, [a for a in aliases if a != "(no target)"])
        for i, aliases in zip(ids, chosen, strict=True)
    ]


def claim(conn: Connection, now: datetime, lease: timedelta = LEASE) -> list[Claim]:
    """Take the deliveries that are due (or whose claim expired) for this process to send."""
    with transaction(conn):
        rows = conn.execute(
            """
            UPDATE deliveries SET status = 'claimed', claimed_until = $until,
                   attempts = attempts + 1
            WHERE target <> '(no target)' AND (
                  (status = 'pending' AND next_attempt_at <= $now)
                  OR (status = 'claimed' AND claimed_until < $now))
            RETURNING alert_id, target, attempts
            """,
            {"now": now, "until": now + lease},
        ).fetchall()
        if not rows:
            return []
        texts = {
            alert_id: (title, body)
            for alert_id, title, body in conn.execute(
                "SELECT alert_id, title, body FROM alerts WHERE list_contains(?, alert_id)",
                [sorted({r[0] for r in rows})],
            ).fetchall()
        }
    return [Claim(a, t, n, *texts[a]) for a, t, n in sorted(rows)]


def send(claims: list[Claim], targets: list[Target], timeout: float) -> list[tuple[Claim, str]]:
    """Deliver each claim through apprise; '' for success, else why not (never the URL)."""
    import apprise  # imported here: only sending needs it

    # apprise logs URLs with their tokens: the handlers' filter (logs.py) masks them.
    by_alias = {t.alias: t for t in targets}
    outcomes = []
    for item in claims:
        target = by_alias.get(item.target)
        if target is None:
            outcomes.append((item, f"target {item.target!r} is no longer in the settings"))
            continue
        sender = apprise.Apprise()
        if not sender.add(target.url):
            outcomes.append(
                (item, f"apprise does not understand the URL of target {target.alias!r}")
            )
            continue
        with logs.correlate(alert_id=item.alert_id):
            try:
                result = sender.notify(body=item.body, title=item.title, timeout=timeout)
                status = result.status.name
                error = "" if status == "SUCCESS" else f"apprise reported {status}"
            except Exception as exc:  # a plugin's bug is one failed attempt, not a stop
                error = f"apprise raised {type(exc).__name__}"
            logs.event(
                log,
                logging.WARNING if error else logging.INFO,
                f"alert {'not ' if error else ''}delivered to {item.target}",
                target=item.target,
                attempts=item.attempts,
                error=error or None,
            )
        outcomes.append((item, error))
    return outcomes


def targets_from_apprise_config(path: Path) -> list[Target]:
    """The URLs of an apprise configuration file as targets named "<file name>#<n>"."""
    import apprise

    from reconcile.errors import ConfigError

    config = apprise.AppriseConfig()
    if not path.is_file() or not config.add(str(path)):
        raise ConfigError(f"notify.config_file {path} cannot be read as an apprise config file")
    sender = apprise.Apprise()
    sender.add(config)
    return [
        Target(f"{path.name}#{number}", server.url(privacy=False), tuple(sorted(server.tags)))
        for number, server in enumerate(sender, start=1)
    ]


def confirm(
    conn: Connection,
    outcomes: list[tuple[Claim, str]],
    now: datetime,
    targets: list[Target] | None = None,
) -> None:
    """Delivered, or back to pending with exponential backoff (capped); a target that keeps
    failing escalates the alert to its fallback alias, once."""
    fallbacks = {t.alias: t for t in targets or [] if t.fallback}
    with transaction(conn):
        for item, error in outcomes:
            audit.record(
                conn,
                "alert.sent" if not error else "alert.failed",
                item.alert_id,
                now=now,
                outcome="success" if not error else "failure",
                details={"target": item.target, "attempts": item.attempts, "error": error or None},
            )
            if not error:
                conn.execute(
                    "UPDATE deliveries SET status = 'delivered', delivered_at = ?, "
                    "claimed_until = NULL, last_error = NULL WHERE alert_id = ? AND target = ?",
                    [now, item.alert_id, item.target],
                )
                continue
            delay = min(BACKOFF_FIRST * 2 ** max(item.attempts - 1, 0), BACKOFF_CAP)
            conn.execute(
                "UPDATE deliveries SET status = 'pending', claimed_until = NULL, "
                "next_attempt_at = ?, last_error = ? WHERE alert_id = ? AND target = ?",
                [now + delay, redact.mask_pans(error), item.alert_id, item.target],
            )
            failing = fallbacks.get(item.target)
            if failing and failing.fallback and item.attempts >= failing.escalate_after:
                conn.execute(
                    "INSERT OR IGNORE INTO deliveries VALUES (?, ?, 'pending', 0, ?, NULL, NULL, ?)",
                    [item.alert_id, failing.fallback, now, f"escalated: {item.target} failing"],
                )


def history(conn: Connection, limit: int = 50) -> list[dict[str, Any]]:
    """Alerts, newest first, with each target's delivery status and attempts."""
    return fetch_dicts(
        conn,
        """
        SELECT a.alert_id, a.created_at, a.monitor, a.kind, d.target, d.status, d.attempts,
               d.delivered_at, d.next_attempt_at, d.last_error
        FROM alerts a JOIN deliveries d USING (alert_id)
        WHERE a.alert_id IN (SELECT alert_id FROM alerts ORDER BY created_at DESC, alert_id DESC
                             LIMIT ?)
        ORDER BY a.created_at DESC, a.alert_id DESC, d.target
        """,
        [limit],
    )
