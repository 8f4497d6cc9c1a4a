"""Build the Faust application from settings."""

from __future__ import annotations

import logging
from typing import Any

import faust

import models
from app import agents, web
from app.config import Settings
from app.processor import Processor
from app.state import Learners
from app.topics import TopicNames

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> faust.App:
    """The riverbed worker: one agent, per-partition learners, HTTP views."""
    spec = models.spec(settings.model)
    app = faust.App(
        settings.app_id,
        broker=settings.faust_broker,
        store="memory://",
        autodiscover=False,
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        web_host=settings.web_host,
        web_bind=settings.web_host,  # Faust binds 0.0.0.0 by default; we do not
        web_port=settings.web_port,
        # A new consumer group learns from the beginning of the stream, not only
        # from events produced after it started.
        consumer_auto_offset_reset="earliest",
    )
    names = TopicNames.from_settings(settings)
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    source = app.topic(names.events, names.labels, **raw)
    outputs = {
        names.predictions: app.topic(names.predictions, **raw),
        names.dlq: app.topic(names.dlq, **raw),
    }
    learners = Learners(
        spec,
        pending_max=settings.pending_max,
        pending_ttl_ms=int(settings.pending_ttl * 1000),
    )
    processor = Processor(learners, names, max_record_bytes=settings.max_record_bytes)
    status = web.WorkerStatus()

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        status.ready = False

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned = args[0]  # faust sends the set of assigned TopicPartitions
        learners.assign({tp.partition for tp in assigned if tp.topic == names.events})
        status.ready = True
        logger.info("riverbed owns partitions %s (model %s)", sorted(learners.assigned), spec.name)

    agents.register(
        app,
        source,
        outputs,
        processor,
        batch_max=settings.batch_max,
        batch_within=settings.batch_within,
    )
    web.register(app, learners, processor, status)
    return app
