"""Configuration history: every change of a monitor, source, target, mailbox or setting is a
version, with who, when, how and why, so "which change broke it" has an answer.

Monitors live in the store: their commands write a version in the same transaction as the
change. Sources, targets, mailboxes and settings live in recon.toml: each command that reads
the file compares what it says with the latest versions and records what differs (`via` =
settings, by the OS user who ran the command: the first to run with it). The environment is
not versioned: `RECON_LOCK_TIMEOUT=5s` for one command, or targets given in `RECON_NOTIFY`,
describe the process that runs, not a change a person made; a command that reads no
recon.toml records nothing. Secrets are
never kept: a target's URL and a mailbox's password become a fingerprint, enough to see that
they changed. Version numbers are global, so one number names the whole configuration at a
moment; each ingested file and each reconciliation records it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from reconcile import audit
from reconcile.errors import ReconError
from reconcile.settings import (
    MailboxConfig,
    NotifyTarget,
    Settings,
    SourceConfig,
    filed_settings,
)
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


# What a version records for a part recon.toml leaves to the environment (a target's URL or a
# mailbox's password kept out of the file): the environment is not the configuration.
OUTSIDE_THE_FILE = "(not in recon.toml)"


def _as_filed(model: type[BaseModel], raw: Any, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """One object as its section of recon.toml gives it, with the model's defaults and
    normalisation; a required field the file leaves to the environment is recorded as
    OUTSIDE_THE_FILE, and a secret as its fingerprint."""
    given = dict(raw) if isinstance(raw, dict) else {}
    missing = {
        name: "x"  # a stand-in, only to validate the rest
        for name, field in model.model_fields.items()
        if field.is_required() and name not in given
    }
    try:
        value = model.model_validate({**given, **missing}).model_dump(
            mode="json", exclude=set(secrets)
        )
    except ValidationError:  # only valid once the environment completes it: as written
        written = json.loads(json.dumps(given, default=str))
        value = {k: v for k, v in written.items() if k not in secrets}
    for name in missing:
        value[name] = OUTSIDE_THE_FILE
    for name in secrets:
        if name in given:
            value[name] = _fingerprint(str(given[name]))
        elif name not in missing:
            value[name] = OUTSIDE_THE_FILE
    return value


def file_config(settings: Settings) -> dict[str, Any] | None:
    """The configuration recon.toml holds, per object, without secrets; None when no file was
    read. Only the file is versioned: what the environment adds or overrides (a lock timeout
    for one command, targets given in RECON_NOTIFY, a log level) belongs to the process that
    runs, not to the configuration, so cron and a login shell record the same thing."""
    raw = settings.file_values()
    if raw is None:
        return None
    found: dict[str, Any] = {
        f"source:{name}": _as_filed(SourceConfig, section)
        for name, section in (raw.get("sources") or {}).items()
    }
    notify = raw.get("notify") or {}
    for alias, section in (notify.get("targets") or {}).items():
        found[f"target:{alias}"] = _as_filed(NotifyTarget, section, ("url",))
    for alias, section in (raw.get("mailboxes") or {}).items():
        box = dict(section) if isinstance(section, dict) else {}
        password, password_file = box.pop("password", None), box.pop("password_file", None)
        secret = password or password_file
        value = _as_filed(MailboxConfig, box)
        value["password"] = _fingerprint(str(secret)) if secret else OUTSIDE_THE_FILE
        found[f"mailbox:{alias}"] = value
    found["settings"] = filed_settings(settings, TRACKED_SETTINGS)
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
    if current is None:  # no recon.toml read: nothing said about the configuration
        return []
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
