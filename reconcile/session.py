"""One session per command or request: the store, the settings, the time and who is acting.

Every entry point (a `recon` command, an HTTP request, the mail watcher's pass) opens one
`Session` here and hands it to the library's use cases. So the clock is read once (a command
that runs for a minute still sees one `now`), "who" has one source (the audit trail's actor),
the audit trail is attached once, and the chain's head is anchored outside the database on the
way out, whatever happened.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from reconcile import audit, store, versions
from reconcile.settings import Settings


@dataclass(frozen=True)
class Session:
    """What a use case needs: `conn` (the store, migrated), `settings`, `now` (aware UTC,
    read once) and `trail` (the actor and origin every audit event names)."""

    conn: store.Connection
    settings: Settings
    now: datetime
    trail: audit.Trail

    @property
    def actor(self) -> str:
        return self.trail.actor

    def acting_as(self, actor: str) -> Session:
        """This session with another actor (an HTTP caller, once its token is checked): the
        audit events recorded from now on, and `actor`, name it."""
        audit.identify(actor)
        return replace(self, trail=replace(self.trail, actor=actor))

    def record(
        self,
        action: str,
        target: str | None = None,
        *,
        outcome: str = "success",
        details: dict[str, Any] | None = None,
    ) -> int:
        """An audit event inside the caller's transaction, at the session's `now`."""
        return audit.record(
            self.conn, action, target, now=self.now, outcome=outcome, details=details
        )

    def record_alone(
        self,
        action: str,
        target: str | None = None,
        *,
        outcome: str = "success",
        details: dict[str, Any] | None = None,
    ) -> int:
        """An audit event in a transaction of its own (a read, a refusal, a start or stop)."""
        return audit.record_alone(
            self.conn, action, target, now=self.now, outcome=outcome, details=details
        )


def trail_for(settings: Settings, via: str, actor: str | None = None, **origin: str) -> audit.Trail:
    """The trail of one entry point: `via` is "cli", "http" or "mail"; the actor defaults to
    the OS user running the process (never an environment variable)."""
    return audit.Trail(
        actor or audit.os_user(),
        {"via": via, "host": socket.gethostname(), **origin},
        settings.audit_key_bytes(),
        settings.anchor_path(),
    )


@contextmanager
def open_session(
    settings: Settings,
    trail: audit.Trail,
    *,
    now: datetime | None = None,
    lock_timeout: float | None = None,
    sync_config: bool = True,
    create: bool = True,
) -> Iterator[Session]:
    """Open the store (migrating it), make `trail` the active audit trail, record what changed
    in the configuration file since the last command (`sync_config`), and anchor the chain's
    head on the way out. `create=False` (a reading command): refuse where there is no store
    (`store.NoDatabase`), creating nothing."""
    when = now or settings.current_time()
    timeout = settings.lock_timeout if lock_timeout is None else lock_timeout
    with (
        store.connect(
            Path(settings.db), timeout, create=create, memory_limit=settings.memory_limit
        ) as conn,
        audit.acting(trail),
    ):
        try:
            if sync_config:
                versions.sync_file_config(conn, settings, when)
            yield Session(conn, settings, when, trail)
        finally:
            audit.anchor(conn, settings.anchor_path())
