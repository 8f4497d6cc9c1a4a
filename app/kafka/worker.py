"""The Faust side of a worker: the app with riverbed's settings, its worker, its producers.

riverbed's outputs go straight through aiokafka producers that Faust starts and stops:
Faust's own (predictions, dead letters, drift events) and a second one, built by the
same transport from the same settings, for snapshots and metrics
(:class:`Producers`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import faust
from faust.app.base import BootStrategy
from faust.tables.manager import TableManager as FaustTableManager

from riverbed import logs
from riverbed.config import Settings
from riverbed.kafka import compat, security
from riverbed.kafka.assignor import Assignor
from riverbed.protocols import RecordProducer

__all__ = ["Producers", "SnapshotSink", "Worker", "faust_app"]

PRODUCER_BATCH_BYTES = 512 * 1024
REQUEST_OVERHEAD_BYTES = 16 * 1024  # a produce request's framing around one record


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

    async def _sentinel_task(self) -> None:
        """The last thing mode's worker runs before it closes the loop.

        mode's is a fixed ``asyncio.sleep(1.0)``, so that the tasks it has just
        cancelled can finish and the transports they closed can call back: every stop
        took a second more than its work (a rebalance hand-over, a supervisor's
        restart, a deploy, each test's worker). This waits for those tasks, never
        longer than mode did, then 50 ms for the closes they started that take more
        than one turn of the loop (a TLS connection's close_notify).
        """
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        deadline = loop.time() + 1.0
        while (others := asyncio.all_tasks() - {me}) and (left := deadline - loop.time()) > 0:
            await asyncio.wait(others, timeout=left)
        await asyncio.sleep(0.05)  # the transports' close callbacks


def _freeze_heap() -> None:
    gc.collect()
    gc.freeze()


class TableManager(FaustTableManager):
    """Faust's table manager, without its one-second wait at start when there are no
    tables: Faust sleeps 1 s so that tables declared late can register before recovery;
    riverbed declares none (its state is the learners, snapshotted by
    ``app/checkpoint``), and that second was half of a restarted worker's start once
    Python was warm (the supervisor's warm spare)."""

    async def on_start(self) -> None:
        if self.data:  # some app's tables: Faust's own start, with its wait
            await super().on_start()
            return
        await compat.update_table_channels(self)
        await self.recovery.start()


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


def faust_app(settings: Settings, *, dlq_max_bytes: int, replication: int = 1) -> faust.App:
    """The Faust app of a riverbed worker (no agents, topics or views yet)."""
    app = faust.App(
        settings.app_id,
        broker=settings.faust_broker,
        # TLS and SASL for every consumer and producer Faust makes (client_args' own).
        broker_credentials=security.faust_credentials(settings),
        store="memory://",
        autodiscover=False,
        datadir=settings.data_dir,
        topic_partitions=settings.partitions,
        # Faust's own topics (its assignor's) as riverbed's: RIVERBED_REPLICATION resolved
        topic_replication_factor=replication,
        web_host=settings.web_host,
        web_bind=settings.web_host,  # Faust binds 0.0.0.0 by default; we do not
        web_port=settings.web_port,
        # What the group's assignment tells the other members this worker's URL is
        # (POST /predict forwards there; Faust's default names the host, not the
        # interface the server is bound to).
        canonical_url=settings.advertised_url,
        # Static membership (KIP-345) when set: a restarted process with the same id
        # gets its partitions back with no rebalance of the others (the supervisor gives
        # each slot one).
        consumer_group_instance_id=settings.group_instance_id or None,
        # A static member restarted at another URL (app/kafka/assignor.py).
        PartitionAssignor=Assignor,
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
        # Any dead letter must fit (app/kafka/topics.py: the dead-letter topic takes the
        # largest source record plus riverbed's headers); aiokafka refuses a larger
        # record in send() itself, which stopped the worker.
        producer_max_request_size=dlq_max_bytes + REQUEST_OVERHEAD_BYTES,
        Worker=Worker,
        TableManager=TableManager,
    )
    # acks=all, set after the app is made: Faust's PRODUCER_ACKS environment variable
    # overrides an argument. A snapshot or prediction is acknowledged once
    # min.insync.replicas have it (the snapshots topic asks 2).
    app.conf.producer_acks = -1
    return app


class Producers:
    """The worker's two aiokafka producers; both started before the agents.

    ``predictions()`` is Faust's own producer: every per-event output (predictions,
    dead letters, drift events) goes straight through it, not through Faust's topic
    layer: a Faust topic's first send declares the topic (a CreateTopics round trip on
    the consumer's thread, which stalled fetching ~80 ms), and its ``send_soon`` buffer
    publishes one message at a time. riverbed creates its topics itself.

    Snapshots and metrics go through a second producer, built by the same transport
    from the same settings (credentials, TLS, acks). aiokafka keeps one produce
    request in flight per broker (Kafka's Java producer allows five), and its
    send_batch waits while a partition's previous batch is queued: one slow request
    holds every batch behind it. A snapshot's append is the one that is slow at
    times: the broker materialises a log segment's index files on its first index
    entry, after its first 4 KiB (index.interval.bytes), and that append took
    20-100 ms on a new snapshots topic. Sharing the producer stalled the agent as
    long (docs/performance.md, change 13). The checkpoint still awaits the
    predictions before it writes a snapshot, so the order a snapshot promises is
    kept across the two. Build it once the app's transport is riverbed's.
    """

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self.background = app.transport.create_producer(loop=app.loop, beacon=app.beacon)
        self.background.client_id = f"{app.conf.broker_client_id}-background"
        app.boot_strategy = Boot(app, self.background)

    def predictions(self) -> RecordProducer:
        """Faust's aiokafka producer (predictions, dead letters, drift events)."""
        return compat.producer_of(self.app.producer)

    def background_producer(self) -> RecordProducer:
        """The aiokafka producer of snapshots and metrics."""
        return compat.producer_of(self.background)

    async def send_and_wait(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]], partition: int
    ) -> Any:
        """A record on the background producer; returns once Kafka has it."""
        delivery = await self.background_producer().send(
            topic, value, key=key, headers=headers, partition=partition
        )
        return await delivery


class SnapshotSink:
    """Where the checkpoint writes its snapshots, and whom it tells when it fails: the
    background producer (acks=all), and Faust's crash (the worker stops, exit != 0).

    Built before the producers (the checkpoint is needed to build the transport, and
    the producers need the transport): :attr:`producers` is set once they exist.
    """

    def __init__(self, app: faust.App, topic: str, versions: str) -> None:
        self.app = app
        self.topic = topic
        self.versions = versions
        self.producers: Producers | None = None
        self._crash: list[asyncio.Future[None]] = []  # held until the worker stops

    async def send(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]],
                   partition: int) -> Any:  # fmt: skip
        """A snapshot's record; returns once Kafka has it."""
        return await self._send("snapshot", self.topic, key, value, headers, partition)

    async def send_version(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]],
                           partition: int) -> Any:  # fmt: skip
        """A version's record (a snapshot's, copied); returns once Kafka has it."""
        return await self._send("version", self.versions, key, value, headers, partition)

    async def _send(self, what: str, topic: str, key: bytes, value: bytes,
                    headers: list[tuple[str, bytes]], partition: int) -> Any:  # fmt: skip
        if self.producers is None:
            msg = f"a {what} was sent before the worker's producers were built"
            raise RuntimeError(msg)
        return await self.producers.send_and_wait(topic, key, value, headers, partition)

    def on_failure(self, reason: BaseException) -> None:
        """The checkpoint failed: the worker stops (a restart redoes what it had not)."""
        self._crash.append(asyncio.ensure_future(self.app.crash(reason)))
