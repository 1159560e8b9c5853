"""`recon serve`: healthchecks-compatible ping URLs over HTTP (Starlette, run by uvicorn).

    GET|POST /ping/<uuid>                  success
             /ping/<uuid>/start            a run started
             /ping/<uuid>/fail             the run failed
             /ping/<uuid>/log              a message, no change of state
             /ping/<uuid>/<exit status>    0 is success, 1-255 failure
             /ping/<ping-key>/<slug>[/...] the same, by monitor name
    ?rid=<id> pairs the start and the end of one run. HEAD is answered and records nothing.

A ping is acknowledged (200 "OK") only once it is in the spool on disk (`spool.py`), so it is
never lost, even while an ingest holds the database or if the server dies right after
answering. A drainer process forked by `serve` (`drainer.py`) records the spool into the store
every `spool_drain_interval`. Request bodies are masked (card numbers, configured secrets, URL paths) in a worker thread,
then kept up to 10 kB (longer ones are cut there, never inside a number, and the answer says
so), before they touch the disk. Unknown URLs get 404; more than `ping_rate_limit` pings a
minute for one monitor get 429.

The API (`api.py`) is guarded here, before any store access: the token must be one whose
SHA-256 the server holds in memory (`Directory`, re-read every REFRESH_EVERY seconds and when
an unknown token is presented, at most once every MISS_REFRESH_EVERY), and the body is read as
a stream with a running size limit. Refusals are counted (`Refusals`) and written as one
`auth.failure` summary event at most every AUTH_SUMMARY_EVERY seconds, so a flood of bad
requests costs the store O(1) writes a minute. Connections are guarded at the protocol level
(`http.GuardedHttp`). No SQL here: what the server reads and writes goes through the library,
in one session per request (`api.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import time
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from reconcile import logs, redact, store, tokens
from reconcile.errors import DatabaseError
from reconcile.server import api
from reconcile.server.drainer import fork_drainer
from reconcile.server.http import run as run
from reconcile.settings import Settings
from reconcile.store import db
from reconcile.watch import spool
from reconcile.watch.ping_urls import PingUrls, ping_urls
from reconcile.watch.signals import MAX_MESSAGE_BYTES

SUFFIXES = {"start": "start", "fail": "fail", "log": "log"}
log = logging.getLogger(__name__)

# What the server keeps in memory, and how fresh (seconds).
REFRESH_EVERY = 2.0  # monitors, ping keys and token hashes are re-read from the store
MISS_REFRESH_EVERY = 1.0  # at most one extra re-read a second for tokens it does not know
PEEK_TIMEOUT = 0.5  # how long a re-read waits for the store before keeping what it knows
AUTH_SUMMARY_EVERY = 60.0  # at most one `auth.failure` summary event a minute
AUTH_SUMMARY_CLIENTS = 20  # clients named in one summary; refusals of others are only counted
# Limits of a request (seconds, bytes).
PING_BODY_TIMEOUT = 10.0  # a ping body must arrive within this
API_BODY_IDLE_TIMEOUT = 10.0  # an API body may pause this long between two chunks
API_BODIES = 2  # API bodies held in memory at once (the store takes one request at a time)
API_THREADS = 4  # worker threads for API requests (they wait for the store in turn)
MASK_THREADS = 4  # worker threads that mask what pings bring
MAX_RID = 128  # characters of ?rid=


class Directory:
    """Which monitor a ping URL names, and which tokens are valid: a cache of the store,
    refreshed when it can be read."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.urls = PingUrls()
        self.tokens: dict[str, tuple[str, str]] = {}  # SHA-256 -> (token name, source)
        self.loaded_at = 0.0
        self.missed_at = -math.inf
        self._refreshing: asyncio.Lock | None = None

    def refresh(self) -> None:
        """Re-read the store, unless it is busy (in this process or another): then keep what
        we know and try again later."""
        try:
            with (
                api.exclusive(PEEK_TIMEOUT),
                store.connect(Path(self.settings.db), lock_timeout=PEEK_TIMEOUT) as conn,
            ):
                urls = ping_urls(conn)
                known = tokens.active(conn)
        except (DatabaseError, db.QueryError):
            return
        self.urls = urls
        self.tokens = known
        self.loaded_at = time.monotonic()

    async def refresh_soon(self) -> None:
        """`refresh` in a worker thread, one at a time (a caller arriving meanwhile waits for
        the one under way)."""
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        if self._refreshing.locked():
            async with self._refreshing:
                return
        async with self._refreshing:
            await anyio.to_thread.run_sync(self.refresh)

    async def find(self, parts: list[str]) -> tuple[str, str | None] | None:
        """(monitor, suffix) for the path after /ping/, or None when nothing matches."""
        found = self._match(parts)
        if found is None and time.monotonic() - self.loaded_at > REFRESH_EVERY:
            await self.refresh_soon()
            found = self._match(parts)
        return found

    async def token(self, presented: str) -> tuple[str, str] | None:
        """(token name, source) of a presented token, from memory; an unknown one that looks
        like a token makes the server re-read the store, at most once every
        MISS_REFRESH_EVERY seconds."""
        if not presented:
            return None
        found = tokens.match(self.tokens, presented)
        looks_like_one = presented.startswith(tokens.PREFIX) and len(presented) < 100
        if found is None and looks_like_one:
            now_tick = time.monotonic()
            if now_tick - self.missed_at >= MISS_REFRESH_EVERY:
                self.missed_at = now_tick
                await self.refresh_soon()
                found = tokens.match(self.tokens, presented)
        return found

    def _match(self, parts: list[str]) -> tuple[str, str | None] | None:
        by_uuid, by_slug = self.urls.by_uuid, self.urls.by_slug
        if parts[0] in by_uuid and len(parts) <= 2:
            return by_uuid[parts[0]], parts[1] if len(parts) == 2 else None
        if len(parts) >= 2 and (parts[0], parts[1]) in by_slug and len(parts) <= 3:
            return by_slug[(parts[0], parts[1])], parts[2] if len(parts) == 3 else None
        return None


