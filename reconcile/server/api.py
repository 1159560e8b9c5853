"""The JSON API of `recon serve`, for flows that cannot write files: transactions in, runs closed.

    POST /api/v1/sources/<source>/runs/<run_id>/transactions   JSON array, object or JSON Lines
    POST /api/v1/sources/<source>/runs/<run_id>/complete        the run is finished

Each call needs `Authorization: Bearer <token>` for that source (`recon token create`). The
server (`app.py`) checks the token against the hashes it keeps in memory before it reads the
body or touches the store; the functions here run in a worker thread once it has, and check
the token again against the store, inside the request's store session. The rows go through the
same validation, masking and quarantine as files (the body becomes one ingested "file", kept in
memory only; posting the same body for the same run twice changes nothing), and the answer says
what was loaded and quarantined, and why. Errors are JSON: 401 bad token, 403 another source's
token, 400 a body that is not JSON (naming the line and column), 503 the store is busy or
failed.

One store session at a time in the server process (`exclusive`, around `_session`): DuckDB connections of one
process are not serialised by the file lock, and two of them writing at once conflict ("Conflict
on update") or fork the audit chain.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from starlette.responses import JSONResponse, Response

from reconcile import audit, logs, tokens
from reconcile import formats as export
from reconcile.errors import DatabaseError, DatabaseLockedError
from reconcile.ingest import runs
from reconcile.ingest.batch import Input, Refused, ingest_files
from reconcile.session import Session, open_session, trail_for
from reconcile.settings import Settings
from reconcile.store import db
from reconcile.watch import completion, views

MAX_BODY_BYTES = 64 * 1024 * 1024
READS = ("monitors", "runs", "reconciliation", "failures")
BUSY = "the store is busy (another process holds its lock): retry shortly"
FAILED = "the store could not answer ({}): retry shortly; the server log says more"
MAX_REST = 0.25  # seconds the store is left free after a session, at most
MAX_NAME_PART = 64  # characters of the source and run id in the in-memory file's name

_STORE = threading.Lock()
_rest_until = 0.0  # monotonic time before which the next session leaves the store alone
log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Refusal:
    """A token refused inside the store session (revoked since the server's last look)."""

    status: int
    reason: str
    answer: str

    def response(self) -> JSONResponse:
        return _error(self.status, self.answer)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def bearer(header: str) -> str:
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
def exclusive(timeout: float) -> Iterator[None]:
    """The server process's one store session at a time; DatabaseLockedError after `timeout`
    seconds of waiting for it."""
    if not _STORE.acquire(timeout=max(timeout, 0.0)):
        raise DatabaseLockedError(
            f"the store is busy in this server (waited {timeout:g}s for another request)"
        )
    global _rest_until
    # Leave the store free after a session for as long as it was held (up to MAX_REST): back
    # to back, sessions would leave an ingest or a `recon watch` waiting for DuckDB's file
    # lock no moment to take it, and the watchdog would go silent under busy clients. The
    # next session waits, not the caller of this one.
    started = time.monotonic()
    try:
        time.sleep(max(0.0, _rest_until - started))
        started = time.monotonic()
        yield
    finally:
        ended = time.monotonic()
        _rest_until = ended + min(ended - started, MAX_REST)
        _STORE.release()


def alone(work: Callable[[], T], timeout: float) -> T:
    """Run `work` (which opens the store itself) as this process's only store session."""
    with exclusive(timeout):
        return work()


@contextmanager
def _session(
    settings: Settings,
    client: str | None,
    actor: str = "anonymous",
    lock_timeout: float | None = None,
) -> Iterator[Session]:
    """The request's one session, alone in this process (`exclusive`): its `now` read once, an
    audit trail naming the caller's address (masked already) and, once its token is checked
    (`_recheck`), the token; the chain's head is anchored on the way out."""
    timeout = settings.lock_timeout if lock_timeout is None else lock_timeout
    trail = trail_for(settings, "http", actor, client=client or "")
    with (
        exclusive(timeout),
        open_session(settings, trail, lock_timeout=timeout, sync_config=False) as session,
    ):
        yield session


def _stored(call: Callable[[], JSONResponse | Refusal]) -> JSONResponse | Refusal:
    """Every store failure is a 503 (retry), never a 500."""
    try:
        return call()
    except DatabaseLockedError:
        return _error(503, BUSY)
    except (DatabaseError, db.QueryError, OSError) as exc:
        logs.event(log, logging.ERROR, "api store error", error=f"{type(exc).__name__}: {exc}")
        return _error(503, FAILED.format(type(exc).__name__))


@dataclass(frozen=True)
class Caller:
    """Who a request is, once its token is checked against the store: `session` acts as
    `token:<name>`."""

    session: Session
    token: str  # the token's name
    source: str  # the source it is for


def _recheck(session: Session, token: str, source: str | None) -> Caller | Refusal:
    """The token once more, against the store: revoked since the server's last look, it is
    refused here; else the session acts as the token from here on."""
    found = tokens.check(session.conn, token)
    if found is None:
        return Refusal(401, "revoked token", "missing, unknown or revoked token")
    if source is not None and found[1] != source:
        return Refusal(
            403,
            f"token {found[0]!r} is for source {found[1]!r}, not {source!r}",
            f"this token is for source {found[1]!r}, not {source!r}",
        )
    return Caller(session.acting_as(f"token:{found[0]}"), found[0], found[1])


def record_refusals(settings: Settings, summary: dict[str, Any], lock_timeout: float) -> None:
    """One `auth.failure` event summing the refusals the server counted (raises
    DatabaseError when the store cannot be had: the caller keeps the counts)."""
    with _session(settings, None, "anonymous", lock_timeout) as session:
        session.record_alone("auth.failure", "http", outcome="denied", details=summary)


def post_transactions(
    settings: Settings,
    folder: Path,
    source: str,
    run_id: str,
    token: str,
    body: bytes,
    client: str | None = None,
) -> JSONResponse | Refusal:
    """`source`, `run_id` and `client` arrive masked; `token` was matched by the server."""
    try:
        rows = _rows(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return _error(400, str(exc))
    del body
    if not rows:
        return _error(400, "no transactions in the body")
    if not all(isinstance(row, dict) for row in rows):
        bad = next(i for i, row in enumerate(rows, start=1) if not isinstance(row, dict))
        return _error(400, f"item {bad} is not a JSON object with the canonical fields")
    for row in rows:
        # The run id is part of what is ingested, hence of the idempotency key (the file's
        # SHA-256 per source): the same body posted to another run is that run's rows. A row
        # naming its own run keeps it, as in a file.
        if row.get("run_id") in (None, ""):
            row["run_id"] = run_id

    def work() -> JSONResponse | Refusal:
        name = f"{source[:MAX_NAME_PART]}-{run_id[:MAX_NAME_PART]}-{uuid.uuid4().hex[:8]}.jsonl"
        with (
            _in_memory(rows, folder / "api", name) as path,
            _session(settings, client, "anonymous") as opened,
        ):
            who = _recheck(opened, token, source)
            if isinstance(who, Refusal):
                return who
            return _ingest(who.session, path, source, run_id, who.token)

    return _stored(work)


def forget_old_staging(folder: Path) -> None:
    """Delete what earlier versions left in the spool's `api` folder: posted rows written as
    files (raw, card numbers included) and kept by a crash or a full disk. Links this version
    leaves behind point at no file once their process is gone, and are deleted too."""
    with contextlib.suppress(FileNotFoundError), os.scandir(folder / "api") as entries:
        for entry in entries:
            if entry.name.endswith(".jsonl") and (entry.is_symlink() or entry.is_file()):
                Path(entry.path).unlink(missing_ok=True)


@contextmanager
def _in_memory(rows: list[dict[str, Any]], folder: Path, name: str) -> Iterator[Path]:
    """The rows as JSON Lines in an anonymous in-memory file (memfd), named by a symbolic link
    in the spool's `api` folder: the raw rows, card numbers included, never touch the disk,
    and nothing of them outlives the process (a link left by a crash points nowhere)."""
    folder.mkdir(mode=0o700, exist_ok=True)
    fd = os.memfd_create("recon-api", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb", buffering=1 << 20) as handle:
            for row in rows:
                handle.write((json.dumps(row, ensure_ascii=False) + "\n").encode())
        link = folder / name
        os.symlink(f"/proc/self/fd/{fd}", link)
        try:
            yield link
        finally:
            link.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _ingest(session: Session, path: Path, source: str, run_id: str, who: str) -> JSONResponse:
    """The rows (in `path`) ingested as a file by the batch every entry point uses (refused or
    skipped, it is audited as on the command line); the token's use recorded. The file is named
    for the source and run it was posted to, not for where it was staged. The run's monitors
    hear it at `.../complete`, when it is whole, not here."""
    stem = f"{source[:MAX_NAME_PART]}-{run_id[:MAX_NAME_PART]}".replace("/", "_")
    batch = ingest_files(
        session, [Input(path, f"api/{stem}.jsonl")], source=source, kind="processed", run_id=run_id
    )
    [result] = batch.files
    if isinstance(result, Refused):
        return _error(400, result.problem + (f"; {result.hint}" if result.hint else ""))
    with db.transaction(session.conn):
        tokens.touch(session.conn, who, now=session.now)
    if result.already_ingested:  # nothing was loaded this time: say so, with zero counts
        payload: dict[str, Any] = {
            "source": source,
            "run_id": run_id,
            "rows_read": result.rows_read,
            "rows_loaded": 0,
            "rows_quarantined": 0,
            "already_ingested": True,
            "quarantined": [],
        }
        return JSONResponse(json.loads(export.json_line(payload)))
    payload = {
        "source": source,
        "run_id": run_id,
        "rows_read": result.rows_read,
        "rows_loaded": result.rows_loaded,
        "rows_quarantined": result.rows_quarantined,
        "already_ingested": False,
        "quarantined": runs.quarantined_in_file(session.conn, result.file_id),
    }
    return JSONResponse(json.loads(export.json_line(payload)))


def complete_run(
    settings: Settings, source: str, run_id: str, token: str, client: str | None = None
) -> JSONResponse | Refusal:
    def work() -> JSONResponse | Refusal:
        with _session(settings, client) as opened:
            who = _recheck(opened, token, source)
            if isinstance(who, Refusal):
                return who
            done = completion.complete_run(who.session, source, run_id, token=who.token)
        return JSONResponse({**done, "completed_at": done["completed_at"].isoformat()})

    return _stored(work)


def metrics(settings: Settings, client: str | None = None) -> Response | Refusal:
    """`GET /metrics`: the Prometheus metrics (`watch.metrics`), for a scraper; no token (names
    of monitors, sources and categories only, no record)."""
    from reconcile.watch import metrics as gathered

    def work() -> Response | Refusal:
        with _session(settings, client) as opened:
            numbers = gathered.gather(opened)
        return Response(gathered.render(numbers), media_type=gathered.content_type())

    return _stored(work)  # type: ignore[arg-type]


def read(
    settings: Settings, token: str, what: str, query: dict[str, str], client: str | None = None
) -> JSONResponse | Refusal:
    """Token-protected reads: monitors, runs, a day's reconciliation, a day's failures, all
    limited to the token's source (monitors: those linked to it, as `monitor add --source`; a
    monitor of no source, a heartbeat, is no source's and is not listed). A day's
    reconciliation and failures are reconciled first, as the command line does."""
    from datetime import date as Date

    from reconcile.ingest import runs
    from reconcile.reconciliation import compare, failures, refresh
    from reconcile.reconciliation.scope import Scope

    if what not in READS:
        return _error(404, f"no such resource; the API reads {', '.join(READS)}")
    chosen = [c for c in query.get("category", "failed").split(",") if c]
    if not set(chosen) <= set(compare.CATEGORIES):
        return _error(400, f"category must be among {', '.join(compare.CATEGORIES)}")
    try:
        day = Date.fromisoformat(query["date"]) if query.get("date") else None
    except ValueError:
        return _error(400, "date must be YYYY-MM-DD")
    if what in ("reconciliation", "failures") and day is None:
        return _error(400, f"give the business date: /api/v1/{what}?date=YYYY-MM-DD")

    def work() -> JSONResponse | Refusal:
        with _session(settings, client) as opened:
            caller = _recheck(opened, token, None)
            if isinstance(caller, Refusal):
                return caller
            conn, now = caller.session.conn, caller.session.now
            source = caller.source
            if what in ("reconciliation", "failures"):
                # Reading commands reconcile first, as on the command line: a run posted a
                # moment ago is in the answer (unchanged inputs add no version).
                refresh.refresh_stored(caller.session, Scope(source, since=day, until=day))
            if what == "monitors":
                # Every acknowledged ping counted, as `recon monitor list` counts them.
                payload: dict[str, Any] = {"monitors": views.listing(caller.session, source)}
            elif what == "runs":
                payload = {"runs": runs.list_runs(conn, source, day, day)}
            elif what == "reconciliation":
                payload = {"days": refresh.latest_days(conn, source, day)}
            else:
                assert day is not None  # checked before the session
                payload = {
                    "failures": failures.list_failures(
                        conn, day, day, categories=chosen, source=source, now=now
                    )
                }
            with db.transaction(conn):  # reading (masked) data is an access
                tokens.touch(conn, caller.token, now=now)
                audit.record(
                    conn,
                    "api.read",
                    f"{source}:{what}",
                    now=now,
                    details={"date": day, "categories": chosen if what == "failures" else None},
                )
        return JSONResponse(json.loads(export.json_line(payload)))

    return _stored(work)
