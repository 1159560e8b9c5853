"""What `recon monitor show` and `list` print (issue 13, items 16 and 17): every acknowledged
ping counted, even one still in the spool, and ping URLs whole, with the ping key."""

from __future__ import annotations

import subprocess
import urllib.request
from typing import Any

from .conftest import Recon
from .support import run_recon, serving


def real_time(recon: Recon, *args: str, base: str | None = None) -> Any:
    """`recon ARGS` as a real process on the real clock (the server's pings carry it)."""
    env = {k: v for k, v in recon.env.items() if k != "RECON_NOW"}
    if base:
        env["RECON_BASE_URL"] = base
    return run_recon(args, env=env, cwd=recon.workdir)


def test_a_ping_answered_200_shows_at_once_though_the_drainer_sleeps(recon: Recon) -> None:
    assert real_time(recon, "monitor", "add", "job", "--every", "1d", "--grace", "1h").code == 0
    env = {k: v for k, v in recon.env.items() if k != "RECON_NOW"}
    # The drainer records the spool once at start, then not for an hour: only a read that
    # counts what the spool holds can show this ping.
    with serving(env, recon.workdir, drain="1h", timeout=30, stderr=subprocess.PIPE) as (base, _):
        url = real_time(recon, "--json", "monitor", "show", "job", base=base).json()["ping_url"]
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200
        shown = real_time(recon, "--json", "monitor", "show", "job").json()
        assert shown["last_signal_at"] is not None and shown["status"] == "up"
        listed = real_time(recon, "--json", "monitor", "list").json()["monitors"]
        assert [(m["name"], m["status"]) for m in listed] == [("job", "up")]
        assert listed[0]["last_signal_at"] == shown["last_signal_at"]


def test_show_prints_ping_urls_whole_and_the_ping_key_form_that_works(recon: Recon) -> None:
    name = "nightly-settlement-report-for-the-payments-loader"
    assert real_time(recon, "monitor", "add", name, "--every", "1d", "--grace", "1h").code == 0
    env = {k: v for k, v in recon.env.items() if k != "RECON_NOW"}
    with serving(env, recon.workdir, drain="0.1s", timeout=30, stderr=subprocess.PIPE) as (
        base,
        _,
    ):
        shown = real_time(recon, "--json", "monitor", "show", name, base=base).json()
        [(key,)] = recon.query("SELECT ping_key FROM ping_keys")
        assert shown["ping_key"] == key
        assert shown["ping_url_by_name"] == f"{base}/ping/{key}/{name}"
        human = real_time(recon, "monitor", "show", name, base=base).stdout
        assert f"ping_url: {shown['ping_url']}\n" in human
        assert f"curl: {shown['curl']}\n" in human
        assert f"ping_url_by_name: {base}/ping/{key}/{name}\n" in human
        assert f"ping_key: {key}\n" in human
        with urllib.request.urlopen(shown["ping_url_by_name"], timeout=10) as answer:
            assert answer.status == 200
