"""The masker is linear in its input and closes the gaps hostile text used (issue 11, item 4).

No test here times anything: the work is counted instead (calls of the window search and of the
Luhn check per digit group), and the two scans (the loop for short texts, the NumPy one for long
texts) are checked to agree on every input.
"""

from __future__ import annotations

import re
import unicodedata

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile import redact
from reconcile.ingest.staging import may_hold_pan_sql
from reconcile.redact import pans as scanner

from .test_redact import luhn_complete, pans

# Characters that are ignored between digits: format characters, the combining grapheme joiner,
# variation selectors (both ranges), a tag character, Hangul fillers, a control character.
INVISIBLE = [
    "\u200b",
    "\u200d",
    "\u2060",
    "\ufeff",
    "\u00ad",
    "\u034f",
    "\ufe00",
    "\ufe0f",
    "\U000e0100",
    "\U000e01ef",
    "\U000e0041",
    "\u3164",
    "\x00",
    "\u20e3",
]
SPACERS = [" ", "-", "_", "\u00a0", "\u2009", "\u2013", "\u3000"]
OTHER_SEPARATORS = [".", "/", ":", "|", " - ", "  ", "\t"]
# Digit alphabets: each maps 0-9 to another script's (or style's) digits.
ALPHABETS = [
    "0123456789",
    "".join(chr(0xFF10 + d) for d in range(10)),  # full-width
    "⁰¹²³⁴⁵⁶⁷⁸⁹",  # superscript
    "₀₁₂₃₄₅₆₇₈₉",  # subscript
    "٠١٢٣٤٥٦٧٨٩",  # Arabic-Indic
    "०१२३४५६७८९",  # Devanagari
    "".join(chr(0x1D7CE + d) for d in range(10)),  # mathematical bold
]


@st.composite
def hidden_written(draw: st.DrawFn) -> tuple[str, str]:
    """A PAN in any digits and any card-like grouping, with invisible characters anywhere."""
    digits = draw(pans())
    alphabet = draw(st.sampled_from(ALPHABETS))
    shape = draw(st.sampled_from(["plain", "even", "uneven"]))
    if shape == "plain":
        groups = [digits]
        separator = ""
    elif shape == "even":  # leading groups of 4-6 digits, any short separator
        groups, rest = [], digits
        while (len(rest) > 6 and draw(st.booleans())) or len(rest) > 13:
            size = draw(st.integers(4, 6))
            groups.append(rest[:size])
            rest = rest[size:]
        groups.append(rest)
        separator = draw(st.sampled_from(SPACERS + OTHER_SEPARATORS))
    else:  # three or more groups of 2+ digits, one spacer character
        groups, rest = [], digits
        while len(rest) >= 4 and (len(groups) < 2 or draw(st.booleans())):
            size = draw(st.integers(2, len(rest) - 2))
            groups.append(rest[:size])
            rest = rest[size:]
        groups.append(rest)
        if len(groups) < 3:
            groups = [digits[:4], digits[4:8], digits[8:]]
        separator = draw(st.sampled_from(SPACERS))
    chars = []
    for index, group in enumerate(groups):
        if index:
            chars.append(separator)
        for position, digit in enumerate(group):
            if position and draw(st.integers(0, 3)) == 0:
                chars.append(draw(st.sampled_from(INVISIBLE)))
            chars.append(alphabet[int(digit)])
    return digits, "".join(chars)


# Text between the numbers: no digit of any kind, ending in a word so that two numbers are
# never read as one.
filler = st.text(
    st.characters(
        blacklist_categories=("Nd", "No", "Cs"),
        blacklist_characters="\x00*+",
    ),
    max_size=12,
).map(lambda text: f" {text} word ")


@given(st.lists(st.tuples(filler, hidden_written()), min_size=1, max_size=6), filler)
@settings(max_examples=400, deadline=None)
def test_every_card_loses_all_but_its_last_four_digits(
    parts: list[tuple[str, tuple[str, str]]], end: str
) -> None:
    text = "".join(before + written for before, (_, written) in parts) + end
    masked = redact.mask_pans(text)
    assert masked is not None
    assert redact._ascii_digits(masked) == "".join(digits[-4:] for _, (digits, _) in parts)
    assert redact.mask_pans(masked) == masked


@given(
    st.text("0123456789", min_size=1, max_size=6),
    st.builds(lambda body: luhn_complete(body), st.text("0123456789", min_size=15, max_size=15)),
    st.sampled_from([" ", "-", "_"]),
    st.booleans(),
)
@settings(max_examples=400, deadline=None)
def test_a_group_before_a_card_never_leaves_the_card_in_view(
    before: str, card: str, spacer: str, arrays: bool
) -> None:
    """`1000 5278-4616-8926-7258`: when the group before a card starts a PAN of its own that
    ends inside the card (`1000 5278 4616` passes Luhn), both are one masked span; masking only
    the first left twelve of the card's digits in view."""
    written = spacer.join(card[i : i + 4] for i in range(0, 16, 4))
    text = f"ref {before}{spacer}{written} end" * (300 if arrays else 1)
    masked = redact.mask_pans(text)
    assert masked is not None
    for shown in masked.split("end")[:-1]:
        assert redact._ascii_digits(shown) in (before + card[-4:], card[-4:])


@pytest.mark.parametrize(
    "written",
    [
        "4111 11 1111 1111 11",
        "41111 1111111 1111",
        "4111_1111_1111_1111",
        "4111111111111111",
        "4\u034f111 1111\ufe0f 1111 \U000e01001111",
        "⁴¹¹¹ ¹¹¹¹ ¹¹¹¹ ¹¹¹¹",
        "4111\u00001111\u00001111\u00001111",
        "4111\u20131111\u20131111\u20131111",
        "4111\u3164111111111111",
    ],
)
def test_the_gaps_named_in_the_issue_are_closed(written: str) -> None:
    assert redact.mask_pans(f"card {written} declined") == "card ************1111 declined"


