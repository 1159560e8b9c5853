"""The daily report: `recon report send`, `schedule`, `preview` and `chart`."""

from __future__ import annotations

from reconcile.cli.context import cli


@cli.group("report")
def report_group() -> None:
    """The daily Failed Transactions report: built, sent, recorded and watched by recon.

    \b
    Examples:
      recon report send --date last --tag operations
      recon report schedule --cron "0 7 * * 1-5" --tz Europe/London --grace 1h --tag oncall
      recon report preview --date 2026-11-13 -o report-preview/
      recon report chart --source payments-loader -o failures.png
    """


# ----------------------------------------------------------------------------------------------
# recon report send, recon report schedule (helper "send")
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# recon report preview (helper "build")
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# recon report chart (helper "chart")
# ----------------------------------------------------------------------------------------------
