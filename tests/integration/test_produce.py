"""``riverbed.devtools.produce``: the load generator's pacing and pre-built events."""

from __future__ import annotations

import asyncio
import itertools

import orjson

from riverbed.config import Settings
from riverbed.devtools.produce import dataset_stream, produce
from tests.integration.helpers import Names, consume


def test_prebuilt_pairs_are_sent_in_order_no_faster_than_the_rate(kafka: str, names: Names) -> None:
    n, rate = 600, 2000.0
    pairs = list(itertools.islice(dataset_stream("agrawal", seed=5), n))
    env = {"RIVERBED_BROKER": kafka, "RIVERBED_TOPIC_PREFIX": names.prefix}
    settings = Settings.from_env({**env, "RIVERBED_PARTITIONS": "1"})
    stats = asyncio.run(produce(settings, pairs=pairs, rate=rate, id_prefix="p"))
    assert stats.events == n

    records = sorted(consume(kafka, names.topic("events"), n), key=lambda r: r.offset)
    events = [orjson.loads(r.value) for r in records]
    assert [e["id"] for e in events] == [f"p-{i}" for i in range(n)]
    assert [(e["x"], e["y"]) for e in events] == [
        (orjson.loads(orjson.dumps(x)), y) for x, y in pairs
    ]
    # Event i leaves no earlier than i / rate after the first, less the 1 ms the
    # pacing sends ahead (and 1 ms of timestamp rounding).
    first = records[0].timestamp
    for i, r in enumerate(records):
        assert r.timestamp - first >= 1000 * i / rate - 2, f"event {i} sent early"
