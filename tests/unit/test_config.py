from __future__ import annotations

from dataclasses import fields

import pytest

from riverbed.config import SPECS, Settings
from riverbed.exceptions import ConfigError


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.broker == ("127.0.0.1:9092",)
    assert s.app_id == "riverbed" and s.topic_prefix == "riverbed." and s.model == "logreg"
    assert s.partitions == 4 and s.web_port == 6066 and s.web_host == "127.0.0.1"


def test_broker_forms() -> None:
    s = Settings.from_env({"RIVERBED_BROKER": "kafka://a:1,b:2"})
    assert s.bootstrap == "a:1,b:2"
    assert s.faust_broker == "kafka://a:1;kafka://b:2"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("RIVERBED_BROKER", "nohost"),
        ("RIVERBED_BROKER", "h:99999"),
        ("RIVERBED_PARTITIONS", "0"),
        ("RIVERBED_PARTITIONS", "four"),
        ("RIVERBED_WEB_PORT", "70000"),
        ("RIVERBED_PENDING_TTL", "-1"),
        ("RIVERBED_PENDING_TTL", "nan"),
        ("RIVERBED_APP_ID", "has space"),
        ("RIVERBED_LOG_LEVEL", "loud"),
        ("RIVERBED_MODEL", " "),
        ("RIVERBED_CONSUMER_THREAD", "sometimes"),
    ],
)
def test_bad_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var):
        Settings.from_env({var: value})


def test_unknown_riverbed_variable_is_an_error() -> None:
    with pytest.raises(ConfigError, match="RIVERBED_PARTITONS"):
        Settings.from_env({"RIVERBED_PARTITONS": "2"})


def test_every_field_has_exactly_one_setting() -> None:
    assert sorted(s.field for s in SPECS) == sorted(f.name for f in fields(Settings))


def test_describe_shows_each_variable_with_its_own_value_and_doc() -> None:
    env = {"RIVERBED_PARTITIONS": "7", "RIVERBED_PENDING_MAX": "11", "RIVERBED_WEB_PORT": "7070",
           "RIVERBED_BROKER": "a:1,b:2", "RIVERBED_SNAPSHOT_KEY": "secret"}  # fmt: skip
    rows = {var: (value, doc) for var, value, doc in Settings.from_env(env).describe()}
    assert rows["RIVERBED_PARTITIONS"][0] == "7" and rows["RIVERBED_PENDING_MAX"][0] == "11"
    assert rows["RIVERBED_WEB_PORT"][0] == "7070" and rows["RIVERBED_BROKER"][0] == "a:1,b:2"
    assert rows["RIVERBED_SNAPSHOT_KEY"][0] == "<set>", "a secret is never shown"
    assert rows["RIVERBED_MODEL"][0] == "logreg"
    assert all(doc.strip() for _, doc in rows.values())


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("0", False), (" Yes ", True)])
def test_consumer_thread_flag(value: str, expected: bool) -> None:
    assert Settings.from_env({"RIVERBED_CONSUMER_THREAD": value}).consumer_thread is expected
    assert Settings.from_env({}).consumer_thread is False
