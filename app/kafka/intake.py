"""The hand-off between Faust's Kafka consumer and the learning agent: whole fetches.

Faust hands a stream one message at a time: per message, its fetcher awaits the
conductor under ``wait_first`` (two tasks), the conductor builds an Event and queues
it, and the stream takes it off the queue after ``sleep(0)``: three or four
event-loop turns per record, which held a Faust agent near 6,000 records/s on two
cores while the model itself needs ~20 µs a record (see ``docs/performance.md``).

riverbed keeps Faust's consumer (its group membership, assignment, flow control,
seeks after a rebalance and commits) and replaces that one step:
:class:`riverbed.kafka.transport.BatchConsumer` puts each fetch of the source topics, as
aiokafka returned it, on a Faust channel as one :class:`Fetch`; the agent iterates
the channel and handles the records in a plain loop. Offsets are not acked message
by message either: the consumer commits, per partition, the offsets stamped in the
latest durable snapshot (:meth:`riverbed.checkpoint.snapshots.Checkpointer.committable`).

On a rebalance or stop, Faust waits for its streams to be empty before it commits;
:meth:`Intake.drain` is that wait here: fetches not yet started are dropped (Faust
seeks back to the committed offsets before it resumes, so they are fetched again),
the batch in hand is finished, and a checkpoint is written, so the commit that follows
covers everything this worker handled.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from riverbed.kafka import compat
from riverbed.kafka.join import Joiner
from riverbed.protocols import Checkpoint

__all__ = ["Fetch", "Intake"]

logger = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 60.0  # longest a rebalance waits for the batch in hand


class Channel(Protocol):
    async def put(self, value: Any) -> None: ...


@dataclass(slots=True)
class Fetch:
    """One fetch of the source topics: ``{TopicPartition: [ConsumerRecord, ...]}``.

    ``epoch`` is the :class:`Intake`'s epoch when it was fetched; a drain (rebalance,
    stop) starts a new epoch and the agent skips fetches of older ones.
    """

    records: Mapping[Any, Sequence[Any]]
    epoch: int


class Intake:
    """Carries fetches from the consumer to the agent and knows when the agent is idle.

    Parameters
    ----------
    channel
        The Faust channel the agent iterates.
    topics
        Names of the topics handled in fetches (events and labels).
    checkpoint
        The worker's checkpoint: ``checkpoint()`` is awaited once the agent is idle
        during a drain, and ``committable(topic, partition)`` is the offset the consumer
        may commit.

    Examples
    --------
    >>> import asyncio
    >>> class Box:
    ...     def __init__(self): self.items = []
    ...     async def put(self, value): self.items.append(value)
    >>> class Checkpoint:
    ...     async def checkpoint(self): pass
    ...     def committable(self, topic, partition): return None
    >>> async def scenario():
    ...     box = Box()
    ...     intake = Intake(box, {"ev"}, checkpoint=Checkpoint())
    ...     intake.attach()
    ...     await intake.deliver({("ev", 0): [1, 2]})
    ...     fetch = box.items[0]
    ...     await intake.drain()        # a rebalance: what was fetched before is stale
    ...     return intake.begin(fetch)
    >>> asyncio.run(scenario())
    False

    """

    def __init__(
        self,
        channel: Channel,
        topics: set[str] | frozenset[str],
        *,
        checkpoint: Checkpoint,
        joiner: Joiner | None = None,
    ) -> None:
        self.channel = channel
        self.topics = frozenset(topics)
        # Where the agent's records wait for the other topic (app/kafka/join.py); the
        # consumer gives it the lag of each partition. Without one (tests of the
        # hand-off alone), records go through as fetched.
        self.joiner = joiner
        self.checkpoint = checkpoint
        self.epoch = 0
        self.fetches = 0
        # Fetches queued for the agent, per (topic, partition) they hold records of: a
        # partition the consumer has read to its end may still have records on the way
        # to the joiner, which must wait for them.
        self._queued: Counter[tuple[str, int]] = Counter()
        self._arriving: set[tuple[str, int]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._attached = asyncio.Event()

    # -- the consumer side --------------------------------------------------------------
    async def deliver(self, records: Mapping[Any, Sequence[Any]]) -> None:
        """Queue one fetch for the agent (waits while the channel is full or paused).

        Await it as a task of its own (the consumer's ``wait_first`` does): a put
        cancelled under it by a flow stop is told from a cancellation of the waiting
        task by that task's ``cancelling()``.
        """
        fetch = Fetch(records, self.epoch)
        # A channel drops values while no agent iterates it (before start, or while a
        # crashed agent restarts); nothing may be dropped, so wait for one.
        await self._attached.wait()
        self._queue(fetch, 1)
        try:
            await self.channel.put(fetch)
        except BaseException as exc:  # it never reached the agent
            self._queue(fetch, -1)
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and not (task and task.cancelling()):
                # The put itself was cancelled, not this wait: a rebalance suspends the
                # flow and clears the agents' queues in one step, and mode's
                # ThrowableQueue.clear() cancels the puts waiting on them. The fetch is
                # dropped as on any flow stop (Faust seeks back to the committed
                # offsets). Raising would reach the consumer's wait_first, which reads
                # exception() of that cancelled future, takes the CancelledError out of
                # the fetcher, and Faust's Fetcher then crashes the worker ("Restarting
                # on rebalance" with no supervisor to restart it).
                return
            raise

    def deliver_nowait(self, records: Mapping[Any, Sequence[Any]]) -> bool:
        """Queue one fetch if that needs no wait (agent attached, room); else False.

        The consumer's loop tries this first: :meth:`deliver` under mode's
        ``wait_first`` makes four tasks and an ``asyncio.wait`` a fetch (~105 µs of CPU
        on a slow 2-core VM, against ~9 µs for this), for a put that rarely waits; with
        small fetches under moderate load that was ~5% of a core. It reaches the
        agents' queues as Faust's ``Channel.put`` does (through the root channel's
        subscribers, which Faust keeps private).
        """
        if not self._attached.is_set():
            return False
        queues = compat.channel_queues(self.channel)
        if not queues or any(q.full() for q in queues):
            return False
        fetch = Fetch(records, self.epoch)
        self._queue(fetch, len(queues))
        for q in queues:
            q.put_nowait(fetch)
        return True

    def _queue(self, fetch: Fetch, n: int) -> None:
        if fetch.epoch != self.epoch:
            return  # an older epoch's fetch: no longer counted (see _new_epoch)
        for tp in fetch.records:
            self._queued[(tp[0], tp[1])] += n  # a TopicPartition (or a test's tuple)

    def _new_epoch(self) -> None:
        """Fetches queued before now are stale: the agent skips them, and a flow stop
        may have dropped them from its queue unseen (Faust's ``flow_control.clear()``),
        so they no longer count as on their way."""
        self.epoch += 1
        self._queued.clear()

    def arriving(self, records: Mapping[Any, Sequence[Any]]) -> None:
        """The consumer has just been handed ``records``; until :meth:`arrived`, their
        partitions count as in transit (the queueing is one await away)."""
        self._arriving = {(tp[0], tp[1]) for tp in records}

    def arrived(self) -> None:
        self._arriving = set()

    def in_transit(self, topic: str, partition: int) -> bool:
        """Whether records of this partition are on their way to the agent: handed
        out by the consumer, or in a fetch queued for the agent."""
        key = (topic, partition)
        return self._queued[key] > 0 or key in self._arriving

    async def drain(self) -> None:
        """Stop handing out older fetches, let the batch in hand finish, checkpoint."""
        self._new_epoch()  # the batch in hand finishes; the joiner's records wait no more
        try:
            await asyncio.wait_for(self._idle.wait(), DRAIN_TIMEOUT_S)
        except TimeoutError:
            logger.error(
                "the agent did not finish its batch within %.0f s; committing what the "
                "last checkpoint covers",
                DRAIN_TIMEOUT_S,
            )
        self.forget()
        await self.checkpoint.checkpoint()

    def forget(self) -> None:
        """Drop the records waiting in the joiner and the fetches queued for the agent
        (a new epoch): after a rebalance or a seek the consumer fetches them again from
        where the learners resume, and a record fetched before the seek must not be
        merged with the other topic's records fetched after it."""
        self._new_epoch()
        if self.joiner is not None:
            self.joiner.clear()

    def holding(self) -> bool:
        """Whether records wait in the joiner for the other topic (the consumer then
        ticks the agent with empty fetches, so an idle wait ends without new records)."""
        return self.joiner is not None and self.joiner.holding()

    # -- the agent side -----------------------------------------------------------------
    def attach(self) -> None:
        """The agent is iterating the channel."""
        self._attached.set()

    def detach(self) -> None:
        self._attached.clear()
        self._idle.set()

    def begin(self, fetch: Fetch) -> bool:
        """The agent starts on ``fetch``; False if it is stale and must be skipped."""
        self._queue(fetch, -1)
        if fetch.epoch != self.epoch:
            return False
        self._idle.clear()
        self.fetches += 1
        return True

    def end(self) -> None:
        """The agent finished the fetch it began."""
        self._idle.set()

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fetches": self.fetches}
        if self.joiner is not None:
            out["join"] = self.joiner.describe()
        return out
