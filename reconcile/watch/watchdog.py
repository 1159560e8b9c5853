"""Monitors: expected recurring signals, their status, and the slot ledger.

A monitor waits for one *slot* at a time: the first due time after its anchor (its last
success, plus `early`; or its creation). Its status is a pure function (`status`) of stored
signals, schedule, pause and now:

    paused   paused, until `paused_until` if set
    down     the last signal was a failure, or a started run passed `max_runtime`,
             or the awaited slot's grace has passed
    late     the awaited slot is due, within grace
    new      no success yet and the first slot not yet due
    up       otherwise

`awaited_due` is stored (it depends only on stored signals and the schedule) so that one SQL
statement evaluates every monitor at once; `STATUS_SQL` is the same rule in SQL, and a test
holds the two together. The slot ledger records each due slot's outcome (on_time, late, missed,
failed) with the arrival time: the evidence an auditor asks for.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from reconcile import audit, logs, redact, versions
from reconcile.errors import ReconError
from reconcile.store.db import Connection, fetch_dicts, transaction
from reconcile.watch import content
from reconcile.watch.schedule import Cron, zone

log = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 10 * 1024
MAX_QUOTED = 600  # characters of a failure's message quoted in its alert
SIGNAL_KINDS = ("success", "start", "fail", "log")
# What a monitor hears: pings (HTTP, `recon ping`, `recon run`), the arrival of a run of its
# source (files or HTTP), or a matching message in an IMAP mailbox.
HEARS = ("ping", "run", "email")


@dataclass(frozen=True)
class Link:
    """What a monitor is about and what it hears, beyond pings."""

    source: str | None = None
    signal: str = "ping"
    checks: content.Thresholds = field(default_factory=content.Thresholds)
    mailbox: str | None = None
    subject_pattern: str | None = None
    sender: str | None = None

    @classmethod
    def of(cls, value: dict[str, Any]) -> Link:
        """From a stored configuration (`config`)."""
        return cls(
            value["source"],
            value["hears"] or "ping",
            content.Thresholds.of(value),
            value["mailbox"],
            value["subject_pattern"],
            value["sender"],
        )


class MonitorError(ReconError):
    """A monitor that does not exist, or one that cannot be created as asked."""


@dataclass(frozen=True)
class Monitor:
    """A monitor's configuration and the stored state its status is computed from."""

    name: str
    cron: str | None
    tz: str
    every_seconds: int | None
    grace_seconds: int
    early_seconds: int
    max_runtime_seconds: int | None
    created_at: datetime
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_start_at: datetime | None = None
    paused_at: datetime | None = None
    paused_until: datetime | None = None
    resumed_at: datetime | None = None

    def due_after(self, moment: datetime) -> datetime:
        """The first due time strictly after `moment`."""
        if self.cron:
            due = Cron(self.cron, self.tz).next_after(moment)
            assert due is not None  # schedules that never fire are refused at creation
            return due
        assert self.every_seconds
        return moment + timedelta(seconds=self.every_seconds)

    def awaited_due(self) -> datetime:
        """The slot being waited for: the first due after the last success (plus `early`, since
        an arrival that early satisfies the coming slot), after creation, or after the end of a
        pause (slots that fell in a pause are not owed)."""
        starts = [self.created_at, self.resumed_at]
        if self.paused_at and self.paused_until:
            starts.append(self.paused_until)
        if self.last_success_at:
            starts.append(self.last_success_at + timedelta(seconds=self.early_seconds))
        return self.due_after(max(t for t in starts if t is not None))

    def slots_between(self, start: datetime, end: datetime) -> list[datetime]:
        """Due times in [start, end]."""
        before = start - timedelta(microseconds=1)
        if self.cron:
            return Cron(self.cron, self.tz).due_between(before, end)
        step = timedelta(seconds=self.every_seconds or 1)
        due, found = start, []  # `start` is itself a due time (the ledger's next slot)
        while due <= end:
            found.append(due)
            due += step
        return found


