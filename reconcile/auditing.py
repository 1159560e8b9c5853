"""The audit trail's use cases, each on a session: verify it, print its head, key it, read it.

Each one records itself in the trail (checking or reading the trail is an action too), at the
session's `now`. The chain's rules and its verification are in `reconcile.audit`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reconcile import audit
from reconcile.errors import ConfigError
from reconcile.session import Session


def verify_trail(session: Session, expect_head: tuple[int, str] | None = None) -> audit.Verdict:
    """Every event of the chain, the anchor file and (when given) a head kept elsewhere; the
    check is recorded as `audit.verify`, except on a chain it must not extend (broken, or keyed
    with another key): then the verdict's warnings say it was not recorded."""
    settings = session.settings
    verdict = audit.verify(
        session.conn, settings.audit_key_bytes(), settings.anchor_path(), expect_head
    )
    try:
        session.record_alone(
            "audit.verify",
            outcome="success" if verdict.intact else "failure",
            details={
                "checked": verdict.checked,
                "first_bad_seq": verdict.first_bad_seq,
                "problem": verdict.problem,
            },
        )
    except ConfigError as exc:  # a broken or foreign-keyed chain is not extended
        if not verdict.unverifiable:  # else the verdict already says why, and what to do
            verdict.warnings.append(f"this check was not recorded: {exc}")
    return verdict


def record_head(session: Session) -> dict[str, Any]:
    """Reading the head is recorded as `audit.head`; that event is the head returned (seq,
    hash, alg, ts)."""
    seq = session.record_alone("audit.head")
    return audit.event_at(session.conn, seq)


def start_key(session: Session) -> tuple[audit.Verdict, int] | None:
    """Key a trail written without a key, from its next event on, after checking it: the check
    and the first keyed seq; None when the trail is keyed already. Open the session without
    its configuration sync: with a key configured, nothing else may be written first."""
    if audit.last_alg(session.conn) == audit.KEYED:
        return None
    verdict = audit.start_key(session.conn, session.settings.anchor_path(), now=session.now)
    start = audit.head(session.conn)
    return verdict, start[0] if start else 1


def read_log(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Events by time, actor, action family and object (see `audit.events`), oldest first;
    reading them is recorded as `audit.log`."""
    rows = audit.events(
        session.conn,
        since=since,
        until=until,
        actor=actor,
        action=action,
        target=target,
        limit=limit,
    )
    session.record_alone(
        "audit.log",
        details={"since": since, "until": until, "actor": actor, "action": action,
                 "object": target, "returned": len(rows)},
    )  # fmt: skip
    return rows
