"""Monitors: what a person configures (`Spec`), the state status is computed from (`Monitor`),
and the status itself.

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
holds the two together.

The monitor's columns are listed once, here: the configuration as the fields of `Spec`
(`SCHEDULE` and `LINK`), the state status needs as the fields of `Monitor`. Every statement
that reads or writes them is built from those lists.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from reconcile.errors import ReconError
from reconcile.store.db import Connection, fetch_dicts
from reconcile.watch.schedule import Cron

# What a monitor hears: pings (HTTP, `recon ping`, `recon run`), the arrival of a run of its
# source (files or HTTP), a matching message in an IMAP mailbox, or the delivery of recon's own
# report of its source (no source: the report of every source; `recon report schedule`).
HEARS = ("ping", "run", "email", "report")


class MonitorError(ReconError):
    """A monitor that does not exist, or one that cannot be created as asked."""


class InvalidMonitor(MonitorError):
    """A configuration that breaks one of the rules of `check` (or `configure.add`); `rule`
    names which, so that each face can word it with its own options."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class Spec:
    """A monitor's configuration: what a person set (audited and versioned), not its state.
    Field names are the keys of a stored version; `hears` is stored in the column `signal`."""

    # When: the schedule.
    cron: str | None
    tz: str
    every_seconds: int | None
    grace_seconds: int
    early_seconds: int = 0
    max_runtime_seconds: int | None = None
    realert_seconds: int | None = None
    tags: tuple[str, ...] = ()
    # What: the signal it hears, and the content checks of a run that arrives.
    hears: str = "ping"
    source: str | None = None
    min_transactions: int | None = None
    max_count_diff_percent: float | None = None
    max_failure_rate_percent: float | None = None
    failure_rate_jump: float | None = None
    mailbox: str | None = None
    subject_pattern: str | None = None
    sender: str | None = None

    @classmethod
    def of(cls, value: dict[str, Any]) -> Spec:
        """From a stored version (`config`); every field must be there."""
        names = [f.name for f in fields(cls)]
        if set(value) != set(names):
            raise MonitorError(f"a monitor's configuration has the fields {', '.join(names)}")
        return cls(
            **{**value, "tags": tuple(value["tags"] or ()), "hears": value["hears"] or "ping"}
        )

    def config(self) -> dict[str, Any]:
        """As stored in a version."""
        return {**asdict(self), "tags": list(self.tags)}


_COLUMN_OF = {"hears": "signal"}  # a field whose column has another name
CONFIG_FIELDS = tuple(f.name for f in fields(Spec))
SCHEDULE = CONFIG_FIELDS[: CONFIG_FIELDS.index("hears")]
LINK = CONFIG_FIELDS[len(SCHEDULE) :]


def _select(names: tuple[str, ...]) -> str:
    return ", ".join(f"{_COLUMN_OF[n]} AS {n}" if n in _COLUMN_OF else n for n in names)


def columns(names: tuple[str, ...]) -> list[str]:
    """The stored columns of these configuration fields."""
    return [_COLUMN_OF.get(n, n) for n in names]


CONFIG_SQL = _select(CONFIG_FIELDS)


def check(spec: Spec) -> None:
    """The rules every stored configuration keeps, whoever writes it (an add, a revert); the
    cron expression itself is parsed by `create` (`Cron.parse`)."""
    if bool(spec.cron) == (spec.every_seconds is not None):
        raise InvalidMonitor("schedule", "a monitor has either a cron schedule or a period")
    if spec.every_seconds is not None and spec.every_seconds <= 0:
        raise InvalidMonitor("every", "a monitor's period must be longer than zero")
    if spec.hears not in HEARS:
        raise InvalidMonitor("hears", f"a monitor hears one of {', '.join(HEARS)}")
    if (spec.subject_pattern or spec.sender or spec.mailbox) and spec.hears != "email":
        raise InvalidMonitor(
            "mail_options", "a mailbox, subject and sender are for monitors hearing email"
        )
    if spec.hears == "email" and not spec.mailbox:
        raise InvalidMonitor("email_mailbox", "a monitor hearing email needs a mailbox")
    if spec.hears == "run" and not spec.source:
        raise InvalidMonitor("run_source", "a monitor hearing runs needs a source")
    thresholds = (
        spec.min_transactions,
        spec.max_count_diff_percent,
        spec.max_failure_rate_percent,
        spec.failure_rate_jump,
    )
    if spec.hears != "run" and any(t is not None for t in thresholds):
        raise InvalidMonitor(
            "checks", "content checks judge arriving runs: use them on a monitor hearing runs"
        )


