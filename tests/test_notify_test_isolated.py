"""`recon notify test` sends its own alert and nothing else: a real down alert waiting in the
outbox keeps its turn (not claimed, no attempt charged, so no backoff and no escalation), and
the next `recon watch --once` delivers it to a real HTTP receiver on loopback."""

from __future__ import annotations

from datetime import datetime

from reconcile.session import open_session, trail_for
from reconcile.settings import load_settings
from reconcile.watch import alerts, notify

from .conftest import HttpTarget, Recon

AUDIT_KEY = "test-audit-key-not-a-secret"  # the `recon` fixture's, so one chain is kept


def test_notify_test_leaves_a_pending_down_alert_to_the_next_tick(
    recon: Recon, http_target: HttpTarget
) -> None:
    config = recon.write_config(f'[notify.targets.oncall]\nurl = "{http_target.url}"\n')
    added = recon(
        "monitor", "add", "load", "--every", "1h", "--grace", "5m",
        env={"RECON_NOW": "2026-07-01T00:00:00Z"},
    )  # fmt: skip
    assert added.code == 0, added.stderr
    # The monitor goes down: its alert is queued, as a tick queues it before sending anything.
    settings = load_settings(config, db=str(recon.db), audit_key=AUDIT_KEY)
    down_at = datetime.fromisoformat("2026-07-01T01:10:00+00:00")
    with open_session(settings, trail_for(settings, "cli"), now=down_at) as session:
        queued = alerts.evaluate(session.conn, session.now, notify.targets_of(settings))
    [(down_id, down_targets)] = [(a["id"], a["targets"]) for a in queued.alerts]
    assert down_targets == ["oncall"]

    tested = recon("--json", "notify", "test", env={"RECON_NOW": "2026-07-01T01:11:00Z"})
    assert tested.code == 0, tested.stderr
    test_id = tested.json()["alert_id"]
    assert [m["title"] for m in http_target.received] == [f"[recon] test alert [{test_id}]"]
    deliveries = recon.query(
        "SELECT alert_id, status, attempts, claimed_until FROM deliveries ORDER BY alert_id"
    )
    assert deliveries == [(down_id, "pending", 0, None), (test_id, "delivered", 1, None)]

    ticked = recon("--json", "watch", "--once", env={"RECON_NOW": "2026-07-01T01:12:00Z"})
    assert ticked.code == 3, ticked.stderr  # the monitor is down
    assert [(a["id"], a["status"], a["attempts"]) for a in ticked.json()["alerts"]] == [
        (down_id, "delivered", 1)
    ]
    assert [m["title"] for m in http_target.answered_ok] == [
        f"[recon] test alert [{test_id}]",
        f"[recon] DOWN: load [{down_id}]",
    ]
