"""The daily report: `recon report send`, `schedule`, `preview` and `chart`."""

from __future__ import annotations

from reconcile.cli.context import cli


@cli.group("report")
def report_group() -> None:
    """The daily Failed Transactions report: built, sent, recorded and watched by recon."""


# ----------------------------------------------------------------------------------------------
# recon report send, recon report schedule (helper "send")
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# recon report preview (helper "build")
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# recon report chart (helper "chart")
# ----------------------------------------------------------------------------------------------
