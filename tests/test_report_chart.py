"""The report's chart: a valid PNG of exactly 1200x600 pixels, the same bytes for the same data,
the report day on its axis, and the failed counts `recon failures` lists; untrusted source names
drawn as plain text. On the sample story in a real DuckDB file."""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from reconcile.reconciliation import failures
from reconcile.reconciliation.scope import Scope
from reconcile.report import chart
from reconcile.report.model import PNG_TYPE
from reconcile.session import Session, open_session, trail_for
from reconcile.settings import load_settings

from .conftest import SAMPLE, Recon
from .support import ingest_sample_story, recon_env

SOURCE = "payments-loader"
NOW = "2026-11-16T08:00:00+00:00"
LAST_DAY = date(2026, 11, 13)  # the story's last business date
STORY_DAYS = 15  # business dates in the story, 2026-10-26 to 2026-11-13
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HOSTILE = [
    "$\\frac{1}{2}$",
    "$\\notacommand{$",  # read as mathematics, this raises
    "a$b$c$d",
    "line\nbreak\r\tand\x00nul\x1b[31mred",
    "<script>alert(1)</script>&amp;",
    "x" * 300,
    "日本語 ünïcödé 🙂 עברית",
    "\u202eevil\u200b",
    "_starts_with_underscore",
    " ",
    "",
]

Opener = Callable[[], AbstractContextManager[Session]]


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Recon:
    """The sample story ingested and reconciled once, read as of Monday 2026-11-16."""
    workdir = tmp_path_factory.mktemp("story")
    db = workdir / "recon.duckdb"
    env = recon_env(db, RECON_NOW=NOW, RECON_CONFIG=str(SAMPLE / "recon.toml"))
    recon = Recon(workdir=workdir, db=db, env=env)
    ingest_sample_story(recon, SAMPLE / SOURCE, SOURCE)
    reconciled = recon("reconcile")
    assert reconciled.code in (0, 3), reconciled.stderr
    return recon


@pytest.fixture
def opener(story: Recon, monkeypatch: pytest.MonkeyPatch) -> Opener:
    """Opens a session on the story's store in this process, as a command would."""
    for name in [n for n in os.environ if n.startswith("RECON_")]:
        monkeypatch.delenv(name)
    settings = load_settings(
        SAMPLE / "recon.toml", db=str(story.db), audit_key=story.env["RECON_AUDIT_KEY"]
    )
    now = date.fromisoformat(NOW[:10])

    def open_one() -> AbstractContextManager[Session]:
        from datetime import UTC, datetime

        return open_session(
            settings,
            trail_for(settings, "cli"),
            now=datetime(now.year, now.month, now.day, 8, tzinfo=UTC),
        )

    return open_one


@pytest.fixture
def session(opener: Opener) -> Iterator[Session]:
    with opener() as one:
        yield one


def png_size(content: bytes) -> tuple[int, int]:
    """Width and height from the PNG's header chunk (IHDR), its CRC checked."""
    assert content[:8] == PNG_SIGNATURE, content[:8]
    length, kind = struct.unpack(">I4s", content[8:16])
    assert kind == b"IHDR" and length == 13
    data = content[16 : 16 + length]
    (crc,) = struct.unpack(">I", content[16 + length : 20 + length])
    assert zlib.crc32(kind + data) == crc, "IHDR's CRC does not match"
    width, height = struct.unpack(">II", data[:8])
    return width, height


def assert_valid_png(content: bytes) -> None:
    """A PNG of exactly CHART_SIZE pixels, its header and every pixel decodable."""
    assert png_size(content) == chart.CHART_SIZE == (1200, 600)
    with Image.open(io.BytesIO(content)) as image:
        assert image.format == "PNG"
        assert image.size == (1200, 600)
        image.load()  # decodes every row: a truncated or corrupt stream raises here
        assert len(image.convert("L").getcolors(maxcolors=1 << 16) or range(3)) > 2, (
            "an image with nothing drawn on it"
        )