def status(monitor: Monitor, now: datetime) -> str:
    """The monitor's status at `now` (see the module docstring); pure."""
    if monitor.paused_at and (monitor.paused_until is None or now < monitor.paused_until):
        return "paused"
    last_done = max(
        (t for t in (monitor.last_success_at, monitor.last_failure_at) if t), default=None
    )
    if monitor.last_failure_at and (
        monitor.last_success_at is None or monitor.last_failure_at > monitor.last_success_at
    ):
        return "down"
    if (
        monitor.max_runtime_seconds
        and monitor.last_start_at
        and (last_done is None or monitor.last_start_at > last_done)
        and now > monitor.last_start_at + timedelta(seconds=monitor.max_runtime_seconds)
    ):
        return "down"
    awaited = monitor.awaited_due()
    if now <= awaited:
        return "new" if monitor.last_success_at is None else "up"
    if now <= awaited + timedelta(seconds=monitor.grace_seconds):
        return "late"
    return "down"


# The same rule over the `monitors` table, for one statement over every monitor at $now.
STATUS_SQL = """
CASE
    WHEN paused_at IS NOT NULL AND (paused_until IS NULL OR $now < paused_until) THEN 'paused'
    WHEN last_failure_at IS NOT NULL
         AND (last_success_at IS NULL OR last_failure_at > last_success_at) THEN 'down'
    WHEN max_runtime_seconds IS NOT NULL AND last_start_at IS NOT NULL
         AND last_start_at > coalesce(greatest(last_success_at, last_failure_at),
                                      last_success_at, last_failure_at, '-infinity'::TIMESTAMPTZ)
         AND $now > last_start_at + to_seconds(max_runtime_seconds) THEN 'down'
    WHEN $now <= awaited_due THEN CASE WHEN last_success_at IS NULL THEN 'new' ELSE 'up' END
    WHEN $now <= awaited_due + to_seconds(grace_seconds) THEN 'late'
    ELSE 'down'
END
"""

_COLUMNS = (
    "name, cron, tz, every_seconds, grace_seconds, early_seconds, max_runtime_seconds, "
    "created_at, last_success_at, last_failure_at, last_start_at, paused_at, paused_until, "
    "resumed_at"
)


def _load(conn: Connection, name: str) -> tuple[int, Monitor]:
    row = conn.execute(
        f"SELECT monitor_id, {_COLUMNS} FROM monitors WHERE name = ?", [name]
    ).fetchone()
    if row is None:
        raise MonitorError(f"no monitor named {name!r}; see them with `recon monitor list`")
    return int(row[0]), Monitor(*row[1:])


def create(
    conn: Connection,
    name: str,
    *,
    cron: str | None,
    tz: str,
    every_seconds: int | None,
    grace_seconds: int,
    early_seconds: int,
    max_runtime_seconds: int | None,
    realert_seconds: int | None,
    tags: list[str],
    now: datetime,
    user: str,
    link: Link | None = None,
    reason: str | None = None,
) -> Monitor:
    """Create a monitor; its first slot is the first due time after now. Its name, tags and
    the reason are identifiers shown in every alert: a card number in them is masked here,
    whoever creates the monitor."""
    name = redact.mask_pans(name) or name
    tags = [redact.mask_pans(tag) or tag for tag in tags]
    reason = redact.mask_pans(reason)
    if cron:
        Cron.parse(cron, tz)  # refuses what would be misread
    link = link or Link()
    if link.signal not in HEARS:
        raise MonitorError(f"a monitor hears one of {', '.join(HEARS)}, not {link.signal!r}")
    if link.signal == "run" and not link.source:
        raise MonitorError("a monitor that hears runs needs --source NAME")
    if link.signal == "email" and not link.mailbox:
        raise MonitorError("a monitor that hears email needs --mailbox ALIAS")
    monitor = Monitor(
        name, cron, tz, every_seconds, grace_seconds, early_seconds, max_runtime_seconds, now
    )
    awaited = monitor.awaited_due()
    with transaction(conn):
        exists = conn.execute("SELECT count(*) FROM monitors WHERE name = ?", [name]).fetchone()
        if exists and exists[0]:
            raise MonitorError(
                f"a monitor named {name!r} exists; remove it first or pick another name"
            )
        conn.execute(
            "INSERT INTO monitors (monitor_id, name, ping_uuid, cron, tz, every_seconds, "
            "grace_seconds, early_seconds, max_runtime_seconds, realert_seconds, tags, "
            "created_at, created_by, awaited_due, ledger_due, status, status_since, source, "
            "signal, min_transactions, max_count_diff_percent, max_failure_rate_percent, "
            "failure_rate_jump, mailbox, subject_pattern, sender) "
            "VALUES (nextval('monitor_id_seq'), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "'new', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                name,
                str(uuid.uuid4()),
                cron,
                tz,
                every_seconds,
                grace_seconds,
                early_seconds,
                max_runtime_seconds,
                realert_seconds,
                tags,
                now,
                user,
                awaited,
                awaited,
                now,
                link.source,
                link.signal,
                link.checks.min_transactions,
                link.checks.max_count_diff_percent,
                link.checks.max_failure_rate_percent,
                link.checks.failure_rate_jump,
                link.mailbox,
                link.subject_pattern,
                link.sender,
            ],
        )
        after = config(conn, name)
        audit.record(conn, "monitor.add", name, now=now, details={"after": after})
        versions.record(conn, f"monitor:{name}", after, now=now, reason=reason)
    return monitor


