"""Recovery on assignment: which learner each assigned partition continues with, and where.

The rule (docs/durability.md): a learner is valid only for the assignment that
installed it. On every assignment, a partition this worker already holds keeps its
learner only when it is *provably current*: its events and labels offsets equal the
group's committed offsets, so no other member handled the partition since (after a
stall longer than the session timeout another member did, and committed further).
Every other partition is restored from the newest snapshot that verifies, and the
consumer then reads events and labels from the offsets *that snapshot* stamps, not
from the committed ones: a refused newer snapshot, a stale zombie's snapshot, or a
commit the snapshot does not cover never skips a record. Only records Kafka no
longer has (retention) are lost, and then loudly: an ERROR, the
``riverbed_learning_gaps_total`` counter, and ``/ready``'s ``learning_gaps``.

A worker whose ``RIVERBED_SNAPSHOT_KEY`` verifies none of a partition's snapshots
stops at once: serving with fresh models would fork the partition's learning, and
the other workers would then refuse its snapshots.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from riverbed.checkpoint.snapshots import Checkpointer, Picked, SnapshotCodec, pick_latest
from riverbed.checkpoint.warmup import missing_candidates, warm_up
from riverbed.exceptions import ConfigError, RiverbedError
from riverbed.kafka import clients
from riverbed.kafka.clients import Connection, TopicPartition
from riverbed.kafka.topics import TopicNames
from riverbed.learning.learner import PartitionLearner
from riverbed.learning.state import Learners

__all__ = ["Gap", "Recovery", "read_snapshot_partitions"]

logger = logging.getLogger(__name__)

SNAPSHOT_READ_TIMEOUT_S = 60.0
RESTORE_WAIT_S = 120.0  # longest a seek waits for the assignment's restore


@dataclass(frozen=True)
class Gap:
    """Records of a source partition that were never learned: Kafka deleted them first."""

    topic: str
    partition: int
    first: int  # first offset not learned
    next: int  # the first offset Kafka still has

    def describe(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "from": self.first,
            "to": self.next - 1,
            "records": self.next - self.first,
        }


@dataclass
class KafkaView:
    """What recovery reads from Kafka for the partitions it restores."""

    snapshots: dict[int, list[Any]] = field(default_factory=dict)
    legacy: dict[int, list[Any]] = field(default_factory=dict)
    log_start: dict[tuple[str, int], int] = field(default_factory=dict)


async def _read_all(consumer: Any, wanted: list[Any], timeout: float) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {tp.partition: [] for tp in wanted}
    if not wanted:
        return out
    consumer.assign(wanted)
    end = await consumer.end_offsets(wanted)
    remaining = {tp for tp in wanted if end[tp] > 0}
    deadline = time.monotonic() + timeout
    while remaining:
        if time.monotonic() > deadline:
            msg = f"reading snapshots of {sorted(tp.partition for tp in remaining)} timed out"
            raise RiverbedError(msg)
        batch = await consumer.getmany(*remaining, timeout_ms=500)
        for tp, records in batch.items():
            out[tp.partition].extend(records)
            if records and records[-1].offset + 1 >= end[tp]:
                remaining.discard(tp)
    return out


async def read_snapshot_partitions(
    bootstrap: str,
    topic: str,
    partitions: Iterable[int],
    timeout: float = SNAPSHOT_READ_TIMEOUT_S,
    **client: Any,
) -> dict[int, list[Any]]:
    """Every record of the given partitions of the snapshots topic, up to their end now."""
    view = await read_kafka_view(bootstrap, topic, None, (), partitions, timeout, **client)
    return view.snapshots


async def read_kafka_view(
    bootstrap: str,
    snapshots: str,
    legacy: str | None,
    sources: Iterable[str],
    partitions: Iterable[int],
    timeout: float = SNAPSHOT_READ_TIMEOUT_S,
    **client: Any,
) -> KafkaView:
    """Snapshot records (and legacy-topic records) of ``partitions`` and the first offset
    Kafka still has of each source partition."""
    parts = sorted(set(partitions))
    view = KafkaView()
    if not parts:
        return view
    # A fresh assignment with auto_offset_reset="earliest" starts at the beginning;
    # seek_to_beginning() right after assign() left the fetcher idle in aiokafka 0.14.
    consumer = clients.consumer(
        Connection(bootstrap, client),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        starts = [TopicPartition(t, p) for t in sources for p in parts]
        if starts:
            begin = await consumer.beginning_offsets(starts)
            view.log_start = {(tp.topic, tp.partition): off for tp, off in begin.items()}
        view.snapshots = await _read_all(
            consumer, [TopicPartition(snapshots, p) for p in parts], timeout
        )
        # Only partitions without any snapshot in the app's own topic look at the
        # shared topic of earlier versions; listing topics never creates one.
        bare = [p for p in parts if not view.snapshots[p]]
        if legacy and bare and legacy in await consumer.topics():
            view.legacy = await _read_all(
                consumer, [TopicPartition(legacy, p) for p in bare], timeout
            )
    finally:
        await consumer.stop()
    return view


async def read_committed(
    bootstrap: str, group: str, topics: Iterable[str], partitions: Iterable[int], **client: Any
) -> dict[tuple[str, int], int]:
    """The group's committed offsets of ``topics`` x ``partitions`` (absent: none)."""
    wanted = [TopicPartition(t, p) for t in topics for p in partitions]
    if not wanted:
        return {}
    admin = clients.admin(Connection(bootstrap, client))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=wanted)
    finally:
        await admin.close()
    return {(tp.topic, tp.partition): m.offset for tp, m in offsets.items() if m and m.offset >= 0}


