"""The report's chart: failure rate and failed count per source over the last business days,
drawn with matplotlib (Agg backend, no display). The only module that imports matplotlib.

What is plotted, per source in scope and per business day with stored results (the latest
version of each day's result, `latest_day_results`, as the report, `recon reconcile` and the
finance export read it):

- **failed**: the day's records whose every processing attempt failed (category `failed`: a
  failure that a retry in the same run fixed is matched, not failed), the count `recon
  failures` lists for that day (open and resolved breaks alike);
- **failure rate**: failed records / records processed that day (records with at least one
  processing attempt, `processed_count`), in percent; no point on a day that processed nothing.
  A rate of records, after retries: not the run log's row rate (`recon runs`, monitors'
  `--max-failure-rate`, `recon bisect`), which counts every failed attempt among rows loaded.

The days are the last `days` business dates with stored results (of any source in scope) up to
and including the report day, on a category axis (weekends and holidays take no room); the
report day is always on it and marked, even without results of its own. Read in one statement.

Drawing: one `Figure` of its own (no pyplot state: nothing to close, nothing kept between
draws in a long-lived server), exactly CHART_SIZE pixels, and the same bytes for the same data
(no software or time stamp in the PNG). Source names are untrusted: control characters go,
`$` is escaped (matplotlib would read `$...$` as mathematics), long names are cut, and the
free-text masking runs over them anyway.
"""

from __future__ import annotations

import io
import math
import re
import unicodedata
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from reconcile import formats, redact
from reconcile.errors import ReconError
from reconcile.reconciliation.export import record_access
from reconcile.reconciliation.refresh import refresh_stored
from reconcile.reconciliation.scope import Scope
from reconcile.report.model import PNG_TYPE, Attachment
from reconcile.session import Session
from reconcile.store.db import Connection, fetch_dicts

CHART_SIZE = (1200, 600)  # pixels: width, height
DPI = 100
DAYS = 30  # business days drawn by default
MAX_DAYS = 400  # business days a range may draw (more: the last MAX_DAYS of it)
NAME_LENGTH = 40  # characters of a source's name shown in the title
LEGEND_LENGTH = 24  # and in the legend
LEGEND_SOURCES = 12  # sources named in the legend; the others are counted in one line
FILE_PART_LENGTH = 60  # characters of a source's name in a file name

# The latest result of each (source, day) in scope and range, on the last `days` dates that have
# one, with the report day always among them (an empty slot when it has no results).
CHART_SQL = """
WITH d AS (
    SELECT source, business_date, failed, processed_count
    FROM latest_day_results
    WHERE business_date <= $day
      AND ($since IS NULL OR business_date >= $since)
      AND ($source IS NULL OR source = $source)),
axis AS (
    SELECT $day::DATE AS business_date
    UNION ALL
    SELECT business_date FROM (SELECT DISTINCT business_date FROM d WHERE business_date < $day)
    ORDER BY business_date DESC LIMIT $days)
SELECT a.business_date, d.source, d.failed, d.processed_count,
       CASE WHEN d.processed_count > 0 THEN 100.0 * d.failed / d.processed_count END AS rate
FROM axis a LEFT JOIN d USING (business_date)
ORDER BY a.business_date, d.source
"""


class ChartError(ReconError):
    """Nothing to draw for the range asked: the message names it and what to do; `since` and
    `until` are the range (None: nothing loaded at all), for a face to add its own hint."""

    def __init__(self, message: str, since: date | None = None, until: date | None = None):
        super().__init__(message)
        self.since = since
        self.until = until


class UnknownSourceError(ReconError):
    """A source that has no stored results and is not configured: a wrong name, most likely."""

    exit_code = 2


@dataclass(frozen=True)
class Series:
    """What a chart shows: the business days on its axis (oldest first, the report day last),
    and per source (sorted) the failed count and failure rate of each of those days (None: no
    results that day; a rate of None also when nothing was processed)."""

    day: date
    source: str | None
    days: list[date]
    failed: dict[str, list[int | None]]
    rate: dict[str, list[float | None]]

    @property
    def has_results(self) -> bool:
        return bool(self.failed)