def runs_arrived(
    conn: Connection,
    source: str,
    run_ids: list[str],
    *,
    now: datetime,
    origin: str,
    what: str,
) -> list[dict[str, Any]]:
    """Each monitor that hears runs of `source` gets a signal, inside the caller's transaction
    (the ingest's): success, or a failure naming what its content checks found wrong. An
    arrival with no run in it (a file with a header and no rows) is judged as an empty run."""
    monitors = fetch_dicts(
        conn,
        "SELECT name, min_transactions, max_count_diff_percent, max_failure_rate_percent, "
        "failure_rate_jump FROM monitors WHERE source = ? AND signal = 'run' ORDER BY name",
        [source],
    )
    if not monitors:
        return []
    runs = content.run_facts(conn, source, run_ids) if run_ids else []
    if not runs:  # nothing loaded and no run named: the emptiest run there is
        empty = {"run_id": "(none)", "rows_loaded": 0, "rows_failed": 0, "rate": None}
        runs = [{**empty, "median_rate": None, "history": 0, "expected_count": None}]
    signals = []
    for monitor in monitors:
        found = [p for run in runs for p in content.problems(content.Thresholds.of(monitor), run)]
        lines = found or [content.summary(run) for run in runs]
        signals.append(
            apply_signal(
                conn,
                monitor["name"],
                "fail" if found else "success",
                now=now,
                message="\n".join([f"{what}:", *lines]),
                origin=origin,
            )
        )
    return signals


def record_signal(conn: Connection, name: str, kind: str, **details: Any) -> dict[str, Any]:
    """Store a signal (masked, at most 10 kB) and fold it into the monitor and its slot ledger,
    in its own transaction; `details` are `apply_signal`'s keyword arguments."""
    with transaction(conn):
        return apply_signal(conn, name, kind, **details)


def apply_signal(
    conn: Connection,
    name: str,
    kind: str,
    *,
    now: datetime,
    exit_code: int | None = None,
    message: str | None = None,
    origin: str = "cli",
    duration_seconds: float | None = None,
    request_id: str | None = None,
    run_key: str | None = None,
) -> dict[str, Any]:
    """`record_signal` inside the caller's transaction: one signal through `_apply`, for a
    monitor that must exist. Returns the signal and, for a success or failure, its ledger
    entries."""
    item = {"name": name, "kind": kind, "now": now, "exit_code": exit_code, "message": message,
            "origin": origin, "duration_seconds": duration_seconds, "request_id": request_id,
            "run_key": run_key}  # fmt: skip
    [result] = _apply(conn, [item], strict=True)
    assert result is not None
    return result


def apply_signals(conn: Connection, signals: list[dict[str, Any]]) -> int:
    """Many signals at once, inside the caller's transaction (how the spool keeps up with busy
    pingers). Each item has the keyword arguments of `apply_signal` plus `name` and `kind`;
    signals of monitors that no longer exist are skipped. Returns how many were recorded."""
    return sum(result is not None for result in _apply(conn, signals, strict=False))


