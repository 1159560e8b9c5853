"""The JSON API of `recon serve`, for flows that cannot write files: transactions in, runs closed.

    POST /api/v1/sources/<source>/runs/<run_id>/transactions   JSON array, object or JSON Lines
    POST /api/v1/sources/<source>/runs/<run_id>/complete        the run is finished

Each call needs `Authorization: Bearer <token>` for that source (`recon token create`). The
rows go through the same validation, masking and quarantine as files (the body becomes one
ingested "file", so posting the same body twice changes nothing), and the answer says what was
loaded and quarantined, and why. Errors are JSON: 401 bad token, 403 another source's token,
400 a body that is not JSON (naming the line and column), 503 the store is busy.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from starlette.responses import JSONResponse

from reconcile import audit, db, export, ingest, tokens, watchdog
from reconcile.errors import DatabaseError, DatabaseLockedError, InputFileError
from reconcile.settings import Settings

MAX_BODY_BYTES = 64 * 1024 * 1024
READS = ("monitors", "runs", "reconciliation", "failures")
BUSY = "the store is busy (another process holds its lock): retry shortly"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _bearer(header: str) -> str:
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


def _rows(body: bytes) -> list[Any]:
    """The posted rows: a JSON array, one object, or JSON Lines. Numbers stay as written."""
    text = body.decode("utf-8-sig")
    try:
        parsed = json.loads(text, parse_float=str, parse_int=str)
        return parsed if isinstance(parsed, list) else [parsed]
    except json.JSONDecodeError as whole:
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) <= 1 or text.lstrip().startswith("["):
            raise ValueError(
                f"not JSON: {whole.msg} at line {whole.lineno}, column {whole.colno}"
            ) from None
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line, parse_float=str, parse_int=str))
            except json.JSONDecodeError as broken:
                raise ValueError(
                    f"not JSON Lines: line {number}, column {broken.colno}: {broken.msg}"
                ) from None
        return rows


@contextmanager
def _session(settings: Settings, client: str | None) -> Iterator[db.Connection]:
    """The store for one request, with an audit trail naming the caller's address (and, once
    its token is checked, the token); the chain's head is anchored on the way out."""
    trail = audit.Trail(
        "anonymous",
        {"via": "http", "host": socket.gethostname(), "client": client or ""},
        settings.audit_key_bytes(),
        settings.anchor_path(),
    )
    with db.connect(Path(settings.db), settings.lock_timeout) as conn, audit.acting(trail):
        try:
            yield conn
        finally:
            audit.anchor(conn, settings.anchor_path())


def _authorise(
    conn: db.Connection, settings: Settings, header: str, source: str | None = None
) -> tuple[str, str] | JSONResponse:
    """(token name, its source), or the error to answer: 401 bad token, 403 another source's.
    Refusals are audited (`auth.failure`), never with the token presented."""
    now = settings.current_time()
    found = tokens.check(conn, _bearer(header), now=now)
    if found is not None and (source is None or found[1] == source):
        audit.identify(f"token:{found[0]}")
        return found
    if found is None:
        status, reason = 401, "missing, unknown or revoked token"
        answer = f"{reason}: send Authorization: Bearer <token>"
    else:
        status, reason = 403, f"token {found[0]!r} is for source {found[1]!r}, not {source!r}"
        answer = f"this token is for source {found[1]!r}, not {source!r}"
    audit.record_alone(
        conn,
        "auth.failure",
        source or "",
        now=now,
        outcome="denied",
        details={"status": status, "reason": reason},
    )
    return _error(status, answer)


def post_transactions(
    settings: Settings,
    folder: Path,
    source: str,
    run_id: str,
    header: str,
    body: bytes,
    client: str | None = None,
) -> JSONResponse:
    if len(body) > MAX_BODY_BYTES:
        return _error(413, f"body over {MAX_BODY_BYTES // (1024 * 1024)} MB: send the run in parts")
    try:
        with _session(settings, client) as conn:
            who = _authorise(conn, settings, header, source)
            if isinstance(who, JSONResponse):
                return who
            try:
                rows = _rows(body)
            except (ValueError, UnicodeDecodeError) as exc:
                return _error(400, str(exc))
            if not rows:
                return _error(400, "no transactions in the body")
            if not all(isinstance(row, dict) for row in rows):
                bad = next(i for i, row in enumerate(rows, start=1) if not isinstance(row, dict))
                return _error(400, f"item {bad} is not a JSON object with the canonical fields")
            return _ingest(conn, settings, folder, source, run_id, who[0], rows)
    except DatabaseLockedError:
        return _error(503, BUSY)
    except DatabaseError as exc:
        return _error(503, str(exc))


