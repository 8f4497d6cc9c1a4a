"""The one Faust agent: whole fetches in -> Processor -> batched sends out.

Events and labels are one Faust topic with two names. Faust's consumer hands this
agent each fetch of them as one value on a channel (``app/kafka/intake.py`` says why), so a
partition's records are handled by one coroutine, in offset order per topic, in a
plain loop. Predictions of a fetch go out per partition as aiokafka record batches
(``create_batch``/``send_batch`` on the producer Faust runs): one delivery future per
batch, not one per record. Dead letters and drift records are single sends. Nothing
here awaits a delivery; the :class:`~riverbed.checkpoint.snapshots.Checkpointer` awaits them all
before it writes the snapshot whose offsets the consumer then commits. An error
half-way through a fetch stops the worker (:meth:`~riverbed.checkpoint.snapshots.Checkpointer.fail`)
rather than let a later snapshot cover records whose outputs are not in Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import faust
from faust.types import TP

from riverbed.checkpoint.snapshots import Checkpointer
from riverbed.kafka.intake import Fetch, Intake
from riverbed.pipeline.processor import Outgoing, Processor
from riverbed.protocols import RecordProducer

__all__ = ["register"]

logger = logging.getLogger(__name__)

INSTALL_TIMEOUT_S = 60.0  # longest wait for a newly assigned partition's snapshot
# About the longest the agent handles records before it gives the loop a turn.
SLICE_SECONDS = 0.005


class Slicer:
    """How many records of a partition to handle before the loop gets a turn.

    The agent rarely suspends by itself: ``send_batch`` returns at once while the
    sender keeps up, and the channel hands out queued fetches without waiting. So
    everything else on the loop (a checkpoint's ~6 awaits, the web server, the consumer)
    waited for whole partitions of whole fetches: at full speed a ``hoeffding``
    checkpoint took 350-600 ms, one step a fetch, and "every 1,000 records" became a
    checkpoint every ~9,000. While a checkpoint runs, the agent handles slices of
    ~``SLICE_SECONDS``, sized from the last slice's time a record (models differ 40x:
    ``logreg`` ~15 µs, ``arf`` ~600 µs), with a turn of the loop after each.

    Examples
    --------
    >>> slicer = Slicer()
    >>> slicer.size
    256
    >>> slicer.took(256, 0.0128)  # 50 µs a record
    >>> slicer.size
    100
    >>> slicer.took(100, 0.0)
    >>> slicer.size
    4096

    """

    MIN, MAX = 1, 4096

    def __init__(self) -> None:
        self.size = 256

    def took(self, records: int, seconds: float) -> None:
        per_record = seconds / records if records else 0.0
        fits = int(SLICE_SECONDS / per_record) if per_record > 0 else self.MAX
        self.size = max(self.MIN, min(self.MAX, fits))


class Agent:
    """The agent's work on one fetch: each partition's records through the processor,
    in slices while a checkpoint waits for the loop, and what they produced sent."""

    def __init__(self, intake: Intake, processor: Processor, checkpointer: Checkpointer) -> None:
        self.intake = intake
        self.processor = processor
        self.checkpointer = checkpointer
        self.learners = processor.learners
        self.predictions_topic = processor.topics.predictions
        self.slicer = Slicer()
        self.others: list[Outgoing] = []  # a fetch's records besides predictions

    async def installed(self, tp: TP) -> bool:
        """Whether ``tp``'s learner is (or, within the timeout, becomes) this worker's."""
        if self.learners.has(tp.partition):
            return True
        installed = asyncio.Event()
        self.learners.when_installed(tp.partition, installed.set)
        try:
            await asyncio.wait_for(installed.wait(), INSTALL_TIMEOUT_S)
            return True
        except TimeoutError:
            # Not ours after all (a stale fetch): the owner handles it.
            logger.warning("skipping a fetch of %s[%d]: partition not assigned here", *tp)
            return False

    async def handle_fetch(self, fetch: Fetch, producer: RecordProducer) -> None:
        runs: Iterable[tuple[TP, Sequence[Any]]] = fetch.records.items()
        joiner = self.intake.joiner
        if joiner is not None:
            # A partition's events and labels in one order that depends only on the
            # records (app/kafka/join.py): some may wait for the other topic's fetch.
            for tp, records in fetch.records.items():
                if await self.installed(tp):
                    joiner.add(tp, records)
            runs = joiner.ready()
        for tp, records in runs:
            if await self.installed(tp):
                await self.handle_run(tp, records, producer)
        track = self.checkpointer.track
        for out in self.others:  # dead letters, drift records, shadow predictions
            delivery = await producer.send(
                out.topic, out.value, key=out.key, partition=out.partition, headers=out.headers
            )
            track(delivery, out.topic)
        self.others.clear()

    async def handle_run(self, tp: TP, records: Sequence[Any], producer: RecordProducer) -> None:
        """One partition's records of one topic: whole while no checkpoint waits for the
        loop (a turn costs ~2% at 5 ms slices for logreg), in slices while one does."""
        checkpointing = self.checkpointer.busy
        clock = time.perf_counter
        p = tp.partition
        start, n = 0, len(records)
        while start < n:
            size = self.slicer.size if checkpointing() else n
            part = records[start : start + size] if start or n > size else records
            start += len(part)
            t0 = clock()
            handled = self.processor.handle_many(tp.topic, p, part)
            self.slicer.took(len(part), clock() - t0)
            self.checkpointer.note(p, len(part))
            if handled.predictions:
                await self.send_predictions(producer, p, handled.predictions)
            if handled.others:
                self.others.extend(handled.others)
            if start < n or checkpointing():
                await asyncio.sleep(0)  # the loop's turn (Slicer)

    async def send_predictions(
        self, producer: RecordProducer, p: int, outs: list[tuple[bytes | None, bytes, int]]
    ) -> None:
        track, topic = self.checkpointer.track, self.predictions_topic
        batch = producer.create_batch()
        # Each prediction's Kafka timestamp is when it was made (its "ts"), not when the
        # partition's batch was built after all of its records.
        for key, value, ts in outs:
            if batch.append(key=key, value=value, timestamp=ts) is None:
                # full: send it, start the next one
                track(await producer.send_batch(batch, topic, partition=p), topic)
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=ts)
        track(await producer.send_batch(batch, topic, partition=p), topic)


def register(
    app: faust.App,
    channel: faust.ChannelT,
    intake: Intake,
    processor: Processor,
    checkpointer: Checkpointer,
    kafka_producer: Callable[[], RecordProducer],
) -> Any:
    """Attach the learning agent to ``app``; return it."""
    agent = Agent(intake, processor, checkpointer)
    metrics = processor.metrics

    @app.agent(channel, name="riverbed.learn")
    async def learn(stream: faust.StreamT[Fetch]) -> None:
        # Faust's own aiokafka producer (started before agents); its flush() still
        # runs before every commit, and the checkpointer awaits each delivery anyway.
        producer = kafka_producer()
        intake.attach()
        try:
            async for fetch in stream:
                if not intake.begin(fetch):
                    continue  # fetched before a rebalance; Faust seeks back to it
                t0 = time.perf_counter()
                try:
                    await agent.handle_fetch(fetch, producer)
                except Exception as exc:
                    # Part of this fetch may be learned without its predictions sent:
                    # fail-stop, so no snapshot covers it and a restart redoes it.
                    checkpointer.fail(exc)
                    return
                finally:
                    intake.end()
                if metrics is not None:
                    metrics.batch.observe(time.perf_counter() - t0)
                if checkpointer.due():
                    checkpointer.request()
        finally:
            intake.detach()

    return learn