def _apply(
    conn: Connection, signals: list[dict[str, Any]], *, strict: bool
) -> list[dict[str, Any] | None]:
    """Store signals (masked, at most 10 kB) and fold them, in order, into their monitors and
    the slot ledger. Each monitor is read once and its state advanced in memory signal by
    signal, then written with one UPDATE; signals and ledger rows go in one statement each (a
    test holds a batch equal to the same signals applied one call at a time). An arrival closes
    the slots due by then (plus `early`): the latest is on time, late or failed, earlier
    unrecorded ones were missed. Returns per signal what was recorded (None: no such monitor,
    unless `strict`, which raises)."""
    by_name: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for index, item in enumerate(signals):
        if item["kind"] not in SIGNAL_KINDS:
            raise ValueError(f"kind must be one of {SIGNAL_KINDS}")
        by_name.setdefault(item["name"], []).append((index, item))
    results: list[dict[str, Any] | None] = [None] * len(signals)
    rows: list[list[Any]] = []
    ledger: list[tuple[int, datetime, str, datetime | None, datetime]] = []
    updates: list[dict[str, Any]] = []
    for name, items in by_name.items():
        try:
            monitor_id, monitor = _load(conn, name)
        except MonitorError:
            if strict:
                raise
            continue  # removed after the pings arrived
        [(ledger_due, last_signal)] = conn.execute(
            "SELECT ledger_due, last_signal_at FROM monitors WHERE monitor_id = ?", [monitor_id]
        ).fetchall()
        awaited = None
        for index, item in items:
            now, kind, message = item["now"], item["kind"], item.get("message")
            text = None
            if message:
                text = redact.mask_secrets(
                    message.encode()[:MAX_MESSAGE_BYTES].decode(errors="ignore")
                )
            logs.event(log, logging.DEBUG, f"{kind} signal", monitor=name, at=now, note=text)
            rows.append([monitor_id, now, kind, item.get("exit_code"), text,
                         item.get("origin", "cli"), item.get("duration_seconds"),
                         item.get("request_id"), item.get("run_key")])  # fmt: skip
            results[index] = {"monitor": name, "kind": kind, "at": now}
            if kind == "log":  # kept with the monitor, changes nothing
                continue
            last_signal = now
            if kind == "start":
                monitor = replace(monitor, last_start_at=now)
                continue
            horizon = now + timedelta(seconds=monitor.early_seconds)
            due = monitor.slots_between(ledger_due, horizon) if ledger_due <= horizon else []
            entries = []
            for position, slot in enumerate(due):
                if position < len(due) - 1:
                    outcome, arrived = "missed", None
                else:
                    outcome = "failed" if kind == "fail" else "on_time" if now <= slot else "late"
                    arrived = now
                ledger.append((monitor_id, slot, outcome, arrived, now))
                entries.append({"due_at": slot, "outcome": outcome, "arrived_at": arrived})
            results[index] = {"monitor": name, "kind": kind, "at": now, "slots": entries}
            if due:
                ledger_due = monitor.due_after(due[-1])
            if kind == "fail":
                monitor = replace(monitor, last_failure_at=now)
            else:
                monitor = replace(monitor, last_success_at=now)
                awaited = monitor.awaited_due()
                ledger_due = max(ledger_due, awaited)
        updates.append(
            {
                "id": monitor_id,
                "start": monitor.last_start_at,
                "success": monitor.last_success_at,
                "failure": monitor.last_failure_at,
                "signal": last_signal,
                "awaited": awaited,
                "ledger": ledger_due,
            }
        )
    if rows:
        columns = list(zip(*rows, strict=True))
        conn.execute(
            "INSERT INTO signals SELECT unnest($c0), unnest($c1)::TIMESTAMPTZ, unnest($c2), "
            "unnest($c3)::INTEGER, unnest($c4)::VARCHAR, unnest($c5), unnest($c6)::DOUBLE, "
            "unnest($c7)::VARCHAR, unnest($c8)::VARCHAR",
            {f"c{i}": list(column) for i, column in enumerate(columns)},
        )
    if ledger:
        columns = list(zip(*ledger, strict=True))
        conn.execute(
            "INSERT OR IGNORE INTO slots SELECT unnest($c0), unnest($c1)::TIMESTAMPTZ, unnest($c2), "
            "unnest($c3)::TIMESTAMPTZ, unnest($c4)::TIMESTAMPTZ",
            {f"c{i}": list(column) for i, column in enumerate(columns)},
        )
    for update in updates:
        conn.execute(
            "UPDATE monitors SET last_start_at = $start, last_success_at = $success, "
            "last_failure_at = $failure, last_signal_at = $signal, "
            "awaited_due = coalesce($awaited, awaited_due), ledger_due = $ledger "
            "WHERE monitor_id = $id",
            update,
        )
    return results


