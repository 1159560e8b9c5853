"""Detection and masking of card numbers (PANs) and other sensitive values.

Masking happens before anything is stored, so these functions run inside DuckDB queries as
UDFs. To keep that cheap, SQL first applies `PAN_PREFILTER_SQL`, a fast RE2 pattern that
flags every string the Python masker *could* change (a superset); only flagged strings reach
Python. The two must stay in step: `tests/test_redact.py` checks the superset property.

What counts as a PAN: 12 to 19 decimal digits (any Unicode decimal digit, so full-width digits
count) passing the Luhn check, either contiguous or in groups separated by non-alphanumeric
characters (spaces, hyphens, dots, slashes...). Format characters such as zero-width spaces are
ignored. When written in groups, every group but the last has 4 to 6 digits, as on every card
brand's printed form; that rule keeps timestamps ("2026-11-24 10:30:00"), dotted addresses and
ids such as "T20261113-0040" from being mistaken for cards. Hex that our own code writes is not
scanned when it stands alone as a word: digests (32, 40, 56, 64, 96 or 128 hex characters with at
least one letter), UUIDs (8-4-4-4-12), break ids `BRK-<12 hex>` and secret aliases
`sha256:<12 hex>`. Their digit runs are chance, and masking them would corrupt recorded SHA-256s,
monitor and request ids, and the objects audit events name.

Column names decide the rest (`FieldRules`), matched on their compact key and their tokens (see
below): card verification codes, PINs and track data are never stored; card-number columns keep
their last four digits, Luhn or not. The same rules apply to the keys of JSON objects kept as one
value (`mask_nested`), at any depth; the SQL gate in front of it is `NESTED_PREFILTER_WORDS`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from urllib.parse import parse_qsl, unquote, urlsplit

PAN_MIN_DIGITS = 12
PAN_MAX_DIGITS = 19
MAX_GAP = 8  # non-alphanumeric characters allowed between two digits of one number

# A run of digits joined by short non-word gaps. Python's \w is Unicode-aware, so \d matches
# full-width digits and [^\w] matches zero-width and other format characters.
_RUN = re.compile(rf"\d(?:[^\w]{{0,{MAX_GAP}}}\d)*")
_DIGITS = re.compile(r"\d+")

# Hex our own code writes, standing alone as a word: digests (MD5, SHA-1, SHA-2), break ids
# (`BRK-` and 12 hex digits) and secret aliases (`sha256:` and 12). Their digit runs are chance,
# not card numbers: one SHA-256 in a few hundred, and one break id in about 3,000, holds a
# Luhn-valid run of 12+ digits, and masking it would corrupt what the audit trail records.
_UUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_HEX_WORD = re.compile(
    r"(?<![0-9A-Za-z])(?:"
    + _UUID
    + r"|[0-9A-Fa-f]{32,128}|(?:BRK-|sha256:)[0-9a-f]{12})(?![0-9A-Za-z])"
)
DIGEST_LENGTHS = frozenset({32, 40, 56, 64, 96, 128})


def _blank_own_hex(text: str) -> str:
    """`text` with each hex word of ours (`_HEX_WORD`) replaced by as many letters, so positions
    stay where they were."""

    def blank(match: re.Match[str]) -> str:
        word = match.group()
        if (
            word.startswith(("BRK-", "sha256:"))
            or word.count("-") == 4  # a UUID (monitor ids, request ids): never a printed card
            or (len(word) in DIGEST_LENGTHS and not word.isdecimal())
        ):
            return "x" * len(word)
        return word

    return _HEX_WORD.sub(blank, text)


# RE2 superset of what `mask_pans` may change, mirroring its rule in ASCII: starting at a group
# boundary, 12+ contiguous digits, or leading groups of 4-6 digits joined by short non-word gaps.
# Any non-ASCII character also sends the value to Python (full-width digits, zero-width spaces).
_GAP = rf"[^A-Za-z0-9_]{{1,{MAX_GAP}}}"
PAN_PREFILTER_SQL = (
    rf"(?:^|[^0-9])(?:[0-9]{{{PAN_MIN_DIGITS},}}|[0-9]{{4,6}}{_GAP}[0-9]{{6,}}"
    rf"|[0-9]{{4,6}}(?:{_GAP}[0-9]{{4,6}})+{_GAP}[0-9]+)|[^\x00-\x7F]"
)

MASK_CHAR = "*"
WHOLE_MASK = "[masked]"

# How a column (or JSON key) name is matched against the rules below, in three ways:
# - its *compact key*: NFKC-normalised, lower-cased, only a-z and 0-9 kept (`Card-Number` ->
#   `cardnumber`), compared whole or searched for a part;
# - its *tokens*: the words of the name, split at non-alphanumerics and at camelCase boundaries
#   (`cardCVC2` -> card, cvc2; `PINBlock` -> pin, block; `track_1` -> track, 1, and track1). A
#   token is a whole word: `pin` is one in `card_pin` and `pin_count`, not in `pinned`,
#   `shipping` or `opinion`.
# The rules are evaluated once per column of a file (and once per distinct JSON key: cached),
# never per row.

# Compact keys whose values are never stored at all: card verification codes, PINs and PIN
# blocks, magnetic-stripe track data. `cid` and `track` only match whole: as tokens they would
# catch customer ids (`cid`) and tracking numbers (`track_id`).
NEVER_STORED_COLUMNS = frozenset(
    {
        "cvv",
        "cvv2",
        "cvc",
        "cvc2",
        "cid",
        "csc",
        "cav2",
        "securitycode",
        "cardsecuritycode",
        "cardverificationvalue",
        "verificationcode",
        "pin",
        "pinblock",
        "track",
        "track1",
        "track2",
        "trackdata",
        "magstripe",
        "magneticstripe",
    }
)
# A name with one of these tokens is never stored (`card_cvc`, `pin_code`, `cvv_number`).
NEVER_STORED_TOKENS = frozenset(
    {
        "cvv",
        "cvv2",
        "cvc",
        "cvc2",
        "csc",
        "cav2",
        "pin",
        "pinblock",
        "track1",
        "track2",
        "magstripe",
    }
)
# ... and so is a name whose compact key contains one of these (`CardSecurityCode`, `mag_stripe`).
NEVER_STORED_PARTS = (
    "securitycode",
    "verificationcode",
    "verificationvalue",
    "trackdata",
    "magneticstripe",
    "magstripe",
    "pinblock",
)
# ... or with a word containing one of these: they occur in no English word, so they are found
# inside glued names too (`cardcvv`, `CARDCVC`), but not across words (`basic_vc_rate`).
NEVER_STORED_WORD_PARTS = ("cvv", "cvc")

# Compact keys of columns that hold card numbers: masked to the last four digits even when the
# value fails the Luhn check (a mistyped card number is still a card number).
CARD_COLUMNS = frozenset(
    {
        "pan",
        "cardnumber",
        "cardno",
        "cardnum",
        "ccnumber",
        "ccnum",
        "creditcard",
        "primaryaccountnumber",
    }
)
# A card column too: a token `pan` (`pan_number`, `maskedPan`; not `span`, `expand`, `company`),
# or, over the tokens joined by `_`, a card number however written (`card_number`, `CardNo`,
# `cc_num`, `credit_card`, `primary_account_number`). `no`/`num` must end a word (`card_notes`,
# `card_numeric_code` are not card numbers) and `cc` must start one (`acc_number` is an account).
CARD_TOKENS = frozenset({"pan"})
_NUMBER_WORD = r"_?(?:number|nbr|num(?![a-z])|no(?![a-z]))"
_CARD_NAME = re.compile(
    rf"card{_NUMBER_WORD}|(?:^|_)cc{_NUMBER_WORD}|credit_?card|primary_?account_?number"
)

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def _normal(name: str) -> str:
    return unicodedata.normalize("NFKC", name)


def _words(name: str) -> list[str]:
    return [w for w in _NON_ALNUM.split(_CAMEL.sub(" ", _normal(name)).lower()) if w]


def column_key(name: str) -> str:
    """Normalise a column name for the lists above: `Card-Number ` -> `cardnumber`."""
    return _NON_ALNUM.sub("", _normal(name).lower())


def column_tokens(name: str) -> tuple[str, ...]:
    """The words of a column name, lower-cased: `cardCVC2_code` -> (card, cvc2, code).

    A word followed by a number is also given joined (`track_1` -> track, 1, track1), and a word
    ending in digits also without them (`pin1` -> pin1, pin), so both spellings meet the lists.
    """
    words = _words(name)
    tokens = list(words)
    for word, following in pairwise(words):
        if following.isdigit() and not word.isdigit():
            tokens.append(word + following)
    for word in words:
        stem = word.rstrip("0123456789")
        if stem and stem != word:
            tokens.append(stem)
    return tuple(tokens)


def _never_stored(name: str) -> bool:
    key = column_key(name)
    if key in NEVER_STORED_COLUMNS or any(part in key for part in NEVER_STORED_PARTS):
        return True
    tokens = column_tokens(name)
    if not NEVER_STORED_TOKENS.isdisjoint(tokens):
        return True
    return any(part in token for token in tokens for part in NEVER_STORED_WORD_PARTS)


def _card_name(name: str) -> bool:
    if column_key(name) in CARD_COLUMNS or not CARD_TOKENS.isdisjoint(column_tokens(name)):
        return True
    return _CARD_NAME.search("_".join(_words(name))) is not None


_CACHED_NAME = 256  # longer names (whole broken lines) are judged without the cache


@lru_cache(maxsize=8192)
def _name_kind(name: str) -> str | None:
    return "never" if _never_stored(name) else "card" if _card_name(name) else None


def _kind(name: str) -> str | None:
    if len(name) <= _CACHED_NAME:
        return _name_kind(name)
    return "never" if _never_stored(name) else "card" if _card_name(name) else None


def is_never_stored(name: str) -> bool:
    """A card verification code, PIN or track data column: its values are never stored."""
    return _kind(name) == "never"


def is_card_column(name: str, extra: Iterable[str] = ()) -> bool:
    """A card-number column: one of the usual names, or one a source declares (`extra`)."""
    return _card_name(name) or column_key(name) in {column_key(other) for other in extra}


def normalise_name(name: str) -> str:
    """How column names are compared: trimmed, without a BOM, case-insensitive."""
    return name.strip().lstrip("\ufeff").strip().lower()


@dataclass(frozen=True)
class FieldRules:
    """What a source's field names mean for their values: columns and JSON keys at any depth.

    `card_columns` are the compact keys of the card columns a source declares beyond the usual
    names; `sensitive_columns` the (normalised) names it wants replaced whole by `[masked]`.
    """

    card_columns: frozenset[str] = frozenset()
    sensitive_columns: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls, card_columns: Iterable[str] = (), sensitive_columns: Iterable[str] = ()
    ) -> FieldRules:
        return cls(
            frozenset(column_key(name) for name in card_columns),
            frozenset(normalise_name(name) for name in sensitive_columns),
        )

    def kind(self, name: str) -> str | None:
        """`never` (never stored), `sensitive` (masked whole), `card` (last four) or None,
        the first that applies."""
        kind = _kind(name)
        if kind == "never":
            return kind
        if self.sensitive_columns and normalise_name(name) in self.sensitive_columns:
            return "sensitive"
        if kind == "card" or (self.card_columns and column_key(name) in self.card_columns):
            return "card"
        return None


def luhn_valid(digits: str) -> bool:
    """Luhn checksum over a string of ASCII digits."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _ascii_digits(text: str) -> str:
    return "".join(str(unicodedata.decimal(char)) for char in text if char.isdecimal())


