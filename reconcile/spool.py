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
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from reconcile import watchdog
from reconcile.db import Connection

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


def append(folder: Path, ping: Ping) -> None:
    """Write one ping durably (fsync) before the caller acknowledges it."""
    line = (json.dumps(ping.as_json(), ensure_ascii=False) + "\n").encode()
    with _append_lock:
        fd = os.open(folder / PENDING, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)


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
    """Record spooled pings as signals (each once); returns how many were new."""
    recorded = 0
    for path in _rotate(folder):
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash mid-write was never acknowledged
            seen = conn.execute(
                "SELECT count(*) FROM signals WHERE request_id = ?", [entry["request_id"]]
            ).fetchone()
            if seen and seen[0]:
                continue
            try:
                watchdog.record_signal(
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
