"""Prometheus metrics on the sample story: `recon watch --once --metrics-file` (node_exporter
textfile) and `recon serve`'s `GET /metrics`, parsed with prometheus_client's own parser, agree
with `recon monitor list --json`, `recon breaks --json` and `recon runs --json`; a hostile
monitor name cannot break the format."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from .conftest import SAMPLE, Recon
from .support import ingest_sample_story, serving

SOURCE = "payments-loader"
NOW = "2026-11-16T08:00:00+00:00"
HOSTILE = 'evil"} recon_monitor_up{monitor="x"} 1\n# TYPE x counter\n{\\'


def _bucket(days: int) -> str:
    return "0-1d" if days <= 1 else "2-7d" if days <= 7 else "8-30d" if days <= 30 else "31d+"


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Recon:
    """The sample story ingested and reconciled, its daily report watched and silent since 2
    November (down), and a monitor with a hostile name."""
    workdir = tmp_path_factory.mktemp("metrics")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
    env |= {
        "RECON_DB": str(workdir / "recon.duckdb"),
        "RECON_CONFIG": str(SAMPLE / "recon.toml"),
        "RECON_NOW": NOW,
        "RECON_PAN_KEY": "test-only-key",
        "RECON_AUDIT_KEY": "test-audit-key-not-a-secret",
        "RECON_LOCK_TIMEOUT": "5s",
    }
    recon = Recon(workdir=workdir, db=workdir / "recon.duckdb", env=env)
    ingest_sample_story(recon, SAMPLE / SOURCE, SOURCE)
    assert recon("reconcile").code in (0, 3)
    added = recon(
        "--now",
        "2026-10-25T12:00:00Z",
        *("monitor", "add", "daily-report", "--cron", "0 7 * * 1-5", "--tz", "Europe/London"),
        *("--grace", "1h", "--source", SOURCE, "--hears", "ping"),
    )
    assert added.code == 0, added.stderr
    assert recon("--now", "2026-11-02T06:40:00Z", "ping", "daily-report").code == 0
    assert recon("monitor", "add", HOSTILE, "--every", "1d", "--grace", "1h").code == 0
    return recon


def _samples(text: str) -> dict[str, list[Any]]:
    """Samples by name (counters keep their `_total`), after checking each family's type."""
    found: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("recon_"), family.name
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def _by(samples: list[Any], *labels: str) -> dict[Any, float]:
    """Values by the given labels' values (one label: by its value alone)."""
    key = (lambda s: s.labels[labels[0]]) if len(labels) == 1 else None
    return {key(s) if key else tuple(s.labels[k] for k in labels): s.value for s in samples}


