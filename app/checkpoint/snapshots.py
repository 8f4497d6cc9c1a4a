"""Offset-stamped, signed model snapshots and the checkpoint that commits up to them.

**Exactly-once learning without Faust's exactly-once mode.** The only offsets the
consumer commits (periodically, on a rebalance, on stop) are those stamped in the
latest snapshot that is durable in Kafka (:meth:`Checkpointer.committable`, read by
:class:`riverbed.kafka.transport.BatchConsumer`), so every commit is covered by a snapshot. On
assignment a partition's learner is restored from its latest good snapshot, and the
learner skips records at or below the offsets the snapshot stamps. Order of a
checkpoint, as Quix does it: flush the outputs, write the state, then let the offset
be committed.

**Snapshots** live in the compacted ``snapshots`` topic, in the partition of the
same number as the source partition: chunk records (key ``<p>/<i>``) followed by a
manifest (key ``<p>``) naming the chunks, the offsets covered, the model and versions,
the SHA-256 of the payload and an HMAC-SHA256 signature. A manifest whose signature
does not verify is refused, loudly, and the payload is never unpickled.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import pickle
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson

from riverbed.checkpoint.capture import CaptureThread, fork_capture
from riverbed.exceptions import RiverbedError
from riverbed.learning.guard import suspect_blob
from riverbed.learning.learner import PartitionLearner
from riverbed.learning.state import LearnerRegistry

__all__ = [
    "FORMAT_VERSION",
    "BadSignature",
    "Checkpointer",
    "OutputRefused",
    "Picked",
    "SnapshotCodec",
    "SnapshotRefused",
    "load_key",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = b"manifest"
CHUNK = b"chunk"
# Read once: importlib.metadata reads the distributions' files on every call (0.5 ms).
_VERSIONS = {name: version(name) for name in ("riverbed", "river")}
# With RIVERBED_CHECKPOINT_CAPTURE=inline, learners up to this snapshot size are copied
# after a checkpoint (app/learning/inline.py): the copy costs ~0.1-0.4 µs a byte with the
# loop held (0.9 ms for logreg's 4 KB, 18 ms for a 230 KB Hoeffding tree, 65 ms for
# 170 KB of half-space trees).
INLINE_MAX_BYTES = 64 * 1024
# auto's first inline capture, which measures what pickling and copying cost a byte of
# this worker's learners, is tried up to this many bytes of snapshots in all (the cost
# is 0.03-0.2 µs a byte from hoeffding to hst, 0.11 for logreg: 2-13 ms once). Not
# less: a fork costs the worker more than the loop time it is compared by (the child's
# CPU, copy-on-write faults), and with two logreg partitions per worker, each worker
# forking instead of trying inline cut two workers on 2 cores from 71-73k to 54-60k
# events/s (16 KiB, session 9).
INLINE_TRIAL_BYTES = 64 * 1024
KIND_HEADER = "riverbed.snapshot"
GENERATION_HEADER = "riverbed.snapshot.generation"


class OutputRefused(RiverbedError):
    """Kafka did not take an output (prediction, dead letter, ...) of handled records."""


class SnapshotRefused(RiverbedError):
    """A snapshot failed verification (signature, digest, chunks, model) and was not loaded."""


class BadSignature(SnapshotRefused):
    """A manifest's signature does not verify: tampered, or signed with another key."""


def load_key(configured: str, key_file: Path) -> bytes:
    """The HMAC key: ``RIVERBED_SNAPSHOT_KEY``, else a random key kept in ``key_file``."""
    if configured:
        return configured.encode()
    if key_file.exists():
        return key_file.read_bytes().strip()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    logger.warning(
        "created a snapshot signing key in %s; set RIVERBED_SNAPSHOT_KEY so "
        "workers on other machines can verify each other's snapshots",
        key_file,
    )
    return key


Record = tuple[bytes, bytes, list[tuple[str, bytes]]]  # key, value, headers


