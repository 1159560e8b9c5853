"""One refused file, three ways in: `recon ingest` (a real process), the HTTP transactions API
(a real `recon serve` on loopback, with a token) and a report attachment read from a real
Dovecot on loopback by `recon watch`. Each time it is the same file (`pay-R1.jsonl`, a run log
with no amount column), refused for the same reason, and each time the audit trail gets the
same event; only who brought it and by which way (`via`) differ. A file already ingested is
recorded as skipped on every path too."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from .conftest import HttpTarget, Recon
from .dovecot import Dovecot
from .test_imap_monitor import configure
from .test_serve import post, server

ROWS = [{"txn_id": "T1", "status": "OK"}]  # posted to run R1: no amount
REFUSED = json.dumps({**ROWS[0], "run_id": "R1"}).encode() + b"\n"  # the file the server writes
GOOD_ROWS = [{"txn_id": "T2", "amount": "2.00", "status": "OK"}]
GOOD = json.dumps({**GOOD_ROWS[0], "run_id": "R2"}).encode() + b"\n"
PROBLEM = "missing required column(s): amount; columns found: run_id, status, txn_id"


def deliver(dovecot: Dovecot, name: str, content: bytes, arrived_at: datetime) -> int:
    """A report email whose attachment is sent as text/csv under the file's own name."""
    message = EmailMessage()
    message["From"] = "reports@example.com"
    message["To"] = dovecot.user
    message["Subject"] = "Failed Transactions"
    message["Date"] = arrived_at.strftime("%a, %d %b %Y %H:%M:%S +0000")
    message.set_content("Please find the report attached.")
    message.add_attachment(content, maintype="text", subtype="csv", filename=name)
    return dovecot.append(message.as_bytes(policy=SMTP), arrived_at=arrived_at)


def test_the_same_refused_file_is_the_same_audit_event_from_cli_http_and_mail(
    recon: Recon, dovecot: Dovecot, http_target: HttpTarget, tmp_path: Path
) -> None:
    configure(recon, dovecot, http_target, dovecot.password)
    added = recon(
        "monitor", "add", "reports", "--cron", "0 7 * * *", "--grace", "1h", "--mailbox", "ops",
        "--source", "pay", env={"RECON_NOW": "2026-11-24T08:00:00Z"},
    )  # fmt: skip
    assert added.code == 0, added.stderr

    # (a) the command line: refused (exit 1), then a good file twice (the second is skipped).
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "pay-R1.jsonl").write_bytes(REFUSED)
    done = recon("ingest", "--source", "pay", folder / "pay-R1.jsonl")
    assert done.code == 1 and PROBLEM in done.stderr, done.stderr
    (folder / "pay-R2.jsonl").write_bytes(GOOD)
    assert recon("ingest", "--source", "pay", folder / "pay-R2.jsonl").code == 0
    assert recon("ingest", "--source", "pay", folder / "pay-R2.jsonl").code == 0

    # (b) the HTTP API: the same rows posted to run R1 are refused with a 400 saying why.
    token = recon("token", "create", "flow", "--source", "pay").stdout.strip()
    with server(recon) as base:
        api = f"{base}/api/v1/sources/pay/runs"
        status, answer = post(f"{api}/R1/transactions", json.dumps(ROWS).encode(), token)
        assert status == 400 and str(answer["error"]).startswith(PROBLEM), answer
        good = json.dumps(GOOD_ROWS).encode()
        assert post(f"{api}/R3/transactions", good, token)[1]["already_ingested"] is False
        assert post(f"{api}/R3/transactions", good, token)[1]["already_ingested"] is True

    # (c) the mailbox: the same file as a report attachment; then one report, sent twice.
    deliver(dovecot, "pay-R1.jsonl", REFUSED, datetime(2026, 11, 24, 8, 10, tzinfo=UTC))
    deliver(dovecot, "report.csv", b"txn_id,amount\nT9,1.00\n", datetime(2026, 11, 24, 8, 20, tzinfo=UTC))  # fmt: skip
    deliver(dovecot, "report.csv", b"txn_id,amount\nT9,1.00\n", datetime(2026, 11, 24, 8, 30, tzinfo=UTC))  # fmt: skip
    done = recon("watch", "--once")
    assert done.code == 0, done.stderr
    assert f"ops-uid1-pay-R1.jsonl: not ingested: {PROBLEM}" in done.stderr
    assert "ops-uid3-report.csv: report already ingested" in done.stderr

    events = recon("--json", "audit", "log", "--action", "ingest").json()["events"]
    refused = [e for e in events if e["outcome"] == "failure"]
    assert [e["origin"]["via"] for e in refused] == ["cli", "http", "mail"]
    assert [e["actor"] for e in refused] == [getpass.getuser(), "token:flow", "email:ops"]
    assert refused[2]["origin"]["mailbox"] == "ops"
    same = [{k: e[k] for k in ("action", "object", "outcome", "details")} for e in refused]
    assert (
        same
        == [
            {
                "action": "ingest",
                "object": "pay:pay-R1.jsonl",
                "outcome": "failure",
                "details": {"problem": PROBLEM},
            }
        ]
        * 3
    )
    skipped = [(e["origin"]["via"], e["object"]) for e in events if e["outcome"] == "skipped"]
    assert skipped == [("cli", "pay:pay-R2.jsonl"), ("http", "pay:pay-R3.jsonl"), ("mail", "pay:report.csv")]  # fmt: skip
    # Nothing of the refused file was stored, whichever way it came.
    assert recon.query("SELECT count(*) FROM ingested_files WHERE path LIKE '%pay-R1%'") == [(0,)]
