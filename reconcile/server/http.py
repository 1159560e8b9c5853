"""The HTTP protocol `recon serve` runs: uvicorn's, with the guards it lacks.

Connections are guarded at the protocol level (`GuardedHttp`): headers must arrive within
HEADER_TIMEOUT and MAX_HEADER_BYTES, and beyond `connection_cap()` open connections the oldest
idle one is closed, so that slow or idle connections cannot use up the file descriptors while
pings keep being answered. `run` serves an app with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import resource
import socket
from collections.abc import Callable
from typing import Any, ClassVar

from starlette.applications import Starlette
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from reconcile.errors import ReconError

# Limits of a connection (seconds, bytes).
HEADER_TIMEOUT = 10.0  # from connecting (or the previous answer) to the end of the headers
MAX_HEADER_BYTES = 64 * 1024  # request line and headers
KEEP_ALIVE = 5  # an idle keep-alive connection is closed after this
MAX_CONNECTIONS = 1000  # open connections; beyond it the oldest idle one is closed
RESERVED_FDS = 100  # file descriptors kept for the store, the spool and logs
GRACEFUL_SHUTDOWN = 10  # seconds given to requests in flight at SIGTERM


async def _headers_too_large(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 431,
            "headers": [(b"content-length", b"0"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's HTTP protocol with the guards it lacks: the request line and headers must
    arrive within HEADER_TIMEOUT seconds (from connecting, or from the previous answer on a
    kept-alive connection) and MAX_HEADER_BYTES, and beyond `cap` open connections the oldest
    one waiting for headers is closed, so that slow or idle connections cannot use up the file
    descriptors while pings keep being answered."""

    cap: ClassVar[int] = MAX_CONNECTIONS
    waiting: ClassVar[dict[GuardedHttp, None]] = {}  # connections waiting for headers, oldest first

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._await_headers()
        if len(self.connections) > self.cap:
            oldest = next((c for c in self.waiting if c is not self), self)
            oldest.transport.close()

    def _await_headers(self) -> None:
        self._received = self._header_bytes = 0
        self.waiting[self] = None
        self._deadline = self.loop.call_later(HEADER_TIMEOUT, self._too_slow)

    def _headers_done(self) -> None:
        self.waiting.pop(self, None)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        if self in self.waiting and not self.transport.is_closing():
            self.transport.close()

    def _refuse_headers(self) -> None:
        self._headers_done()
        if not self.transport.is_closing():
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-length: 0\r\nconnection: close\r\n\r\n"
            )
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self in self.waiting:
            self._received += len(data)  # headers still arriving: bytes the parser holds
        super().data_received(data)  # may complete the headers (and start a body)
        if self in self.waiting and self._received > MAX_HEADER_BYTES:
            self._refuse_headers()

    def on_url(self, url: bytes) -> None:
        self._header_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._headers_done()
        if self._header_bytes <= MAX_HEADER_BYTES:
            super().on_headers_complete()
            return
        app = self.app  # complete, in one piece, but too big: answered by uvicorn's own path
        self.app = _headers_too_large
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_done()
        super().connection_lost(exc)


def connection_cap() -> int:
    """MAX_CONNECTIONS, or fewer if the process may not open that many files; the soft limit
    on open files is first raised to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(16, min(MAX_CONNECTIONS, soft - RESERVED_FDS))


class CannotListen(ReconError):
    """The address cannot be bound: taken by another process, not this machine's, refused."""


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` and listening, or `CannotListen` saying why."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        hint = (
            ": another process listens there; stop it or choose another --port"
            if exc.errno == errno.EADDRINUSE
            else ""
        )
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise CannotListen(f"cannot listen on {host}:{port}: {reason}{hint}") from None
    return sock


def run(
    app: Starlette, host: str, port: int, on_listening: Callable[[], None] | None = None
) -> None:
    """Serve `app` as `recon serve` does (the ping benchmark serves its bare app through it).
    The port is bound first (`CannotListen` if it cannot be); `on_listening` runs once it
    accepts connections."""
    import uvicorn

    GuardedHttp.cap = connection_cap()
    sock = listen(host, port)
    # No access log: ping URLs carry the monitors' unguessable uuids.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        http=GuardedHttp,
        timeout_keep_alive=KEEP_ALIVE,
        limit_concurrency=2 * GuardedHttp.cap,  # requests in flight (one per connection)
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
    )
    server = uvicorn.Server(config)
    if on_listening is not None:
        on_listening()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise CannotListen(f"the server on {host}:{port} did not start (see the log above)")
