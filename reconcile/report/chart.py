"""The report's chart: failure rate and failed count per source over the last business days,
drawn with matplotlib (Agg backend, no display). The only module that imports matplotlib."""

from __future__ import annotations

from typing import Any


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only, no display), imported on first use:
    it costs about half a second, which only drawing should pay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
