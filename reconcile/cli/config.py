"""Configuration history: `recon config history|diff|revert`."""

from __future__ import annotations

import json
import sys

import click

from reconcile import audit, versions
from reconcile.cli.context import EXIT_ERROR, EXIT_OK, App, cli, pass_app
from reconcile.cli.output import emit_json, emit_table, info
from reconcile.watch import configure


@cli.group("config")
def config_group() -> None:
    """Configuration history: every change of a monitor, source, target or setting.

    \b
    Examples:
      recon config history monitor:daily-report
      recon config diff 3 7
      recon config revert monitor:daily-report --to 3 --reason "grace was too short"
    """


@config_group.command("history")
@click.argument("target", metavar="[OBJECT]", required=False)
@pass_app
def config_history(app: App, target: str | None) -> None:
    """Every version, oldest first: monitor:NAME, source:NAME, target:ALIAS, mailbox:ALIAS or
    settings.

    \b
    Example:
      recon config history source:payments-loader
    """
    with app.session() as session:
        rows = versions.history(session.conn, target)
    if app.json:
        emit_json({"versions": rows})
        return
    if not rows:
        info("no configuration versions" + (f" of {target}" if target else ""))
        return
    for row in rows:
        row["value"] = "(removed)" if row["value"] is None else audit.canonical(row["value"])
    emit_table(rows, ["version", "object", "changed_at", "changed_by", "via", "reason", "value"])


@config_group.command("diff")
@click.argument("first", type=int)
@click.argument("second", type=int)
@pass_app
def config_diff(app: App, first: int, second: int) -> None:
    """What differs between two versions, field by field.

    \b
    Example:
      recon config diff 3 7
    """
    with app.session() as session:
        found = versions.diff(session.conn, first, second)
    if app.json:
        emit_json(found)
        return
    a, b = found["from"], found["to"]
    info(f"{first} ({a['object']}, {a['changed_at']:%Y-%m-%d %H:%M} UTC, {a['changed_by']}) -> "
         f"{second} ({b['object']}, {b['changed_at']:%Y-%m-%d %H:%M} UTC, {b['changed_by']})")  # fmt: skip
    if not found["changes"]:
        info("no difference")
    for key, change in found["changes"].items():
        click.echo(f"  {key}: {json.dumps(change['from'])} -> {json.dumps(change['to'])}")


@config_group.command("revert")
@click.argument("target", metavar="OBJECT")
@click.option("--to", "version", type=int, required=True, help="The version to go back to.")
@click.option("--reason", help="Why (kept with the new version).")
@pass_app
def config_revert(app: App, target: str, version: int, reason: str | None) -> None:
    """Put a monitor back as it was at a version; the revert is itself a new version.

    Sources, targets, mailboxes and settings live in recon.toml: for those, the old values are
    printed to put back in the file (recon does not rewrite your configuration file).

    \b
    Example:
      recon config revert monitor:daily-report --to 3 --reason "grace was too short"
    """
    try:
        with app.session() as session:
            done = configure.revert(session, target, version, reason=reason)
    except configure.NotThisObject as exc:
        raise click.BadParameter(str(exc)) from None
    if app.json:
        emit_json(
            {"object": target, "version": version, "applied": done.applied,
             "recorded_as": done.recorded_as, "value": done.value}
        )  # fmt: skip
        sys.exit(EXIT_OK if done.applied else EXIT_ERROR)
    if not done.applied:
        info(f"{target} comes from recon.toml; version {version} was:")
        click.echo(json.dumps(done.value, indent=2))
        info("edit recon.toml to match; the next command records the change as a version")
        sys.exit(EXIT_ERROR)
    info(f"{target} is as at version {version} (recorded as version {done.recorded_as})")
