"""Canary card numbers and the scan that proves none of them got through.

A canary is a Luhn-valid test number with random digits (so its 12-digit pieces cannot turn up
by chance), written in one of the shapes people and systems write cards in. The scan normalises
what it reads the way an attacker would read it back: Unicode digits to ASCII, invisible and
separator characters dropped, letters kept as breaks; then no canary may show whole, and no run
of 12 of its digits may show at all.
"""

from __future__ import annotations

import io
import random
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

import duckdb

ZWJ, ZWSP = "\u200d", "\u200b"


def luhn_digits(rng: random.Random, prefix: str, length: int) -> str:
    """A Luhn-valid number of `length` digits starting with `prefix`, the rest random."""
    body = [int(d) for d in prefix] + [rng.randrange(10) for _ in range(length - len(prefix) - 1)]
    total = 0
    for index, digit in enumerate(reversed(body)):
        doubled = digit * 2 if index % 2 == 0 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return "".join(map(str, body)) + str((10 - total % 10) % 10)


def _grouped(digits: str, sizes: list[int], separator: str) -> str:
    parts, at = [], 0
    for size in sizes:
        parts.append(digits[at : at + size])
        at += size
    return separator.join(parts)


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) - ord("0") + 0xFF10) if c.isdigit() else c for c in text)


@dataclass(frozen=True)
class Canary:
    shape: str
    digits: str  # the number, ASCII digits only
    text: str  # as written in the input


# shape -> (prefix, length, how it is written)
SHAPES = {
    "visa contiguous": ("4", 16, lambda d: d),
    "amex 4-6-5": ("37", 15, lambda d: _grouped(d, [4, 6, 5], " ")),
    "mastercard hyphens": ("52", 16, lambda d: _grouped(d, [4, 4, 4, 4], "-")),
    "19 digits": ("6011", 19, lambda d: d),
    "full-width": ("4", 16, _full_width),
    "zero-width joiners": ("51", 16, lambda d: ZWJ.join(d[i : i + 4] for i in range(0, 16, 4))),
    "dots": ("4", 16, lambda d: _grouped(d, [4, 4, 4, 4], ".")),
    "spaces and zero-width space": ("35", 16, lambda d: _grouped(d, [4, 4, 4, 4], " " + ZWSP)),
}


def make(shape: str, rng: random.Random) -> Canary:
    """A canary of this shape, with digits of its own."""
    prefix, length, write = SHAPES[shape]
    digits = luhn_digits(rng, prefix, length)
    return Canary(shape, digits, write(digits))


def canaries(seed: int = 20261202) -> list[Canary]:
    """One canary per shape, each with digits of its own."""
    rng = random.Random(seed)
    return [make(shape, rng) for shape in SHAPES]


_ESCAPES = re.compile(
    r"\\u([0-9a-fA-F]{4})|_x([0-9a-fA-F]{4})_|&#x([0-9a-fA-F]{1,6});|&#([0-9]{1,7});"
)


def unescape(text: str) -> str:
    """JSON (`\\u200d`), XLSX (`_x200D_`) and XML (`&#8205;`) escapes decoded: whoever reads
    the log or the export back decodes them too."""

    def decode(match: re.Match[str]) -> str:
        hexa = match.group(1) or match.group(2) or match.group(3)
        return chr(int(hexa, 16) if hexa else int(match.group(4)))

    return _ESCAPES.sub(decode, text)


def normalise(text: str) -> str:
    """Digits as ASCII, letters as `|` (a break), everything else (separators, invisible and
    format characters, masks) dropped: what is left are the digit runs a reader could rebuild.
    Escapes are decoded first."""
    out = []
    for char in unicodedata.normalize("NFKC", unescape(text)):
        if char.isdecimal():
            out.append(str(unicodedata.decimal(char)))
        elif char.isalpha():
            out.append("|")
    return "".join(out)


def leaks(text: str, found: list[Canary]) -> list[str]:
    """The canaries whose number, or any 12 consecutive digits of it, show in `text`."""
    flat = normalise(text)
    hits = []
    for canary in found:
        pieces = {canary.digits[i : i + 12] for i in range(len(canary.digits) - 11)}
        if any(piece in flat for piece in pieces):
            hits.append(canary.shape)
    return hits


def _text(value: object) -> str:
    """A stored value as text, as it is (never `repr`: it would escape the invisible characters
    a canary hides behind, and the scan would read `\u200d` as letters and digits)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return "\nX\n".join(_text(item) for item in value)
    if isinstance(value, dict):
        return "\nX\n".join(f"{_text(k)}\nX\n{_text(v)}" for k, v in value.items())
    return str(value)


def read_store(db: Path) -> dict[str, str]:
    """Every column of every table of a DuckDB file, as text, by table (cells apart: a letter
    between them, so digits of two cells never join)."""
    places = {}
    with duckdb.connect(str(db), read_only=True) as conn:
        tables = conn.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() ORDER BY ALL"
        ).fetchall()
        for schema, table in tables:
            rows = conn.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()
            columns = [d[0] for d in conn.description or []]
            places[f"table {table}"] = _text(columns) + "\nX\n" + _text(rows)
    return places


def read_files(folder: Path, skip: set[Path]) -> dict[str, str]:
    """Every file under `folder` as text (the XML inside an XLSX), except our own inputs."""
    places = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path in skip or path.suffix in (".duckdb", ".wal"):
            continue
        data = path.read_bytes()
        if data[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(data)) as book:
                data = b"".join(book.read(n) for n in book.namelist())
        places[f"file {path.relative_to(folder)}"] = data.decode("utf-8", errors="replace")
    return places