@dataclass(frozen=True)
class Monitor:
    """A monitor's schedule and the stored state its status is computed from."""

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


STATE_FIELDS = tuple(f.name for f in fields(Monitor))
STATE_SQL = ", ".join(STATE_FIELDS)


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


def down_rule(monitor: Monitor, now: datetime) -> str | None:
    """Which rule of `status` makes the monitor down at `now`: "failure" (the last signal was
    a failure), "max_runtime" (a started run passed its max runtime) or "grace" (the awaited
    slot's grace passed); None when it is not down. The same order as `status`."""
    if status(monitor, now) != "down":
        return None
    if monitor.last_failure_at and (
        monitor.last_success_at is None or monitor.last_failure_at > monitor.last_success_at
    ):
        return "failure"
    if (
        monitor.max_runtime_seconds
        and monitor.last_start_at
        and now > monitor.last_start_at + timedelta(seconds=monitor.max_runtime_seconds)
    ):
        done = max(
            (t for t in (monitor.last_success_at, monitor.last_failure_at) if t), default=None
        )
        if done is None or monitor.last_start_at > done:
            return "max_runtime"
    return "grace"


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

SCHEDULE_TEXT_SQL = "coalesce(cron, 'every ' || every_seconds || 's')"


def load(conn: Connection, name: str) -> tuple[int, Monitor]:
    """A monitor's id and state, for one that must exist."""
    row = conn.execute(
        f"SELECT monitor_id, {STATE_SQL} FROM monitors WHERE name = ?", [name]
    ).fetchone()
    if row is None:
        raise MonitorError(f"no monitor named {name!r}; see them with `recon monitor list`")
    return int(row[0]), Monitor(*row[1:])


def exists(conn: Connection, name: str) -> bool:
    found = conn.execute("SELECT count(*) FROM monitors WHERE name = ?", [name]).fetchone()
    return bool(found and found[0])


def config(conn: Connection, name: str) -> dict[str, Any]:
    """A monitor's configuration (what a person set, not its state): audited and versioned."""
    rows = fetch_dicts(conn, f"SELECT {CONFIG_SQL} FROM monitors WHERE name = ?", [name])
    return rows[0] if rows else {}


def describe(conn: Connection, name: str, now: datetime, slots: int = 20) -> dict[str, Any]:
    """Everything `recon monitor show` prints: config, status now, next due, recent slots."""
    monitor_id, monitor = load(conn, name)
    [row] = fetch_dicts(
        conn,
        f"SELECT name, ping_uuid, {_select(SCHEDULE)}, created_at, paused_at, paused_until, "
        "pause_reason, last_signal_at, last_success_at, last_failure_at, last_start_at, "
        f"status AS recorded_status, status_since, down_since, {_select(LINK)} "
        "FROM monitors WHERE monitor_id = ?",
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


def list_monitors(
    conn: Connection, now: datetime, source: str | None = None
) -> list[dict[str, Any]]:
    """Every monitor with its status at `now` and the slot it waits for; with `source`, only
    the monitors linked to that source (a monitor with no source is nobody's source's)."""
    return fetch_dicts(
        conn,
        f"SELECT name, {SCHEDULE_TEXT_SQL} AS schedule, tz, grace_seconds, tags, "
        f"{STATUS_SQL} AS status, awaited_due AS next_due, last_signal_at "
        "FROM monitors WHERE $source IS NULL OR source = $source ORDER BY name",
        {"now": now, "source": source},
    )


def count_down(conn: Connection) -> int:
    """How many monitors the last evaluation left down."""
    found = conn.execute("SELECT count(*) FROM monitors WHERE status = 'down'").fetchone()
    return int(found[0]) if found else 0
