"""Issue 13, item 4: ordinary transaction ids are not card numbers.

About one id in ten of the form `CG202603230030` (a prefix, a date, a sequence) holds a 12-19
digit run that passes Luhn by chance, and was stored as `CG********0030#8a9d94a5`: operations
could not look it up. In an id column (txn_id, run_id, a column named `..._id` or `..._ref`) a
Luhn-valid run is a card number only when its issuer prefix and length fit a card and it is not
glued to letters; free text keeps the stricter rule. Every card still is masked, anywhere.
`recon runs` says how many values of each column were masked, so a person notices.
"""

from __future__ import annotations

import csv
import random
import re
import uuid
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile import redact
from tests.canary import luhn_digits, normalise

pytestmark = pytest.mark.in_process

# --- what a realistic export holds ----------------------------------------------------------


def _day(rng: random.Random) -> tuple[int, int, int]:
    return rng.randrange(2019, 2031), rng.randrange(1, 13), rng.randrange(1, 29)


def realistic_id(rng: random.Random) -> str:
    """An id as payment systems write them: prefix + date + sequence in many spellings, UUIDs,
    references with digits. None of them is a card number."""
    y, m, d = _day(rng)
    prefix = rng.choice(["CG", "TX", "PL", "PAY", "ORD", "SETL", "B", "T", "INV", "REF"])
    seq = rng.randrange(10**7)
    shape = rng.randrange(14)
    if shape == 0:  # the field report's shape: CG202603230030
        return f"{prefix}{y:04d}{m:02d}{d:02d}{seq % 10**4:04d}"
    if shape == 1:
        return f"{prefix}{y:04d}{m:02d}{d:02d}{seq % 10**6:06d}"
    if shape == 2:
        return f"{prefix}-{y:04d}{m:02d}{d:02d}-{seq % 10**6:06d}"
    if shape == 3:
        return f"{prefix}{y % 100:02d}{m:02d}{d:02d}{seq:07d}"
    if shape == 4:
        return f"{y:04d}{m:02d}{d:02d}{seq % 10**6:06d}"  # date + sequence, no prefix
    if shape == 5:
        return f"{prefix}_{y:04d}_{m:02d}_{d:02d}_{seq % 10**5:05d}"
    if shape == 6:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if shape == 7:
        return uuid.UUID(int=rng.getrandbits(128), version=4).hex.upper()
    if shape == 8:
        return f"INV-{y:04d}-{seq % 10**6:06d}"
    if shape == 9:
        return f"PO45{rng.randrange(10**8):08d}"  # an SAP purchase order
    if shape == 10:  # an acquirer reference number: 23 digits
        return f"7{rng.randrange(10**22):022d}"
    if shape == 11:
        return f"ORDER#{rng.randrange(10**9):015d}"  # zero padded
    if shape == 12:
        return f"FT{y % 100:02d}{m:02d}{d:02d}{rng.randrange(10**10):010d}"
    return f"{prefix}{y:04d}{m:02d}{d:02d}{rng.randrange(10**8):08d}X"


# (issuer prefix, length, how it is written): the cards the canary sweep writes, and more.
CARD_SHAPES = [
    ("4", 16, lambda d: d),
    ("37", 15, lambda d: f"{d[:4]} {d[4:10]} {d[10:]}"),
    ("52", 16, lambda d: "-".join(d[i : i + 4] for i in range(0, 16, 4))),
    ("6011", 19, lambda d: d),
    ("35", 16, lambda d: " ".join(d[i : i + 4] for i in range(0, 16, 4))),
    ("51", 16, lambda d: "\u200d".join(d[i : i + 4] for i in range(0, 16, 4))),
    ("2221", 16, lambda d: d),
    ("62", 17, lambda d: d),
    ("4", 13, lambda d: d),
]
ID_COLUMNS = ["txn_id", "order_id", "bank_ref"]
TEXT_COLUMNS = ["error_message", "memo"]


def card(rng: random.Random) -> tuple[str, str]:
    """A Luhn-valid card number and how it is written."""
    prefix, length, write = rng.choice(CARD_SHAPES)
    digits = luhn_digits(rng, prefix, length)
    return digits, write(digits)


