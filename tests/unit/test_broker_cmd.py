"""The local broker's java command line (no broker started)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from riverbed.devtools.broker import LocalBroker
from riverbed.exceptions import BrokerError


def test_kafka_opts_add_jvm_options_before_the_main_class(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KAFKA_OPTS", "-Xlog:gc:file=/tmp/gc.log:time  -Dfoo='a b'")
    cmd = LocalBroker(port=19092, data_dir=tmp_path)._java_cmd("kafka.Kafka", "cfg")
    assert cmd[-2:] == ["kafka.Kafka", "cfg"]
    main = cmd.index("kafka.Kafka")
    assert "-Xlog:gc:file=/tmp/gc.log:time" in cmd[:main]
    assert "-Dfoo=a b" in cmd[:main]
    assert "-Xmx512m" in cmd


def test_without_kafka_opts_the_command_is_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KAFKA_OPTS", raising=False)
    cmd = LocalBroker(port=19092, data_dir=tmp_path)._java_cmd("kafka.Kafka", "cfg")
    assert not any(a.startswith("-Xlog") for a in cmd)
    assert cmd[0] == "java" and cmd[-1] == "cfg"
    assert "-XX:TieredStopAtLevel=1" in cmd


def test_kafka_opts_come_after_the_defaults_so_they_win(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KAFKA_OPTS", "-XX:TieredStopAtLevel=4")
    cmd = LocalBroker(port=19092, data_dir=tmp_path)._java_cmd("kafka.Kafka", "cfg")
    assert cmd.index("-XX:TieredStopAtLevel=4") > cmd.index("-XX:TieredStopAtLevel=1")


def test_free_ports_stay_out_of_the_ephemeral_range(monkeypatch: Any) -> None:
    """Ports an outgoing connection could take between the check and the bind are
    never picked: below the range, or above it when it starts too low."""
    from riverbed.devtools import broker

    monkeypatch.setattr(broker, "ephemeral_ports", lambda: (32768, 60999))
    assert all(broker.FREE_PORTS_FROM <= broker.free_ports(3) <= 32765 for _ in range(20))
    monkeypatch.setattr(broker, "ephemeral_ports", lambda: (1024, 60000))
    assert all(60000 < broker.free_ports(3) <= 65532 for _ in range(20))
    monkeypatch.setattr(broker, "ephemeral_ports", lambda: (1024, 65535))
    with pytest.raises(BrokerError, match="outside the ephemeral range"):
        broker.free_ports(3)
