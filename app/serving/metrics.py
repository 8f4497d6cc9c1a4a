"""Prometheus metrics, built from a factory with an injected registry.

Three kinds, chosen for cost:

* End-to-end latency is observed a fetch at a time: :class:`LatencyHistogram` buckets
  a partition's latencies with one numpy call and is exposed as an ordinary Prometheus
  histogram. prometheus_client's ``Histogram.observe`` takes a lock and walks the
  buckets per value, ~2 µs a record (a tenth of a prediction) and it has no bulk form.
* The per-batch processing time is a prometheus_client ``Histogram``.
* Everything the learners already count (events, labels by outcome, learned, pending,
  metric value, champion, drifts, snapshot age, lag) is read at scrape time by a custom
  collector, so counting costs nothing per record and the numbers cannot disagree with
  ``/models``. Labels are bounded: ``partition``, ``outcome``, ``stage``, ``metric``,
  ``detector``, ``model`` (the configured candidates); never a key or an id.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

__all__ = ["LATENCY_BUCKETS", "LatencyHistogram", "RiverbedMetrics"]

# Milliseconds to seconds: a prediction takes a fraction of a millisecond, a batch a
# few, end-to-end latency is dominated by linger and fetch waits (ms to 100s of ms),
# and a backlog after a restart shows up as seconds.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
RECENT = 2000  # latencies kept per partition for the metrics topic's quantiles


class LatencyHistogram(Collector):
    """``riverbed_end_to_end_latency_seconds{partition}``, observed many values at a time.

    Examples
    --------
    >>> h = LatencyHistogram()
    >>> h.observe_many(0, [0.002, 0.004, 0.2])
    >>> [s.value for s in next(iter(h.collect())).samples if s.labels.get("le") == "0.005"]
    [2.0]

    """

    name = "riverbed_end_to_end_latency_seconds"

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = np.asarray(buckets, dtype=float)
        self.counts: dict[int, np.ndarray] = {}  # per partition, len(bounds) + 1 (+Inf)
        self.sums: dict[int, float] = {}

    def observe_many(self, partition: int, seconds: Any) -> None:
        values = np.asarray(seconds, dtype=float)
        # bucket i holds bounds[i-1] < v <= bounds[i], as Prometheus' "le" wants
        idx = np.searchsorted(self.bounds, values, side="left")
        hist = np.bincount(idx, minlength=len(self.bounds) + 1)
        counts = self.counts.get(partition)
        if counts is None:
            self.counts[partition] = hist
            self.sums[partition] = float(values.sum())
        else:
            counts += hist
            self.sums[partition] += float(values.sum())

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            self.name,
            "From the event's ts (or its Kafka timestamp) to its prediction.",
            labels=["partition"],
        )
        les = [*(str(b) for b in self.bounds), "+Inf"]
        for p, counts in sorted(self.counts.items()):
            cumulative = np.cumsum(counts)
            family.add_metric(
                [str(p)],
                list(zip(les, (float(c) for c in cumulative), strict=True)),
                self.sums[p],
            )
        yield family


@dataclass
class RiverbedMetrics:
    """The worker's metrics; ``create`` registers them in ``registry``."""

    registry: CollectorRegistry
    end_to_end: LatencyHistogram
    batch: Histogram
    recent_latency: dict[int, deque[float]] = field(default_factory=dict)

    @classmethod
    def create(cls, registry: CollectorRegistry) -> RiverbedMetrics:
        end_to_end = LatencyHistogram()
        registry.register(end_to_end)
        return cls(
            registry=registry,
            end_to_end=end_to_end,
            batch=Histogram(
                "riverbed_batch_processing_seconds",
                "Time to handle one fetch of events and labels.",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
        )

    def observe_latencies(self, partition: int, seconds: list[float]) -> None:
        """End-to-end latencies of predictions of one partition (one fetch's worth)."""
        if not seconds:
            return
        values = np.maximum(np.asarray(seconds, dtype=float), 0.0)
        self.end_to_end.observe_many(partition, values)
        recent = self.recent_latency.get(partition)
        if recent is None:
            recent = self.recent_latency[partition] = deque(maxlen=RECENT)
        recent.extend(values.tolist())

    def latency_quantiles_ms(self, partition: int) -> dict[str, float | None]:
        recent = self.recent_latency.get(partition)
        if not recent:
            return {"p50": None, "p99": None}
        p50, p99 = np.percentile(np.fromiter(recent, float), [50, 99])
        return {"p50": round(float(p50) * 1000, 3), "p99": round(float(p99) * 1000, 3)}

    def register_collector(
        self, source: Callable[[], dict[str, Any]], lag: Callable[[int], int | None]
    ) -> None:
        """Scrape-time metrics from ``source()`` (the ``/models`` document)."""
        self.registry.register(_LearnerCollector(source, lag))


_PER_PARTITION: tuple[tuple[Any, str, str, str], ...] = (
    (CounterMetricFamily, "events", "Events predicted, by partition.", "events"),
    (CounterMetricFamily, "learned", "Labels the model learned from.", "learned"),
    (CounterMetricFamily, "replayed_events", "Re-delivered events skipped (already learned).",
     "replayed"),
    (GaugeMetricFamily, "pending_labels", "Events waiting for a delayed label.", "pending"),
    (GaugeMetricFamily, "snapshot_age_seconds",
     "Seconds since the partition's last durable snapshot.", "snapshot_age_s"),
    (GaugeMetricFamily, "snapshot_bytes",
     "Size of the partition's last snapshot (pickled learner).", "snapshot_bytes"),
    (GaugeMetricFamily, "pending_bytes",
     "Bytes of the events waiting for a delayed label (their record values).",
     "pending_bytes"),
    (GaugeMetricFamily, "features", "Distinct feature names the partition's model has seen.",
     "features"),
    (CounterMetricFamily, "features_dropped",
     "Feature values dropped: new names past RIVERBED_MAX_FEATURES.", "features_dropped"),
    (CounterMetricFamily, "model_rollbacks",
     "Learns undone: the model raised or its state became non-finite.", "rollbacks"),
    (CounterMetricFamily, "promotions",
     "Champions replaced by a challenger (RIVERBED_PROMOTION=auto).", "promotions"),
)  # fmt: skip


class _LearnerCollector(Collector):
    def __init__(
        self, source: Callable[[], dict[str, Any]], lag: Callable[[int], int | None]
    ) -> None:
        self.source = source
        self.lag = lag

    def collect(self) -> Iterator[Metric]:
        doc = self.source()
        parts: dict[str, dict[str, Any]] = doc.get("partitions", {})
        # One family per /models field of a partition: (kind, name, help, field).
        per_partition = [
            (key, kind("riverbed_" + name, text, labels=["partition"]))
            for kind, name, text, key in _PER_PARTITION
        ]
        labels = CounterMetricFamily(
            "riverbed_labels",
            "Label records by outcome: joined, early, late, orphan, replayed, misrouted; "
            "defaulted counts events learned with RIVERBED_LABEL_DEFAULT.",
            labels=["partition", "outcome"],
        )
        drifts = CounterMetricFamily(
            "riverbed_drift_detections", "Drifts detected.", labels=["partition", "detector"]
        )
        value = GaugeMetricFamily(
            "riverbed_model_metric",
            "Prequential metric of each candidate model of the partition: since the start "
            "(window=all) and over the last RIVERBED_METRIC_WINDOW labelled events "
            "(window=rolling).",
            labels=["partition", "metric", "window", "model"],
        )
        champion = GaugeMetricFamily(
            "riverbed_champion",
            "1 for the partition's champion: the candidate whose predictions are "
            "published (/models champion); challengers have no series.",
            labels=["partition", "model"],
        )
        lag = GaugeMetricFamily(
            "riverbed_consumer_lag",
            "Events in the partition not yet predicted.",
            labels=["partition"],
        )
        detector = doc.get("drift_detector", "adwin")
        for p, d in parts.items():
            for key, family in per_partition:
                if d.get(key) is not None:
                    family.add_metric([p], d[key])
            for outcome, n in d["labels"].items():
                labels.add_metric([p, outcome], n)
            drifts.add_metric([p, detector], d["drifts"])
            if d.get("champion"):
                champion.add_metric([p, d["champion"]], 1.0)
            # One series per candidate (RIVERBED_MODEL: a bounded, configured list).
            for model, q in d.get("candidates", {}).items():
                if q["metric"]["value"] is not None:
                    value.add_metric([p, q["metric"]["name"], "all", model],
                                     float(q["metric"]["value"]))  # fmt: skip
                rolling = q.get("rolling")
                if rolling and rolling["value"] is not None:
                    value.add_metric([p, rolling["name"], "rolling", model],
                                     float(rolling["value"]))  # fmt: skip
            behind = self.lag(int(p))
            if behind is not None:
                lag.add_metric([p], behind)
        yield from (family for _, family in per_partition)
        yield from (labels, drifts, value, champion, lag)
        yield from _worker_families(doc)


def _worker_families(doc: dict[str, Any]) -> Iterator[Metric]:
    """The worker's own metrics (not per partition) from the ``/models`` document."""
    dead = CounterMetricFamily(
        "riverbed_dead_letters", "Records sent to the dead-letter topic.", labels=["stage"]
    )
    for stage, n in doc.get("dead_letters", {}).items():
        dead.add_metric([stage], n)
    snaps = CounterMetricFamily("riverbed_snapshots_written", "Snapshots written.")
    snaps.add_metric([], doc.get("snapshots_written", 0))
    refused = CounterMetricFamily(
        "riverbed_snapshots_refused", "Snapshots that failed verification and were not loaded."
    )
    refused.add_metric([], doc.get("snapshots_refused", 0))
    gaps = CounterMetricFamily(
        "riverbed_learning_gaps",
        "Source partition ranges never learned: deleted by retention before a snapshot "
        "covered them (see /ready).",
    )
    gaps.add_metric([], len(doc.get("learning_gaps", [])))
    up = GaugeMetricFamily("riverbed_ready", "1 when every assigned partition is restored.")
    up.add_metric([], 1.0 if doc.get("ready") else 0.0)
    cache = doc.get("name_cache", {})
    names = GaugeMetricFamily(
        "riverbed_name_cache_bytes",
        "Bytes (estimated) of the cache of dotted feature names built from input keys.",
    )
    names.add_metric([], cache.get("bytes", 0))
    dropped = CounterMetricFamily(
        "riverbed_name_cache_resets",
        "Times the feature-name cache reached its budget and was dropped (keys that "
        "keep changing: a stream of ever new feature names or nested prefixes).",
    )
    dropped.add_metric([], cache.get("resets", 0))
    yield from (dead, snaps, refused, gaps, up, names, dropped)