class Refusals:
    """Refused API requests, counted in memory and written as one `auth.failure` event at a
    time: per client (up to AUTH_SUMMARY_CLIENTS of them) the count and the first refusal
    (when, status, reason, target); beyond that only a count. Nothing of the token sent."""

    def __init__(self) -> None:
        self.written_at = -math.inf  # monotonic time of the last summary written
        self._clear()

    def _clear(self) -> None:
        self.count = 0
        self.unnamed = 0
        self.since: str | None = None
        self.until: str | None = None
        self.clients: dict[str, dict[str, Any]] = {}

    def note(self, client: str | None, status: int, reason: str, target: str, at: str) -> None:
        self.count += 1
        self.since = self.since or at
        self.until = at
        name = client or "unknown"
        entry = self.clients.get(name)
        if entry is not None:
            entry["refusals"] += 1
        elif len(self.clients) < AUTH_SUMMARY_CLIENTS:
            self.clients[name] = {
                "client": name,
                "refusals": 1,
                "first_at": at,
                "status": status,
                "reason": reason,
                "target": target,
            }
        else:
            self.unnamed += 1

    def due(self) -> bool:
        return bool(self.count) and time.monotonic() - self.written_at >= AUTH_SUMMARY_EVERY

    def take(self) -> dict[str, Any]:
        """The summary to write; the counts start again from zero."""
        summary = {
            "refusals": self.count,
            "since": self.since,
            "until": self.until,
            "clients": list(self.clients.values()),
            "refusals_of_other_clients": self.unnamed,
        }
        self._clear()
        self.written_at = time.monotonic()
        return summary

    def put_back(self, summary: dict[str, Any]) -> None:
        """A summary that could not be written joins the counts again."""
        self.count += summary["refusals"]
        self.unnamed += summary["refusals_of_other_clients"]
        self.since = min(filter(None, (summary["since"], self.since)), default=None)
        self.until = max(filter(None, (summary["until"], self.until)), default=None)
        for entry in summary["clients"]:
            mine = self.clients.get(entry["client"])
            if mine is not None:
                mine["refusals"] += entry["refusals"]
                mine.update({k: entry[k] for k in ("first_at", "status", "reason", "target")})
            elif len(self.clients) < AUTH_SUMMARY_CLIENTS:
                self.clients[entry["client"]] = entry
            else:
                self.unnamed += entry["refusals"]
        self.written_at = -math.inf


