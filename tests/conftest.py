"""Shared fixtures: a real DuckDB file per test and the real `recon` CLI (a subprocess, or
in-process for tests marked `in_process`); the helpers themselves live in tests/support.py."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.dovecot import INSTALL_HINT, Dovecot, DovecotServer, dovecot_binary
from tests.support import (
    ROOT,
    SAMPLE,
    Result,
    free_port,
    recon_env,
    run_recon,
    run_recon_in_process,
)

__all__ = ["ROOT", "SAMPLE", "HttpTarget", "Recon", "Result"]


@dataclass
class Recon:
    """Runs `recon` against a database in a temporary folder: as a real process, or, for a
    test marked `in_process`, through `reconcile.cli.main` in this process (same Result)."""

    workdir: Path
    db: Path
    env: dict[str, str]
    in_process: bool = False

    def __call__(
        self,
        *args: str | Path,
        input: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 300,
    ) -> Result:
        environment = {**self.env, **(env or {})}
        if self.in_process:
            return run_recon_in_process(args, env=environment, cwd=self.workdir, input=input)
        return run_recon(args, env=environment, cwd=self.workdir, input=input, timeout=timeout)

    def ingest(
        self,
        *files: str | Path,
        source: str = "src",
        kind: str = "processed",
        extra: tuple[str, ...] = (),
    ) -> tuple[Result, list[dict[str, Any]]]:
        """`recon --json ingest`; returns the result and its per-file objects."""
        result = self("--json", "ingest", "--source", source, "--kind", kind, *extra, *files)
        files_json = result.json()["files"] if result.stdout.strip() else []
        return result, files_json

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Read the database directly, as an auditor would."""
        with duckdb.connect(str(self.db), read_only=True) as conn:
            return conn.execute(sql, params or []).fetchall()

    def write_config(self, text: str) -> Path:
        path = self.workdir / "recon.toml"
        path.write_text(text, encoding="utf-8")
        return path


@pytest.fixture
def recon(tmp_path: Path, request: pytest.FixtureRequest) -> Recon:
    """`recon` on a fresh store in tmp_path, at a fixed `now` (RECON_NOW), with an audit key.
    Tests marked `in_process` run it in this process (tests/support.py)."""
    db = tmp_path / "recon.duckdb"
    in_process = request.node.get_closest_marker("in_process") is not None
    return Recon(workdir=tmp_path, db=db, env=recon_env(db), in_process=in_process)


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, str | bytes], Path]:
    """Write a test input file (text as UTF-8, or raw bytes) and return its path."""

    def write(name: str, content: str | bytes) -> Path:
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode("utf-8"))
        return path

    return write


@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[DovecotServer]:
    """One real Dovecot on loopback for the session (see tests/dovecot.py)."""
    binary = dovecot_binary()
    if binary is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    server = DovecotServer(binary)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def dovecot(dovecot_server: DovecotServer) -> Dovecot:
    """A fresh account, with an empty INBOX, on the session's Dovecot."""
    return dovecot_server.account()


@dataclass
class Mailbox:
    """An SMTP server on loopback (aiosmtpd) receiving apprise's email: `raw` as received,
    `messages` decoded."""

    port: int
    raw: list[bytes] = field(default_factory=list)

    @property
    def messages(self) -> list[str]:
        return [message.decode(errors="replace") for message in self.raw]

    @property
    def url(self) -> str:
        return (
            f"mailto://127.0.0.1:{self.port}?from=recon@example.com&to=ops@example.com"
            "&mode=insecure"
        )


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    box = Mailbox(free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            box.raw.append(envelope.content)
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


@dataclass
class HttpTarget:
    """A JSON webhook on loopback: records what arrives; can answer 500 or stall first."""

    port: int = 0
    fail_first: int = 0
    stall_first: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)
    answered_ok: list[dict[str, Any]] = field(default_factory=list)
    first_request: threading.Event = field(default_factory=threading.Event)
    pinged: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/alerts"


@pytest.fixture
def http_target() -> Iterator[HttpTarget]:
    target = HttpTarget()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            target.received.append(body)
            target.first_request.set()
            if target.stall_first and len(target.received) == 1:
                time.sleep(target.stall_first)
            if len(target.received) <= target.fail_first:
                self.send_response(500)
            else:
                target.answered_ok.append(body)
                self.send_response(200)
            self.end_headers()

        def do_GET(self) -> None:
            target.pinged.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    target.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield target
    server.shutdown()
    server.server_close()
