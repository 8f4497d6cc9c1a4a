"""``riverbed produce``: replay a River dataset or a synthetic stream into ``events``.

Bundled datasets (no download): phishing, bananas, imagesegments, trumpapproval.
Synthetic streams (infinite unless ``--limit``): agrawal, sea, hyperplane, and
``drift``, a ConceptDriftStream from Agrawal function 0 to function 4 at ``--drift-at``.

Labels go inline (``"y"`` in the event) by default. With ``--label-delay N`` the event
is sent without ``y`` and its label is sent on ``labels``, with the same key and
partition, after ``N`` more events: a deterministic delay, so runs are reproducible.

``--file PATH`` (``-``: stdin) replays the user's own JSON lines instead, one record a
line, as they are (:func:`produce_file`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import orjson

from riverbed.config import Settings
from riverbed.exceptions import RiverbedError
from riverbed.kafka import clients
from riverbed.kafka.security import preflight
from riverbed.kafka.topics import TopicNames, ensure_topics
from riverbed.records import encode

__all__ = [
    "DATASETS",
    "FileStats",
    "ProduceStats",
    "dataset_stream",
    "key_of",
    "produce",
    "produce_file",
    "read_lines",
]

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
FILE_TOPICS = ("events", "labels")  # where --file sends its records


def dataset_stream(
    name: str, *, seed: int = 42, drift_at: int = 5000, drift_width: int = 500
) -> Iterator[tuple[dict[str, Any], Any]]:
    """``(x, y)`` pairs of a dataset by name."""
    # Imported here, not with the module: river.datasets imports river.stream, which
    # imports scikit-learn where it is installed (~0.5-1.3 s), and every command's
    # parser imports this module for DATASETS.
    from river import datasets
    from river.datasets import synth

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
    await preflight(settings)  # a refused password or certificate: one clear error
    counts = await ensure_topics(settings)
    names = TopicNames.from_settings(settings)
    n_partitions = counts[names.events]
    prefix = id_prefix if id_prefix is not None else uuid.uuid4().hex[:8]
    stream = (
        iter(pairs) if pairs is not None else dataset_stream(dataset, seed=seed, drift_at=drift_at)
    )
    if limit is not None:
        stream = itertools.islice(stream, limit)
    producer = clients.producer(
        settings,
        linger_ms=5,
        acks="all",
        # A retry after a leader change must not write an event twice (it would be
        # learned twice): the broker drops a batch it already has.
        enable_idempotence=True,
        max_batch_size=256 * 1024,
    )
    await producer.start()
    stats = ProduceStats(id_prefix=prefix)
    started = time.monotonic()
    try:
        await _send_events(
            producer, stream, names, stats, keyed=key == "id", n_partitions=n_partitions,
            rate=rate, labels=labels, label_delay=label_delay, on_sent=on_sent,
        )  # fmt: skip
    finally:
        await producer.stop()
        stats.seconds = time.monotonic() - started
    return stats


async def _send_events(
    producer: Any,
    stream: Iterable[tuple[dict[str, Any], Any]],
    names: TopicNames,
    stats: ProduceStats,
    *,
    keyed: bool,
    n_partitions: int,
    rate: float,
    labels: bool,
    label_delay: int,
    on_sent: Any,
) -> None:
    """:func:`produce`'s loop: each event (its id the key, or round-robin), its label
    inline or ``label_delay`` events later, paced to ``rate``; then every send acked."""
    prefix = stats.id_prefix
    waiting: deque[tuple[int, bytes | None, int | None, bytes]] = deque()
    futures: list[asyncio.Future[Any]] = []
    t0 = time.monotonic()
    for i, (x, y) in enumerate(stream):
        if rate > 0 and i > 0:
            ahead = t0 + i / rate - time.monotonic()
            if ahead > 0.001:
                await asyncio.sleep(ahead)  # pacing to the requested rate
        rid = f"{prefix}-{i}"
        k = rid.encode() if keyed else None
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


# -- --file: the user's own JSON lines ------------------------------------------------

_MISSING: Any = object()


def key_of(record: Any, path: str) -> bytes | None:
    """The Kafka key at the dotted ``path`` of a JSON record (None: absent or null).

    Strings are the key as they are, numbers their decimal text (``12`` -> ``b"12"``),
    any other value its compact JSON. A name that itself holds dots is found too, as
    ``RIVERBED_EVENT_*`` paths are.

    Examples
    --------
    >>> key_of({"txn_id": 12}, "txn_id"), key_of({"user": {"id": "u-7"}}, "user.id")
    (b'12', b'u-7')
    >>> key_of({"user.id": 3.5}, "user.id"), key_of({"user": {"id": None}}, "user.id")
    (b'3.5', None)
    >>> key_of({"ids": [1, 2]}, "ids"), key_of({"ok": True}, "ok"), key_of([1], "a")
    (b'[1,2]', b'true', None)

    """
    cur: Any = record
    for part in path.split("."):
        cur = cur.get(part, _MISSING) if isinstance(cur, dict) else _MISSING
        if cur is _MISSING:
            cur = record.get(path) if isinstance(record, dict) and "." in path else None
            break
    if cur is None:
        return None
    if isinstance(cur, str):
        return cur.encode()
    if isinstance(cur, int | float) and not isinstance(cur, bool):
        return str(cur).encode()
    return orjson.dumps(cur)


async def _chunks(stream: BinaryIO, size: int = 1 << 16) -> AsyncIterator[bytes]:
    """``stream``'s bytes as they arrive. A daemon thread reads, so a pipe or terminal
    that waits for its writer never holds the event loop (nor the producer's sends),
    and an interrupted run does not wait for a line that may never come. The thread
    reads its own duplicate of the file descriptor, with no lock of Python's file
    object held, so closing the file or exiting while it waits is safe."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException] = asyncio.Queue(maxsize=8)
    stop = threading.Event()
    try:
        fd = os.dup(stream.fileno())
    except (AttributeError, OSError, ValueError):  # no file descriptor (an io.BytesIO)
        fd = -1

    def put(item: bytes | BaseException) -> bool:
        putting = queue.put(item)
        try:
            sent = asyncio.run_coroutine_threadsafe(putting, loop)
        except RuntimeError:  # the loop is closed: nobody reads any more
            putting.close()
            return False
        while not stop.is_set():
            try:
                sent.result(timeout=0.1)
            except TimeoutError:
                continue  # the queue is full: the producer is behind
            except Exception:  # cancelled as the loop closed
                return False
            return True
        sent.cancel()
        return False

    def reader() -> None:
        try:
            while not stop.is_set():
                chunk = os.read(fd, size) if fd >= 0 else stream.read(size)
                if not put(chunk) or not chunk:
                    return
        except Exception as exc:  # raised where the chunks are read
            put(exc)
        finally:
            if fd >= 0:
                os.close(fd)

    threading.Thread(target=reader, name="riverbed-produce-reader", daemon=True).start()
    try:
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            yield item
    finally:
        stop.set()


async def read_lines(stream: BinaryIO) -> AsyncGenerator[bytes, None]:
    """The lines of ``stream`` without their ``\\n`` or ``\\r\\n``, as they arrive."""
    parts: list[bytes] = []
    async for chunk in _chunks(stream):
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            parts.append(chunk[start:end])
            line = b"".join(parts)
            parts.clear()
            start = end + 1
            yield line[:-1] if line.endswith(b"\r") else line
        if start < len(chunk):
            parts.append(chunk[start:])
    if parts:
        line = b"".join(parts)
        yield line[:-1] if line.endswith(b"\r") else line


@dataclass
class FileStats:
    """What :func:`produce_file` sent: ``records`` in all, of which ``not_objects``
    are not a JSON object and ``keyless`` are objects with no value at the key field
    (each line is counted in one of them at most); ``blank`` lines were skipped."""

    topic: str
    records: int = 0
    blank: int = 0
    not_objects: int = 0
    keyless: int = 0
    seconds: float = 0.0


async def produce_file(
    settings: Settings,
    source: BinaryIO,
    *,
    topic: str = "events",
    key_field: str | None = None,
    limit: int | None = None,
    rate: float = 0.0,
) -> FileStats:
    """Send each JSON line of ``source`` to riverbed's ``topic`` (events or labels).

    The value is the line's bytes unchanged: riverbed validates records, so a line that
    is not a valid record reaches the dead-letter topic as it would from any producer.
    Blank lines are skipped. The key is :func:`key_of` the record at ``key_field``
    (none without it), partitioned as Kafka's Java clients do (murmur2 of the key;
    aiokafka's default). ``limit`` stops after that many records, ``rate`` paces
    them per second (0: as fast as the broker takes them).
    """
    if topic not in FILE_TOPICS:
        msg = f"--topic must be one of {', '.join(FILE_TOPICS)}"
        raise ValueError(msg)
    await preflight(settings)  # a refused password or certificate: one clear error
    await ensure_topics(settings)  # the partitions riverbed wants, not auto-created ones
    stats = FileStats(topic=settings.topic(topic))
    producer = clients.producer(settings, linger_ms=5, acks="all", enable_idempotence=True)
    await producer.start()
    futures: list[asyncio.Future[Any]] = []
    t0 = started = time.monotonic()
    lineno = 0
    try:
        async for line in read_lines(source):
            lineno += 1
            if limit is not None and stats.records >= limit:
                break  # --limit 0
            if not line.strip():
                stats.blank += 1
                continue
            n = stats.records
            if rate > 0 and n > 0:
                ahead = t0 + n / rate - time.monotonic()
                if ahead > 0.001:
                    await asyncio.sleep(ahead)  # pacing to the requested rate
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = None
            if not isinstance(record, dict):
                stats.not_objects += 1
            key = key_of(record, key_field) if key_field else None
            if key_field and key is None and isinstance(record, dict):
                stats.keyless += 1  # a line that is no object is counted once, above
            try:
                futures.append(await producer.send(stats.topic, line, key=key))
            except clients.MessageSizeTooLargeError:
                msg = (
                    f"line {lineno} has {len(line):,} bytes, more than a Kafka request "
                    "takes (1 MiB); nothing after it was sent"
                )
                raise RiverbedError(msg) from None
            if n == 0:
                t0 = time.monotonic()  # the schedule starts once metadata is in
            stats.records += 1
            if limit is not None and stats.records >= limit:
                break  # without waiting for one more line of a slow pipe
            if len(futures) >= 2000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
        await producer.flush()
    finally:
        await producer.stop()
        stats.seconds = time.monotonic() - started
    return stats
