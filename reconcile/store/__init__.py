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

from reconcile.store import db, migrations
from reconcile.store.db import Connection

__all__ = ["Connection", "connect", "db", "migrations"]


@contextmanager
def connect(path: Path, lock_timeout: float = 30.0) -> Iterator[Connection]:
    """A migrated connection to the store, closed on exit."""
    new_file = not path.exists()
    conn = db.open_connection(path, lock_timeout)
    try:
        if new_file:
            os.chmod(path, 0o600)  # transaction logs are private to their owner
        migrations.migrate(conn)
        yield conn
    finally:
        conn.close()
