"""One order for a partition's events and labels that depends only on the records.

Events and labels are two topics, fetched independently: which of a partition's two
partitions happens to be read ahead depends on fetch sizes, backlog and restarts. A
learner that handled them as fetched would learn a label in one run and default the
same event in another. :class:`Joiner` merges them as Kafka Streams merges a task's
partitions (``PartitionGroup``): the record with the smaller head timestamp goes
first, offset order holds within each topic, and ties go to the label (a label
stamped at its event's due time is on time, as River's ``simulate_qa`` answers a
question due at the next one's moment before it).

A side with nothing buffered holds the other back until it is known to have nothing
more: while its partition has records on the broker that were not fetched yet (lag
above 0, or not known yet after an assignment), the other side waits for the fetch;
once it is caught up, the other side goes on after ``RIVERBED_JOIN_IDLE`` seconds
(Kafka Streams' ``max.task.idle.ms``; 0: at once). A backlog, a replay after a crash
and a live stream whose labels are produced within that wait are therefore merged
alike. A side that goes on while the other's lag is not known after
``UNKNOWN_LAG_LIMIT_S`` (a partition that cannot be fetched) is counted and logged as
enforced.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Joiner", "merged"]

logger = logging.getLogger(__name__)

UNKNOWN_LAG_LIMIT_S = 30.0  # longest a side waits for a partition whose lag stays unknown


def merged(events: Iterable[Any], labels: Iterable[Any]) -> Iterator[tuple[bool, Any]]:
    """``(is_label, record)`` of two partitions' records in the join's order.

    Examples
    --------
    >>> from collections import namedtuple
    >>> R = namedtuple("R", "offset timestamp")
    >>> ev = [R(0, 10), R(1, 30), R(2, 20)]
    >>> lb = [R(0, 20), R(1, 25)]
    >>> [("L" if is_label else "E") + str(r.offset) for is_label, r in merged(ev, lb)]
    ['E0', 'L0', 'L1', 'E1', 'E2']

    """
    ev, lb = deque(events), deque(labels)
    while ev and lb:
        if lb[0].timestamp <= ev[0].timestamp:
            yield True, lb.popleft()
        else:
            yield False, ev.popleft()
    for r in lb:
        yield True, r
    for r in ev:
        yield False, r


@dataclass
class _Pair:
    """One partition's buffered events and labels."""

    events: deque[Any] = field(default_factory=deque)
    labels: deque[Any] = field(default_factory=deque)
    held_since: float | None = None  # when a side began to wait for the other


