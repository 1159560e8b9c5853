"""Bearer tokens for the HTTP API: one per source, shown once, stored only as a SHA-256.

A token is checked by hashing what the caller sent and comparing in constant time with the
stored hash, so neither the database nor a timing difference gives a token away.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Any

from reconcile import audit
from reconcile.db import Connection, fetch_dicts, transaction
from reconcile.errors import ReconError

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


def check(conn: Connection, presented: str, *, now: datetime) -> tuple[str, str] | None:
    """(token name, source) for a valid, unrevoked token, else None; records its use."""
    digest = _digest(presented)
    rows = conn.execute(
        "SELECT name, source, token_sha256 FROM api_tokens WHERE revoked_at IS NULL"
    ).fetchall()
    found = None
    for name, source, stored in rows:  # compare every one, in constant time each
        if hmac.compare_digest(stored, digest):
            found = (name, source)
    if found:
        conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE name = ?", [now, found[0]])
    return found
