"""The riverbed worker class (riverbed.kafka.worker.Worker): logging after Faust's set-up."""

from __future__ import annotations

import asyncio
import logging

import pytest

from riverbed.config import Settings
from riverbed.kafka import compat
from riverbed.kafka.worker import Worker
from riverbed.main import create_app


@pytest.mark.parametrize("level", ["warning", "error", "info"])
def test_the_root_logger_keeps_the_configured_level(level: str) -> None:
    """Faust's spinner would set the root logger to DEBUG at warning and error."""
    app = create_app(Settings.from_env({"RIVERBED_TOPIC_PREFIX": "u."}))
    assert app.conf.Worker is Worker
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    # Faust's set-up is logging.config.dictConfig: it disables every logger that exists
    # and sets levels; the tests after this one in the process must find them as they were.
    loggers = {name: (lg.disabled, lg.level, lg.propagate)
               for name, lg in logging.root.manager.loggerDict.items()
               if isinstance(lg, logging.Logger)}  # fmt: skip
    loop = asyncio.new_event_loop()
    try:
        worker = app.Worker(loglevel=level, loop=loop, redirect_stdouts=False)
        compat.setup_logging(worker)
        assert root.level == logging.getLevelName(level.upper())
        assert not logging.getLogger("aiokafka.consumer.fetcher").isEnabledFor(logging.DEBUG)
        assert all(h.level >= root.level for h in root.handlers if h not in saved[1])
    finally:
        for h in [h for h in root.handlers if h not in saved[1]]:
            root.removeHandler(h)
        root.setLevel(saved[0])
        for name, (disabled, lvl, propagate) in loggers.items():
            lg = logging.getLogger(name)
            lg.disabled, lg.propagate = disabled, propagate
            lg.setLevel(lvl)
        loop.close()


def test_snapshots_and_metrics_have_their_own_producer() -> None:
    """aiokafka keeps one request in flight per broker: a slow snapshot append must not
    hold the predictions' batches, so snapshots and metrics use a second producer."""
    from faust.transport.drivers.aiokafka import Producer

    app = create_app(Settings.from_env({"RIVERBED_TOPIC_PREFIX": "u."}))
    services = list(app.boot_strategy.server())
    producers = [s for s in services if isinstance(s, Producer)]
    assert producers[0] is app.producer
    assert len(producers) == 2
    background = producers[1]
    assert background.transport is app.transport  # same settings, credentials, TLS
    assert background.client_id == f"{app.conf.broker_client_id}-background"
    # Both acknowledge once min.insync.replicas have a record (Faust's PRODUCER_ACKS
    # in the environment does not change it).
    assert app.conf.producer_acks == -1 and background.acks == -1 == app.producer.acks
    # Started before the consumer, so stopped after it: the consumer's last drain
    # writes a checkpoint through it.
    assert services.index(background) < services.index(app.consumer)