@pytest.mark.parametrize(
    "text",
    [
        "call +44 20 7946 0958 or +49 30 1234 5678",
        "T20261113-0040",
        "2026-11-24 10:30:00.123456",
        "2026_11_24 run 4",
        "version 1.2.3 on 10.0.0.1",
        "retries 1 2 4 8 16 32 64 128 256",
    ],
)
def test_ordinary_numbers_are_still_left_alone(text: str) -> None:
    assert redact.mask_pans(text) == text


# Digit soup: the inputs where the two scans could disagree.
soup = st.lists(
    st.sampled_from(
        [
            *"0123456789012345678901234567890123456789 -_+x.*",
            *["４", "¹", "\u200b", "\u034f", "\ufe0f", "\u2013", "\u00a0", "  ", "4111"],
        ]
    ),
    max_size=300,
).map("".join)


@given(
    st.one_of(soup, st.tuples(soup, hidden_written(), soup).map(lambda t: t[0] + t[1][1] + t[2]))
)
@settings(max_examples=600, deadline=None)
def test_the_array_scan_agrees_with_the_loop(text: str) -> None:
    assert redact._pan_spans(text, arrays=True) == redact._pan_spans(text, arrays=False)


@given(st.one_of(soup, st.text(max_size=200)))
@settings(max_examples=400, deadline=None)
def test_masking_is_idempotent_on_digit_soup(text: str) -> None:
    once = redact.mask_pans(text)
    assert redact.mask_pans(once) == once


@given(st.text(st.characters(blacklist_categories=("Nd", "No")), max_size=200))
@settings(max_examples=300, deadline=None)
def test_text_without_digits_is_unchanged(text: str) -> None:
    text = "".join(char for char in text if unicodedata.digit(char, None) is None)
    assert redact.mask_pans(text) == text


@given(
    st.lists(st.text("0123456789", min_size=1, max_size=7), min_size=1, max_size=400),
    st.sampled_from([" ", "-", "_", "\u200b", " \u034f", "."]),
)
@settings(max_examples=150, deadline=None)
def test_work_is_linear_in_the_number_of_groups(groups: list[str], separator: str) -> None:
    """The window search runs at most twice per digit group (once from the group, once from the
    last four digits of a PAN ending there), and each run checks Luhn at most once per group it
    spans (19 digits at most): the old masker tried every pair of groups, joined again each
    time. Counted, not timed."""
    calls = {"longest": 0, "luhn": 0}
    longest, luhn = scanner._longest, scanner.luhn_valid

    def counted_longest(*args: object) -> object:
        calls["longest"] += 1
        return longest(*args)  # type: ignore[arg-type]

    def counted_luhn(digits: str) -> bool:
        calls["luhn"] += 1
        return luhn(digits)

    scanner._longest, scanner.luhn_valid = counted_longest, counted_luhn  # type: ignore[assignment]
    try:
        redact._pan_spans(separator.join(groups), arrays=False)
    finally:
        scanner._longest, scanner.luhn_valid = longest, luhn  # type: ignore[assignment]
    count = len(re.findall(r"\d+", separator.join(groups)))
    assert calls["longest"] <= 2 * count
    assert calls["luhn"] <= calls["longest"] * redact.PAN_MAX_DIGITS


def test_the_prefilter_and_hex_patterns_have_no_nested_quantifier_over_digit_groups() -> None:
    """The patterns left are linear: a quantified group may only hold a fixed-size gap and one
    digit class, never another unbounded repetition (the backtracking the old run pattern had
    is gone with it: groups are found by a loop, not a regex)."""
    assert not hasattr(redact, "_RUN")
    for pattern in (redact._HEX_WORD.pattern,):
        assert not re.search(r"\([^)]*[+*][^)]*\)[+*{]", pattern)


PREFILTER = duckdb.connect()
ascii_soup = st.lists(
    st.sampled_from([*"0123456789012345678901234567890123456789 -_+x.*:\t\x00\x7f"]),
    max_size=80,
).map("".join)


@given(
    st.one_of(
        ascii_soup,
        st.tuples(ascii_soup, hidden_written(), ascii_soup).map(lambda t: t[0] + t[1][1] + t[2]),
    )
)
@settings(max_examples=600, deadline=None)
def test_the_sql_prefilter_flags_every_value_the_masker_changes(text: str) -> None:
    """Uneven groups, underscores and control characters included: the SQL gate in front of the
    Python masker lets through every value the masker would change."""
    flagged = PREFILTER.execute(
        f"SELECT {may_hold_pan_sql('v')} FROM (SELECT ?::VARCHAR AS v)", [text]
    ).fetchone()
    if redact.mask_pans(text) != text:
        assert flagged == (True,), text


def test_the_prefilter_still_lets_dates_and_ids_pass_without_python() -> None:
    for text in ["2026-11-24 10:30:00.123456", "T20261113-0040", "run_2026_11_24"]:
        flagged = PREFILTER.execute(
            f"SELECT {may_hold_pan_sql('v')} FROM (SELECT ?::VARCHAR AS v)", [text]
        ).fetchone()
        assert flagged == (False,), text


@given(ascii_soup.map(lambda text: text.replace("\x00", "").replace("\x7f", "")))
@settings(max_examples=500, deadline=None)
def test_the_ascii_scan_finds_the_same_groups_as_the_loop(text: str) -> None:
    assert redact._scan_ascii_groups(text) == redact._scan_groups(text)
