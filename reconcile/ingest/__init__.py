"""Ingest: files in, validated and masked rows out, runs recorded.

`ingest_files(session, inputs, source=..., kind=...)` is the batch every entry point uses (the
CLI, the HTTP transactions API, the mail watcher); it is loaded on first use, so importing a
submodule (the kinds, the readers) costs nothing more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconcile.ingest.batch import Batch, Input, Refused, ingest_files

__all__ = ["Batch", "Input", "Refused", "ingest_files"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from reconcile.ingest import batch

        return getattr(batch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
