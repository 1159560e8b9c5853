"""Settings an operator (or whoever can write recon.toml or the environment) may get wrong in a
way that hurts: negative durations, a zero drain interval (a busy loop), exports every user can
read, a canonical column mapped to a CVV column, and card numbers in names that are stored and
shown everywhere. Each is refused with the setting, the value (masked) and what to do."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile.errors import ConfigError
from reconcile.settings import load_settings

from .canary import canaries, leaks
from .conftest import Recon

CARDS = canaries()


@pytest.fixture(autouse=True)
def _no_recon_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RECON_"):
            monkeypatch.delenv(name)


def refusal(tmp_path: Path, toml: str) -> str:
    """The message `load_settings` refuses this recon.toml with."""
    path = tmp_path / "recon.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_settings(path)
    return str(refused.value)


def test_a_negative_lock_timeout_in_recon_toml_stops_the_command(recon: Recon) -> None:
    recon.write_config("lock_timeout = -5\n")
    recon.env.pop("RECON_LOCK_TIMEOUT")  # the environment would win over recon.toml
    done = recon("runs")
    assert done.code == 1
    assert "lock_timeout" in done.stderr and "-5" in done.stderr and "0 or more" in done.stderr


def test_a_zero_drain_interval_is_refused_before_serving(recon: Recon) -> None:
    done = recon("serve", "--port", "1", env={"RECON_SPOOL_DRAIN_INTERVAL": "0"}, timeout=60)
    assert done.code == 1
    assert "spool_drain_interval" in done.stderr and "RECON_SPOOL_DRAIN_INTERVAL" in done.stderr
    assert "'0'" in done.stderr and "1s" in done.stderr


@pytest.mark.parametrize("mode", ["644", "666", "604", "0644", "601"])
def test_an_export_mode_others_can_read_is_refused(recon: Recon, mode: str) -> None:
    done = recon("runs", env={"RECON_EXPORT_MODE": mode})
    assert done.code == 1
    assert "export_mode" in done.stderr and mode in done.stderr and "640" in done.stderr


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 0o777))
def test_an_export_mode_is_accepted_only_without_bits_for_others(mode: int) -> None:
    text = f"{mode:03o}"
    try:
        accepted = load_settings(None, export_mode=text).export_mode == text
    except ConfigError as refused:
        assert "export_mode" in str(refused)
        accepted = False
    assert accepted == (mode & 0o007 == 0)


DURATIONS = ["lock_timeout", "notify_timeout", "spool_drain_interval"]


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(DURATIONS),
    st.one_of(
        st.integers(max_value=-1),
        st.floats(max_value=-1e-9, allow_nan=False),
        st.sampled_from([math.inf, -math.inf, math.nan]),
    ),
)
def test_a_negative_or_infinite_duration_is_refused(name: str, value: float) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(None, **{name: value})


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(DURATIONS), st.floats(min_value=0.05, max_value=1e6))
def test_a_positive_duration_is_accepted(name: str, value: float) -> None:
    assert getattr(load_settings(None, **{name: value}), name) == value


@pytest.mark.parametrize("value", ["0", "0s", "0ms", "10ms", 0])
def test_a_drain_interval_that_would_spin_is_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="spool_drain_interval"):
        load_settings(None, spool_drain_interval=value)


@pytest.mark.parametrize("name", ["notify_timeout"])
def test_a_zero_timeout_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(None, **{name: "0s"})


@pytest.mark.parametrize(
    ("canonical", "column"),
    [
        ("amount", "cvv"),
        ("txn_id", "Card_CVV2"),
        ("error_message", "PIN block"),
        ("run_id", "track2"),
    ],
)
def test_a_canonical_column_mapped_to_a_card_security_column_is_refused(
    tmp_path: Path, canonical: str, column: str
) -> None:
    message = refusal(tmp_path, f'[sources.pay.columns]\n{canonical} = "{column}"\n')
    assert "sources.pay.columns" in message and canonical in message and column in message
    assert "never stored" in message


def test_a_mapping_to_an_ordinary_column_is_still_accepted(tmp_path: Path) -> None:
    path = tmp_path / "recon.toml"
    path.write_text('[sources.pay.columns]\namount = "Amount (GBP)"\ntxn_id = "pinned_id"\n')
    assert load_settings(path).sources["pay"].columns["amount"] == "Amount (GBP)"


@pytest.mark.parametrize(
    "template",
    [
        '[sources."{card}"]\nformat = "csv"\n',
        '[sources.pay]\nsuccess_values = ["{card}"]\n',
        '[sources.pay.columns]\ntxn_id = "{card}"\n',
        '[notify.targets."{card}"]\nurl = "json://127.0.0.1:1/"\n',
        '[notify.targets.ops]\nurl = "json://127.0.0.1:1/"\ntags = ["{card}"]\n',
        '[notify.targets.ops]\nurl = "json://127.0.0.1:1/"\nfallback = "{card}"\n',
        '[mailboxes."{card}"]\nhost = "h"\nuser = "u"\n',
        '[mailboxes.box]\nhost = "h"\nuser = "{card}"\n',
        '[mailboxes.box]\nhost = "h"\nuser = "u"\nfolder = "{card}"\n',
        'base_url = "http://127.0.0.1/{card}"\n',
        '[notify]\nconfig_file = "/etc/recon/{card}.yml"\n',
        'export_mode = "{card}"\n',
        'lock_timeout = "{card} minutes"\n',
        '[sources.pay]\ntimezone = "{card}"\n',
        '[sources.pay.columns]\n"{card}" = "x"\n',
        '"{card}" = 1\n',
    ],
)
@pytest.mark.parametrize("card", CARDS[:3] + CARDS[4:6], ids=lambda c: c.shape)
def test_a_card_number_in_a_setting_is_refused_without_being_repeated(
    tmp_path: Path, template: str, card: object
) -> None:
    message = refusal(tmp_path, template.replace("{card}", card.text))  # type: ignore[attr-defined]
    assert "invalid settings" in message
    assert not leaks(message, CARDS), message


def test_a_card_number_in_recon_toml_is_refused_on_the_command_line(recon: Recon) -> None:
    card = CARDS[0]
    recon.write_config(f'[sources."{card.text}"]\nformat = "csv"\n')
    done = recon("runs")
    assert done.code == 1 and "holds a card number" in done.stderr
    assert not leaks(done.stdout + done.stderr, CARDS)
