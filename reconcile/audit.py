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
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
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
from reconcile.errors import ConfigError
from reconcile.store.db import (
    Connection,
    QueryError,
    WriteConflict,
    fetch_dicts,
    transaction,
    write_lock,
)

GENESIS = "0" * 64
KEYED, UNKEYED = "hmac-sha256", "sha256"
MAX_VALUE_CHARS = 2000  # a longer text value in details is cut (with its length noted)
COLUMNS = "seq, ts, actor, origin, action, object, outcome, details, alg, prev_hash, hash"
START_KEY = "audit.start-key"  # the event that keys a trail written without a key
ATTEMPTS = 5  # record_alone's tries when its commit collides with another writer's
# Tables whose every row is written in the same transaction as an audit event: a store with
# rows in any of them and an empty trail had its events deleted.
AUDITED_TABLES = ("ingested_files", "reconciliations", "monitors", "api_tokens", "config_versions")


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
# Connections that wrote a trail's first event: its anchor file comes when they close, so a
# check made on one of them before that does not call the missing file a deletion.
_started_on: weakref.WeakSet[Connection] = weakref.WeakSet()


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
    if last and last[0]["alg"] == KEYED:
        _check_key(last[0], trail.key)
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
        "alg": KEYED if trail.key else UNKEYED,
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
    if not _recomputes(row, key):
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


class NotCanonical(ValueError):
    """A stored JSON column is not what `canonical` writes (a duplicate key, spaces, another
    order): the text DuckDB's JSON functions read could differ from the one that was hashed."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        duplicated = sorted({k for k, _ in pairs if [p for p, _ in pairs].count(k) > 1})
        raise NotCanonical(f"duplicate key {duplicated[0]!r}")
    return found


def strict_json(text: str, column: str) -> Any:
    """Parse a stored JSON column strictly: duplicate keys refused, and the text must be exactly
    the canonical encoding of what it holds (so every reader sees what was hashed)."""
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys)
    except NotCanonical as exc:
        raise NotCanonical(f"{column}: {exc}") from None
    if canonical(value) != text:
        raise NotCanonical(f"{column} is not in the canonical encoding the trail writes")
    return value


def _row_event(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row back into the dict that was hashed (ValueError when it cannot be)."""
    return {
        "seq": row["seq"],
        "ts": row["ts"].astimezone(UTC).isoformat(),
        "actor": row["actor"],
        "origin": strict_json(row["origin"], "origin"),
        "action": row["action"],
        "object": row["object"],
        "outcome": row["outcome"],
        "details": strict_json(row["details"], "details"),
        "alg": row["alg"],
    }


def _recomputes(row: dict[str, Any], key: bytes | None) -> bool:
    """Whether the row's hash is the one its content and prev_hash give under `key`."""
    if row["alg"] == KEYED and key is None:
        return False
    try:
        expected = _hash(_row_event(row), row["prev_hash"], key)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, row["hash"])


