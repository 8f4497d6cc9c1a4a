"""riverbed's topics: names from settings, and creating them with the right partitions.

Faust only creates topics it owns (``internal=True``), and a topic auto-created by
the broker on first produce gets ``num.partitions`` (1), which would silently break
co-partitioning of events and labels. So the worker and ``riverbed produce`` both call
:func:`ensure_topics` first: it creates what is missing with ``RIVERBED_PARTITIONS``
and refuses to start when events, labels and predictions disagree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from app.config import Settings
from app.exceptions import ConfigError

__all__ = ["TopicNames", "ensure_topics"]

logger = logging.getLogger(__name__)

NAMES = ("events", "labels", "predictions", "metrics", "dlq", "snapshots")
# These must share a partition count: a label joins its event in the same partition,
# a prediction is written to its event's partition, and so is its learner's snapshot.
CO_PARTITIONED = ("events", "labels", "predictions", "snapshots")
# The snapshots topic keeps the latest record per key; small segments let the log
# cleaner drop superseded snapshots soon, so recovery reads little.
SNAPSHOT_CONFIG = {
    "cleanup.policy": "compact",
    "segment.ms": "600000",
    "min.cleanable.dirty.ratio": "0.1",
}


@dataclass(frozen=True)
class TopicNames:
    """Full topic names for one prefix."""

    events: str
    labels: str
    predictions: str
    metrics: str
    dlq: str
    snapshots: str

    @classmethod
    def from_settings(cls, settings: Settings) -> TopicNames:
        return cls(**{n: settings.topic(n) for n in NAMES})


async def ensure_topics(settings: Settings, *, timeout: float = 30.0) -> dict[str, int]:
    """Create missing riverbed topics; return each topic's partition count.

    Raises
    ------
    ConfigError
        When events, labels and predictions exist with different partition counts.

    """
    names = TopicNames.from_settings(settings)
    wanted = {getattr(names, n): n for n in NAMES}
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap, request_timeout_ms=int(timeout * 1000)
    )
    await asyncio.wait_for(admin.start(), timeout)
    try:
        existing = await _partition_counts(admin, list(wanted))
        missing = [t for t in wanted if t not in existing]
        if missing:
            new = [
                NewTopic(
                    t,
                    settings.partitions,
                    settings.replication,
                    topic_configs=SNAPSHOT_CONFIG if t == names.snapshots else None,
                )
                for t in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker won the race
                await admin.create_topics(new)
            logger.info("created topics %s with %d partitions", missing, settings.partitions)
            for _ in range(50):  # metadata is eventually consistent after creation
                existing = await _partition_counts(admin, list(wanted))
                if all(t in existing for t in wanted):
                    break
                await asyncio.sleep(0.1)
    finally:
        await admin.close()
    counts = {getattr(names, n): existing.get(getattr(names, n), 0) for n in CO_PARTITIONED}
    if counts[names.events] != settings.partitions:
        logger.warning(
            "%s exists with %d partitions; RIVERBED_PARTITIONS=%d only applies to "
            "topics riverbed creates",
            names.events,
            counts[names.events],
            settings.partitions,
        )
    if len(set(counts.values())) != 1:
        detail = ", ".join(f"{t}={c}" for t, c in counts.items())
        msg = f"topics must have the same number of partitions ({detail}); see RIVERBED_PARTITIONS"
        raise ConfigError(msg)
    return existing


async def _partition_counts(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    # Describe only topics that exist: a metadata request naming a missing topic makes a
    # broker with auto.create.topics.enable create it with num.partitions (often 1).
    present = set(await admin.list_topics())
    wanted = [t for t in topics if t in present]
    out: dict[str, int] = {}
    if not wanted:
        return out
    for desc in await admin.describe_topics(wanted):
        if desc.get("error_code", 0) == 0 and desc.get("partitions"):
            out[desc["topic"]] = len(desc["partitions"])
    return out