def _strip_format_chars(text: str) -> str:
    return "".join(char for char in text if unicodedata.category(char) != "Cf")


def _groups(run: str, offset: int) -> list[tuple[int, int, str, str]]:
    """Split a digit run into groups: (start, end, ascii digits, separator before the group).

    A gap made only of format characters (zero-width space and friends) joins its neighbours
    into one group, as if the invisible characters were not there.
    """
    groups: list[tuple[int, int, str, str]] = []
    previous_end = 0
    plain = run.isascii()  # the common case: no format characters, digits already ASCII
    for match in _DIGITS.finditer(run):
        gap = run[previous_end : match.start()]
        digits = match.group()
        if not plain:
            gap = _strip_format_chars(gap)
            digits = _ascii_digits(digits)
        if groups and gap == "":
            start, _, joined, separator = groups[-1]
            groups[-1] = (start, offset + match.end(), joined + digits, separator)
        else:
            groups.append((offset + match.start(), offset + match.end(), digits, gap))
        previous_end = match.end()
    return groups


def _is_pan_window(window: list[tuple[int, int, str, str]]) -> bool:
    digits = "".join(group[2] for group in window)
    if not PAN_MIN_DIGITS <= len(digits) <= PAN_MAX_DIGITS or not luhn_valid(digits):
        return False
    # Written in groups, a card number starts with groups of 4 to 6 digits (4-4-4-4, 4-6-5,
    # 6-13 ...). Dates, times, addresses and ids such as T20261113-0040 do not.
    return all(4 <= len(group[2]) <= 6 for group in window[:-1])


