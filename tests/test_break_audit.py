"""Break decisions are audited (issue 13, items 1, 7 and 8): every `recon breaks assign`,
`comment` and `resolve` is an audit event naming the OS user of the process (never `$USER`),
the register's manual state is checked against those events by `recon audit verify`, and the
list filters by assignee, acts in bulk, and shows the error text and the latest comment."""

from __future__ import annotations

import os
import pwd

import duckdb
import pytest

from .conftest import Recon

SOURCE = "payments-loader"
ME = pwd.getpwuid(os.getuid()).pw_name


def _store(recon: Recon, write_file) -> list[str]:  # type: ignore[no-untyped-def]
    manifest = write_file("m.csv", "txn_id,amount,run_id\nA,1.00,R1\nB,2.00,R1\nC,3.00,R1\n")
    log = write_file(
        "l.csv",
        "txn_id,amount,status,run_id,error_code,error_message\n"
        "A,1.00,OK,R1,,\nB,2.00,FAILED,R1,E42,card declined by issuer\n"
        "C,3.00,FAILED,R1,E17,timeout at gateway\n",
    )
    assert recon.ingest(manifest, source=SOURCE, kind="expected")[0].code == 0
    assert recon.ingest(log, source=SOURCE)[0].code == 0
    assert recon("reconcile").code == 3
    listed = recon("--json", "breaks").json()["breaks"]
    return [b["break_id"] for b in sorted(listed, key=lambda b: b["txn_id"])]


def _events(recon: Recon, action: str) -> list[dict]:  # type: ignore[type-arg]
    return recon("--json", "audit", "log", "--action", action).json()["events"]


def test_each_break_action_is_an_event_naming_the_real_user_not_USER(
    recon: Recon,
    write_file,  # type: ignore[no-untyped-def]
) -> None:
    """A real process, as the user ran it: `USER=cfo LOGNAME=cfo` changes nothing."""
    b, c = _store(recon, write_file)
    fake = {"USER": "cfo", "LOGNAME": "cfo", "USERNAME": "cfo"}
    assert recon("breaks", "assign", b, "alice", env=fake).code == 0
    assert recon("breaks", "comment", b, "ledger team looking", env=fake).code == 0
    assert recon("breaks", "resolve", b, "--reason", "posted by hand", env=fake).code == 0
    shown = recon("--json", "breaks", "show", b).json()
    assert shown["resolved_by"] == ME != "cfo"
    assert {note["commented_by"] for note in shown["comments"]} == {ME}
    events = _events(recon, "breaks")
    assert [(e["action"], e["object"], e["actor"]) for e in events] == [
        ("breaks.assign", b, ME),
        ("breaks.comment", b, ME),
        ("breaks.resolve", b, ME),
    ]
    assert events[0]["details"] == {"assignee": "alice"}
    assert events[2]["details"] == {"reason": "posted by hand"}
    assert recon("audit", "verify").code == 0
    assert c  # untouched


@pytest.mark.in_process
@pytest.mark.parametrize(
    "forgery",
    [
        "UPDATE breaks SET status = 'resolved', resolved_at = now(), resolved_by = 'cfo', "
        "resolution = 'written off' WHERE txn_id = 'C'",
        # a real resolution, its reason changed
        "UPDATE breaks SET resolution = 'approved by the board' WHERE txn_id = 'B'",
        # a person's resolution undone
        "UPDATE breaks SET status = 'open', resolved_at = NULL, resolved_by = NULL, "
        "resolution = NULL WHERE txn_id = 'B'",
        # passed off as reconciliation's own
        "UPDATE breaks SET status = 'resolved', resolved_at = now(), resolved_by = 'recon:auto',"
        " resolution = 'matched when reconciled again' WHERE txn_id = 'C'",
        "UPDATE breaks SET assignee = 'mallory' WHERE txn_id = 'B'",
        "INSERT INTO break_comments VALUES ('{c}', now(), 'alice', 'ok to write off')",
    ],
    ids=["resolved", "reason", "reopened", "auto", "assignee", "comment"],
)
def test_a_register_changed_with_sql_is_reported_by_verify(
    recon: Recon,
    write_file,  # type: ignore[no-untyped-def]
    forgery: str,
) -> None:
    b, c = _store(recon, write_file)
    assert recon("breaks", "assign", b, "alice").code == 0
    assert recon("breaks", "resolve", b, "--reason", "posted by hand").code == 0
    assert recon("audit", "verify").code == 0
    with duckdb.connect(str(recon.db)) as conn:
        conn.execute(forgery.format(c=c))
    done = recon("audit", "verify")
    assert done.code == 3, done.stderr
    assert "audit trail BROKEN" in done.stderr and "break BRK-" in done.stderr, done.stderr
    assert "the break register was changed without the audit trail" in done.stderr


