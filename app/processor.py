"""Processor: one raw Kafka record in, at most one record out; no faust import.

It decodes, routes to the partition's :class:`~app.learner.PartitionLearner`, and
returns the encoded prediction or the dead letter. It never raises for a bad record:
whatever breaks the contract, or makes the model raise, becomes a dead letter whose
value and key are the original bytes and whose headers say where it came from, at
which stage it failed and why. The agent only sends what this returns.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.exceptions import InvalidRecord, ModelError
from app.metrics import RiverbedMetrics
from app.records import decode_event, decode_label, encode
from app.state import Learners
from app.topics import TopicNames

__all__ = ["DLQ_HEADER_PREFIX", "Outgoing", "Processor"]

logger = logging.getLogger(__name__)

DLQ_HEADER_PREFIX = "riverbed."
Headers = Sequence[tuple[str, bytes]]


@dataclass(slots=True)
class Outgoing:
    """A record to publish: to ``predictions`` or to ``dlq``."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None
    headers: list[tuple[str, bytes]] | None = None


class Processor:
    """Turns input records into predictions and dead letters, in offset order.

    Parameters
    ----------
    learners
        The per-partition learners of this worker.
    topics
        Topic names.
    max_record_bytes
        Larger values are dead letters.

    """

    def __init__(
        self,
        learners: Learners,
        topics: TopicNames,
        *,
        max_record_bytes: int,
        metrics: RiverbedMetrics | None = None,
    ) -> None:
        self.learners = learners
        self.metrics = metrics
        # Records besides the one ``handle`` returns (drift events); the agent sends them.
        self.extra: list[Outgoing] = []
        self.topics = topics
        self.max_record_bytes = max_record_bytes
        self.model_name = learners.spec.name
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}".encode()
        self.dead_letters: dict[str, int] = {}

    def handle(
        self,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
    ) -> Outgoing | None:
        """Process one record; return what to publish (None: nothing, e.g. a label)."""
        learner = self.learners.get(partition)
        try:
            if topic == self.topics.events:
                event = decode_event(value, self.max_record_bytes)
                out = learner.process_event(event, offset=offset, ts_ms=timestamp_ms)
                if out is None:
                    return None  # re-delivered offset: already predicted and learned
                now = time.time()
                out["model"] = self.model_name
                out["partition"] = partition
                out["offset"] = offset
                out["ts"] = int(now * 1000)
                if self.metrics is not None:
                    since = event.ts if event.ts is not None else timestamp_ms
                    self.metrics.observe_latency(partition, max(0.0, now - since / 1000))
                if learner.drift_events:
                    self._drain_drifts(learner.drift_events, partition)
                return Outgoing(self.topics.predictions, key, encode(out), partition)
            if topic == self.topics.labels:
                label = decode_label(value, self.max_record_bytes)
                learner.process_label(label, offset=offset, ts_ms=timestamp_ms)
                if learner.drift_events:
                    self._drain_drifts(learner.drift_events, partition)
                return None
        except (InvalidRecord, ModelError) as exc:
            if isinstance(exc, ModelError):
                logger.warning("model error at %s[%d]@%d: %s", topic, partition, offset, exc)
                reason, error = str(exc), exc.cause
            else:
                reason, error = exc.reason, exc
            return self._dead_letter(
                topic, partition, offset, key, value, headers,
                stage=exc.stage, reason=reason, error=error,
            )  # fmt: skip
        msg = f"record from unexpected topic {topic!r}"
        return self._dead_letter(
            topic, partition, offset, key, value, headers, stage="route", reason=msg, error=None
        )

    def _drain_drifts(self, events: list[dict[str, Any]], partition: int) -> None:
        for drift in events:
            logger.info(
                "partition %d: drift detected at %s offset %d (error %s -> %s)",
                partition,
                drift["topic"],
                drift["offset"],
                drift["error_before"],
                drift["error_after"],
            )
            drift["ts"] = int(time.time() * 1000)
            self.extra.append(
                Outgoing(self.topics.metrics, str(partition).encode(), encode(drift), partition)
            )
        events.clear()

    def _dead_letter(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        *,
        stage: str,
        reason: str,
        error: BaseException | None,
    ) -> Outgoing:
        self.dead_letters[stage] = self.dead_letters.get(stage, 0) + 1
        p = DLQ_HEADER_PREFIX
        ours: list[tuple[str, bytes]] = [
            (p + "source.topic", topic.encode()),
            (p + "source.partition", str(partition).encode()),
            (p + "source.offset", str(offset).encode()),
            (p + "stage", stage.encode()),
            (p + "error", reason.encode()[:2000]),
            (p + "error.type", type(error).__name__.encode() if error else b"RoutingError"),
            (p + "worker", self.worker_id),
        ]
        # The original headers first, untouched; ours after them. Partitioned by the
        # original key, like the source, so the dead-letter topic may have any size.
        all_headers = [*(headers or ()), *ours]
        return Outgoing(self.topics.dlq, key, value, None, all_headers)

    def describe(self) -> dict[str, Any]:
        """Counts across partitions, for ``/models``."""
        return {"dead_letters": dict(self.dead_letters)}
