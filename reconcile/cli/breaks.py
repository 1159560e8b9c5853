"""The break register: `recon breaks` and its actions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from reconcile.cli.context import App, cli, date_options, pass_app
from reconcile.cli.output import _cell, _safe, emit_json, emit_table, info
from reconcile.cli.reconcile import parse_categories, parse_scope
from reconcile.reconciliation import breaks

BREAK_COLUMNS = [
    "break_id",
    "business_date",
    "run_id",
    "txn_id",
    "category",
    "amount",
    "currency",
    "age_days",
    "status",
    "assignee",
    "note",
]


@contextmanager
def _listing_hint() -> Iterator[None]:
    """A break id not found: say how to list them."""
    try:
        yield
    except breaks.BreakNotFoundError as exc:
        raise breaks.BreakNotFoundError(
            f"{exc}; list them with `recon breaks --status all`"
        ) from None


@cli.group("breaks", invoke_without_command=True)
@date_options
@click.option("--status", type=click.Choice(breaks.STATUSES), default="open", show_default=True)
@click.option("--category", "categories", metavar="C,...", default="all", show_default=True)
@click.pass_context
def breaks_group(
    ctx: click.Context,
    day: str | None,
    since: str | None,
    until: str | None,
    source: str | None,
    status: str,
    categories: str,
) -> None:
    """The break register: every non-matched record, kept across reconciliations.

    A break is resolved by itself when a later run processes the transaction, or by a person
    with `recon breaks resolve`. Age counts days since the business date.

    \b
    Examples:
      recon breaks --date 2026-11-13
      recon breaks --status all --category missing,duplicated
      recon breaks assign BRK-1a2b3c4d5e6f alice
      recon breaks comment BRK-1a2b3c4d5e6f "ledger team looking at it"
      recon breaks resolve BRK-1a2b3c4d5e6f --reason "posted by hand, ref J-1182"
    """
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(App)
    assert app is not None
    wanted = parse_categories(categories)
    scope = parse_scope(day=day, since=since, until=until, source=source)
    with app.session() as session:
        rows = breaks.listing(session, scope, status=status, categories=wanted)
    if app.json:
        emit_json({"breaks": rows})
        return
    if not rows:
        info(f"no {status} breaks in that scope" if status != "all" else "no breaks")
        return
    emit_table(rows, BREAK_COLUMNS)
    info(f"{len(rows)} break(s); details: recon breaks show BREAK_ID")


@breaks_group.command("show")
@click.argument("break_id")
@pass_app
def breaks_show(app: App, break_id: str) -> None:
    """One break with its history of comments.

    \b
    Example:
      recon breaks show BRK-1a2b3c4d5e6f
    """
    with _listing_hint(), app.session() as session:
        found = breaks.show(session.conn, break_id, session.now)
    if app.json:
        emit_json(found)
        return
    for key, value in found.items():
        if key != "comments":
            click.echo(f"{key:>16}: {_cell(value) if value is not None else ''}")
    for note in found["comments"]:
        click.echo(
            f"  {_cell(note['commented_at'])} {_cell(note['commented_by'], True)}: "
            f"{_cell(note['comment'], True)}"
        )


@breaks_group.command("assign")
@click.argument("break_id")
@click.argument("assignee")
@pass_app
def breaks_assign(app: App, break_id: str, assignee: str) -> None:
    """Give a break to someone to work.

    \b
    Example:
      recon breaks assign BRK-1a2b3c4d5e6f alice
    """
    with _listing_hint(), app.session() as session:
        breaks.assign(session.conn, break_id, assignee, now=session.now, user=session.actor)
    if app.json:
        emit_json({"break_id": break_id, "assignee": assignee})
        return
    info(f"{break_id} assigned to {assignee}")


@breaks_group.command("comment")
@click.argument("break_id")
@click.argument("text")
@pass_app
def breaks_comment(app: App, break_id: str, text: str) -> None:
    """Add a note to a break (kept with who wrote it and when).

    \b
    Example:
      recon breaks comment BRK-1a2b3c4d5e6f "ledger team looking at it"
    """
    with _listing_hint(), app.session() as session:
        breaks.comment(session.conn, break_id, _safe(text), now=session.now, user=session.actor)
    if app.json:
        emit_json({"break_id": break_id, "comment": _safe(text)})
        return
    info(f"comment added to {break_id}")


@breaks_group.command("resolve")
@click.argument("break_id")
@click.option("--reason", required=True, help="Why it is resolved (kept in the register).")
@pass_app
def breaks_resolve(app: App, break_id: str, reason: str) -> None:
    """Resolve a break by hand, with a reason; the resolution stands on later reconciles.

    \b
    Example:
      recon breaks resolve BRK-1a2b3c4d5e6f --reason "posted by hand, ref J-1182"
    """
    with _listing_hint(), app.session() as session:
        breaks.resolve(session.conn, break_id, _safe(reason), now=session.now, user=session.actor)
    if app.json:
        emit_json({"break_id": break_id, "status": "resolved", "reason": _safe(reason)})
        return
    info(f"{break_id} resolved")
