"""The transport's hold on aiokafka's fetch wait, against a real, started aiokafka consumer.

``BatchConsumerThread.pace`` writes aiokafka's private ``Fetcher._fetch_max_wait_ms``
(there is no public setter; ``riverbed.kafka.compat`` lists it); this test runs it on the
installed aiokafka's own objects, so an upgrade that renames or moves the attribute
fails here.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from riverbed.kafka import compat
from riverbed.kafka.transport import BatchConsumerThread
from tests.integration.helpers import Names, produce


def test_the_broker_wait_is_short_while_records_flow_and_kafkas_default_when_idle(
    kafka: str, names: Names
) -> None:
    produce(kafka, names.topic("events"), [(b"k", b"{}", None)])  # a partition to fetch

    async def scenario() -> list[int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka, fetch_max_wait_ms=20)
        await consumer.start()
        consumer.assign([TopicPartition(names.topic("events"), 0)])
        await consumer.getmany(timeout_ms=1000)  # the fetcher running, as in the worker
        try:
            thread = object.__new__(BatchConsumerThread)  # only the pacing
            compat.set_thread_consumer(thread, consumer)
            thread._busy_wait_ms = 20
            seen = []
            for busy, busy_wait in ((False, 20), (True, 20), (False, 900)):
                thread._busy_wait_ms = busy_wait
                thread.pace(busy)
                seen.append(compat.fetch_max_wait(consumer))
            return seen
        finally:
            await consumer.stop()

    # idle: Kafka's default; busy: the configured wait; a configured wait above the
    # idle one is kept
    assert asyncio.run(scenario()) == [500, 20, 900]
