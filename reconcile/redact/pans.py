"""Card numbers (PANs) in text: what counts as one, and the linear scan that finds them.

What counts as a PAN: 12 to 19 digits passing the Luhn check, contiguous or in groups that look
like a printed card. A digit is any character with a Unicode digit value: ASCII, full-width,
other scripts' decimal digits, superscript, subscript and circled digits. Invisible characters
are skipped wherever they sit, as if they were not there: format characters (zero-width spaces
and joiners, soft hyphen, bidi marks, tags; category Cf), combining and enclosing marks (the
combining grapheme joiner, variation selectors U+FE00-FE0F and U+E0100-E01EF; Mn, Me),
unassigned code points, control characters other than white space, and the Hangul fillers.
Between groups sit up to `MAX_GAP` visible separators (anything neither letter nor digit,
underscores included). Groups look like a printed card when every group but the last has 4 to 6
digits (4-4-4-4, 4-6-5, 6-10 ...), or, written unevenly, when three or more groups of two or more
digits are joined by one and the same space, dash or underscore (`4111 11 1111 1111 11`,
`41111 1111111 1111`) and the first is not after a `+`.

The trade-off: every grouping people use for cards is caught, and a chance number is masked only
when it is 12-19 digits in such a grouping *and* passes Luhn (one in ten does). That keeps
timestamps ("2026-11-24 10:30:00" mixes separators), dotted addresses and versions, phone numbers
written after `+`, and ids such as "T20261113-0040" (two groups, the first of 8) unmasked, while
a list of numbers joined by single spaces whose digits happen to pass Luhn is masked: an accepted
false positive. A run of more than 19 contiguous digits is a longer number (an acquirer reference
has 23), not a card, so a card glued to other digits without any separator is not found; nor are
digits spelled out in words. Each group starts the longest PAN it can; PANs that overlap are one
masked span (a chance PAN that starts in a group before a card and ends inside it must not hide
only the card's first digits), and the last four digits a mask leaves are read again with the
groups after them, as a second pass would, so masking is idempotent.

The scan is linear in the text: one pass finds the digit groups, and each group tries at most 19
digits' worth of groups after it, with Luhn sums from prefix sums. Texts of `_ARRAY_SCAN`
characters or more are scanned with NumPy arrays (same rules, checked to agree in
`tests/test_redact_linear.py`), so 1 MB of hostile digit groups costs about what 1 MB of prose
does (`tests/bench/bench_redact.py`). No regular expression here repeats over digit groups.

Identifiers are judged as identifiers (`ids`, `mask_id`; issue 13): ids are made of prefixes,
dates and sequences, and one 12-19 digit run in ten passes Luhn by chance (`CG202603230030`).
In an id a Luhn-valid run is a card number only when its issuer prefix and length fit a card
(`issuer_plausible`) and it is not glued to letters; a card alone or after a separator
(`TX-4111111111111111`) is masked. Free text keeps the rule above, cards glued to words included.

Hex that our own code writes is not scanned when it stands alone as a word: digests (32, 40, 56,
64, 96 or 128 hex characters with at least one letter), UUIDs (8-4-4-4-12), break ids
`BRK-<12 hex>` and secret aliases `sha256:<12 hex>`. Their digit runs are chance, and masking them
would corrupt recorded SHA-256s, monitor and request ids, and the objects audit events name.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

PAN_MIN_DIGITS = 12
PAN_MAX_DIGITS = 19
MAX_GAP = 8  # visible separators allowed between two digit groups of one number

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


# RE2 superset of what `mask_pans` may change, mirroring its rules in ASCII (`_longest`): from a
# group boundary, 12+ contiguous digits, or leading groups of 4-6 digits joined by short gaps of
# non-alphanumerics (underscores included); or, written unevenly, 3+ groups of 2+ digits joined
# by one space, hyphen or underscore that hold 12+ digits: 4+ groups, or 3 with one group of 6+
# digits or two of 4+ (no three groups of 2-5 digits with at most one of 4-5 reach 12, so dates
# such as 2026-11-24 stay out). Anything not printable ASCII also sends the value to Python:
# other digits (full-width, superscript), invisible characters, other spaces and dashes.
_GAP = rf"[^A-Za-z0-9]{{1,{MAX_GAP}}}"


def _uneven_prefilter(spacer: str) -> str:
    small, four, six = "[0-9]{2,}", "[0-9]{4,}", "[0-9]{6,}"
    shapes = [
        (small, small, small, small),  # 4+ groups: the rest may follow
        (six, small, small),
        (small, six, small),
        (small, small, six),
        (four, four, small),
        (four, small, four),
        (small, four, four),
    ]
    return "|".join(spacer.join(shape) for shape in shapes)


PAN_PREFILTER_SQL = (
    rf"(?:^|[^0-9])(?:[0-9]{{{PAN_MIN_DIGITS},}}|[0-9]{{4,6}}{_GAP}[0-9]{{6,}}"
    rf"|[0-9]{{4,6}}(?:{_GAP}[0-9]{{4,6}})+{_GAP}[0-9]+"
    + "".join(f"|{_uneven_prefilter(spacer)}" for spacer in (" ", "-", "_"))
    + r")|[^\x09-\x0d\x1c-\x7e]"
)

MASK_CHAR = "*"


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


# What each character is to the scan (`_classify`).
_DIGIT = 0  # a decimal digit of any script, superscript and circled digits too
_SEPARATOR = 1  # visible, neither letter nor digit: may sit between the groups of a number
_SPACER = 2  # a separator allowed in uneven groups: a space, a dash or an underscore
_WORD = 3  # a letter or other alphanumeric: ends a number
_HIDDEN = 4  # invisible: ignored, as if it were not there
# Format characters (zero-width spaces and joiners, bidi marks, soft hyphen, tags), combining
# and enclosing marks (combining grapheme joiner, variation selectors), unassigned code points,
# and the default-ignorable letters that render as nothing (Hangul fillers).
_HIDDEN_CATEGORIES = frozenset({"Cf", "Mn", "Me", "Cn"})
_IGNORABLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")


@lru_cache(maxsize=65536)
def _classify(char: str) -> tuple[int, int]:
    """(kind, digit value or -1) of one character."""
    value = unicodedata.digit(char, -1)
    if value >= 0:
        return _DIGIT, value
    category = unicodedata.category(char)
    if (
        category in _HIDDEN_CATEGORIES
        or char in _IGNORABLE_LETTERS
        or (category == "Cc" and not char.isspace())
    ):
        return _HIDDEN, -1
    if char.isalnum():
        return _WORD, -1
    if category in ("Zs", "Pd") or char == "_":
        return _SPACER, -1
    return _SEPARATOR, -1


_ASCII_KINDS = [_classify(chr(code)) for code in range(128)]
_ASCII_DIGIT = re.compile("[0-9]")
_DIGIT_CHARS = "0123456789"


def _ascii_digits(text: str) -> str:
    """The digits of `text` in ASCII, whatever their script."""
    return "".join(_DIGIT_CHARS[value] for kind, value in map(_classify, text) if kind == _DIGIT)


@dataclass
class _Groups:
    """The digit groups of a text, as parallel lists (group j is `digits[offsets[j]:
    offsets[j + 1]]`, found at `text[starts[j]:ends[j]]`). `linked[j]`: group j continues the
    number of group j - 1 (no word between them, at most `MAX_GAP` visible separators).
    `spacer[j]`: the code point of the separator before group j when that is one spacer
    character, else 0.
    `plus[j]`: the visible character before group j is `+` (a phone number)."""

    digits: str
    # Lists, or NumPy arrays from `_array_scan`.
    offsets: Any
    starts: Any
    ends: Any
    linked: Any
    spacer: Any
    plus: Any

    def group(self, index: int) -> str:
        return self.digits[self.offsets[index] : self.offsets[index + 1]]


def _scan_groups(text: str) -> _Groups:
    """One pass over `text`: its digit groups. Hidden characters are skipped, so digits with
    only invisible characters between them form one group."""
    digits: list[str] = []
    offsets: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    linked: list[bool] = []
    spacer: list[int] = []
    plus: list[bool] = []
    in_group = False
    gap = 0  # visible characters since the last group
    word = False  # one of them is a word character
    spacer_char = 0  # the last of them, if a spacer (its code point)
    last = ""  # the last visible character
    ascii_kinds = _ASCII_KINDS
    for index, char in enumerate(text):
        kind, value = ascii_kinds[ord(char)] if char < "\x80" else _classify(char)
        if kind == _DIGIT:
            digits.append(_DIGIT_CHARS[value])
            if in_group:
                ends[-1] = index + 1
                continue
            linked.append(bool(starts) and not word and gap <= MAX_GAP)
            spacer.append(spacer_char if gap == 1 and starts else 0)
            plus.append(last == "+")
            offsets.append(len(digits) - 1)
            starts.append(index)
            ends.append(index + 1)
            in_group, gap, word = True, 0, False
        elif kind != _HIDDEN:
            in_group = False
            gap += 1
            last = char
            word = word or kind == _WORD
            spacer_char = ord(char) if kind == _SPACER else 0
    offsets.append(len(digits))
    return _Groups("".join(digits), offsets, starts, ends, linked, spacer, plus)


_ASCII_RUN = re.compile("[0-9]+")
_ASCII_HIDDEN = re.compile("[\x00-\x08\x0e-\x1b\x7f]")
_ASCII_LETTER = re.compile("[A-Za-z]")


def _scan_ascii_groups(text: str) -> _Groups:
    """`_scan_groups` for ASCII text without hidden (control) characters, by regex: the same
    groups, without a Python step per character."""
    digits: list[str] = []
    offsets: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    linked: list[bool] = []
    spacer: list[int] = []
    plus: list[bool] = []
    total = 0
    previous = -1
    for match in _ASCII_RUN.finditer(text):
        start, end = match.span()
        if previous < 0:
            linked.append(False)
            spacer.append(0)
            plus.append(start > 0 and text[start - 1] == "+")
        else:
            gap = text[previous:start]
            linked.append(len(gap) <= MAX_GAP and not _ASCII_LETTER.search(gap))
            spacer.append(ord(gap) if gap in (" ", "-", "_") else 0)
            plus.append(gap[-1] == "+")
        digits.append(match.group())
        offsets.append(total)
        total += end - start
        starts.append(start)
        ends.append(end)
        previous = end
    offsets.append(total)
    return _Groups("".join(digits), offsets, starts, ends, linked, spacer, plus)


def _longest(groups: _Groups, head: str, plus: bool, following: int) -> tuple[int, str] | None:
    """The longest PAN starting with the digits `head` (a group, or the visible end of a masked
    number) and going on with groups `following`, `following + 1`, ...: (index of its last
    group, its digits), or None.

    A PAN is 12 to 19 digits passing Luhn, in one group or in groups that look like a printed
    card: every group but the last has 4 to 6 digits (4-4-4-4, 4-6-5, 6-10), or, written
    unevenly, three or more groups of two or more digits joined by one and the same spacer
    character (`4111 11 1111 1111 11`), not after a `+` (phone numbers are written that way).
    Each start tries at most 19 digits' worth of groups, so a scan is linear in the text.
    """
    found = None
    digits = head
    count = 1
    last_length = len(head)
    even = True  # every group but the last has 4 to 6 digits
    uneven = not plus and last_length >= 2  # groups of 2+ digits joined by one spacer
    separator = 0
    index = following - 1
    while True:
        if (
            PAN_MIN_DIGITS <= len(digits) <= PAN_MAX_DIGITS
            and (count == 1 or even or (uneven and count >= 3))
            and luhn_valid(digits)
        ):
            found = (index, digits)
        index += 1
        if index >= len(groups.starts) or not groups.linked[index]:
            return found
        group = groups.group(index)
        if len(digits) + len(group) > PAN_MAX_DIGITS:
            return found
        even = even and 4 <= last_length <= 6
        gap = groups.spacer[index]
        uneven = uneven and len(group) >= 2 and gap != 0 and separator in (0, gap)
        if not (even or uneven):
            return found
        separator = gap
        digits += group
        last_length = len(group)
        count += 1


# Texts at least this long are scanned in whole arrays (NumPy, `_array_scan`): the same rules,
# without a Python step per character or group.
_ARRAY_SCAN = 4096
_HIDDEN_CODE = 10 + _HIDDEN  # codes in the arrays: a digit's value, or 10 + any other kind
_WORD_CODE = 10 + _WORD
_SPACER_CODE = 10 + _SPACER


def _code(kind: int, value: int) -> int:
    return value if kind == _DIGIT else 10 + kind


_ASCII_CODES = bytes(_code(*kind) for kind in _ASCII_KINDS)
_ASCII_TABLE = _ASCII_CODES + bytes(128)  # for bytes.translate
_NOT_DIGITS = bytes(code for code in range(256) if not 48 <= code <= 57)
_DOUBLED = bytes(48) + bytes([0, 2, 4, 6, 8, 1, 3, 5, 7, 9]) + bytes(198)  # ASCII digit -> Luhn


def _array_scan(text: str) -> tuple[_Groups, list[tuple[int, int, int, int, int]]]:
    """`_pans` for a long text, with NumPy: `_scan_groups` and `_longest` for every group at
    once, then the left-to-right choice by jumps from one PAN's end to the next start. Luhn sums
    of any window come from two prefix sums over the digits, so the work is O(length + groups x
    19), and Python steps only once per PAN found. `tests/test_redact_linear.py` checks it
    agrees with the loop."""
    import numpy as np

    ascii_digits = None
    if text.isascii():  # C-speed byte translations instead of array lookups
        encoded = text.encode("ascii")
        chars = np.frombuffer(encoded, dtype=np.uint8)
        codes = np.frombuffer(encoded.translate(_ASCII_TABLE), dtype=np.uint8)
        ascii_digits = encoded.translate(None, _NOT_DIGITS)
    else:
        chars = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        codes = np.frombuffer(_ASCII_CODES, dtype=np.uint8)[np.minimum(chars, 127)]
        other = chars >= 128
        unique, inverse = np.unique(chars[other], return_inverse=True)
        found = [_code(*_classify(chr(char))) for char in unique.tolist()]
        codes[other] = np.array(found, dtype=np.uint8)[inverse]
    hidden = codes == _HIDDEN_CODE
    positions = None
    if hidden.any():
        positions = np.flatnonzero(~hidden)
        chars, codes = chars[positions], codes[positions]
    is_digit = codes < 10
    edges = np.diff(is_digit.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    first = np.flatnonzero(edges == 1)  # groups as [first, stop) of the visible characters
    stop = np.flatnonzero(edges == -1)
    count = len(first)
    lengths = stop - first
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    words = np.flatnonzero(codes == _WORD_CODE)
    linked = np.zeros(count, dtype=bool)
    spacer = np.zeros(count, dtype=np.int64)
    plus = np.zeros(count, dtype=bool)
    if count:
        gaps = first[1:] - stop[:-1]
        no_word = np.searchsorted(words, first[1:]) == np.searchsorted(words, stop[:-1])
        linked[1:] = (gaps <= MAX_GAP) & no_word
        single = (gaps == 1) & (codes[stop[:-1]] == _SPACER_CODE)
        spacer[1:] = np.where(single, chars[stop[:-1]], 0)
        plus = (first > 0) & (chars[np.maximum(first - 1, 0)] == ord("+"))
    if ascii_digits is None:
        values = codes[is_digit]  # uint8, 0-9
    else:
        values = np.frombuffer(ascii_digits, dtype=np.uint8) - 48

    # Luhn: in a window [low, high) of the digits, position p is doubled when p % 2 == high % 2,
    # so its sum is a difference of one of two prefix sums, taken at group boundaries.
    if ascii_digits is None:
        doubled = np.frombuffer(_DOUBLED[48:58], dtype=np.uint8)[values]
    else:
        doubled = np.frombuffer(ascii_digits.translate(_DOUBLED), dtype=np.uint8)
    sums = []
    for parity_doubled in (0, 1):
        digit_sums = values.copy()
        digit_sums[parity_doubled::2] = doubled[parity_doubled::2]
        prefix = np.zeros(len(values) + 1, dtype=np.int32)
        np.cumsum(digit_sums, dtype=np.int32, out=prefix[1:])  # int32: several times faster
        sums.append(prefix)
    at_offsets = [sums[0][offsets], sums[1][offsets]]
    parity = offsets % 2 == 1

    # Per group, once: a leading group of an even PAN; the first group after the head of an
    # uneven one (2+ digits after one spacer); a later group of it (the same spacer again).
    even_group = (lengths >= 4) & (lengths <= 6)
    uneven_first = (lengths >= 2) & (spacer != 0)
    uneven_next = uneven_first.copy()
    uneven_next[1:] &= spacer[1:] == spacer[:-1]

    def longest(low: Any, low_sums: list[Any], head: Any, head_plus: Any) -> Any:
        """`_longest` for every group k at once: a head of digits [low[k], offsets[k + 1])
        (`head[k]` of them) followed by groups k + 1, k + 2, ...; the last group of each longest
        PAN, or -1. Group k + e lines up with k in slices [e:], so no step gathers."""
        result = np.full(count, -1, dtype=np.int64)
        alive = np.ones(count, dtype=bool)
        even = np.ones(count, dtype=bool)
        uneven = ~head_plus & (head >= 2)
        head_even = (head >= 4) & (head <= 6)
        for extra in range(min(PAN_MAX_DIGITS, count)):
            size = count - extra  # heads that have `extra` groups after them
            alive, even, uneven = alive[:size], even[:size], uneven[:size]
            if extra:
                even &= head_even[:size] if extra == 1 else even_group[extra - 1 : count - 1]
                uneven &= uneven_first[extra:] if extra == 1 else uneven_next[extra:]
                alive &= linked[extra:]
                alive &= even | uneven
            total = offsets[extra + 1 :] - low[:size]
            alive &= total <= PAN_MAX_DIGITS
            if not alive.any():
                break
            check = alive & (total >= PAN_MIN_DIGITS)
            if extra:
                check &= even | uneven if extra >= 2 else even
            found = np.flatnonzero(check)
            if not len(found):
                continue
            high = found + (extra + 1)
            luhn = np.where(
                parity[high],
                at_offsets[1][high] - low_sums[1][found],
                at_offsets[0][high] - low_sums[0][found],
            )
            found = found[luhn % 10 == 0]
            result[found] = found + extra
        return result

    best = longest(offsets[:-1], [at_offsets[0][:-1], at_offsets[1][:-1]], lengths, plus)
    starts = np.flatnonzero(best >= 0)
    if positions is not None:
        first, stop = positions[first], positions[stop - 1] + 1
    if not len(starts):
        return _Groups("", offsets, first, stop, linked, spacer, plus), []
    digits = ascii_digits.decode() if ascii_digits is not None else (values + 48).tobytes().decode()
    groups = _Groups(digits, offsets, first, stop, linked, spacer, plus)
    # The tails: the last four digits before each group boundary, as a head of their own; a
    # PAN's final last group follows its tails to the end (pointer doubling: log steps).
    tail_low = np.maximum(offsets[1:] - 4, 0)
    tail_sums = [sums[0][tail_low], sums[1][tail_low]]
    tails = longest(tail_low, tail_sums, np.full(count, 4), np.zeros(count, bool))
    final = np.where(tails >= 0, tails, np.arange(count))
    while True:
        further = final[final]
        if np.array_equal(further, final):
            break
        final = further
    # Every start's PAN as an interval of groups [start, its final last group]; overlapping
    # intervals are one masked span (see `_pans`), found by a running maximum of the ends: a
    # span begins at a start that no earlier interval reaches.
    reach_of = np.full(count, -1, dtype=np.int64)
    reach_of[starts] = final[best[starts]]
    reach = np.maximum.accumulate(reach_of)
    before = np.concatenate(([-1], reach[:-1]))
    chosen = starts[starts > before[starts]]
    following = np.append(chosen[1:], count)
    first_last = best[chosen]
    end = reach[following - 1] + 1
    rows = zip(
        groups.starts[chosen].tolist(),
        groups.ends[end - 1].tolist(),
        offsets[chosen].tolist(),
        offsets[first_last + 1].tolist(),
        offsets[end].tolist(),
        strict=True,
    )
    return groups, list(rows)


def _follow_tails(groups: _Groups, last: int) -> int:
    """The last group of a PAN ending at group `last` once its visible last four digits are
    read again with the groups that follow (as a second pass over the masked text would)."""
    offsets = groups.offsets
    while True:
        tail = groups.digits[offsets[last + 1] - 4 : offsets[last + 1]]
        longer = _longest(groups, tail, False, last + 1)
        if longer is None or longer[0] <= last:
            return last
        last = longer[0]


def issuer_plausible(digits: str) -> bool:
    """Whether `digits` (12 to 19 ASCII digits) could be a card by its issuer prefix (IIN) and
    length: 3, 4, 5 and 6 (Amex, Diners, JCB, Visa, Mastercard, Maestro, Discover, UnionPay) at
    any length, Mir's 2200-2204 (16 to 19 digits) and Mastercard's 2221-2720 (16), UATP's 1 at
    15 digits, 81 and 82 (UnionPay, RuPay) at 16 to 19 and Troy's 9792 at 16. Generous on
    purpose: a prefix some card uses is enough. It leaves out what ids are made of: dates
    (19..., 20...; 26... unless 16 digits long), zero-padded sequences (0...), 7."""
    first, length = digits[0], len(digits)
    if first in "3456":
        return True
    if first == "2":
        prefix = int(digits[:4])
        return (2200 <= prefix <= 2204 and length >= 16) or (
            2221 <= prefix <= 2720 and length == 16
        )
    if first == "1":
        return length == 15
    if first == "8":
        return digits[:2] in ("81", "82") and length >= 16
    return first == "9" and digits.startswith("9792") and length == 16


def _glued(text: str, index: int, step: int) -> bool:
    """Whether the first visible character from `index` going `step` (-1 or 1) is a letter or
    other alphanumeric: the digits are part of a longer token (`CG202603230030`)."""
    while 0 <= index < len(text):
        kind = _classify(text[index])[0]
        if kind != _HIDDEN:
            return kind == _WORD
        index += step
    return False


def _card_in_id(text: str, groups: _Groups, first: int, found: tuple[int, str]) -> bool:
    """In an identifier, a PAN (from group `first` to `found`) is a card number only when its
    issuer prefix and length fit a card (`issuer_plausible`) and it is not glued to letters on
    either side: `CG202603230030`, `INV4539...X` are ids whose digits passed Luhn by chance."""
    last, digits = found
    return (
        issuer_plausible(digits)
        and not _glued(text, groups.starts[first] - 1, -1)
        and not _glued(text, groups.ends[last], 1)
    )


def _pans(
    text: str, arrays: bool | None = None, ids: bool = False
) -> tuple[str, list[tuple[int, int, int, int, int]]]:
    """Every PAN in `text`: the digits of all groups, and per PAN (start, end) in the text and
    (low, middle, high) in those digits: its own digits are [low, middle), its masked form
    hides [low, high - 4) and shows [high - 4, high). Spans do not overlap.

    Each start takes its longest PAN, and overlapping PANs are one span. The last four digits a
    mask leaves are scanned again with the groups that follow, as a second pass over the masked
    text would see them (`4111111111111111 1111 1111 1118`), so masking is idempotent.
    `arrays` forces the NumPy scan on or off (tests); by default long texts use it.
    `ids`: the text is an identifier (a txn_id, a run_id, a reference column): a PAN counts only
    when `_card_in_id` says it could be a card (always the loop, never the arrays).
    """
    if not ids and (arrays if arrays is not None else len(text) >= _ARRAY_SCAN):
        groups, rows = _array_scan(_blank_own_hex(text))
        return groups.digits, rows
    if text.isascii() and not _ASCII_DIGIT.search(text):  # most short values: no digit at all
        return "", []
    text = _blank_own_hex(text)
    if text.isascii() and not _ASCII_HIDDEN.search(text):
        groups = _scan_ascii_groups(text)
    else:
        groups = _scan_groups(text)
    offsets = groups.offsets
    count = len(groups.starts)
    # Digits from each group to the end of its run: a start with fewer than 12 is skipped.
    reach = offsets[1:]
    for index in range(count - 2, -1, -1):
        if groups.linked[index + 1]:
            reach[index] = reach[index + 1]
    rows = []
    index = 0
    while index < count:
        if reach[index] - offsets[index] < PAN_MIN_DIGITS:
            index += 1
            continue
        longest = _longest(groups, groups.group(index), groups.plus[index], index + 1)
        if longest is None or (ids and not _card_in_id(text, groups, index, longest)):
            index += 1
            continue
        first_last = longest[0]
        last = _follow_tails(groups, first_last)
        # A PAN that starts inside this one and ends beyond it joins it: masking only the
        # first would leave most of the second in view (`1000 5278-4616-8926-7258`, where
        # `1000 5278 4616` passes Luhn and hides only four digits of the card after it).
        probe = index + 1
        while probe <= last:
            if reach[probe] - offsets[probe] >= PAN_MIN_DIGITS:
                inner = _longest(groups, groups.group(probe), groups.plus[probe], probe + 1)
                if inner is not None and not (ids and not _card_in_id(text, groups, probe, inner)):
                    last = max(last, _follow_tails(groups, inner[0]))
            probe += 1
        start, end = groups.starts[index], groups.ends[last]
        rows.append((start, end, offsets[index], offsets[first_last + 1], offsets[last + 1]))
        index = last + 1
    return groups.digits, rows


def _pan_spans(text: str, arrays: bool | None = None) -> list[tuple[int, int, str, str]]:
    """Every PAN in `text`: (start, end, its digits, its masked form); see `_pans`."""
    digits, rows = _pans(text, arrays)
    return [
        (start, end, digits[low:middle], MASK_CHAR * (high - low - 4) + digits[high - 4 : high])
        for start, end, low, middle, high in rows
    ]


def find_pans(text: str) -> list[tuple[int, int, str]]:
    """Every PAN in `text` as (start, end, ascii digits); spans do not overlap."""
    return [(start, end, digits) for start, end, digits, _ in _pan_spans(text)]


def mask_digits(digits: str) -> str:
    """`4111111111111111` -> `************1111`."""
    return MASK_CHAR * (len(digits) - 4) + digits[-4:]


def mask_pans(text: str | None, ids: bool = False) -> str | None:
    """Replace every PAN in `text` by its masked form, leaving everything around it intact.
    `ids`: `text` is an identifier, judged by `_card_in_id`."""
    if not text:
        return text
    digits, rows = _pans(text, ids=ids)
    if not rows:
        return text
    pieces: list[str] = []
    previous = 0
    for start, end, low, _, high in rows:
        pieces += (text[previous:start], MASK_CHAR * (high - low - 4), digits[high - 4 : high])
        previous = end
    pieces.append(text[previous:])
    return "".join(pieces)
