"""``riverbed produce``: replay a River dataset or a synthetic stream into ``events``.

Bundled datasets (no download): phishing, bananas, imagesegments, trumpapproval.
Synthetic streams (infinite unless ``--limit``): agrawal, sea, hyperplane, and
``drift``, a ConceptDriftStream from Agrawal function 0 to function 4 at ``--drift-at``.

Labels go inline (``"y"`` in the event) by default. With ``--label-delay N`` the event
is sent without ``y`` and its label is sent on ``labels``, with the same key and
partition, after ``N`` more events: a deterministic delay, so runs are reproducible.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from river import datasets
from river.datasets import synth

from riverbed.config import Settings
from riverbed.kafka.topics import TopicNames, ensure_topics
from riverbed.records import encode

__all__ = ["DATASETS", "ProduceStats", "dataset_stream", "produce"]

logger = logging.getLogger(__name__)

DATASETS = (
    "phishing",
    "bananas",
    "imagesegments",
    "trumpapproval",
    "agrawal",
    "sea",
    "hyperplane",
    "drift",
)
KEYS = ("id", "none")


def dataset_stream(
    name: str, *, seed: int = 42, drift_at: int = 5000, drift_width: int = 500
) -> Iterator[tuple[dict[str, Any], Any]]:
    """``(x, y)`` pairs of a dataset by name."""
    if name == "phishing":
        return iter(datasets.Phishing())
    if name == "bananas":
        return iter(datasets.Bananas())
    if name == "imagesegments":
        return iter(datasets.ImageSegments())
    if name == "trumpapproval":
        return iter(datasets.TrumpApproval())
    if name == "agrawal":
        return iter(synth.Agrawal(classification_function=0, seed=seed))
    if name == "sea":
        return iter(synth.SEA(variant=0, seed=seed))
    if name == "hyperplane":
        return iter(synth.Hyperplane(seed=seed, n_features=10, mag_change=0.001))
    if name == "drift":
        return iter(
            synth.ConceptDriftStream(
                stream=synth.Agrawal(classification_function=0, seed=seed),
                drift_stream=synth.Agrawal(classification_function=4, seed=seed),
                position=drift_at,
                width=drift_width,
                seed=seed,
            )
        )
    msg = f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}"
    raise ValueError(msg)


@dataclass
class ProduceStats:
    events: int = 0
    labels: int = 0
    seconds: float = 0.0
    id_prefix: str = ""


async def produce(
    settings: Settings,
    *,
    dataset: str = "phishing",
    limit: int | None = None,
    rate: float = 0.0,
    key: str = "id",
    seed: int = 42,
    label_delay: int = 0,
    labels: bool = True,
    id_prefix: str | None = None,
    drift_at: int = 5000,
    on_sent: Any = None,
    pairs: Iterable[tuple[dict[str, Any], Any]] | None = None,
) -> ProduceStats:
    """Send events (and delayed labels); return what was sent.

    ``rate`` is events per second (0: as fast as the broker takes them); the pacing
    wakes at most once a millisecond and sends the events due by then, so a high rate
    does not cost one timer per event. ``on_sent``, if given, is called with the
    running :class:`ProduceStats` about every 100 events. ``pairs``, if given, are the
    ``(x, y)`` pairs to send instead of ``dataset``: a load generator pre-builds them
    so that generating them (~120 µs an event for Agrawal on a slow core) is not
    charged to the system it measures.
    """
    if key not in KEYS:
        msg = f"--key must be one of {', '.join(KEYS)}"
        raise ValueError(msg)
    counts = await ensure_topics(settings)
    names = TopicNames.from_settings(settings)
    n_partitions = counts[names.events]
    prefix = id_prefix if id_prefix is not None else uuid.uuid4().hex[:8]
    stream = (
        iter(pairs) if pairs is not None else dataset_stream(dataset, seed=seed, drift_at=drift_at)
    )
    if limit is not None:
        stream = itertools.islice(stream, limit)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap, linger_ms=5, acks="all", max_batch_size=256 * 1024
    )
    await producer.start()
    stats = ProduceStats(id_prefix=prefix)
    waiting: deque[tuple[int, bytes | None, int | None, bytes]] = deque()
    futures: list[asyncio.Future[Any]] = []
    t0 = started = time.monotonic()
    try:
        for i, (x, y) in enumerate(stream):
            if rate > 0 and i > 0:
                ahead = t0 + i / rate - time.monotonic()
                if ahead > 0.001:
                    await asyncio.sleep(ahead)  # pacing to the requested rate
            rid = f"{prefix}-{i}"
            k = rid.encode() if key == "id" else None
            part = None if k is not None else i % n_partitions
            event: dict[str, Any] = {"id": rid, "x": x, "ts": int(time.time() * 1000)}
            if labels and label_delay == 0 and y is not None:
                event["y"] = y
            futures.append(await producer.send(names.events, encode(event), key=k, partition=part))
            if i == 0:
                # The schedule starts once the first send went through: it waited for
                # the topic's metadata, and the events due meanwhile would go as a burst.
                t0 = time.monotonic()
            stats.events += 1
            if labels and label_delay > 0 and y is not None:
                waiting.append((i + label_delay, k, part, encode({"id": rid, "y": y})))
            while waiting and waiting[0][0] <= i:
                _, lk, lp, lv = waiting.popleft()
                futures.append(await producer.send(names.labels, lv, key=lk, partition=lp))
                stats.labels += 1
            if len(futures) >= 2000:
                await asyncio.gather(*futures)
                futures.clear()
            if on_sent is not None and i % 100 == 0:
                on_sent(stats)
        while waiting:
            _, lk, lp, lv = waiting.popleft()
            futures.append(await producer.send(names.labels, lv, key=lk, partition=lp))
            stats.labels += 1
        await asyncio.gather(*futures)
        await producer.flush()
    finally:
        await producer.stop()
        stats.seconds = time.monotonic() - started
    return stats