def build_file(path: Path, rows: int = 10_000, every: int = 40, seed: int = 13) -> dict:
    """A run log of `rows` rows whose ids are realistic non-card ids, with a card planted in
    every `every`-th row, going round the columns: in id columns alone or after a separator
    (`TX-<card>`), in free text glued to letters too (`card<card>declined`), and in the card
    column. Returns the ids by (line, column) and the planted cards by column."""
    rng = random.Random(seed)
    ids: dict[tuple[int, str], str] = {}
    planted: dict[str, list[str]] = {}
    places = [*ID_COLUMNS, *TEXT_COLUMNS, "card_number"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        header = ["txn_id", "amount", "status", "run_id", "error_message", "order_id"]
        writer.writerow([*header, "bank_ref", "memo", "card_number"])
        for line in range(rows):
            row = {
                "txn_id": realistic_id(rng),
                "order_id": realistic_id(rng),
                "bank_ref": realistic_id(rng),
                "run_id": f"RUN{2026_03_23_0000 + line // 1000}",  # RUN202603230000...
                "error_message": "",
                "memo": rng.choice(["", "paid", "chargeback pending", "batch 12 of 40"]),
                "card_number": "",
            }
            if line % every == 0:
                column = places[(line // every) % len(places)]
                digits, written = card(rng)
                if column in ID_COLUMNS:
                    written = rng.choice([written, f"TX-{written}", f"{written} "])
                elif column in TEXT_COLUMNS:
                    written = rng.choice(
                        [f"card {written} declined", f"card{written}declined", written]
                    )
                row[column] = written
                planted.setdefault(column, []).append(digits)
            for column in ID_COLUMNS:
                ids[(line, column)] = row[column]
            writer.writerow(
                [
                    row["txn_id"],
                    "10.00",
                    "FAILED" if line % 7 == 0 else "OK",
                    row["run_id"],
                    row["error_message"],
                    row["order_id"],
                    row["bank_ref"],
                    row["memo"],
                    row["card_number"],
                ]
            )
    return {"ids": ids, "planted": planted}


def test_ten_thousand_ids_none_masked_and_every_card_masked(recon, tmp_path: Path) -> None:
    """The Must-be-true of issue 13: no realistic id is masked, every planted card is."""
    path = tmp_path / "ids.csv"
    built = build_file(path)
    result, files = recon.ingest(path, source="cg")
    assert result.code == 0, result.stderr
    assert files[0]["rows_loaded"] == 10_000
    planted_ids = {
        (line, column)
        for line in range(0, 10_000, 40)
        for column in ID_COLUMNS
        if column == [*ID_COLUMNS, *TEXT_COLUMNS, "card_number"][(line // 40) % 6]
    }
    stored = recon.query(
        "SELECT txn_id, attributes->>'order_id', attributes->>'bank_ref', error_message, "
        "attributes->>'memo', attributes->>'card_number', run_id FROM transactions "
        "ORDER BY file_id, line"
    )
    assert len(stored) == 10_000
    changed = [
        (built["ids"][(line, column)], value)
        for line, row in enumerate(stored)
        for column, value in zip(ID_COLUMNS, row[:3], strict=True)
        if (line, column) not in planted_ids and value != built["ids"][(line, column)]
    ]
    assert changed == [], f"{len(changed)} ids masked, e.g. {changed[:5]}"
    assert {row[6] for row in stored} == {f"RUN{2026_03_23_0000 + k}" for k in range(10)}
    # Every card, in any column or in free text, is masked: no 12 of its digits remain.
    everything = normalise("\n".join(str(value) for row in stored for value in row))
    for column, cards in built["planted"].items():
        for digits in cards:
            assert digits[:12] not in everything and digits[-12:] not in everything, column
    # `recon runs` counts them per column: exactly the planted ones.
    runs = recon("--json", "runs", "--source", "cg").json()["runs"]
    total: dict[str, int] = {}
    for run in runs:
        for column, count in run["masked"].items():
            total[column] = total.get(column, 0) + count
    assert total == {column: len(cards) for column, cards in built["planted"].items()}


def test_recon_runs_shows_masked_values_per_column(recon, tmp_path: Path) -> None:
    """The field report's id stays as written; the card beside it is masked, and `recon runs`
    (table and --json) says which column had masked values and how many."""
    path = tmp_path / "run.csv"
    path.write_text(
        "txn_id,amount,status,run_id,error_message,card_number\n"
        "CG202603230030,1.00,OK,R1,,4111111111111111\n"
        "CG202603230031,1.00,FAILED,R1,card 5555555555554444 declined,\n"
        "4111111111111111,1.00,OK,R1,,\n"
        "CG202603230032,1.00,OK,R2,,\n",
        encoding="utf-8",
    )
    result, _ = recon.ingest(path, source="cg")
    assert result.code == 0, result.stderr
    ids = [row[0] for row in recon.query("SELECT txn_id FROM transactions ORDER BY line")]
    assert ids[:2] == ["CG202603230030", "CG202603230031"]
    assert re.fullmatch(r"\*{12}1111#[0-9a-f]{8}", ids[2])
    runs = {run["run_id"]: run for run in recon("--json", "runs").json()["runs"]}
    assert runs["R1"]["masked"] == {"card_number": 1, "error_message": 1, "txn_id": 1}
    assert runs["R2"]["masked"] == {}
    table = recon("runs").stdout
    assert "masked" in table.splitlines()[0]
    assert "card_number 1, error_message 1, txn_id 1" in table


def test_an_id_column_by_name_keeps_its_ids_and_free_text_keeps_the_strict_rule(
    recon, tmp_path: Path
) -> None:
    """`order_ref` is an id column by its name; `memo` is free text: the same glued number is
    kept in the first and masked in the second (a card glued to words in prose is masked)."""
    glued = "CG4111111111111111"
    path = tmp_path / "run.csv"
    path.write_text(
        f"txn_id,amount,status,run_id,order_ref,memo\nT1,1.00,OK,R1,{glued},{glued}\n",
        encoding="utf-8",
    )
    result, _ = recon.ingest(path, source="cg")
    assert result.code == 0, result.stderr
    [(order_ref, memo)] = recon.query(
        "SELECT attributes->>'order_ref', attributes->>'memo' FROM transactions"
    )
    assert order_ref == glued
    assert memo == "CG************1111"


def test_a_quarantined_row_keeps_its_id_and_masks_its_card(recon, tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    path.write_text(
        "txn_id,amount,status,run_id,error_message\n"
        "CG202603230030,abc,OK,R1,card 4111111111111111 declined\n",
        encoding="utf-8",
    )
    result, _ = recon.ingest(path, source="cg")
    assert result.code == 3, result.stderr  # rows were quarantined
    [row] = recon("--json", "quarantine").json()["quarantine"]
    assert "CG202603230030" in row["raw"]
    assert "4111111111111111" not in row["raw"] and "************1111" in row["raw"]


# --- the rule itself, as properties -------------------------------------------------------

letters = st.text(
    st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"), min_size=1, max_size=5
)


@st.composite
def luhn_runs(draw: st.DrawFn) -> str:
    """Any Luhn-valid run of 12 to 19 digits (a chance one, or a card)."""
    length = draw(st.integers(redact.PAN_MIN_DIGITS, redact.PAN_MAX_DIGITS))
    body = [draw(st.integers(0, 9)) for _ in range(length - 1)]
    return luhn_digits(random.Random(draw(st.integers())), "".join(map(str, body)), length)


@st.composite
def cards(draw: st.DrawFn) -> tuple[str, str]:
    prefix, length, write = draw(st.sampled_from(CARD_SHAPES))
    digits = luhn_digits(random.Random(draw(st.integers())), prefix, length)
    return digits, write(digits)


@given(letters, luhn_runs(), st.text("ABCXYZ-_/", max_size=3))
@settings(max_examples=300, deadline=None)
def test_a_digit_run_glued_to_letters_is_part_of_the_id(prefix: str, run: str, suffix: str) -> None:
    value = f"{prefix}{run}{suffix}"
    assert redact.mask_id(value) == value
    assert redact.mask_key(value, b"k") == value


@given(
    st.sampled_from(["", "TX-", "PAY/", "B_", "REF "]),
    st.dates(date(2000, 1, 1), date(2099, 12, 31)),  # (a 15-digit 19... could be UATP's)
    st.integers(0, 10**8 - 1),
    st.sampled_from(["", "-", "_", "/"]),
    st.integers(2, 8),
)
@settings(max_examples=400, deadline=None)
def test_prefix_date_sequence_ids_are_never_masked(
    prefix: str, day: date, seq: int, separator: str, width: int
) -> None:
    value = f"{prefix}{day:%Y%m%d}{separator}{seq % 10**width:0{width}d}"
    assert redact.mask_id(value) == value


@given(st.integers(0, 2**128 - 1), st.booleans())
@settings(max_examples=200, deadline=None)
def test_uuids_are_never_masked(number: int, hexa: bool) -> None:
    value = uuid.UUID(int=number, version=4)
    text = value.hex if hexa else str(value)
    assert redact.mask_id(text) == text


@given(
    cards(), st.sampled_from(["", "TX-", "PAY/", "ref ", "T1 "]), st.sampled_from(["", " ", "/1"])
)
@settings(max_examples=400, deadline=None)
def test_a_card_in_an_id_column_is_masked(card_: tuple[str, str], before: str, after: str) -> None:
    digits, written = card_
    for masked in (redact.mask_id(f"{before}{written}{after}"),
                   redact.mask_key(f"{before}{written}{after}", b"k")):  # fmt: skip
        assert masked is not None
        assert digits[:12] not in normalise(masked) and digits[-12:] not in normalise(masked)


@given(
    st.text(max_size=40)
    | st.builds(lambda a, r, b: a + r + b, st.text(max_size=8), luhn_runs(), st.text(max_size=8))
)
@settings(max_examples=400, deadline=None)
def test_the_id_rule_masks_a_subset_and_is_idempotent(text: str) -> None:
    """Whatever `mask_id` masks, free text masks too (the SQL prefilter stays a superset); and
    masking an id twice changes nothing more."""
    once = redact.mask_id(text)
    if redact.mask_pans(text) == text:
        assert once == text
    assert redact.mask_id(once) == once


@pytest.mark.parametrize(
    ("digits", "plausible"),
    [
        ("202603230030", False),  # a date and a sequence
        ("4111111111111111", True),
        ("378282246310005", True),
        ("2221000000000009", True),
        ("2026032300301", False),
        ("000000001234567", False),
        ("700000000000000000", False),
        ("6011111111111117", True),
        ("8171999927660000", True),
    ],
)
def test_issuer_prefix_and_length(digits: str, plausible: bool) -> None:
    assert redact.issuer_plausible(digits) is plausible


def _numeric_ids(count: int) -> list[str]:
    """14-digit numeric ids starting with 5 (a Maestro-like prefix): one in ten passes Luhn."""
    rng = random.Random(5)
    return [f"5{rng.randrange(10**13):013d}" for _ in range(count)]


def test_a_declared_id_format_leaves_matching_ids_alone(recon, tmp_path: Path) -> None:
    """Numeric ids with a card-like prefix cannot be told from cards by their digits; a source
    declares the column's format (`id_formats`) and its ids are kept, while a card in the same
    column (not of that format) is still masked."""
    ids = _numeric_ids(60)
    lines = [f"{value},1.00,OK,R1" for value in ids] + ["4111111111111111,1.00,OK,R1"]
    path = tmp_path / "run.csv"
    path.write_text("txn_id,amount,status,run_id\n" + "\n".join(lines) + "\n", encoding="utf-8")
    recon.write_config('[sources.cg]\nid_formats = { txn_id = "5[0-9]{13}" }\n')
    result, _ = recon.ingest(path, source="cg")
    assert result.code == 0, result.stderr
    stored = [row[0] for row in recon.query("SELECT txn_id FROM transactions ORDER BY line")]
    assert stored[:-1] == ids
    assert stored[-1].startswith("************1111#")
    [run] = recon("--json", "runs").json()["runs"]
    assert run["masked"] == {"txn_id": 1}


def test_without_the_declared_format_such_ids_are_judged_by_their_digits(
    recon, tmp_path: Path
) -> None:
    """The same ids without the setting: those that pass Luhn are masked (a 14-digit number
    starting with 5 may be a Maestro card), and `recon runs` says how many."""
    ids = _numeric_ids(60)
    path = tmp_path / "run.csv"
    path.write_text(
        "txn_id,amount,status,run_id\n" + "".join(f"{v},1.00,OK,R1\n" for v in ids),
        encoding="utf-8",
    )
    result, _ = recon.ingest(path, source="cg")
    assert result.code == 0, result.stderr
    expected = sum(redact.luhn_valid(value) for value in ids)
    assert expected > 0
    [run] = recon("--json", "runs").json()["runs"]
    assert run["masked"] == {"txn_id": expected}


@pytest.mark.parametrize("pattern", [".*", "[0-9]{12,19}", "[0-9]{16}", "[A-Z0-9]*"])
def test_a_format_that_takes_card_numbers_is_refused(recon, tmp_path: Path, pattern: str) -> None:
    recon.write_config(f'[sources.cg]\nid_formats = {{ txn_id = "{pattern}" }}\n')
    path = tmp_path / "run.csv"
    path.write_text("txn_id,amount,status,run_id\nT1,1.00,OK,R1\n", encoding="utf-8")
    result, _ = recon.ingest(path, source="cg")
    assert result.code != 0
    assert "id_formats" in result.stderr and "matches card numbers" in result.stderr
