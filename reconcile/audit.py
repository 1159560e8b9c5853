"""The audit trail: who did what, when, from where, to which object, with what outcome.

Every action that changes the store or reads its data appends one event *in the same
transaction as the action*, so an action without its event (or the reverse) cannot be
committed. Events form a chain: each row's `hash` is an HMAC-SHA-256 (key `RECON_AUDIT_KEY` or
`audit_key_file`, never stored in the database) over the previous row's hash and a canonical
encoding of the row (sorted-key compact JSON), starting from a fixed genesis value. Editing,
deleting, reordering or re-hashing rows without the key breaks the chain at the first row
touched; `verify` names it.

Two guards sit around the chain:
- **The anchor file** (`<db>.anchor`, 0600, outside the database) gets the head (seq, hash)
  appended after each command, so cutting rows off the end, or recomputing the whole chain,
  is detected too.
- **The guard table**: DuckDB has no triggers, so `audit_guard` holds a foreign key over every
  column of every event; DuckDB then refuses any UPDATE or DELETE of an event (and dropping
  the table) with a constraint error. This stops accidents, not an attacker, who would have to
  delete the guard rows first; `verify` reports missing guard rows as tampering.

Without a key the chain is plain SHA-256: accidental edits and a cut tail are still found,
but whoever can write the file could recompute it. `verify` says so.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconcile import redact
from reconcile.db import Connection, QueryError, fetch_dicts, transaction
from reconcile.errors import ConfigError

GENESIS = "0" * 64
KEYED, UNKEYED = "hmac-sha256", "sha256"
MAX_VALUE_CHARS = 2000  # a longer text value in details is cut (with its length noted)
COLUMNS = "seq, ts, actor, origin, action, object, outcome, details, alg, prev_hash, hash"


@dataclass(frozen=True)
class Trail:
    """Who is acting and from where, and how to chain: set once per command or request."""

    actor: str
    origin: dict[str, str] = field(default_factory=dict)
    key: bytes | None = None
    anchor: Path | None = None


_current: ContextVar[Trail | None] = ContextVar("audit_trail", default=None)


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


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
    event is all there is to write."""
    with transaction(conn):
        return record(conn, action, target, now=now, outcome=outcome, details=details)


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
    """Append one event inside the caller's transaction; returns its seq."""
    trail = current()
    target = redact.mask_pans(target) if target else target
    cursor = conn.execute(f"SELECT {COLUMNS} FROM audit_events ORDER BY seq DESC LIMIT 1")
    names = [c[0] for c in cursor.description]
    last = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    seq, prev = (int(last[0]["seq"]) + 1, str(last[0]["hash"])) if last else (1, GENESIS)
    if last and last[0]["alg"] == KEYED:
        _check_key(last[0], trail.key)
    event = {
        "seq": seq,
        "ts": now.astimezone(UTC).isoformat(),
        "actor": trail.actor,
        "origin": trail.origin,
        "action": action,
        "object": target or "",
        "outcome": outcome,
        "details": _clean(details or {}),
        "alg": KEYED if trail.key else UNKEYED,
    }
    digest = _hash(event, prev, trail.key)
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
    [(guarded,)] = conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'audit_guard'"
    ).fetchall()
    if guarded:  # someone dropped it: keep recording; `verify` will say so
        conn.execute(
            f"INSERT INTO audit_guard SELECT {COLUMNS} FROM audit_events WHERE seq = ?", [seq]
        )
    return seq


