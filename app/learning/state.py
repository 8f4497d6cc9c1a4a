"""Which partitions this worker owns and their learners.

A learner is created on the first record of a partition this worker owns and dropped
when the partition is assigned elsewhere: the model follows the partition.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from typing import Any, Protocol

from riverbed import models
from riverbed.config import Settings
from riverbed.exceptions import ConfigError
from riverbed.learning import quality
from riverbed.learning.learner import LearnerSettings, PartitionLearner
from riverbed.models import ModelSpec
from riverbed.records import FieldMapping

__all__ = ["LearnerRegistry", "Learners", "check_picklable"]

logger = logging.getLogger(__name__)


class LearnerRegistry(Protocol):
    """What the checkpointer needs of the partitions' learners (:class:`Learners`;
    structural: tests pass fakes)."""

    def items(self) -> list[tuple[int, PartitionLearner]]: ...
    def has(self, partition: int) -> bool: ...
    def get(self, partition: int) -> PartitionLearner: ...
    def replace(self, partition: int, learner: PartitionLearner) -> None: ...


def check_picklable(spec: ModelSpec) -> None:
    """Take a snapshot's pickle of a fresh learner of ``spec``, and read it back.

    A checkpoint pickles the learner, its model included: a model that cannot be
    pickled (a lock, an open file, a lambda in its state, a factory that is a lambda)
    would run until its first checkpoint and then stop the worker. It is refused at
    start-up instead.

    Raises
    ------
    ConfigError
        Naming ``RIVERBED_MODEL`` and what the pickle said.

    """
    learner = PartitionLearner(spec, partition=0)
    try:
        pickle.loads(pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: S301 - ours
    except Exception as exc:
        msg = (
            f"RIVERBED_MODEL={spec.name!r}: the model cannot be pickled, so it could never "
            f"be snapshotted ({type(exc).__name__}: {exc})"
        )
        raise ConfigError(msg) from exc


def _checked_threshold(threshold: str, spec: ModelSpec) -> str:
    """``RIVERBED_THRESHOLD``, refused at start-up for a model that is not a classifier."""
    if threshold and spec.task != "classification":
        msg = (
            f"RIVERBED_THRESHOLD={threshold} decides between classes, but "
            f"RIVERBED_MODEL={spec.name} is a {spec.task} model"
        )
        raise ConfigError(msg)
    return threshold


def _checked_metric(name: str, spec: ModelSpec) -> str:
    """``RIVERBED_METRIC``, refused at start-up when it cannot score the model's task."""
    try:
        quality.choose(name, spec.task)
    except ValueError as exc:
        msg = f"RIVERBED_METRIC={name}: {exc} (RIVERBED_MODEL={spec.name})"
        raise ConfigError(msg) from None
    return name


class Learners:
    """Partition number -> :class:`PartitionLearner` for one worker.

    Examples
    --------
    >>> from riverbed import models
    >>> learners = Learners(models.spec("logreg"))
    >>> learners.get(3).partition
    3
    >>> learners.assign({0, 1})
    >>> sorted(learners.describe()["partitions"])
    []

    """

    def __init__(self, spec: ModelSpec, **settings: Any) -> None:
        """``settings`` are :class:`~riverbed.learning.learner.LearnerSettings` fields."""
        self.spec = spec
        self.settings = LearnerSettings(**settings)
        self.assigned: set[int] = set()
        self._by_partition: dict[int, PartitionLearner] = {}
        self._waiting: dict[int, list[Callable[[], None]]] = {}

    @classmethod
    def from_settings(cls, spec: ModelSpec, settings: Settings) -> Learners:
        """The worker's learners, with the ``RIVERBED_*`` settings of a learner.

        Raises
        ------
        ConfigError
            A setting is refused, or the model cannot be snapshotted (:func:`check_picklable`).

        """
        check_picklable(spec)
        return cls(
            spec,
            pending_max=settings.pending_max,
            pending_max_bytes=settings.pending_max_bytes,
            max_features=settings.max_features,
            pending_ttl_ms=int(settings.pending_ttl * 1000),
            drift_detector=settings.drift_detector,
            drift_reset=settings.drift_action == "reset",
            mapping=FieldMapping.from_settings(settings),
            label_default=settings.label_default,
            label_default_after_ms=int(settings.label_default_after * 1000),
            metric=_checked_metric(settings.metric, spec),
            metric_window=settings.metric_window,
            lineup=tuple(models.lineup(settings.model)),
            shadow_predictions=settings.shadow_predictions,
            promotion_window=settings.promotion_window if settings.promotion == "auto" else 0,
            promotion_min_positives=settings.promotion_min_positives,
            threshold=_checked_threshold(settings.threshold, spec),
            label_maturity=settings.maturity,
            min_labels=settings.min_labels,
        )

    def get(self, partition: int) -> PartitionLearner:
        """The partition's learner, created fresh on first use."""
        learner = self._by_partition.get(partition)
        if learner is None:
            learner = PartitionLearner(self.spec, partition=partition, **self.settings.fields())
            self._by_partition[partition] = learner
        return learner

    def has(self, partition: int) -> bool:
        """Whether the partition's learner is installed (restored, fresh or kept)."""
        return partition in self._by_partition

    def when_installed(self, partition: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the partition's learner is installed (at once if it is).

        Kafka may deliver a newly assigned partition's records while its snapshot is
        still being read; handling them with a fresh learner would learn them into a
        model that the restored one then replaces. The agent waits on this (learning/
        does no I/O and knows no event loop).
        """
        if self.has(partition):
            callback()
        else:
            self._waiting.setdefault(partition, []).append(callback)

    def install(self, partition: int, learner: PartitionLearner | None = None) -> None:
        """Install a restored learner (or a fresh one) and wake whoever waits for it."""
        if learner is not None:
            # Settings are never read from a snapshot: the worker's own apply.
            learner.configure(self.settings)
            self._by_partition[partition] = learner
        else:
            self.get(partition)
        for callback in self._waiting.pop(partition, ()):
            callback()

    def replace(self, partition: int, learner: PartitionLearner) -> None:
        """Carry on with ``learner`` (an equal copy) for a partition still installed."""
        if partition in self._by_partition:
            self._by_partition[partition] = learner

    def assign(self, partitions: set[int]) -> None:
        """The partitions this worker owns now; learners of the others are dropped."""
        for p in set(self._by_partition) - partitions:
            logger.info("partition %d moved away; dropping its learner", p)
            del self._by_partition[p]
        self.assigned = set(partitions)

    def waits_elsewhere(self, rid: str, partition: int) -> bool:
        """Whether event ``rid`` waits for its label in a partition of this worker other
        than ``partition`` (a label that came there is misrouted)."""
        return any(rid in lr.pending for p, lr in self._by_partition.items() if p != partition)

    def items(self) -> list[tuple[int, PartitionLearner]]:
        return sorted(self._by_partition.items())

    def describe(self) -> dict[str, Any]:
        """``/models``: the model name and one entry per partition."""
        return {
            "model": self.spec.name,
            "task": self.spec.task,
            "assigned": sorted(self.assigned),
            "partitions": {str(p): lr.describe() for p, lr in self.items()},
        }
