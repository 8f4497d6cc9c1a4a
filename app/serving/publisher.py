"""The metrics topic's periodic records: one per partition, counts, metric, latency."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from riverbed.learning.state import Learners
from riverbed.records import encode
from riverbed.serving.metrics import RiverbedMetrics

__all__ = ["MetricsPublisher"]

Send = Callable[[str, bytes, bytes, int], Awaitable[Any]]


class MetricsPublisher:
    """Writes ``{"type": "metrics", ...}`` records: each partition's ``/models`` entry
    plus its latency quantiles.

    Parameters
    ----------
    learners
        The worker's learners.
    metrics
        Where the latency quantiles come from.
    topic
        The metrics topic.
    send
        ``send(topic, key, value, partition)``: returns the delivery future (which
        ``track`` is given, so a checkpoint waits for it).
    track
        ``track(delivery, topic)`` (:meth:`riverbed.checkpoint.snapshots.Checkpointer.track`).
    """

    def __init__(
        self,
        learners: Learners,
        metrics: RiverbedMetrics,
        *,
        topic: str,
        send: Send,
        track: Callable[[Any, str], None],
    ) -> None:
        self.learners = learners
        self.metrics = metrics
        self.topic = topic
        self.send = send
        self.track = track

    def records(self, now_ms: int) -> list[tuple[int, bytes]]:
        """Every partition's record, all read before the first send: a checkpoint
        during a send may swap a partition's learner for its copy (app/learning/inline.py)."""
        return [
            (
                p,
                encode(
                    {
                        "type": "metrics",
                        "partition": p,
                        "ts": now_ms,
                        "model": learner.spec.name,  # the partition's champion
                        **learner.describe(),
                        "latency_ms": self.metrics.latency_quantiles_ms(p),
                    }
                ),
            )
            for p, learner in self.learners.items()
        ]

    async def publish(self) -> None:
        for p, value in self.records(int(time.time() * 1000)):
            self.track(await self.send(self.topic, str(p).encode(), value, p), self.topic)
