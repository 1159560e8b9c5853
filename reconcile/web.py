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
answering. Request bodies are kept up to 10 kB (longer ones are cut there, and the answer says
so), masked before they touch the disk. Unknown URLs get 404; more than `ping_rate_limit` pings
a minute for one monitor get 429.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict, deque
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from reconcile import api, db, redact, spool
from reconcile.errors import DatabaseError
from reconcile.settings import Settings
from reconcile.watchdog import MAX_MESSAGE_BYTES

SUFFIXES = {"start": "start", "fail": "fail", "log": "log"}


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


def create_app(settings: Settings) -> Starlette:
    folder = spool.folder_for(Path(settings.db), settings.spool_dir)
    directory = Directory(settings)
    appender = spool.Appender(folder)
    recent: dict[str, deque[float]] = defaultdict(deque)

    def drain_once() -> None:
        if not spool.waiting(folder):
            return  # nothing to record: leave the database's lock to others
        try:
            with db.connect(Path(settings.db), lock_timeout=0.5) as conn:
                spool.drain(conn, folder)
        except DatabaseError:
            pass  # locked: the pings wait safely in the spool

    async def drainer() -> None:
        while True:
            await anyio.to_thread.run_sync(drain_once)
            await asyncio.sleep(settings.spool_drain_interval)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        await anyio.to_thread.run_sync(directory.refresh)
        task = asyncio.create_task(drainer())
        yield
        task.cancel()

    async def ping(request: Request) -> PlainTextResponse:
        parts = [p for p in request.url.path.split("/")[2:] if p]
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
        text = redact.mask_pans(body.decode(errors="replace")) if body else None
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
        await asyncio.wrap_future(appender.submit(entry))  # on disk before we answer
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
        )

    async def reads(request: Request) -> JSONResponse:
        return await anyio.to_thread.run_sync(
            api.read,
            settings,
            request.headers.get("authorization", ""),
            request.path_params["what"],
            dict(request.query_params),
        )

    async def complete(request: Request) -> JSONResponse:
        return await anyio.to_thread.run_sync(
            api.complete_run,
            settings,
            request.path_params["source"],
            request.path_params["run_id"],
            request.headers.get("authorization", ""),
        )

    methods = ["GET", "POST", "HEAD"]
    return Starlette(
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
        lifespan=lifespan,
    )


def serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    # No access log: ping URLs carry the monitors' unguessable uuids.
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", access_log=False)