def synthetic(names: list[str], count: int, seed: int = 0) -> chart.Series:
    days = [date(2026, 1, 5) + timedelta(days=i) for i in range(count)]
    failed: dict[str, list[int | None]] = {}
    rate: dict[str, list[float | None]] = {}
    for n, name in enumerate(names):
        failed[name] = [(i * 7 + n + seed) % 11 for i in range(count)]
        rate[name] = [float((i * 3 + n + seed) % 13) for i in range(count)]
    return chart.Series(days[-1], None, days, failed, rate)


# --- the data: one statement over the latest day results ----------------------------------------


def test_the_series_covers_the_story_up_to_the_report_day(session: Session) -> None:
    series = chart.chart_series(session.conn, LAST_DAY, None)
    assert series.days[-1] == LAST_DAY
    assert len(series.days) == STORY_DAYS == len(set(series.days))
    assert series.days == sorted(series.days) and series.days[0] == date(2026, 10, 26)
    assert list(series.failed) == [SOURCE]
    last5 = chart.chart_series(session.conn, LAST_DAY, SOURCE, days=5)
    assert last5.days == series.days[-5:]
    assert last5.failed[SOURCE] == series.failed[SOURCE][-5:]
    earlier = chart.chart_series(session.conn, date(2026, 11, 4), SOURCE)
    assert earlier.days[-1] == date(2026, 11, 4) and len(earlier.days) == 8


def test_a_report_day_without_results_is_still_on_the_axis_and_marked_empty(
    session: Session,
) -> None:
    monday = date(2026, 11, 16)  # nothing loaded for it yet
    series = chart.chart_series(session.conn, monday, None, days=30)
    assert series.days[-1] == monday
    assert len(series.days) == STORY_DAYS + 1
    assert series.failed[SOURCE][-1] is None and series.rate[SOURCE][-1] is None
    attachment = chart.report_chart(session.conn, monday, None)
    assert attachment is not None
    assert_valid_png(attachment.content)


def test_the_failed_counts_are_those_recon_failures_lists_and_the_rate_is_per_record(
    session: Session,
) -> None:
    """Failed: the records `recon failures` lists for the day (every break status). Rate: those
    among the day's records processed at least once, from the day's stored result."""
    series = chart.chart_series(session.conn, LAST_DAY, None)
    listing = failures.list_for(
        session, Scope(since=series.days[0], until=LAST_DAY), ["failed"], status="all"
    )
    assert listing is not None
    listed: dict[date, int] = {}
    for row in listing.rows:
        listed[row["business_date"]] = listed.get(row["business_date"], 0) + 1
    assert dict(zip(series.days, series.failed[SOURCE], strict=True)) == listed
    processed = dict(
        session.conn.execute(
            "SELECT business_date, count(DISTINCT (run_id, txn_id)) FROM transactions "
            "WHERE source = ? GROUP BY ALL",
            [SOURCE],
        ).fetchall()
    )
    for day, failed, rate in zip(
        series.days, series.failed[SOURCE], series.rate[SOURCE], strict=True
    ):
        assert failed is not None and rate is not None
        assert rate == pytest.approx(100 * failed / processed[day]), day
    # The story's version 1.5.0 (from 2026-11-10) fails about four times as often.
    before, after = series.rate[SOURCE][:11], series.rate[SOURCE][11:]
    assert max(r for r in before if r is not None) < 5 < min(r for r in after if r is not None)


def test_no_results_in_scope_is_no_chart(session: Session) -> None:
    assert chart.report_chart(session.conn, date(2026, 10, 23), None) is None
    assert chart.report_chart(session.conn, LAST_DAY, "no-such-source") is None
    assert chart.report_chart(session.conn, LAST_DAY, None, since=date(2026, 11, 14)) is None


# --- the picture --------------------------------------------------------------------------------