class Recovery:
    """Installs each assigned partition's learner and says where its records resume.

    Parameters
    ----------
    learners
        The worker's learners.
    codec
        Verifies and decodes snapshots.
    names
        Topic names (events, labels, snapshots, and the legacy shared snapshots topic).
    group
        The consumer group (``RIVERBED_APP_ID``): whose committed offsets count.
    bootstrap, client
        How to reach Kafka (aiokafka client arguments: security, TLS).
    checkpointer
        Told which partitions are owned.
    """

    def __init__(
        self,
        learners: Learners,
        codec: SnapshotCodec,
        names: TopicNames,
        *,
        group: str,
        bootstrap: str,
        checkpointer: Checkpointer | None = None,
        client: dict[str, Any] | None = None,
        warmup: str = "replay",
    ) -> None:
        self.learners = learners
        self.codec = codec
        self.names = names
        self.group = group
        self.bootstrap = bootstrap
        self.checkpointer = checkpointer
        self.client = client or {}
        self.warmup = warmup  # RIVERBED_WARMUP: replay retained history into new candidates
        self.warmups: list[dict[str, Any]] = []
        self._done = asyncio.Event()  # set when no assignment is being restored
        self._done.set()
        self._reread: set[int] = set()  # fresh learners that must read from the start
        self.gaps: list[Gap] = []
        self.snapshots_refused = 0
        self.restored = 0
        self.kept = 0
        self.stale = 0
        self.migrated = 0
        self.seconds = 0.0

    # -- the consumer's side ---------------------------------------------------------
    def assigning(self) -> None:
        """An assignment arrived; seeks wait for :meth:`assign` to finish."""
        self._done.clear()

    async def positions(self) -> dict[tuple[str, int], int]:
        """Where each installed partition's events and labels resume: the offset after
        the last one its learner handled (waits while an assignment is restored)."""
        try:
            await asyncio.wait_for(self._done.wait(), RESTORE_WAIT_S)
        except TimeoutError:
            logger.error("restore did not finish in %.0f s; seeking to committed", RESTORE_WAIT_S)
            return {}
        out: dict[tuple[str, int], int] = {}
        for p, learner in self.learners.items():
            for topic, last in (
                (self.names.events, learner.last_offset),
                (self.names.labels, learner.last_label_offset),
            ):
                if last >= 0:
                    out[(topic, p)] = last + 1
                elif p in self._reread:
                    out[(topic, p)] = 0  # out of range -> the earliest Kafka still has
        return out

    # -- the assignment --------------------------------------------------------------
    def _at_committed(
        self, p: int, learner: PartitionLearner, committed: dict[tuple[str, int], int]
    ) -> bool:
        """Whether ``learner`` handled exactly what the group committed of partition p."""
        return learner.last_offset + 1 == committed.get(
            (self.names.events, p), 0
        ) and learner.last_label_offset + 1 == committed.get((self.names.labels, p), 0)

    async def assign(self, assigned: set[int]) -> None:
        """Install a learner for every partition of ``assigned`` (see the module doc)."""
        t0 = time.monotonic()
        try:
            await self._assign(assigned)
        finally:
            self.seconds = time.monotonic() - t0
            self._done.set()

    async def _assign(self, assigned: set[int]) -> None:
        names = self.names
        sources = (names.events, names.labels)
        kept = {p for p in assigned if self.learners.has(p)}
        committed = await read_committed(
            self.bootstrap, self.group, sources, assigned, **self.client
        )
        stale = {p for p in kept if not self._at_committed(p, self.learners.get(p), committed)}
        for p in sorted(stale):
            lr = self.learners.get(p)
            logger.warning(
                "partition %d: this worker's learner (events offset %d, labels %d) is not "
                "current: the group committed events %s, labels %s since; restoring the "
                "newest snapshot",
                p,
                lr.last_offset,
                lr.last_label_offset,
                committed.get((names.events, p)),
                committed.get((names.labels, p)),
            )
        restore = (assigned - kept) | stale
        self.learners.assign(assigned - restore)  # drops the stale and the moved away
        self.kept += len(kept - stale)
        self.stale += len(stale)
        legacy = names.legacy_snapshots if names.legacy_snapshots != names.snapshots else None
        view = await read_kafka_view(
            self.bootstrap, names.snapshots, legacy, sources, restore, **self.client
        )
        self._reread &= assigned - restore
        for p in sorted(restore):
            learner = self._pick(p, view, committed)
            if learner is not None and self.warmup == "replay":
                new = missing_candidates(learner, self.learners.settings.lineup)
                if new:
                    self.warmups.append(await warm_up(
                        learner, new, settings=self.learners.settings,
                        events_topic=names.events, labels_topic=names.labels,
                        bootstrap=self.bootstrap, client=self.client,
                    ))  # fmt: skip
            if learner is not None:
                # Unpickled objects keep a real __dict__, and every attribute access of
                # the model is a dict lookup from then on (app/learning/inline.py): the
                # partition goes live with an inline copy, as fast as a fresh learner.
                learner = learner.rebuilt()
            self.learners.install(p, learner)
            had = any(key[1] == p for key in committed)
            if learner is None and had:
                self._reread.add(p)
            self._check_gap(p, learner, view, learned_before=had or learner is not None)
        self.learners.assign(assigned)
        if self.checkpointer is not None:
            self.checkpointer.assign(assigned)

    def _pick(
        self, p: int, view: KafkaView, committed: dict[tuple[str, int], int]
    ) -> PartitionLearner | None:
        records = [(r.offset, r.key, r.value, r.headers) for r in view.snapshots.get(p, [])]
        picked = pick_latest(self.codec, p, records)
        self._report(p, picked, self.names.snapshots)
        if picked.wrong_key:
            msg = (
                f"RIVERBED_SNAPSHOT_KEY verifies none of the {picked.manifests} snapshots of "
                f"partition {p} in {self.names.snapshots}: this worker's key is not the one "
                "the other workers sign with; set the same RIVERBED_SNAPSHOT_KEY on every "
                "worker of the app"
            )
            raise ConfigError(msg)
        if picked.learner is None and view.legacy.get(p):
            picked = self._migrate(p, view, committed)
        if picked.learner is not None:
            self.restored += 1
            lr = picked.learner
            logger.info(
                "partition %d: restored %s at events offset %d, labels offset %d (%d learned)",
                p,
                lr.spec.name,
                lr.last_offset,
                lr.last_label_offset,
                lr.learned,
            )
        return picked.learner

    def _migrate(self, p: int, view: KafkaView, committed: dict[tuple[str, int], int]) -> Picked:
        """A snapshot of the shared topic earlier versions wrote, if it is this app's.

        That topic mixed every app of a prefix, so a snapshot there is taken only when
        its offsets are exactly the ones this group committed (its own last commit).
        """
        legacy = self.names.legacy_snapshots
        records = [(r.offset, r.key, r.value, r.headers) for r in view.legacy.get(p, [])]
        picked = pick_latest(self.codec, p, records)
        lr = picked.learner
        if lr is not None and self._at_committed(p, lr, committed):
            self.migrated += 1
            logger.warning(
                "partition %d: migrated the snapshot at events offset %d from the shared "
                "topic %s (written before snapshots were kept per app); the next checkpoint "
                "writes it to %s",
                p,
                lr.last_offset,
                legacy,
                self.names.snapshots,
            )
            return picked
        logger.error(
            "partition %d: REFUSED the snapshots of the shared topic %s (written before "
            "snapshots were kept per app): %s; this partition is learned again from the "
            "earliest record Kafka has",
            p,
            legacy,
            "none verifies"
            if lr is None
            else "its offsets are not this app's committed ones (another app's snapshot)",
        )
        self.snapshots_refused += 1
        return Picked(None, picked.refused, picked.manifests)

    def _report(self, p: int, picked: Picked, topic: str) -> None:
        for reason in picked.refused:
            self.snapshots_refused += 1
            logger.error("partition %d: REFUSED %s in %s", p, reason, topic)
        if picked.refused and picked.learner is not None:
            logger.error(
                "partition %d: fell back to an older snapshot; events and labels after its "
                "offsets are read again, nothing is skipped",
                p,
            )

    def _check_gap(
        self, p: int, learner: PartitionLearner | None, view: KafkaView, *, learned_before: bool
    ) -> None:
        if not learned_before:
            return  # a new app on an old topic starts where Kafka's log starts: no gap
        for topic, last in (
            (self.names.events, -1 if learner is None else learner.last_offset),
            (self.names.labels, -1 if learner is None else learner.last_label_offset),
        ):
            start = view.log_start.get((topic, p), 0)
            if start > last + 1:
                gap = Gap(topic, p, last + 1, start)
                self.gaps.append(gap)
                logger.error(
                    "partition %d: LEARNING GAP: %s offsets %d..%d were deleted by retention "
                    "before a snapshot covered them; %d records are never learned",
                    p,
                    topic,
                    gap.first,
                    gap.next - 1,
                    gap.next - gap.first,
                )

    def describe(self) -> dict[str, Any]:
        return {
            "snapshots_refused": self.snapshots_refused,
            "recovery_seconds": round(self.seconds, 3),
            "restores": {
                "restored": self.restored,
                "kept": self.kept,
                "stale": self.stale,
                "migrated": self.migrated,
            },
            "learning_gaps": [g.describe() for g in self.gaps],
            "warmups": self.warmups[-20:],
        }
