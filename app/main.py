"""Build the worker from settings: wiring only; each part lives in its module.

One event's path (docs/architecture.md): Kafka -> ``kafka.transport.BatchConsumer``
(Faust's consumer, a whole fetch at a time) -> ``kafka.intake.Intake`` -> the agent
(``pipeline.agents``) -> ``pipeline.processor.Processor`` ->
``learning.learner.PartitionLearner`` -> predictions out through
``kafka.worker.Producers``; then ``checkpoint.snapshots.Checkpointer`` snapshots the
learners and makes their offsets committable, which the consumer commits. On every
assignment ``checkpoint.recovery.Recovery`` says which learner each partition
continues with and where its records resume.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from typing import Any

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry

from riverbed import logs, models, records
from riverbed.checkpoint.recovery import Recovery
from riverbed.checkpoint.snapshots import Checkpointer, SnapshotCodec, load_key
from riverbed.config import PROJECT_ROOT, Settings
from riverbed.kafka import compat
from riverbed.kafka.intake import Intake
from riverbed.kafka.join import Joiner
from riverbed.kafka.security import client_args
from riverbed.kafka.topics import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DLQ_HEADROOM_BYTES,
    Layout,
    TopicNames,
    check_layout,
)
from riverbed.kafka.transport import BatchTransport, BrokerWatch
from riverbed.kafka.worker import Producers, SnapshotSink, faust_app
from riverbed.learning.state import Learners
from riverbed.lifetime import supervisor_gone
from riverbed.pipeline import agents, operations
from riverbed.pipeline.processor import Processor
from riverbed.pipeline.quarantine import Quarantine
from riverbed.serving import history, predict, web
from riverbed.serving.metrics import RiverbedMetrics
from riverbed.serving.publisher import MetricsPublisher

__all__ = ["check_layout", "create_app"]

logger = logging.getLogger(__name__)

FETCHES_QUEUED = 4  # fetches waiting for the agent; more only lengthens a rebalance


def create_app(settings: Settings, layout: Layout | None = None) -> faust.App:
    """The riverbed worker: one agent, per-partition learners, checkpoints, HTTP views.

    ``layout`` is what :func:`riverbed.kafka.topics.ensure_topics` found (the CLI passes it): the
    producers' request limit follows the dead-letter topic's.
    """
    compat.check()  # the private names of faust, mode and aiokafka riverbed relies on
    records.bound_name_cache(settings.name_cache_max_bytes)
    lineup = models.lineup(settings.model)  # the candidates; the first is the champion
    spec = lineup[0]
    dlq_max = layout.dlq_max_bytes if layout else DEFAULT_MAX_MESSAGE_BYTES + DLQ_HEADROOM_BYTES
    replication = layout.replication if layout else settings.replication or 1
    app = faust_app(settings, dlq_max_bytes=dlq_max, replication=replication)
    names = TopicNames.from_settings(settings)
    learners = Learners.from_settings(spec, settings)
    metrics = RiverbedMetrics.create(CollectorRegistry())
    processor = Processor(learners, names, max_record_bytes=settings.max_record_bytes,
                          metrics=metrics, dlq_max_bytes=dlq_max)  # fmt: skip
    key = load_key(settings.snapshot_key, PROJECT_ROOT / ".riverbed" / "snapshot.key")
    codec = SnapshotCodec(key, settings.snapshot_chunk_bytes,
                          model_name=",".join(s.name for s in lineup))  # fmt: skip
    sink = SnapshotSink(app, names.snapshots, names.versions)
    checkpointer = Checkpointer(
        learners, codec, send=sink.send, topics=(names.events, names.labels),
        every=settings.snapshot_every, interval=settings.snapshot_interval,
        on_failure=sink.on_failure, capture=settings.checkpoint_capture,
        send_version=sink.send_version, version_interval=settings.version_interval,
    )  # fmt: skip
    # Fetches reach the agent whole through this channel (app/kafka/intake.py); the
    # transport must be ours before anything asks for Faust's.
    fetches: faust.ChannelT = app.channel(maxsize=FETCHES_QUEUED)
    # The consumer gives the joiner its offsets when it starts fetching.
    joiner = Joiner(names.events, names.labels, offsets=lambda _t, _p: None,
                    idle_s=settings.join_idle)  # fmt: skip
    intake = Intake(fetches, {names.events, names.labels}, checkpoint=checkpointer,
                    joiner=joiner)  # fmt: skip
    recovery = Recovery(learners, codec, names, group=settings.app_id, bootstrap=settings.bootstrap,
                        checkpointer=checkpointer, client=client_args(settings),
                        warmup=settings.warmup)  # fmt: skip
    broker_watch = BrokerWatch(settings.session_timeout)  # /ready, and a stop's give-up
    app.transport = BatchTransport(
        app.conf.broker_consumer, app, intake=intake, recovery=recovery,
        fetch_max_wait=settings.fetch_max_wait, consumer_thread=settings.consumer_thread,
        broker_watch=broker_watch,
    )  # fmt: skip
    producers = sink.producers = Producers(app)
    # Events and labels: subscribed (the transport fetches them), never iterated.
    app.topics.add(app.topic(names.events, names.labels, key_type=bytes, value_type=bytes,
                             key_serializer="raw", value_serializer="raw"))  # fmt: skip
    status = web.WorkerStatus(broker_watch)
    _on_assignments(app, settings, names, processor, recovery, status, spec.name)
    predictor = predict.Predictor(
        learners, learners.settings.mapping, events_topic=names.events,
        partitions=layout[names.events] if layout else settings.partitions,
        url=settings.advertised_url, token=settings.http_token, peers=settings.peer_urls,
        max_bytes=settings.predict_max_bytes, max_records=settings.predict_max_records,
        model=spec.name,
    )  # fmt: skip

    ops = operations.Operations(settings, learners, processor, checkpointer, predictor,
                                producers.predictions)  # fmt: skip

    def document() -> dict[str, Any]:
        """The /models body; Prometheus' scrape-time metrics are read from it too."""
        return {**learners.describe(), **processor.describe(), **checkpointer.describe(),
                **intake.describe(), **recovery.describe(), **predictor.describe(),
                **ops.describe(),
                "ready": status.ready, "drift_detector": settings.drift_detector}  # fmt: skip

    publisher, sample = _observed(app, names, learners, metrics, producers, checkpointer,
                                  document)  # fmt: skip
    _timers(app, settings, publisher, checkpointer, broker_watch)
    app.timer(history.INTERVAL_S)(sample.sample)  # /history: the live page's past
    agents.register(app, fetches, intake, processor, checkpointer, producers.predictions)
    web.register(app, document, status, metrics, sample.history)
    web.register_model_export(app, learners, settings)
    predict.register(app, predictor)
    operations.register(app, ops)
    return app