def test_the_chart_is_a_1200_by_600_png_named_for_its_day_and_scope(session: Session) -> None:
    every = chart.report_chart(session.conn, LAST_DAY, None)
    one = chart.report_chart(session.conn, LAST_DAY, SOURCE)
    assert every is not None and one is not None
    assert every.name == "failed-transactions-2026-11-13-chart.png"
    assert one.name == "failed-transactions-2026-11-13-payments-loader-chart.png"
    for attachment in (every, one):
        assert attachment.media_type == PNG_TYPE == "image/png"
        assert_valid_png(attachment.content)
        assert b"Software" not in attachment.content  # no product or version stamp


def test_the_same_data_draws_the_same_bytes_and_changed_data_other_bytes(
    session: Session,
) -> None:
    first = chart.report_chart(session.conn, LAST_DAY, None)
    again = chart.report_chart(session.conn, LAST_DAY, None)
    assert first is not None and again is not None
    assert first.content == again.content and first.sha256 == again.sha256
    shorter = chart.report_chart(session.conn, LAST_DAY, None, days=10)
    assert shorter is not None and shorter.content != first.content
    series = chart.chart_series(session.conn, LAST_DAY, None)
    assert chart.draw(series) == first.content
    counts = list(series.failed[SOURCE])
    counts[3] = (counts[3] or 0) + 1  # one more failed record on one day
    changed = chart.Series(series.day, None, series.days, {SOURCE: counts}, series.rate)
    assert chart.draw(changed) != first.content


def test_drawing_leaves_no_figure_behind() -> None:
    import gc

    from matplotlib.figure import Figure

    series = synthetic(["a", "b"], 30)
    chart.draw(series)
    gc.collect()
    before = sum(isinstance(o, Figure) for o in gc.get_objects())
    for _ in range(3):
        chart.draw(series)
    gc.collect()
    assert sum(isinstance(o, Figure) for o in gc.get_objects()) == before


# --- untrusted source names ---------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_source_name_draws_as_plain_text(name: str) -> None:
    series = synthetic([name, "plain"], 30)
    assert_valid_png(chart.draw(series))
    scoped = chart.Series(series.day, name, series.days, series.failed, series.rate)
    assert_valid_png(chart.draw(scoped))  # in the title too
    shown = chart.label(name)
    assert "\n" not in shown and "\x00" not in shown and "\u202e" not in shown
    assert len(shown) <= chart.NAME_LENGTH + 1
    assert shown.count("$") == shown.count("\\$"), "every $ escaped: no mathematics"
    assert shown and not shown.startswith("_"), "the legend hides labels starting with _"
    file_name = chart.chart_name(LAST_DAY, name)
    assert file_name.startswith("failed-transactions-2026-11-13-")
    assert file_name.endswith("-chart.png")
    middle = file_name.removeprefix("failed-transactions-2026-11-13-").removesuffix("-chart.png")
    assert middle and len(middle) <= chart.FILE_PART_LENGTH
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in middle), file_name
    assert not middle.startswith((".", "-"))


def test_a_card_number_in_a_source_name_is_masked_in_the_label() -> None:
    shown = chart.label("pay 4111 1111 1111 1111", length=200)
    assert "4111 1111 1111 1111" not in shown and "4111111111111111" not in shown


def test_many_sources_are_counted_past_the_legend() -> None:
    names = [f"source-{i:02d}" for i in range(chart.LEGEND_SOURCES + 9)]
    assert_valid_png(chart.draw(synthetic(names, 30)))


names = st.text(max_size=60)
counts = st.one_of(st.none(), st.integers(min_value=0, max_value=100_000))


@st.composite
def series_of(draw_: st.DrawFn) -> chart.Series:
    sources = draw_(st.lists(names, min_size=1, max_size=15, unique=True))
    count = draw_(st.integers(min_value=1, max_value=30))
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(count)]
    failed: dict[str, list[int | None]] = {}
    rate: dict[str, list[float | None]] = {}
    for name in sorted(sources):
        failed[name] = draw_(st.lists(counts, min_size=count, max_size=count))
        rate[name] = [
            None if f is None else draw_(st.one_of(st.none(), st.floats(0, 100)))
            for f in failed[name]
        ]
    return chart.Series(days[-1], draw_(st.sampled_from([None, *sources])), days, failed, rate)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(series_of())
