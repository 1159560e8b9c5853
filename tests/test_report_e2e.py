"""The daily report end to end, on the sample story, through real processes: `recon report
send` builds it from the store and apprise's mailto:// delivers it to a real SMTP server on
loopback (with a login), and the test reads the message as a mail client would.

What operations staff check in the message: the day's counts (as `recon reconcile` has them)
in both the HTML and the plain-text part; the attached failed list, byte for byte what `recon
failures` writes for the same scope (CSV and XLSX); a chart of the stated size; no full card
number and no configured secret anywhere. Then what on-call relies on: sending again sends
nothing, and a `recon report send` killed mid-send delivers the report once when run again.
"""

from __future__ import annotations

import csv
import email
import email.policy
import html
import io
import json
import re
import shutil
import signal
import struct
import subprocess
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from reconcile import redact

from .conftest import SAMPLE, Recon, Result
from .report_send_support import SMTP_PASSWORD, Smtp, smtp
from .support import RECON, ingest_sample_story, recon_env, start_recon

__all__ = ["smtp"]  # the fixture

SOURCE = "payments-loader"
EXPECTED = json.loads((SAMPLE / "EXPECTED.json").read_text())
CARD_DAY = "2026-11-04"  # the run whose log carries raw card numbers and CVVs
NOW = datetime.fromisoformat("2026-11-16T08:00:00+00:00")
PAN_KEY = "test-only-pan-key-5d1e"


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample story ingested once (not reconciled: the report reconciles what it reads)."""
    workdir = tmp_path_factory.mktemp("story")
    recon = _recon(workdir)
    ingest_sample_story(recon, SAMPLE / SOURCE, SOURCE)
    return workdir / "recon.duckdb"


def _recon(workdir: Path, **extra: str) -> Recon:
    db = workdir / "recon.duckdb"
    env = recon_env(db) | {
        "RECON_CONFIG": str(workdir / "recon.toml"),
        "RECON_NOW": NOW.isoformat(),
        "RECON_PAN_KEY": PAN_KEY,
        **extra,
    }
    if not (workdir / "recon.toml").exists():
        (workdir / "recon.toml").write_text((SAMPLE / "recon.toml").read_text())
    return Recon(workdir=workdir, db=db, env=env)


@pytest.fixture
def recon(story: Path, tmp_path: Path, smtp: Smtp) -> Recon:
    """A copy of the story's store, with one email target (its URL holds a password)."""
    shutil.copy(story, tmp_path / "recon.duckdb")
    (tmp_path / "recon.toml").write_text(
        (SAMPLE / "recon.toml").read_text()
        + f'\n[notify.targets.operations]\nurl = "{smtp.url()}"\ntags = ["operations"]\n'
    )
    return _recon(tmp_path)


def _send(recon: Recon, *extra: str, now: datetime = NOW) -> Result:
    return recon(
        "--json",
        "report",
        "send",
        "--date",
        CARD_DAY,
        "--tag",
        "operations",
        *extra,
        env={"RECON_NOW": now.isoformat()},
    )


def _parts(raw: bytes) -> tuple[EmailMessage, str, str, dict[str, bytes]]:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    body_html = message.get_body(("html",))
    body_text = message.get_body(("plain",))
    assert body_html is not None and body_text is not None, "HTML and plain-text parts"
    files = {
        str(part.get_filename()): part.get_payload(decode=True)
        for part in message.iter_attachments()
    }
    return message, str(body_html.get_content()), str(body_text.get_content()), files


