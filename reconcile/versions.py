"""Configuration history: every change of a monitor, source, target, mailbox or setting is a
version, with who, when, how and why, so "which change broke it" has an answer.

Monitors live in the store: their commands write a version in the same transaction as the
change. Sources, targets, mailboxes and settings live in recon.toml and the environment: each
command compares what it runs with against the latest versions and records what differs
(`via` = recon.toml, by the OS user who ran the command: the first to run with it). Secrets are
never kept: a target's URL and a mailbox's password become a fingerprint, enough to see that
they changed. Version numbers are global, so one number names the whole configuration at a
moment; each ingested file and each reconciliation records it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from reconcile import audit
from reconcile.errors import ReconError
from reconcile.settings import Settings
from reconcile.store.db import Connection, fetch_dicts, transaction

# Settings that change behaviour (paths, secrets and the injected clock are not configuration).
TRACKED_SETTINGS = (
    "lock_timeout",
    "notify_timeout",
    "ping_rate_limit",
    "spool_drain_interval",
    "export_mode",
    "base_url",
)


class VersionError(ReconError):
    """A version or object that does not exist, or a revert that cannot be done."""


def _fingerprint(secret: str) -> str:
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


def file_config(settings: Settings) -> dict[str, Any]:
    """The configuration that comes from recon.toml and the environment, per object, without
    secrets."""
    found: dict[str, Any] = {
        f"source:{name}": source.model_dump(mode="json")
        for name, source in settings.sources.items()
    }
    for alias, target in settings.notify.targets.items():
        value = target.model_dump(mode="json", exclude={"url"})
        found[f"target:{alias}"] = {**value, "url": _fingerprint(target.url.get_secret_value())}
    for alias, box in settings.mailboxes.items():
        value = box.model_dump(mode="json", exclude={"password", "password_file"})
        secret = box.password.get_secret_value() if box.password else str(box.password_file)
        found[f"mailbox:{alias}"] = {**value, "password": _fingerprint(secret)}
    found["settings"] = settings.model_dump(mode="json", include=set(TRACKED_SETTINGS))
    return found


def _latest(conn: Connection, prefix: str | None = None) -> dict[str, str | None]:
    rows = conn.execute(
        "SELECT object, arg_max_null(value, version) FROM config_versions "
        "WHERE $prefix IS NULL OR starts_with(object, $prefix) GROUP BY object",
        {"prefix": prefix},
    ).fetchall()
    return {object_: value for object_, value in rows}


def _add(
    conn: Connection,
    target: str,
    value: dict[str, Any] | None,
    *,
    now: datetime,
    via: str,
    reason: str | None,
) -> int:
    [(version,)] = conn.execute(
        "SELECT coalesce(max(version), 0) + 1 FROM config_versions"
    ).fetchall()
    text = audit.canonical(value) if value is not None else None
    conn.execute(
        "INSERT INTO config_versions VALUES (?, ?, ?, ?, ?, ?, ?)",
        [version, target, text, now, audit.current().actor, via, reason],
    )
    audit.record(
        conn,
        "config.change",
        target,
        now=now,
        details={"version": version, "via": via, "reason": reason, "after": value},
    )
    return int(version)


def record(
    conn: Connection,
    target: str,
    value: dict[str, Any] | None,
    *,
    now: datetime,
    via: str = "command",
    reason: str | None = None,
) -> int | None:
    """A new version of `target` inside the caller's transaction, if it differs from the last."""
    text = audit.canonical(value) if value is not None else None
    if _latest(conn, target).get(target) == text:
        return None
    return _add(conn, target, value, now=now, via=via, reason=reason)


def sync_file_config(conn: Connection, settings: Settings, now: datetime) -> list[int]:
    """Record the file-based objects that changed since the last command (one transaction)."""
    current = file_config(settings)
    known = _latest(conn)
    changed = {
        name: value for name, value in current.items() if known.get(name) != audit.canonical(value)
    }
    removed = [
        name
        for name, value in known.items()
        if value is not None and not name.startswith("monitor:") and name not in current
    ]
    if not changed and not removed:
        return []
    with transaction(conn):
        added = [
            _add(conn, name, value, now=now, via="settings", reason="changed in the settings")
            for name, value in changed.items()
        ]
        added += [
            _add(conn, name, None, now=now, via="settings", reason="removed from the settings")
            for name in removed
        ]
    return added


def current(conn: Connection) -> int:
    """The version number that names the whole configuration now."""
    [(version,)] = conn.execute("SELECT coalesce(max(version), 0) FROM config_versions").fetchall()
    return int(version)


def history(conn: Connection, target: str | None = None) -> list[dict[str, Any]]:
    rows = fetch_dicts(
        conn,
        "SELECT version, object, changed_at, changed_by, via, reason, value "
        "FROM config_versions WHERE $object IS NULL OR object = $object ORDER BY version",
        {"object": target},
    )
    for row in rows:
        row["value"] = json.loads(row["value"]) if row["value"] is not None else None
    return rows


def get(conn: Connection, version: int) -> dict[str, Any]:
    rows = [r for r in history(conn) if r["version"] == version]
    if not rows:
        raise VersionError(f"no configuration version {version}; see `recon config history`")
    return rows[0]


def diff(conn: Connection, first: int, second: int) -> dict[str, Any]:
    """Field by field, what differs between two versions (usually of the same object)."""
    a, b = get(conn, first), get(conn, second)
    old, new = a["value"] or {}, b["value"] or {}
    changes = {
        key: {"from": old.get(key), "to": new.get(key)}
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    }
    return {"from": a, "to": b, "changes": changes}