def _observed(
    app: faust.App,
    names: TopicNames,
    learners: Learners,
    metrics: RiverbedMetrics,
    producers: Producers,
    checkpointer: Checkpointer,
    document: Any,
) -> tuple[MetricsPublisher, history.Sampler]:
    """Prometheus' scrape-time metrics (read from ``document()``, the /models body, and
    the consumer's high watermarks for the lag), the metrics topic's publisher and the
    sampler of ``/history``."""

    def highwater(partition: int) -> int | None:
        return app.consumer.highwater(TP(names.events, partition))

    behind = web.lag(learners, highwater)
    metrics.register_collector(document, behind)

    async def send_metrics(topic: str, k: bytes, v: bytes, p: int) -> Any:
        return await producers.background_producer().send(topic, v, key=k, partition=p)

    publisher = MetricsPublisher(learners, metrics, topic=names.metrics, send=send_metrics,
                                 track=checkpointer.track)  # fmt: skip
    return publisher, history.Sampler(history.History(), learners, behind)


def _on_assignments(
    app: faust.App,
    settings: Settings,
    names: TopicNames,
    processor: Processor,
    recovery: Recovery,
    status: web.WorkerStatus,
    model: str,
) -> None:
    """Not ready while a rebalance runs; on every assignment, each partition's learner
    (``Recovery.assign``) and, the first time, the last process's quarantine note."""

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        status.ready = False

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned = {tp.partition for tp in args[0] if tp.topic == names.events}
        status.ready = False
        if processor.quarantine is None:  # the last process's unfinished run, if any
            processor.quarantine = Quarantine.open(
                settings.data_dir, str(settings.web_port), after=settings.quarantine_after,
                topics=(names.events, names.labels),
            )  # fmt: skip
        await recovery.assign(assigned)  # raises (and Faust crashes the worker) on a wrong key
        status.ready = True
        # Each partition's champion (a promotion, an import or a rollback may have made
        # it other than RIVERBED_MODEL's first).
        by_champion: dict[str, list[int]] = {}
        for p in sorted(assigned):
            if processor.learners.has(p):
                by_champion.setdefault(processor.learners.get(p).spec.name, []).append(p)
        champions = "; ".join(f"{name} on {ps}" for name, ps in by_champion.items()) or model
        logger.info("riverbed owns partitions %s (champion %s; restore took %.2f s)",
                    sorted(assigned), champions, recovery.seconds)  # fmt: skip


def _timers(
    app: faust.App,
    settings: Settings,
    publisher: MetricsPublisher,
    checkpointer: Checkpointer,
    broker_watch: BrokerWatch,
) -> None:
    """The worker's periodic work: metrics records, log summaries, due checkpoints, the
    broker watch, and (where Linux's parent-death signal is missing) the supervisor's."""
    app.timer(settings.metrics_interval)(publisher.publish)
    app.timer(logs.LIMIT.window)(logs.flush)
    app.timer(1.0)(checkpointer.checkpoint_if_due)

    @app.timer(1.0)
    async def watch_broker() -> None:  # /ready says when no broker answers for minutes
        broker_watch.saw(compat.coordinator_known(app.consumer), time.monotonic())

    if not sys.platform.startswith("linux"):  # Linux: PR_SET_PDEATHSIG (lifetime.py)

        @app.timer(1.0)
        async def watch_supervisor() -> None:
            if supervisor_gone():
                logger.error("the supervisor is gone; this worker stops")
                os.kill(os.getpid(), signal.SIGTERM)  # Faust's own graceful stop
