"""Issue 15: every catalog model takes numbers, booleans and strings in one event,
through the real broker; a model that cannot be pickled is refused at start-up."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from riverbed import models
from tests.helpers import wait_for
from tests.integration.helpers import (
    RECV_TIMEOUT_S,
    Names,
    consume,
    produce,
    riverbed,
    riverbed_env,
    total,
)

N_EVENTS = 300


def _mixed_events(task: str, seed: int = 15) -> list[dict[str, Any]]:
    """Floats, ints, booleans and strings; a feature missing now and then, a string
    feature first seen midway; an inline label on 9 events in 10 (numeric for a
    regressor)."""
    rng = random.Random(seed)
    events = []
    for i in range(N_EVENTS):
        x: dict[str, Any] = {
            "amount": round(rng.uniform(0, 500), 2),
            "items": rng.randint(1, 9),
            "new_user": rng.random() < 0.3,
            "country": rng.choice(["FR", "DE", "US", "JP"]),
            "device": rng.choice(["ios", "android", "web"]),
        }
        if rng.random() < 0.1:
            del x[rng.choice(sorted(x))]
        if i >= N_EVENTS // 2:
            x["plan"] = rng.choice(["free", "pro"])
        event: dict[str, Any] = {"id": f"e{i}", "x": x}
        if i % 10 != 9:
            fraud = (x.get("amount", 0.0) > 250) != bool(x.get("new_user"))
            event["y"] = x.get("amount", 0.0) / 10 if task == "regression" else fraud
        events.append(event)
    return events


def _records(bootstrap: str, topic: str) -> int | None:
    """How many records ``topic`` holds, over its partitions (None: no such topic)."""

    async def count() -> int | None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            if topic not in await consumer.topics():
                return None
            partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in partitions]
            return sum((await consumer.end_offsets(tps)).values())
        finally:
            await consumer.stop()

    return asyncio.run(count())


@pytest.mark.parametrize("model", models.available())
def test_every_catalog_model_learns_mixed_feature_types(
    kafka: str, names: Names, start_worker: Any, model: str
) -> None:
    task = models.spec(model).task
    worker = start_worker(partitions=1, model=model)
    events = _mixed_events(task)
    produce(kafka, names.topic("events"), [(e["id"].encode(), orjson.dumps(e), 0) for e in events])
    labelled = sum("y" in e for e in events)
    # An anomaly model learns from every event; the others from the labelled ones.
    expected = len(events) if task == "anomaly" else labelled
    wait_for(
        lambda: total(worker, "events") == len(events) and total(worker, "learned") == expected,
        timeout=RECV_TIMEOUT_S,
        what=f"{model}: {len(events)} events handled, {expected} learned",
    )
    preds = [orjson.loads(r.value) for r in consume(kafka, names.topic("predictions"), len(events))]
    assert sorted(p["id"] for p in preds) == sorted(e["id"] for e in events)
    assert all("y_pred" in p for p in preds)
    assert _records(kafka, names.topic("dlq")) == 0
    assert total(worker, "learned") == expected
    assert worker.alive()


def test_a_model_that_cannot_be_pickled_stops_start_up(kafka: str, names: Names) -> None:
    """Refused before any topic is made, not at the first checkpoint."""
    res = riverbed(
        "worker",
        env=riverbed_env(kafka, names, model="tests.faulty_model:unpicklable"),
        timeout=60,
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert "RIVERBED_MODEL='tests.faulty_model:unpicklable'" in res.stderr
    assert "cannot be pickled" in res.stderr and "_thread.lock" in res.stderr
    assert _records(kafka, names.topic("events")) is None