def _write_ledger(
    conn: Connection, rows: list[tuple[int, datetime, str, datetime | None]], now: datetime
) -> None:
    """Slot ledger rows (monitor, due, outcome, arrival) in one statement."""
    if not rows:
        return
    ids, dues, outcomes, arrivals = (list(column) for column in zip(*rows, strict=True))
    conn.execute(
        "INSERT OR IGNORE INTO slots SELECT unnest($ids), unnest($dues), unnest($outcomes), "
        "unnest($arrivals)::TIMESTAMPTZ, $now",
        {"ids": ids, "dues": dues, "outcomes": outcomes, "arrivals": arrivals, "now": now},
    )


def record_missed_slots(conn: Connection, now: datetime) -> int:
    """Ledger the slots whose grace has passed with no arrival (called by each watch tick).
    Only monitors with such a slot are touched, so this stays cheap with many monitors."""
    rows = conn.execute(
        f"SELECT monitor_id, ledger_due, {_COLUMNS} FROM monitors "
        "WHERE (paused_at IS NULL OR paused_until <= $now) "
        "AND ledger_due + to_seconds(grace_seconds) < $now",
        {"now": now},
    ).fetchall()
    ledger: list[tuple[int, datetime, str, datetime | None]] = []
    moved: dict[int, datetime] = {}
    for monitor_id, ledger_due, *config in rows:
        monitor = Monitor(*config)
        try:
            due = monitor.slots_between(ledger_due, now - timedelta(seconds=monitor.grace_seconds))
            if due:
                moved[monitor_id] = monitor.due_after(due[-1])
        except Exception:  # a broken schedule must not stall the others: push it forward
            due, moved[monitor_id] = [], now
        ledger += [(monitor_id, d, "missed", None) for d in due]
    _write_ledger(conn, ledger, now)
    if moved:
        conn.execute(
            "UPDATE monitors SET ledger_due = u.due FROM "
            "(SELECT unnest($ids) AS id, unnest($dues) AS due) u WHERE monitor_id = u.id",
            {"ids": list(moved), "dues": list(moved.values())},
        )
    return len(ledger)


def pause(
    conn: Connection, name: str, *, now: datetime, until: datetime | None, reason: str | None
) -> None:
    with transaction(conn):
        monitor_id, monitor = _load(conn, name)
        awaited = replace(monitor, paused_at=now, paused_until=until).awaited_due()
        conn.execute(
            "UPDATE monitors SET paused_at = ?, paused_until = ?, pause_reason = ?, "
            "awaited_due = ?, ledger_due = greatest(ledger_due, ?) WHERE monitor_id = ?",
            [now, until, reason, awaited, awaited if until else now, monitor_id],
        )
        audit.record(
            conn, "monitor.pause", name, now=now, details={"until": until, "reason": reason}
        )


def resume(conn: Connection, name: str, *, now: datetime) -> None:
    """Resume watching: slots that fell in the pause are not owed; the next one after now is."""
    with transaction(conn):
        monitor_id, monitor = _load(conn, name)
        awaited = replace(monitor, paused_at=None, paused_until=None, resumed_at=now).awaited_due()
        conn.execute(
            "UPDATE monitors SET paused_at = NULL, paused_until = NULL, pause_reason = NULL, "
            "resumed_at = ?, awaited_due = ?, ledger_due = ? WHERE monitor_id = ?",
            [now, awaited, awaited, monitor_id],
        )
        audit.record(conn, "monitor.resume", name, now=now)


def remove(conn: Connection, name: str, *, now: datetime, reason: str | None = None) -> None:
    """Remove a monitor; its signals, slots and alerts stay as history."""
    with transaction(conn):
        monitor_id, _ = _load(conn, name)
        before = config(conn, name)
        conn.execute("DELETE FROM monitors WHERE monitor_id = ?", [monitor_id])
        audit.record(conn, "monitor.remove", name, now=now, details={"before": before})
        versions.record(conn, f"monitor:{name}", None, now=now, reason=reason)


