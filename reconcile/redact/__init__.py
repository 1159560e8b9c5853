"""Detection and masking of card numbers (PANs) and other sensitive values.

Masking happens before anything is stored, so these functions run inside DuckDB queries as
UDFs. To keep that cheap, SQL first applies `PAN_PREFILTER_SQL`, a fast RE2 pattern that
flags every string the Python masker *could* change (a superset); only flagged strings reach
Python. The two must stay in step: `tests/test_redact.py` checks the superset property.

The package: `pans` finds card numbers in text (what counts as one, and the linear scan that
finds them); `names` judges column and JSON key names (`FieldRules`); this module builds on
both: identifiers kept distinct (`mask_key`), card columns, fingerprints, nested JSON
(`mask_nested`), configured secrets and URLs (`mask_secrets`). Everything is imported from
`reconcile.redact`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

from reconcile.redact.names import (
    CARD_COLUMNS,
    CARD_TOKENS,
    NEVER_STORED_COLUMNS,
    NEVER_STORED_PARTS,
    NEVER_STORED_TOKENS,
    NEVER_STORED_WORD_PARTS,
    FieldRules,
    _card_name,
    _never_stored,
    column_key,
    column_tokens,
    is_card_column,
    is_id_column,
    is_never_stored,
    normalise_name,
)
from reconcile.redact.pans import _HEX_WORD as _HEX_WORD
from reconcile.redact.pans import (
    DIGEST_LENGTHS,
    MASK_CHAR,
    MAX_GAP,
    PAN_MAX_DIGITS,
    PAN_MIN_DIGITS,
    PAN_PREFILTER_SQL,
    _ascii_digits,
    find_pans,
    issuer_plausible,
    luhn_valid,
    mask_digits,
    mask_pans,
)
from reconcile.redact.pans import _longest as _longest
from reconcile.redact.pans import _pan_spans as _pan_spans
from reconcile.redact.pans import _scan_ascii_groups as _scan_ascii_groups
from reconcile.redact.pans import _scan_groups as _scan_groups

# The public names (the scanner's private parts above are re-exported for the tests that check
# it, `tests/test_redact_linear.py`).
__all__ = [
    "CARD_COLUMNS",
    "CARD_TOKENS",
    "DIGEST_LENGTHS",
    "MASK_CHAR",
    "MAX_GAP",
    "MIN_SECRET",
    "NESTED_PREFILTER_WORDS",
    "NEVER_STORED_COLUMNS",
    "NEVER_STORED_PARTS",
    "NEVER_STORED_TOKENS",
    "NEVER_STORED_WORD_PARTS",
    "PAN_MAX_DIGITS",
    "PAN_MIN_DIGITS",
    "PAN_PREFILTER_SQL",
    "SECRET",
    "TEST_CARDS",
    "URL_SQL",
    "WHOLE_MASK",
    "WITHHELD",
    "FieldRules",
    "column_key",
    "column_tokens",
    "cut_urls",
    "find_pans",
    "is_card_column",
    "is_id_column",
    "is_never_stored",
    "issuer_plausible",
    "luhn_valid",
    "mask_card_value",
    "mask_digits",
    "mask_id",
    "mask_key",
    "mask_nested",
    "mask_pans",
    "mask_secrets",
    "names_card_data",
    "normalise_name",
    "pan_fingerprint",
    "remember_secrets",
]

_PROCESS_KEY = secrets.token_bytes(32)  # `mask_key` without a key: never unkeyed
WHOLE_MASK = "[masked]"


def mask_key(text: str | None, key: bytes | None, ids: bool = True) -> str | None:
    """Mask a PAN inside an identifier (txn_id, run_id) and keep the identifier distinct.

    Masking alone would turn two different ids into the same `************1111`; the short
    fingerprint suffix keeps them apart without revealing the number. It is always keyed: an
    unkeyed hash of an id is reversed by trying the 10^5 Luhn-valid cards of a known BIN.
    Callers pass `Settings.pan_key_bytes()` (RECON_PAN_KEY, else the store's key file); without
    a key, a random key of this process keeps ids distinct, but not stable across commands.

    An identifier is judged as one (`ids`, see `mask_id`): `CG202603230030` stays as it is.
    """
    masked = mask_pans(text, ids=ids)
    if masked == text or text is None or masked is None:
        return masked
    digest = hmac.new(key or _PROCESS_KEY, text.encode(), hashlib.sha256).hexdigest()
    return f"{masked}#{digest[:8]}"


def mask_id(text: str | None) -> str | None:
    """Mask the card numbers in an identifier (a txn_id, run_id or reference column).

    Ids are made of prefixes, dates and sequences, and one in ten 12-19 digit runs passes Luhn
    by chance. In an id, a Luhn-valid run is a card number only when it could be one by its
    issuer prefix and length (`issuer_plausible`: a date, 2026..., or a zero-padded sequence
    cannot) and it is not glued to letters (`CG202603230030` is one token of an id). A card
    written alone or after a separator (`4111111111111111`, `TX-4111111111111111`) is masked.
    Free text keeps the stricter rule of `mask_pans`.
    """
    return mask_pans(text, ids=True)


# Well-known test card numbers: a declared id format (`SourceConfig.id_formats`) that matches
# one of them would let card numbers through unmasked, and is refused.
TEST_CARDS = (
    "4111111111111111",
    "4012888888881881",
    "4222222222222",
    "5555555555554444",
    "5105105105105100",
    "2221000000000009",
    "378282246310005",
    "371449635398431",
    "6011111111111117",
    "6011000990139424",
    "3530111333300000",
    "30569309025904",
    "6200000000000005",
    "6759649826438453",
)


def mask_card_value(text: str | None) -> str | None:
    """A value from a card column: keep only the last four of its digits, Luhn or not."""
    if text is None:
        return None
    digits = _ascii_digits(text)
    if len(digits) < 8:
        return mask_pans(text)
    return mask_digits(digits)


def pan_fingerprint(text: str | None, key: bytes | None) -> str | None:
    """HMAC-SHA-256 of the first card number in `text`, to correlate one card across runs.

    The key lives in settings, never in the database, so the fingerprint cannot be reversed by
    someone who only has the database.
    """
    if not text or not key:
        return None
    pans = find_pans(text)
    digits = pans[0][2] if pans else _ascii_digits(text)
    if len(digits) < PAN_MIN_DIGITS:
        return None
    return hmac.new(key, digits.encode(), hashlib.sha256).hexdigest()


WITHHELD = "[withheld: it may hold a card verification code, track data or a card number]"

# Every key name that `FieldRules.kind` flags has one of these in its compact key, or is not
# ASCII, or is written with a JSON escape (a source's declared names are added to the list). The
# SQL gate in front of `mask_nested` looks for them in the compacted value, so only values that
# may need it reach Python; `tests/test_sensitive_columns.py` checks that it lets all of those in.
NESTED_PREFILTER_WORDS = (
    "cvv",
    "cvc",
    "csc",
    "cav2",
    "cid",
    "pin",
    "track",
    "magstripe",
    "magneticstripe",
    "securitycode",
    "verificationcode",
    "verificationvalue",
    "pan",
    "card",
    "cc",
    "primaryaccountnumber",
)


class _Number(str):
    """A JSON number, kept exactly as written (no float rounding on the way back out)."""


class _Object(list[tuple[str, object]]):
    """A JSON object as its (key, value) pairs, duplicates and order kept."""


def _parse(text: str) -> object:
    return json.loads(
        text,
        object_pairs_hook=_Object,
        parse_float=_Number,
        parse_int=_Number,
        parse_constant=_Number,
    )


def _dump(node: object) -> str:
    if isinstance(node, _Object):
        return "{" + ",".join(f"{_dump(key)}:{_dump(value)}" for key, value in node) + "}"
    if isinstance(node, list):
        return "[" + ",".join(_dump(item) for item in node) + "]"
    if isinstance(node, _Number):
        return str.__str__(node)
    return json.dumps(node, ensure_ascii=False)


def _clean(node: object, rules: FieldRules, card: bool) -> tuple[object, bool]:
    """`node` without never-stored keys, sensitive values `[masked]` and, under a card key
    (`card`), every number cut to its last four digits; and whether anything changed."""
    if isinstance(node, _Object):
        kept = _Object()
        changed = False
        for key, value in node:
            kind = rules.kind(key)
            if kind == "never":
                changed = True
                continue
            if kind == "sensitive" and value is not None:
                kept.append((key, WHOLE_MASK))
                changed = True
                continue
            value, did = _clean(value, rules, card or kind == "card")
            kept.append((key, value))
            changed = changed or did
        return kept, changed
    if isinstance(node, list):
        cleaned = [_clean(item, rules, card) for item in node]
        return [item for item, _ in cleaned], any(did for _, did in cleaned)
    if card and isinstance(node, str):
        masked = mask_card_value(str.__str__(node))
        if masked != node:
            return masked, True
    return node, False


_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def names_card_data(text: str, rules: FieldRules) -> bool:
    """Whether text that could not be parsed (a broken JSON line, a value that only looks like
    JSON) may hold card data: a quoted string in it names a field the rules flag, or the whole
    text does, read as one long name (its tokens: `{cvv: 123}` has the token cvv)."""
    for match in _QUOTED.finditer(text):
        try:
            name = json.loads(match.group())
        except ValueError:
            name = match.group(1)
        if rules.kind(name):
            return True
    return _never_stored(text) or _card_name(text)


def mask_nested(text: str | None, rules: FieldRules) -> str | None:
    """A JSON object or array kept as one value (a nested JSON Lines field, a cell holding JSON):
    keys never to be stored are dropped at any depth, with their values; keys a source declares
    sensitive are `[masked]`; numbers under card keys keep their last four digits. Unchanged
    text comes back as it was; changed JSON comes back compact, numbers as written. Text that
    does not parse is withheld whole (`WITHHELD`) when it may name such a field."""
    if not text:
        return text
    try:
        node = _parse(text)
        cleaned, changed = _clean(node, rules, False)
        return _dump(cleaned) if changed else text
    except (ValueError, RecursionError):
        return WITHHELD if names_card_data(text, rules) else text


SECRET = "[secret]"
# A URL: its scheme and host are kept, user, password, path and query (where webhook tokens
# live: apprise URLs carry them) are cut. The SQL twin does the same inside DuckDB.
_HOST = r"[^\s/?#@'\"<>]*"
_REST = r"[^\s'\"<>]*"
URL_SQL = (
    rf"([A-Za-z][A-Za-z0-9+.-]{{1,20}})://"
    rf"(?:[^\s/@'\"<>]*@({_HOST}){_REST}|({_HOST})[/?#]{_REST})"
)  # only URLs with something to cut: user info, or a path, query or fragment
_URL = re.compile(r"\b" + URL_SQL)


def cut_urls(text: str) -> str:
    return _URL.sub(lambda m: f"{m.group(1)}://{m.group(2) or m.group(3) or ''}/...", text)


_KNOWN: set[str] = set()  # the configured secrets of this process (`remember_secrets`)
MIN_SECRET = 8  # shorter parts of a secret URL (a port, "alerts") are not secret on their own


def remember_secrets(values: Iterable[str]) -> None:
    """Register configured secrets (keys, passwords, notification URLs) for `mask_secrets`.
    A URL also registers its user, password, path segments and query values, because a token
    shows up on its own (apprise logs rewritten URLs; scripts echo them)."""
    for value in values:
        if not value:
            continue
        _KNOWN.add(value)
        if "://" in value:
            parts = urlsplit(value)
            pieces = [parts.username, parts.password, *parts.path.split("/")]
            pieces += [v for _, v in parse_qsl(parts.query)]
            _KNOWN.update(p for p in map(unquote, filter(None, pieces)) if len(p) >= MIN_SECRET)


def mask_secrets(text: str, known: Iterable[str] = ()) -> str:
    """Card numbers masked, each known secret replaced, every URL cut to scheme://host/..."""
    secrets = {s for s in (*_KNOWN, *known) if len(s) >= 6}
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, SECRET)
    return mask_pans(cut_urls(text)) or text
