"""reconcile: transaction reconciliation and failure monitor.

The command line is `recon` (README, Commands). For scripts and notebooks:

    import reconcile

    with reconcile.open("recon.duckdb", config="recon.toml") as store:
        store.ingest(["runs/PL-20261111.csv"], source="payments-loader")
        failed = store.failures(date="2026-11-11")     # a pandas DataFrame, amounts exact

See `reconcile.open` and README "Python API".
"""

from __future__ import annotations

import importlib
import os
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconcile.scripting import Reconciliation, Store

__all__ = ["Reconciliation", "Store", "__version__", "open"]
__version__: str  # the installed distribution's, read on first use (below)

# Every module imports this package, so the Python API, which sits at the top of the layers and
# imports pandas, is loaded by name on first use (PEP 562): `import reconcile` and `recon
# --version` stay cheap, and no module below the API depends on it. So is the version (reading
# the installed metadata costs as much as importing click): only what records or shows it asks.
_API = "reconcile.scripting"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("reconcile")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"


# `reconcile.open`, as `duckdb.connect` or `sqlite3.connect`: the name shadows the builtin only
# inside this module, which has no use for it.
def open(
    db: str | os.PathLike[str] | None = None,
    *,
    config: str | os.PathLike[str] | None = None,
    now: str | datetime | None = None,
) -> Store:
    """Open a store for scripting: ingest, reconcile, and read failures, breaks, runs and day
    results as pandas DataFrames.

    `db` is the DuckDB file (default: `RECON_DB`, else ./recon.duckdb), `config` the recon.toml
    (default: `RECON_CONFIG`, else ./recon.toml if present), `now` pretends it is that time
    (default: `RECON_NOW`, else the clock, read once per call). Other settings come from the
    environment as for `recon` (`RECON_PAN_KEY`, `RECON_AUDIT_KEY`...). The store is created
    or migrated now. Use it as a context manager, or call `close()`.
    """
    api: Any = importlib.import_module(_API)
    store: Store = api.open_store(db, config=config, now=now)
    return store


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()["__version__"] = found = _version()  # read once
        return found
    if name in ("Store", "Reconciliation"):
        return getattr(importlib.import_module(_API), name)
    raise AttributeError(f"module 'reconcile' has no attribute {name!r}")