def chart_series(
    conn: Connection, day: date, source: str | None, days: int = DAYS, since: date | None = None
) -> Series:
    """The chart's data for `day` and scope, in one statement: the last `days` business dates
    with stored results up to `day` (and from `since`, when given), `day` always the last."""
    if days < 1:
        raise ValueError("days must be at least 1")
    rows = fetch_dicts(
        conn, CHART_SQL, {"day": day, "since": since, "source": source, "days": days}
    )
    axis = sorted({row["business_date"] for row in rows})
    position = {d: i for i, d in enumerate(axis)}
    failed: dict[str, list[int | None]] = {}
    rate: dict[str, list[float | None]] = {}
    for row in rows:  # one row per (day, source) drawn: at most days x sources, no records
        name = row["source"]
        if name is None:
            continue
        failed.setdefault(name, [None] * len(axis))[position[row["business_date"]]] = int(
            row["failed"]
        )
        value = row["rate"]
        rate.setdefault(name, [None] * len(axis))[position[row["business_date"]]] = (
            None if value is None else float(value)
        )
    ordered = sorted(failed)
    return Series(
        day,
        source,
        axis,
        {name: failed[name] for name in ordered},
        {name: rate[name] for name in ordered},
    )


def report_chart(
    conn: Connection,
    day: date,
    source: str | None,
    days: int = DAYS,
    *,
    since: date | None = None,
) -> Attachment | None:
    """The report's chart of `day` for one source or all (None) as a PNG attachment named
    `failed-transactions-<day>[-<source>]-chart.png`; None when no business day up to `day`
    (from `since`) has stored results in that scope."""
    series = chart_series(conn, day, source, days, since)
    if not series.has_results:
        return None
    return Attachment(chart_name(day, source), PNG_TYPE, draw(series))


# The business dates with data loaded (run logs or manifests) of the scope up to `until`: the
# first of the last `days` of them (the default start of a chart's range).
FIRST_LOADED_SQL = """
SELECT min(business_date) FROM (
    SELECT business_date FROM (
        SELECT business_date FROM transactions
        WHERE business_date <= $until AND ($source IS NULL OR source = $source)
        UNION
        SELECT business_date FROM expected_transactions
        WHERE business_date <= $until AND ($source IS NULL OR source = $source))
    ORDER BY business_date DESC LIMIT $days)
"""

# Every source the store knows: loaded from, or with stored results.
KNOWN_SOURCES_SQL = """
SELECT source FROM ingested_files UNION SELECT source FROM day_results ORDER BY source
"""


@dataclass(frozen=True)
class Drawn:
    """What `write_chart` wrote: the file, the business dates drawn (first and last, the number
    of them), the sources, and the file's SHA-256."""

    path: Path
    since: date
    until: date
    days: int
    sources: list[str]
    sha256: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "output": str(self.path),
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "business_days": self.days,
            "sources": self.sources,
            "sha256": self.sha256,
        }


def first_loaded(conn: Connection, until: date, source: str | None, days: int = DAYS) -> date:
    """The first of the last `days` business dates loaded (of `source`) up to `until`: where a
    chart of those days starts, so the range to reconcile before drawing it."""
    row = conn.execute(
        FIRST_LOADED_SQL, {"until": until, "source": source, "days": days}
    ).fetchone()
    return row[0] if row and row[0] is not None else until


