"""The watchdog's use cases called in-process with a session on a real DuckDB file: adding a
monitor (its rules, defaults and warnings), pause and resume, revert, one watch tick, and the
test alert. The CLI's contract for the same is kept by the subprocess tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconcile import versions
from reconcile.session import Session, open_session, trail_for
from reconcile.settings import Settings, load_settings
from reconcile.watch import alerts, configure, monitors, notify, tick

from .conftest import HttpTarget

# apprise (sending in-process here) imports the standard library's deprecated imghdr.
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

START = datetime.fromisoformat("2026-07-01T00:00:00+00:00")
Opener = Callable[[datetime], Callable[[], AbstractContextManager[Session]]]


def _settings(tmp_path: Path, toml: str = "") -> Settings:
    config = tmp_path / "recon.toml"
    config.write_text(toml, encoding="utf-8")
    return load_settings(config, db=str(tmp_path / "recon.duckdb"), audit_key="k" * 16)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return _settings(tmp_path)


@pytest.fixture
def at(settings: Settings) -> Opener:
    """Sessions of the store at a given moment."""
    trail = trail_for(settings, "cli")

    def opener(now: datetime) -> Callable[[], AbstractContextManager[Session]]:
        return lambda: open_session(settings, trail, now=now)

    return opener


@pytest.fixture
def session(at: Opener) -> Iterator[Session]:
    with at(START)() as opened:
        yield opened


def spec(**given: Any) -> monitors.Spec:
    return monitors.Spec(**{"cron": None, "tz": "UTC", "every_seconds": 3600,
                            "grace_seconds": 300, "hears": "", **given})  # fmt: skip


@pytest.mark.parametrize(
    ("given", "rule"),
    [
        ({"cron": "0 7 * * *"}, "schedule"),  # a cron and a period
        ({"every_seconds": None}, "schedule"),  # neither
        ({"every_seconds": 0}, "every"),
        ({"hears": "ping", "mailbox": "ops"}, "mail_options"),
        ({"hears": "run", "source": "pay", "sender": "a@b.c"}, "mail_options"),
        ({"hears": "email"}, "email_mailbox"),
        ({"hears": "run"}, "run_source"),
        ({"max_failure_rate_percent": 5.0}, "checks"),  # hears ping: nothing arrives to judge
        ({"hears": "email", "mailbox": "ops", "min_transactions": 1}, "checks"),
        ({"mailbox": "nowhere"}, "mailbox"),  # hears email by default: no such mailbox
        ({"hears": "bark"}, "hears"),
    ],
)
def test_add_refuses_what_breaks_a_rule_and_stores_nothing(
    session: Session, given: dict[str, Any], rule: str
) -> None:
    with pytest.raises(monitors.InvalidMonitor) as refused:
        configure.add(session, "m", spec(**given))
    assert refused.value.rule == rule
    assert monitors.list_monitors(session.conn, session.now) == []


def test_add_defaults_what_a_monitor_hears_and_checks(session: Session) -> None:
    ping = configure.add(session, "ping", spec())
    run = configure.add(session, "run", spec(source="pay", early_seconds=3600))
    assert (ping.spec.hears, ping.spec.min_transactions) == ("ping", None)
    assert (run.spec.hears, run.spec.min_transactions) == ("run", 1)
    stored = monitors.config(session.conn, "run")
    assert (stored["hears"], stored["source"], stored["min_transactions"]) == ("run", "pay", 1)
    assert [d["utc"] for d in ping.next_due] == [START + timedelta(hours=h) for h in (1, 2, 3)]
    assert ping.warning is None and run.warning is None


def test_add_warns_about_minute_schedules_and_early_arrivals(session: Session) -> None:
    minutes = configure.add(
        session, "a", spec(every_seconds=None, cron="* 9 * * *", grace_seconds=3600)
    )
    assert minutes.warning and minutes.warning.rule == "frequency"
    assert "every minute from 09:00 to 09:59" in minutes.warning.text
    runs = configure.add(session, "b", spec(source="pay"))
    assert runs.warning and runs.warning.rule == "early"


def test_a_name_taken_and_a_schedule_that_never_fires_are_refused(session: Session) -> None:
    configure.add(session, "m", spec())
    with pytest.raises(monitors.MonitorError, match="exists"):
        configure.add(session, "m", spec())
    with pytest.raises(Exception, match="never fires"):
        configure.add(session, "n", spec(every_seconds=None, cron="0 0 31 2 *"))


def test_pause_silences_and_resume_owes_only_the_next_slot(at: Opener) -> None:
    with at(START)() as session:
        configure.add(session, "m", spec(every_seconds=None, cron="0 12 * * *"))
    with at(START + timedelta(hours=1))() as session:
        configure.pause(session, "m", until=None, reason="maintenance")
    with at(START + timedelta(days=1, hours=1))() as session:
        assert monitors.describe(session.conn, "m", session.now)["status"] == "paused"
        configure.resume(session, "m")
        shown = monitors.describe(session.conn, "m", session.now)
    assert (shown["status"], shown["next_due"]) == ("new", START + timedelta(days=1, hours=12))


def test_revert_puts_a_monitor_back_and_records_it_as_a_version(at: Opener) -> None:
    with at(START)() as session:
        configure.add(session, "m", spec(), reason="first")
        configure.remove(session, "m", reason="retired")
        configure.add(session, "m", spec(grace_seconds=1800, tags=("ops",)))
        first, removed, third = (v["version"] for v in versions.history(session.conn, "monitor:m"))
        back = configure.revert(session, "monitor:m", first, reason="too lax")
        assert back.applied and back.recorded_as
        assert monitors.config(session.conn, "m")["grace_seconds"] == 300
        configure.revert(session, "monitor:m", removed, reason=None)
        assert not monitors.exists(session.conn, "m")
        configure.revert(session, "monitor:m", third, reason=None)
        assert monitors.config(session.conn, "m")["tags"] == ["ops"]
        with pytest.raises(configure.NotThisObject):
            configure.revert(session, "monitor:other", first, reason=None)


def test_revert_of_an_object_of_the_settings_file_is_not_applied(tmp_path: Path) -> None:
    settings = _settings(tmp_path, '[sources.pay]\ntimezone = "Europe/London"\n')
    with open_session(settings, trail_for(settings, "cli"), now=START) as session:
        [version] = [
            v["version"] for v in versions.history(session.conn) if v["object"] == "source:pay"
        ]
        done = configure.revert(session, "source:pay", version, reason=None)
    assert not done.applied and done.value and done.value["timezone"] == "Europe/London"


def test_one_tick_records_the_change_and_delivers_its_alert(
    tmp_path: Path, http_target: HttpTarget
) -> None:
    settings = _settings(tmp_path, f'[notify.targets.oncall]\nurl = "{http_target.url}"\n')
    trail = trail_for(settings, "cli")
    with open_session(settings, trail, now=START) as session:
        configure.add(session, "load", spec())
    later = START + timedelta(hours=1, minutes=10)
    report = tick.run(lambda: open_session(settings, trail, now=later))
    assert report.transitions == [{"monitor": "load", "from": "new", "to": "down", "at": later}]
    assert [(d["target"], d["status"], d["attempts"]) for d in report.deliveries] == [
        ("oncall", "delivered", 1)
    ]
    assert report.down == 1 and report.needs_attention and not report.unrouted
    assert [m["title"].split(" [")[0] for m in http_target.answered_ok] == ["[recon] DOWN: load"]
    again = tick.run(lambda: open_session(settings, trail, now=later + timedelta(minutes=1)))
    assert (again.transitions, again.deliveries, again.down) == ([], [], 1)


def test_an_alert_for_no_target_and_a_dead_man_that_cannot_be_told_are_reported(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, 'watchdog_ping_url = "http://127.0.0.1:9/ping"\n')
    trail = trail_for(settings, "cli")
    with open_session(settings, trail, now=START) as session:
        configure.add(session, "load", spec())
    report = tick.run(lambda: open_session(settings, trail, now=START + timedelta(hours=2)))
    assert [(a["monitor"], a["kind"]) for a in report.unrouted] == [("load", "down")]
    assert report.deliveries == [] and report.dead_man_error == "URLError"


def test_a_test_alert_claims_only_its_own_delivery(tmp_path: Path, http_target: HttpTarget) -> None:
    settings = _settings(tmp_path, f'[notify.targets.oncall]\nurl = "{http_target.url}"\n')
    trail = trail_for(settings, "cli")
    with open_session(settings, trail, now=START) as session:
        configure.add(session, "load", spec())
    down_at = START + timedelta(hours=1, minutes=10)
    with open_session(settings, trail, now=down_at) as session:
        [down] = alerts.evaluate(session.conn, down_at, notify.targets_of(settings)).alerts
    sent = notify.send_test_alert(lambda: open_session(settings, trail, now=down_at), None)
    assert sent.targets == ["oncall"] and not sent.failed
    assert [(c.alert_id, c.target) for c, _ in sent.outcomes] == [(sent.alert_id, "oncall")]
    with open_session(settings, trail, now=down_at) as session:
        waiting = [
            (row["alert_id"], row["status"], row["attempts"])
            for row in notify.history(session.conn)
        ]
    assert sorted(waiting) == sorted([(down["id"], "pending", 0), (sent.alert_id, "delivered", 1)])
    (tmp_path / "empty").mkdir()
    without = _settings(tmp_path / "empty")
    with pytest.raises(notify.NoTargets):
        notify.send_test_alert(lambda: open_session(without, trail, now=down_at), None)