def find_pans(text: str) -> list[tuple[int, int, str]]:
    """Every PAN in `text` as (start, end, ascii digits); spans do not overlap."""
    found: list[tuple[int, int, str]] = []
    for run in _RUN.finditer(_blank_own_hex(text)):
        groups = _groups(run.group(), run.start())
        index = 0
        while index < len(groups):
            best = None
            # Longest window first: a 19-digit card must not be read as a 16-digit one.
            for end in range(len(groups), index, -1):
                window = groups[index:end]
                if _is_pan_window(window):
                    best = end
                    break
            if best is None:
                index += 1
                continue
            window = groups[index:best]
            found.append((window[0][0], window[-1][1], "".join(g[2] for g in window)))
            index = best
    return found


def mask_digits(digits: str) -> str:
    """`4111111111111111` -> `************1111`."""
    return MASK_CHAR * (len(digits) - 4) + digits[-4:]


def mask_pans(text: str | None) -> str | None:
    """Replace every PAN in `text` by its masked form, leaving everything around it intact."""
    if not text:
        return text
    pans = find_pans(text)
    if not pans:
        return text
    pieces = []
    previous = 0
    for start, end, digits in pans:
        pieces.append(text[previous:start])
        pieces.append(mask_digits(digits))
        previous = end
    pieces.append(text[previous:])
    return "".join(pieces)


def mask_key(text: str | None, key: bytes | None) -> str | None:
    """Mask a PAN inside an identifier (txn_id, run_id) and keep the identifier distinct.

    Masking alone would turn two different ids into the same `************1111`; the short
    fingerprint suffix keeps them apart without revealing the number.
    """
    masked = mask_pans(text)
    if masked == text or text is None or masked is None:
        return masked
    digest = (
        hmac.new(key, text.encode(), hashlib.sha256) if key else hashlib.sha256(text.encode())
    ).hexdigest()
    return f"{masked}#{digest[:8]}"


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
