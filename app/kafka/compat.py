"""Every private name of faust, mode and aiokafka that riverbed touches, listed and checked.

riverbed keeps Faust's consumer and replaces a few of its steps (``app/kafka/transport.py``
says why); those libraries have no public hook for them. Each private name riverbed
overrides, calls, reads or writes is in :data:`PRIVATE` with the reason (River's are in
``riverbed.learning.river_compat``; ``riverbed.privates`` has the mechanism), and
:func:`check` (run when the worker is built) verifies every one against the installed
libraries: a name that is gone, or no longer what riverbed expects, stops start-up
with a message naming the library, its version and the name, instead of a wrong
default at run time. ``tests/unit/test_compat.py`` runs the same check (with the names
only tests use), ``tests/unit/test_private_names.py`` fails on a private name of these
libraries in riverbed's source that is not listed here, and
``tests/integration/test_transport.py`` exercises the aiokafka attributes on a real,
started consumer.

Two ways of touching a name, both listed: the accessors below are the only code that
reads, writes or calls a listed name (app/, tests/ and bench/ go through them); and the
classes of ``app/kafka/transport.py`` and ``app/kafka/worker.py`` *override* some of
Faust's and mode's private methods (a subclass's method of the same name, which may call
the base's: ``super()._new_offset(tp)``).
"""

from __future__ import annotations

from typing import Any

from riverbed.exceptions import IncompatibleLibrary
from riverbed.privates import Private
from riverbed.privates import check as check_names

__all__ = [
    "PRIVATE",
    "IncompatibleLibrary",
    "Private",
    "assignment_url",
    "buffered_partitions",
    "channel_queues",
    "check",
    "client_of",
    "consumer_thread",
    "coordinator_known",
    "fetch_max_wait",
    "fetch_offsets",
    "keep_thread_loop",
    "producer_of",
    "read_offsets",
    "request_rejoin",
    "set_fetch_max_wait",
    "set_thread_consumer",
    "setup_logging",
    "stopped",
    "thread_consumer",
    "to_message",
    "update_table_channels",
    "wait_next_records",
]

_FAUST_CONSUMER = "faust.transport.drivers.aiokafka:Consumer"
_FAUST_BASE_CONSUMER = "faust.transport.consumer:Consumer"
_FAUST_THREAD = "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread"
_MODE_SERVICE = "mode.services:Service"