def write_chart(
    session: Session, since: date | None, until: date | None, source: str | None, out: Path
) -> Drawn:
    """The chart of a range alone, written to `out` as a private PNG file (whole or not at all)
    and recorded as an access. `until` defaults to the latest business date loaded (of
    `source`), `since` to the first of the last DAYS business dates loaded up to `until`; the
    range is reconciled first (nothing changes when nothing new arrived), so the chart matches
    `reconcile`. A range draws at most its last MAX_DAYS business days with results."""
    formats.check_output(out)
    conn = session.conn
    if source is not None:
        known = [row[0] for row in conn.execute(KNOWN_SOURCES_SQL).fetchall()]
        if source not in known and source not in session.settings.sources:
            listed = ", ".join(label(name) for name in known) or "none yet"
            raise UnknownSourceError(
                f"unknown source {label(source)!r}: nothing was loaded from it and it is not "
                f"configured (sources with data: {listed}); check the name"
            )
    if until is None:
        latest = Scope(source, last=True).resolve(conn)
        if latest is None or latest.until is None:
            raise ChartError(
                f"no transactions loaded yet{_of(source)}: nothing to draw; load the run logs "
                "and reconcile them first"
            )
        until = latest.until
    first = since if since is not None else first_loaded(conn, until, source)
    if first > until:
        raise ChartError(f"the range starts on {first}, after its end {until}: swap them")
    refresh_stored(session, Scope(source, since=first, until=until))
    series = chart_series(conn, until, source, MAX_DAYS if since else DAYS, first)
    if not series.has_results:
        raise ChartError(
            f"no reconciled results{_of(source)} for business dates {first} to {until}: "
            "nothing to draw; load the run logs (and manifests) of those days and reconcile "
            "them, then draw the chart again",
            first,
            until,
        )
    png = draw(series)
    with formats.private_file(out) as handle:
        handle.write(png)
    written = record_access(
        session,
        "report.chart",
        Scope(source, since=first, until=until).text,
        [out],
        {"business_days": len(series.days), "sources": list(series.failed)},
    )
    return Drawn(
        out, series.days[0], until, len(series.days), list(series.failed), written.get(str(out))
    )


def _of(source: str | None) -> str:
    return f" of source {label(source)!r}" if source is not None else ""


def chart_name(day: date, source: str | None) -> str:
    """`failed-transactions-<day>[-<source>]-chart.png`, the source made safe for a file name."""
    part = f"-{file_part(source)}" if source is not None else ""
    return f"failed-transactions-{day.isoformat()}{part}-chart.png"


def file_part(name: str) -> str:
    """A source's name as part of a file name: letters, digits, `.`, `_` and `-` kept (ASCII),
    every other run of characters one `_`, no leading dot or dash, at most FILE_PART_LENGTH."""
    part = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".-")[:FILE_PART_LENGTH]
    return part or "source"