def _could_hold_a_card(text: str | None) -> bool:
    """Whether `text` has enough digits to hold a card number (else it needs no masking)."""
    return text is not None and sum(ch.isdigit() for ch in text) >= redact.PAN_MIN_DIGITS


def _mask_identifiers(*texts: str | None) -> list[str | None]:
    return [redact.mask_pans(text) if _could_hold_a_card(text) else text for text in texts]


def _drop_partial_number(text: str) -> str:
    """`text` without a number it ends with (digits and up to redact.MAX_GAP separators
    between them): where a text was cut, that may be the first digits of a card number the
    masker could not recognise whole."""
    start, gap, i = None, 0, len(text)
    while i > 0:
        ch = text[i - 1]
        if ch.isdigit():
            start, gap = i - 1, 0
        elif ch.isalnum() or ch == "_":
            break
        else:
            gap += 1
            if gap > redact.MAX_GAP:
                break
        i -= 1
    return text if start is None else text[:start]


def ping_message(raw: bytes, truncated: bool) -> str | None:
    """A ping body as stored: masked whole first, then cut to MAX_MESSAGE_BYTES (UTF-8) and,
    when it was cut, without the number it then ends with. Slow on long text: call it in a
    worker thread."""
    if not raw:
        return None
    text = redact.mask_secrets(raw.decode(errors="replace"))
    if not truncated:
        return text
    return _drop_partial_number(text.encode()[:MAX_MESSAGE_BYTES].decode(errors="ignore"))


class _Limits:
    """What the event loop hands to worker threads, and how many at once (made at startup:
    anyio's limiters belong to a running loop)."""

    def __init__(self) -> None:
        self.api = anyio.CapacityLimiter(API_THREADS)
        self.mask = anyio.CapacityLimiter(MASK_THREADS)
        self.bodies = asyncio.Semaphore(API_BODIES)