def head(conn: Connection) -> tuple[int, str] | None:
    """The last (seq, hash); fetched whole, so the connection is free for what comes next."""
    found = conn.execute("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetchall()
    return (int(found[0][0]), str(found[0][1])) if found else None


def _anchor_mac(prev: str, seq: int, digest: str, alg: str, key: bytes | None) -> str:
    """An anchor line's MAC: over the line before's MAC and this line's head, keyed with the
    audit key (plain SHA-256 when there is none: that finds accidents only)."""
    message = "anchor\n" + prev + "\n" + canonical({"alg": alg, "hash": digest, "seq": seq})
    if alg == KEYED:
        assert key is not None
        return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()
    return hashlib.sha256(message.encode()).hexdigest()


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
        if row["alg"] == KEYED and (key is None or not _recomputes(row, key)):
            return  # not this trail's key (nothing was recorded with it either): leave it be
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


@dataclass
class AnchorFile:
    """What the anchor file says, checked line by line with the key."""

    exists: bool = False
    heads: dict[int, set[str]] = field(default_factory=dict)  # seq -> hashes anchored for it
    keyed: int = 0  # lines with a keyed MAC
    verified: int = 0  # of those, the ones whose MAC verifies with the configured key
    # (line number, seq, what is wrong) when the file itself was tampered with
    problem: tuple[int, int, str] | None = None
    warnings: list[str] = field(default_factory=list)


def read_anchors(path: Path, key: bytes | None = None) -> AnchorFile:
    """Every head ever anchored (more than one hash for a seq means the chain was cut and grown
    again), and whether the lines' MACs chain. Lines written before anchors carried a MAC have
    none; once one line has a MAC, every later one must."""
    found = AnchorFile()
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return found
    found.exists = True
    prev, maced, keyed_seen, failed = GENESIS, False, False, []

    def bad(number: int, seq: int, what: str) -> None:
        if found.problem is None:
            found.problem = (number, seq, what)

    for number, line in enumerate(lines, 1):
        try:
            item = json.loads(line)
            seq, digest = int(item["seq"]), str(item["hash"])
        except (ValueError, KeyError, TypeError):
            found.warnings.append(f"anchor line {number} cannot be read (a write cut short?)")
            continue
        found.heads.setdefault(seq, set()).add(digest)
        if "mac" not in item:
            if maced:
                bad(number, seq, "it carries no MAC after lines that do: the anchor was rewritten")
            continue
        maced, alg, mac = True, item.get("alg"), str(item["mac"])
        if alg == KEYED:
            keyed_seen, found.keyed = True, found.keyed + 1
            if key is not None:
                if hmac.compare_digest(_anchor_mac(prev, seq, digest, KEYED, key), mac):
                    found.verified += 1
                else:
                    failed.append((number, seq))
        elif alg == UNKEYED:
            if keyed_seen:
                bad(number, seq, "an unkeyed line after keyed ones: the anchor was rewritten "
                    "without the key")  # fmt: skip
            elif not hmac.compare_digest(_anchor_mac(prev, seq, digest, UNKEYED, None), mac):
                bad(number, seq, "it does not chain to the line before: lines were changed, "
                    "inserted, removed or reordered")  # fmt: skip
        else:
            bad(number, seq, f"unknown alg {str(alg)[:20]!r}")
        prev = mac
    if failed and found.verified:
        number, seq = failed[0]
        bad(number, seq, "its MAC does not verify with the audit key while other lines' do: "
            "lines were changed, inserted, removed or reordered")  # fmt: skip
    return found


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


def verify(
    conn: Connection,
    key: bytes | None,
    anchor_path: Path | None,
    expect_head: tuple[int, str] | None = None,
) -> Verdict:
    """Walk every event: seq contiguous from 1, each prev_hash the previous hash, each hash
    recomputed from strictly parsed canonical JSON, every event guarded; then the anchor file:
    present, its lines' MACs chained, every head it names in the trail; then, when given, the
    head recorded somewhere else (`expect_head`). Stops at the first bad seq.

    "Wrong key" (unverifiable, not a finding) is said only when nothing verifies with the
    configured key: no event before the first bad one, and no line of the anchor. Once anything
    verifies, the key is right and a hash that does not recompute is tampering."""
    expected, prev, checked = 1, GENESIS, 0
    first_keyed: dict[str, Any] | None = None
    warnings: list[str] = []
    anchored = read_anchors(anchor_path, key) if anchor_path else AnchorFile()
    warnings.extend(anchored.warnings)
    proven = anchored.verified > 0  # the key verifies something: it is the trail's key
    seen_at_expected: str | None = None
    cursor = conn.execute(f"SELECT {COLUMNS} FROM audit_events ORDER BY seq")
    names = [c[0] for c in cursor.description]

    def broken(seq: int, problem: str) -> Verdict:
        return Verdict(False, checked, seq, problem, warnings)

    if anchored.problem is not None:
        number, seq, what = anchored.problem
        return broken(seq, f"anchor file {anchor_path}, line {number}: {what}")

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
                first_keyed = first_keyed or row
                if key is None:
                    return Verdict(
                        False, checked, seq,
                        "the trail is keyed and no audit key is configured; set "
                        "RECON_AUDIT_KEY (or audit_key_file) to its key and run again",
                        warnings, unverifiable=True,
                    )  # fmt: skip
            elif row["alg"] != UNKEYED:
                return broken(seq, f"unknown alg {str(row['alg'])[:20]!r}")
            elif first_keyed is not None:
                return broken(seq, "an unkeyed row after keyed ones: the chain was recomputed")
            try:
                recomputed = _hash(_row_event(row), prev, key)
            except NotCanonical as exc:
                return broken(
                    seq,
                    f"{exc}: the stored JSON was edited (what DuckDB's JSON functions show "
                    "could differ from what was hashed)",
                )
            except (ValueError, TypeError) as exc:
                return broken(seq, f"the row cannot be decoded ({type(exc).__name__})")
            if not hmac.compare_digest(recomputed, row["hash"]):
                if row["alg"] == KEYED and not proven and anchored.heads:
                    return Verdict(
                        False, checked, seq,
                        "the configured audit key is not the one this trail was written with: "
                        "neither its events nor the anchor file's lines verify with it; set "
                        "RECON_AUDIT_KEY (or audit_key_file) to the right key and run again (if "
                        "it is the right key, the whole trail and its anchor were replaced)",
                        warnings, unverifiable=True,
                    )  # fmt: skip
                return broken(
                    seq,
                    "the hash does not recompute: a field of this row was changed, or "
                    "the chain was recomputed with another key",
                )
            proven = proven or row["alg"] == KEYED
            if seq in anchored.heads and anchored.heads[seq] != {row["hash"]}:
                return broken(
                    seq,
                    "the hash differs from the one anchored outside the database: the "
                    "chain was recomputed, or cut and grown again, from here or before",
                )
            if expect_head is not None and seq == expect_head[0]:
                seen_at_expected = row["hash"]
            prev, expected, checked = row["hash"], expected + 1, checked + 1
    end = expected - 1
    last = (end, prev) if checked else None
    try:
        guard = conn.execute(
            f"SELECT min(seq) FROM (SELECT {COLUMNS} FROM audit_events "
            f"EXCEPT SELECT {COLUMNS} FROM audit_guard)"
        ).fetchone()
    except QueryError:
        return broken(1, "the guard table audit_guard was dropped")
    if guard and guard[0] is not None:
        return broken(int(guard[0]), "the guard row of this event was removed or altered")
    if not checked:
        holding = _audited_rows(conn)
        if holding:
            return broken(
                1,
                f"the trail is empty while the store holds data ({holding}), every row of "
                "which was written with an audit event: the events were deleted",
            )
    unaccounted = _unaccounted(conn) if checked else None
    if unaccounted:
        return broken(
            end + 1,
            f"{unaccounted} has no event in the trail, though both are written in one "
            "transaction: events were cut off the end (with the anchor lines naming them)",
        )
    if first_keyed is None and checked:
        if key is not None:
            return broken(
                1,
                "an audit key is configured but no event is keyed: the trail was rechained "
                "without the key (a downgrade), or the key was set for a trail written without "
                "one and `recon audit start-key` was not run yet (see README, Audit trail)",
            )
        if anchored.keyed:
            return broken(
                1,
                "the anchor file was written with an audit key but no event is keyed: the "
                "trail was rechained without the key (a downgrade)",
            )
        warnings.append(
            "the chain is not keyed (no RECON_AUDIT_KEY when it was written): accidental "
            "edits are detected, but someone able to write the database could recompute it"
        )
    elif first_keyed is not None and first_keyed["seq"] > 1:
        how = "`recon audit start-key`" if first_keyed["action"] == START_KEY else "automatically"
        warnings.append(
            f"events 1 to {first_keyed['seq'] - 1} were written without an audit key; the trail "
            f"is keyed from seq {first_keyed['seq']} on (started {how}, "
            f"{first_keyed['ts'].isoformat()}, by {first_keyed['actor']})"
        )
    if anchor_path is not None:
        if not anchored.heads and checked:
            if conn in _started_on:
                pass  # this very command began the trail: its head is anchored as it ends
            elif first_keyed is not None or key is not None:
                return broken(
                    1,
                    f"the anchor file {anchor_path} is missing or empty while the trail has "
                    f"{checked} event(s): a keyed trail always has one (every command anchors "
                    "its head), so it was deleted, or the database was moved without it",
                )
            else:
                warnings.append(f"no anchor file at {anchor_path}: a cut-off tail would go unseen")
        elif key is not None and anchored.keyed and not anchored.verified and checked:
            return broken(
                1,
                f"no line of the anchor file {anchor_path} verifies with the audit key, while "
                "the events do: the anchor file was replaced",
            )
        elif anchored.heads and max(anchored.heads) > end:
            return broken(
                end + 1,
                f"the anchor records seq {max(anchored.heads)}, but the trail ends at seq {end}: "
                "rows were cut off the end",
            )
    if expect_head is not None:
        seq, digest = expect_head
        if seq > end:
            return broken(
                end + 1,
                f"the head recorded outside is seq {seq}, but the trail ends at seq {end}: rows "
                "were cut off the end (and the anchor file with them), or this is an older copy",
            )
        if not hmac.compare_digest(seen_at_expected or "", digest):
            return broken(
                seq,
                "the hash differs from the head recorded outside: the chain was recomputed, "
                "or cut and grown again, from here or before",
            )
    return Verdict(True, checked, None, None, warnings, last)


def _unaccounted(conn: Connection) -> str | None:
    """The first configuration version, or ingested file (since the trail began), whose event
    is not in the trail; None when each has its event."""
    [(version, file_id)] = conn.execute(
        """
        SELECT
            (SELECT min(v.version) FROM config_versions v WHERE NOT EXISTS (
                SELECT 1 FROM audit_events e WHERE e.action = 'config.change'
                  AND TRY_CAST(json_extract_string(e.details, '$.version') AS BIGINT) = v.version)),
            (SELECT min(f.file_id) FROM ingested_files f
             WHERE f.ingested_at >= (SELECT min(ts) FROM audit_events) AND NOT EXISTS (
                SELECT 1 FROM audit_events e WHERE e.action = 'ingest' AND e.outcome = 'success'
                  AND json_extract_string(e.details, '$.sha256') = f.sha256))
        """
    ).fetchall()
    if version is not None:
        return f"configuration version {version}"
    if file_id is not None:
        return f"ingested file {file_id}"
    return None


def _audited_rows(conn: Connection) -> str:
    """'3 row(s) in ingested_files, ...' for the audited tables that hold rows ('' if none)."""
    present = {
        row[0]
        for row in conn.execute(
            "SELECT table_name FROM duckdb_tables() WHERE list_contains(?, table_name)",
            [list(AUDITED_TABLES)],
        ).fetchall()
    }
    tables = [name for name in AUDITED_TABLES if name in present]
    if not tables:
        return ""
    counts = conn.execute(
        " UNION ALL ".join(f"SELECT '{name}', count(*) FROM {name}" for name in tables)
    ).fetchall()
    return ", ".join(f"{count} row(s) in {name}" for name, count in counts if count)


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
