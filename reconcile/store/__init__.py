"""The store: one DuckDB file, its connections, write path and migrations.

`connect` is the way in: open the file (waiting for another process's lock), migrate it, and
close it on the way out. The two halves it joins point one way: `db` (the duckdb import, lock
retry, transactions, small helpers) knows no schema, and `migrations` builds the schema on
`db`; neither imports the other back.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reconcile.errors import DatabaseError
from reconcile.store import db, migrations
from reconcile.store.db import Connection

__all__ = ["Connection", "NoDatabase", "connect", "db", "migrations"]


class NoDatabase(DatabaseError):
    """A command that only reads was pointed where there is no store: it creates none."""


@contextmanager
def connect(
    path: Path,
    lock_timeout: float = 30.0,
    *,
    create: bool = True,
    memory_limit: str = db.DEFAULT_MEMORY_LIMIT,
) -> Iterator[Connection]:
    """A migrated connection to the store, closed on exit. `create=False`: a missing file is
    refused (NoDatabase), and nothing is created. The engine may use `memory_limit` and
    spills the rest to a private folder beside the file."""
    new_file = not path.exists()
    if new_file and not create:
        raise NoDatabase(f"no database at {path.absolute()} (set RECON_DB or --db)")
    conn = db.open_connection(path, lock_timeout, memory_limit)
    try:
        if new_file:
            os.chmod(path, 0o600)  # transaction logs are private to their owner
        if new_file or not _up_to_date(conn):
            migrations.migrate(conn)
        yield conn
    finally:
        db.close_connection(conn)


def _up_to_date(conn: Connection) -> bool:
    """Every schema step is recorded already: the common case, seen in one query (every
    command opens the store), after which `migrations.migrate` has nothing to do."""
    try:
        done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations").fetchall()}
    except db.QueryError:  # no schema yet (a file made by an older recon, or empty)
        return False
    return all(name in done for name, _ in migrations.MIGRATIONS)
