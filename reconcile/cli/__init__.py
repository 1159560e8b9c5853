"""The `recon` command line: a thin layer over the library.

Each command parses its options, opens one session, calls one library function, renders the
result and picks the exit code (README, "Exit codes"): 0 done; 1 could not do its job; 2 usage
error; 3 done, with findings that need a human. No SQL and no business rules live here.

One module per group of commands; importing them registers their commands on `cli`.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

import click

from reconcile import logs
from reconcile.cli import audit as _audit
from reconcile.cli import breaks as _breaks
from reconcile.cli import config as _config
from reconcile.cli import daily as _daily
from reconcile.cli import ingest as _ingest
from reconcile.cli import monitor as _monitor
from reconcile.cli import reconcile as _reconcile
from reconcile.cli import serve as _serve
from reconcile.cli import watch as _watch
from reconcile.cli.context import EXIT_ERROR, EXIT_OK, EXIT_USAGE, cli, log
from reconcile.cli.output import MaskedStream, _safe, _show_click_error, info
from reconcile.errors import ConfigError, ReconError
from reconcile.ingest.files import Interrupted

COMMAND_MODULES = (_audit, _breaks, _config, _daily, _ingest, _monitor, _reconcile, _serve, _watch)
__all__ = ["cli", "main"]
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


def main(argv: list[str] | None = None) -> None:
    """Entry point: translate every failure into a message and an exit code, never a traceback."""
    os.umask(0o077)  # everything recon creates (WAL, spool, logs, exports) is private
    if not isinstance(sys.stderr, MaskedStream) and sys.stderr is not None:
        sys.stderr = MaskedStream(sys.stderr)
    try:
        _main(argv)
    finally:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()


def _main(argv: list[str] | None) -> None:
    try:
        cli.main(args=argv, prog_name="recon", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):  # click's name for a Ctrl-C
            info("interrupted: nothing half-written (each file loads in one transaction)")
            sys.exit(EXIT_INTERRUPTED)
        info("aborted")
        sys.exit(EXIT_ERROR)
    except Interrupted as exc:  # a Ctrl-C while a file loaded: it was rolled back
        info(_safe(str(exc)))
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        _show_click_error(exc, sys.argv[1:] if argv is None else argv)
        sys.exit(EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code)
    except ConfigError as exc:
        info(f"error: {_safe(str(exc))}")
        sys.exit(EXIT_ERROR)
    except ReconError as exc:
        info(f"error: {_safe(str(exc))}")
        logs.event(log, logging.ERROR, "command failed", error=str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        info("interrupted: nothing half-written (each file loads in one transaction)")
        sys.exit(EXIT_INTERRUPTED)
    except OSError as exc:  # the machine said no (a missing folder, no permission, disk full)
        where = f"{exc.filename}: " if exc.filename else ""
        info(
            f"error: {_safe(where + (exc.strerror or str(exc)))}\n"
            "  check that the folder exists and is writable, then run the command again"
        )
        logs.event(log, logging.ERROR, "command failed", error=str(exc))
        sys.exit(EXIT_ERROR)
    except Exception as exc:  # the last line of defence: a message, not a traceback
        if os.environ.get("RECON_DEBUG"):
            traceback.print_exc()
        log.error("internal error", exc_info=exc)
        info(
            f"internal error: {type(exc).__name__}: {_safe(str(exc))[:500]}\n"
            "  this is a bug in recon; set RECON_DEBUG=1 to see the traceback and report it"
        )
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_OK)