def _check_agreement(recon: Recon, text: str, story_time: bool) -> None:
    samples = _samples(text)
    monitors = recon("--json", "monitor", "list").json()["monitors"]
    up = _by(samples["recon_monitor_up"], "monitor")
    assert up == {m["name"]: 0.0 if m["status"] == "down" else 1.0 for m in monitors}
    assert up["daily-report"] == 0.0  # silent since 2 November
    if story_time:  # on the real clock, weeks later, the daily monitor is down too
        assert up[HOSTILE] == 1.0
    status = _by(samples["recon_monitor_status"], "monitor", "status")
    for m in monitors:
        assert status[(m["name"], m["status"])] == 1.0
        assert sum(v for (name, _), v in status.items() if name == m["name"]) == 1.0
    missed = _by(samples["recon_monitor_slots_missed_total"], "monitor")
    assert missed["daily-report"] > 0 and missed[HOSTILE] == 0
    assert missed["daily-report"] == len(
        recon.query(
            "SELECT 1 FROM slots s JOIN monitors m USING (monitor_id) "
            "WHERE m.name = 'daily-report' AND s.outcome = 'missed'"
        )
    )

    breaks = recon("--json", "breaks").json()["breaks"]
    assert breaks
    opened = _by(samples["recon_breaks_open"], "source", "category", "age")
    if story_time:
        expected = Counter((b["source"], b["category"], _bucket(b["age_days"])) for b in breaks)
        assert opened == {k: float(v) for k, v in expected.items()}
    per_category = Counter((b["source"], b["category"]) for b in breaks)
    summed: Counter[tuple[str, str]] = Counter()
    for (source, category, _), value in opened.items():
        summed[(source, category)] += int(value)
    assert summed == per_category

    runs = recon("--json", "runs").json()["runs"]
    loaded = _by(samples["recon_source_rows_loaded_total"], "source")
    quarantined = _by(samples["recon_source_rows_quarantined_total"], "source")
    assert loaded == {SOURCE: float(sum(r["rows_loaded"] for r in runs))}
    assert quarantined == {SOURCE: float(sum(r["rows_quarantined"] for r in runs))}
    assert quarantined[SOURCE] > 0

    days = recon("--json", "reconcile").json()
    last = max((d for d in _days(days) if d["source"] == SOURCE), key=lambda d: d["business_date"])
    assert _by(samples["recon_last_day_status"], "source", "status") == {
        (SOURCE, last["status"]): 1.0
    }
    deliveries = _by(samples["recon_alert_deliveries"], "state", "kind")
    assert set(deliveries) == {(s, k) for s in ("pending", "failing") for k in ("alert", "report")}
    waiting = Counter(
        ("report" if row["kind"].startswith("report_") else "alert", bool(row["last_error"]))
        for row in recon("--json", "alerts", "--limit", "1000").json()["alerts"]
        if row["status"] != "delivered"
    )
    for kind in ("alert", "report"):
        assert deliveries[("pending", kind)] == waiting[(kind, False)]
        assert deliveries[("failing", kind)] == waiting[(kind, True)]


def _days(payload: Any) -> list[dict[str, Any]]:
    return list(payload["days"])


def test_textfile_agrees_with_the_json_reads(story: Recon, tmp_path: Path) -> None:
    target = tmp_path / "recon.prom"
    done = story("watch", "--once", "--metrics-file", target)
    assert done.code == 3, done.stderr  # a monitor is down
    assert [p.name for p in tmp_path.iterdir()] == ["recon.prom"]  # renamed into place
    text = target.read_text()
    _check_agreement(story, text, story_time=True)
    since = _by(_samples(text)["recon_monitor_seconds_since_last_signal"], "monitor")
    assert since == {
        "daily-report": (
            datetime.fromisoformat(NOW) - datetime.fromisoformat("2026-11-02T06:40:00+00:00")
        ).total_seconds()
    }


def test_serve_metrics_agree_with_the_json_reads(story: Recon) -> None:
    real_clock = {k: v for k, v in story.env.items() if k != "RECON_NOW"}
    with serving(real_clock, story.workdir, timeout=30, stderr=subprocess.PIPE) as (base, _):
        answer = urllib.request.urlopen(f"{base}/metrics", timeout=30)
        with answer:
            assert answer.status == 200
            assert answer.headers["content-type"] == CONTENT_TYPE_LATEST
            text = answer.read().decode()
    # The CLI reads on the real clock too (the server has no RECON_NOW); ages may differ at
    # midnight, so breaks are compared per category.
    _check_agreement(Recon(story.workdir, story.db, real_clock), text, story_time=False)


def test_a_hostile_monitor_name_cannot_break_the_format(story: Recon, tmp_path: Path) -> None:
    target = tmp_path / "recon.prom"
    assert story("watch", "--once", "--metrics-file", target).code == 3
    text = target.read_text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "x" not in families  # the `# TYPE x counter` in the name stayed inside a label
    names = {s.labels["monitor"] for s in families["recon_monitor_up"].samples}
    assert names == {"daily-report", HOSTILE}  # the name round-trips, nothing injected
    for line in text.splitlines():  # every line is a comment or one sample of a recon_ metric
        assert line.startswith(("# HELP recon_", "# TYPE recon_", "recon_")), line
