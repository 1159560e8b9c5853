"""Configuration history: every change is a version with who, when, how and why; versions
diff and revert; each ingested file and reconciliation records the version it ran with; and
bisect points at the configuration change that moved a metric."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from .conftest import Recon

# Many input cases through the CLI: run in this process (tests/support.py), not one
# interpreter each; the real-process contract is kept by test_setup, test_sample_data and others.
pytestmark = pytest.mark.in_process


def history(recon: Recon, *target: str) -> list[dict]:
    return recon("--json", "config", "history", *target).json()["versions"]


def test_monitor_versions_diff_and_revert(recon: Recon) -> None:
    added = recon(
        "monitor", "add", "job", "--every", "1h", "--grace", "5m", "--reason", "nightly load",
    )  # fmt: skip
    assert added.code == 0, added.stderr
    recon("monitor", "remove", "job", "--reason", "retired")
    recon("monitor", "add", "job", "--every", "1h", "--grace", "30m", "--tag", "ops")
    versions = history(recon, "monitor:job")
    assert [(v["reason"], v["via"]) for v in versions] == [
        ("nightly load", "command"),
        ("retired", "command"),
        (None, "command"),
    ]
    first, removed, third = (v["version"] for v in versions)
    assert versions[1]["value"] is None and versions[0]["changed_by"]
    changes = recon("--json", "config", "diff", str(first), str(third)).json()["changes"]
    assert changes == {
        "grace_seconds": {"from": 300, "to": 1800},
        "tags": {"from": [], "to": ["ops"]},
    }
    reverted = recon("config", "revert", "monitor:job", "--to", str(first), "--reason", "too lax")
    assert reverted.code == 0, reverted.stderr
    shown = recon("--json", "monitor", "show", "job").json()
    assert (shown["grace_seconds"], shown["tags"]) == (300, [])
    latest = history(recon, "monitor:job")[-1]
    assert (latest["via"], latest["reason"], latest["value"]) == (
        "revert",
        "too lax",
        versions[0]["value"],
    )
    # Reverting to the removal removes it; reverting again brings it back.
    recon("config", "revert", "monitor:job", "--to", str(removed))
    assert recon("monitor", "show", "job").code == 1
    recon("config", "revert", "monitor:job", "--to", str(third))
    assert recon("--json", "monitor", "show", "job").json()["grace_seconds"] == 1800
    audited = recon("--json", "audit", "log", "--action", "config", "--object", "monitor:job")
    assert len(audited.json()["events"]) == len(history(recon, "monitor:job"))


def test_settings_changes_become_versions_without_their_secrets(
    recon: Recon, tmp_path: Path
) -> None:
    secret = "hooks-secret-token-123456"
    recon.write_config(
        '[sources.pay]\ntimezone = "Europe/London"\n'
        f'[notify.targets.ops]\nurl = "json://127.0.0.1:9/{secret}"\n'
    )
    recon("init")
    recon("init")  # nothing changed: no new version
    objects = [v["object"] for v in history(recon)]
    assert sorted(objects) == ["settings", "source:pay", "target:ops"]
    recon.write_config(
        '[sources.pay]\ntimezone = "UTC"\namount_tolerance = "0.05"\n'
        f'[notify.targets.ops]\nurl = "json://127.0.0.1:9/{secret}-rotated"\n'
    )
    log = tmp_path / "run.csv"
    log.write_text("txn_id,amount,status,run_id\nT1,1.00,OK,R1\n")
    recon("ingest", "--source", "pay", log)
    source = history(recon, "source:pay")
    assert [v["value"]["timezone"] for v in source] == ["Europe/London", "UTC"]
    assert source[-1]["via"] == "settings" and source[-1]["changed_by"]
    targets = history(recon, "target:ops")
    assert len(targets) == 2 and targets[0]["value"]["url"] != targets[1]["value"]["url"]
    assert secret not in recon("config", "history").stdout
    assert secret not in repr(recon.query("SELECT * FROM config_versions"))
    # The ingested file and the reconciliation record the configuration they ran with.
    recon("reconcile")
    newest = max(v["version"] for v in history(recon))
    [(file_version, product)] = recon.query(
        "SELECT config_version, product_version FROM ingested_files"
    )
    assert file_version == newest and product
    assert recon.query("SELECT config_version FROM reconciliations") == [(newest,)]
    refused = recon("config", "revert", "source:pay", "--to", str(source[0]["version"]))
    assert refused.code == 1 and '"timezone": "Europe/London"' in refused.stdout


def test_bisect_names_the_configuration_change_before_the_shift(
    recon: Recon, tmp_path: Path
) -> None:
    """Someone adds "WARN" to a source's failure statuses: from the next run, the failure rate
    jumps. Bisect finds that run and the version, with who made it."""
    config = '[sources.pay]\nfailure_values = ["FAILED"{extra}]\nsuccess_values = ["OK", "WARN"]\n'
    recon.write_config(config.format(extra=""))
    start = date(2026, 11, 2)
    for offset in range(8):
        day = start + timedelta(days=offset)
        if offset == 5:
            recon.write_config(config.format(extra=', "WARN"').replace('"OK", "WARN"', '"OK"'))
        rows = [f"T{offset}-{n},1.00,{'FAILED' if n < 1 else 'WARN' if n < 4 else 'OK'},R{offset}"
                for n in range(20)]  # fmt: skip
        path = tmp_path / f"R{offset}.csv"
        path.write_text("txn_id,amount,status,run_id\n" + "\n".join(rows) + "\n")
        done = recon("ingest", "--source", "pay", path, env={"RECON_NOW": f"{day}T22:00:00Z"})
        assert done.code == 0, done.stderr
    found = recon("--json", "bisect", "--source", "pay")
    assert found.code == 3, found.stderr
    shift = found.json()
    assert shift["run"]["run_id"] == "R5" and (shift["before"], shift["after"]) == (5.0, 20.0)
    [change] = shift["config_changes"]
    assert change["object"] == "source:pay" and change["via"] == "settings"
    text = recon("bisect", "--source", "pay").stderr
    assert f"configuration version {change['version']}: source:pay changed" in text


def test_a_removal_is_one_version_and_a_return_is_another(recon: Recon) -> None:
    recon.write_config('[sources.pay]\ntimezone = "UTC"\n[sources.old]\ntimezone = "UTC"\n')
    recon("init")
    recon.write_config('[sources.pay]\ntimezone = "UTC"\n')
    for _ in range(3):  # every command compares; the removal is recorded once
        assert recon("runs").code == 0
    assert [v["reason"] for v in history(recon, "source:old")] == [
        "changed in the settings",
        "removed from the settings",
    ]
    recon.write_config('[sources.pay]\ntimezone = "UTC"\n[sources.old]\ntimezone = "UTC"\n')
    recon("init")
    assert [v["value"] is None for v in history(recon, "source:old")] == [False, True, False]
