"""Faust's aiokafka transport with a consumer that hands whole fetches to the agent.

Five methods of :class:`faust.transport.drivers.aiokafka.Consumer` change, for the
source topics only (any other topic an app subscribes to keeps Faust's path):

- ``_drain_messages`` (the fetcher's loop): a fetch goes to :class:`~riverbed.kafka.intake.Intake`
  as one value instead of one Faust message per record; see ``app/kafka/intake.py`` for
  why. Flow control, active partitions and stopping behave as in Faust's loop.
- ``_new_offset`` (what a commit may commit): the offset after the last record the
  latest durable snapshot includes, instead of the run of individually acked offsets;
  ``_filter_tps_with_pending_acks`` offers the assigned source partitions to every
  commit, since none of their records is acked one by one.
- ``wait_empty`` (a rebalance or stop waits for the streams): drains the intake and
  writes a checkpoint first, then lets Faust commit.
- ``perform_seek`` (after an assignment): after Faust's seek to the committed offsets,
  the source partitions go to where their learners resume (``app/checkpoint/recovery.py``).

Everything else (group membership, assignment, seeking to committed offsets after a
rebalance, the commit itself) is Faust's. The consumer runs on the app's event loop
(:class:`LoopConsumerThread`) unless ``RIVERBED_CONSUMER_THREAD`` asks for Faust's
own consumer thread.

The private methods of Faust and mode these classes override (``_drain_messages``,
``_new_offset``, ``_stopped_set`` ...) are listed in ``app/kafka/compat.py``, and every
private attribute or method they read, write or call goes through compat's accessors.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, cast

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode import Service, ServiceT
from mode.utils.futures import maybe_async

from riverbed.kafka import compat
from riverbed.kafka.intake import Intake
from riverbed.protocols import Assignments

__all__ = [
    "BatchConsumer",
    "BatchConsumerThread",
    "BatchTransport",
    "BrokerWatch",
    "LoopConsumerThread",
]

logger = logging.getLogger(__name__)

WATCH_S = 1.0  # how often a drain looks whether the broker still answers
# No group coordinator this long (at most; a third of the session timeout if shorter):
# no checkpoint can be written, and /ready says so (app/serving/web.py).
UNREACHABLE_S = 10.0
UNREACHABLE_EXIT = 1  # a stop that could not take its final checkpoint


def unreachable_after(session_timeout: float) -> float:
    """Seconds without a group coordinator after which the broker counts as unreachable.

    >>> unreachable_after(45.0), unreachable_after(6.0)
    (10.0, 2.0)
    """
    return min(UNREACHABLE_S, session_timeout / 3)


class BrokerWatch:
    """How long the consumer has known no group coordinator: what ``/ready`` reports
    and what lets a stop give up its final checkpoint (one record of it for both).

    Examples
    --------
    >>> watch = BrokerWatch(session_timeout=45.0)
    >>> watch.saw(True, now=100.0); watch.silent(now=105.0)
    5.0
    >>> watch.saw(False, now=106.0); watch.unreachable(now=109.0)  # a blip
    False
    >>> watch.unreachable(now=111.0)
    True

    """

    def __init__(self, session_timeout: float) -> None:
        self.after = unreachable_after(session_timeout)
        self.seen: float | None = None  # monotonic time the coordinator was last known

    def saw(self, known: bool | None, now: float) -> None:
        """The consumer knows its coordinator now (True), does not (False), or has not
        started (None). Silence counts from the last time it knew one, or from the
        first time it was seen not to."""
        if known or (known is False and self.seen is None):
            self.seen = now

    def silent(self, now: float) -> float:
        """Seconds since a coordinator was last known (0 before anything was seen)."""
        return 0.0 if self.seen is None else now - self.seen

    def unreachable(self, now: float) -> bool:
        return self.silent(now) >= self.after


class BatchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, with the broker's fetch wait paced by the traffic.

    Faust fixes aiokafka's ``fetch_max_wait_ms`` at 1,500 ms. aiokafka keeps one fetch
    in flight per broker and leaves out of it the partitions whose records are still
    buffered, so while the worker catches up a fetch holding only idle partitions (a
    quiet labels topic) was held by the broker that long while the buffered partitions
    ran dry: a catch-up ran at ~30,000 records/s with a one-second stop every ~20,000
    records. So while records flow the wait is short (``RIVERBED_FETCH_MAX_WAIT``);
    after a second without any it is Kafka's default, 500 ms, because a short wait
    makes an idle worker ask the broker ~1/wait times a second (at 20 ms: 7% of a core
    on a slow machine, against under 1% at 500 ms). New records end a held fetch
    at once either way (``fetch_min_bytes`` is 1), so the idle wait adds no latency.
    """

    IDLE_FETCH_WAIT_MS = 500  # Kafka's default fetch.max.wait.ms
    _closing: Any = None  # the future of close()'s consumer.stop()

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        self._busy_wait_ms = int(cast(BatchTransport, transport).fetch_max_wait * 1000)
        # Read by AIOKafkaConsumer.start(), which has not run yet; no public setter.
        compat.set_fetch_max_wait(consumer, self._busy_wait_ms)
        return consumer

    def close(self) -> None:
        """Stop the aiokafka consumer in its own order: leave the group, then close.

        Faust's ``close()`` (a stop that arrives during a rebalance) schedules the
        aiokafka client's close *before* the coordinator's, and marks the consumer
        closed so its ``stop()`` does nothing later: the coordinator's LeaveGroup then
        goes out on a closed connection and fails (``GroupCoordinatorNotAvailable``),
        and the group waits the whole session timeout (45 s) before it gives the
        partitions just assigned to this worker to another. ``stop()`` closes the
        coordinator (LeaveGroup) first, then the fetcher, then the client.
        """
        consumer = compat.thread_consumer(self)
        if consumer is not None and self._closing is None:
            self._closing = asyncio.run_coroutine_threadsafe(consumer.stop(), self.thread_loop)

    def pace(self, busy: bool) -> None:
        """Short broker waits while records flow, the idle wait when they do not."""
        # aiokafka reads it into each FetchRequest it builds; no public setter.
        wait = self._busy_wait_ms if busy else max(self._busy_wait_ms, self.IDLE_FETCH_WAIT_MS)
        compat.set_fetch_max_wait(compat.thread_consumer(self), wait)


