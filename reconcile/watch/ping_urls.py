"""Which monitor a ping URL names: by the monitor's uuid, or by a ping key and its name.

`recon serve` keeps this in memory and re-reads it now and then, so that a ping is answered
without opening the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reconcile.store.db import Connection


@dataclass(frozen=True)
class PingUrls:
    """uuid -> monitor, and (ping key, monitor name) -> monitor."""

    by_uuid: dict[str, str] = field(default_factory=dict)
    by_slug: dict[tuple[str, str], str] = field(default_factory=dict)


def ping_urls(conn: Connection) -> PingUrls:
    """Every monitor's ping URLs as the store holds them now."""
    monitors = conn.execute("SELECT ping_uuid, name FROM monitors").fetchall()
    keys = [row[0] for row in conn.execute("SELECT ping_key FROM ping_keys").fetchall()]
    return PingUrls(
        by_uuid={ping_uuid: name for ping_uuid, name in monitors},
        by_slug={(key, name): name for key in keys for _, name in monitors},
    )
