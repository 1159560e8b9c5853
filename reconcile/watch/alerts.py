"""Alerts: a monitor's status changes recorded as transitions, and the alerts they raise, in
words people can act on.

`evaluate` is one pass over every monitor: ledger the slots missed, record each status change
with a compare-and-set (so two watchers never record, nor alert, one change twice), and queue
the alerts in the outbox (`notify.enqueue`), all in one transaction, before anyone is notified.
A down or recovered alert about a source says what piled up while it was silent (`gap`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from reconcile.store.db import Connection, fetch_dicts, transaction
from reconcile.watch import gap, notify
from reconcile.watch.monitors import STATE_FIELDS, STATUS_SQL, Monitor, down_rule
from reconcile.watch.schedule import zone
from reconcile.watch.signals import record_missed_slots

MAX_QUOTED = 600  # characters of a failure's message quoted in its alert


@dataclass
class Evaluation:
    """What one pass recorded: status changes, alerts queued (with the targets chosen), and
    what went wrong without stopping the pass."""

    transitions: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _when(moment: datetime | None, tz: str) -> str:
    if moment is None:
        return "never"
    local = moment.astimezone(zone(tz))
    return f"{local:%a %d %b %Y %H:%M} {tz} ({moment:%Y-%m-%d %H:%M} UTC)"


def _span(seconds: float) -> str:
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [
        f"{days}d" if days else "",
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes or not (days or hours) else "",
    ]
    return " ".join(p for p in parts if p)


def _message(row: dict[str, Any], kind: str, now: datetime) -> tuple[str, str]:
    """Title and body of an alert people can act on."""
    name, tz = row["name"], row["tz"]
    schedule = row["cron"] or f"every {_span(row['every_seconds'])}"
    tags = ", ".join(row["tags"]) or "none"
    missed = row["missed"]
    if kind == "recovered":
        since = row["down_since"]
        lasted = f" for {_span((now - since).total_seconds())}" if since else ""
        return (
            f"[recon] RECOVERED: {name}",
            f"{name} is up again: a signal arrived at {_when(row['last_signal_at'], tz)}.\n"
            f"It was down since {_when(since, tz)}{lasted}; slots missed: {missed}.\n"
            f"Schedule: {schedule} ({tz}). Tags: {tags}.",
        )
    rule = row.get("rule") or "grace"
    failed = rule == "failure"
    cause = row.get("cause") or _grace_cause(row, None)
    if failed and row.get("failure_message"):
        said = row["failure_message"]
        said = said[:MAX_QUOTED] + " [...]" if len(said) > MAX_QUOTED else said
        cause += ":\n" + "\n".join(f"  {line}" for line in said.splitlines())
    still = "still DOWN" if kind == "still_down" else "DOWN"
    return (
        f"[recon] {still}: {name}",
        f"{name} is {still}: {cause}.\n"
        f"Last signal: {_when(row['last_signal_at'], tz)}. Slots missed so far: {missed}.\n"
        f"Schedule: {schedule} ({tz}). Tags: {tags}.\n"
        f"See: recon monitor show {name}",
    )


def _grace_cause(row: dict[str, Any], early_success: datetime | None) -> str:
    """Why the awaited slot is down by its grace: no signal, a success too early to count for
    it, or a run that started and never said how it ended."""
    tz, due = row["tz"], row["awaited_due"]
    cause = (
        f"the slot due {_when(due, tz)} passed its grace of {_span(row['grace_seconds'])} "
        "with no signal"
    )
    if early_success is not None:
        early = row["early_seconds"] or 0
        window = (
            f"earlier than the {_span(early)} early window allows"
            if early
            else "and the monitor allows no early arrival (--early 0)"
        )
        return (
            f"the slot due {_when(due, tz)} passed its grace of {_span(row['grace_seconds'])} "
            f"with no signal that counts for it: a success arrived at "
            f"{_when(early_success, tz)}, {_span((due - early_success).total_seconds())} "
            f"before the slot due {_when(due, tz)}, {window}: it does not count for this slot"
        )
    start = row["last_start_at"]
    done = max((t for t in (row["last_success_at"], row["last_failure_at"]) if t), default=None)
    if start is not None and (done is None or start > done):
        cause += f" of its end: a run started at {_when(start, tz)} and has not reported since"
    return cause


def down_cause(conn: Connection, row: dict[str, Any], now: datetime) -> tuple[str, str]:
    """(rule, cause): the rule that makes the monitor of `row` (a `monitors` row) down at
    `now`, and the sentence an alert states it in, with its figures."""
    monitor = Monitor(**{f: row[f] for f in STATE_FIELDS})
    rule = down_rule(monitor, now) or "grace"
    tz = row["tz"]
    if rule == "failure":
        return rule, f"it reported a failure at {_when(row['last_failure_at'], tz)}"
    if rule == "max_runtime":
        start = row["last_start_at"]
        ran = _span((now - start).total_seconds())
        limit = _span(row["max_runtime_seconds"])
        cause = (
            f"the run started at {_when(start, tz)} has run {ran}, over its max runtime of {limit}"
        )
        if now > row["awaited_due"] + timedelta(seconds=row["grace_seconds"]):
            cause += f"; and {_grace_cause(row, None)}"
        return rule, cause
    success = row["last_success_at"]
    early = None
    if success is not None and success < row["awaited_due"]:
        counted = conn.execute(
            "SELECT count(*) FROM slots WHERE monitor_id = ? AND arrived_at = ?",
            [row["monitor_id"], success],
        ).fetchone()
        if counted is not None and counted[0] == 0:
            early = success  # it closed no slot: it came before the window of the next one
    return rule, _grace_cause(row, early)


def gap_windows(conn: Connection, now: datetime) -> list[tuple[str, datetime]]:
    """(source, since) of monitors about a source whose alert this tick may summarise the gap
    for (a status about to change, or a re-alert due): the caller reconciles those windows
    first, so the counts in the alert are the ones `recon failures` lists."""
    rows = conn.execute(
        f"""
        SELECT source, min(coalesce(
            (SELECT max(received_at) FROM signals s WHERE s.monitor_id = m.monitor_id
               AND s.kind = 'success' AND s.received_at < m.last_success_at),
            last_success_at, created_at))
        FROM monitors m
        WHERE source IS NOT NULL
          AND (status IS DISTINCT FROM ({STATUS_SQL})
               OR (status = 'down' AND realert_seconds IS NOT NULL
                   AND coalesce(last_alert_at, status_since) + to_seconds(realert_seconds) <= $now))
        GROUP BY source ORDER BY source
        """,
        {"now": now},
    ).fetchall()
    return [(source, since) for source, since in rows]


def evaluate(
    conn: Connection,
    now: datetime,
    targets: list[notify.Target],
    zones: dict[str, str] | None = None,
) -> Evaluation:
    """One pass: ledger missed slots, record status changes (compare-and-set), queue alerts.
    Everything is written in one transaction, before anyone is notified. `zones` gives each
    source's time zone, for the business dates of a gap summary (default: the monitor's)."""
    errors: list[str] = []
    with transaction(conn):
        try:
            record_missed_slots(conn, now)
        except Exception as exc:  # a broken monitor must not stall the rest
            errors.append(f"slot ledger: {exc}")
        conn.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE w_changed AS
            SELECT * FROM (SELECT monitor_id, status AS old, {STATUS_SQL} AS new FROM monitors)
            WHERE old IS DISTINCT FROM new
            """,
            {"now": now},
        )
        conn.execute(
            """
            UPDATE monitors SET status = c.new, status_since = $now,
                   down_since = CASE WHEN c.new = 'down' THEN $now
                                     WHEN c.new IN ('up', 'new', 'late') THEN NULL
                                     ELSE monitors.down_since END
            FROM w_changed c
            WHERE monitors.monitor_id = c.monitor_id AND monitors.status = c.old
            """,
            {"now": now},
        )
        conn.execute(
            "INSERT INTO transitions SELECT nextval('transition_seq'), c.monitor_id, m.name, "
            "c.old, c.new, ? FROM w_changed c JOIN monitors m USING (monitor_id) ORDER BY m.name",
            [now],
        )
        rows = fetch_dicts(
            conn,
            """
            SELECT m.*, c.old, c.new, 'transition' AS why,
                   (SELECT arg_max(message, received_at) FROM signals s
                     WHERE s.monitor_id = m.monitor_id AND s.kind = 'fail') AS failure_message,
                   (SELECT count(*) FROM slots s WHERE s.monitor_id = m.monitor_id
                      AND s.outcome = 'missed'
                      AND s.due_at > coalesce(m.last_success_at, m.created_at)) AS missed,
                   (SELECT max(changed_at) FROM transitions t WHERE t.monitor_id = m.monitor_id
                      AND t.to_status = 'down' AND t.changed_at < $now) AS previous_down
            FROM w_changed c JOIN monitors m USING (monitor_id)
            UNION ALL
            SELECT m.*, 'down', 'down', 'realert',
                   (SELECT arg_max(message, received_at) FROM signals s
                     WHERE s.monitor_id = m.monitor_id AND s.kind = 'fail'),
                   (SELECT count(*) FROM slots s WHERE s.monitor_id = m.monitor_id
                      AND s.outcome = 'missed'
                      AND s.due_at > coalesce(m.last_success_at, m.created_at)), NULL
            FROM monitors m
            WHERE m.status = 'down' AND m.realert_seconds IS NOT NULL
              AND m.monitor_id NOT IN (SELECT monitor_id FROM w_changed)
              AND coalesce(m.last_alert_at, m.status_since) + to_seconds(m.realert_seconds) <= $now
            ORDER BY name
            """,
            {"now": now},
        )
        transitions, new_alerts = [], []
        for row in rows:
            if row["why"] == "transition":
                transitions.append(
                    {"monitor": row["name"], "from": row["old"], "to": row["new"], "at": now}
                )
            kind = _alert_kind(row)
            if kind is None:
                continue
            try:
                since = row["last_success_at"] or row["created_at"]
                if kind == "recovered":
                    row["down_since"] = row["previous_down"]
                    since = _success_before(conn, row)
                    row["missed"] = _missed_before_recovery(conn, row, since)
                if kind != "recovered":
                    row["rule"], row["cause"] = down_cause(conn, row, now)
                title, body = _message(row, kind, now)
                if row["source"]:
                    zone_name = (zones or {}).get(row["source"], row["tz"])
                    found = gap.find(conn, row["source"], since, now, zone_name, now)
                    body += "\n\n" + gap.describe(found)
            except Exception as exc:  # one monitor's details must not stall the others' alerts
                errors.append(f"{row['name']}: {type(exc).__name__} while writing its alert")
                title = f"[recon] {kind.replace('_', ' ').upper()}: {row['name']}"
                body = (
                    f"{row['name']} changed to {row['new']}; see: recon monitor show {row['name']}"
                )
            new_alerts.append(
                notify.NewAlert(row["monitor_id"], row["name"], kind, title, body, row["tags"])
            )
        queued = notify.enqueue(conn, new_alerts, targets, now)
        if new_alerts:
            conn.execute(
                "UPDATE monitors SET last_alert_at = $now WHERE list_contains($ids, monitor_id)",
                {"now": now, "ids": [a.monitor_id for a in new_alerts]},
            )
        alerts = [
            {"id": alert_id, "monitor": a.monitor, "kind": a.kind, "targets": chosen}
            for a, (alert_id, chosen) in zip(new_alerts, queued, strict=True)
        ]
        conn.execute("DROP TABLE IF EXISTS w_changed")
    return Evaluation(transitions, alerts, errors)


def _alert_kind(row: dict[str, Any]) -> str | None:
    if row["why"] == "realert":
        return "still_down"
    if row["new"] == "down" and row["old"] != "down":
        return "down"
    if row["old"] == "down" and row["new"] in ("up", "new", "late"):
        return "recovered"
    return None


def _success_before(conn: Connection, row: dict[str, Any]) -> datetime:
    """The last good signal before the one that ended this incident (or the creation)."""
    found = conn.execute(
        "SELECT max(received_at) FROM signals WHERE monitor_id = ? AND kind = 'success' "
        "AND received_at < ?",
        [row["monitor_id"], row["last_success_at"] or row["last_signal_at"]],
    ).fetchone()
    return found[0] if found and found[0] else row["created_at"]


def _missed_before_recovery(conn: Connection, row: dict[str, Any], since: datetime) -> int:
    """Slots missed between the success before this incident and the one that ended it."""
    found = conn.execute(
        "SELECT count(*) FROM slots WHERE monitor_id = ? AND outcome = 'missed' "
        "AND due_at < ? AND due_at > ?",
        [row["monitor_id"], row["last_success_at"] or row["last_signal_at"], since],
    ).fetchone()
    return int(found[0]) if found else 0