def test_any_small_series_draws_a_1200_by_600_png(series: chart.Series) -> None:
    content = chart.draw(series)
    assert png_size(content) == (1200, 600)
    with Image.open(io.BytesIO(content)) as image:
        image.load()


def test_write_chart_writes_a_private_png_and_records_the_access(
    session: Session, tmp_path: Path
) -> None:
    out = tmp_path / "chart.png"
    drawn = chart.write_chart(session, None, None, SOURCE, out)
    assert (drawn.since, drawn.until, drawn.days) == (date(2026, 10, 26), LAST_DAY, STORY_DAYS)
    assert drawn.sources == [SOURCE]
    content = out.read_bytes()
    assert_valid_png(content)
    assert out.stat().st_mode & 0o777 == 0o600
    expected = chart.report_chart(session.conn, LAST_DAY, SOURCE)
    assert expected is not None and expected.content == content
    [(details,)] = session.conn.execute(
        "SELECT details FROM audit_events WHERE action = 'report.chart' ORDER BY seq DESC LIMIT 1"
    ).fetchall()
    assert expected.sha256 in str(details) and str(out) in str(details)


# --- the command line: `recon report chart` ----------------------------------------------------


def test_the_command_writes_a_private_png_of_the_range(story: Recon, tmp_path: Path) -> None:
    out = tmp_path / "failures.png"
    result = story("--json", "report", "chart", "--source", SOURCE, "-o", out)
    assert result.code == 0, result.stderr
    shown = result.json()
    assert shown["output"] == str(out) and shown["sources"] == [SOURCE]
    assert (shown["since"], shown["until"], shown["business_days"]) == (
        "2026-10-26",
        "2026-11-13",
        STORY_DAYS,
    )
    content = out.read_bytes()
    assert_valid_png(content)
    assert out.stat().st_mode & 0o777 == 0o600
    import hashlib

    assert shown["sha256"] == hashlib.sha256(content).hexdigest()
    week = tmp_path / "week.png"
    result = story("report", "chart", "--since", "2026-11-09", "--until", "2026-11-13", "-o", week)
    assert result.code == 0, result.stderr
    assert "5 business day(s), 2026-11-09 to 2026-11-13" in result.stderr
    assert_valid_png(week.read_bytes())
    assert week.read_bytes() != content


def test_the_command_says_what_to_do_when_nothing_is_reconciled_in_the_range(
    story: Recon, tmp_path: Path
) -> None:
    out = tmp_path / "none.png"
    result = story("report", "chart", "--since", "2020-01-06", "--until", "2020-01-31", "-o", out)
    assert result.code == 1
    assert "no reconciled results for business dates 2020-01-06 to 2020-01-31" in result.stderr
    assert "recon reconcile --since 2020-01-06 --until 2020-01-31" in result.stderr
    assert "recon ingest" in result.stderr
    assert not out.exists()


def test_the_command_on_an_empty_store_exits_1_and_writes_nothing(
    recon: Recon, tmp_path: Path
) -> None:
    assert recon("init").code == 0
    out = tmp_path / "empty.png"
    result = recon("report", "chart", "-o", out)
    assert result.code == 1, result.stderr
    assert "no transactions loaded yet" in result.stderr and "recon ingest" in result.stderr
    assert not out.exists()


def test_the_command_refuses_an_unknown_source_by_name(story: Recon, tmp_path: Path) -> None:
    out = tmp_path / "unknown.png"
    result = story("report", "chart", "--source", "payments-loadr", "-o", out)
    assert result.code == 2
    assert "unknown source 'payments-loadr'" in result.stderr
    assert "payments-loader" in result.stderr  # the sources there are
    assert not out.exists()
