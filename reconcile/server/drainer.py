"""The drainer: a process forked by `recon serve` that records the spool into the store.

A ping is acknowledged only once it is in the spool on disk (`watch.spool`). Recording it takes
several DuckDB statements, about ten times the CPU of answering it, and in a thread of the
server it would hold the GIL that the requests wait for; so a process of its own records the
spool every `spool_drain_interval`, at a lower priority, and ends with the server.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import time
from pathlib import Path

from reconcile import logs, store
from reconcile.errors import DatabaseError
from reconcile.settings import Settings
from reconcile.watch import spool

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # prctl(2)

# Pings recorded each time the drainer takes the store (well under a second's work with
# `signals.apply_signals`), so that after a burst of pings an ingest or a `recon watch` gets
# the store within its lock timeout.
DRAIN_BATCH = 20_000


def drain_once(db_path: Path, folder: Path) -> None:
    """Record what waits in the spool (up to DRAIN_BATCH pings), unless another process holds
    the store."""
    if not spool.waiting(folder):
        return  # nothing to record: leave the database's lock to others
    try:
        with store.connect(db_path, lock_timeout=0.5) as conn:
            spool.drain(conn, folder, limit=DRAIN_BATCH)
    except DatabaseError:
        pass  # locked: the pings wait safely in the spool


def drain_while(parent: int, db_path: Path, folder: Path, interval: float) -> None:
    """The drainer's loop: drain every `interval` seconds while the server `parent` lives (a
    server killed with SIGKILL leaves its drainer to stop by itself)."""
    # Answering pings comes first: recording them can wait a moment, and `recon watch` drains
    # before it evaluates anything. At equal priority the drainer takes CPU the server needs
    # (ping benchmark on 2 cores with other work running: p99 17-35 ms, niced 10-13 ms).
    os.nice(10)
    while os.getppid() == parent:
        try:
            drain_once(db_path, folder)
        except Exception as exc:  # what could not be recorded stays spooled for the next try
            logs.event(
                log, logging.ERROR, "spool drain error", error=f"{type(exc).__name__}: {exc}"
            )
        next_at = time.monotonic() + interval
        while os.getppid() == parent and time.monotonic() < next_at:
            time.sleep(min(0.2, interval))


def fork_drainer(settings: Settings) -> int:
    """Start the drainer process; returns its pid. It is forked, not started afresh, so that it
    records pings with this process's settings: its redacting log handlers and the configured
    secrets it masks. Call it before any thread starts (uvicorn's, or one of DuckDB's while a
    connection is open): a forked child gets only the calling thread, and any lock another
    thread held stays locked for it."""
    folder = spool.folder_for(Path(settings.db), settings.spool_dir)
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    try:  # the drainer
        _end_with_parent()
        drain_while(parent, Path(settings.db), folder, settings.spool_drain_interval)
    finally:
        os._exit(0)  # never return into the server's code (nor run its exit handlers)


def _end_with_parent() -> None:
    """Have Linux send this process SIGTERM when its parent ends, even mid-drain (uvicorn ends
    the server on SIGTERM by raising the signal again, so the server's own clean-up never runs).
    Elsewhere `drain_while` notices between drains."""
    with contextlib.suppress(OSError, AttributeError):  # AttributeError: no prctl, not Linux
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
