"""The shipped `jobs/` files, run as written: the crontab's lines are parsed (schedules checked
with croniter, `%` as cron reads it, its variables set as cron sets them) and the watchdog's
line runs through `/bin/sh` with `/srv/recon` moved to a temporary folder; the systemd units'
ExecStart runs with their Environment=, and `systemd-analyze verify` checks the units. With
another monitor down, the watchdog's own monitor stays up: `recon watch` exits 3 for a finding,
and `recon run --ok-exit 3` records that as a success."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from .conftest import HttpTarget
from .support import ROOT, Result, ingest_sample_story, recon_env, run_recon

JOBS = ROOT / "jobs"
SAMPLE_SOURCE = "payments-loader"
SERVER_ROOT = "/srv/recon"  # where the job files say recon is installed
MONDAY = "2026-11-23"


@dataclass
class Crontab:
    variables: dict[str, str] = field(default_factory=dict)
    lines: list[tuple[str, str]] = field(default_factory=list)  # (schedule, command)
    setup: list[list[str]] = field(default_factory=list)  # `recon monitor add ...` in comments


def cron_command(text: str) -> str:
    """The command as cron runs it: an unescaped % ends it (the rest is its input), \\% is %."""
    found = re.search(r"(?<!\\)%", text)
    return (text[: found.start()] if found else text).replace("\\%", "%")


def read_crontab(path: Path) -> Crontab:
    tab = Crontab()
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#"):
            found = re.match(r"#\s+(recon monitor add .*)", line)
            if found:
                tab.setup.append(shlex.split(found.group(1))[1:])
            continue
        if not line:
            continue
        assigned = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", line)
        if assigned:
            tab.variables[assigned.group(1)] = assigned.group(2)
            continue
        fields = line.split(None, 5)
        assert len(fields) == 6, f"not a crontab line: {line!r}"
        schedule = " ".join(fields[:5])
        assert croniter.is_valid(schedule), f"bad schedule {schedule!r} in {path.name}"
        tab.lines.append((schedule, cron_command(fields[5])))
    return tab


def install(tmp_path: Path) -> Path:
    """A stand-in for /srv/recon: `.venv/bin/recon` runs this checkout's recon."""
    home = tmp_path / "srv" / "recon"
    (home / ".venv" / "bin").mkdir(parents=True)
    recon = home / ".venv" / "bin" / "recon"
    recon.write_text(
        f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(ROOT))} exec {shlex.quote(sys.executable)} "
        '-m reconcile "$@"\n'
    )
    recon.chmod(0o755)
    return home


def moved(text: str, home: Path) -> str:
    return text.replace(SERVER_ROOT, str(home))


def base_env(home: Path, now: str) -> dict[str, str]:
    """What cron or systemd gives a job (a bare PATH, HOME), plus this test's clock and key."""
    test_env = recon_env(home / "recon.duckdb", RECON_NOW=now)
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LOGNAME": "recon",
        "RECON_NOW": now,
        "RECON_AUDIT_KEY": test_env["RECON_AUDIT_KEY"],
    }