def reconfigure(
    conn: Connection, name: str, value: dict[str, Any], *, now: datetime, reason: str | None
) -> None:
    """Set a monitor's configuration to `value` (a `config` dict, e.g. an old version), in one
    transaction with its new version; its state (signals, ledger, status) is kept."""
    columns = [c.split(" AS ")[-1].strip() for c in CONFIG_COLUMNS.split(",")]
    stored = ["signal" if c == "hears" else c for c in columns]
    if set(value) != set(columns):
        raise MonitorError(f"a monitor's configuration has the fields {', '.join(columns)}")
    if value["cron"]:
        Cron.parse(value["cron"], value["tz"])
    with transaction(conn):
        monitor_id, _ = _load(conn, name)
        before = config(conn, name)
        conn.execute(
            f"UPDATE monitors SET {', '.join(f'{c} = ?' for c in stored)} WHERE monitor_id = ?",
            [value[c] for c in columns] + [monitor_id],
        )
        _, monitor = _load(conn, name)
        conn.execute(
            "UPDATE monitors SET awaited_due = ? WHERE monitor_id = ?",
            [monitor.awaited_due(), monitor_id],
        )
        audit.record(
            conn, "monitor.change", name, now=now, details={"before": before, "after": value}
        )
        versions.record(conn, f"monitor:{name}", value, now=now, via="revert", reason=reason)


CONFIG_COLUMNS = (
    "cron, tz, every_seconds, grace_seconds, early_seconds, max_runtime_seconds, "
    "realert_seconds, tags, source, signal AS hears, min_transactions, max_count_diff_percent, "
    "max_failure_rate_percent, failure_rate_jump, mailbox, subject_pattern, sender"
)


def config(conn: Connection, name: str) -> dict[str, Any]:
    """A monitor's configuration (what a person set, not its state): audited and versioned."""
    rows = fetch_dicts(conn, f"SELECT {CONFIG_COLUMNS} FROM monitors WHERE name = ?", [name])
    return rows[0] if rows else {}


def describe(conn: Connection, name: str, now: datetime, slots: int = 20) -> dict[str, Any]:
    """Everything `recon monitor show` prints: config, status now, next due, recent slots."""
    monitor_id, monitor = _load(conn, name)
    [row] = fetch_dicts(
        conn,
        "SELECT name, ping_uuid, cron, tz, every_seconds, grace_seconds, early_seconds, "
        "max_runtime_seconds, realert_seconds, tags, created_at, paused_at, paused_until, "
        "pause_reason, last_signal_at, last_success_at, last_failure_at, last_start_at, "
        "status AS recorded_status, status_since, down_since, signal AS hears, source, "
        "min_transactions, max_count_diff_percent, max_failure_rate_percent, "
        "failure_rate_jump, mailbox, subject_pattern, sender FROM monitors WHERE monitor_id = ?",
        [monitor_id],
    )
    row["schedule"] = monitor.cron or f"every {monitor.every_seconds}s"
    row["status"] = status(monitor, now)
    row["next_due"] = monitor.awaited_due()
    row["slots"] = fetch_dicts(
        conn,
        "SELECT due_at, outcome, arrived_at FROM slots WHERE monitor_id = ? "
        "ORDER BY due_at DESC LIMIT ?",
        [monitor_id, slots],
    )
    return row


def list_monitors(conn: Connection, now: datetime) -> list[dict[str, Any]]:
    return fetch_dicts(
        conn,
        f"SELECT name, coalesce(cron, 'every ' || every_seconds || 's') AS schedule, tz, "
        f"grace_seconds, tags, {STATUS_SQL} AS status, awaited_due AS next_due, last_signal_at "
        "FROM monitors ORDER BY name",
        {"now": now},
    )


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
    failed = row["last_failure_at"] and (
        row["last_success_at"] is None or row["last_failure_at"] > row["last_success_at"]
    )
    cause = (
        f"it reported a failure at {_when(row['last_failure_at'], tz)}"
        if failed
        else f"the slot due {_when(row['awaited_due'], tz)} passed its grace of "
        f"{_span(row['grace_seconds'])} with no signal"
    )
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


def tick(
    conn: Connection, now: datetime, targets: list[Any], zones: dict[str, str] | None = None
) -> dict[str, Any]:
    """One pass: ledger missed slots, record status changes (compare-and-set), queue alerts.
    Everything is written in one transaction, before anyone is notified. `zones` gives each
    source's time zone, for the business dates of a gap summary (default: the monitor's)."""
    from reconcile.watch import gap, notify

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
    return {"transitions": transitions, "alerts": alerts, "errors": errors}


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