def _ingest(
    conn: db.Connection,
    settings: Settings,
    folder: Path,
    source: str,
    run_id: str,
    who: str,
    rows: list[dict[str, Any]],
) -> JSONResponse:
    """The rows as one JSON Lines file, ingested like any other; the file is removed after."""
    staging = folder / "api"
    staging.mkdir(mode=0o700, exist_ok=True)
    path = staging / f"{source}-{run_id}-{uuid.uuid4().hex[:8]}.jsonl"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    try:
        result = ingest.ingest_file(
            conn,
            path,
            source=source,
            config=settings.source(source),
            kind="processed",
            run_id=run_id,
            now=settings.current_time(),
            user=f"token:{who}",
            pan_key=settings.pan_key_bytes(),
            signal_monitors=False,  # the run is whole at .../complete
        )
    except InputFileError as exc:
        return _error(400, exc.problem + (f"; {exc.hint}" if exc.hint else ""))
    finally:
        path.unlink(missing_ok=True)  # the raw rows never stay on disk
    quarantined = db.fetch_dicts(
        conn,
        "SELECT line AS item, column_name AS column, reason FROM quarantine "
        "WHERE file_id = ? ORDER BY line",
        [result.file_id],
    )
    payload = {
        "source": source,
        "run_id": run_id,
        "rows_read": result.rows_read,
        "rows_loaded": result.rows_loaded,
        "rows_quarantined": result.rows_quarantined,
        "already_ingested": result.already_ingested,
        "quarantined": quarantined,
    }
    return JSONResponse(json.loads(export.json_line(payload)))


def complete_run(
    settings: Settings, source: str, run_id: str, header: str, client: str | None = None
) -> JSONResponse:
    try:
        with _session(settings, client) as conn:
            who = _authorise(conn, settings, header, source)
            if isinstance(who, JSONResponse):
                return who
            now = settings.current_time()
            with db.transaction(conn):
                conn.execute(
                    "INSERT OR REPLACE INTO run_completions VALUES (?, ?, ?, ?)",
                    [source, run_id, now, f"token:{who[0]}"],
                )
                watchdog.runs_arrived(
                    conn, source, [run_id], now=now, origin="http", what=f"run {run_id} completed"
                )
                audit.record(conn, "run.complete", f"{source}:{run_id}", now=now)
            summary = db.fetch_dicts(
                conn,
                "SELECT rows_loaded, rows_succeeded, rows_failed, rows_quarantined FROM runs "
                "WHERE source = ? AND run_id = ?",
                [source, run_id],
            )
    except DatabaseError:
        return _error(503, BUSY)
    totals = summary[0] if summary else {"rows_loaded": 0}
    return JSONResponse(
        {"source": source, "run_id": run_id, "completed_at": now.isoformat(), **totals}
    )


def read(
    settings: Settings, header: str, what: str, query: dict[str, str], client: str | None = None
) -> JSONResponse:
    """Token-protected reads: monitors, runs, a day's reconciliation, a day's failures. Rows of
    runs, reconciliation and failures are limited to the token's source; results are as of the
    last reconcile."""
    from datetime import date as Date

    from reconcile import compare, failures, runs, watchdog

    if what not in READS:
        return _error(404, f"no such resource; the API reads {', '.join(READS)}")
    chosen = [c for c in query.get("category", "failed").split(",") if c]
    if not set(chosen) <= set(compare.CATEGORIES):
        return _error(400, f"category must be among {', '.join(compare.CATEGORIES)}")
    try:
        day = Date.fromisoformat(query["date"]) if query.get("date") else None
    except ValueError:
        return _error(400, f"date must be YYYY-MM-DD, got {query.get('date')!r}")
    try:
        with _session(settings, client) as conn:
            found = _authorise(conn, settings, header)
            if isinstance(found, JSONResponse):
                return found
            source = found[1]
            now = settings.current_time()
            if what == "monitors":
                payload: dict[str, Any] = {"monitors": watchdog.list_monitors(conn, now)}
            elif what == "runs":
                payload = {"runs": runs.list_runs(conn, source, day, day)}
            elif day is None:
                return _error(400, f"give the business date: /api/v1/{what}?date=YYYY-MM-DD")
            elif what == "reconciliation":
                payload = {
                    "days": db.fetch_dicts(
                        conn,
                        "SELECT * FROM day_results WHERE source = ? AND business_date = ? "
                        "ORDER BY version DESC LIMIT 1",
                        [source, day],
                    )
                }
            else:
                payload = {
                    "failures": failures.list_failures(
                        conn, day, day, categories=chosen, source=source, now=now
                    )
                }
            audit.record_alone(  # reading (masked) data is an access
                conn,
                "api.read",
                f"{source}:{what}",
                now=now,
                details={"date": day, "categories": chosen if what == "failures" else None},
            )
    except DatabaseError:
        return _error(503, BUSY)
    return JSONResponse(json.loads(export.json_line(payload)))
