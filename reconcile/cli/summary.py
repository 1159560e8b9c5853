"""What `recon reconcile` and `recon daily` print of a reconciliation: the day (and run) table,
what changed and what needs a person, or its JSON. Apart from the other reading commands, so
that the daily job does not load the failure, export and workbook writers it never uses."""

from __future__ import annotations

from typing import Any

import click

from reconcile.cli.output import emit_table, info
from reconcile.reconciliation import currencies
from reconcile.reconciliation import refresh as reconciliation

COUNT_COLUMNS = ["status", *reconciliation.COUNT_FIELDS]


DAY_COLUMNS = [
    "business_date",
    *COUNT_COLUMNS,
    "expected_amount",
    "processed_amount",
    "amount_difference",
]


RUN_COLUMNS = ["run_id", *DAY_COLUMNS]


def reconciliation_json(outcome: reconciliation.Outcome) -> dict[str, Any]:
    """The JSON shape of `recon reconcile --json` (and of `recon daily --json`'s
    reconciliation)."""
    return {
        "reconciliation_id": outcome.reconciliation_id,
        "inputs_sha256": outcome.inputs_sha256,
        "runs_changed": outcome.runs_changed,
        "days_changed": outcome.days_changed,
        "runs": outcome.runs,
        "days": outcome.days,
    }


def describe_reconciliation(outcome: reconciliation.Outcome, show_runs: bool) -> None:
    """The summary `recon reconcile` prints: the day table (the run table too when
    `show_runs`, or when no run has a day), then what changed and what needs a person."""
    if not outcome.runs:
        info("nothing to reconcile in that scope: ingest run logs and manifests first")
        return
    # With more than one source, a row is a source's day (or run): the source is shown, and
    # days are counted as source-days (7 days of 2 sources are 14 source-days).
    several = len({r["source"] for r in outcome.runs}) > 1
    sourced = ["source"] if several else []
    days_word = "source-day(s)" if several else "day(s)"
    if outcome.days:
        emit_table(outcome.days, [*sourced, *DAY_COLUMNS])
    if show_runs or not outcome.days:
        click.echo()
        emit_table(outcome.runs, [*sourced, *RUN_COLUMNS])
    if currencies.mixed(outcome.currency_totals):
        click.echo()
        click.echo("amounts per currency (the amounts above add all currencies together, as")
        click.echo("control totals do; per day and currency: --json, or recon export):")
        emit_table(outcome.currency_totals, ["source", *currencies.TOTAL_COLUMNS])
    changed = (
        f"{outcome.runs_changed} run(s) and {outcome.days_changed} {days_word} changed since the "
        "last reconciliation"
        if outcome.runs_changed or outcome.days_changed
        else "no change since the last reconciliation (inputs unchanged)"
    )
    info(
        f"reconciliation {outcome.reconciliation_id}: {len(outcome.runs)} run(s), "
        f"{len(outcome.days)} {days_word}; {changed}; breaks opened {outcome.breaks_opened}, "
        f"resolved {outcome.breaks_resolved}"
    )
    troubled = [d for d in outcome.days if d["status"] == "breaks"]
    pending = [r for r in outcome.runs if r["status"] == "pending"]
    if troubled:
        latest = max(troubled, key=lambda d: (d["business_date"], d["source"]))
        sources = sorted({d["source"] for d in troubled})
        per_source = (
            " ("
            + ", ".join(f"{n}: {sum(d['source'] == n for d in troubled)}" for n in sources)
            + ")"
            if several
            else ""
        )
        info(
            f"{len(troubled)} {days_word} have breaks{per_source}. Latest: "
            f"{latest['business_date']}; see it with\n"
            f"  recon failures --date {latest['business_date']} --category all\n"
            f"  recon breaks --date {latest['business_date']}"
        )
    if pending:
        names = ", ".join(r["run_id"] for r in pending[:5])
        info(f"{len(pending)} run(s) expected but not arrived (pending): {names}")
    broken_runs = [r for r in outcome.runs if r["status"] == "breaks"]
    if broken_runs and not troubled:  # runs with no business date have no day to show them
        names = ", ".join(r["run_id"] for r in broken_runs[:5])
        info(f"{len(broken_runs)} run(s) have breaks: {names}; see them with recon breaks")
    unchecked = [r for r in outcome.runs if not r["has_manifest"] and not r["has_totals"]]
    if unchecked:
        names = ", ".join(r["run_id"] for r in unchecked[:5])
        info(
            f"{len(unchecked)} run(s) had nothing to compare with (no manifest, no control "
            f"totals): {names}; judged on their logs alone (failed, duplicated), nothing can be "
            "missing. Give what was expected with `recon ingest --kind expected|totals` or "
            "`recon expect`"
        )
    if not troubled and not pending and not broken_runs:
        info("all balanced")
