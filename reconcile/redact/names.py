"""What a column or JSON key name says about its values.

Column names decide the rest (`FieldRules`), matched on their compact key and their tokens (see
below): card verification codes, PINs and track data are never stored; card-number columns keep
their last four digits, Luhn or not. The same rules apply to the keys of JSON objects kept as one
value (`mask_nested`), at any depth; the SQL gate in front of it is `NESTED_PREFILTER_WORDS`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

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


# A column whose last word is one of these holds identifiers (`order_id`, `bank_ref`,
# `paymentReference`, `uuid`): its values are judged as ids (`mask_id`), not as free text.
ID_TOKENS = frozenset({"id", "ids", "ref", "refs", "reference", "uuid", "guid"})


def is_id_column(name: str) -> bool:
    """A column of identifiers by its name, and neither a card column nor a never-stored one
    (`card_id`, `pan_ref` keep the card rules)."""
    words = _words(name)
    return bool(words) and words[-1] in ID_TOKENS and _kind(name) is None


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
