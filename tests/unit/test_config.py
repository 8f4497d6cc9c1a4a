from __future__ import annotations

import pytest

from app.config import SPECS, Settings
from app.exceptions import ConfigError


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


def test_every_setting_is_documented() -> None:
    described = Settings.from_env({}).describe()
    assert [d[0] for d in described] == [s.env for s in SPECS]
    assert all(doc for _, _, doc in described)


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("0", False), (" Yes ", True)])
def test_consumer_thread_flag(value: str, expected: bool) -> None:
    assert Settings.from_env({"RIVERBED_CONSUMER_THREAD": value}).consumer_thread is expected
    assert Settings.from_env({}).consumer_thread is False