PRIVATE: tuple[Private, ...] = (
    # -- faust: the consumer's fetch loop and commit offsets (app/kafka/transport.py) --------
    Private("faust-streaming", _FAUST_BASE_CONSUMER, "_drain_messages", "method",
            "overridden: a fetch goes to the intake whole, not message by message"),
    Private("faust-streaming", _FAUST_BASE_CONSUMER, "_wait_next_records", "method",
            "called by the overridden fetch loop (wait_next_records)"),
    Private("faust-streaming", _FAUST_BASE_CONSUMER, "_to_message", "method",
            "called for topics that keep Faust's per-message path (to_message)"),
    Private("faust-streaming", _FAUST_BASE_CONSUMER, "_new_offset", "method",
            "overridden: commit what the latest durable snapshot covers"),
    Private("faust-streaming", _FAUST_BASE_CONSUMER, "_filter_tps_with_pending_acks",
            "method", "overridden: source partitions are never acked message by message"),
    Private("faust-streaming", _FAUST_BASE_CONSUMER, "_read_offset", "attribute",
            "written by the fetch loop, as Faust's own loop does (read_offsets)"),
    Private("faust-streaming", _FAUST_BASE_CONSUMER, "_buffered_partitions", "attribute",
            "read by the fetch loop: active partitions (buffered_partitions)"),
    Private("faust-streaming", _FAUST_CONSUMER, "_thread", "attribute",
            "the consumer thread, whose fetch wait the loop paces (consumer_thread)"),
    Private("faust-streaming", _FAUST_CONSUMER, "_new_consumer_thread", "method",
            "overridden: the consumer runs on the app's loop unless asked otherwise"),
    Private("faust-streaming", _FAUST_THREAD, "_create_worker_consumer", "method",
            "overridden: sets aiokafka's fetch wait before start"),
    Private("faust-streaming", _FAUST_THREAD, "_consumer", "attribute",
            "the aiokafka consumer: paced, and stopped in LeaveGroup order (thread_consumer; "
            "set on a bare thread by tests/integration/test_transport.py)"),
    Private("faust-streaming", "faust.transport.drivers.aiokafka:Producer",
            "_ensure_producer", "method", "the aiokafka producer, for record batches "
            "(producer_of)"),
    Private("faust-streaming", "faust.channels:Channel", "_root", "attribute",
            "the intake's no-wait put reaches the agents' queues (channel_queues)"),
    Private("faust-streaming", "faust.channels:Channel", "_subscribers", "attribute",
            "the intake's no-wait put reaches the agents' queues (channel_queues)"),
    Private("faust-streaming", "faust.tables.manager:TableManager", "_update_channels",
            "method", "what TableManager.on_start does before recovery, without its 1 s "
            "wait (update_table_channels)"),
    # -- mode: a consumer "thread" that runs on the app's loop ------------------------
    Private("mode-streaming", _MODE_SERVICE, "_stopped", "attribute",
            "read by the fetch loop, as Faust's own loop does (stopped)"),
    Private("mode-streaming", _MODE_SERVICE, "_stopped_set", "method",
            "overridden: LoopConsumerThread calls Service's, not ServiceThread's"),
    Private("mode-streaming", _MODE_SERVICE, "_stop_children", "method",
            "overridden: LoopConsumerThread calls Service's, not ServiceThread's"),
    Private("mode-streaming", _MODE_SERVICE, "_stop_futures", "method",
            "overridden: LoopConsumerThread calls Service's, not ServiceThread's"),
    Private("mode-streaming", _MODE_SERVICE, "_stop_exit_stacks", "method",
            "overridden: LoopConsumerThread calls Service's, not ServiceThread's"),
    Private("mode-streaming", "mode.threads:ServiceThread", "_close_thread_loop_on_stop",
            "attribute", "LoopConsumerThread must not close the app's loop (keep_thread_loop)"),
    Private("mode-streaming", "mode.worker:Worker", "_sentinel_task", "method",
            "overridden (app/kafka/worker.py): the loop closes once the cancelled tasks "
            "are done, not after a fixed second"),
    Private("mode-streaming", "mode.utils.queues:ThrowableQueue", "_putters", "attribute",
            "tests/unit/test_intake.py waits until a put waits on a full queue: the puts "
            "a flow stop's clear() cancels", tests_only=True),
    Private("mode-streaming", "mode.worker:Worker", "_setup_logging", "method",
            "tests/unit/test_worker.py runs the logging set-up of riverbed's Worker without "
            "starting it (setup_logging)", tests_only=True),
    # -- aiokafka: the broker's fetch wait (no public setter) -------------------------
    Private("aiokafka", "aiokafka.consumer.consumer:AIOKafkaConsumer", "_fetch_max_wait_ms",
            "attribute", "read by start() into the fetcher (set_fetch_max_wait)"),
    Private("aiokafka", "aiokafka.consumer.consumer:AIOKafkaConsumer", "_fetcher",
            "attribute", "the fetcher, whose wait is paced (set_fetch_max_wait, "
            "fetch_max_wait)"),
    Private("aiokafka", "aiokafka.consumer.fetcher:Fetcher", "_fetch_max_wait_ms",
            "attribute", "read into every FetchRequest (set_fetch_max_wait, fetch_max_wait)"),
    # -- aiokafka: whether the group coordinator is known (/ready, a stop) -------------
    Private("aiokafka", "aiokafka.consumer.consumer:AIOKafkaConsumer", "_coordinator",
            "attribute", "its coordinator_id is None while no broker answers for the group "
            "(a failed heartbeat marks it dead at once); no public accessor "
            "(coordinator_known)"),
    # -- a static member restarted at another URL (app/kafka/assignor.py) -------------
    Private("faust-streaming", "faust.assignor.partition_assignor:PartitionAssignor",
            "_decompress", "method", "the assignment's user data, as on_assignment reads it, "
            "for the URL the leader gave this member (assignment_url)"),
    # -- aiokafka: a partition's lag without an await (app/kafka/join.py) ---------------
    Private("aiokafka", "aiokafka.consumer.consumer:AIOKafkaConsumer", "_subscription",
            "attribute", "its assignment's per-partition high watermark and position; "
            "position() is a coroutine, read for every fetch the joiner holds "
            "(fetch_offsets)"),
    # -- aiokafka: a fresh metadata request (tests/integration/helpers.py) -------------
    Private("aiokafka", "aiokafka.consumer.consumer:AIOKafkaConsumer", "_client",
            "attribute", "its AIOKafkaClient: a test's read_all asks it for fresh metadata "
            "when a new topic's partitions are not known yet (client_of)", tests_only=True),
)  # fmt: skip


def check(names: tuple[Private, ...] = PRIVATE, *, tests: bool = False) -> None:
    """Verify every private name against the installed libraries (with ``tests``, those
    only riverbed's tests use too).

    Raises
    ------
    IncompatibleLibrary
        Naming the library, its installed version and each missing name.

    """
    check_names(names, tests=tests)


