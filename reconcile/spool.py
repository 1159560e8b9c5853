"""The ping spool: an acknowledged HTTP ping is on disk before its 2xx, whatever the database is
doing, and reaches the store exactly once.

`recon serve` appends each ping (masked) as one JSON line to `pending.jsonl` in the spool folder
and fsyncs it before answering. Draining (by the server every second, and by every `recon
watch` tick) first renames the file to `draining-<n>.jsonl` (so new pings start a new file),
then records each line as a signal, skipping ids already recorded, and deletes the file only
after that commit. A crash at any point leaves either the file or the committed signals, never
neither: if the database is locked by a long ingest, the file simply waits for the next drain.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from reconcile import watchdog
from reconcile.db import Connection, transaction

PENDING = "pending.jsonl"
_append_lock = threading.Lock()  # appends and the rename never interleave within the server


@dataclass(frozen=True)
class Ping:
    request_id: str
    monitor: str
    kind: str  # success | start | fail | log
    received_at: datetime
    exit_code: int | None = None
    body: str | None = None
    run_key: str | None = None
    client: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "received_at": self.received_at.isoformat()}


def folder_for(db: Path, configured: Path | None) -> Path:
    """The spool folder: configured, else `<database>.spool` beside the database file."""
    folder = configured or db.with_name(db.name + ".spool")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def append(folder: Path, pings: list[Ping]) -> None:
    """Write pings durably (one write, one fsync) before the caller acknowledges them."""
    data = b"".join(
        (json.dumps(ping.as_json(), ensure_ascii=False) + "\n").encode() for ping in pings
    )
    with _append_lock:
        fd = os.open(folder / PENDING, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


class Appender:
    """Group commit: one thread writes whatever pings are queued and fsyncs once per batch, then
    releases their requests; under load many pings share one fsync."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.queue: queue.SimpleQueue[tuple[Ping, Future[None]]] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="ping-spool", daemon=True).start()

    def submit(self, ping: Ping) -> Future[None]:
        done: Future[None] = Future()
        self.queue.put((ping, done))
        return done

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while len(batch) < 1000:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                append(self.folder, [ping for ping, _ in batch])
            except OSError as exc:
                for _, done in batch:
                    done.set_exception(exc)
                continue
            for _, done in batch:
                done.set_result(None)


def waiting(folder: Path) -> bool:
    """Whether any ping waits in the spool (checked before taking the database's lock)."""
    pending = folder / PENDING
    return (pending.exists() and pending.stat().st_size > 0) or any(folder.glob("draining-*.jsonl"))


def _rotate(folder: Path) -> list[Path]:
    """Move pending pings aside for draining; return every file waiting to be drained."""
    with _append_lock:
        pending = folder / PENDING
        if pending.exists() and pending.stat().st_size:
            pending.rename(folder / f"draining-{time.time_ns()}.jsonl")
    return sorted(folder.glob("draining-*.jsonl"))


def drain(conn: Connection, folder: Path) -> int:
    """Record spooled pings as signals (each once, one transaction per spool file); returns
    how many were new."""
    recorded = 0
    for path in _rotate(folder):
        entries = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash mid-write was never acknowledged
        with transaction(conn):
            seen = {
                row[0]
                for row in conn.execute(
                    "SELECT request_id FROM signals WHERE list_contains(?, request_id)",
                    [[e["request_id"] for e in entries]],
                ).fetchall()
            }
            for entry in entries:
                if entry["request_id"] in seen:
                    continue
                try:
                    watchdog.apply_signal(
                        conn,
                        entry["monitor"],
                        entry["kind"],
                        now=datetime.fromisoformat(entry["received_at"]),
                        exit_code=entry.get("exit_code"),
                        message=entry.get("body"),
                        origin=f"http {entry.get('client') or ''}".strip(),
                        request_id=entry["request_id"],
                        run_key=entry.get("run_key"),
                    )
                except watchdog.MonitorError:
                    continue  # the monitor was removed after the ping arrived
                recorded += 1
        path.unlink()
    return recorded
