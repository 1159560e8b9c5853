"""The store's low-level helpers: the only module that imports duckdb.

Connections are short-lived: a command opens the file (`reconcile.store.connect`, which also
migrates), does its work and closes, so the CLI, the watchdog and the HTTP server can take turns
on one file. DuckDB allows one writing process at a time; when another holds the lock we retry
with backoff until `lock_timeout`. Nothing here knows the schema: `migrations` builds on this
module, and the package joins the two.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from reconcile.errors import DatabaseError, DatabaseLockedError

Connection = duckdb.DuckDBPyConnection
QueryError = duckdb.Error  # what a failed query raises; callers translate it
# What a commit that collided with another writer's raises (a write-write conflict, or a unique
# key another transaction took first): the whole transaction can be tried again.
WriteConflict = (duckdb.TransactionException, duckdb.ConstraintException)
# What work past the memory limit raises when DuckDB cannot spill enough of it.
OutOfMemory = duckdb.OutOfMemoryException


def _is_lock_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


DEFAULT_MEMORY_LIMIT = "1GB"  # the `memory_limit` setting's default (reconcile.settings)


def temp_folder(path: Path) -> Path:
    """Where the engine spills what does not fit in `memory_limit`: beside the database."""
    return path.with_name(path.name + ".tmp")


# Open connections per spill folder in this process (connections to one file share one DuckDB
# instance, and so its spill folder): the folder goes only when the last of them does.
_spill_users: dict[str, int] = {}
_spill_guard = threading.Lock()
_release: weakref.WeakKeyDictionary[Connection, weakref.finalize] = weakref.WeakKeyDictionary()


def _use_folder(folder: Path) -> None:
    with _spill_guard:
        _spill_users[str(folder)] = _spill_users.get(str(folder), 0) + 1
        folder.mkdir(mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)  # also when it was left behind with other bits


def _remove_if_empty(folder: Path) -> None:
    with _spill_guard:
        left = _spill_users.get(str(folder), 1) - 1
        if left > 0:
            _spill_users[str(folder)] = left
            return
        _spill_users.pop(str(folder), None)
        with contextlib.suppress(OSError):  # only when empty
            folder.rmdir()


def _open(path: Path, memory_limit: str) -> Connection:
    # Nothing may be downloaded at run time: only the statically linked extensions are used.
    conn = duckdb.connect(str(path), config={"autoinstall_known_extensions": False})
    conn.execute("SET TimeZone = 'UTC'")  # timestamps are stored and shown in UTC
    # DuckDB draws its own progress bar on stderr for a query past 2 s, terminal or not: a
    # cron job's mail would carry it. recon shows its own progress where a person watches.
    conn.execute("SET enable_progress_bar = false")
    # Bounded memory at any size: past the limit, joins, aggregates and temporary tables spill
    # to a folder of this user's alone (what spills is what the store holds: masked rows; an
    # ingest masks in the same streaming SELECT that reads the file). DuckDB deletes its
    # spill files; the folder goes with the last connection of this process, if empty.
    folder = temp_folder(path)
    _use_folder(folder)
    _release[conn] = weakref.finalize(conn, _remove_if_empty, folder)
    conn.execute(f"SET temp_directory = {sql_literal(str(folder))}")
    conn.execute(f"SET memory_limit = {sql_literal(memory_limit)}")
    return conn


def close_connection(conn: Connection) -> None:
    """Close `conn` and let its spill folder go (when no other connection uses it and it is
    empty). A connection only closed lets it go when it is collected."""
    conn.close()
    release = _release.pop(conn, None)
    if release is not None:
        release()


def open_connection(
    path: Path, lock_timeout: float, memory_limit: str = DEFAULT_MEMORY_LIMIT
) -> Connection:
    """Open `path` for writing, waiting for another process's lock up to `lock_timeout` s;
    the engine may use `memory_limit` (e.g. "1GB") and spills the rest beside the file."""
    if path.parent and not path.parent.exists():
        raise DatabaseError(
            f"cannot create database {path}: folder {path.parent} does not exist; "
            f"create it or point --db / RECON_DB elsewhere"
        )
    refuse_shared_folder(path.parent)
    retrying = Retrying(
        retry=retry_if_exception(_is_lock_conflict),
        # 50 ms, 100 ms, 200 ms ... up to 1 s, with jitter so waiting processes do not collide.
        wait=wait_exponential(multiplier=0.05, max=1.0) + wait_random(0, 0.05),
        stop=stop_after_delay(max(lock_timeout, 0.0)),
        reraise=False,
    )
    try:
        return retrying(_open, path, memory_limit)
    except RetryError:
        raise DatabaseLockedError(
            f"database {path} is locked by another recon process (waited {lock_timeout:g}s); "
            f"wait for it to finish or raise lock_timeout (RECON_LOCK_TIMEOUT)"
        ) from None
    except duckdb.Error as exc:
        raise DatabaseError(f"cannot open database {path}: {exc}") from None


def refuse_shared_folder(folder: Path) -> None:
    """A data folder anyone may write to lets anyone replace the database or plant its WAL
    (or the audit anchor) before we open it: refuse, and say how to fix it."""
    mode = (folder if str(folder) else Path(".")).stat().st_mode
    if mode & stat.S_IWOTH:
        raise DatabaseError(
            f"refusing to keep the database in {folder.resolve()}: the folder is world-writable "
            f"(mode {stat.S_IMODE(mode):o}), so anyone on this machine could replace the database "
            f"or its files; use a private folder (--db / RECON_DB), or run chmod o-w {folder}"
        )


# One writer at a time per database file within this process. Connections of one process to one
# file share one DuckDB instance, which the file lock does not serialise: two of them (the
# server's request threads) could otherwise both read the audit chain's head and append after
# it. Across processes DuckDB's file lock already lets only one process in.
_locks: dict[str, threading.RLock] = {}
_lock_of: weakref.WeakKeyDictionary[Connection, threading.RLock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def write_lock(conn: Connection) -> threading.RLock:
    """The process-wide lock of the database `conn` is open on (reentrant: a thread that holds it
    may take it again, for another connection to the same file too)."""
    with _locks_guard:
        found = _lock_of.get(conn)
    if found is not None:
        return found
    row = conn.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()
    with _locks_guard:
        if row is None or row[0] is None:  # in memory: a database of its own
            found = threading.RLock()
        else:
            found = _locks.setdefault(os.path.realpath(row[0]), threading.RLock())
        _lock_of[conn] = found
    return found


@contextmanager
def transaction(conn: Connection) -> Iterator[Connection]:
    """All or nothing: commit on success, roll back on any exception. Write transactions on one
    database take turns within the process (`write_lock`, held until commit or rollback), so
    each one starts from what the one before committed."""
    with write_lock(conn):
        conn.execute("BEGIN TRANSACTION")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            conn.execute("SET TimeZone = 'UTC'")  # the store's zone, whatever the work set
            raise
        conn.execute("COMMIT")


@contextmanager
def session_time_zone(conn: Connection, zone: str) -> Iterator[Connection]:
    """Run with `zone` as the session time zone, so that casting a naive time to TIMESTAMPTZ
    reads it in that zone (one cast, instead of a test for an offset and a conversion)."""
    conn.execute(f"SET TimeZone = {sql_literal(zone)}")
    try:
        yield conn
    except BaseException:
        # In a failed transaction even SET is refused: the query's own error goes on, and
        # `transaction` puts the zone back after its rollback.
        with suppress(duckdb.Error):
            conn.execute("SET TimeZone = 'UTC'")
        raise
    conn.execute("SET TimeZone = 'UTC'")


def fetch_dicts(
    conn: Connection, sql: str, params: list[object] | dict[str, object] | None = None
) -> list[dict]:
    """Run a query (positional or named parameters) and return rows as dicts by column name."""
    cursor = conn.execute(sql, params if params is not None else [])
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def sql_literal(value: str) -> str:
    """A string as a SQL literal, for the places DuckDB takes no parameter (reader options)."""
    return "'" + value.replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    """A column name as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def single_threaded(conn: Connection) -> Iterator[Connection]:
    """Run with one thread: about half the working memory of two (each thread builds its own
    partitions), at about half the speed; the setting in force before comes back after."""
    row = conn.execute("SELECT current_setting('threads')").fetchone()
    before = int(row[0]) if row else 1
    conn.execute("SET threads = 1")
    try:
        yield conn
    finally:
        conn.execute(f"SET threads = {before}")
