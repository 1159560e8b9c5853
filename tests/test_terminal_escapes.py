"""Field values cannot drive the operator's terminal: control characters in a run log (ESC
sequences, OSC 8 hyperlinks, BEL, C1 controls, CR) are shown as escapes in every table."""

from __future__ import annotations

import json

import pytest

from .conftest import Recon

# Many input cases through the CLI: run in this process (tests/support.py), not one
# interpreter each; the real-process contract is kept by test_setup, test_sample_data and others.
pytestmark = pytest.mark.in_process

ESC = "\x1b[2J\x1b[31mRED\x1b]8;;http://127.0.0.1/evil\x07click\x1b]8;;\x07"
C1 = "\x9b1;1H"  # U+009B: a one-character CSI
CR = "\roverwritten"
NASTY = ESC + C1 + CR + "\u202eevil"
RAW = ("\x1b", "\x9b", "\x07", "\r", "\u202e")


def _clean(text: str) -> None:
    for char in RAW:
        assert char not in text, (char, text[:400])


def test_tables_show_control_characters_as_escapes(recon: Recon, write_file) -> None:  # type: ignore[no-untyped-def]
    def quoted(text: str) -> str:
        return '"' + text.replace('"', '""') + '"'

    log = write_file(
        "log.csv",
        "txn_id,amount,status,run_id,business_date,error_code,error_message\n"
        f"T1,10.00,FAILED,R1,2026-07-01,{quoted(NASTY)},{quoted(NASTY)}\n"
        f"{quoted('T2' + NASTY)},not-a-number,OK,R1,2026-07-01,,{quoted(NASTY)}\n"
        + "".join(f"T{n},1.00,OK,R1,2026-07-01,,fine\n" for n in range(3, 40)),
    )
    result, _ = recon.ingest(log, source="pay")
    assert result.code == 3, result.stderr  # T2 is quarantined
    listed = recon("failures", "--date", "2026-07-01")
    assert listed.code == 0, listed.stderr
    assert "T1" in listed.stdout and "\\x1b[2J" in listed.stdout
    _clean(listed.stdout)
    _clean(listed.stderr)
    quarantined = recon("quarantine")
    assert "amount is not a number" in quarantined.stdout
    _clean(quarantined.stdout)
    for command in (["runs"], ["audit", "log"]):
        shown = recon(*command)
        _clean(shown.stdout)
        _clean(shown.stderr)
    # JSON stays exact JSON: the same values come back, their controls escaped in the text.
    text = recon("--json", "failures", "--date", "2026-07-01").stdout
    _clean(text)
    assert NASTY in _values(json.loads(text))  # the error code, exactly as ingested
    text = recon("--json", "quarantine").stdout
    _clean(text)
    assert json.loads(text)["quarantine"][0]["line"] == 3


def _values(payload: object) -> list[object]:
    if isinstance(payload, dict):
        return [v for value in payload.values() for v in _values(value)]
    if isinstance(payload, list):
        return [v for value in payload for v in _values(value)]
    return [payload]
