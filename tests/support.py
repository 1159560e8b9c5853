"""Test helpers shared by every test file, written once: loopback ports, waiting, timing, and
running `recon` as a real process, as a server, or in this process.

Two ways to run the CLI, with the same `Result`:
- `run_recon(args, env=..., cwd=...)`: `python -m reconcile` as a real process, the contract a
  user sees (exit code, stdout, stderr, what a fresh interpreter does);
- `run_recon_in_process(...)`: `reconcile.cli.main(argv)` called here, for tests that push many
  input cases through the CLI; no interpreter start-up and no imports per call. Everything
  main() changes in the process is put back afterwards (environment, working directory, umask,
  standard streams, logging handlers, correlation ids, the secrets the masker knows).
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
HOST = "127.0.0.1"
RECON = (sys.executable, "-m", "reconcile")  # the CLI as a real process


# --- loopback and waiting --------------------------------------------------------------------


def free_port(host: str = HOST) -> int:
    """A port nothing listens on right now (the OS picks it, so parallel tests do not clash)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def port_open(port: int, host: str = HOST, timeout: float = 0.2) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout):
        return True
    return False


def wait_until(
    ready: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.02,
    process: subprocess.Popen[Any] | None = None,
) -> Any:
    """Poll `ready()` until it returns something true (returned); fail after `timeout` seconds
    saying `what` did not happen, or at once if `process` exited meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        found = ready()
        if found:
            return found
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} (waited {timeout:g}s)")
        time.sleep(interval)


def wait_for_port(
    port: int,
    host: str = HOST,
    timeout: float = 30.0,
    process: subprocess.Popen[Any] | None = None,
) -> None:
    """Wait until something accepts connections on `host:port`."""
    wait_until(
        lambda: port_open(port, host), timeout, f"nothing listens on {host}:{port}", process=process
    )


def wait_for_http(
    url: str, timeout: float = 30.0, process: subprocess.Popen[Any] | None = None
) -> None:
    """Wait until `url` answers at all (any HTTP status counts as up)."""

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    wait_until(answers, timeout, f"{url} did not answer", interval=0.05, process=process)


@dataclass
class Stopwatch:
    started: float = 0.0
    stopped: float | None = None

    @property
    def elapsed(self) -> float:
        """Seconds since the start (until the stop, once stopped)."""
        end = time.monotonic() if self.stopped is None else self.stopped
        return end - self.started


@contextlib.contextmanager
def timed() -> Iterator[Stopwatch]:
    """`with timed() as t: ...` then `t.elapsed`: wall seconds the block took."""
    watch = Stopwatch(time.monotonic())
    try:
        yield watch
    finally:
        watch.stopped = time.monotonic()


# --- the CLI ---------------------------------------------------------------------------------


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def recon_env(db: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any RECON_ variable, plus a store and a fixed clock."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env.update(
        {
            "RECON_DB": str(db),
            "RECON_NOW": "2026-11-24T09:00:00+00:00",
            "RECON_LOCK_TIMEOUT": "5s",
            "RECON_AUDIT_KEY": "test-audit-key-not-a-secret",
        }
    )
    env.update(extra)
    return env


def run_recon(
    args: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str],
    cwd: Path,
    input: str | None = None,
    timeout: float = 300,
) -> Result:
    """`python -m reconcile ARGS` as a real process; waits for it."""
    completed = subprocess.run(
        [*RECON, *map(str, args)],
        cwd=cwd,
        env=dict(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


def start_recon(
    args: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str],
    cwd: Path,
    **popen: Any,
) -> subprocess.Popen[Any]:
    """`python -m reconcile ARGS` started in the background (the caller waits or stops it)."""
    return subprocess.Popen([*RECON, *map(str, args)], cwd=cwd, env=dict(env), **popen)


def stop(process: subprocess.Popen[Any], timeout: float = 10) -> tuple[Any, Any]:
    """SIGTERM, then SIGKILL if it is still there after `timeout`; returns (stdout, stderr)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()