class Joiner:
    """Buffers fetched records per partition and hands them out in the join's order.

    Parameters
    ----------
    events, labels
        The two topics' names.
    offsets
        ``offsets(topic, partition)``: the consumer's ``(high watermark, position)``
        (None: not known yet).
    in_transit
        ``in_transit(topic, partition)``: whether records the consumer handed out are
        still on their way here.
    idle_s
        ``RIVERBED_JOIN_IDLE``: how long a side waits for a caught-up other side.

    Examples
    --------
    >>> from collections import namedtuple
    >>> R, TP = namedtuple("R", "offset timestamp"), namedtuple("TP", "topic partition")
    >>> ends = {"ev": (2, 2), "lb": (1, 0)}  # the label is still on the broker
    >>> j = Joiner("ev", "lb", offsets=lambda t, p: ends[t], idle_s=0)
    >>> j.add(TP("ev", 0), [R(0, 10), R(1, 30)])
    >>> list(j.ready())  # the events wait for it
    []
    >>> ends["lb"] = (1, 1); j.add(TP("lb", 0), [R(0, 20)])
    >>> [(tp.topic, [r.offset for r in run]) for tp, run in j.ready()]
    [('ev', [0]), ('lb', [0]), ('ev', [1])]

    """

    def __init__(
        self,
        events: str,
        labels: str,
        *,
        offsets: Callable[[str, int], tuple[int, int] | None],
        in_transit: Callable[[str, int], bool] = lambda _t, _p: False,
        idle_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.events = events
        self.labels = labels
        self.offsets = offsets
        self.in_transit = in_transit
        self.idle_s = idle_s
        self.clock = clock
        self._pairs: dict[int, _Pair] = {}
        self._tps: dict[tuple[str, int], Any] = {}
        self._seen: dict[tuple[str, int], int] = {}  # the offset after the last one added
        self._generation = 0  # bumped by clear(): a hand-out under way stops
        self.enforced = 0  # runs let go while the other side's lag stayed unknown

    def add(self, tp: Any, records: Sequence[Any]) -> None:
        """Buffer one fetch's records of ``tp`` (events or labels)."""
        pair = self._pairs.get(tp.partition)
        if pair is None:
            pair = self._pairs[tp.partition] = _Pair()
        self._tps[(tp.topic, tp.partition)] = tp
        (pair.labels if tp.topic == self.labels else pair.events).extend(records)
        if records:
            self._seen[(tp.topic, tp.partition)] = records[-1].offset + 1

    def lag(self, topic: str, p: int) -> int | None:
        """Records of a partition not here yet: on the broker, or handed out by the
        consumer and on their way (None: not known yet)."""
        if self.in_transit(topic, p):
            return None
        known = self.offsets(topic, p)
        if known is None:
            return None
        highwater, position = known
        seen = self._seen.get((topic, p))
        if seen is not None and position > seen:
            return position - seen  # handed out, not added: still on the way
        return max(0, highwater - position)

    def ready(self) -> Iterator[tuple[Any, list[Any]]]:
        """``(tp, records)`` runs that may be handled now, in the join's order."""
        generation = self._generation
        for p, pair in list(self._pairs.items()):
            ev, lb = pair.events, pair.labels
            # Between two runs the agent awaits; a seek meanwhile drops what is buffered
            # (it is fetched again), and the rest of this hand-out with it.
            while (ev or lb) and generation == self._generation:
                if ev and lb:
                    pair.held_since = None
                    if lb[0].timestamp <= ev[0].timestamp:
                        head, run = ev[0].timestamp, []
                        while lb and lb[0].timestamp <= head:
                            run.append(lb.popleft())
                        yield self._tp(self.labels, p), run
                    else:
                        head, run = lb[0].timestamp, []
                        while ev and ev[0].timestamp < head:
                            run.append(ev.popleft())
                        yield self._tp(self.events, p), run
                    continue
                topic, other = (self.events, self.labels) if ev else (self.labels, self.events)
                if not self._may_go_alone(p, other, pair):
                    break
                side = ev or lb
                run = list(side)
                side.clear()
                yield self._tp(topic, p), run

    def _may_go_alone(self, p: int, other: str, pair: _Pair) -> bool:
        """Whether one side may go on while the other has nothing buffered."""
        lag = self.lag(other, p)
        if lag == 0 and not self.idle_s:
            return True
        now = self.clock()
        if pair.held_since is None:
            pair.held_since = now
        waited = now - pair.held_since
        if lag == 0:
            go = waited >= self.idle_s
        elif waited < UNKNOWN_LAG_LIMIT_S:
            return False
        else:
            go = True
            self.enforced += 1
            logger.warning(
                "partition %d: %s waited %.0f s for %s (lag %s); going on without it",
                p, self.events if other == self.labels else self.labels, waited, other, lag,
            )  # fmt: skip
        if go:
            pair.held_since = None
        return go

    def _tp(self, topic: str, p: int) -> Any:
        return self._tps[(topic, p)]

    def holding(self) -> bool:
        """Whether records wait in a buffer (the consumer then ticks the agent)."""
        return any(pair.events or pair.labels for pair in self._pairs.values())

    def clear(self) -> None:
        """Drop every buffered record (a rebalance or seek: they are fetched again)."""
        self._pairs.clear()
        self._seen.clear()
        self._generation += 1

    def describe(self) -> dict[str, Any]:
        held = sum(len(pr.events) + len(pr.labels) for pr in self._pairs.values())
        return {"held": held, "enforced": self.enforced}