@dataclass
class SnapshotCodec:
    """Encode a learner into snapshot records and decode them back, verifying first.

    Examples
    --------
    >>> from riverbed import models
    >>> from riverbed.records import Event
    >>> codec = SnapshotCodec(key=b"k", chunk_bytes=1000)
    >>> learner = PartitionLearner(models.spec("logreg"), partition=2)
    >>> _ = learner.process_event(Event("a", {"f": 1.0}, True), offset=7, ts_ms=0)
    >>> records = codec.encode(learner)
    >>> [r[0] for r in records][-1]
    b'2'
    >>> restored = codec.decode(records[-1][1], {i: r[1] for i, r in enumerate(records[:-1])})
    >>> restored.last_offset, restored.learned
    (7, 1)

    """

    key: bytes
    chunk_bytes: int = 512_000
    model_name: str | None = None

    def _sign(self, meta: dict[str, Any]) -> str:
        body = orjson.dumps(
            {k: v for k, v in meta.items() if k != "sig"}, option=orjson.OPT_SORT_KEYS
        )
        return hmac.new(self.key, body, hashlib.sha256).hexdigest()

    def encode(self, learner: PartitionLearner) -> list[Record]:
        """Chunk records, then the manifest (write them in this order)."""
        return self.encode_pickled(learner)[1]

    def encode_pickled(self, learner: PartitionLearner) -> tuple[bytes, list[Record]]:
        """The learner's pickle, and its chunk records then manifest."""
        blob = pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL)
        return blob, self.encode_blob(
            blob, learner.partition, learner.last_offset, learner.last_label_offset,
            learner.version_summary(),
        )  # fmt: skip

    def encode_blob(
        self,
        blob: bytes,
        p: int,
        events_offset: int,
        labels_offset: int,
        summary: dict[str, Any],
        sha256: str | None = None,
    ) -> list[Record]:
        """The chunk records then manifest of a learner's pickle ``blob``, made when it
        had handled up to these offsets (``summary``: its
        :meth:`~riverbed.learning.learner.PartitionLearner.version_summary`, ``model``
        the names of its candidates; ``sha256``: its digest, when known)."""
        generation = uuid.uuid4().hex
        n = max(1, -(-len(blob) // self.chunk_bytes))
        gen_header = (GENERATION_HEADER, generation.encode())
        records: list[Record] = [
            (
                f"{p}/{i}".encode(),
                blob[i * self.chunk_bytes : (i + 1) * self.chunk_bytes],
                [(KIND_HEADER, CHUNK), gen_header],
            )
            for i in range(n)
        ]
        meta: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "partition": p,
            "generation": generation,
            "chunks": n,
            "size": len(blob),
            "sha256": sha256 or hashlib.sha256(blob).hexdigest(),
            "events_offset": events_offset,
            "labels_offset": labels_offset,
            **summary,
            "riverbed": _VERSIONS["riverbed"],
            "river": _VERSIONS["river"],
            "created_ms": int(time.time() * 1000),
        }
        meta["sig"] = self._sign(meta)
        records.append((str(p).encode(), orjson.dumps(meta), [(KIND_HEADER, MANIFEST), gen_header]))
        return records

    def verify(self, manifest: bytes) -> dict[str, Any]:
        """The manifest's metadata, once its signature verifies."""
        try:
            meta = orjson.loads(manifest)
            sig = meta["sig"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            msg = f"unreadable manifest: {exc}"
            raise SnapshotRefused(msg) from None
        if not isinstance(sig, str) or not hmac.compare_digest(sig, self._sign(meta)):
            msg = (
                "signature does not verify (tampered, or signed with another RIVERBED_SNAPSHOT_KEY)"
            )
            raise BadSignature(msg)
        if meta.get("format") != FORMAT_VERSION:
            msg = f"snapshot format {meta.get('format')} is not {FORMAT_VERSION}"
            raise SnapshotRefused(msg)
        if self.model_name is not None and not set(str(meta.get("model")).split(",")) & set(
            self.model_name.split(",")
        ):
            # A snapshot shares candidates with RIVERBED_MODEL: those carry on from it
            # (the learner adds and drops the others); none in common: refused.
            msg = (
                f"snapshot is of model {meta.get('model')!r}, this worker runs {self.model_name!r}"
            )
            raise SnapshotRefused(msg)
        return dict(meta)

    def decode(self, manifest: bytes, chunks: dict[int, bytes]) -> PartitionLearner:
        """Verify the manifest, reassemble and check the payload, then unpickle it."""
        meta = self.verify(manifest)
        missing = [i for i in range(meta["chunks"]) if i not in chunks]
        if missing:
            msg = f"chunks {missing} of generation {meta['generation']} are missing"
            raise SnapshotRefused(msg)
        blob = b"".join(chunks[i] for i in range(meta["chunks"]))
        if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
            msg = "payload digest does not match the signed manifest"
            raise SnapshotRefused(msg)
        # Safe: the bytes are exactly those a holder of the key signed (digest above).
        learner = pickle.loads(blob)  # noqa: S301
        if not isinstance(learner, PartitionLearner):
            msg = f"payload is a {type(learner).__name__}, not a PartitionLearner"
            raise SnapshotRefused(msg)
        learner.snapshot_offset = learner.restored_offset = learner.last_offset
        learner.snapshot_ms = meta["created_ms"]
        learner.checkpointed(blob)
        return learner


@dataclass
class Found:
    """A snapshot partition's manifests and chunks (:func:`gather`)."""

    manifests: list[tuple[int, bytes]] = field(default_factory=list)  # (offset, value)
    chunks: dict[tuple[str, int], bytes] = field(default_factory=dict)  # (generation, i)

    def chunks_of(self, generation: str) -> dict[int, bytes]:
        """The chunks of one snapshot (its manifest's ``generation``), by index."""
        return {i: v for (g, i), v in self.chunks.items() if g == generation}


def gather(partition: int, records: Iterable[tuple[int, bytes | None, bytes | None, Any]]) -> Found:
    """The manifests and chunks of ``partition`` among a snapshots (or versions)
    topic's ``(offset, key, value, headers)`` records."""
    found = Found()
    for offset, key, value, headers in records:
        if key is None or value is None:
            continue
        kind = dict(headers or ()).get(KIND_HEADER)
        gen = dict(headers or ()).get(GENERATION_HEADER, b"").decode()
        if kind == MANIFEST and key == str(partition).encode():
            found.manifests.append((offset, value))
        elif kind == CHUNK and key.startswith(f"{partition}/".encode()):
            found.chunks[(gen, int(key.rsplit(b"/", 1)[1]))] = value
    return found


@dataclass
class Picked:
    """What :func:`pick_latest` found in a snapshot partition.

    Unpacks as ``(learner, refused)``.
    """

    learner: PartitionLearner | None
    refused: list[str]
    manifests: int = 0  # manifests of the partition, verified or not
    bad_signatures: int = 0  # of them, refused because the signature does not verify
    meta: dict[str, Any] | None = None  # the loaded snapshot's manifest

    def __iter__(self) -> Any:
        return iter((self.learner, self.refused))

    @property
    def wrong_key(self) -> bool:
        """Snapshots exist, none loads, and signatures failed: this worker's key is not
        the key the other workers sign with (``RIVERBED_SNAPSHOT_KEY``)."""
        return self.learner is None and self.bad_signatures > 0


def pick_latest(
    codec: SnapshotCodec,
    partition: int,
    records: Iterable[tuple[int, bytes | None, bytes | None, Any]],
) -> Picked:
    """The newest snapshot that verifies among a snapshot partition's records.

    ``records`` are ``(offset, key, value, headers)``. Returns the learner (or None)
    and the reasons newer manifests were refused.
    """
    found = gather(partition, records)
    picked = Picked(None, [], manifests=len(found.manifests))
    for offset, manifest in sorted(found.manifests, reverse=True):
        try:
            meta = codec.verify(manifest)
            chunks = found.chunks_of(meta["generation"])
            picked.learner, picked.meta = codec.decode(manifest, chunks), meta
            return picked
        except BadSignature as exc:
            picked.bad_signatures += 1
            picked.refused.append(f"snapshot at offset {offset}: {exc}")
        except SnapshotRefused as exc:
            picked.refused.append(f"snapshot at offset {offset}: {exc}")
        except Exception as exc:
            picked.refused.append(
                f"snapshot at offset {offset} does not load: {type(exc).__name__}: {exc}"
            )
    return picked


Send = Callable[[bytes, bytes, list[tuple[str, bytes]], int], Awaitable[Any]]


class Checkpointer:
    """Writes snapshots of the partitions that changed; says which offsets may be committed.

    Parameters
    ----------
    learners
        The worker's :class:`~riverbed.learning.state.Learners`: the learners to snapshot, and where
        a snapshotted learner is replaced by its copy (``replace``).
    codec
        Encodes snapshots.
    send
        ``send(key, value, headers, partition)`` to the snapshots topic; returns an
        awaitable that resolves when the broker has the record.
    topics
        ``(events, labels)`` topic names: :meth:`committable` answers for these.
    every, interval
        A checkpoint is due after ``every`` records or ``interval`` seconds.
    on_failure
        Called once, with the exception, when the checkpointer fails (see :meth:`fail`);
        the worker stops itself there.

    Examples
    --------
    >>> import asyncio
    >>> from riverbed import models
    >>> from riverbed.records import Event
    >>> from riverbed.learning.state import Learners
    >>> learners = Learners(models.spec("logreg"))
    >>> written = []
    >>> async def send(k, v, h, p):
    ...     written.append(k)
    >>> cp = Checkpointer(learners, SnapshotCodec(b"k"), send=send, topics=("ev", "lb"),
    ...                   every=100, interval=10.0)
    >>> _ = learners.get(0).process_event(Event("a", {"f": 1.0}, True), offset=41, ts_ms=0)
    >>> cp.note(0, 1)
    >>> cp.committable("ev", 0) is None    # nothing durable yet
    True
    >>> asyncio.run(cp.checkpoint())
    >>> written, cp.committable("ev", 0), cp.committable("lb", 0)
    ([b'0/0', b'0'], 42, None)

    """

    def __init__(
        self,
        learners: LearnerRegistry,
        codec: SnapshotCodec,
        *,
        send: Send,
        topics: tuple[str, str],
        every: int,
        interval: float,
        on_failure: Callable[[BaseException], Any] | None = None,
        capture: str = "auto",
        send_version: Send | None = None,
        version_interval: float = 600.0,
    ) -> None:
        self.learners = learners
        self.codec = codec
        # RIVERBED_CHECKPOINT_CAPTURE: pickle the learners in the worker (inline), in
        # a forked child that holds the loop only for the fork (fork,
        # app/checkpoint/capture.py), or whichever of the two held the loop less, as
        # measured (auto, see _forks).
        self.capture = capture if hasattr(os, "fork") else "inline"
        # auto: the least each capture has held the loop, None until one was made: a
        # fork's seconds, and an inline capture's seconds a snapshot byte (pickle, scan,
        # copy). The least, as a preempted or collected capture measures high once and
        # the capture not taken is not measured again.
        self._fork_floor: float | None = None
        self._inline_rate: float | None = None
        self._thread: CaptureThread | None = None
        if self.capture != "inline":
            self._thread = CaptureThread()
        self.send = send
        self.events_topic, self.labels_topic = topics
        self.every = every
        self.interval = interval
        self._outputs: list[tuple[asyncio.Future[Any], str]] = []
        self._dirty: set[int] = set()
        self._since = 0  # records handled since the last checkpoint's capture
        self._durable: dict[int, tuple[int, int]] = {}  # partition -> (events, labels) offset
        self._last = time.monotonic()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.bytes_written = 0
        self.last_seconds = 0.0
        # How the last capture was made ("fork" or "inline") and how long it held the
        # event loop: the fork call, or the pickles and copies.
        self.last_capture: str | None = None
        self.last_capture_loop_seconds = 0.0
        self.on_failure = on_failure
        self.failed: BaseException | None = None
        # Versions (riverbed versions, export --version, rollback): a snapshot copied
        # to the versions topic, which keeps them for its retention, when a partition's
        # last version is older than version_interval or its lineup changed since (a
        # promotion, a manual operation).
        self.send_version = send_version
        self.version_interval = version_interval
        self._versioned: dict[int, tuple[float, tuple[Any, ...]]] = {}
        self.versions_written = 0

    # -- called by the agent, synchronously, per fetch --------------------------------
    def note(self, partition: int, records: int) -> None:
        """``records`` records of ``partition`` were handled."""
        self._dirty.add(partition)
        self._since += records

    def track(self, output: asyncio.Future[Any], topic: str) -> None:
        """The delivery of an output to ``topic``, which must be in Kafka before the
        next snapshot (the future aiokafka's ``send``/``send_batch`` return)."""
        self._outputs.append((output, topic))

    def due(self) -> bool:
        if not self._dirty:
            return False
        return self._since >= self.every or time.monotonic() - self._last >= self.interval

    async def checkpoint_if_due(self) -> None:
        """A checkpoint when one is due (the worker's 1 s timer: a quiet stream still
        gets its interval checkpoints)."""
        if self.due():
            await self.checkpoint()

    def busy(self) -> bool:
        """Whether a checkpoint is under way or asked for (its awaits need turns of the
        loop)."""
        return self._lock.locked() or (self._task is not None and not self._task.done())

    def request(self) -> asyncio.Task[None] | None:
        """Start a checkpoint in the background unless one is running; return its task."""
        if self._task is None or self._task.done():
            if not self._dirty:
                return None
            self._task = asyncio.ensure_future(self.checkpoint())
        return self._task

    # -- what the consumer may commit ------------------------------------------------
    def committable(self, topic: str, partition: int) -> int | None:
        """The offset after the last record of ``topic[partition]`` a durable snapshot has."""
        offsets = self._durable.get(partition)
        if offsets is None:
            return None
        if topic == self.events_topic:
            offset = offsets[0]
        elif topic == self.labels_topic:
            offset = offsets[1]
        else:
            return None
        return offset + 1 if offset >= 0 else None

    def assign(self, partitions: set[int]) -> None:
        """Forget what was durable for partitions this worker no longer owns."""
        for p in set(self._durable) - partitions:
            del self._durable[p]

    # -- failure ----------------------------------------------------------------------
    def fail(self, reason: BaseException) -> None:
        """Stop checkpointing for good (fail-stop); the worker then stops.

        Called when an output of handled records was not delivered, a snapshot was not
        written, or the agent failed half-way through a fetch: the learners may now hold
        records whose predictions are not in Kafka, so no later snapshot may cover them.
        What was durable before stays committable; a restarted worker restores those
        snapshots and handles everything after them again (Kafka Streams stops a stream
        thread on such errors for the same reason).
        """
        if self.failed is not None:
            return
        self.failed = reason
        logger.critical(
            "checkpointing stopped: %s: %s; offsets stay at the last durable snapshot and "
            "the worker stops, a restart handles the records after it again",
            type(reason).__name__,
            reason,
            exc_info=reason,
        )
        if self.on_failure is not None:
            self.on_failure(reason)

    # -- the checkpoint --------------------------------------------------------------
    async def checkpoint(self) -> None:
        """Snapshot every partition changed since the last checkpoint.

        Order, as Quix does it: the outputs of the records a snapshot includes are in
        Kafka first, then the snapshot's chunks, then its manifest; only then do its
        offsets become committable.
        """
        async with self._lock:
            if not self._dirty or self.failed is not None:
                return
            try:
                await self._checkpoint()
            except Exception as exc:
                self.fail(exc)

    async def _checkpoint(self) -> None:
        # Under the lock, called by checkpoint() only.
        t0 = time.perf_counter()
        # One synchronous capture: the states, the offsets they include, their outputs.
        outputs, self._outputs = self._outputs, []
        dirty, self._dirty = self._dirty, set()
        self._since = 0
        learners = dict(self.learners.items())
        captured = {
            p: (learners[p].last_offset, learners[p].last_label_offset)
            for p in dirty
            if p in learners
        }
        records: list[Record] = []
        size = 0
        if self._forks(learners[p] for p in captured):
            size = await self._fork_capture(learners, captured, records)
        else:
            size = self._inline_capture(learners, captured, records)
        self._last = time.monotonic()
        # 1. the predictions and dead letters of those records are in Kafka. Most of
        # the deliveries are done by now (at 5,000 events/s, ~1,600 record batches
        # between two checkpoints), and gather() over them all held the loop ~7 ms, a
        # done-callback per future: only those still in flight are waited for.
        await self._delivered(outputs)
        # 2. the snapshots: chunks first, the manifest (last record per partition) after
        chunks = [
            self.send(k, v, h, int(k.split(b"/")[0]))
            for k, v, h in records
            if dict(h)[KIND_HEADER] == CHUNK
        ]
        await asyncio.gather(*chunks)
        manifests = [
            self.send(k, v, h, int(k)) for k, v, h in records if dict(h)[KIND_HEADER] == MANIFEST
        ]
        await asyncio.gather(*manifests)
        if self.send_version is not None:
            await self._write_versions(records)
        # 3. the offsets become committable
        now_ms = int(time.time() * 1000)
        for p, offsets in captured.items():
            if self.learners.has(p):  # still ours
                self._durable[p] = offsets
                current = self.learners.get(p)
                current.snapshot_offset = offsets[0]
                current.snapshot_ms = now_ms
        self.written += len(manifests)
        self.bytes_written += size
        self.last_seconds = time.perf_counter() - t0
        logger.debug("checkpoint: %d partitions in %.3f s", len(manifests), self.last_seconds)

    async def _write_versions(self, records: list[Record]) -> None:
        """Copy the snapshots that are due a version to the versions topic: chunks, then
        the manifest, as to the snapshots topic."""
        assert self.send_version is not None
        now = time.monotonic()
        due: set[int] = set()
        for k, v, h in records:
            if dict(h)[KIND_HEADER] != MANIFEST:
                continue
            meta = orjson.loads(v)
            p = int(k)
            key = (meta.get("champion"), meta.get("pinned"), meta.get("promotions"),
                   meta.get("operations"), meta.get("model"))  # fmt: skip
            last = self._versioned.get(p)
            if last is None or now - last[0] >= self.version_interval or last[1] != key:
                due.add(p)
                self._versioned[p] = (now, key)
        if not due:
            return
        send = self.send_version
        chunks = [send(k, v, h, int(k.split(b"/")[0])) for k, v, h in records
                  if dict(h)[KIND_HEADER] == CHUNK and int(k.split(b"/")[0]) in due]  # fmt: skip
        await asyncio.gather(*chunks)
        await asyncio.gather(*(send(k, v, h, int(k)) for k, v, h in records
                               if dict(h)[KIND_HEADER] == MANIFEST and int(k) in due))  # fmt: skip
        self.versions_written += len(due)

    def _inline_capture(
        self,
        learners: dict[int, PartitionLearner],
        captured: dict[int, tuple[int, int]],
        records: list[Record],
    ) -> int:
        """Pickle the captured learners in the worker; their records added to
        ``records``; the bytes pickled."""
        size = 0
        began = time.perf_counter()
        for p in sorted(captured):
            learner = learners[p]
            blob, encoded = self.codec.encode_pickled(learner)
            # Never snapshot a poisoned model: a non-finite float in the pickle (a
            # cheap scan; a walk confirms) has its learns undone first (app/learning/guard.py).
            if suspect_blob(blob) and learner.poisoned() and learner.repair():
                blob, encoded = self.codec.encode_pickled(learner)
            records += encoded
            learner_size = len(blob)
            size += learner_size
            # Pickling slowed every object of the learner for good (app/learning/inline.py).
            # The learner carries on as an equal copy that is as fast as new; with
            # RIVERBED_CHECKPOINT_CAPTURE=inline a large one (trees) keeps its objects,
            # as the copy would hold the loop too long (auto forks for those).
            if self.capture == "auto" or learner_size <= INLINE_MAX_BYTES:
                learner = learner.rebuilt()
                self.learners.replace(p, learner)
            learner.checkpointed(blob)
        held = time.perf_counter() - began
        self.last_capture, self.last_capture_loop_seconds = "inline", held
        if self.capture == "auto" and size:
            rate = held / size
            self._inline_rate = min(rate, self._inline_rate or rate)
        return size

    @staticmethod
    async def _delivered(outputs: list[tuple[asyncio.Future[Any], str]]) -> None:
        """Every output of the records a snapshot covers is in Kafka, or this raises."""
        pending = [o for o, _ in outputs if not o.done()]
        if pending:
            await asyncio.wait(pending)
        for output, topic in outputs:
            if output.cancelled():
                msg = f"the delivery of a record for {topic} was cancelled"
                raise OutputRefused(msg)
            exc = output.exception()
            if exc is not None:
                msg = f"Kafka refused a record for {topic}: {type(exc).__name__}: {exc}"
                raise OutputRefused(msg) from exc

    def _forks(self, learners: Iterable[PartitionLearner]) -> bool:
        """Whether this checkpoint forks (see ``capture``).

        auto takes the capture that has held the loop less, at its least: the fork
        (its cost is set by the process's memory, ~4-5 ms for a worker) or pickling
        and copying the learners inline (set by their size and kind: 0.03-0.2 µs a
        byte, so ~1.5 ms for one ``logreg`` learner, 6 ms for four, 35 ms for four
        ``hoeffding`` trees). A learner whose size is not known yet (its first
        checkpoint) is forked; inline is first tried, and measured, on snapshots of
        up to INLINE_TRIAL_BYTES in all.
        """
        if self.capture != "auto":
            return self.capture == "fork"
        sizes = [lr.snapshot_bytes for lr in learners]
        if any(size <= 0 for size in sizes):
            return True
        if self._inline_rate is None or self._fork_floor is None:
            return sum(sizes) > INLINE_TRIAL_BYTES
        return self._inline_rate * sum(sizes) > self._fork_floor

    async def _fork_capture(
        self,
        learners: dict[int, PartitionLearner],
        captured: dict[int, tuple[int, int]],
        records: list[Record],
    ) -> int:
        """The capture in a forked child (app/checkpoint/capture.py); returns the bytes.

        The learners go on handling records while the child pickles: each one's undo
        journal keeps the entries made after the fork (the new base is the state at the
        fork). The snapshot's records are made in the capture thread. A partition
        whose state at the fork held a non-finite float (the child's scan and walk)
        is repaired now and left to the next checkpoint.
        """
        taken = {p: learners[p] for p in sorted(captured)}
        marks = {p: (lr.journal, len(lr.journal)) for p, lr in taken.items()}
        summaries = {p: lr.version_summary() for p, lr in taken.items()}  # as at the fork

        def encode(p: int, blob: bytes, sha256: str) -> list[Record]:
            events_offset, labels_offset = captured[p]
            return self.codec.encode_blob(blob, p, events_offset, labels_offset,
                                          summaries[p], sha256)  # fmt: skip

        blobs = await fork_capture(taken, thread=self._thread, encode=encode)
        self.last_capture = "fork"
        held = self._thread.fork_seconds if self._thread is not None else None
        if held is not None:
            self.last_capture_loop_seconds = held
            self._fork_floor = min(held, self._fork_floor or held)
        size = 0
        for p, learner in taken.items():
            blob = blobs[p].blob
            if blobs[p].poisoned:
                learner.repair()
                del captured[p]
                self._dirty.add(p)
                continue
            records += blobs[p].records
            size += len(blob)
            journal, mark = marks[p]
            if learner.journal is journal:  # not re-based since the fork
                learner.checkpointed(blob, keep=journal[mark:])
        return size

    def close(self) -> None:
        """Stop the capture thread. Tests and benchmarks that make many checkpointers
        call it; a worker's one thread is idle between captures and ends with it."""
        if self._thread is not None:
            self._thread.close()

    def describe(self) -> dict[str, Any]:
        return {
            "snapshots_written": self.written,
            "versions_written": self.versions_written,
            "snapshot_bytes_written": self.bytes_written,
            "last_checkpoint_seconds": round(self.last_seconds, 6),
            "last_capture": self.last_capture,
            "last_capture_loop_seconds": round(self.last_capture_loop_seconds, 6),
            "records_since_checkpoint": self._since,
        }
