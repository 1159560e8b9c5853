"""Bearer tokens for the HTTP API: one per source, shown once, stored only as a SHA-256.

A token is checked by hashing what the caller sent and comparing in constant time with the
stored hash, so neither the database nor a timing difference gives a token away. `recon serve`
keeps the active tokens' hashes in memory (`active`), so that a request without a valid token is
refused without opening the store; a request with one is checked again against the store in its
own session (`check`), where its use is recorded (`touch`) in the same serialised session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Any

from reconcile import audit
from reconcile.errors import ReconError
from reconcile.store.db import Connection, fetch_dicts, transaction

PREFIX = "rct_"


class TokenError(ReconError):
    """A token that cannot be created or revoked as asked."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create(conn: Connection, name: str, source: str, *, now: datetime, user: str) -> str:
    """A new token for `source`; the only time its text exists outside the caller's hands."""
    token = PREFIX + secrets.token_urlsafe(32)
    with transaction(conn):
        exists = conn.execute("SELECT count(*) FROM api_tokens WHERE name = ?", [name]).fetchone()
        if exists and exists[0]:
            raise TokenError(f"a token named {name!r} exists; revoke it or pick another name")
        conn.execute(
            "INSERT INTO api_tokens VALUES (?, ?, ?, ?, ?, NULL, NULL)",
            [name, source, _digest(token), now, user],
        )
        audit.record(conn, "token.create", name, now=now, details={"source": source})
    return token


def revoke(conn: Connection, name: str, *, now: datetime) -> None:
    with transaction(conn):
        row = conn.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL "
            "RETURNING name",
            [now, name],
        ).fetchone()
        if row is not None:
            audit.record(conn, "token.revoke", name, now=now)
    if row is None:
        raise TokenError(f"no active token named {name!r}; see them with `recon token list`")


def list_tokens(conn: Connection) -> list[dict[str, Any]]:
    return fetch_dicts(
        conn,
        "SELECT name, source, created_at, created_by, last_used_at, revoked_at "
        "FROM api_tokens ORDER BY name",
    )


def active(conn: Connection) -> dict[str, tuple[str, str]]:
    """The unrevoked tokens: SHA-256 -> (token name, source)."""
    rows = conn.execute(
        "SELECT token_sha256, name, source FROM api_tokens WHERE revoked_at IS NULL"
    ).fetchall()
    return {stored: (name, source) for stored, name, source in rows}


def match(known: dict[str, tuple[str, str]], presented: str) -> tuple[str, str] | None:
    """(token name, source) of `presented` among `known` (from `active`), else None. Every
    stored hash is compared, each in constant time."""
    wanted = _digest(presented)
    found = None
    for stored, who in known.items():
        if hmac.compare_digest(stored, wanted):
            found = who
    return found


def check(conn: Connection, presented: str) -> tuple[str, str] | None:
    """(token name, source) for a valid, unrevoked token, else None. Records nothing: the
    caller records its use with `touch`, inside its own transaction."""
    return match(active(conn), presented)


def touch(conn: Connection, name: str, *, now: datetime) -> None:
    """Record that token `name` was used; call it inside the caller's transaction (two
    statements updating one row outside a transaction conflict)."""
    conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE name = ?", [now, name])