# -- the accessors --------------------------------------------------------------------
def set_fetch_max_wait(consumer: Any, ms: int) -> None:
    """aiokafka's fetch wait: before start (the consumer's) or after (the fetcher's)."""
    if consumer._fetcher is None:  # not started: start() reads it into the fetcher
        consumer._fetch_max_wait_ms = ms
    else:
        consumer._fetcher._fetch_max_wait_ms = ms


def fetch_offsets(consumer: Any, tp: Any) -> tuple[int, int] | None:
    """An aiokafka consumer's ``(high watermark of the last fetch response, position)``
    of ``tp`` (the position: the next offset it hands out); None while either is
    unknown (before the partition's first fetch response, or its offset reset)."""
    subscription = consumer._subscription.subscription
    assignment = None if subscription is None else subscription.assignment
    state = None if assignment is None else assignment.state_value(tp)
    if state is None or state.highwater is None or not state.has_valid_position:
        return None
    return state.highwater, state.position


def fetch_max_wait(consumer: Any) -> int:
    """aiokafka's fetch wait now: the fetcher's once started, else the consumer's."""
    fetcher = consumer._fetcher
    return int(consumer._fetch_max_wait_ms if fetcher is None else fetcher._fetch_max_wait_ms)


def coordinator_known(faust_consumer: Any) -> bool | None:
    """Whether the aiokafka consumer inside Faust's knows its group coordinator now
    (None before the consumer started)."""
    thread = getattr(faust_consumer, "_thread", None)
    consumer = getattr(thread, "_consumer", None)
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None:
        return None
    return coordinator.coordinator_id is not None


def client_of(consumer: Any) -> Any:
    """An aiokafka consumer's own ``AIOKafkaClient``."""
    return consumer._client


# -- Faust's consumer and its thread --------------------------------------------------
def consumer_thread(faust_consumer: Any) -> Any:
    """Faust's consumer thread (``ConsumerThread``) of a Faust consumer (None before it
    made one)."""
    return faust_consumer._thread


def thread_consumer(thread: Any) -> Any:
    """The aiokafka consumer a Faust consumer thread runs (None before it made one)."""
    return thread._consumer


def set_thread_consumer(thread: Any, consumer: Any) -> None:
    """Give a Faust consumer thread its aiokafka consumer (a test's bare thread)."""
    thread._consumer = consumer


def keep_thread_loop(thread: Any) -> None:
    """A mode ``ServiceThread`` whose loop is not its own: its stop must not close it."""
    thread._close_thread_loop_on_stop = False


def stopped(service: Any) -> Any:
    """A mode service's ``stopped`` flag (an event: ``is_set()``), as Faust's loop reads it."""
    return service._stopped


def read_offsets(faust_consumer: Any) -> dict[Any, int]:
    """Faust's consumer's last offset read of each partition (the fetch loop writes it)."""
    offsets: dict[Any, int] = faust_consumer._read_offset
    return offsets


def buffered_partitions(faust_consumer: Any) -> Any:
    """The partitions whose records Faust's consumer still holds (a set, kept current)."""
    return faust_consumer._buffered_partitions


def wait_next_records(faust_consumer: Any) -> Any:
    """Faust's consumer's next fetch: ``await it(timeout)`` -> ``(records, active)``."""
    return faust_consumer._wait_next_records


def to_message(faust_consumer: Any) -> Any:
    """Faust's consumer's ``(tp, record)`` -> Faust message, its per-message path."""
    return faust_consumer._to_message


# -- the rest of Faust and mode -------------------------------------------------------
async def update_table_channels(manager: Any) -> None:
    """Faust's TableManager: finalize the tables (none, for riverbed) before recovery."""
    await manager._update_channels()


def channel_queues(channel: Any) -> list[Any]:
    """The queues of the agents iterating a Faust channel (a put reaches each)."""
    root = channel._root if channel._root is not None else channel
    return [sub.queue for sub in root._subscribers]


def producer_of(faust_producer: Any) -> Any:
    """The aiokafka producer inside a Faust producer (started with it)."""
    return faust_producer._ensure_producer()


def assignment_url(assignor: Any, assignment: Any) -> str:
    """The URL the group's leader gave this member in ``assignment`` (Faust's metadata)."""
    from faust.assignor.client_assignment import ClientMetadata

    return str(ClientMetadata.loads(assignor._decompress(assignment.user_data)).url)


def request_rejoin(consumer: Any) -> None:
    """Ask an aiokafka consumer's group coordinator to join the group again."""
    consumer._coordinator.request_rejoin()


def setup_logging(worker: Any) -> None:
    """mode's worker: set logging up as its start would (and nothing else)."""
    worker._setup_logging()


def waiting_puts(queue: Any) -> int:
    """mode's ThrowableQueue: how many puts wait for room (what its clear() cancels)."""
    return len(queue._putters)