def _check_key(row: dict[str, Any], key: bytes | None) -> None:
    """Refuse to extend a keyed chain without its key, or with another one: the new events
    would not verify, and the trail would look tampered with from here on."""
    if key is None:
        raise ConfigError(
            "the audit trail of this database is keyed and no audit key is configured: set "
            "RECON_AUDIT_KEY (or audit_key_file) to the key it was written with (for the "
            "database of `make demo`: RECON_AUDIT_KEY=demo-only-not-a-secret-either)"
        )
    if not hmac.compare_digest(_hash(_row_event(row), row["prev_hash"], key), row["hash"]):
        raise ConfigError(
            f"the configured audit key is not the one this trail was written with (its last "
            f"event, seq {row['seq']}, does not verify with it); nothing was written. Set "
            "RECON_AUDIT_KEY to the right key, or run `recon audit verify` if you suspect "
            "tampering"
        )


def canonical(value: Any) -> str:
    """The one encoding that is hashed: sorted keys, no spaces, UTF-8 as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _hash(event: dict[str, Any], prev: str, key: bytes | None) -> str:
    message = (prev + "\n" + canonical(event)).encode()
    if event["alg"] == KEYED:
        assert key is not None
        return hmac.new(key, message, hashlib.sha256).hexdigest()
    return hashlib.sha256(message).hexdigest()


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


def _row_event(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row back into the dict that was hashed."""
    return {
        "seq": row["seq"],
        "ts": row["ts"].astimezone(UTC).isoformat(),
        "actor": row["actor"],
        "origin": json.loads(row["origin"]),
        "action": row["action"],
        "object": row["object"],
        "outcome": row["outcome"],
        "details": json.loads(row["details"]),
        "alg": row["alg"],
    }


