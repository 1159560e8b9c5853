"""The audit trail: who did what, when, from where, to which object, with what outcome.

Every action that changes the store or reads its data appends one event *in the same
transaction as the action*, so an action without its event (or the reverse) cannot be
committed. Events form a chain: each row's `hash` is an HMAC-SHA-256 (key `RECON_AUDIT_KEY` or
`audit_key_file`, never stored in the database) over the previous row's hash and a canonical
encoding of the row (sorted-key compact JSON), starting from a fixed genesis value. Editing,
deleting, reordering or re-hashing rows without the key breaks the chain at the first row
touched; `verify` names it.

One writer at a time: DuckDB's file lock admits one process, and within it `record` (like every
`db.transaction`) holds the database's write lock, so no two connections of one process (the
server's request threads) append after the same head; the store refuses a second event with one
seq (unique index, migration 009), and `record_alone` retries a commit that collides anyway.

Two guards sit around the chain:
- **The anchor file** (`<db>.anchor`, 0600, outside the database) gets the head (seq, hash)
  appended after each command, each line with a MAC (HMAC under the audit key) over its head and
  the previous line's MAC; so cutting rows off the end, or recomputing the whole chain, is
  detected too, and the anchor's lines cannot be edited, inserted, reordered or removed from
  anywhere but the end without the key. A copy of the database and the anchor from one earlier
  moment is beyond what these two files can show: `recon audit head` prints the head to keep
  elsewhere, and `verify(expect_head=...)` checks it.
- **The guard table**: DuckDB has no triggers, so `audit_guard` holds a foreign key over every
  column of every event; DuckDB then refuses any UPDATE or DELETE of an event (and dropping
  the table) with a constraint error. This stops accidents, not an attacker, who would have to
  delete the guard rows first; `verify` reports missing guard rows as tampering.

Without a key the chain is plain SHA-256: accidental edits and a cut tail are still found,
but whoever can write the file could recompute it. `verify` says so. With a key configured, an
unkeyed trail is what such a recomputation (a downgrade) looks like: nothing keyed is written
after unkeyed events but by `recon audit start-key`, and `verify` calls an unkeyed trail under a
key BROKEN.

**Readers without the key.** Listing failures or exporting is an access to record, but the key
lets whoever holds it rewrite the chain, so readers do not get it. On a keyed trail, a process
without the key may append only a read (`ACCESS_ACTIONS`: `failures.list`, `export`,
`audit.log`), as alg `sha256-access`: plain SHA-256 over the previous hash and the event, so it
is chained like any other. Why that cannot forge the keyed chain: a keyed event's HMAC covers
the previous row's hash, so every row before the last keyed event (access rows included) is
fixed by someone holding the key; `verify` accepts an access row only after a keyed one and
only for a read action, so none can stand for a write (a resolution, an ingest, a config
change); and rows cannot be inserted before a keyed one, or swapped for anchored ones, without
breaking the HMAC or the anchor. A reader cannot anchor (the anchor's lines are MACs under the
key): the next command run with the key seals and anchors what readers appended. Until then
access rows at the end could be removed by anyone able to write the database file (who could
read it without recording anything anyway); `verify` says how many are not sealed yet.
"""

from __future__ import annotations

import json
import os
import pwd
import random
import socket
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconcile import redact
from reconcile.audit.chain import (
    ACCESS,
    ACCESS_ACTIONS,
    AUDITED_TABLES,
    COLUMNS,
    GENESIS,
    KEYED,
    MAX_VALUE_CHARS,
    START_KEY,
    UNKEYED,
    NotCanonical,
    _anchor_mac,
    _hash,
    _recomputes,
    _started_on,
    canonical,
    head,
    last_keyed,
    strict_json,
)
from reconcile.audit.chain import _row_event as _row_event  # read back as hashed (tests)
from reconcile.audit.verdict import AnchorFile, Verdict, read_anchors, verify
from reconcile.errors import ConfigError
from reconcile.store.db import (
    Connection,
    WriteConflict,
    fetch_dicts,
    transaction,
    write_lock,
)

