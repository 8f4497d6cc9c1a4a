"""What start-up says of the topics it asked Kafka to create: aiokafka's CreateTopics
returns each topic's result code (it raises only on transport errors)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.admin import NewTopic

from riverbed.exceptions import ConfigError
from riverbed.kafka.topics import Cluster, _create

ONE = Cluster(brokers=1, default_replication=1, min_insync=1)


class _Admin:
    def __init__(self, results: list[tuple[Any, ...]]) -> None:
        self.results = results

    async def create_topics(self, new: list[NewTopic]) -> Any:
        return SimpleNamespace(topic_errors=self.results)


def _run(results: list[tuple[Any, ...]]) -> None:
    new = [NewTopic(t, 4, 1) for t in ("t.events", "t.labels", "t.dlq")]
    asyncio.run(_create(_Admin(results), new, ONE, 1))  # type: ignore[arg-type,unused-ignore]


def test_only_what_kafka_created_is_said_created(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, "riverbed")
    # Directly on riverbed's logger, enabled: a worker's logging set-up earlier in this
    # process may have stopped it propagating to the root (where caplog listens), or
    # disabled the loggers that existed then (logging.config's dictConfig).
    monkeypatch.setattr(logging.getLogger("riverbed.kafka.topics"), "disabled", False)
    logger = logging.getLogger("riverbed")
    logger.addHandler(caplog.handler)
    try:
        _run([("t.events", 36, "exists"), ("t.labels", 0, None), ("t.dlq", 40, "bad config")])
    finally:
        logger.removeHandler(caplog.handler)
    text = caplog.text
    assert "created topics ['t.labels'] with 4 partitions" in text
    assert "topics ['t.events']: another client created them meanwhile" in text
    assert "Kafka did not create t.dlq: error 40 (bad config)" in text


def test_a_refused_create_names_the_topics() -> None:
    with pytest.raises(ConfigError, match=r"Create on topic t\.events, t\.dlq"):
        _run([("t.events", 29, None), ("t.labels", 0, None), ("t.dlq", 29, None)])