def recon_at(home: Path, now: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = recon_env(home / "recon.duckdb", RECON_NOW=now, RECON_CONFIG=str(home / "recon.toml"))
    result = run_recon(args, env=env, cwd=home)
    return subprocess.CompletedProcess(args, result.code, result.stdout, result.stderr)


def status(home: Path, now: str, name: str) -> str:
    shown = recon_at(home, now, "--json", "monitor", "show", name)
    assert shown.returncode in (0, 3), shown.stderr
    return str(json.loads(shown.stdout)["status"])


def prepare(tmp_path: Path, http_target: HttpTarget) -> tuple[Path, Crontab]:
    """The crontab's monitors created as its comment says: the nightly ingest's on Monday
    before its 02:15 slot (it never runs, so it goes down after its 1h grace), the watchdog's
    just before the watchdog job starts ticking."""
    home = install(tmp_path)
    (home / "recon.toml").write_text(f'[notify.targets.oncall]\nurl = "{http_target.url}"\n')
    tab = read_crontab(JOBS / "recon.cron")
    assert [args[2] for args in tab.setup] == ["watchdog", "nightly-ingest", "daily-reconcile"]
    for args in tab.setup:
        when = f"{MONDAY}T03:18:00Z" if args[2] == "watchdog" else f"{MONDAY}T02:00:00Z"
        added = recon_at(home, when, *args)
        assert added.returncode == 0, added.stderr
    return home, tab


def test_the_crontab_parses_and_its_watchdog_line_stays_up_while_another_monitor_is_down(
    tmp_path: Path, http_target: HttpTarget
) -> None:
    home, tab = prepare(tmp_path, http_target)
    assert {k: moved(v, home) for k, v in tab.variables.items()}["RECON_DB"] == str(
        home / "recon.duckdb"
    )
    [watchdog] = [command for _, command in tab.lines if "watch --once" in command]
    for minute in ("03:20", "03:21", "03:22"):
        now = f"{MONDAY}T{minute}:00Z"
        env = {**base_env(home, now), **{k: moved(v, home) for k, v in tab.variables.items()}}
        ran = subprocess.run(
            [tab.variables.get("SHELL", "/bin/sh"), "-c", moved(watchdog, home)],
            env=env,
            cwd=env["HOME"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "error" not in ran.stderr, ran.stderr
    after = f"{MONDAY}T03:22:30Z"
    assert status(home, after, "nightly-ingest") == "down"
    assert status(home, after, "watchdog") == "up"
    titles = [m["title"] for m in http_target.received]
    assert any("DOWN: nightly-ingest" in t for t in titles), titles
    assert not any("watchdog" in t for t in titles), titles


def read_unit(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_watch_service_runs_as_written_and_succeeds_while_another_monitor_is_down(
    tmp_path: Path, http_target: HttpTarget
) -> None:
    home, _ = prepare(tmp_path, http_target)
    unit = read_unit(JOBS / "recon-watch.service")
    ok = {0, *(int(code) for v in unit.get("SuccessExitStatus", []) for code in v.split())}
    for minute in ("03:20", "03:21"):
        now = f"{MONDAY}T{minute}:00Z"
        env = base_env(home, now)
        for assignments in unit["Environment"]:
            env.update(item.split("=", 1) for item in shlex.split(moved(assignments, home)))
        [command] = unit["ExecStart"]
        ran = subprocess.run(
            shlex.split(moved(command, home)),
            env=env,
            cwd=moved(unit["WorkingDirectory"][0], home),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ran.returncode in ok, ran.stderr  # systemd would mark the unit failed
    after = f"{MONDAY}T03:21:30Z"
    assert status(home, after, "nightly-ingest") == "down"
    assert status(home, after, "watchdog") == "up"


@pytest.mark.parametrize("name", ["recon-watch", "recon-reconcile", "recon-report"])
def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path: Path, name: str) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    home = install(tmp_path)
    units = []
    for suffix in (".service", ".timer"):
        copy = tmp_path / f"{name}{suffix}"
        copy.write_text(moved((JOBS / f"{name}{suffix}").read_text(), home))
        units.append(str(copy))
    checked = subprocess.run(
        [analyze, "verify", *units],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
        timeout=60,
    )
    complaints = [line for line in checked.stderr.splitlines() if name in line]
    assert checked.returncode == 0 and not complaints, checked.stderr


def test_every_recon_job_counts_exit_3_as_a_finding() -> None:
    """Exit 3 is "done, with findings" for every recon command: each job wrapped in `recon run`
    says so, or its monitor would go down whenever there is something to look at."""
    commands = [command for _, command in read_crontab(JOBS / "recon.cron").lines]
    for path in JOBS.glob("*.service"):
        commands += read_unit(path)["ExecStart"]
    wrapped = [c for c in commands if "recon run " in c]
    assert len(wrapped) == 5
    for command in wrapped:
        assert "recon run --ok-exit 3 " in command, command


# --- the daily report: a crontab line and a systemd service-and-timer pair ----------------------

REPORT_SEND = ["report", "send", "--date", "last", "--tag", "operations"]


def report_schedules(path: Path) -> list[list[str]]:
    """The `recon report schedule ...` commands a job file's comments say to run once."""
    found = re.findall(r"^#\s+recon (report schedule .*)$", path.read_text(), re.MULTILINE)
    return [shlex.split(line) for line in found]


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def recon_args(command: str) -> list[str]:
    """The arguments a job gives recon (after the last `recon` executable it names)."""
    words = shlex.split(command)
    last = max(i for i, word in enumerate(words) if word.endswith("/recon"))
    return words[last + 1 :]


def report_jobs() -> tuple[str, str, str]:
    """The crontab's report line (schedule, command) and the service's ExecStart."""
    tab = read_crontab(JOBS / "recon.cron")
    [(schedule, command)] = [(s, c) for s, c in tab.lines if "report send" in c]
    [service] = read_unit(JOBS / "recon-report.service")["ExecStart"]
    return schedule, command, service


def test_the_report_jobs_send_the_last_days_report_when_its_monitor_expects_it() -> None:
    """Both jobs run `recon report send --date last --tag operations`, unwrapped (the report's
    monitor hears its delivery), at the time the report's monitor is scheduled for; the timer
    elapses exactly when that monitor's cron is due, daylight saving time included."""
    schedule, command, service = report_jobs()
    assert recon_args(command) == REPORT_SEND
    assert recon_args(service) == REPORT_SEND
    assert "recon run" not in command and "recon run" not in service
    [setup] = report_schedules(JOBS / "recon.cron")
    assert report_schedules(JOBS / "recon-report.service") == [setup]
    assert setup[:2] == ["report", "schedule"]
    assert option(setup, "--cron") == schedule == "0 7 * * 1-5"
    [calendar] = read_unit(JOBS / "recon-report.timer")["OnCalendar"]
    assert calendar.endswith(" " + option(setup, "--tz"))
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    base = datetime(2027, 3, 22, tzinfo=UTC)  # London moves to summer time on 28 March 2027
    shown = subprocess.run(
        [
            analyze,
            "calendar",
            "--iterations=12",
            f"--base-time={base:%Y-%m-%d %H:%M:%S} UTC",
            calendar,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "UTC", "LC_ALL": "C"},
        timeout=60,
        check=True,
    )
    elapses = [
        datetime.strptime(found, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        for found in re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\S+ \S+) UTC", shown.stdout)
    ]
    zone = ZoneInfo(option(setup, "--tz"))
    due = croniter(schedule, base.astimezone(zone))
    expected = [due.get_next(datetime).astimezone(UTC) for _ in range(12)]
    assert elapses == expected, shown.stdout
    assert expected[4].hour == 7 and expected[5].hour == 6  # 07:00 London, before and after


def test_the_report_jobs_run_as_written_and_deliver_once(
    tmp_path: Path, http_target: HttpTarget
) -> None:
    """The crontab line through /bin/sh, then the systemd unit's ExecStart: the story's last
    business day reported once to the target tagged `operations` (the second run finds it sent),
    and the report's monitor, created as the files say, is up."""
    home = install(tmp_path)
    config = (ROOT / "sample_data" / "recon.toml").read_text()
    config += f'\n[notify.targets.operations]\nurl = "{http_target.url}"\ntags = ["operations"]\n'
    (home / "recon.toml").write_text(config)
    when = f"{MONDAY}T06:00:00Z"

    def recon(*args: str | Path) -> Result:
        ran = recon_at(home, when, *map(str, args))
        return Result(ran.returncode, ran.stdout, ran.stderr)

    ingest_sample_story(recon, ROOT / "sample_data" / SAMPLE_SOURCE, SAMPLE_SOURCE)
    [setup] = report_schedules(JOBS / "recon.cron")
    made = recon_at(home, when, *setup)
    assert made.returncode == 0, made.stderr
    _, command, service = report_jobs()
    now = f"{MONDAY}T07:00:00Z"
    tab = read_crontab(JOBS / "recon.cron")
    env = {**base_env(home, now), **{k: moved(v, home) for k, v in tab.variables.items()}}
    ran = subprocess.run(
        [tab.variables.get("SHELL", "/bin/sh"), "-c", moved(command, home)],
        env=env,
        cwd=env["HOME"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    assert len(http_target.answered_ok) == 1, http_target.received
    assert "2026-11-13" in json.dumps(http_target.answered_ok[0])
    unit = read_unit(JOBS / "recon-report.service")
    env = base_env(home, f"{MONDAY}T07:05:00Z")
    for assignments in unit["Environment"]:
        env.update(item.split("=", 1) for item in shlex.split(moved(assignments, home)))
    again = subprocess.run(
        shlex.split(moved(service, home)),
        env=env,
        cwd=moved(unit["WorkingDirectory"][0], home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert len(http_target.answered_ok) == 1, "sent twice"
    name = option(setup, "--name") if "--name" in setup else "failed-transactions-report"
    assert status(home, f"{MONDAY}T08:30:00Z", name) == "up"
