"""Per-source number and time formats (issue 13, item 10): a decimal-comma export and US
timestamps load with exact amounts and the right instants once recon.toml says how the source
writes them; without the settings, the rows are quarantined with a reason naming the setting."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from .conftest import Recon

pytestmark = pytest.mark.in_process

BERLIN = (
    "txn_id;amount;status;run_id;processed_at\n"
    "E1;1.234,56;OK;R1;23.03.2026 02:15:00\n"
    "E2;-0,01;OK;R1;23.03.2026 14:00:00\n"
    "E3;(12,50);FAILED;R1;2026-03-23T10:00:00+01:00\n"
    "E4;1.234.567,8901;OK;R1;29.03.2026 03:30:00\n"  # the day after the spring DST change
)
NEW_YORK = (
    "txn_id,amount,status,run_id,processed_at,business_date\n"
    'U1,"1,234.56",OK,R1,03/23/2026 02:15:00,03/23/2026\n'
    "U2,5.00,OK,R1,11/01/2026 23:59:59,11/01/2026\n"
)


def _utc(conn_rows: list[tuple[object, ...]]) -> dict[str, tuple[object, ...]]:
    return {
        str(r[0]): (r[1], r[2].astimezone(UTC) if isinstance(r[2], datetime) else r[2], *r[3:])
        for r in conn_rows
    }


def test_decimal_comma_and_day_first_times_load_exactly_with_the_settings(
    recon: Recon,
    write_file,  # type: ignore[no-untyped-def]
) -> None:
    recon.write_config(
        "[sources.berlin]\n"
        'delimiter = ";"\n'
        'timezone = "Europe/Berlin"\n'
        'decimal_separator = ","\n'
        'thousands_separator = "."\n'
        'timestamp_format = "%d.%m.%Y %H:%M:%S"\n'
    )
    path = write_file("berlin.csv", BERLIN)
    result, files = recon.ingest(path, source="berlin")
    assert result.code == 0, result.stderr
    assert (files[0]["rows_loaded"], files[0]["rows_quarantined"]) == (4, 0)
    rows = _utc(
        recon.query(
            "SELECT txn_id, amount, processed_at, business_date FROM transactions ORDER BY 1"
        )
    )
    assert rows == {
        "E1": (Decimal("1234.56"), datetime(2026, 3, 23, 1, 15, tzinfo=UTC), date(2026, 3, 23)),
        "E2": (Decimal("-0.01"), datetime(2026, 3, 23, 13, 0, tzinfo=UTC), date(2026, 3, 23)),
        "E3": (Decimal("-12.50"), datetime(2026, 3, 23, 9, 0, tzinfo=UTC), date(2026, 3, 23)),
        "E4": (
            Decimal("1234567.8901"),
            datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
            date(2026, 3, 29),
        ),
    }
    # Exact DECIMAL, never a float.
    assert recon.query("SELECT typeof(amount) FROM transactions LIMIT 1") == [("DECIMAL(18,4)",)]


def test_us_timestamps_and_dates_load_with_the_settings(recon: Recon, write_file) -> None:  # type: ignore[no-untyped-def]
    recon.write_config(
        "[sources.ny]\n"
        'timezone = "America/New_York"\n'
        'timestamp_format = "%m/%d/%Y %H:%M:%S"\n'
        'date_format = "%m/%d/%Y"\n'
    )
    result, _ = recon.ingest(write_file("ny.csv", NEW_YORK), source="ny")
    assert result.code == 0, result.stderr
    rows = _utc(
        recon.query(
            "SELECT txn_id, amount, processed_at, business_date FROM transactions ORDER BY 1"
        )
    )
    assert rows == {
        "U1": (Decimal("1234.56"), datetime(2026, 3, 23, 6, 15, tzinfo=UTC), date(2026, 3, 23)),
        # EST again after the autumn change: 23:59:59 -05:00.
        "U2": (Decimal("5.00"), datetime(2026, 11, 2, 4, 59, 59, tzinfo=UTC), date(2026, 11, 1)),
    }


def test_without_the_settings_rows_are_quarantined_with_a_hint(recon: Recon, write_file) -> None:  # type: ignore[no-untyped-def]
    result, files = recon.ingest(write_file("berlin.csv", BERLIN), source="berlin")
    assert result.code == 3
    assert files[0]["rows_loaded"] == 0
    reasons = dict(recon.query("SELECT line, reason FROM quarantine ORDER BY line"))
    assert 'decimal_separator = ","' in reasons[2] and "thousands_separator" in reasons[2]
    result, files = recon.ingest(write_file("ny.csv", NEW_YORK), source="ny")
    assert result.code == 3 and files[0]["rows_loaded"] == 0
    reasons = dict(
        recon.query("SELECT line, reason FROM quarantine WHERE path LIKE '%ny.csv' ORDER BY line")
    )
    assert 'date_format = "%m/%d/%Y"' in reasons[2]  # a row's first problem is named
    times = "".join(line.rsplit(",", 1)[0] + "\n" for line in NEW_YORK.splitlines())
    result, files = recon.ingest(write_file("ny-times.csv", times), source="ny")
    assert result.code == 3 and files[0]["rows_loaded"] == 0
    reasons = dict(
        recon.query("SELECT line, reason FROM quarantine WHERE path LIKE '%ny-times.csv'")
    )
    assert 'timestamp_format = "%m/%d/%Y %H:%M:%S"' in reasons[2]


def test_a_value_outside_the_declared_layout_is_refused_not_guessed(
    recon: Recon,
    write_file,  # type: ignore[no-untyped-def]
) -> None:
    recon.write_config(
        '[sources.eu]\ndecimal_separator = ","\nthousands_separator = "."\n'
        'timestamp_format = "%d.%m.%Y %H:%M"\n'
    )
    path = write_file(
        "eu.csv",
        "txn_id|amount|status|run_id|processed_at\n"
        "A|12.34|OK|R|01.02.2026 10:00\n"  # a decimal point where a comma is declared
        "B|1.23|OK|R|01.02.2026 10:00\n"  # not a group of three after the separator
        "C|1,23456|OK|R|01.02.2026 10:00\n"  # more than 4 decimals
        "D|7,5|OK|R|31.02.2026 10:00\n"  # an impossible date
        "E|7,5|OK|R|01.02.2026 10:00\n",
    )
    result, files = recon.ingest(path, source="eu")
    assert result.code == 3
    assert (files[0]["rows_loaded"], files[0]["rows_quarantined"]) == (1, 4)
    reasons = dict(recon.query("SELECT line, reason FROM quarantine ORDER BY line"))
    assert "layout" in reasons[2] and "1.234,56" in reasons[2]
    assert "layout" in reasons[3]
    assert "more than 4 decimal places" in reasons[4]
    assert "timestamp_format '%d.%m.%Y %H:%M'" in reasons[5]
    assert recon.query("SELECT txn_id, amount FROM transactions") == [("E", Decimal("7.5"))]


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ('decimal_separator = ","\nthousands_separator = ","', "thousands_separator"),
        ('decimal_separator = ";"', "decimal_separator"),
        ('thousands_separator = "x"', "thousands_separator"),
        ('timestamp_format = "%m/%d %H:%M"', "timestamp_format"),
        ('timestamp_format = "%m/%d/%Y %Q"', "timestamp_format"),
        ('date_format = "%Y-%m-%d %Y"', "date_format"),
    ],
)
def test_a_bad_format_setting_is_a_config_error_naming_it(
    recon: Recon,
    write_file,  # type: ignore[no-untyped-def]
    setting: str,
    named: str,
) -> None:
    recon.write_config(f"[sources.eu]\n{setting}\n")
    result, _ = recon.ingest(
        write_file("a.csv", "txn_id,amount,status,run_id\nA,1,OK,R\n"), source="eu"
    )
    assert result.code == 1
    assert "invalid settings" in result.stderr and named in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