__all__ = [
    "ACCESS",
    "ACCESS_ACTIONS",
    "AUDITED_TABLES",
    "COLUMNS",
    "GENESIS",
    "KEYED",
    "MAX_VALUE_CHARS",
    "START_KEY",
    "UNKEYED",
    "AnchorFile",
    "NotCanonical",
    "Trail",
    "Verdict",
    "acting",
    "anchor",
    "can_sign",
    "canonical",
    "cli_trail",
    "current",
    "event_at",
    "events",
    "head",
    "identify",
    "last_alg",
    "os_user",
    "read_anchor",
    "read_anchors",
    "record",
    "record_alone",
    "start_key",
    "strict_json",
    "verify",
]
ATTEMPTS = 5  # record_alone's tries when its commit collides with another writer's


@dataclass(frozen=True)
class Trail:
    """Who is acting and from where, and how to chain: set once per command or request."""

    actor: str
    origin: dict[str, str] = field(default_factory=dict)
    key: bytes | None = None
    anchor: Path | None = None
    # Only `recon audit start-key` may put a keyed event after unkeyed ones (see `record`).
    start_key: bool = False


_current: ContextVar[Trail | None] = ContextVar("audit_trail", default=None)


def os_user() -> str:
    """The user the process runs as, from its real uid (never `$USER` or `$LOGNAME`, which
    anyone can set: `USER=cfo recon breaks resolve ...` must not act as "cfo")."""
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OSError):
        return f"uid:{uid}"


def cli_trail(key: bytes | None, anchor: Path | None) -> Trail:
    return Trail(os_user(), {"via": "cli", "host": socket.gethostname()}, key, anchor)


@contextmanager
def acting(trail: Trail) -> Iterator[Trail]:
    """Make `trail` the one `record` uses, for the duration of a command or request."""
    token = _current.set(trail)
    try:
        yield trail
    finally:
        _current.reset(token)


def record_alone(
    conn: Connection,
    action: str,
    target: str | None = None,
    *,
    now: datetime,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
) -> int:
    """`record` in a transaction of its own: for a read, a refusal, a start or stop, where the
    event is all there is to write. A commit that collides with another writer's (which the
    process-wide write lock and the unique seq make rare) is tried again from the new head."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with transaction(conn):
                return record(conn, action, target, now=now, outcome=outcome, details=details)
        except WriteConflict:
            if attempt == ATTEMPTS:
                raise
            time.sleep(0.01 * 2**attempt * (1 + random.random()))
    raise AssertionError("unreachable")


def start_key(conn: Connection, anchor_path: Path, *, now: datetime) -> Verdict:
    """Key a trail written without a key from its next event on, after checking it (unkeyed,
    with its anchor); returns that check. Run with the key in the active trail."""
    trail = current()
    if trail.key is None:
        raise ConfigError("no audit key is configured: set RECON_AUDIT_KEY or audit_key_file")
    verdict = verify(conn, None, anchor_path)
    if not verdict.intact:
        return verdict
    last = head(conn)
    with acting(replace(trail, start_key=True)):
        record_alone(conn, START_KEY, now=now, details={"unkeyed_until": last[0] if last else 0})
    return verdict


def can_sign(conn: Connection) -> bool:
    """Whether the active trail may record any event, not only a reader's access: false for a
    process without the audit key on a keyed trail."""
    return current().key is not None or last_keyed(conn) is None


def identify(actor: str) -> None:
    """Name the actor of the active trail once known (an HTTP caller, after its token is
    checked); `acting`'s exit restores what was there before."""
    _current.set(replace(current(), actor=actor))


def current() -> Trail:
    """The active trail; outside any command (library use), the OS user, unkeyed."""
    return _current.get() or Trail(os_user(), {"via": "library", "host": socket.gethostname()})


def record(
    conn: Connection,
    action: str,
    target: str | None = None,
    *,
    now: datetime,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
) -> int:
    """Append one event inside the caller's transaction; returns its seq. Holds the database's
    write lock (already held by `transaction`) so that no other connection of this process
    appends between reading the head and writing after it."""
    with write_lock(conn):
        return _append(conn, action, target, now=now, outcome=outcome, details=details)


