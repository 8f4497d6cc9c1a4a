"""Processor: a partition's raw Kafka records in, predictions and dead letters out.

No faust import. It decodes, routes to the partition's
:class:`~riverbed.learning.learner.PartitionLearner`, and returns what a run of records produced
(:class:`Handled`: the encoded predictions, and the other records to publish: dead
letters, drift and promotion records, shadow predictions). It never raises for a
bad record: whatever breaks the contract, or makes the model raise, becomes a dead
letter whose value and key are the original bytes and whose headers say where it came
from, at which stage it failed and why. The agent only sends what this produces.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from riverbed.exceptions import InvalidRecord, ModelError
from riverbed.kafka.topics import TopicNames
from riverbed.learning.learner import (
    LEARN,
    NONFINITE_REASON,
    LabelOutcome,
    LearnerOutputs,
    NonFiniteState,
)
from riverbed.learning.state import Learners
from riverbed.pipeline.quarantine import Quarantine
from riverbed.protocols import SourceRecord
from riverbed.records import encode, name_cache
from riverbed.serving.metrics import RiverbedMetrics

__all__ = ["DLQ_HEADER_PREFIX", "Handled", "Outgoing", "Processor", "Record"]

logger = logging.getLogger(__name__)

DLQ_HEADER_PREFIX = "riverbed."
DLQ_RECORD_OVERHEAD = 1024  # a record batch's framing around one dead letter
RECENT_EVENTS = 50  # drift and promotion records kept for /models (the live page)
Headers = Sequence[tuple[str, bytes]]


class ProcessCrash(Exception):
    """A record's dead letter after worker processes died handling it (quarantine)."""


class Record(NamedTuple):
    """The fields of a Kafka record the processor reads (aiokafka's ConsumerRecord has them)."""

    offset: int
    timestamp: int  # ms
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass(slots=True)
class Outgoing:
    """A record to publish: to ``predictions`` or to ``dlq``."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None
    headers: list[tuple[str, bytes]] | None = None


Prediction = tuple[bytes | None, bytes, int]  # key, value, epoch ms: predictions[partition]


class Handled(NamedTuple):
    """What a run of one partition's records produced, in offset order."""

    predictions: list[Prediction]
    others: list[Outgoing]  # dead letters, drift and promotion records, shadow predictions


