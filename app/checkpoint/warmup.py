"""Warm-up: a candidate added to ``RIVERBED_MODEL`` learns the partition's history.

When a partition's snapshot is restored and the configured candidates include one the
snapshot lacks, the new candidate would otherwise start from nothing while the others
carry years of history. With ``RIVERBED_WARMUP=replay`` (the default) the recovery
replays the events and labels Kafka still retains, up to the snapshot's offsets, into
the new candidates alone, before the partition goes live (``/ready`` is 503 until
then); the kept candidates carry on from the snapshot untouched. Events and labels
are merged as a live worker merges them (app/kafka/join.py). The
replay is deterministic, so a crash before the next snapshot repeats it exactly: each
candidate learns each retained record once.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from riverbed.exceptions import InvalidRecord, ModelError
from riverbed.kafka import clients
from riverbed.kafka.clients import Connection, TopicPartition
from riverbed.kafka.join import merged
from riverbed.learning.learner import MODEL_FIELDS, Candidate, LearnerSettings, PartitionLearner
from riverbed.models import ModelSpec

__all__ = ["missing_candidates", "read_range", "replay_into", "warm_up"]

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 50_000
FETCH_TIMEOUT_MS = 1000


def missing_candidates(learner: PartitionLearner, lineup: tuple[ModelSpec, ...]) -> list[ModelSpec]:
    """The configured candidates ``learner`` (restored from a snapshot) does not have."""
    have = {learner.spec.name, *(c.name for c in learner.challengers)}
    return [s for s in lineup if s.name not in have]


async def _read(
    bootstrap: str, client: dict[str, Any], topic: str, partition: int, last: int
) -> list[Any]:
    """Records of ``topic[partition]`` from the earliest retained offset to ``last``."""
    return await read_range(bootstrap, client, topic, partition, -1, last)


async def read_range(
    bootstrap: str, client: dict[str, Any], topic: str, partition: int, after: int, last: int
) -> list[Any]:
    """Retained records of ``topic[partition]`` with offsets in ``(after, last]``."""
    if last < 0:
        return []
    consumer = clients.consumer(Connection(bootstrap, client), enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        if after >= 0 and await consumer.position(tp) <= after:
            consumer.seek(tp, after + 1)
        while True:
            if await consumer.position(tp) > last:
                break
            batch = await consumer.getmany(tp, timeout_ms=FETCH_TIMEOUT_MS)
            records = batch.get(tp, [])
            out.extend(r for r in records if after < r.offset <= last)
            if not records and await consumer.position(tp) > last:
                break
    finally:
        await consumer.stop()
    return out


async def warm_up(
    learner: PartitionLearner,
    new: list[ModelSpec],
    *,
    settings: LearnerSettings,
    events_topic: str,
    labels_topic: str,
    bootstrap: str,
    client: dict[str, Any],
) -> dict[str, Any]:
    """Give ``learner`` the ``new`` candidates, trained on the retained records up to
    its offsets, with the worker's ``settings`` (the restored learner has none yet: it
    is configured when installed, after this). Returns what was done (for ``/models``
    and the log)."""
    t0 = time.monotonic()
    p = learner.partition
    events = await _read(bootstrap, client, events_topic, p, learner.last_offset)
    labels = await _read(bootstrap, client, labels_topic, p, learner.last_label_offset)
    warm = PartitionLearner(
        new[0],
        partition=p,
        **{**settings.fields(), "lineup": tuple(new), "shadow_predictions": False,
           "promotion_window": 0},
    )  # fmt: skip
    replay_into(warm, events, labels, settings, what=", ".join(s.name for s in new))
    # The warm learner's champion and challengers become the learner's challengers.
    champion = object.__new__(Candidate)
    for name in MODEL_FIELDS:
        setattr(champion, name, getattr(warm, name))
    added = [champion, *warm.challengers]
    # Events still waiting for labels remember the new candidates' predictions too.
    for rid, waiting in learner.pending.items():
        theirs = warm.pending.get(rid)
        preds = (
            (theirs.y_pred, *(theirs.shadow or ())) if theirs is not None else (None,) * len(added)
        )
        waiting.shadow = (*(waiting.shadow or (None,) * len(learner.challengers)), *preds)
    learner.challengers.extend(added)
    # An undo rebuilds from the base: make it the warmed state, not the snapshot's,
    # which lacks the new candidates (they would start fresh again).
    learner.rebase()
    seconds = time.monotonic() - t0
    logger.warning(
        "partition %d: new candidates %s warmed up on %d retained events and %d labels "
        "(offsets up to %d and %d) in %.1f s",
        p, ", ".join(s.name for s in new), len(events), len(labels), learner.last_offset,
        learner.last_label_offset, seconds,
    )  # fmt: skip
    return {"partition": p, "candidates": [s.name for s in new], "events": len(events),
            "labels": len(labels), "seconds": round(seconds, 3)}  # fmt: skip


def replay_into(
    learner: PartitionLearner,
    events: list[Any],
    labels: list[Any],
    settings: LearnerSettings,
    *,
    what: str,
) -> None:
    """Handle retained ``events`` and ``labels`` with ``learner`` in the live worker's
    order (app/kafka/join.py), publishing nothing: a record the live run dead-lettered
    is left out here too."""
    decode_event = settings.mapping.event_decoder()
    decode_label = settings.mapping.label_decoder()
    p = learner.partition
    for done, (is_label, r) in enumerate(merged(events, labels), 1):
        kind, offset = int(is_label), r.offset
        try:
            if kind == 0:
                event = decode_event(r.value, r.key, len(r.value or b""))
                learner.process_event(event, offset=offset, ts_ms=r.timestamp)
            else:
                label = decode_label(r.value, r.key, len(r.value or b""))
                learner.process_label(label, offset=offset, ts_ms=r.timestamp)
        except (InvalidRecord, ModelError):
            learner.skip(offset, label=kind == 1)
        if done % PROGRESS_EVERY == 0:
            total = len(events) + len(labels)
            logger.info("partition %d: replaying into %s: %d of %d records", p, what, done,
                        total)  # fmt: skip
        learner.take_outputs()  # a replay publishes nothing