def _append(
    conn: Connection,
    action: str,
    target: str | None,
    *,
    now: datetime,
    outcome: str,
    details: dict[str, Any] | None,
) -> int:
    trail = current()
    target = redact.mask_pans(target) if target else target
    cursor = conn.execute(f"SELECT {COLUMNS} FROM audit_events ORDER BY seq DESC LIMIT 1")
    names = [c[0] for c in cursor.description]
    last = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    seq, prev = (int(last[0]["seq"]) + 1, str(last[0]["hash"])) if last else (1, GENESIS)
    keyed = last[0] if last and last[0]["alg"] == KEYED else None
    if last and last[0]["alg"] == ACCESS:
        keyed = last_keyed(conn)
    alg = KEYED if trail.key else UNKEYED
    if keyed is not None and trail.key is None and action in ACCESS_ACTIONS:
        alg = ACCESS  # a reader without the key: its access, chained, but unkeyed
    elif keyed is not None:
        _check_key(keyed, trail.key, action)
    elif last and trail.key is not None and not trail.start_key:
        # A keyed event after unkeyed ones is how a trail rechained without the key (a
        # downgrade) would be made to look keyed again: starting the key is a deliberate act.
        raise ConfigError(
            "the audit trail of this database was written without an audit key, and one is "
            "configured now; nothing was written. Check the trail with `recon audit verify` "
            "without the key, then run `recon audit start-key` with it to key the trail from "
            "its next event on (or unset RECON_AUDIT_KEY / audit_key_file)"
        )
    event = {
        "seq": seq,
        "ts": now.astimezone(UTC).isoformat(),
        "actor": trail.actor,
        "origin": trail.origin,
        "action": action,
        "object": target or "",
        "outcome": outcome,
        "details": _clean(details or {}),
        "alg": alg,
    }
    digest = _hash(event, prev, trail.key)
    if seq == 1:
        _started_on.add(conn)
    conn.execute(
        f"INSERT INTO audit_events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            seq,
            now,
            trail.actor,
            canonical(trail.origin),
            action,
            target or "",
            outcome,
            canonical(event["details"]),
            event["alg"],
            prev,
            digest,
        ],
    )
    if _guard_exists(conn):  # someone dropped it: keep recording; `verify` will say so
        conn.execute(
            f"INSERT INTO audit_guard SELECT {COLUMNS} FROM audit_events WHERE seq = ?", [seq]
        )
    return seq


# Connections on which the guard table was seen: asked once per connection, not per event. While
# a connection is open no other process can open the file (DuckDB's lock), and nothing in recon
# drops the table, so what was seen holds until the connection closes.
_guarded: weakref.WeakSet[Connection] = weakref.WeakSet()


def _guard_exists(conn: Connection) -> bool:
    if conn in _guarded:
        return True
    [(guarded,)] = conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'audit_guard'"
    ).fetchall()
    if guarded:
        _guarded.add(conn)
    return bool(guarded)


def _check_key(row: dict[str, Any], key: bytes | None, action: str) -> None:
    """Refuse to extend a keyed chain without its key (but for a reader's access, see
    ACCESS), or with another one: the new events would not verify, and the trail would look
    tampered with from here on."""
    if key is None:
        raise ConfigError(
            f"the audit trail of this database is keyed, and recording {action!r} needs its "
            "key: set RECON_AUDIT_KEY (or audit_key_file) to the key it was written with. "
            "Reading (failures, exports) needs no key: a reader's access is recorded without "
            "it" + _demo_hint(row)
        )
    if not _recomputes(row, key):
        raise ConfigError(
            f"the configured audit key is not the one this trail was written with (its last "
            f"keyed event, seq {row['seq']}, does not verify with it); nothing was written. Set "
            "RECON_AUDIT_KEY to the right key, or run `recon audit verify` if you suspect "
            "tampering" + _demo_hint(row)
        )


DEMO_AUDIT_KEY = b"demo-only-not-a-secret-either"  # `make demo`'s (Makefile), public


def _demo_hint(row: dict[str, Any]) -> str:
    """The demo's key is named only for the demo's store: a trail whose last keyed event
    verifies with it. Any other store is never told a key."""
    if not _recomputes(row, DEMO_AUDIT_KEY):
        return ""
    return f" (this is the database of `make demo`: RECON_AUDIT_KEY={DEMO_AUDIT_KEY.decode()})"


