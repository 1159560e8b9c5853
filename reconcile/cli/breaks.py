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
    "error_code",
    "error_message",
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
@click.option("--assignee", metavar="NAME", help="Only the breaks assigned to NAME.")
@click.pass_context
def breaks_group(
    ctx: click.Context,
    day: str | None,
    since: str | None,
    until: str | None,
    source: str | None,
    status: str,
    categories: str,
    assignee: str | None,
) -> None:
    """The break register: every non-matched record, kept across reconciliations.

    A break is resolved by itself when a later run processes the transaction, or by a person
    with `recon breaks resolve`. Age counts days since the business date.

    \b
    Examples:
      recon breaks --date 2026-11-13
      recon breaks --status all --category missing,duplicated
      recon breaks --assignee alice
      recon breaks assign BRK-1a2b3c4d5e6f alice
      recon breaks assign BRK-1a2b3c4d5e6f BRK-9f8e7d6c5b4a --to alice
      recon breaks comment BRK-1a2b3c4d5e6f "ledger team looking at it"
      recon breaks resolve BRK-1a2b3c4d5e6f BRK-9f8e7d6c5b4a --reason "posted by hand, J-1182"
    """
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(App)
    assert app is not None
    wanted = parse_categories(categories)
    scope = parse_scope(day=day, since=since, until=until, source=source)
    with app.session() as session:
        rows = breaks.listing(session, scope, status=status, categories=wanted, assignee=assignee)
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
@click.argument("break_ids", metavar="BREAK_ID... [ASSIGNEE]", nargs=-1, required=True)
@click.option("--to", "to", metavar="NAME", help="Who to give them to (else the last argument).")
@pass_app
def breaks_assign(app: App, break_ids: tuple[str, ...], to: str | None) -> None:
    """Give breaks to someone to work: `assign ID NAME`, or `assign ID... --to NAME`.

    Each break's assignment is an audit event naming who made it; all or none are assigned.

    \b
    Examples:
      recon breaks assign BRK-1a2b3c4d5e6f alice
      recon breaks assign BRK-1a2b3c4d5e6f BRK-9f8e7d6c5b4a --to alice
    """
    ids = list(break_ids)
    if to is None:
        if len(ids) < 2:
            raise click.UsageError("name the assignee: `assign BREAK_ID NAME` or `--to NAME`")
        to = ids.pop()
    with _listing_hint(), app.session() as session:
        breaks.assign(session, ids, _safe(to))
    if app.json:
        emit_json({"assigned": ids, "assignee": to})
        return
    info(f"{', '.join(ids)} assigned to {to}")


@breaks_group.command("comment")
@click.argument("break_id")
@click.argument("text")
@pass_app
def breaks_comment(app: App, break_id: str, text: str) -> None:
    """Add a note to a break (kept with who wrote it and when; an audit event).

    \b
    Example:
      recon breaks comment BRK-1a2b3c4d5e6f "ledger team looking at it"
    """
    with _listing_hint(), app.session() as session:
        breaks.comment(session, [break_id], _safe(text))
    if app.json:
        emit_json({"commented": [break_id], "comment": _safe(text)})
        return
    info(f"comment added to {break_id}")


@breaks_group.command("resolve")
@click.argument("break_ids", metavar="BREAK_ID...", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why it is resolved (kept in the register).")
@pass_app
def breaks_resolve(app: App, break_ids: tuple[str, ...], reason: str) -> None:
    """Resolve breaks by hand, with a reason; the resolution stands on later reconciles.

    Each resolution is an audit event naming who made it (the OS user running the command);
    all or none are resolved.

    \b
    Examples:
      recon breaks resolve BRK-1a2b3c4d5e6f --reason "posted by hand, ref J-1182"
      recon breaks resolve BRK-1a2b3c4d5e6f BRK-9f8e7d6c5b4a --reason "duplicate upload"
    """
    with _listing_hint(), app.session() as session:
        breaks.resolve(session, list(break_ids), _safe(reason))
    if app.json:
        emit_json({"resolved": list(break_ids), "status": "resolved", "reason": _safe(reason)})
        return
    info(f"{', '.join(break_ids)} resolved")
