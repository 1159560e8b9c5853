"""Card numbers are masked wherever they hide, and nothing else is touched."""

from __future__ import annotations

import re
import unicodedata

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile import redact
from reconcile.ingest.staging import may_hold_pan_sql

# Test card numbers of every brand the issue names (all Luhn-valid).
BRAND_PANS = {
    "visa13": "4222222222222",
    "visa16": "4111111111111111",
    "visa19": "4111111111111111110",
    "mastercard51": "5555555555554444",
    "mastercard2221": "2223003122003222",
    "amex": "378282246310005",
    "discover": "6011111111111117",
    "diners": "30569309025904",
    "jcb": "3566002020360505",
    "unionpay": "6200000000000005",
    "maestro": "6759649826438453",
}


def luhn_complete(body: str) -> str:
    """Append the check digit that makes `body` Luhn-valid."""
    for check in "0123456789":
        if redact.luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable")


@st.composite
def pans(draw: st.DrawFn) -> str:
    length = draw(st.integers(redact.PAN_MIN_DIGITS, redact.PAN_MAX_DIGITS))
    body = draw(st.text("0123456789", min_size=length - 1, max_size=length - 1))
    return luhn_complete(body)


SEPARATORS = [" ", "-", ".", "/", "  ", " - ", "\u00a0", "\u2009", ":", "|", "\t"]
FORMAT_CHARS = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"]


@st.composite
def written_pans(draw: st.DrawFn) -> tuple[str, str]:
    """A PAN as people write it: (digits, written form) in every separator style."""
    digits = draw(pans())
    style = draw(st.sampled_from(["plain", "grouped", "fullwidth", "zero-width"]))
    if style == "plain":
        return digits, digits
    if style == "fullwidth":
        return digits, "".join(chr(0xFF10 + int(d)) for d in digits)
    if style == "zero-width":
        chars = []
        for index, digit in enumerate(digits):
            if index and draw(st.booleans()):
                chars.append(draw(st.sampled_from(FORMAT_CHARS)))
            chars.append(digit)
        return digits, "".join(chars)
    # Grouped as printed on cards: leading groups of 4 to 6 digits, the rest in the last group.
    groups, rest = [], digits
    while (len(rest) > 6 and draw(st.booleans())) or len(rest) > 13:
        size = draw(st.integers(4, 6))
        groups.append(rest[:size])
        rest = rest[size:]
    groups.append(rest)
    separator = draw(st.sampled_from(SEPARATORS))
    return digits, separator.join(groups)


# Surrounding text: anything without digits (decimal, superscript, circled...), ending/starting on a character that
# cannot continue a number (so the PAN is not part of a longer number).
surrounding = st.text(
    st.characters(blacklist_categories=("Nd", "No", "Cs"), blacklist_characters="\x00"), max_size=40
)


@given(written_pans(), surrounding, surrounding)
@settings(max_examples=400, deadline=None)
def test_every_luhn_valid_number_is_masked_and_the_text_around_it_kept(
    pan: tuple[str, str], before: str, after: str
) -> None:
    digits, written = pan
    text = f"{before} {written} {after}"
    masked = redact.mask_pans(text)
    assert masked == f"{before} {redact.mask_digits(digits)} {after}"
    assert masked is not None and digits not in re.sub(r"\D", "", masked)


@given(written_pans(), surrounding)
@settings(max_examples=200, deadline=None)
def test_pan_glued_to_letters_is_masked(pan: tuple[str, str], word: str) -> None:
    digits, written = pan
    masked = redact.mask_pans(f"card{written}{word}")
    assert masked == f"card{redact.mask_digits(digits)}{word}"


@given(st.text(max_size=60))
@settings(max_examples=300, deadline=None)
def test_text_without_a_card_number_is_unchanged(text: str) -> None:
    if not redact.find_pans(text):
        assert redact.mask_pans(text) == text


@given(st.text(max_size=80))
@settings(max_examples=300, deadline=None)
def test_masking_is_idempotent_and_leaves_no_pan(text: str) -> None:
    once = redact.mask_pans(text)
    assert redact.mask_pans(once) == once
    assert not redact.find_pans(once or "")


PREFILTER_CONN = duckdb.connect()
ascii_digit_soup = st.text("0123456789 -./:_xT", max_size=60)


@given(
    st.one_of(
        st.text(max_size=60),
        ascii_digit_soup,
        st.tuples(ascii_digit_soup, written_pans(), ascii_digit_soup).map(
            lambda t: f"{t[0]}{t[1][1]}{t[2]}"
        ),
    )
)
@settings(max_examples=1500, deadline=None)
def test_sql_prefilter_flags_everything_python_would_mask(text: str) -> None:
    """The SQL gate in front of the Python masker (a length test, then the fast RE2 prefilter)
    must let through everything the masker would change, or a PAN could slip past unmasked."""
    flagged = PREFILTER_CONN.execute(
        f"SELECT {may_hold_pan_sql('v')} FROM (SELECT ?::VARCHAR AS v)", [text]
    ).fetchone()
    if redact.mask_pans(text) != text:
        assert flagged == (True,)