def _clean(value: Any) -> Any:
    """Details as JSON-safe values, card numbers masked, long text cut."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    text = redact.mask_pans(str(value)) or ""
    if len(text) > MAX_VALUE_CHARS:
        text = f"{text[:MAX_VALUE_CHARS]}... [{len(text)} characters]"
    return text


def anchor(conn: Connection, path: Path) -> None:
    """Append the chain's head to the anchor file (0600, fsynced) if it moved. Each line carries
    a MAC over its head and the previous line's MAC, keyed with the active trail's key, so that
    without the key no line can be changed, inserted, reordered or removed except from the end.
    Done under the database's write lock: the threads of one process write one chain of lines,
    each further on than the last."""
    key = current().key
    with write_lock(conn):
        cursor = conn.execute(f"SELECT {COLUMNS} FROM audit_events ORDER BY seq DESC LIMIT 1")
        names = [c[0] for c in cursor.description]
        found = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        if not found:
            return
        row = found[0]
        keyed = row if row["alg"] == KEYED else None
        if row["alg"] == ACCESS:
            keyed = last_keyed(conn)
        if keyed is not None and (key is None or not _recomputes(keyed, key)):
            # Not this trail's key (nothing keyed was recorded with it either), or none: a
            # reader's access events are anchored by the next command that holds the key.
            return
        last = _last_line(path)
        if last is not None and int(last["seq"]) >= int(row["seq"]):
            return
        prev = str(last["mac"]) if last is not None and "mac" in last else GENESIS
        alg = KEYED if key else UNKEYED
        seq, digest = int(row["seq"]), str(row["hash"])
        text = canonical(
            {
                "alg": alg,
                "hash": digest,
                "mac": _anchor_mac(prev, seq, digest, alg, key),
                "seq": seq,
            }
        )
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
            ends_cleanly = size == 0 or os.pread(fd, 1, size - 1) == b"\n"
            os.write(fd, ("" if ends_cleanly else "\n").encode() + text.encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)


def _last_line(path: Path) -> dict[str, Any] | None:
    """The last readable line of the anchor file (None when there is none)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 4096))
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            item = json.loads(line)
            int(item["seq"]), str(item["hash"])
        except (ValueError, KeyError, TypeError):
            continue
        return dict(item)
    return None


def read_anchor(path: Path) -> tuple[int, str] | None:
    """The last (seq, hash) anchored, or None when nothing was anchored yet."""
    item = _last_line(path)
    return (int(item["seq"]), str(item["hash"])) if item is not None else None


def events(
    conn: Connection,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Events by time, actor, action (prefix: `monitor` finds `monitor.add`) and object."""
    rows = fetch_dicts(
        conn,
        f"""
        SELECT {COLUMNS} FROM audit_events
        WHERE ($since IS NULL OR ts >= $since) AND ($until IS NULL OR ts <= $until)
          AND ($actor IS NULL OR actor = $actor)
          AND ($action IS NULL OR action = $action OR starts_with(action, $action || '.'))
          AND ($object IS NULL OR object = $object OR starts_with(object, $object || ':'))
        ORDER BY seq DESC LIMIT $limit
        """,
        {
            "since": since,
            "until": until,
            "actor": actor,
            "action": action,
            "object": target,
            "limit": limit,
        },
    )
    for row in rows:
        row["origin"] = json.loads(row["origin"])
        row["details"] = json.loads(row["details"])
    return rows[::-1]


def event_at(conn: Connection, seq: int) -> dict[str, Any]:
    """The hash, alg and time of the event `seq` (one that exists)."""
    [row] = fetch_dicts(conn, "SELECT seq, hash, alg, ts FROM audit_events WHERE seq = ?", [seq])
    return row


def last_alg(conn: Connection) -> str | None:
    """How the last event was chained (KEYED or UNKEYED), None for an empty trail."""
    found = conn.execute("SELECT alg FROM audit_events ORDER BY seq DESC LIMIT 1").fetchall()
    return str(found[0][0]) if found else None
