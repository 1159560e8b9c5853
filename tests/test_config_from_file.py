"""The configuration history records what a person changed in recon.toml, not the environment a
process happened to run in (issue 13, item 3): cron's environment differs from a login shell's,
and neither is a configuration change."""

from __future__ import annotations

import json

import pytest

from .conftest import Recon

pytestmark = pytest.mark.in_process

CONFIG = '[sources.pay]\ntimezone = "Europe/London"\n[notify.targets.ops]\ntags = ["ops"]\n'


# The target's URL is a secret kept in the environment, as the README advises for secrets.
URL = {"RECON_NOTIFY__TARGETS__OPS__URL": "json://127.0.0.1:9/hook-secret"}


def versions(recon: Recon) -> list[dict]:
    return recon("--json", "config", "history", env=URL).json()["versions"]


def test_alternating_environments_record_no_version_and_editing_the_file_does(
    recon: Recon,
) -> None:
    recon.write_config(CONFIG)
    url = URL
    assert recon("init", env=url).code == 0
    first = versions(recon)
    assert sorted(v["object"] for v in first) == ["settings", "source:pay", "target:ops"]
    cron_like = {
        "RECON_LOCK_TIMEOUT": "1s",
        "RECON_LOG_LEVEL": "ERROR",
        "RECON_NOTIFY_TIMEOUT": "3s",
        "RECON_SOURCES__PAY__TIMEZONE": "UTC",
        "RECON_NOTIFY__TARGETS__OPS__URL": "json://127.0.0.1:9/another-hook",
        "RECON_NOTIFY__TARGETS__PAGER__URL": "json://127.0.0.1:9/pager",
    }
    for _ in range(2):  # a login shell, then cron, then again
        assert recon("runs", env={**url, **cron_like}).code == 0
        assert recon("runs", env=url).code == 0
    assert versions(recon) == first  # nothing a person changed: nothing recorded
    assert "hook-secret" not in json.dumps(first)

    # Editing the file is a change, recorded once, whichever environment reads it first.
    recon.write_config("lock_timeout = 9\n" + CONFIG.replace("Europe/London", "America/New_York"))
    assert recon("runs", env={**url, **cron_like}).code == 0
    assert recon("runs", env=url).code == 0
    added = versions(recon)[len(first) :]
    assert [v["object"] for v in added] == ["source:pay", "settings"]
    assert added[0]["value"]["timezone"] == "America/New_York"
    assert added[1]["value"]["lock_timeout"] == 9.0
    assert all(v["via"] == "settings" for v in added)
    audited = recon("--json", "audit", "log", "--action", "config.change", env=url)
    audited = audited.json()["events"]
    assert len(audited) == len(first) + 2


def test_no_configuration_file_records_nothing(recon: Recon) -> None:
    """A command run where no recon.toml is read (another folder, no RECON_CONFIG) says nothing
    about the configuration: it does not record every source as removed."""
    recon.write_config('[sources.pay]\ntimezone = "UTC"\n')
    assert recon("init").code == 0
    before = versions(recon)
    (recon.workdir / "recon.toml").unlink()
    assert recon("runs").code == 0
    assert versions(recon) == before
