"""Build the Faust application from settings."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

import faust
from faust.app.base import BootStrategy
from faust.types import TP
from prometheus_client import CollectorRegistry

import models
from app import agents, logs, web
from app.checkpoint import Checkpointer, SnapshotCodec, load_key
from app.config import PROJECT_ROOT, Settings
from app.exceptions import ConfigError
from app.intake import Intake
from app.metrics import RiverbedMetrics
from app.processor import Processor
from app.records import encode
from app.recovery import Recovery
from app.state import Learners
from app.topics import DEFAULT_MAX_MESSAGE_BYTES, DLQ_HEADROOM_BYTES, Layout, TopicNames
from app.transport import BatchTransport

__all__ = ["check_layout", "create_app"]

logger = logging.getLogger(__name__)

PRODUCER_BATCH_BYTES = 512 * 1024
FETCHES_QUEUED = 4  # fetches waiting for the agent; more only lengthens a rebalance
REQUEST_OVERHEAD_BYTES = 16 * 1024  # a produce request's framing around one record
CHUNK_OVERHEAD_BYTES = 1024  # a snapshot chunk record's key, headers and framing


def check_layout(settings: Settings, layout: Layout) -> None:
    """Refuse settings the cluster cannot honour, before the worker joins the group.

    Raises
    ------
    ConfigError
        Naming the variable: a session timeout outside the brokers' group bounds (the
        group would refuse the member, and the worker would sit ready with no
        partitions), or snapshot chunks larger than the snapshots topic takes.

    """
    lo, hi = layout.session_timeout_ms
    ms = settings.session_timeout * 1000
    if not lo <= ms <= hi:
        msg = (
            f"RIVERBED_SESSION_TIMEOUT={settings.session_timeout:g}: the brokers accept "
            f"{lo / 1000:g} to {hi / 1000:g} s (group.min/max.session.timeout.ms)"
        )
        raise ConfigError(msg)
    room = layout.snapshots_max_bytes - CHUNK_OVERHEAD_BYTES
    if settings.snapshot_chunk_bytes > room:
        msg = (
            f"RIVERBED_SNAPSHOT_CHUNK_BYTES={settings.snapshot_chunk_bytes}: a chunk record "
            f"must fit the snapshots topic's max.message.bytes "
            f"({layout.snapshots_max_bytes}); use at most {room}"
        )
        raise ConfigError(msg)


class Worker(faust.Worker):
    """Faust's worker, without its start-up spinner and with a frozen start-up heap.

    At log level warning or error Faust installs a terminal spinner that sets the root
    logger to DEBUG, so that every library's log call turns it, and leaves it so after
    start-up: each of aiokafka's per-fetch and per-request debug calls then builds a
    LogRecord and walks the handlers, only for them to drop it. A worker is a service,
    so it goes without the spinner and the root logger keeps the configured level.
    """

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None
        super().on_setup_root_logger(logger, level)
        logs.install(logger)  # floods of one line become a few lines and a count

    async def on_first_start(self) -> None:
        # Everything imported and built before start-up (Faust, aiokafka, River, numpy,
        # scipy: ~125,000 objects) lives as long as the process. Unfrozen, every full
        # collection walks it all again, ~75 ms here with the loop held: a latency
        # spike for every event in flight. Frozen, a full collection walks only what
        # was made since (the gc.freeze advice for long-running servers).
        _freeze_heap()
        await super().on_first_start()

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        _freeze_heap()  # and the services, clients and learners start-up made


def _freeze_heap() -> None:
    gc.collect()
    gc.freeze()


class Boot(BootStrategy):
    """Faust's boot strategy, plus the background producer (see :func:`create_app`).

    Started with Faust's producer, before the consumer, and stopped after the
    consumer, whose last drain writes a checkpoint through it.
    """

    def __init__(self, app: faust.App, background: Any) -> None:
        super().__init__(app)
        self.background = background

    def kafka_producer(self) -> list[Any]:
        producers = list(super().kafka_producer())
        return [*producers, self.background] if producers else producers


def create_app(settings: Settings, layout: Layout | None = None) -> faust.App:
    """The riverbed worker: one agent, per-partition learners, checkpoints, HTTP views.

    ``layout`` is what :func:`app.topics.ensure_topics` found (the CLI passes it): the
    producers' request limit follows the dead-letter topic's.
    """
    spec = models.spec(settings.model)
    dlq_max = layout.dlq_max_bytes if layout else DEFAULT_MAX_MESSAGE_BYTES + DLQ_HEADROOM_BYTES
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
        broker_session_timeout=settings.session_timeout,
        # A member learns of a rebalance at its next heartbeat: at 1 s rather than
        # Kafka's 3 s, a worker that leaves hands its partitions over in ~2 s
        # (tests/integration/test_faults.py); one small request a second per worker.
        broker_heartbeat_interval=min(1.0, settings.session_timeout / 3),
        broker_max_poll_records=settings.batch_max,
        # The agent sends a fetch's predictions per partition as one record batch;
        # aiokafka queues one batch per partition at a time, so a small cap makes the
        # agent wait for the sender between batches. Below the broker's
        # message.max.bytes (1 MiB by default).
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        # Any dead letter must fit (app/topics.py: the dead-letter topic takes the
        # largest source record plus riverbed's headers); aiokafka refuses a larger
        # record in send() itself, which stopped the worker.
        producer_max_request_size=dlq_max + REQUEST_OVERHEAD_BYTES,
        Worker=Worker,
    )
    names = TopicNames.from_settings(settings)
    learners = Learners(
        spec,
        pending_max=settings.pending_max,
        pending_max_bytes=settings.pending_max_bytes,
        max_features=settings.max_features,
        pending_ttl_ms=int(settings.pending_ttl * 1000),
        drift_detector=settings.drift_detector,
        drift_reset=settings.drift_action == "reset",
    )
    metrics = RiverbedMetrics.create(CollectorRegistry())
    processor = Processor(
        learners,
        names,
        max_record_bytes=settings.max_record_bytes,
        metrics=metrics,
        dlq_max_bytes=dlq_max,
    )

    def kafka_producer() -> Any:
        """Faust's own aiokafka producer (aiokafka driver), started before agents.

        Every per-event output (predictions, dead letters, drift events) goes straight
        through it, not through Faust's topic layer: a Faust topic's first send
        declares the topic (a CreateTopics round trip on the consumer's thread, which
        stalled fetching ~80 ms), and its ``send_soon`` buffer publishes one message at
        a time. riverbed creates its topics itself.
        """
        return app.producer._ensure_producer()  # type: ignore[attr-defined]

    def background_producer() -> Any:
        """The producer of snapshots and metrics (built below, with the transport)."""
        return background._ensure_producer()  # type: ignore[attr-defined]

    async def send_snapshot_record(k: bytes, v: bytes, h: list[tuple[str, bytes]], p: int) -> Any:
        delivery = await background_producer().send(
            names.snapshots, v, key=k, headers=h, partition=p
        )
        return await delivery

    key = load_key(settings.snapshot_key, PROJECT_ROOT / ".riverbed" / "snapshot.key")
    codec = SnapshotCodec(key, settings.snapshot_chunk_bytes, model_name=spec.name)
    # Fail-stop (Checkpointer.fail): Faust's crash stops the worker, which exits non-zero.
    stopping: list[asyncio.Future[None]] = []
    checkpointer = Checkpointer(
        learners,
        codec,
        send=send_snapshot_record,
        topics=(names.events, names.labels),
        every=settings.snapshot_every,
        interval=settings.snapshot_interval,
        on_failure=lambda reason: stopping.append(asyncio.ensure_future(app.crash(reason))),
    )
    # Fetches of events and labels reach the agent whole, through this channel (see
    # app/intake.py); the transport must be ours before anything asks for Faust's.
    fetches: faust.ChannelT = app.channel(maxsize=FETCHES_QUEUED)
    intake = Intake(
        fetches,
        {names.events, names.labels},
        on_drained=checkpointer.checkpoint,
        committable=checkpointer.committable,
    )
    recovery = Recovery(
        learners,
        codec,
        names,
        group=settings.app_id,
        bootstrap=settings.bootstrap,
        checkpointer=checkpointer,
        client=settings.kafka_client(),
    )
    app.transport = BatchTransport(
        app.conf.broker_consumer,
        app,
        intake=intake,
        recovery=recovery,
        fetch_max_wait=settings.fetch_max_wait,
        consumer_thread=settings.consumer_thread,
    )
    # Snapshots and metrics go through a second producer, built by the same transport
    # from the same settings (credentials, TLS, acks). aiokafka keeps one produce
    # request in flight per broker (Kafka's Java producer allows five), and its
    # send_batch waits while a partition's previous batch is queued: one slow request
    # holds every batch behind it. A snapshot's append is the one that is slow at
    # times: the broker materialises a log segment's index files on its first index
    # entry, after its first 4 KiB (index.interval.bytes), and that append took
    # 20-100 ms on a new snapshots topic. Sharing the producer stalled the agent as
    # long (docs/performance.md, change 13). The checkpoint still awaits the
    # predictions before it writes a snapshot, so the order a snapshot promises is
    # kept across the two.
    background = app.transport.create_producer(loop=app.loop, beacon=app.beacon)
    background.client_id = f"{app.conf.broker_client_id}-background"
    app.boot_strategy = Boot(app, background)
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    # Not iterated by a stream: declared so Faust subscribes to it (its fetches go
    # to the intake).
    source = app.topic(names.events, names.labels, **raw)
    app.topics.add(source)
    status = web.WorkerStatus()

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        status.ready = False

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned = {tp.partition for tp in args[0] if tp.topic == names.events}
        status.ready = False
        await recovery.assign(assigned)  # raises (and Faust crashes the worker) on a wrong key
        status.ready = True
        logger.info(
            "riverbed owns partitions %s (model %s; restore took %.2f s)",
            sorted(assigned),
            spec.name,
            recovery.seconds,
        )

    @app.timer(logs.LIMIT.window)
    async def report_held_log_lines() -> None:
        logs.LIMIT.flush()

    @app.timer(1.0)
    async def checkpoint_when_due() -> None:
        if checkpointer.due():
            await checkpointer.checkpoint()

    def document() -> dict[str, Any]:
        """The /models body; Prometheus' scrape-time metrics are read from it too."""
        return {
            **learners.describe(),
            **processor.describe(),
            **checkpointer.describe(),
            **intake.describe(),
            **recovery.describe(),
            "ready": status.ready,
            "drift_detector": settings.drift_detector,
        }

    def lag(partition: int) -> int | None:
        if not learners.has(partition):
            return None
        try:
            high = app.consumer.highwater(TP(names.events, partition))
        except Exception:
            return None
        if high is None or high < 0:
            return None
        return max(0, int(high) - (learners.get(partition).last_offset + 1))

    metrics.register_collector(document, lag)

    @app.timer(settings.metrics_interval)
    async def publish_metrics() -> None:
        """One record per partition on the metrics topic: counts, metric, latency, drifts."""
        now_ms = int(time.time() * 1000)

        def record(p: int, learner: Any) -> bytes:
            return encode(
                {
                    "type": "metrics",
                    "partition": p,
                    "ts": now_ms,
                    "model": spec.name,
                    **learner.describe(),
                    "latency_ms": metrics.latency_quantiles_ms(p),
                }
            )

        # All read before the first send: a checkpoint during a send may swap a
        # partition's learner for its copy (app/inline.py).
        records = [(p, record(p, learner)) for p, learner in learners.items()]
        for p, value in records:
            checkpointer.track(
                await background_producer().send(
                    names.metrics, value, key=str(p).encode(), partition=p
                ),
                names.metrics,
            )

    agents.register(app, fetches, intake, processor, checkpointer, kafka_producer)
    web.register(app, document, status, metrics)
    return app
