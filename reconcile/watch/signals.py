"""Signals and the slot ledger: what a monitor hears, and each due slot's outcome.

A `Signal` is one thing a monitor heard (a ping over HTTP or from `recon ping`, the start and
end of `recon run`, a run of its source arriving, an email): the same dataclass from the spool
(or the command, or the mailbox) to the store. Recording it stores it (masked, at most 10 kB)
and folds it into its monitor's state and its slot ledger: each due slot's outcome (on_time,
late, missed, failed) with the arrival time, the evidence an auditor asks for.
"""

from __future__ import annotations

import logging
from dataclasses import KW_ONLY, dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from reconcile import logs, redact
from reconcile.store.db import Connection, fetch_dicts, transaction
from reconcile.watch import content
from reconcile.watch.monitors import STATE_SQL, Monitor, MonitorError, load

log = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 10 * 1024
SIGNAL_KINDS = ("success", "start", "fail", "log")


@dataclass(frozen=True)
class Signal:
    """One signal of the monitor named `monitor`, heard `at`."""

    monitor: str
    kind: str  # success | start | fail | log
    at: datetime
    _: KW_ONLY
    exit_code: int | None = None
    message: str | None = None
    origin: str = "cli"
    duration_seconds: float | None = None
    request_id: str | None = None  # what makes a spooled or mailed signal recorded once
    run_key: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in SIGNAL_KINDS:
            raise ValueError(f"kind must be one of {SIGNAL_KINDS}")


def record(conn: Connection, signal: Signal) -> dict[str, Any]:
    """Store a signal and fold it into the monitor and its slot ledger, in its own
    transaction, for a monitor that must exist."""
    with transaction(conn):
        return apply_signal(conn, signal)


def apply_signal(conn: Connection, signal: Signal) -> dict[str, Any]:
    """`record` inside the caller's transaction. Returns the signal and, for a success or
    failure, its ledger entries."""
    [result] = _apply(conn, [signal], strict=True)
    assert result is not None
    return result


def apply_signals(conn: Connection, signals: list[Signal]) -> int:
    """Many signals at once, inside the caller's transaction (how the spool keeps up with busy
    pingers); signals of monitors that no longer exist are skipped. Returns how many were
    recorded."""
    return sum(result is not None for result in _apply(conn, signals, strict=False))


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
    thresholds = ", ".join(f.name for f in fields(content.Thresholds))
    monitors = fetch_dicts(
        conn,
        f"SELECT name, {thresholds} FROM monitors WHERE source = ? AND signal = 'run' "
        "ORDER BY name",
        [source],
    )
    if not monitors:
        return []
    runs = content.run_facts(conn, source, run_ids) if run_ids else []
    if not runs:  # nothing loaded and no run named: the emptiest run there is
        empty = {"run_id": "(none)", "rows_loaded": 0, "rows_failed": 0, "rate": None}
        runs = [{**empty, "median_rate": None, "history": 0, "expected_count": None}]
    heard = []
    for monitor in monitors:
        found = [p for run in runs for p in content.problems(content.Thresholds.of(monitor), run)]
        lines = found or [content.summary(run) for run in runs]
        kind = "fail" if found else "success"
        message = "\n".join([f"{what}:", *lines])
        heard.append(
            apply_signal(conn, Signal(monitor["name"], kind, now, message=message, origin=origin))
        )
    return heard


def _apply(conn: Connection, signals: list[Signal], *, strict: bool) -> list[dict[str, Any] | None]:
    """Store signals (masked, at most 10 kB) and fold them, in order, into their monitors and
    the slot ledger. Each monitor is read once and its state advanced in memory signal by
    signal, then written with one UPDATE; signals and ledger rows go in one statement each (a
    test holds a batch equal to the same signals applied one call at a time). An arrival closes
    the slots due by then (plus `early`): the latest is on time, late or failed, earlier
    unrecorded ones were missed. Returns per signal what was recorded (None: no such monitor,
    unless `strict`, which raises)."""
    by_name: dict[str, list[tuple[int, Signal]]] = {}
    for index, item in enumerate(signals):
        by_name.setdefault(item.monitor, []).append((index, item))
    results: list[dict[str, Any] | None] = [None] * len(signals)
    rows: list[list[Any]] = []
    ledger: list[tuple[int, datetime, str, datetime | None, datetime]] = []
    updates: list[dict[str, Any]] = []
    for name, items in by_name.items():
        try:
            monitor_id, monitor = load(conn, name)
        except MonitorError:
            if strict:
                raise
            continue  # removed after the pings arrived
        [(ledger_due, last_signal)] = conn.execute(
            "SELECT ledger_due, last_signal_at FROM monitors WHERE monitor_id = ?", [monitor_id]
        ).fetchall()
        awaited = None
        for index, item in items:
            now, kind, message = item.at, item.kind, item.message
            text = None
            if message:
                text = redact.mask_secrets(
                    message.encode()[:MAX_MESSAGE_BYTES].decode(errors="ignore")
                )
            logs.event(log, logging.DEBUG, f"{kind} signal", monitor=name, at=now, note=text)
            rows.append([monitor_id, now, kind, item.exit_code, text, item.origin,
                         item.duration_seconds, item.request_id, item.run_key])  # fmt: skip
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
        f"SELECT monitor_id, ledger_due, {STATE_SQL} FROM monitors "
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
