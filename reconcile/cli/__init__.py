"""The `recon` command line: a thin layer over the library.

Each command parses its options, opens one session, calls one library function, renders the
result and picks the exit code (README, "Exit codes"): 0 done; 1 could not do its job; 2 usage
error; 3 done, with findings that need a human. No SQL and no business rules live here.

One module per group of commands, imported only when one of its commands runs: COMMANDS names
each command's module and object, and the first sentence of its help for `recon --help`
(tests/test_startup.py checks it against the command's own).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

import click

from reconcile.cli.context import EXIT_ERROR, EXIT_OK, EXIT_USAGE, cli, log
from reconcile.cli.output import MaskedStream, _safe, _show_click_error, info
from reconcile.errors import ConfigError, ReconError

__all__ = ["COMMANDS", "cli", "main"]
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C

# name -> ("module:object", the first sentence of its help, as `recon --help` lists it)
COMMANDS: dict[str, tuple[str, str]] = {
    "alerts": (
        "reconcile.cli.watch:alerts_command",
        "Alerts, newest first, with each target's delivery status and attempts.",
    ),
    "audit": (
        "reconcile.cli.audit:audit_group",
        "The audit trail: who did what, when, from where; tamper-evident.",
    ),
    "bisect": (
        "reconcile.cli.reconcile:bisect_command",
        "Find the first run where a metric shifted, and what changed just before it.",
    ),
    "breaks": (
        "reconcile.cli.breaks:breaks_group",
        "The break register: every non-matched record, kept across reconciliations.",
    ),
    "config": (
        "reconcile.cli.config:config_group",
        "Configuration history: every change of a monitor, source, target or setting.",
    ),
    "daily": (
        "reconcile.cli.daily:daily_command",
        "The daily job: load the manifests, the control totals, then the run logs, and "
        "reconcile the business days they touched, in one process.",
    ),
    "expect": (
        "reconcile.cli.ingest:expect_command",
        "Record the control totals a run should match (recording again replaces them).",
    ),
    "export": (
        "reconcile.cli.reconcile:export_command",
        "The finance export: control totals per day and per run, breaks, and source files.",
    ),
    "failures": (
        "reconcile.cli.reconcile:failures_command",
        "The failed-record list for a day or range: what the daily email carried, masked.",
    ),
    "forget": (
        "reconcile.cli.ingest:forget_command",
        "Take back what one load put in: a file loaded with the wrong --kind or --source.",
    ),
    "history": (
        "reconcile.cli.reconcile:history_command",
        "Every stored version of a day's or a run's reconciliation, oldest first.",
    ),
    "ingest": (
        "reconcile.cli.ingest:ingest_command",
        "Load run logs (CSV, JSON Lines, Parquet) into the store, validated and masked.",
    ),
    "init": (
        "reconcile.cli.ingest:init",
        "Create the database, or bring its schema up to date.",
    ),
    "monitor": (
        "reconcile.cli.monitor:monitor_group",
        "Monitors: recurring signals that must arrive on schedule (reports, nightly loads, runs).",
    ),
    "notify": (
        "reconcile.cli.watch:notify_group",
        "Notification targets: apprise URLs under aliases in recon.toml.",
    ),
    "ping": (
        "reconcile.cli.watch:ping_command",
        "Record a signal for a monitor: success (default), start, or failure.",
    ),
    "quarantine": (
        "reconcile.cli.ingest:quarantine_command",
        "Rows that could not be loaded: file, line, column, reason and the masked raw row.",
    ),
    "reconcile": (
        "reconcile.cli.reconcile:reconcile_command",
        "Expected versus processed, per run and per business day; results and breaks are kept.",
    ),
    "report": (
        "reconcile.cli.report:report_group",
        "The daily Failed Transactions report: built, sent, recorded and watched by recon.",
    ),
    "run": (
        "reconcile.cli.watch:run_command",
        "Run a command, signalling its start and then its outcome (exit code, duration, output).",
    ),
    "runs": (
        "reconcile.cli.ingest:runs_command",
        "Per run: rows loaded, succeeded, failed and quarantined, and who ingested it when.",
    ),
    "serve": (
        "reconcile.cli.serve:serve_command",
        "HTTP ping URLs (healthchecks-compatible) for scripts and low-code flows.",
    ),
    "token": (
        "reconcile.cli.serve:token_group",
        "Bearer tokens for the HTTP API, one source each (only a hash is stored).",
    ),
    "watch": (
        "reconcile.cli.watch:watch_command",
        "The watchdog: evaluate every monitor, record changes, deliver alerts from the outbox.",
    ),
}
cli.add_lazy_commands(COMMANDS)


def _log_failure(error: BaseException) -> None:
    from reconcile import logs  # on the way out of a failed command only

    logs.event(log, logging.ERROR, "command failed", error=str(error))


def _interrupted(exc: ReconError) -> bool:
    """A Ctrl-C while a file loaded (`ingest.files.Interrupted`): it can only be raised once
    the ingest module is loaded, so a command that never loaded it does not load it now."""
    files = sys.modules.get("reconcile.ingest.files")
    return files is not None and isinstance(exc, files.Interrupted)


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
    except click.ClickException as exc:
        _show_click_error(exc, sys.argv[1:] if argv is None else argv)
        sys.exit(EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code)
    except ConfigError as exc:
        info(f"error: {_safe(str(exc))}")
        sys.exit(EXIT_ERROR)
    except ReconError as exc:
        if _interrupted(exc):  # a Ctrl-C while a file loaded: it was rolled back
            info(_safe(str(exc)))
            sys.exit(EXIT_INTERRUPTED)
        info(f"error: {_safe(str(exc))}")
        _log_failure(exc)
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
        _log_failure(exc)
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