class Processor:
    """Turns input records into predictions and dead letters, in offset order.

    Parameters
    ----------
    learners
        The per-partition learners of this worker.
    topics
        Topic names.
    max_record_bytes
        Larger values are dead letters.

    """

    def __init__(
        self,
        learners: Learners,
        topics: TopicNames,
        *,
        max_record_bytes: int,
        metrics: RiverbedMetrics | None = None,
        dlq_max_bytes: int = 1_048_588,
        quarantine: Quarantine | None = None,
    ) -> None:
        self.learners = learners
        self.metrics = metrics
        self.topics = topics
        self.max_record_bytes = max_record_bytes
        self.dlq_max_bytes = dlq_max_bytes
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}".encode()
        self.dead_letters: dict[str, int] = {}
        self.recent_events: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
        mapping = learners.settings.mapping
        self.decode_event = mapping.event_decoder()
        self.decode_label = mapping.label_decoder()
        self._misrouted_logged = False
        self.quarantine = quarantine

    def handle_many(self, topic: str, partition: int, records: Sequence[SourceRecord]) -> Handled:
        """Process one partition's records of one topic, in offset order.

        ``records`` have aiokafka's ``ConsumerRecord`` fields (``offset``, ``timestamp``
        in ms, ``key``, ``value``, ``headers``). Returns the predictions as
        ``(key, value, ts)`` for ``predictions[partition]``, ``ts`` being the epoch ms
        the prediction was made (its ``ts`` field, and its Kafka timestamp), and the
        other records to publish. With a :attr:`quarantine`, the run is marked in flight
        while it is handled (``riverbed.pipeline.quarantine``).
        """
        q = self.quarantine
        out = Handled([], [])
        if q is None or not records:
            self._handle_many(topic, partition, records, out)
            return out
        first, last = records[0].offset, records[-1].offset
        if q.crashes and q.suspect(topic, partition, first, last):
            self._one_at_a_time(q, topic, partition, records, out)
            return out
        q.mark(topic, partition, first, last)
        self._handle_many(topic, partition, records, out)
        q.clear()  # not in a finally: an exception here already stopped the worker
        return out

    def _one_at_a_time(
        self,
        q: Quarantine,
        topic: str,
        partition: int,
        records: Sequence[SourceRecord],
        out: Handled,
    ) -> None:
        """Records near a crash: each marked alone, and the culprit of enough crashes
        dead-lettered (stage ``quarantine``) instead of handled."""
        learner = self.learners.get(partition)
        label = topic == self.topics.labels
        for r in records:
            handled = learner.last_label_offset if label else learner.last_offset
            if r.offset > handled and q.quarantined(topic, partition, r.offset):
                crashes = q.crashes_on(topic, partition, r.offset)
                logger.error(
                    "%s[%d]@%d was being handled when %d processes died: dead-lettered "
                    "(stage quarantine), not learned", topic, partition, r.offset, crashes,
                )  # fmt: skip
                learner.skip(r.offset, label=label)
                reason = (
                    f"{crashes} worker processes died while handling this record "
                    f"(RIVERBED_QUARANTINE_AFTER={q.after})"
                )
                out.others.append(self._dead_letter(
                    topic, partition, r.offset, r.key, r.value, r.headers,
                    stage="quarantine", reason=reason, error=ProcessCrash(reason),
                ))  # fmt: skip
            else:
                q.mark(topic, partition, r.offset, r.offset)
                self._handle_many(topic, partition, (r,), out)
                q.clear()
            q.passed(topic, partition, r.offset)

    def _handle_many(
        self, topic: str, partition: int, records: Iterable[SourceRecord], out: Handled
    ) -> None:
        if topic == self.topics.events:
            self._handle_events(partition, records, out)
        elif topic == self.topics.labels:
            self._handle_labels(partition, records, out.others)
        else:
            msg = f"record from unexpected topic {topic!r}"
            for r in records:
                dead = self._dead_letter(
                    topic, partition, r.offset, r.key, r.value, r.headers,
                    stage="route", reason=msg, error=None,
                )  # fmt: skip
                out.others.append(dead)
            return
        made = self.learners.get(partition).take_outputs()
        if made is not None:
            self._publish(made, partition, out.others)

    def _handle_labels(
        self, partition: int, records: Iterable[SourceRecord], others: list[Outgoing]
    ) -> None:
        learner = self.learners.get(partition)
        topic = self.topics.labels
        learners = self.learners
        for r in records:
            if learner.redelivered(r.offset, label=True):
                continue
            try:
                if r.headers:
                    self._check_headers(r)
                label = self.decode_label(r.value, r.key, self.max_record_bytes)
                outcome = learner.process_label(
                    label,
                    offset=r.offset,
                    ts_ms=r.timestamp,
                    source=(r.value, r.key, r.headers or ()),
                    siblings=learners,
                )
                if outcome == LabelOutcome.MISROUTED and not self._misrouted_logged:
                    self._log_misrouted(label.id, partition)
            except (InvalidRecord, ModelError) as exc:
                learner.skip(r.offset, label=True)
                others.append(self._failed(topic, partition, r, exc))
            except Exception as exc:  # one record never stops a worker
                learner.skip(r.offset, label=True)
                others.append(self._crashed(topic, partition, r, exc, "process"))

    def _handle_events(self, partition: int, records: Iterable[SourceRecord], out: Handled) -> None:
        # The per-record loop of the worker: names bound once, nothing allocated that
        # the prediction record does not need.
        learner = self.learners.get(partition)
        topic = self.topics.events
        others = out.others
        max_bytes = self.max_record_bytes
        append = out.predictions.append
        process_event = learner.process_event
        decode = self.decode_event
        pname = partition
        latencies: list[float] = []
        observe = latencies.append
        clock = time.time
        for r in records:
            offset = r.offset
            if offset <= learner.last_offset and learner.redelivered(offset):
                continue  # handled before this worker restored the partition's snapshot
            try:
                if r.headers:
                    self._check_headers(r)
                value = r.value
                event = decode(value, r.key, max_bytes)  # raises for a missing value
                pred = process_event(
                    event,
                    offset=offset,
                    ts_ms=r.timestamp,
                    source=(value, r.key, r.headers or ()),
                    size=len(value or b""),
                )
            except (InvalidRecord, ModelError) as exc:
                learner.skip(offset)
                others.append(self._failed(topic, partition, r, exc))
                continue
            except Exception as exc:  # one record never stops a worker
                learner.skip(offset)
                others.append(self._crashed(topic, partition, r, exc, "process"))
                continue
            if pred is None:
                continue
            now = clock()
            ts = int(now * 1000)
            pred["partition"] = pname
            pred["offset"] = offset
            pred["ts"] = ts
            if event.fields:
                pred.update(event.fields)
            since = event.ts if event.ts is not None else r.timestamp
            observe(now - since / 1000)  # clock skew may make it negative: clipped below
            try:
                append((r.key, encode(pred), ts))
            except Exception as exc:  # learned, but no prediction to send
                others.append(self._crashed(topic, partition, r, exc, "encode"))
        if self.metrics is not None:
            self.metrics.observe_latencies(partition, latencies)

    def outgoing(self, made: LearnerOutputs, partition: int) -> list[Outgoing]:
        """What the learner made besides predictions (``take_outputs``), as records to
        publish (a manual operation's record, published outside the agent's runs)."""
        others: list[Outgoing] = []
        self._publish(made, partition, others)
        return others

    def _publish(self, made: LearnerOutputs, partition: int, others: list[Outgoing]) -> None:
        """What the learner made besides predictions, as records to publish."""
        if made.shadows:
            self._shadows(made.shadows, partition, others)
        if made.drifts:
            self._drifts(made.drifts, partition, others)
        for c in made.culprits:  # learns a repair undid after the fact: stage learn
            topic = self.topics.events if c.topic == "events" else self.topics.labels
            value, key, headers = c.source or (None, None, ())
            r = Record(c.offset, 0, key, value, list(headers))
            exc = ModelError(LEARN, NonFiniteState(NONFINITE_REASON))
            others.append(self._failed(topic, partition, r, exc))

    def _log_misrouted(self, rid: str, partition: int) -> None:
        self._misrouted_logged = True
        where = [p for p, other in self.learners.items() if rid in other.pending]
        logger.warning(
            "label %r came on %s[%d] but its event waits in partition %s: events and "
            "labels must have the same key and be partitioned alike, with Kafka's default "
            "murmur2 partitioner (Java clients, aiokafka, riverbed produce; kcat and other "
            "librdkafka clients: -X partitioner=murmur2_random). Such labels are counted "
            "as misrouted and never learned; this is logged once.",
            rid, self.topics.labels, partition, where[0] if where else "?",
        )  # fmt: skip

    def handle(
        self,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
    ) -> Outgoing | None:
        """One record: its prediction, its dead letter, or None (a label, a re-delivery)."""
        record = Record(offset, timestamp_ms, key, value, list(headers or ()))
        out = self.handle_many(topic, partition, [record])
        if out.predictions:
            k, v, _ = out.predictions[0]
            return Outgoing(self.topics.predictions, k, v, partition)
        return next((o for o in out.others if o.topic == self.topics.dlq), None)

    def _check_headers(self, r: SourceRecord) -> None:
        """Headers count toward ``RIVERBED_MAX_RECORD_BYTES`` with the value."""
        size = sum(len(k) + len(v or b"") for k, v in r.headers) + len(r.value or b"")
        if size > self.max_record_bytes:
            msg = (
                f"value and headers are {size} bytes, above "
                f"RIVERBED_MAX_RECORD_BYTES={self.max_record_bytes}"
            )
            raise InvalidRecord(msg, stage="deserialize")

    def _failed(
        self, topic: str, partition: int, r: SourceRecord, exc: InvalidRecord | ModelError
    ) -> Outgoing:
        if isinstance(exc, ModelError):
            logger.warning("model error at %s[%d]@%d: %s", topic, partition, r.offset, exc)
            reason, error = str(exc), exc.cause
        else:
            reason, error = exc.reason, exc
        return self._dead_letter(
            topic, partition, r.offset, r.key, r.value, r.headers,
            stage=exc.stage, reason=reason, error=error,
        )  # fmt: skip

    def _crashed(
        self, topic: str, partition: int, r: SourceRecord, exc: Exception, stage: str
    ) -> Outgoing:
        """A record on which riverbed itself raised: a dead letter naming the error, and
        the traceback in the log (a bug to report), never a stopped worker."""
        logger.exception(
            "%s at %s[%d]@%d while handling it: dead-lettered", type(exc).__name__, topic,
            partition, r.offset, exc_info=exc,
        )  # fmt: skip
        reason = f"{type(exc).__name__}: {exc}"
        return self._dead_letter(
            topic, partition, r.offset, r.key, r.value, r.headers,
            stage=stage, reason=reason, error=exc,
        )  # fmt: skip

    def _shadows(
        self, shadows: list[dict[str, Any]], partition: int, others: list[Outgoing]
    ) -> None:
        """The challengers' predictions, to ``<predictions>.shadow`` (same partition)."""
        ts = int(time.time() * 1000)
        for rec in shadows:
            rec["ts"] = ts
            others.append(Outgoing(self.topics.shadow, None, encode(rec), partition))

    def _drifts(self, events: list[dict[str, Any]], partition: int, others: list[Outgoing]) -> None:
        for drift in events:
            if drift["type"] == "promotion":
                logger.warning(
                    "partition %d: %s replaces %s as champion at %s offset %d (%s %.4g -> "
                    "%.4g over the last %d labels; %s statistic %.3g, p=%.3g)",
                    partition, drift["to"], drift["from"], drift["topic"], drift["offset"],
                    drift["metric"]["over"], drift["metric"]["from_value"],
                    drift["metric"]["to_value"], drift["window"], drift["test"]["name"],
                    drift["test"]["statistic"], drift["test"]["p_value"],
                )  # fmt: skip
            elif drift["type"] == "operation":
                logger.warning(
                    "partition %d: %s by %s after events offset %d, labels offset %d%s",
                    partition, drift["op"], drift["by"], drift["events_offset"],
                    drift["labels_offset"], "" if drift["changed"] else " (nothing to change)",
                )  # fmt: skip
            else:
                logger.info(
                    "partition %d: %s drift detected at %s offset %d (error %s -> %s)",
                    partition,
                    drift.get("model", ""),
                    drift["topic"],
                    drift["offset"],
                    drift["error_before"],
                    drift["error_after"],
                )
            drift["ts"] = int(time.time() * 1000)
            value = encode(drift)
            self.recent_events.append(orjson.loads(value))  # JSON-safe, for /models
            key = str(partition).encode()
            others.append(Outgoing(self.topics.metrics, key, value, partition))

    def _dead_letter(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        *,
        stage: str,
        reason: str,
        error: BaseException | None,
    ) -> Outgoing:
        self.dead_letters[stage] = self.dead_letters.get(stage, 0) + 1  # this process's
        if self.learners.has(partition):  # the partition's, kept in its snapshots
            mine = self.learners.get(partition).dead_letters
            mine[stage] = mine.get(stage, 0) + 1
        p = DLQ_HEADER_PREFIX
        ours: list[tuple[str, bytes]] = [
            (p + "source.topic", topic.encode()),
            (p + "source.partition", str(partition).encode()),
            (p + "source.offset", str(offset).encode()),
            (p + "stage", stage.encode()),
            (p + "error", reason.encode()[:2000]),
            (p + "error.type", type(error).__name__.encode() if error else b"RoutingError"),
            (p + "worker", self.worker_id),
        ]
        # The original headers first, untouched; ours after them. Partitioned by the
        # original key, like the source, so the dead-letter topic may have any size.
        all_headers = [*(headers or ()), *ours]
        size = len(key or b"") + len(value or b"") + sum(len(k) + len(v) for k, v in all_headers)
        if size + DLQ_RECORD_OVERHEAD > self.dlq_max_bytes:
            # Cannot happen with the topic riverbed sized (app/kafka/topics.py) unless a source
            # topic's limit was raised since start-up. The value is kept whole; original
            # headers that do not fit are left out, and a header says which.
            kept: list[tuple[str, bytes]] = []
            room = self.dlq_max_bytes - DLQ_RECORD_OVERHEAD - len(key or b"") - len(value or b"")
            room -= sum(len(k) + len(v) for k, v in ours) + 200
            left_out = []
            for k, v in headers or ():
                if len(k) + len(v) <= room:
                    kept.append((k, v))
                    room -= len(k) + len(v)
                else:
                    left_out.append(f"{k} ({len(v)} bytes)")
            note = ("headers.dropped", ", ".join(left_out).encode()[:1000])
            all_headers = [*kept, *ours, (p + note[0], note[1])]
            logger.error(
                "dead letter of %s[%d]@%d over the dead-letter limit (%d bytes): "
                "left out headers %s",
                topic, partition, offset, self.dlq_max_bytes, ", ".join(left_out),
            )  # fmt: skip
        return Outgoing(self.topics.dlq, key, value, None, all_headers)

    def describe(self) -> dict[str, Any]:
        """Counts across partitions, and the last drift and promotion records, for ``/models``."""
        return {
            "dead_letters": dict(self.dead_letters),
            "recent_events": list(self.recent_events),
            "name_cache": name_cache(),
            "crashes": self.quarantine.describe() if self.quarantine is not None else [],
        }
