"""Card numbers in identifiers: run ids, file names, column names and JSON keys, monitor names
and tags, values click echoes in its usage errors, log correlation ids. Each enters through the
CLI or a file, the way an operator or a crafted export would put it there, and is then looked
for in every table, every log line and everything printed."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile import logs, redact
from reconcile.ingest.readers import masked_names

from .canary import Canary, canaries, leaks, read_files, read_store
from .conftest import Recon, Result

# Many input cases through the CLI: run in this process (tests/support.py), not one
# interpreter each; the real-process contract is kept by test_setup, test_sample_data and others.
pytestmark = pytest.mark.in_process

CARDS = canaries()
BY_SHAPE = {c.shape: c for c in CARDS}


def assert_nowhere(recon: Recon, outputs: list[Result], skip: set[Path] = frozenset()) -> None:
    places = read_store(recon.db) | read_files(recon.workdir, set(skip))
    for number, out in enumerate(outputs):
        places[f"output {number}"] = out.stdout + out.stderr
    found = {where: leaks(text, CARDS) for where, text in places.items()}
    assert not {where: shapes for where, shapes in found.items() if shapes}


@pytest.fixture
def logged(recon: Recon) -> Recon:
    recon.env.update(
        {
            "RECON_LOG_FILE": str(recon.workdir / "recon.log"),
            "RECON_LOG_FILE_LEVEL": "DEBUG",
            "RECON_LOG_LEVEL": "DEBUG",
        }
    )
    return recon


@pytest.mark.parametrize("card", CARDS[::2], ids=lambda c: c.shape)
def test_a_run_id_given_on_the_command_line_reaches_no_table_log_or_output(
    logged: Recon, write_file: Callable[[str, str], Path], card: Canary
) -> None:
    recon = logged
    run = write_file("run.csv", "txn_id,amount,status\nT1,1.00,FAILED\nT2,x,OK\n")
    outputs = [
        recon("--json", "ingest", "--source", "pay", "--run-id", card.text, run),
        recon("expect", "--source", "pay", "--run-id", card.text, "--count", "2"),
        recon("quarantine", "--run-id", card.text),
        recon("reconcile", "--run", card.text),
        recon("--json", "runs"),
    ]
    assert outputs[0].code == 3, outputs[0].stderr  # one row quarantined
    [stored] = recon.query("SELECT DISTINCT run_id FROM transactions")
    assert stored[0].endswith(card.digits[-4:]) and "*" in stored[0]
    # Typed again, the masked run id finds the same run.
    assert "T2" in outputs[2].stdout
    assert_nowhere(recon, outputs, {run})


@pytest.mark.parametrize(
    "args",
    [
        ("quarantine", "--limit", "{card}x"),  # not an integer
        ("runs", "{card}"),  # an unexpected extra argument
        ("ingest", "--kind", "{card}", "f.csv"),  # not one of the choices
        ("monitor", "add", "job", "--grace", "{card}"),  # not a duration
        ("audit", "log", "--since", "{card}"),  # not a time
        ("failures", "--date", "{card}"),  # not a date
        ("{card}",),  # no such command
        ("--db", "x.duckdb", "monitor", "show", "--{card}"),  # no such option
    ],
    ids=lambda a: " ".join(a),
)
def test_click_does_not_echo_a_card_number_in_its_usage_errors(
    recon: Recon, args: tuple[str, ...]
) -> None:
    card = BY_SHAPE["mastercard hyphens"]
    done = recon(*(a.format(card=card.text) for a in args))
    assert done.code in (1, 2), done.stderr
    assert done.stderr.strip()  # something was said
    assert not leaks(done.stdout + done.stderr, CARDS), done.stderr


def test_a_database_path_holding_a_card_number_is_printed_masked(recon: Recon) -> None:
    """A path is used as given (the file must be found), but what recon prints of it is masked:
    the last guard on stdout and stderr."""
    card = BY_SHAPE["dots"]
    folder = recon.workdir / f"db-{card.text}"
    folder.mkdir(mode=0o700)
    outputs = [
        recon("--db", folder / "x.duckdb", "init"),
        recon("--db", folder / "x.duckdb", "--json", "init"),
    ]
    assert (folder / "x.duckdb").is_file() and outputs[0].code == 0, outputs[0].stderr
    assert "db-************" + card.digits[-4:] in outputs[0].stderr
    assert not any(leaks(o.stdout + o.stderr, CARDS) for o in outputs), outputs


@pytest.mark.parametrize("option", ["--limit", "--limit="])
def test_a_usage_error_quoting_a_card_as_its_repr_is_masked(recon: Recon, option: str) -> None:
    """click quotes a refused value as its repr: zero-width spaces inside the number become
    `\\u200b` escapes, which the masker alone would not see through."""
    card = BY_SHAPE["spaces and zero-width space"]
    value = f"{card.text}x"
    args = [f"{option}{value}"] if option.endswith("=") else [option, value]
    done = recon("quarantine", *args)
    assert done.code == 2 and "************" + card.digits[-4:] in done.stderr, done.stderr
    assert not leaks(done.stdout + done.stderr, CARDS), done.stderr


@pytest.mark.parametrize("card", CARDS[:4], ids=lambda c: c.shape)
def test_a_file_named_like_a_card_is_stored_and_shown_masked(
    logged: Recon, write_file: Callable[[str, str], Path], card: Canary
) -> None:
    recon = logged
    good = write_file(f"run-{card.text}.csv", "txn_id,amount,status,run_id\nT1,1.00,OK,R1\n")
    bad = write_file(f"bad {card.text}.csv", "txn_id,amount\nT1,1.00\n")  # no status column
    missing = recon.workdir / f"missing-{card.text}.csv"
    outputs = [
        recon("--json", "ingest", "--source", "pay", good),
        recon("ingest", "--source", "pay", good),  # already ingested: says so, naming the file
        recon("ingest", "--source", "pay", bad, missing),
        recon("--json", "ingest", "--source", "pay", "--replace", good),
        recon("export", "--date", "2026-11-24", "--format", "json", "-o", "week.json"),
        recon("audit", "log"),
    ]
    assert outputs[0].code == 0, outputs[0].stderr
    assert outputs[0].json()["files"][0]["path"].endswith(f"{card.digits[-4:]}.csv")
    assert "missing-" in outputs[2].stderr and "bad " in outputs[2].stderr
    [path] = recon.query("SELECT DISTINCT path FROM ingested_files")
    assert path[0].startswith(str(good.parent)) and path[0].endswith(f"{card.digits[-4:]}.csv")
    assert_nowhere(recon, outputs, {good, bad})


def test_column_names_and_json_keys_like_a_card_are_masked_in_attributes(
    recon: Recon, write_file: Callable[[str, str | bytes], Path]
) -> None:
    visa, wide, dots = BY_SHAPE["visa contiguous"], BY_SHAPE["full-width"], BY_SHAPE["dots"]
    csv = write_file(
        "run.csv",
        f"txn_id,amount,status,run_id,{visa.text},{wide.text},note\n"
        "T1,1.00,OK,R1,a,b,c\n"
        "T2,oops,OK,R1,d,e,f\n",  # quarantined: its raw row names the columns too
    )
    jsonl = write_file(
        "run.jsonl",
        json.dumps(
            {"txn_id": "T3", "amount": "2.00", "status": "OK", "run_id": "R2", dots.text: "v"}
        )
        + "\n"
        + json.dumps({"txn_id": "T4", "amount": "x", "status": "OK", "run_id": "R2", "k": 1})
        + "\n",
    )
    parquet = recon.workdir / "run.parquet"
    with duckdb.connect() as conn:
        conn.execute(
            f"COPY (SELECT 'T5' AS txn_id, '3.00' AS amount, 'OK' AS status, 'R3' AS run_id, "
            f"'w' AS \"{visa.text}\") TO '{parquet}' (FORMAT parquet)"
        )
    outputs = [recon("--json", "ingest", "--source", "pay", f) for f in (csv, jsonl, parquet)]
    assert [o.code for o in outputs] == [3, 3, 0], [o.stderr for o in outputs]
    attributes = {
        txn: json.loads(value)
        for txn, value in recon.query("SELECT txn_id, attributes FROM transactions")
    }
    assert attributes["T1"] == {
        "************" + visa.digits[-4:]: "a",
        "************" + wide.digits[-4:]: "b",
        "note": "c",
    }
    assert attributes["T3"]["************" + dots.digits[-4:]] == "v"
    assert attributes["T5"] == {"************" + visa.digits[-4:]: "w"}
    outputs += [recon("quarantine"), recon("--json", "quarantine")]
    assert_nowhere(recon, outputs, {csv, jsonl, parquet})


def test_two_columns_masked_alike_stay_apart(
    recon: Recon, write_file: Callable[[str, str], Path]
) -> None:
    visa = BY_SHAPE["visa contiguous"]
    # Another card with the same last four: two digits of the same Luhn weight swapped.
    digits = list(visa.digits)
    i, j = next((i, j) for i in range(1, 11) for j in range(i + 2, 12, 2) if digits[i] != digits[j])
    digits[i], digits[j] = digits[j], digits[i]
    other = "".join(digits)
    assert _luhn(other) and other[-4:] == visa.digits[-4:]
    run = write_file(
        "run.csv", f"txn_id,amount,status,run_id,{visa.text},{other}\nT1,1,OK,R1,a,b\n"
    )
    done = recon("ingest", "--source", "pay", run)
    assert done.code == 0, done.stderr
    [(value,)] = recon.query("SELECT attributes FROM transactions")
    masked = "************" + visa.digits[-4:]
    assert json.loads(value) == {masked: "a", f"{masked}_2": "b"}


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def test_monitor_names_and_tags_like_a_card_are_masked(logged: Recon) -> None:
    recon = logged
    name, tag = BY_SHAPE["amex 4-6-5"], BY_SHAPE["zero-width joiners"]
    outputs = [
        recon("monitor", "add", name.text, "--every", "1h", "--grace", "1m", "--tag", tag.text),
        recon("ping", name.text, "--fail", "-m", "done"),
        recon("monitor", "show", name.text),
        recon("--json", "monitor", "list"),
        recon("watch", "--once"),
        recon("monitor", "pause", name.text, "--reason", f"card {tag.text}"),
        recon("config", "history"),
        recon("audit", "log"),
    ]
    assert outputs[0].code == 0 and outputs[1].code == 0, outputs[1].stderr
    assert outputs[2].code == 0, outputs[2].stderr
    [(stored,)] = recon.query("SELECT name FROM monitors")
    assert stored.endswith(name.digits[-4:])
    assert_nowhere(recon, outputs)


def test_log_correlation_ids_field_names_and_values_are_masked(tmp_path: Path) -> None:
    """The ids a command works on (run, alert, command) are on every record it logs: the log
    filter masks them with the message and every structured field, keys included."""
    card, other = BY_SHAPE["19 digits"], BY_SHAPE["dots"]
    log = tmp_path / "recon.log"
    logs.configure(level=None, log_file=log, file_level="DEBUG")
    try:
        token = logs._CORRELATION.set({"run_id": card.text, "alert_id": other.text})
        try:
            with logs.correlate(monitor=card.text):
                logs.event(
                    logging.getLogger("reconcile.test"),
                    logging.INFO,
                    "worked on %s",
                    path=f"/in/{card.text}.csv",
                    **{other.text: [card.text, {card.text: other.text}]},
                )
        finally:
            logs._CORRELATION.reset(token)
    finally:
        logs.configure(level=None, log_file=None)
    [record] = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["run_id"] == "***************" + card.digits[-4:]
    assert record["alert_id"] == "************" + other.digits[-4:]
    assert not leaks(log.read_text(), CARDS), record


_NAME_PARTS = st.sampled_from(
    [c.text for c in CARDS] + ["txn_id", "amount", "note", "a", "_2", " ", "-", "1234", "4111"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_NAME_PARTS, min_size=1, max_size=3).map("x".join), max_size=8))
def test_masked_column_names_hold_no_card_and_stay_apart(names: list[str]) -> None:
    names = list(dict.fromkeys(names))  # a file's columns are distinct
    shown = masked_names(names)
    assert len(shown) == len(names) and len(set(shown)) == len(shown)
    for name, new in zip(names, shown, strict=True):
        assert not leaks(new, CARDS)
        if redact.mask_pans(name) == name:
            assert new == name  # names without a card number are left alone