def _flat(text: str) -> str:
    """HTML as a reader sees it: tags gone, entities decoded, spaces collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text))).strip()


def _png_size(content: bytes) -> tuple[int, int]:
    assert content[:8] == b"\x89PNG\r\n\x1a\n" and content[12:16] == b"IHDR", "a PNG image"
    width, height = struct.unpack(">II", content[16:24])
    return width, height


def test_the_report_arrives_by_email_with_the_days_counts_and_the_lists_exact_files(
    recon: Recon, smtp: Smtp, tmp_path: Path
) -> None:
    sent = _send(recon)
    assert sent.code == 0, sent.stderr
    assert [t["outcome"] for t in sent.json()["targets"]] == ["delivered"]
    assert len(smtp.accepted) == 1
    message, body_html, body_text, files = _parts(smtp.accepted[0])

    # The day's counts, as `recon reconcile` states them, in both parts.
    [day] = recon("--json", "reconcile", "--date", CARD_DAY).json()["days"]
    runs = [r for r in recon("--json", "runs").json()["runs"] if r["business_date"] == CARD_DAY]
    row = " ".join(
        str(value)
        for value in (
            SOURCE,
            day["status"],
            f"{len(day['run_ids'])} ({', '.join(day['run_ids'])})",
            sum(r["rows_loaded"] for r in runs),
            day["failed"],
            day["missing"],
            day["duplicated"],
            day["unexpected"],
            day["amount_mismatch"],
        )
    )
    assert day["failed"] > 0
    assert row in _flat(body_html), _flat(body_html)[:600]
    assert f"failed {day['failed']}, missing {day['missing']}" in body_text
    assert f"rows loaded: {sum(r['rows_loaded'] for r in runs)}" in body_text
    assert f"{day['failed']} failed" in str(message["subject"])

    # The failed list of the day: its ids in the body, its files as `recon failures` writes.
    listed = recon("--json", "failures", "--date", CARD_DAY).json()
    ids = [r["txn_id"] for r in listed["failures"]] if "failures" in listed else []
    csv_out = subprocess.run(  # bytes as written: the CSV's own line ends (CRLF) kept
        [*RECON, "failures", "--date", CARD_DAY, "--format", "csv"],
        cwd=recon.workdir,
        env=recon.env,
        capture_output=True,
        check=True,
    )
    rows = list(csv.DictReader(io.StringIO(csv_out.stdout.decode("utf-8"), newline="")))
    assert len(rows) == day["failed"]
    ids = ids or [r["txn_id"] for r in rows]
    for txn_id in ids:
        assert txn_id in body_html and txn_id in body_text
    assert files[f"failed-transactions-{CARD_DAY}.csv"] == csv_out.stdout
    workbook = tmp_path / "failures.xlsx"
    xlsx_out = recon("failures", "--date", CARD_DAY, "--format", "xlsx", "-o", workbook)
    assert xlsx_out.code in (0, 3), xlsx_out.stderr
    assert files[f"failed-transactions-{CARD_DAY}.xlsx"] == workbook.read_bytes()
    assert _xlsx_rows(files[f"failed-transactions-{CARD_DAY}.xlsx"]) == [
        list(rows[0].keys()),
        *[list(r.values()) for r in rows],
    ]

    # The chart: a PNG of the size the contract states.
    assert _png_size(files[f"failed-transactions-{CARD_DAY}-chart.png"]) == (1200, 600)

    # Recorded: one send, its files' SHA-256 as delivered.
    [(attachments,)] = recon.query(
        "SELECT attachments FROM report_deliveries WHERE delivery = 'delivered'"
    )
    import hashlib

    assert {a["name"]: a["sha256"] for a in json.loads(attachments)} == {
        name: hashlib.sha256(content).hexdigest() for name, content in files.items()
    }

    # Nothing sensitive: no full card number of the story, no Luhn-valid number at all, no
    # configured secret (the SMTP password, the PAN key, the audit key).
    raw = smtp.accepted[0]
    decoded = "\n".join(
        [body_html, body_text, *(c.decode("utf-8", "replace") for c in files.values())]
    )
    everything = raw.decode("utf-8", "replace") + "\n" + decoded
    for pan in EXPECTED["pans"]:
        assert pan not in everything and pan not in _digits_only(everything)
    assert redact.mask_pans(decoded) == decoded, "a card-number-like value reached the report"
    for secret in (SMTP_PASSWORD, PAN_KEY, recon.env["RECON_AUDIT_KEY"]):
        assert secret not in everything
    assert SMTP_PASSWORD not in sent.stdout + sent.stderr


def _digits_only(text: str) -> str:
    return re.sub(r"[ -]", "", text)


def _xlsx_rows(content: bytes) -> list[list[str]]:
    """The workbook's cells as the CSV writes them (amounts with two decimals, dates ISO)."""
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(content), read_only=True).worksheets[0]
    out = []
    for values in sheet.iter_rows(values_only=True):
        out.append([_cell(v) for v in values])
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def test_a_second_send_sends_nothing_and_says_when_it_went(recon: Recon, smtp: Smtp) -> None:
    assert _send(recon).code == 0
    again = _send(recon, now=NOW + timedelta(hours=1))
    assert again.code == 0, again.stderr
    [target] = again.json()["targets"]
    assert target["outcome"] == "already_sent" and target["delivered_at"].startswith("2026-11-16")
    assert len(smtp.accepted) == 1
    human = recon("report", "send", "--date", CARD_DAY, "--tag", "operations")
    assert human.code == 0 and "already sent" in human.stderr and "--force" in human.stderr
    assert len(smtp.accepted) == 1


def test_a_report_send_killed_mid_send_delivers_once_when_run_again(
    recon: Recon, smtp: Smtp
) -> None:
    smtp.stall_first = True
    stuck = start_recon(
        ["report", "send", "--date", CARD_DAY, "--tag", "operations"],
        cwd=recon.workdir,
        env=recon.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert smtp.stalled.wait(60), "the send never reached DATA"
        stuck.send_signal(signal.SIGKILL)
        stuck.wait(30)
    finally:
        if stuck.poll() is None:
            stuck.kill()
    smtp.release.set()
    assert recon.query("SELECT status FROM deliveries") == [("claimed",)]

    early = _send(recon, now=NOW + timedelta(minutes=1))  # the dead sender's lease holds
    assert early.code == 1 and early.json()["targets"][0]["outcome"] == "queued"
    assert not smtp.accepted
    later = _send(recon, now=NOW + timedelta(minutes=3))  # run out: sent, by the same alert
    assert later.code == 0, later.stderr
    assert later.json()["targets"][0]["outcome"] == "delivered"
    assert later.json()["targets"][0]["alert_id"] == early.json()["targets"][0]["alert_id"]
    assert _send(recon, now=NOW + timedelta(minutes=30)).json()["targets"][0]["outcome"] == (
        "already_sent"
    )
    assert len(smtp.accepted) == 1
    _, _, _, files = _parts(smtp.accepted[0])
    assert len(files) == 3
    assert recon.query("SELECT count(*) FROM report_sends") == [(1,)]


def test_a_store_never_reconciled_reports_its_trend_and_earlier_open_breaks(
    recon: Recon,
) -> None:
    """The report reconciles the days it reads, so it says what `recon breaks` says."""
    built = recon("--json", "report", "preview", "--date", CARD_DAY)
    assert built.code == 0, built.stderr
    facts = built.json()["facts"]
    [source] = facts["sources"]
    assert source["previous"]["business_date"] == "2026-11-03"
    earlier = recon(
        "--json", "breaks", "--status", "open", "--until", "2026-11-03", "--source", SOURCE
    ).json()["breaks"]
    assert facts["open_earlier"]["total"] == len(earlier) > 0