def label(name: str, length: int = NAME_LENGTH) -> str:
    """An untrusted name as text matplotlib draws as written: masked like any free text,
    control and format characters (newlines, bidirectional overrides) removed, cut to `length`
    characters, `$` escaped (else `$...$` is read as mathematics), and a leading `_` kept
    visible (the legend hides labels starting with one)."""
    text = redact.mask_secrets(name)
    text = "".join(
        " " if ch in "\t\n\r" else ch
        for ch in text
        if ch in "\t\n\r" or not unicodedata.category(ch).startswith("C")
    )
    text = " ".join(text.split()) or "(unnamed)"
    if len(text) > length:
        text = text[: length - 1] + "\u2026"
    text = text.replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def _matplotlib() -> tuple[Any, Any, Any]:
    """matplotlib's Figure, its Agg canvas and tickers, imported on first use (about half a
    second, which only drawing should pay). No pyplot: a figure of its own is not registered
    anywhere, so nothing has to be closed and nothing stays behind in a long-lived server."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import ticker
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    return Figure, FigureCanvasAgg, ticker


def draw(series: Series) -> bytes:
    """The chart as PNG bytes, CHART_SIZE pixels: failure rate per source (lines, top) and
    failed count per source (bars, bottom) on the same business days, the report day marked."""
    figure_class, canvas_class, ticker = _matplotlib()
    width, height = CHART_SIZE
    with warnings.catch_warnings():
        # A glyph the font lacks (a name in a script it does not cover) is drawn as a box.
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from")
        warnings.filterwarnings("ignore", message=r"Matplotlib currently does not support")
        figure = figure_class(figsize=(width / DPI, height / DPI), dpi=DPI)
        canvas_class(figure)
        try:
            _draw(figure, series, ticker)
            out = io.BytesIO()
            figure.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
        finally:
            figure.clear()
    return out.getvalue()


def _draw(figure: Any, series: Series, ticker: Any) -> None:
    names = list(series.failed)
    count = len(series.days)
    positions = list(range(count))
    marked = series.days.index(series.day)
    colours = _colours(len(names))
    figure.subplots_adjust(left=0.07, right=0.79, top=0.9, bottom=0.14, hspace=0.12)
    rates, bars = figure.subplots(2, 1, sharex=True)
    width = 0.8 / max(len(names), 1)
    handles = []
    for index, name in enumerate(names):
        colour = colours[index]
        values = [math.nan if v is None else v for v in series.rate[name]]
        (line,) = rates.plot(
            positions,
            values,
            color=colour,
            marker="o" if count <= 60 else None,  # a dot per day while there is room
            markersize=3,
            linewidth=1.5,
        )
        handles.append(line)
        heights = [0 if v is None else v for v in series.failed[name]]
        offsets = [p - 0.4 + width * (index + 0.5) for p in positions]
        bars.bar(offsets, heights, width=width, color=colour, alpha=0.85, linewidth=0)
    top_rate = max((v for r in series.rate.values() for v in r if v is not None), default=0.0)
    top_failed = max((v for f in series.failed.values() for v in f if v is not None), default=0)
    rates.set_ylim(0, top_rate * 1.15 if top_rate > 0 else 1)
    bars.set_ylim(0, top_failed * 1.15 if top_failed > 0 else 1)
    rates.set_ylabel("failure rate (%)")
    bars.set_ylabel("failed records")
    bars.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    for axes in (rates, bars):
        axes.grid(axis="y", color="#dddddd", linewidth=0.6)
        axes.set_axisbelow(True)
        axes.axvline(marked, color="#c0392b", linestyle="--", linewidth=1.2)
        axes.set_xlim(-0.6, count - 0.4)
    empty = all(f[marked] is None for f in series.failed.values())
    rates.text(
        marked,
        0.97,
        f" report day {series.day.isoformat()}{' (no results)' * empty} ",
        transform=rates.get_xaxis_transform(),
        ha="right" if marked > count / 2 else "left",
        va="top",
        color="#c0392b",
        fontsize=9,
    )
    step = max(1, math.ceil(count / 16))
    shown = [i for i in positions if (marked - i) % step == 0]
    bars.set_xticks(shown, [series.days[i].isoformat() for i in shown], rotation=45, ha="right")
    bars.tick_params(axis="x", labelsize=8)
    scope = f"source {label(series.source)}" if series.source is not None else "all sources"
    first, last = series.days[0].isoformat(), series.days[-1].isoformat()
    span = f"{first} to {last}" if count > 1 else last
    figure.suptitle(
        f"Failed transactions, {scope}: {span} ({count} business day{'s' * (count != 1)})",
        fontsize=12,
    )
    labels = [label(name, LEGEND_LENGTH) for name in names[:LEGEND_SOURCES]]
    handles = handles[:LEGEND_SOURCES]
    if len(names) > LEGEND_SOURCES:
        (more,) = rates.plot([], [], linestyle="none")
        handles.append(more)
        labels.append(f"and {len(names) - LEGEND_SOURCES} more source(s)")
    if handles:
        figure.legend(
            handles,
            labels,
            loc="upper left",
            bbox_to_anchor=(0.8, 0.9),
            fontsize=8,
            title="source",
            title_fontsize=9,
            frameon=False,
        )


def _colours(count: int) -> list[Any]:
    """A colour per source: tab10, tab20 past ten sources, repeating past twenty."""
    import matplotlib

    palette = matplotlib.colormaps["tab10" if count <= 10 else "tab20"]
    return [palette(i % palette.N) for i in range(count)]