@pytest.mark.parametrize("brand", sorted(BRAND_PANS))
def test_every_brand_is_masked_to_last_four(brand: str) -> None:
    pan = BRAND_PANS[brand]
    assert (
        redact.mask_pans(f"card {pan} declined")
        == f"card {'*' * (len(pan) - 4)}{pan[-4:]} declined"
    )


@pytest.mark.parametrize(
    "text",
    [
        "timeout at 2026-11-24 10:30:00.123456",
        "T20261113-0040",
        "connection to 192.168.100.200 refused",
        "ref 4111111111111112",  # fails Luhn
        "amount 12345678.90",
        "call +44 20 7946 0958",
    ],
)
def test_common_log_text_is_not_mistaken_for_a_card(text: str) -> None:
    assert redact.mask_pans(text) == text


def test_card_column_value_keeps_only_last_four_even_when_luhn_fails() -> None:
    assert redact.mask_card_value("4111 1111 1111 1112") == "************1112"


def test_key_with_card_number_stays_distinct_after_masking() -> None:
    first = redact.mask_key("TX-4111111111111111", b"k")
    second = redact.mask_key("TX-5555555555554444", b"k")
    assert first and second and first != second
    assert "4111111111111111" not in first and first.startswith("TX-************1111#")


def test_fingerprint_matches_the_same_card_however_written() -> None:
    key = b"secret"
    written = ["4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111"]
    prints = {redact.pan_fingerprint(text, key) for text in written}
    assert len(prints) == 1 and None not in prints
    assert redact.pan_fingerprint("4111111111111111", None) is None


@pytest.mark.parametrize("name", ["CVV", "cvv2", "Card Security Code", "track_2", "PIN"])
def test_verification_codes_and_track_data_are_never_stored(name: str) -> None:
    assert redact.is_never_stored(name)


def test_format_characters_are_ignored_when_matching() -> None:
    assert unicodedata.category("\u200b") == "Cf"
    assert redact.mask_pans("4111\u200b1111\u200b1111\u200b1111") == "************1111"


# A real SHA-256 (of an audit event in CI) whose digits 26-43 are Luhn-valid.
DIGEST_WITH_LUHN_RUN = "52d15bd5144848b19929bea0fe48395669870609983dee839cc758cc3dd82a87"


def test_a_digest_with_a_luhn_valid_digit_run_is_kept_whole() -> None:
    assert redact.luhn_valid("48395669870609983")
    text = f"file sha256={DIGEST_WITH_LUHN_RUN}, 10 rows"
    assert redact.mask_pans(text) == text


@given(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
@settings(max_examples=300, deadline=None)
def test_no_sha256_is_ever_changed_by_masking(digest: str) -> None:
    assert redact.mask_pans(f"inputs {digest}") == f"inputs {digest}"


@given(st.uuids())
@settings(max_examples=300, deadline=None)
def test_no_uuid_is_ever_changed_by_masking(value: object) -> None:
    assert redact.mask_pans(f"monitor {value} pinged") == f"monitor {value} pinged"


def test_a_uuid_made_of_digits_is_kept_and_a_card_in_groups_is_not() -> None:
    assert redact.luhn_valid("411111110002")  # the middle groups alone pass Luhn
    assert redact.mask_pans("12345678-4111-1111-0002-123456789012") == (
        "12345678-4111-1111-0002-123456789012"
    )
    assert redact.mask_pans("4111-1111-1111-1111") == "************1111"


@pytest.mark.parametrize("word", ["BRK-", "sha256:"])
def test_break_ids_and_secret_aliases_made_only_of_digits_are_kept(word: str) -> None:
    # 123456789015 is Luhn-valid: about one break id in 3,000 looks like this.
    assert redact.luhn_valid("123456789015")
    text = f"recon breaks assign {word}123456789015 alice"
    assert redact.mask_pans(text) == text


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("deadbeef4111111111111111", "deadbeef************1111"),  # too short for a digest
        ("REF-123456789015", "REF-********9015"),  # not one of our ids
        ("BRK-4111111111111111", "BRK-************1111"),  # not a break id: 16 digits
        (f"{DIGEST_WITH_LUHN_RUN} 4111111111111111", f"{DIGEST_WITH_LUHN_RUN} ************1111"),
    ],
)
def test_digits_beside_or_outside_a_digest_are_still_scanned(text: str, masked: str) -> None:
    assert redact.mask_pans(text) == masked
