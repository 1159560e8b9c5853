"""`recon serve`: healthchecks-compatible ping URLs over HTTP (Starlette, run by uvicorn).

    GET|POST|HEAD /ping/<uuid>                  success
                  /ping/<uuid>/start            a run started
                  /ping/<uuid>/fail             the run failed
                  /ping/<uuid>/log              a message, no change of state
                  /ping/<uuid>/<exit status>    0 is success, 1-255 failure
                  /ping/<ping-key>/<slug>[/...] the same, by monitor name
    ?rid=<id> pairs the start and the end of one run.

A ping is acknowledged (200 "OK") only once it is in the spool on disk (`spool.py`), so it is
never lost, even while an ingest holds the database or if the server dies right after
answering. A drainer process forked by `serve` records the spool into the store every
`spool_drain_interval`: recording a ping takes several DuckDB statements, about ten times the
CPU of answering it, and in a thread of the server it would hold the GIL that the requests wait
for. Request bodies are kept up to 10 kB (longer ones are cut there, and the answer says so),
masked (card numbers, configured secrets, URL paths) before they touch the disk. Unknown URLs
get 404; more than `ping_rate_limit` pings a minute for one monitor get 429.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import time
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from reconcile import api, db, logs, redact, spool
from reconcile.errors import DatabaseError
from reconcile.settings import Settings
from reconcile.watchdog import MAX_MESSAGE_BYTES

SUFFIXES = {"start": "start", "fail": "fail", "log": "log"}
log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # prctl(2)


class Directory:
    """Which monitor a ping URL names: a cache of the store, refreshed when it can be read."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.by_uuid: dict[str, str] = {}
        self.by_slug: dict[tuple[str, str], str] = {}
        self.loaded_at = 0.0

    def refresh(self) -> None:
        try:
            with db.connect(Path(self.settings.db), lock_timeout=0.5) as conn:
                monitors = conn.execute("SELECT ping_uuid, name FROM monitors").fetchall()
                keys = [row[0] for row in conn.execute("SELECT ping_key FROM ping_keys").fetchall()]
        except DatabaseError:
            return  # locked by another writer: keep what we know, try again later
        self.by_uuid = {ping_uuid: name for ping_uuid, name in monitors}
        self.by_slug = {(key, name): name for key in keys for _, name in monitors}
        self.loaded_at = time.monotonic()

    async def find(self, parts: list[str]) -> tuple[str, str | None] | None:
        """(monitor, suffix) for the path after /ping/, or None when nothing matches."""
        found = self._match(parts)
        if found is None and time.monotonic() - self.loaded_at > 2:
            await anyio.to_thread.run_sync(self.refresh)
            found = self._match(parts)
        return found

    def _match(self, parts: list[str]) -> tuple[str, str | None] | None:
        if parts[0] in self.by_uuid and len(parts) <= 2:
            return self.by_uuid[parts[0]], parts[1] if len(parts) == 2 else None
        if len(parts) >= 2 and (parts[0], parts[1]) in self.by_slug and len(parts) <= 3:
            return self.by_slug[(parts[0], parts[1])], parts[2] if len(parts) == 3 else None
        return None


# Pings recorded each time the drainer takes the store (well under a second's work with
# `watchdog.apply_signals`), so that after a burst of pings an ingest or a `recon watch` gets
# the store within its lock timeout.
DRAIN_BATCH = 20_000


def drain_once(db_path: Path, folder: Path) -> None:
    """Record what waits in the spool (up to DRAIN_BATCH pings), unless another process holds
    the store."""
    if not spool.waiting(folder):
        return  # nothing to record: leave the database's lock to others
    try:
        with db.connect(db_path, lock_timeout=0.5) as conn:
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


