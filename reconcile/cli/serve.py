"""The HTTP face and its tokens: `recon serve`, `recon token`."""

from __future__ import annotations

import click

from reconcile import tokens
from reconcile.cli.context import App, _record_event, cli, pass_app
from reconcile.cli.output import emit_json, emit_table, info


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@pass_app
def serve_command(app: App, host: str, port: int) -> None:
    """HTTP ping URLs (healthchecks-compatible) for scripts and low-code flows.

    Every acknowledged ping is on disk before the answer, and reaches the store even while an
    ingest holds it. Set RECON_BASE_URL so `recon monitor show` prints each monitor's URL.
    The banner is printed once the port listens; a port in use is an error (exit 1).

    \b
    Examples:
      recon serve --host 127.0.0.1 --port 8000
      curl -fsS -m 10 --retry 5 http://127.0.0.1:8000/ping/<uuid>
    """
    from reconcile.server import app as web

    _record_event(app, "serve.start", f"{host}:{port}", {})  # migrates before serving, too
    web.serve(
        app.settings,
        host,
        port,
        on_stop=lambda: _record_event(
            app, "serve.stop", f"{host}:{port}", {}, now=app.settings.current_time()
        ),
        on_listening=lambda: info(f"serving pings on http://{host}:{port}/ping/<uuid>"),
    )


@cli.group("token")
def token_group() -> None:
    """Bearer tokens for the HTTP API, one source each (only a hash is stored).

    \b
    Example:
      recon token create loader-flow --source payments-loader
    """


@token_group.command("create")
@click.argument("name")
@click.option("--source", "-s", metavar="NAME", required=True, help="The source it may post to.")
@pass_app
def token_create(app: App, name: str, source: str) -> None:
    """Create a token; it is printed once, now, and never stored.

    \b
    Example:
      recon token create loader-flow --source payments-loader
    """
    with app.session() as session:
        token = tokens.create(session.conn, name, source, now=session.now, user=session.actor)
    if app.json:
        emit_json({"name": name, "source": source, "token": token})
        return
    click.echo(token)
    info(f"token {name} for source {source}: keep it now, it is not shown again")


@token_group.command("list")
@pass_app
def token_list(app: App) -> None:
    """Tokens by name, with their source, when they were made and last used.

    \b
    Example:
      recon token list
    """
    with app.session() as session:
        rows = tokens.list_tokens(session.conn)
    if app.json:
        emit_json({"tokens": rows})
    elif rows:
        emit_table(
            rows, ["name", "source", "created_at", "created_by", "last_used_at", "revoked_at"]
        )
    else:
        info("no tokens: recon token create NAME --source S")


@token_group.command("revoke")
@click.argument("name")
@pass_app
def token_revoke(app: App, name: str) -> None:
    """Revoke a token; calls with it get 401 from then on.

    \b
    Example:
      recon token revoke loader-flow
    """
    with app.session() as session:
        tokens.revoke(session.conn, name, now=session.now)
    if app.json:
        emit_json({"name": name, "revoked": True})
        return
    info(f"token {name} revoked")
