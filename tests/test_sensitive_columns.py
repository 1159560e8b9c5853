"""Which column names (and JSON keys) hold card data, and how JSON kept as one value is cleaned.

The CLI tests that push these through an ingest live in tests/test_privacy.py."""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile import redact
from reconcile.ingest.staging import may_name_card_data_sql

NEVER_STORED = [
    # the reviewer's names
    "card_cvc",
    "cvc_code",
    "card_pin",
    "pin_code",
    "cvv_number",
    "track1_data",
    # exact names, as before
    "CVV",
    "cvv2",
    "cid",
    "track",
    "Card Security Code",
    "track_2",
    "PIN",
    # tokens, however the name is cased or separated
    "cardCvc",
    "CVV2Code",
    "cvc2_value",
    "PINBlock",
    "pinBlock",
    "pin_block",
    "user.pin",
    "customer-pin",
    "pin1",
    "pin_count",  # a token `pin` is a PIN: decided so, better safe
    "Track1Data",
    "track_1",
    "Track-2",
    "cav2",
    "CSC",
    "magstripe_raw",
    # compact names holding one of the long words
    "mag_stripe",
    "MagneticStripe",
    "card_verification_value",
    "verificationCode",
    "securityCode",
    "track_data",
    # glued names with cvv/cvc in a word
    "cardcvv",
    "CARDCVC",
    # full-width letters are letters (NFKC)
    "\uff23\uff36\uff36",
]

KEPT = [
    "shipping",
    "pinned",
    "PinnedAt",
    "opinion",
    "spin",
    "pinnacle",
    "pinyin",
    "happiness",
    "tracking_number",
    "tracking",
    "track_id",  # `track` matches whole names only
    "trackpad",
    "tracker",
    "cid_ref",  # `cid` too: as a token it would catch customer ids
    "customer_id",
    "company",
    "span",
    "expand",
    "description",
    "basic_vc_rate",  # no `cvc` across words
    "discs_core",
    "account_number",
    "acc_number",
    "card_type",
    "card_notes",
    "card_holder",
    "memo",
]

CARD = [
    "pan_number",
    "PAN",
    "pan",
    "maskedPan",
    "pan_last4",
    "card_number",
    "CardNumber",
    "Card Number",
    "cardNo",
    "card_no",
    "customer_card_no",
    "card_num",
    "cc_number",
    "CCNumber",
    "ccnum",
    "credit_card",
    "CreditCardNumber",
    "primary_account_number",
]

NOT_CARD = [
    "span",
    "expand",
    "company",
    "panel",
    "pandas",
    "japan",
    "pancake",
    "card_notes",  # `no` must end a word
    "card_numeric_code",  # `num` too
    "cardinal_number",
    "acc_number",  # `cc` must start one
    "account_number",
    "card_type",
    "card_holder",
    "cc_email",
    "discard",
    "tracking_number",
]


@pytest.mark.parametrize("name", NEVER_STORED)
def test_names_of_verification_codes_pins_and_track_data_are_never_stored(name: str) -> None:
    assert redact.is_never_stored(name), redact.column_tokens(name)


@pytest.mark.parametrize("name", KEPT)
def test_lookalike_names_are_kept(name: str) -> None:
    assert not redact.is_never_stored(name), redact.column_tokens(name)
    assert not redact.is_card_column(name)


@pytest.mark.parametrize("name", CARD)
def test_names_of_card_numbers_are_card_columns(name: str) -> None:
    assert redact.is_card_column(name)
    assert not redact.is_never_stored(name)


@pytest.mark.parametrize("name", NOT_CARD)
def test_lookalike_names_are_not_card_columns(name: str) -> None:
    assert not redact.is_card_column(name)


def test_tokens_split_at_separators_and_camel_case() -> None:
    assert redact.column_tokens("cardCVC2_code") == ("card", "cvc2", "code", "cvc")
    assert redact.column_tokens("PINBlock") == ("pin", "block")
    assert redact.column_tokens("track_1") == ("track", "1", "track1")


def test_declared_names_follow_the_source() -> None:
    rules = redact.FieldRules.of(card_columns=["cc"], sensitive_columns=["Customer_Email"])
    assert rules.kind("CC") == "card" and rules.kind("customer_email ") == "sensitive"
    assert rules.kind("cvv") == "never" and rules.kind("memo") is None