def create_app(settings: Settings, on_stop: Callable[[], None] | None = None) -> Starlette:
    folder = spool.folder_for(Path(settings.db), settings.spool_dir)
    directory = Directory(settings)
    directory.refresh()  # before the drainer starts, which may hold the store for a while
    appender = spool.Appender(folder)
    recent: dict[str, deque[float]] = defaultdict(deque)

    async def ping(request: Request) -> PlainTextResponse:
        parts = [p for p in request.scope["path"].split("/")[2:] if p]
        found = await directory.find(parts) if parts else None
        if found is None:
            return PlainTextResponse("not found: no monitor has this ping URL\n", status_code=404)
        monitor, suffix = found
        kind, exit_code = "success", None
        if suffix is not None:
            if suffix in SUFFIXES:
                kind = SUFFIXES[suffix]
            elif suffix.isdigit() and 0 <= int(suffix) <= 255:
                exit_code = int(suffix)
                kind = "success" if exit_code == 0 else "fail"
            else:
                return PlainTextResponse(
                    "not found: after the uuid use start, fail, log or an exit status 0-255\n",
                    status_code=404,
                )
        window = recent[monitor]
        now_tick = time.monotonic()
        while window and now_tick - window[0] > 60:
            window.popleft()
        if len(window) >= settings.ping_rate_limit:
            return PlainTextResponse(
                f"too many pings: at most {settings.ping_rate_limit} a minute per monitor\n",
                status_code=429,
            )
        window.append(now_tick)
        body, truncated = b"", False
        if request.method == "POST":
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_MESSAGE_BYTES:
                    body, truncated = body[:MAX_MESSAGE_BYTES], True
                    break
        text = redact.mask_secrets(body.decode(errors="replace")) if body else None
        entry = spool.Ping(
            request_id=str(uuid.uuid4()),
            monitor=monitor,
            kind=kind,
            received_at=settings.now or datetime.now(UTC),
            exit_code=exit_code,
            body=text,
            run_key=request.query_params.get("rid"),
            client=request.client.host if request.client else None,
        )
        await appender.append(entry)  # on disk before we answer
        note = f" (body cut to {MAX_MESSAGE_BYTES} bytes)" if truncated else ""
        return PlainTextResponse(f"OK{note}\n")

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("OK\n")

    async def transactions(request: Request) -> JSONResponse:
        body = await request.body()
        return await anyio.to_thread.run_sync(
            api.post_transactions,
            settings,
            folder,
            request.path_params["source"],
            request.path_params["run_id"],
            request.headers.get("authorization", ""),
            body,
            _client(request),
        )

    async def reads(request: Request) -> JSONResponse:
        return await anyio.to_thread.run_sync(
            api.read,
            settings,
            request.headers.get("authorization", ""),
            request.path_params["what"],
            dict(request.query_params),
            _client(request),
        )

    async def complete(request: Request) -> JSONResponse:
        return await anyio.to_thread.run_sync(
            api.complete_run,
            settings,
            request.path_params["source"],
            request.path_params["run_id"],
            request.headers.get("authorization", ""),
            _client(request),
        )

    def _client(request: Request) -> str | None:
        return request.client.host if request.client else None

    methods = ["GET", "POST", "HEAD"]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if on_stop is not None:
            await anyio.to_thread.run_sync(on_stop)

    return Starlette(
        lifespan=lifespan,
        routes=[
            Route("/health", health),
            Route("/ping/{a}", ping, methods=methods),
            Route("/ping/{a}/{b}", ping, methods=methods),
            Route("/ping/{a}/{b}/{c}", ping, methods=methods),
            Route(
                "/api/v1/sources/{source}/runs/{run_id}/transactions",
                transactions,
                methods=["POST"],
            ),
            Route("/api/v1/sources/{source}/runs/{run_id}/complete", complete, methods=["POST"]),
            Route("/api/v1/{what:str}", reads, methods=["GET"]),
        ],
    )


def serve(
    settings: Settings, host: str, port: int, on_stop: Callable[[], None] | None = None
) -> None:
    """The app, and beside it the drainer that records the spool into the store. `on_stop`
    runs at a graceful shutdown (uvicorn then re-raises SIGTERM, so code after this call
    would not run)."""
    app = create_app(settings, on_stop)
    drainer = fork_drainer(settings)
    try:
        run(app, host, port)
    finally:
        # Killed mid-drain, the drainer leaves its spool file to the next drain: nothing is lost.
        with contextlib.suppress(ProcessLookupError):
            os.kill(drainer, signal.SIGTERM)
        os.waitpid(drainer, 0)


def run(app: Starlette, host: str, port: int) -> None:
    """Serve `app` as `recon serve` does (the ping benchmark serves its bare app through it)."""
    import uvicorn

    # No access log: ping URLs carry the monitors' unguessable uuids.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