def head(conn: Connection) -> tuple[int, str] | None:
    """The last (seq, hash); fetched whole, so the connection is free for what comes next."""
    found = conn.execute("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetchall()
    return (int(found[0][0]), str(found[0][1])) if found else None


def anchor(conn: Connection, path: Path) -> None:
    """Append the chain's head to the anchor file (0600, fsynced) if it moved."""
    found = head(conn)
    if found is None:
        return
    last = read_anchor(path)
    if last is not None and last[0] == found[0]:
        return
    line = canonical({"seq": found[0], "hash": found[1]}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def read_anchors(path: Path) -> dict[int, set[str]]:
    """Every head ever anchored: seq -> the hashes anchored for it (more than one means the
    chain was cut and grown again)."""
    found: dict[int, set[str]] = {}
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return found
    for line in lines:
        try:
            item = json.loads(line)
            found.setdefault(int(item["seq"]), set()).add(str(item["hash"]))
        except (ValueError, KeyError, TypeError):
            continue
    return found


def read_anchor(path: Path) -> tuple[int, str] | None:
    """The last (seq, hash) anchored, or None when nothing was anchored yet."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 4096))
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            item = json.loads(line)
            return int(item["seq"]), str(item["hash"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


@dataclass
class Verdict:
    intact: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)
    head: tuple[int, str] | None = None
    # True when the trail could not be checked at all (no key, or not its key): not a finding.
    unverifiable: bool = False


def verify(conn: Connection, key: bytes | None, anchor_path: Path | None) -> Verdict:
    """Walk every event: seq contiguous from 1, each prev_hash the previous hash, each hash
    recomputed, every event guarded; then the latest anchor matches. Stops at the first bad
    seq."""
    expected, prev, keyed_seen, checked = 1, GENESIS, False, 0
    warnings: list[str] = []
    anchored = read_anchors(anchor_path) if anchor_path else {}
    cursor = conn.execute(f"SELECT {COLUMNS} FROM audit_events ORDER BY seq")
    names = [c[0] for c in cursor.description]

    def broken(seq: int, problem: str) -> Verdict:
        return Verdict(False, checked, seq, problem, warnings)

    while batch := cursor.fetchmany(10_000):
        for values in batch:
            row = dict(zip(names, values, strict=True))
            seq = row["seq"]
            if seq != expected:
                if seq < expected:
                    return broken(seq, f"seq {seq} appears twice (or rows were swapped)")
                return broken(expected, f"seq {expected} is missing: the next row is seq {seq}")
            if row["prev_hash"] != prev:
                return broken(
                    seq,
                    "prev_hash is not the hash of the row before: rows were removed, "
                    "inserted or reordered here",
                )
            if row["alg"] == KEYED:
                keyed_seen = True
                if key is None:
                    return Verdict(
                        False, checked, seq,
                        "the trail is keyed and no audit key is configured; set "
                        "RECON_AUDIT_KEY (or audit_key_file) to its key and run again",
                        warnings, unverifiable=True,
                    )  # fmt: skip
            elif keyed_seen:
                return broken(seq, "an unkeyed row after keyed ones: the chain was recomputed")
            try:
                recomputed = _hash(_row_event(row), prev, key)
            except (ValueError, TypeError) as exc:
                return broken(seq, f"the row cannot be decoded ({type(exc).__name__})")
            if not hmac.compare_digest(recomputed, row["hash"]):
                if row["alg"] == KEYED and _foreign_key(conn, key, anchored, names):
                    return Verdict(
                        False, checked, seq,
                        "the configured audit key is not the one this trail was written with: "
                        "no event verifies with it, while the hashes match the anchor file; set "
                        "RECON_AUDIT_KEY (or audit_key_file) to the right key and run again",
                        warnings, unverifiable=True,
                    )  # fmt: skip
                return broken(
                    seq,
                    "the hash does not recompute: a field of this row was changed, or "
                    "the chain was recomputed with another key (or the configured key is not "
                    "the one the trail was written with)",
                )
            if seq in anchored and anchored[seq] != {row["hash"]}:
                return broken(
                    seq,
                    "the hash differs from the one anchored outside the database: the "
                    "chain was recomputed, or cut and grown again, from here or before",
                )
            prev, expected, checked = row["hash"], expected + 1, checked + 1
    last = (expected - 1, prev) if checked else None
    try:
        guard = conn.execute(
            f"SELECT min(seq) FROM (SELECT {COLUMNS} FROM audit_events "
            f"EXCEPT SELECT {COLUMNS} FROM audit_guard)"
        ).fetchone()
    except QueryError:
        return broken(1, "the guard table audit_guard was dropped")
    if guard and guard[0] is not None:
        return broken(int(guard[0]), "the guard row of this event was removed or altered")
    if not keyed_seen and checked:
        warnings.append(
            "the chain is not keyed (no RECON_AUDIT_KEY when it was written): accidental "
            "edits are detected, but someone able to write the database could recompute it"
        )
    if anchor_path is not None:
        end = last[0] if last else 0
        if not anchored and checked:
            warnings.append(f"no anchor file at {anchor_path}: a cut-off tail would go unseen")
        elif anchored and max(anchored) > end:
            return broken(
                end + 1,
                f"the anchor records seq {max(anchored)}, but the trail ends at seq {end}: "
                "rows were cut off the end",
            )
    return Verdict(True, checked, None, None, warnings, last)


def _foreign_key(
    conn: Connection, key: bytes | None, anchored: dict[int, set[str]], names: list[str]
) -> bool:
    """Whether a hash mismatch means "not this trail's key" rather than tampering: the newest
    keyed event does not verify with the key either, and every anchored hash is still in the
    database (a chain recomputed with another key would no longer match its anchors)."""
    if not anchored:
        return False
    newest = conn.execute(
        f"SELECT {COLUMNS} FROM audit_events WHERE alg = ? ORDER BY seq DESC LIMIT 1", [KEYED]
    ).fetchall()
    if not newest:
        return False
    row = dict(zip(names, newest[0], strict=True))
    if hmac.compare_digest(_hash(_row_event(row), row["prev_hash"], key), row["hash"]):
        return False
    stored = dict(
        conn.execute(
            "SELECT seq, hash FROM audit_events WHERE list_contains(?, seq)", [list(anchored)]
        ).fetchall()
    )
    return all(hashes == {stored.get(seq)} for seq, hashes in anchored.items())


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