# --- JSON kept as one value -------------------------------------------------------------------

RULES = redact.FieldRules()


def nested(value: Any, rules: redact.FieldRules = RULES) -> Any:
    masked = redact.mask_nested(json.dumps(value), rules)
    assert masked is not None
    return json.loads(masked)


def test_never_stored_keys_are_dropped_at_any_depth() -> None:
    value = {
        "name": "x",
        "cvv": "123",
        "cards": [{"card_pin": 1234, "label": "main", "more": {"Track1Data": "%B4111^X"}}],
    }
    assert nested(value) == {"name": "x", "cards": [{"label": "main", "more": {}}]}


def test_values_under_card_keys_keep_their_last_four_digits() -> None:
    value = {"pan_number": 4111111111111112, "card": {"card_number": "4111 1111 1111 1112"}}
    assert nested(value) == {
        "pan_number": "************1112",
        "card": {"card_number": "************1112"},
    }
    # everything under a card key is a card value
    assert nested({"pan": ["4111111111111112", {"n": 4111111111111112}]}) == {
        "pan": ["************1112", {"n": "************1112"}]
    }


def test_sensitive_keys_of_a_source_are_masked_whole_inside_json() -> None:
    rules = redact.FieldRules.of(sensitive_columns=["email"])
    assert nested({"who": {"email": "a@b.c", "n": 1}}, rules) == {
        "who": {"email": "[masked]", "n": 1}
    }


def test_json_without_card_data_comes_back_as_written() -> None:
    text = '{ "a" : 1.10, "b": [1e3, 12345678901234567890123], "company": "acme" }'
    assert redact.mask_nested(text, RULES) == text


def test_numbers_are_kept_as_written_when_something_is_dropped() -> None:
    text = '{"amount": 1.10, "big": 12345678901234567890123, "cvv": "123", "x": null}'
    assert (
        redact.mask_nested(text, RULES) == '{"amount":1.10,"big":12345678901234567890123,"x":null}'
    )


def test_escaped_and_duplicate_keys_do_not_hide_a_cvv() -> None:
    assert redact.mask_nested('{"\\u0063vv": "123", "a": 1}', RULES) == '{"a":1}'
    assert redact.mask_nested('{"cvv": "1", "cvv": "2"}', RULES) == "{}"


@pytest.mark.parametrize(
    "text",
    ['{"name": "x", "cvv": "123"', "{cvv: 123}", "[pin=4321]", '{"PinBlock": 1,}'],
)
def test_broken_json_naming_card_data_is_withheld(text: str) -> None:
    assert redact.mask_nested(text, RULES) == redact.WITHHELD


@pytest.mark.parametrize("text", ['{"name": "x", "shipping": 1', "[pinned]", "not json"])
def test_broken_json_without_card_data_is_kept(text: str) -> None:
    assert redact.mask_nested(text, RULES) == text


NAME_PARTS = [
    *redact.NESTED_PREFILTER_WORDS,
    *(name for name in NEVER_STORED + CARD + KEPT if name.isascii()),
    "Cv",
    "V",
    "Pi",
    "N",
    "Tr",
    "ack",
    "Mag",
    "2",
    "1",
    "_",
    "-",
    " ",
    ".",
    "\\u0063",
    "\u00e9",
]
names = st.lists(st.sampled_from(NAME_PARTS), min_size=1, max_size=4).map("".join)
GATE = duckdb.connect()


@given(st.dictionaries(names, st.one_of(st.text(max_size=8), st.integers()), max_size=3), names)
@settings(max_examples=1500, deadline=None)
def test_sql_gate_flags_every_json_value_the_masker_would_change(
    value: dict[str, Any], outer: str
) -> None:
    """The SQL test in front of the nested masker (first character, then the words every flagged
    key contains) must let through every value the masker changes, or a CVV could slip past."""
    rules = redact.FieldRules.of(card_columns=["acct_ref"], sensitive_columns=["e-mail"])
    for text in (json.dumps(value), json.dumps([{outer: value}]), " " + json.dumps(value)):
        text = text.replace("\\\\u0063", "\\u0063")  # let some keys be written with an escape
        flagged = GATE.execute(
            f"SELECT {may_name_card_data_sql('v', rules)} FROM (SELECT ?::VARCHAR AS v)", [text]
        ).fetchone()
        if redact.mask_nested(text, rules) != text:
            assert flagged == (True,), text
