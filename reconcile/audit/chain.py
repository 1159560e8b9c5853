"""The chain's arithmetic: the canonical encoding, the hash of an event, a stored row read back
as the event that was hashed, the anchor lines' MACs. Shared by recording and verifying."""

from __future__ import annotations

import hashlib
import hmac
import json
import weakref
from datetime import UTC
from typing import Any

from reconcile.store.db import Connection

GENESIS = "0" * 64
KEYED, UNKEYED = "hmac-sha256", "sha256"
# A reader without the audit key records its access on a keyed trail as plain SHA-256 with this
# alg (see `reconcile.audit`, "Readers without the key"); only the actions below may be.
ACCESS = "sha256-access"
ACCESS_ACTIONS = frozenset({"failures.list", "export", "audit.log"})
MAX_VALUE_CHARS = 2000  # a longer text value in details is cut (with its length noted)
COLUMNS = "seq, ts, actor, origin, action, object, outcome, details, alg, prev_hash, hash"
START_KEY = "audit.start-key"  # the event that keys a trail written without a key
# Tables whose every row is written in the same transaction as an audit event: a store with
# rows in any of them and an empty trail had its events deleted.
AUDITED_TABLES = ("ingested_files", "reconciliations", "monitors", "api_tokens", "config_versions")


# Connections that wrote a trail's first event: its anchor file comes when they close, so a
# check made on one of them before that does not call the missing file a deletion.
_started_on: weakref.WeakSet[Connection] = weakref.WeakSet()


def canonical(value: Any) -> str:
    """The one encoding that is hashed: sorted keys, no spaces, UTF-8 as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def last_keyed(conn: Connection) -> dict[str, Any] | None:
    """The last keyed event (None on a trail never keyed)."""
    cursor = conn.execute(
        f"SELECT {COLUMNS} FROM audit_events WHERE alg = ? ORDER BY seq DESC LIMIT 1", [KEYED]
    )
    names = [c[0] for c in cursor.description]
    found = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    return found[0] if found else None


def _hash(event: dict[str, Any], prev: str, key: bytes | None) -> str:
    message = (prev + "\n" + canonical(event)).encode()
    if event["alg"] == KEYED:
        assert key is not None
        return hmac.new(key, message, hashlib.sha256).hexdigest()
    return hashlib.sha256(message).hexdigest()


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