@pytest.mark.in_process
def test_bulk_assign_assignee_filter_error_text_and_latest_comment(
    recon: Recon,
    write_file,  # type: ignore[no-untyped-def]
) -> None:
    b, c = _store(recon, write_file)
    assert recon("breaks", "assign", b, c, "--to", "bob").code == 0
    mine = recon("--json", "breaks", "--assignee", "bob").json()["breaks"]
    assert sorted(x["break_id"] for x in mine) == sorted([b, c])
    assert recon("breaks", "assign", c, "carol").code == 0  # the single form still works
    assert [
        x["break_id"] for x in recon("--json", "breaks", "--assignee", "bob").json()["breaks"]
    ] == [b]
    assert recon("--json", "breaks", "--assignee", "nobody").json()["breaks"] == []
    assert recon("breaks", "assign", b).code == 2  # no assignee: a usage error
    # All or nothing: an unknown id assigns none.
    unknown = recon("breaks", "assign", b, "BRK-000000000000", "--to", "dave")
    assert unknown.code == 1 and "BRK-000000000000" in unknown.stderr
    assert recon("--json", "breaks", "show", b).json()["assignee"] == "bob"

    assert recon("breaks", "comment", b, "ledger team looking").code == 0
    table = recon("breaks", "--assignee", "bob")
    assert table.code == 0
    assert "E42" in table.stdout and "card declined by issuer" in table.stdout
    assert "ledger team looking" in table.stdout
    [row] = recon("--json", "breaks", "--assignee", "bob").json()["breaks"]
    assert row["note"] == "ledger team looking"

    assert recon("breaks", "resolve", b, c, "--reason", "duplicate upload").code == 0
    assert recon("--json", "breaks").json()["breaks"] == []
    assert len(_events(recon, "breaks.resolve")) == 2
    assert recon("audit", "verify").code == 0


@pytest.mark.in_process
def test_the_list_shows_the_error_text_and_the_latest_comment(
    recon: Recon,
    write_file,  # type: ignore[no-untyped-def]
) -> None:
    b, _ = _store(recon, write_file)
    assert recon("breaks", "comment", b, "ledger team looking").code == 0
    table = recon("breaks")
    assert "E42" in table.stdout and "card declined by issuer" in table.stdout, table.stdout
    assert "E17" in table.stdout and "timeout at gateway" in table.stdout
    assert "ledger team looking" in table.stdout
    rows = {x["break_id"]: x for x in recon("--json", "breaks").json()["breaks"]}
    assert rows[b]["note"] == "ledger team looking"
    assert rows[b]["error_message"] == "card declined by issuer"


@pytest.mark.in_process
def test_decisions_made_before_break_actions_were_audited_are_kept_and_counted(
    recon: Recon,
    write_file,  # type: ignore[no-untyped-def]
) -> None:
    """A store from before this version: a resolution and a comment with no event. Migration
    011 keeps them as they were; verify accepts them and says they could not be checked."""
    b, _ = _store(recon, write_file)
    with duckdb.connect(str(recon.db)) as conn:
        conn.execute(
            "UPDATE breaks SET status = 'resolved', resolved_at = now(), resolved_by = 'alice', "
            "resolution = 'old decision' WHERE break_id = ?",
            [b],
        )
        conn.execute("INSERT INTO break_comments VALUES (?, now(), 'alice', 'resolved: old')", [b])
        conn.execute("DROP TABLE breaks_unaudited")
        conn.execute("DROP TABLE break_comments_unaudited")
        conn.execute("DELETE FROM schema_migrations WHERE name = '011_breaks_unaudited'")
    done = recon("audit", "verify")
    assert done.code == 0, done.stderr
    assert "2 break decision(s) were made before break actions were audited" in done.stderr
    with duckdb.connect(str(recon.db)) as conn:  # changed after the snapshot: found
        conn.execute("UPDATE breaks SET resolution = 'new story' WHERE break_id = ?", [b])
    assert recon("audit", "verify").code == 3
