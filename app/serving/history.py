"""``GET /history``: the numbers the live page plots, one sample a second per partition,
kept in memory so a page opened (or reloaded) later draws the past.

A sample is ``[t, events, last_offset, lag, {candidate: [rolling, cumulative]}]`` (t in
Unix seconds; lag None when unknown). Each partition keeps its last ``points`` samples
(1800: 30 minutes at one a second), so the ring's size is bounded by partitions x
candidates x points, whatever the traffic; a partition this worker no longer owns is
dropped. The history lives in the process: a restarted worker starts a new one. The
supervisor merges its children's (``riverbed.supervisor.gateway.merge_histories``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the supervisor imports merge_histories without loading River or Faust
    from riverbed.learning.state import Learners

__all__ = ["INTERVAL_S", "POINTS", "History", "Sampler"]

POINTS = 1800  # per partition: 30 minutes at one sample a second
INTERVAL_S = 1.0


class History:
    """Each partition's last ``points`` samples.

    Examples
    --------
    >>> h = History(points=2)
    >>> for t in (1.0, 2.0, 3.0):
    ...     h.add(0, [t, int(t), int(t) - 1, 0, {"logreg": [0.5, 0.6]}])
    >>> [s[0] for s in h.document()["partitions"]["0"]]
    [2.0, 3.0]

    """

    def __init__(self, points: int = POINTS, interval: float = INTERVAL_S) -> None:
        self.points = points
        self.interval = interval
        self.series: dict[int, deque[list[Any]]] = {}

    def add(self, partition: int, sample: list[Any]) -> None:
        ring = self.series.get(partition)
        if ring is None:
            ring = self.series[partition] = deque(maxlen=self.points)
        ring.append(sample)

    def keep(self, partitions: Iterable[int]) -> None:
        """Forget the partitions not in ``partitions`` (revoked)."""
        owned = set(partitions)
        for p in [p for p in self.series if p not in owned]:
            del self.series[p]

    def document(self) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "points": self.points,
            "partitions": {str(p): list(ring) for p, ring in sorted(self.series.items())},
        }


class Sampler:
    """The timer's work: one sample of every partition held (its counters, each
    candidate's metrics, the lag), read once a second, never per record."""

    def __init__(self, history: History, learners: Learners,
                 lag: Callable[[int], int | None]) -> None:  # fmt: skip
        self.history = history
        self.learners = learners
        self.lag = lag

    async def sample(self) -> None:
        self.take(time.time())

    def take(self, now: float) -> None:
        held = []
        for p, learner in self.learners.items():
            held.append(p)
            d = learner.describe()
            models = {
                name: [(q.get("rolling") or {}).get("value"), q["metric"]["value"]]
                for name, q in d["candidates"].items()
            }
            self.history.add(p, [round(now, 3), d["events"], d["last_offset"], self.lag(p), models])
        self.history.keep(held)
