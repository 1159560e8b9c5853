"""The audit trail: `recon audit verify|head|start-key|log`."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click

from reconcile import audit, auditing
from reconcile.cli.context import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, INSTANT, App, cli, pass_app
from reconcile.cli.output import emit_json, emit_table, info


@cli.group("audit")
def audit_group() -> None:
    """The audit trail: who did what, when, from where; tamper-evident.

    \b
    Examples:
      recon audit verify
      recon audit log --action monitor --since 2026-11-01T00:00:00Z
    """


def _head_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    seq, _, digest = value.partition(":")
    if not seq.isdigit() or int(seq) < 1 or len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise click.BadParameter("expected SEQ:HASH as `recon audit head` prints it", ctx, param)
    return int(seq), digest


@audit_group.command("verify")
@click.option(
    "--expect-head",
    metavar="SEQ:HASH",
    callback=_head_option,
    help="A head printed by `recon audit head` and kept elsewhere: the trail must hold it.",
)
@pass_app
def audit_verify(app: App, expect_head: tuple[int, str] | None) -> None:
    """Check every event of the chain and the anchor outside the database.

    Exit 0 when intact, 3 when broken (the first bad seq and what is wrong are printed), 1 when
    it cannot be checked (keyed rows and no key configured, or not their key).

    \b
    Examples:
      RECON_AUDIT_KEY=... recon audit verify
      RECON_AUDIT_KEY=... recon audit verify --expect-head 1234:9f86d0...
    """
    with app.session() as session:
        verdict = auditing.verify_trail(session, expect_head)
    _report_verdict(app, verdict)


@audit_group.command("head")
@pass_app
def audit_head(app: App) -> None:
    """Print the trail's head (SEQ:HASH) to keep outside this machine.

    A copy of the database and its anchor file taken at one moment cannot be told from the real
    ones later; a head kept elsewhere (a remote store, a dead-man service, the on-call's mail)
    can: `recon audit verify --expect-head SEQ:HASH` checks that the trail still holds it. The
    hash of a keyed event is an HMAC under the audit key: nobody without the key can make one
    that verifies. Reading the head is recorded; the head printed is that event.

    \b
    Example:
      recon audit head | ssh vault 'cat >> heads.txt'
    """
    with app.session() as session:
        head = auditing.record_head(session)
    if app.json:
        emit_json(head)
    else:
        click.echo(f"{head['seq']}:{head['hash']}")


@audit_group.command("start-key")
@pass_app
def audit_start_key(app: App) -> None:
    """Key a trail written without an audit key, from its next event on.

    Checks the trail as it is (unkeyed, with its anchor), then records the event that starts
    the key. Until then a command with a key configured refuses to write to an unkeyed trail:
    that is what a trail rechained without the key (a downgrade) would look like.

    \b
    Example:
      RECON_AUDIT_KEY=... recon audit start-key
    """
    with app.session(sync_config=False) as session:  # nothing unkeyed may be written first
        started = auditing.start_key(session)
    if started is None:
        if app.json:
            emit_json({"keyed": True, "started": False})
        info("the audit trail is keyed already: nothing to do")
        return
    verdict, start = started
    if not verdict.intact:
        _report_verdict(app, verdict)
    if app.json:
        emit_json({"keyed": True, "started": True, "checked": verdict.checked, "from_seq": start})
    info(
        f"{verdict.checked} unkeyed event(s) checked; the audit trail is keyed from seq {start} on"
    )


def _report_verdict(app: App, verdict: audit.Verdict) -> None:
    if app.json:
        emit_json(verdict.__dict__)
    for warning in verdict.warnings:
        info(f"warning: {warning}")
    if verdict.intact:
        end = f", head seq {verdict.head[0]}" if verdict.head else ""
        info(f"audit trail intact: {verdict.checked} event(s) checked{end}")
        sys.exit(EXIT_OK)
    if verdict.unverifiable:
        info(f"cannot check the audit trail: {verdict.problem}")
        sys.exit(EXIT_ERROR)
    info(f"audit trail BROKEN at seq {verdict.first_bad_seq}: {verdict.problem}")
    info("  keep this database as evidence (copy it, and the anchor file, before anything else)")
    sys.exit(EXIT_FINDINGS)


@audit_group.command("log")
@click.option("--since", type=INSTANT, help="Events at or after this time.")
@click.option("--until", type=INSTANT, help="Events at or before this time.")
@click.option("--actor", help="Only this actor (OS user, token:<name>, ...).")
@click.option("--action", help="Only this action, or a family: `monitor` finds monitor.add.")
@click.option("--object", "target", help="Only this object (or its prefix before ':').")
@click.option("--limit", type=click.IntRange(1), default=200, show_default=True)
@pass_app
def audit_log(
    app: App,
    since: datetime | None,
    until: datetime | None,
    actor: str | None,
    action: str | None,
    target: str | None,
    limit: int,
) -> None:
    """Audit events, oldest first (the latest LIMIT). Reading the trail is itself recorded.

    \b
    Examples:
      recon audit log --action monitor --since 2026-11-01T00:00:00Z
      recon audit log --actor token:loader-flow --json
    """
    with app.session() as session:
        rows = auditing.read_log(
            session, since=since, until=until, actor=actor, action=action, target=target,
            limit=limit,
        )  # fmt: skip
    if app.json:
        emit_json({"events": rows})
        return
    for row in rows:
        row["origin"] = row["origin"].get("via", "")
        row["details"] = audit.canonical(row["details"])
    emit_table(rows, ["seq", "ts", "actor", "origin", "action", "object", "outcome", "details"])