class LoopConsumerThread(BatchConsumerThread):
    """Faust's consumer "thread", run as a plain service on the app's own event loop.

    Faust runs the aiokafka consumer in a :class:`mode.threads.ServiceThread`: its own
    thread and event loop, reached through a method queue. For a CPU-bound agent that
    is a cost, not a gain: every ``getmany`` crosses the threads twice (a self-pipe
    write each way) and each crossing waits for the GIL, which the agent holds while it
    learns, so the consumer's socket reads and the agent's sends queue behind one
    another (py-spy: ``call_soon_threadsafe`` and socket I/O were the top leaves; the
    worker spent ~28.7 CPU-µs a record threaded against ~24.4 µs here; see
    ``docs/performance.md``). Nothing runs in parallel either way: the GIL allows one.

    Here the same class runs on the app's loop: ``thread_loop`` *is* the parent loop,
    ``call_thread`` awaits the call directly, and start/stop are
    :class:`mode.Service`'s, in the order the thread would run them (stop the aiokafka
    consumer, then children, futures and exit stacks). aiokafka's coordinator,
    heartbeats, fetcher and rebalance listener already shared one loop in the thread;
    they still do. What changes: heartbeats now wait while the agent handles a fetch
    (at most ``RIVERBED_BATCH_MAX`` records), so a model slow enough to hold the loop
    near ``RIVERBED_SESSION_TIMEOUT`` should use ``RIVERBED_CONSUMER_THREAD=true``.
    """

    # ServiceThread waits for the thread to set the shutdown flag; no thread here.
    wait_for_shutdown = False

    def __init__(self, consumer: Any, *, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        super().__init__(consumer, loop=loop, thread_loop=loop, **kwargs)
        compat.keep_thread_loop(self)  # the app's loop: not ours to close

    # -- mode.Service's own lifecycle, instead of ServiceThread's thread hand-offs ------
    async def start(self) -> None:
        await Service.start(self)

    async def maybe_start(self) -> bool:
        return await Service.maybe_start(self)

    async def stop(self) -> None:
        await Service.stop(self)

    async def crash(self, reason: BaseException) -> None:
        await Service.crash(self, reason)

    def _stopped_set(self) -> None:
        Service._stopped_set(self)

    def set_shutdown(self) -> None:
        Service.set_shutdown(self)

    async def _stop_children(self) -> None:
        await Service._stop_children(self)

    async def _stop_futures(self) -> None:
        await Service._stop_futures(self)

    async def _stop_exit_stacks(self) -> None:
        await Service._stop_exit_stacks(self)

    async def on_stop(self) -> None:
        # What the thread runs first on its way out: stop the aiokafka consumer (and
        # let a stop that close() began finish: its LeaveGroup hands the partitions on).
        if self._closing is not None:
            await asyncio.wrap_future(self._closing)
        await self.on_thread_stop()

    # -- calls "into the thread" are plain awaits ---------------------------------------
    async def call_thread(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # Like MethodQueue's worker: the callee may be a coroutine function or not.
        return await maybe_async(fun(*args, **kwargs))

    async def cast_thread(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.add_future(maybe_async(fun(*args, **kwargs)))


class BatchConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, delivering the source topics fetch by fetch."""

    def _new_consumer_thread(self) -> Any:
        transport = cast(BatchTransport, self.transport)
        kind = BatchConsumerThread if transport.consumer_thread else LoopConsumerThread
        return kind(self, loop=self.loop, beacon=self.beacon)

    @property
    def intake(self) -> Intake:
        return cast(BatchTransport, self.transport).intake

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # pragma: no cover - via broker
        intake = self.intake
        ours = intake.topics
        deliver, deliver_nowait = intake.deliver, intake.deliver_nowait
        callback = self.callback
        to_message = compat.to_message(self)
        wait_next_records = compat.wait_next_records(self)
        consumer_stopped = compat.stopped(self).is_set
        fetcher_stopped = compat.stopped(fetcher).is_set
        read_offset = compat.read_offsets(self)
        track_end_offset = self.app.monitor.track_tp_end_offset
        buffered = compat.buffered_partitions(self)
        pace = cast(BatchConsumerThread, compat.consumer_thread(self)).pace
        if intake.joiner is not None:
            intake.joiner.offsets = self._source_offsets
            intake.joiner.in_transit = intake.in_transit
        busy = True  # the consumer starts with the short wait
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records, active = await wait_next_records(1.0)
                # Handed out by aiokafka (its positions moved past them) but not with
                # the agent yet: the joiner must not take their partitions as read.
                intake.arriving(records or {})
                if bool(records) is not busy:  # none for a second, or flowing again
                    busy = not busy
                    pace(busy)
                await asyncio.sleep(0)  # a turn for others (mode's sleep(0): a task, ~40 µs)
                if not records and intake.holding() and self.flow_active:
                    # Records wait for the other topic: a tick lets the agent look
                    # again (a lag now known, or RIVERBED_JOIN_IDLE run out).
                    deliver_nowait({})
                if not records or self.should_stop or not self.flow_active:
                    if records and not self.flow_active:
                        # As Faust's getmany: records fetched across a flow stop are
                        # dropped; go back to the committed offsets.
                        await self.perform_seek()
                    intake.arrived()
                    continue
                batch: dict[Any, Any] = {}
                for tp, recs in records.items():
                    if active is not None and tp not in active and tp not in buffered:
                        continue
                    track_end_offset(tp, self.highwater(tp))
                    read_offset[tp] = recs[-1].offset
                    if tp.topic in ours:
                        batch[tp] = recs
                    else:
                        for r in recs:  # Faust's own per-message path
                            await self.wait_first(
                                callback(to_message(tp, r)), self.suspend_flow.wait()
                            )
                if batch and not deliver_nowait(batch):
                    await self.wait_first(deliver(batch), self.suspend_flow.wait())
                intake.arrived()
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    def _source_offsets(self, topic: str, partition: int) -> tuple[int, int] | None:
        """``(high watermark, position)`` of a source partition (app/kafka/join.py)."""
        consumer = compat.thread_consumer(compat.consumer_thread(self))
        return None if consumer is None else compat.fetch_offsets(consumer, TP(topic, partition))

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        # Faust commits only partitions it has seen acks for; ours are never acked
        # message by message, so their assigned partitions are always candidates (and
        # _new_offset below says what, if anything, may be committed).
        seen = set()
        for tp in super()._filter_tps_with_pending_acks(topics):
            seen.add(tp)
            yield tp
        wanted = (
            tp for tp in self.assignment() if tp.topic in self.intake.topics and tp not in seen
        )
        for tp in wanted:
            if topics is None or tp in topics or tp.topic in topics:
                yield tp

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        # Before Faust's chain (and its table recovery, whose perform_seek waits for
        # ours) starts: the seek below must wait for this assignment's restore.
        recovery = cast(BatchTransport, self.transport).recovery
        if recovery is not None:
            recovery.assigning()
        await super().on_partitions_assigned(assigned, generation_id)

    async def perform_seek(self) -> None:
        """Faust's seek to the committed offsets, then the source partitions to where
        their learners resume (app/checkpoint/recovery.py): a learner restored from a snapshot older
        than the commit reads the records after it again."""
        await super().perform_seek()
        self.intake.forget()  # what waited in the joiner is fetched again from here
        recovery = cast(BatchTransport, self.transport).recovery
        if recovery is None:
            return
        positions = await recovery.positions()
        for tp in self.assignment():
            if tp.topic in self.intake.topics:
                position = positions.get((tp.topic, tp.partition))
                if position is not None:
                    await self.seek(tp, position)

    def _new_offset(self, tp: TP) -> int | None:
        if tp.topic in self.intake.topics:
            return self.intake.checkpoint.committable(tp.topic, tp.partition)
        return super()._new_offset(tp)

    async def wait_empty(self) -> None:
        """Drain and checkpoint, then Faust's wait.

        When the worker stops and no broker has answered for the group for
        :func:`unreachable_after`, the checkpoint cannot be written, nor can the producers
        flush, and each would wait for the broker (a stop with the broker down took
        60 s per worker, then SIGKILL): the process ends there, as a kill would end it,
        which riverbed recovers from exactly. Nothing is lost: the offsets committed
        are those the last written snapshot covers, and the partitions' next owner
        handles the records after them again.
        """
        drain = asyncio.ensure_future(self.intake.drain())
        if not self.app.should_stop:  # a rebalance: the checkpoint waits for the broker
            await drain
            await super().wait_empty()
            return
        watch = cast(BatchTransport, self.transport).broker_watch
        while not drain.done():
            await asyncio.wait({drain}, timeout=WATCH_S)
            now = time.monotonic()
            watch.saw(compat.coordinator_known(self), now)  # timers may be stopped now
            if not drain.done() and watch.unreachable(now):
                logger.error(
                    "stopping with no broker answering for the group for %.0f s: the final "
                    "checkpoint cannot be written; the process ends now (the records since "
                    "the last snapshot are handled again by the partitions' next owner)",
                    watch.silent(now),
                )  # fmt: skip
                logging.shutdown()
                os._exit(UNREACHABLE_EXIT)
        drain.result()
        await super().wait_empty()


class BatchTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport whose consumer is a :class:`BatchConsumer`."""

    Consumer: ClassVar[Any] = BatchConsumer

    def __init__(
        self,
        *args: Any,
        intake: Intake,
        recovery: Assignments | None = None,
        fetch_max_wait: float = 0.5,
        consumer_thread: bool = False,
        broker_watch: BrokerWatch,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.broker_watch = broker_watch
        self.intake = intake
        self.recovery = recovery  # where partitions resume
        self.fetch_max_wait = fetch_max_wait
        self.consumer_thread = consumer_thread
