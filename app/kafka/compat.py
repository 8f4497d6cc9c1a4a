"""Every private name of faust, mode and aiokafka that riverbed touches, listed and checked.

riverbed keeps Faust's consumer and replaces a few of its steps (``app/kafka/transport.py``
says why); those libraries have no public hook for them. Each private name riverbed
overrides, calls, reads or writes is in :data:`PRIVATE` with the reason, and
:func:`check` (run when the worker is built) verifies every one against the installed
libraries: a name that is gone, or no longer what riverbed expects, stops start-up
with a message naming the library, its version and the name, instead of a wrong
default at run time. ``tests/unit/test_compat.py`` runs the same check, and
``tests/integration/test_transport.py`` exercises the aiokafka attributes on a real,
started consumer. The accessors below are the only places the attributes are read
or written.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from riverbed.exceptions import RiverbedError

__all__ = [
    "PRIVATE",
    "IncompatibleLibrary",
    "Private",
    "channel_queues",
    "check",
    "fetch_offsets",
    "producer_of",
    "set_fetch_max_wait",
]


class IncompatibleLibrary(RiverbedError):
    """An installed faust, mode or aiokafka lacks a private name riverbed relies on."""


@dataclass(frozen=True)
class Private:
    """One private name: ``owner`` is ``module:Class``.

    ``kind`` is ``method`` (a callable the class has, overridden or called) or
    ``attribute`` (assigned as ``self.<name>`` somewhere in the class's own code).
    """

    library: str
    owner: str
    name: str
    kind: str
    why: str


_FAUST_CONSUMER = "faust.transport.drivers.aiokafka:Consumer"
_FAUST_BASE_CONSUMER = "faust.transport.consumer:Consumer"
_FAUST_THREAD = "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread"
_MODE_SERVICE = "mode.services:Service"

PRIVATE: tuple[Private, ...] = (
    # -- faust: the consumer's fetch loop and commit offsets (app/kafka/transport.py) --------
    Private("faust-streaming", _FAUST_BASE_CONSUMER, "_drain_messages", "method",
            "overridden: a fetch goes to the intake whole, not message by message"),
    Private("faust-streaming", _FAUST_BASE_CONSUMER, "_wait_next_records", "method",
            "called by the overridden fetch loop"),
    Private("faust-streaming", _FAUST_BASE_CONSUMER, "_to_message", "method",
            "called for topics that keep Faust's per-message path"),
    Private("faust-streaming", _FAUST_BASE_CONSUMER, "_new_offset", "method",
            "overridden: commit what the latest durable snapshot covers"),
    Private("faust-streaming", _FAUST_BASE_CONSUMER, "_filter_tps_with_pending_acks",
            "method", "overridden: source partitions are never acked message by message"),
    Private("faust-streaming", _FAUST_BASE_CONSUMER, "_read_offset", "attribute",
            "written by the fetch loop, as Faust's own loop does"),
    Private("faust-streaming", _FAUST_BASE_CONSUMER, "_buffered_partitions", "attribute",
            "read by the fetch loop (active partitions)"),
    Private("faust-streaming", _FAUST_CONSUMER, "_thread", "attribute",
            "the consumer thread, whose fetch wait the loop paces"),
    Private("faust-streaming", _FAUST_CONSUMER, "_new_consumer_thread", "method",
            "overridden: the consumer runs on the app's loop unless asked otherwise"),
    Private("faust-streaming", _FAUST_THREAD, "_create_worker_consumer", "method",
            "overridden: sets aiokafka's fetch wait before start"),
    Private("faust-streaming", _FAUST_THREAD, "_consumer", "attribute",
            "the aiokafka consumer: paced, and stopped in LeaveGroup order"),
    Private("faust-streaming", "faust.transport.drivers.aiokafka:Producer",
            "_ensure_producer", "method", "the aiokafka producer, for record batches"),
    Private("faust-streaming", "faust.channels:Channel", "_root", "attribute",
            "the intake's no-wait put reaches the agents' queues"),
    Private("faust-streaming", "faust.channels:Channel", "_subscribers", "attribute",
            "the intake's no-wait put reaches the agents' queues"),
    Private("faust-streaming", "faust.tables.manager:TableManager", "_update_channels",
            "method", "what TableManager.on_start does before recovery, without its 1 s wait"),
    # -- mode: a consumer "thread" that runs on the app's loop ------------------------
    Private("mode-streaming", _MODE_SERVICE, "_stopped", "attribute",
            "read by the fetch loop, as Faust's own loop does"),
    Private("mode-streaming", _MODE_SERVICE, "_stopped_set", "method",
            "LoopConsumerThread calls Service's, not ServiceThread's"),
    Private("mode-streaming", _MODE_SERVICE, "_stop_children", "method",
            "LoopConsumerThread calls Service's, not ServiceThread's"),
    Private("mode-streaming", _MODE_SERVICE, "_stop_futures", "method",
            "LoopConsumerThread calls Service's, not ServiceThread's"),
    Private("mode-streaming", _MODE_SERVICE, "_stop_exit_stacks", "method",
            "LoopConsumerThread calls Service's, not ServiceThread's"),
    Private("mode-streaming", "mode.threads:ServiceThread", "_close_thread_loop_on_stop",
            "attribute", "LoopConsumerThread must not close the app's loop"),
    # -- aiokafka: the broker's fetch wait (no public setter) -------------------------
    Private("aiokafka", "aiokafka.consumer.consumer:AIOKafkaConsumer", "_fetch_max_wait_ms",
            "attribute", "read by start() into the fetcher"),
    Private("aiokafka", "aiokafka.consumer.consumer:AIOKafkaConsumer", "_fetcher",
            "attribute", "the fetcher, whose wait is paced"),
    Private("aiokafka", "aiokafka.consumer.fetcher:Fetcher", "_fetch_max_wait_ms",
            "attribute", "read into every FetchRequest"),
    # -- aiokafka: whether the group coordinator is known (/ready, a stop) -------------
    Private("aiokafka", "aiokafka.consumer.consumer:AIOKafkaConsumer", "_coordinator",
            "attribute", "its coordinator_id is None while no broker answers for the group "
            "(a failed heartbeat marks it dead at once); no public accessor"),
    # -- aiokafka: a partition's lag without an await (app/kafka/join.py) ---------------
    Private("aiokafka", "aiokafka.consumer.consumer:AIOKafkaConsumer", "_subscription",
            "attribute", "its assignment's per-partition high watermark and position; "
            "position() is a coroutine, read for every fetch the joiner holds"),
)  # fmt: skip


def _owner(path: str) -> type:
    module, _, name = path.partition(":")
    cls: type = getattr(importlib.import_module(module), name)
    return cls


def _present(p: Private) -> bool:
    try:
        cls = _owner(p.owner)
    except (ImportError, AttributeError):
        return False
    if p.kind == "method":
        return callable(getattr(cls, p.name, None))
    for klass in cls.__mro__:  # assigned as self.<name> in the class or a base
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        if f"self.{p.name} =" in source or f"self.{p.name}: " in source:
            return True
    return False


_PASSED: set[tuple[Private, ...]] = set()


def check(names: tuple[Private, ...] = PRIVATE) -> None:
    """Verify every private name against the installed libraries.

    Raises
    ------
    IncompatibleLibrary
        Naming the library, its installed version and each missing name.

    """
    if names in _PASSED:  # reading the libraries' sources takes ~0.35 s; once a process
        return
    missing = [p for p in names if not _present(p)]
    if not missing:
        _PASSED.add(names)
    if missing:
        lines = [
            f"{p.library} {version(p.library)}: {p.owner.replace(':', '.')}.{p.name} "
            f"({p.kind}; {p.why})"
            for p in missing
        ]
        msg = (
            "the installed libraries lack private names riverbed relies on; install the "
            "versions pyproject.toml pins:\n  " + "\n  ".join(lines)
        )
        raise IncompatibleLibrary(msg)


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


def coordinator_known(faust_consumer: Any) -> bool | None:
    """Whether the aiokafka consumer inside Faust's knows its group coordinator now
    (None before the consumer started)."""
    thread = getattr(faust_consumer, "_thread", None)
    consumer = getattr(thread, "_consumer", None)
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None:
        return None
    return coordinator.coordinator_id is not None


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