@contextlib.contextmanager
def serving(
    env: Mapping[str, str],
    cwd: Path,
    *,
    drain: str = "0.1s",
    timeout: float = 15,
    **popen: Any,
) -> Iterator[tuple[str, subprocess.Popen[Any]]]:
    """`recon serve` in a real process on a free loopback port, with the real clock and the
    spool drained every `drain`; yields (base URL, process) and stops it with SIGTERM."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    env = {**env, "RECON_SPOOL_DRAIN_INTERVAL": drain, "RECON_BASE_URL": base}
    env.pop("RECON_NOW", None)  # pings carry the real time
    popen.setdefault("stdout", subprocess.DEVNULL)
    process = start_recon(["serve", "--port", str(port)], env=env, cwd=cwd, **popen)
    try:
        try:
            wait_for_http(f"{base}/health", timeout=timeout, process=process)
        except AssertionError as error:
            raise AssertionError(f"recon serve did not start: {error}") from None
        yield base, process
    finally:
        stop(process)


def _translate_newlines(data: bytes, errors: str) -> str:
    """As `subprocess.run(text=True)` reads a pipe: UTF-8, universal newlines."""
    return data.decode("utf-8", errors).replace("\r\n", "\n").replace("\r", "\n")


_IN_PROCESS_LOCK = threading.Lock()  # one in-process run at a time (it swaps process state)


def run_recon_in_process(
    args: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str],
    cwd: Path,
    input: str | None = None,
) -> Result:
    """`reconcile.cli.main(ARGS)` in this process, as `run_recon` would run it: `env` is the
    whole environment, `cwd` the working directory, stdin is `input` (else empty), and stdout
    and stderr are captured as a pipe would carry them. The exit code is main()'s SystemExit.

    What main() changes for its process is restored afterwards: os.environ, the working
    directory, the umask, sys.stdin/stdout/stderr, the root logger's handlers and level,
    context variables (log correlation ids), the secrets the masker was told about and the
    cached store keys."""
    from reconcile import cli, logs, pankey, redact

    argv = [str(a) for a in args]
    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out_bytes, encoding="utf-8", errors="strict", write_through=True)
    stderr = io.TextIOWrapper(
        err_bytes, encoding="utf-8", errors="backslashreplace", write_through=True
    )
    stdin = io.TextIOWrapper(io.BytesIO((input or "").encode("utf-8")), encoding="utf-8")
    root = logging.getLogger()
    saved_env = dict(os.environ)
    with _IN_PROCESS_LOCK:
        saved = (
            sys.stdin,
            sys.stdout,
            sys.stderr,
            os.getcwd(),
            list(root.handlers),
            root.level,
            set(redact._KNOWN),
            dict(pankey._CACHE),
        )
        umask = os.umask(0o077)
        os.umask(umask)
        code: int = 0
        try:
            os.environ.clear()
            os.environ.update(env)
            os.chdir(cwd)
            sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
            # A new process knows no secrets and no keys yet: what an earlier test of this
            # worker configured (the Python API's, say) must not mask this run's output.
            redact._KNOWN.clear()
            pankey._CACHE.clear()
            try:
                with warnings.catch_warnings():
                    _fresh_interpreter_warning_filters()
                    contextvars.copy_context().run(cli.main, argv)
            except SystemExit as exit_:
                code = _exit_code(exit_.code)
                if exit_.code is not None and not isinstance(exit_.code, int):
                    print(exit_.code, file=sys.stderr)
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            sys.stdin, sys.stdout, sys.stderr = saved[0], saved[1], saved[2]
            os.chdir(saved[3])
            os.environ.clear()
            os.environ.update(saved_env)
            os.umask(umask)
            for handler in list(root.handlers):
                if handler not in saved[4]:
                    root.removeHandler(handler)
                    handler.close()
            logs._HANDLERS.clear()
            for handler in saved[4]:
                if handler not in root.handlers:
                    root.addHandler(handler)
            root.setLevel(saved[5])
            redact._KNOWN.clear()
            redact._KNOWN.update(saved[6])
            pankey._CACHE.clear()  # each run reads the store's key file again, as a process would
            pankey._CACHE.update(saved[7])
    return Result(
        code,
        _translate_newlines(out_bytes.getvalue(), "strict"),
        _translate_newlines(err_bytes.getvalue(), "backslashreplace"),
    )


def _fresh_interpreter_warning_filters() -> None:
    """The warning filters of `python -m reconcile` (Python's defaults), not the test run's
    "error": a library's DeprecationWarning on import is hidden there, so it is here."""
    warnings.resetwarnings()
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__", append=True)
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=category, append=True)


def _exit_code(code: object) -> int:
    """What the shell would see for `sys.exit(code)`."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    return 1  # sys.exit("message") prints it and exits 1


def ingest_sample_story(recon: Callable[..., Result], base: Path, source: str) -> None:
    """The sample story's manifests, control totals and run logs (`base`: its source folder),
    in that order, as `make demo` loads them; quarantined rows (exit 3) are part of the story."""
    for kind, files in [
        ("expected", sorted((base / "expected").iterdir())),
        ("totals", [base / "control_totals.csv"]),
        ("processed", sorted((base / "runs").iterdir())),
    ]:
        result = recon("--json", "ingest", "--source", source, "--kind", kind, *files)
        assert result.code in (0, 3), result.stderr
