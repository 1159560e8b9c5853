"""Build the report of one business date from the store (helper "build" writes this module).

Interface agreed between the report's parts:

    build(session, day, source) -> model.Report
        day: a business date, or None for the latest loaded (of the source, or of any source);
        source: one source, or None for every source. Refreshes the reconciliation of the day
        first (as `recon failures` does), reads, and returns the texts and attachments.
    ReportError: nothing to report (no data loaded), named with what to do.
"""

from __future__ import annotations

from datetime import date

from reconcile.errors import ReconError
from reconcile.report.model import Report
from reconcile.session import Session


class ReportError(ReconError):
    """Nothing to build a report from, or a scope that names no known source."""


def build(session: Session, day: date | None, source: str | None) -> Report:
    raise NotImplementedError("the report builder lands with the build helper's branch")