def create_app(settings: Settings, on_stop: Callable[[], None] | None = None) -> Starlette:
    folder = spool.folder_for(Path(settings.db), settings.spool_dir)
    api.forget_old_staging(folder)
    directory = Directory(settings)
    directory.refresh()  # before the drainer starts, which may hold the store for a while
    appender = spool.Appender(folder)
    recent: dict[str, deque[float]] = defaultdict(deque)
    refusals = Refusals()
    limits: list[_Limits] = []

    def limit() -> _Limits:
        if not limits:
            limits.append(_Limits())
        return limits[0]

    async def masked(*texts: str | None) -> list[str | None]:
        """Identifiers masked off the event loop (only those with digits enough for a card)."""
        if not any(_could_hold_a_card(text) for text in texts):
            return list(texts)
        return await anyio.to_thread.run_sync(
            lambda: _mask_identifiers(*texts), limiter=limit().mask
        )

    async def ping(request: Request) -> Response:
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
        if request.method == "HEAD":
            # Link previewers and uptime probes send HEAD: answered, never a signal.
            return PlainTextResponse("OK\n")
        rid = request.query_params.get("rid")
        if rid is not None and len(rid) > MAX_RID:
            return PlainTextResponse(f"rid is at most {MAX_RID} characters\n", status_code=400)
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
        raw, truncated = bytearray(), False
        if request.method == "POST":
            try:
                with anyio.fail_after(PING_BODY_TIMEOUT):
                    async for chunk in request.stream():
                        raw += chunk[: MAX_MESSAGE_BYTES + 1 - len(raw)]
                        if len(raw) > MAX_MESSAGE_BYTES:
                            truncated = True  # read no further
                            break
            except TimeoutError:
                return PlainTextResponse(
                    f"the body took over {PING_BODY_TIMEOUT:g}s to arrive\n",
                    status_code=408,
                    headers={"Connection": "close"},
                )
            except ClientDisconnect:
                return PlainTextResponse("", status_code=400)
        client = _client(request)
        if raw:
            body, rid, client = await anyio.to_thread.run_sync(
                lambda: [ping_message(bytes(raw), truncated), *_mask_identifiers(rid, client)],
                limiter=limit().mask,
            )
        else:
            body = None
            rid, client = await masked(rid, client)
        entry = spool.Ping(
            request_id=str(uuid.uuid4()),
            monitor=monitor,
            kind=kind,
            received_at=settings.now or datetime.now(UTC),
            exit_code=exit_code,
            body=body,
            run_key=rid,
            client=client,
        )
        await appender.append(entry)  # on disk before we answer
        if truncated:  # the rest of the body is not read: end the connection after answering
            return PlainTextResponse(
                f"OK (body cut to {MAX_MESSAGE_BYTES} bytes)\n", headers={"Connection": "close"}
            )
        return PlainTextResponse("OK\n")

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("OK\n")

    async def metrics(request: Request) -> Response:
        (client,) = await masked(_client(request))
        return await in_store(client, "metrics", api.metrics, settings, client)

    def refuse(client: str | None, status: int, reason: str, answer: str, target: str) -> Any:
        refusals.note(client, status, reason, target, settings.current_time().isoformat())
        return api._error(status, answer)

    async def authorised(
        request: Request, client: str | None, source: str | None, target: str = ""
    ) -> tuple[str, str] | JSONResponse:
        """(token, its name) for a request whose token the server knows (for `source`, if
        given); else the refusal to answer, counted, with nothing read or stored. `client`,
        `source` and `target` arrive masked."""
        presented = api.bearer(request.headers.get("authorization", ""))
        found = await directory.token(presented)
        target = source or target
        if found is None:
            return refuse(
                client,
                401,
                "missing, unknown or revoked token",
                "missing, unknown or revoked token: send Authorization: Bearer <token>",
                target,
            )
        if source is not None and found[1] != source:
            return refuse(
                client,
                403,
                f"token {found[0]!r} is for source {found[1]!r}, not {source!r}",
                f"this token is for source {found[1]!r}, not {source!r}",
                target,
            )
        return presented, found[0]

    async def in_store(
        client: str | None, target: str, call: Callable[..., Any], *args: Any
    ) -> Response:
        """An api function in a worker thread; its in-store refusal counted; any failure a
        503 (the API's every answer but these comes from the store)."""
        try:
            outcome = await anyio.to_thread.run_sync(call, *args, limiter=limit().api)
        except Exception as exc:
            logs.event(log, logging.ERROR, "api error", error=f"{type(exc).__name__}: {exc}")
            return api._error(503, api.FAILED.format(type(exc).__name__))
        if isinstance(outcome, api.Refusal):
            return refuse(client, outcome.status, outcome.reason, outcome.answer, target)
        assert isinstance(outcome, Response)
        return outcome

    async def run_caller(request: Request) -> tuple[str | None, str, str, str] | JSONResponse:
        """For a request about one run (`/sources/{source}/runs/{run_id}/...`): the client,
        source and run id (masked) and the token, or the refusal to answer."""
        client, source, run_id = await masked(
            _client(request), request.path_params["source"], request.path_params["run_id"]
        )
        assert source is not None and run_id is not None
        allowed = await authorised(request, client, source)
        if isinstance(allowed, JSONResponse):
            return allowed
        return client, source, run_id, allowed[0]

    async def transactions(request: Request) -> Response:
        caller = await run_caller(request)
        if isinstance(caller, JSONResponse):
            return caller
        client, source, run_id, token = caller
        length = request.headers.get("content-length")
        if length is not None and not length.isdigit():
            return api._error(400, "Content-Length must be a number of bytes")
        if length is not None and int(length) > api.MAX_BODY_BYTES:
            return _too_large()
        try:
            with anyio.fail_after(settings.lock_timeout):
                await limit().bodies.acquire()
        except TimeoutError:
            return api._error(503, api.BUSY)
        try:
            body = await _read_body(request, api.MAX_BODY_BYTES)
            if isinstance(body, Response):
                return body
            return await in_store(
                client,
                source,
                api.post_transactions,
                settings,
                folder,
                source,
                run_id,
                token,
                body,
                client,
            )
        finally:
            limit().bodies.release()

    async def reads(request: Request) -> Response:
        client, what = await masked(_client(request), request.path_params["what"])
        assert what is not None
        allowed = await authorised(request, client, None, what)
        if isinstance(allowed, JSONResponse):
            return allowed
        query = dict(request.query_params)
        return await in_store(client, what, api.read, settings, allowed[0], what, query, client)

    async def complete(request: Request) -> Response:
        caller = await run_caller(request)
        if isinstance(caller, JSONResponse):
            return caller
        client, source, run_id, token = caller
        return await in_store(
            client, source, api.complete_run, settings, source, run_id, token, client
        )

    def _client(request: Request) -> str | None:
        return request.client.host if request.client else None

    async def write_refusals(lock_timeout: float) -> None:
        summary = refusals.take()
        try:
            await anyio.to_thread.run_sync(
                api.record_refusals, settings, summary, lock_timeout, limiter=limit().api
            )
        except Exception as exc:  # the store is busy: the counts wait for the next turn
            refusals.put_back(summary)
            logs.event(log, logging.WARNING, "auth.failure summary not written yet", error=str(exc))

    async def keep_fresh() -> None:
        """Re-read monitors and tokens every REFRESH_EVERY seconds; write the refusals'
        summary when one is due."""
        while True:
            await anyio.sleep(REFRESH_EVERY)
            try:
                await directory.refresh_soon()
                if refusals.due():
                    await write_refusals(PEEK_TIMEOUT)
            except Exception as exc:  # never let the refresher die
                logs.event(log, logging.ERROR, "refresh error", error=f"{type(exc).__name__}")

    methods = ["GET", "POST", "HEAD"]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        limit()
        refresher = asyncio.create_task(keep_fresh())
        yield
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        if refusals.count:
            await write_refusals(settings.lock_timeout)
        if on_stop is not None:
            await anyio.to_thread.run_sync(api.alone, on_stop, settings.lock_timeout)

    return Starlette(
        lifespan=lifespan,
        routes=[
            Route("/health", health),
            Route("/metrics", metrics),
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


def _too_large() -> JSONResponse:
    answer = api._error(
        413, f"body over {api.MAX_BODY_BYTES // (1024 * 1024)} MB: send the run in parts"
    )
    answer.headers["Connection"] = "close"  # the rest of the body is not read
    return answer


async def _read_body(request: Request, limit: int) -> bytes | Response:
    """The body, read as it arrives, never more than `limit` bytes kept: 413 once over it, 408
    when the client pauses more than API_BODY_IDLE_TIMEOUT seconds."""
    body = bytearray()
    chunks = request.stream().__aiter__()
    while True:
        try:
            with anyio.fail_after(API_BODY_IDLE_TIMEOUT):
                chunk = await chunks.__anext__()
        except StopAsyncIteration:
            return bytes(body)
        except TimeoutError:
            answer = api._error(408, f"the body paused over {API_BODY_IDLE_TIMEOUT:g}s: resend")
            answer.headers["Connection"] = "close"
            return answer
        except ClientDisconnect:
            return api._error(400, "the client went away before the end of the body")
        if len(body) + len(chunk) > limit:
            return _too_large()
        body += chunk


def serve(
    settings: Settings,
    host: str,
    port: int,
    on_stop: Callable[[], None] | None = None,
    on_listening: Callable[[], None] | None = None,  # once the port accepts (http.run)
) -> None:
    """The app, and beside it the drainer that records the spool into the store. `on_stop`
    runs at a graceful shutdown (uvicorn then re-raises SIGTERM, so code after this call
    would not run)."""
    app = create_app(settings, on_stop)
    drainer = fork_drainer(settings)
    try:
        run(app, host, port, on_listening)
    finally:
        # Killed mid-drain, the drainer leaves its spool file to the next drain: nothing is lost.
        with contextlib.suppress(ProcessLookupError):
            os.kill(drainer, signal.SIGTERM)
        os.waitpid(drainer, 0)
