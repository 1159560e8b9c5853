"""Changing monitors: add one (validated), pause, resume, remove, or put one back as it was at
a stored version. Every change is audited, and a change of configuration is versioned, in the
same transaction as the change itself.

Use cases take a `Session`; `create`, `reconfigure` and `delete` are their steps on a bare
connection (with an explicit `now`) for callers that already hold one.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from reconcile import audit, redact, versions
from reconcile.session import Session
from reconcile.store.db import Connection, transaction
from reconcile.watch.monitors import (
    CONFIG_FIELDS,
    InvalidMonitor,
    Monitor,
    MonitorError,
    Spec,
    check,
    columns,
    config,
    exists,
    load,
)
from reconcile.watch.schedule import Cron, preview

PREVIEWED = 3  # next due times shown when a monitor is added


@dataclass(frozen=True)
class Caution:
    """Something about a new monitor that looks unintended; `rule` names which."""

    rule: str  # "frequency" | "early"
    text: str


@dataclass(frozen=True)
class Added:
    name: str
    spec: Spec
    next_due: list[dict[str, Any]]  # {"utc"} (and "local", "dst_change" for a cron schedule)
    warning: Caution | None


def add(session: Session, name: str, spec: Spec, *, reason: str | None = None) -> Added:
    """Validate and create a monitor; its first slot is the first due time after now.

    `spec.hears` left empty means: email with a mailbox, run with a source, else ping. A
    monitor hearing runs checks at least one transaction arrived unless told otherwise."""
    spec = validated(session, spec)
    monitor = create(session.conn, name, spec, now=session.now, user=session.actor, reason=reason)
    due = next_due(spec, session.now)
    return Added(monitor.name, spec, due, _warning(spec, due))


def validated(session: Session, spec: Spec) -> Spec:
    """`spec` checked against every rule of a monitor's configuration, with its defaults filled
    in: the one home of those rules, for `add` and `edit` alike."""
    hears = spec.hears or ("email" if spec.mailbox else "run" if spec.source else "ping")
    spec = replace(spec, hears=hears)
    check(spec)
    if spec.cron:
        Cron.parse(spec.cron, spec.tz)  # refuses what would be misread, and what never fires
    mailboxes = session.settings.mailboxes
    if hears == "email" and spec.mailbox not in mailboxes:
        known = ", ".join(sorted(mailboxes)) or "none configured"
        raise InvalidMonitor(
            "mailbox",
            f"no mailbox {spec.mailbox!r} in the settings ({known}); add "
            f"[mailboxes.{spec.mailbox}] to recon.toml",
        )
    if spec.subject_pattern:
        try:
            re.compile(spec.subject_pattern)
        except re.error as exc:
            raise InvalidMonitor("subject", f"not a regular expression: {exc}") from None
    spec = replace(
        spec,
        min_transactions=1
        if spec.min_transactions is None and hears == "run"
        else spec.min_transactions,
        sender=spec.sender.lower() if spec.sender else None,
    )
    return replace(spec, tags=tuple(redact.mask_pans(tag) or tag for tag in spec.tags))


@dataclass(frozen=True)
class Edited:
    name: str
    before: Spec
    after: Spec
    changed: list[str]  # the configuration fields that changed
    next_due: datetime


def edit(
    session: Session, name: str, changes: dict[str, Any], *, reason: str | None = None
) -> Edited:
    """Change some of a monitor's configuration (`changes`: `Spec` field -> value), keeping the
    monitor itself: its ping uuid, signals, slot ledger and status. Checked by the rules of
    `add` (`validated`), audited and versioned like it."""
    unknown = set(changes) - set(CONFIG_FIELDS)
    if unknown:
        raise MonitorError(f"not a monitor setting: {', '.join(sorted(unknown))}")
    conn = session.conn
    load(conn, name)  # refuses a monitor that does not exist
    before = Spec.of(config(conn, name))
    wanted = replace(before, **changes)
    if ("source" in changes or "mailbox" in changes) and "hears" not in changes:
        wanted = replace(wanted, hears="")  # by what it is now linked to
    after = validated(session, wanted)
    changed = [f for f in CONFIG_FIELDS if getattr(before, f) != getattr(after, f)]
    if changed:
        reconfigure(conn, name, after.config(), now=session.now, reason=reason, via="edit")
    _, monitor = load(conn, name)
    return Edited(name, before, after, changed, monitor.awaited_due())


def next_due(spec: Spec, now: datetime, count: int = PREVIEWED) -> list[dict[str, Any]]:
    """The first `count` due times after `now`."""
    if spec.cron:
        return preview(Cron.parse(spec.cron, spec.tz), now, count)
    assert spec.every_seconds
    return [{"utc": now + timedelta(seconds=spec.every_seconds * (i + 1))} for i in range(count)]


def _warning(spec: Spec, due: list[dict[str, Any]]) -> Caution | None:
    """`* 9 * * *` fires every minute of 09:00-09:59: say so when that looks unintended; and
    an early arrival of a run or email counts for the previous slot unless `early` is set."""
    grace = spec.grace_seconds
    if len(due) >= 2:
        gap = (due[1]["utc"] - due[0]["utc"]).total_seconds()
        if gap < grace / 4 or gap < 300 <= grace:
            return Caution(
                "frequency",
                f"this schedule fires every {int(gap)}s, much more often than its grace of "
                f"{grace}s suggests; '* 9 * * *' means every minute from 09:00 to 09:59 "
                "(write '0 9 * * *' for once at 09:00)",
            )
    if spec.hears in ("run", "email") and spec.early_seconds == 0:
        return Caution(
            "early",
            "with no early allowance, a run or an email that lands before its due time counts "
            "for the previous slot; if it may come early (a 03:00 deadline, a run at 02:10), "
            "allow it, e.g. 3h early",
        )
    return None


def create(
    conn: Connection,
    name: str,
    spec: Spec,
    *,
    now: datetime,
    user: str,
    reason: str | None = None,
) -> Monitor:
    """Store a monitor (its first slot is the first due time after now), audited and
    versioned. Its name, tags and the reason are identifiers shown in every alert: a card
    number in them is masked here, whoever creates the monitor."""
    name = redact.mask_pans(name) or name
    spec = replace(spec, tags=tuple(redact.mask_pans(tag) or tag for tag in spec.tags))
    reason = redact.mask_pans(reason)
    if spec.cron:
        Cron.parse(spec.cron, spec.tz)  # refuses what would be misread, and what never fires
    check(spec)
    monitor = Monitor(
        name,
        spec.cron,
        spec.tz,
        spec.every_seconds,
        spec.grace_seconds,
        spec.early_seconds,
        spec.max_runtime_seconds,
        now,
    )
    awaited = monitor.awaited_due()
    stored = columns(CONFIG_FIELDS)
    value = spec.config()
    with transaction(conn):
        if exists(conn, name):
            raise MonitorError(
                f"a monitor named {name!r} exists; remove it first or pick another name"
            )
        conn.execute(
            f"INSERT INTO monitors (monitor_id, name, ping_uuid, created_at, created_by, "
            f"awaited_due, ledger_due, status, status_since, {', '.join(stored)}) "
            f"VALUES (nextval('monitor_id_seq'), ?, ?, ?, ?, ?, ?, 'new', ?, "
            f"{', '.join('?' for _ in stored)})",
            [name, str(uuid.uuid4()), now, user, awaited, awaited, now]
            + [value[f] for f in CONFIG_FIELDS],
        )
        after = config(conn, name)
        audit.record(conn, "monitor.add", name, now=now, details={"after": after})
        versions.record(conn, f"monitor:{name}", after, now=now, reason=reason)
    return monitor


def pause(session: Session, name: str, *, until: datetime | None, reason: str | None) -> None:
    """Stop alerting for a monitor, until `until` if given; slots in the pause are not owed."""
    conn, now = session.conn, session.now
    with transaction(conn):
        monitor_id, monitor = load(conn, name)
        awaited = replace(monitor, paused_at=now, paused_until=until).awaited_due()
        conn.execute(
            "UPDATE monitors SET paused_at = ?, paused_until = ?, pause_reason = ?, "
            "awaited_due = ?, ledger_due = greatest(ledger_due, ?) WHERE monitor_id = ?",
            [now, until, reason, awaited, awaited if until else now, monitor_id],
        )
        session.record("monitor.pause", name, details={"until": until, "reason": reason})


def resume(session: Session, name: str) -> None:
    """Resume watching: slots that fell in the pause are not owed; the next one after now is."""
    conn, now = session.conn, session.now
    with transaction(conn):
        monitor_id, monitor = load(conn, name)
        awaited = replace(monitor, paused_at=None, paused_until=None, resumed_at=now).awaited_due()
        conn.execute(
            "UPDATE monitors SET paused_at = NULL, paused_until = NULL, pause_reason = NULL, "
            "resumed_at = ?, awaited_due = ?, ledger_due = ? WHERE monitor_id = ?",
            [now, awaited, awaited, monitor_id],
        )
        session.record("monitor.resume", name)


def remove(session: Session, name: str, *, reason: str | None = None) -> None:
    """Remove a monitor; its signals, slots and alerts stay as history."""
    delete(session.conn, name, now=session.now, reason=reason)


def delete(conn: Connection, name: str, *, now: datetime, reason: str | None = None) -> None:
    """`remove` on a bare connection."""
    with transaction(conn):
        monitor_id, _ = load(conn, name)
        before = config(conn, name)
        conn.execute("DELETE FROM monitors WHERE monitor_id = ?", [monitor_id])
        audit.record(conn, "monitor.remove", name, now=now, details={"before": before})
        versions.record(conn, f"monitor:{name}", None, now=now, reason=reason)


def reconfigure(
    conn: Connection,
    name: str,
    value: dict[str, Any],
    *,
    now: datetime,
    reason: str | None,
    via: str = "revert",
) -> None:
    """Set a monitor's configuration to `value` (a `config` dict, e.g. an old version), in one
    transaction with its new version; its state (signals, ledger, status) is kept. A new
    schedule owes its first slot after the last success (or now): slots of the old schedule
    not yet ledgered are not owed under the new one."""
    spec = Spec.of(value)
    if spec.cron:
        Cron.parse(spec.cron, spec.tz)
    stored = columns(CONFIG_FIELDS)
    with transaction(conn):
        monitor_id, _ = load(conn, name)
        before = config(conn, name)
        conn.execute(
            f"UPDATE monitors SET {', '.join(f'{c} = ?' for c in stored)} WHERE monitor_id = ?",
            [value[f] for f in CONFIG_FIELDS] + [monitor_id],
        )
        _, monitor = load(conn, name)
        awaited = monitor.awaited_due()
        new_schedule = any(before[f] != value[f] for f in ("cron", "tz", "every_seconds"))
        conn.execute(
            "UPDATE monitors SET awaited_due = $awaited, "
            "ledger_due = CASE WHEN $moved THEN $awaited ELSE ledger_due END "
            "WHERE monitor_id = $id",
            {"awaited": awaited, "moved": new_schedule, "id": monitor_id},
        )
        audit.record(
            conn, "monitor.change", name, now=now, details={"before": before, "after": value}
        )
        versions.record(conn, f"monitor:{name}", value, now=now, via=via, reason=reason)


class NotThisObject(versions.VersionError):
    """A version of another object than the one named."""


@dataclass(frozen=True)
class Reverted:
    """A revert: `applied` for a monitor (recorded as the new version `recorded_as`); for an
    object of the configuration file, not applied: `value` is what to put back in the file."""

    target: str
    version: int
    value: dict[str, Any] | None
    applied: bool
    recorded_as: int | None = None


def revert(session: Session, target: str, version: int, *, reason: str | None) -> Reverted:
    """Put `target` back as it was at `version`; the revert is itself a new version. Only
    monitors live in the store: sources, targets, mailboxes and settings come from the
    configuration file, which recon does not rewrite (the old value is returned instead)."""
    conn, now = session.conn, session.now
    old = versions.get(conn, version)
    if old["object"] != target:
        raise NotThisObject(f"version {version} is of {old['object']}, not {target}")
    kind, _, name = target.partition(":")
    value = old["value"]
    if kind != "monitor":
        return Reverted(target, version, value, applied=False)
    why = reason or f"revert to version {version}"
    if value is None:
        if exists(conn, name):
            delete(conn, name, now=now, reason=why)
    elif exists(conn, name):
        reconfigure(conn, name, value, now=now, reason=why)
    else:
        create(conn, name, Spec.of(value), now=now, user=session.actor, reason=why)
    return Reverted(target, version, value, applied=True, recorded_as=versions.current(conn))
