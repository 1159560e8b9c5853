"""The HTTP API's store sessions, in-process on a real DuckDB file: one `Session` per request
(opened alone in the server process), acting as the token once it is checked, at one `now`;
a busy store is a 503. And the audit trail's use cases (`reconcile.auditing`) on a session."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconcile import audit, auditing, store, tokens
from reconcile.errors import ConfigError
from reconcile.server import api
from reconcile.session import open_session, trail_for
from reconcile.settings import Settings, load_settings

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in [name for name in os.environ if name.startswith("RECON_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return load_settings(None, db=str(tmp_path / "recon.duckdb"), now=NOW.isoformat())


def _token(settings: Settings, name: str = "flow", source: str = "pay") -> str:
    with open_session(settings, trail_for(settings, "cli")) as session:
        return tokens.create(session.conn, name, source, now=session.now, user=session.actor)


def _events(settings: Settings, action: str) -> list[dict]:
    with store.connect(Path(settings.db)) as conn:
        return audit.events(conn, action=action)


def test_a_request_acts_as_its_token_from_its_client_at_one_now(settings: Settings) -> None:
    token = _token(settings)
    answer = api.complete_run(settings, "pay", "run-1", token, "192.0.2.7")
    assert isinstance(answer, api.JSONResponse) and answer.status_code == 200
    body = json.loads(answer.body)
    assert body["completed_at"] == NOW.isoformat()
    [event] = _events(settings, "run.complete")
    assert event["actor"] == "token:flow"
    assert event["object"] == "pay:run-1"
    assert event["origin"]["via"] == "http" and event["origin"]["client"] == "192.0.2.7"
    assert event["ts"] == NOW
    with store.connect(Path(settings.db)) as conn:
        assert conn.execute(
            "SELECT completed_by, completed_at FROM run_completions"
        ).fetchall() == [("token:flow", NOW)]
        [listed] = tokens.list_tokens(conn)
    assert listed["last_used_at"] == NOW  # the token's use, in the same session


def test_a_token_revoked_since_the_server_looked_is_refused_in_the_session(
    settings: Settings,
) -> None:
    token = _token(settings)
    with open_session(settings, trail_for(settings, "cli")) as session:
        tokens.revoke(session.conn, "flow", now=session.now)
    answer = api.complete_run(settings, "pay", "run-1", token, "192.0.2.7")
    assert isinstance(answer, api.Refusal) and answer.status == 401
    assert _events(settings, "run.complete") == []


def test_another_sources_token_is_refused_with_403(settings: Settings) -> None:
    token = _token(settings, source="other")
    answer = api.complete_run(settings, "pay", "run-1", token, None)
    assert isinstance(answer, api.Refusal) and answer.status == 403


def test_a_store_busy_in_this_server_is_a_503(settings: Settings) -> None:
    token = _token(settings)
    busy = settings.model_copy(update={"lock_timeout": 0.2})
    with api.exclusive(1.0):  # another request holds the server's one session
        answer = api.complete_run(busy, "pay", "run-1", token, None)
    assert isinstance(answer, api.JSONResponse) and answer.status_code == 503
    assert json.loads(answer.body) == {"error": api.BUSY}


def test_refusals_are_summed_up_in_one_anonymous_event(settings: Settings) -> None:
    summary = {"refusals": 3, "since": None, "until": None, "clients": []}
    api.record_refusals(settings, summary, 1.0)
    [event] = _events(settings, "auth.failure")
    assert (event["actor"], event["outcome"], event["origin"]["via"]) == (
        "anonymous",
        "denied",
        "http",
    )
    assert event["details"]["refusals"] == 3


def test_verifying_and_reading_the_trail_are_recorded_at_the_sessions_now(
    settings: Settings,
) -> None:
    _token(settings)
    with open_session(settings, trail_for(settings, "cli")) as session:
        verdict = auditing.verify_trail(session)
        head = auditing.record_head(session)
        rows = auditing.read_log(session, action="token")
        with pytest.raises(ConfigError, match="no audit key is configured"):
            auditing.start_key(session)  # there is nothing to key it with
    assert verdict.intact and verdict.checked >= 1
    assert head["ts"] == NOW and len(head["hash"]) == 64
    assert [row["action"] for row in rows] == ["token.create"]
    actions = [event["action"] for event in _events(settings, "audit")]
    assert actions == ["audit.verify", "audit.head", "audit.log"]
