"""A partition's labels: events waiting for theirs, early labels, TTLs, defaults, maturity.

An event without a label is remembered (:class:`Pending`: features and prediction)
until its label arrives on the labels topic; then the metric is updated with the
*remembered* prediction and the model learns from the remembered features. A remembered
event waits at most ``pending_ttl_ms`` of stream time (Kafka record timestamps, so a
replay expires exactly what the live run expired) and at most ``pending_max`` events
(and ``pending_max_bytes``) wait; the oldest go first. A label handled before its event
waits as an early label (same bounds). With RIVERBED_LABEL_DEFAULT an event still
waiting after RIVERBED_LABEL_DEFAULT_AFTER is learned with the default (labels by
absence); with RIVERBED_LABEL_MATURITY every label waits with its event until the event
is mature (River's ``progressive_val_score`` with ``moment`` and ``delay``).

A mixin of :class:`~riverbed.learning.learner.PartitionLearner` (see
:mod:`riverbed.learning.candidates` for why); the state it reads and writes is declared
below, and what it calls of the other parts under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from riverbed.exceptions import ModelError
from riverbed.learning.guard import huge, huge_value
from riverbed.learning.journal import LEARN, NONFINITE_REASON, NonFiniteState
from riverbed.records import Label, Value

__all__ = ["LabelOutcome", "Labels", "Pending", "Siblings"]

logger = logging.getLogger("riverbed.learning.learner")


class LabelOutcome:
    """What became of a label record (string constants, the Prometheus label values)."""

    JOINED = "joined"  # matched its event: metric updated, model learned
    EARLY = "early"  # came before its event; kept until the event arrives (then JOINED)
    LATE = "late"  # its event was already learned (inline label or an earlier label)
    ORPHAN = "orphan"  # no such event: its event expired, or it waited in vain
    # Its event waits in another partition of this worker: produced with a different
    # partitioner or key than the event; it can never join (never learned).
    MISROUTED = "misrouted"
    # Not a label record: an event learned with RIVERBED_LABEL_DEFAULT because no label
    # came within RIVERBED_LABEL_DEFAULT_AFTER (labels by absence).
    DEFAULTED = "defaulted"
    REPLAYED = "replayed"  # offset already handled (a re-delivery after a rebalance)
    ALL = (JOINED, EARLY, LATE, ORPHAN, REPLAYED, MISROUTED, DEFAULTED)


@dataclass(slots=True)
class Pending:
    x: dict[str, Value] | None  # None for anomaly models: they learned at event time
    y_pred: Any  # what the metric is updated with: label, proba or score
    ts_ms: int
    size: int = 0  # bytes of the event record (counted against pending_max_bytes)
    shadow: tuple[Any, ...] | None = None  # the challengers' y_pred, in their order
    # RIVERBED_LABEL_MATURITY: the label that came for it (inline, early or on time),
    # learned when the event is mature; None: none yet (the default applies then).
    label: Value | None = None


class Siblings(Protocol):
    """The worker's learners of its other partitions, as a label's join sees them
    (:class:`~riverbed.learning.state.Learners`)."""

    def waits_elsewhere(self, rid: str, partition: int) -> bool:
        """Whether event ``rid`` waits for its label in a partition other than ``partition``."""
        ...


class Labels:
    """The learner's part that joins labels with their events."""

    partition: int
    task: str
    model: Any
    pending: OrderedDict[str, Pending]
    pending_max: int
    pending_max_bytes: int
    pending_bytes: int
    pending_ttl_ms: int
    early: OrderedDict[str, tuple[Value, int]]
    _finished: OrderedDict[str, bool]
    label_default: Value | None
    label_default_after_ms: int
    label_maturity: bool
    _kafka_clock: bool
    labels: dict[str, int]
    learned: int
    learned_by_model: int
    expired: int
    last_label_offset: int
    journal: list[tuple[Any, ...]]

    if TYPE_CHECKING:  # the other parts' (candidates, journal, learner)

        def _score(self, y: Value, y_pred: Any, holder: Any = None) -> None: ...
        def _challengers_learn(
            self, x: dict[str, Value] | None, y: Value | None, preds: tuple[Any, ...] | None
        ) -> None: ...
        def _watch(
            self, y: Value, y_pred: Any, *, topic: str, offset: int, holder: Any = None
        ) -> None: ...
        def _challengers_watch(
            self,
            y: Value,
            preds: tuple[Any, ...] | None,
            *,
            topic: str,
            offset: int,
            champion_pred: Any = None,
        ) -> None: ...
        def _undo_last(self) -> None: ...
        def poisoned(self) -> bool: ...
        def _check_label(self, y: Value) -> None: ...
        def _warn_once(self, what: str, msg: str, *args: Any) -> None: ...

    def _finish(self, rid: str, *, learned: bool) -> None:
        done = self._finished
        done[rid] = learned
        if len(done) > self.pending_max:
            done.popitem(last=False)

    def _init_labels(
        self,
        *,
        pending_max: int,
        pending_ttl_ms: int,
        pending_max_bytes: int,
        label_default: Value | None,
        label_default_after_ms: int,
        label_maturity: bool,
    ) -> None:
        self.pending_max = pending_max
        self.pending_ttl_ms = pending_ttl_ms
        self.pending_max_bytes = pending_max_bytes
        self.label_default = label_default
        self.label_default_after_ms = label_default_after_ms
        self.label_maturity = label_maturity
        self._kafka_clock = True  # the last event had no time of its own (maturity)
        self.pending = OrderedDict()
        self.pending_bytes = 0
        self.early = OrderedDict()  # id -> (y, ts_ms)
        # Ids recently finished: True learned, False expired unlabelled. Tells a late
        # duplicate label and a label for an expired event from an early one.
        self._finished = OrderedDict()
        self.labels = dict.fromkeys(LabelOutcome.ALL, 0)
        self.expired = 0

    def _wait_for_label(
        self,
        rid: str,
        x: dict[str, Value],
        y_pred: Any,
        ts_ms: int,
        size: int,
        shadow: tuple[Any, ...] | None,
        y: Value | None,
    ) -> None:
        """Remember a predicted event until its label comes (or, with maturity, until it
        is mature, with the label ``y`` that came with it), within the bounds."""
        self._expire(ts_ms)
        pending = self.pending
        gone = pending.pop(rid, None)  # the same id again: the newer waits
        if gone is not None:
            self.pending_bytes -= gone.size
        pending[rid] = Pending(
            None if self.task == "anomaly" else x, y_pred, ts_ms, size, shadow, y
        )
        self.pending_bytes += size
        if len(pending) > self.pending_max:
            self._evict_oldest()
        while self.pending_bytes > self.pending_max_bytes and len(pending) > 1:
            self._evict_oldest()
            self._warn_once(
                "pending_bytes",
                "events waiting for labels passed RIVERBED_PENDING_MAX_BYTES=%d; the "
                "oldest are given up (counted as expired)",
                self.pending_max_bytes,
            )

    def _evict_oldest(self) -> None:
        """Give up the oldest waiting event (the pending bounds are reached). With a
        label default it is learned with it now, sooner than its wait: else, with
        bounds too small for the wait, the model would never learn a default."""
        rid, gone = self.pending.popitem(last=False)
        self.pending_bytes -= gone.size
        if gone.label is not None:  # maturity: its label came; learned sooner than due
            self._learn_default(rid, gone, gone.label, defaulted=False)
            return
        if self.label_default is not None:
            self._warn_once(
                "default_early",
                "the events waiting for labels reached RIVERBED_PENDING_MAX(_BYTES): the "
                "oldest are learned with RIVERBED_LABEL_DEFAULT before "
                "RIVERBED_LABEL_DEFAULT_AFTER; raise the bounds to rate x wait",
            )
            self._learn_default(rid, gone, self.label_default)
            return
        self._finish(rid, learned=False)
        self.expired += 1

    def _expire(self, now_ms: int) -> None:
        if self.label_default_after_ms and self.pending:
            self._default_labels(now_ms - self.label_default_after_ms)
        if not self.pending_ttl_ms:
            return
        cutoff = now_ms - self.pending_ttl_ms
        pending = self.pending
        while pending:
            first = next(iter(pending.values()))
            if first.ts_ms >= cutoff:
                break
            self._evict_oldest()
        early = self.early
        while early and next(iter(early.values()))[1] < cutoff:
            early.popitem(last=False)
            self.labels[LabelOutcome.ORPHAN] += 1

    def _default_labels(self, cutoff_ms: int, *, inclusive: bool = False) -> None:
        """Labels by absence: learn the events that waited since before ``cutoff_ms``
        (or at it, ``inclusive``) with ``label_default``, as if that label had come
        (metric, model, drift); with maturity, those whose label came learn it instead.

        Stream time (record timestamps) decides, so a replay defaults exactly what the
        live run defaulted, and a snapshot holds the result: exactly once. A label
        that comes later finds the event learned and is ``late``.
        """
        y = self.label_default
        if y is None:
            return
        pending = self.pending
        while pending:
            rid, first = next(iter(pending.items()))
            if first.ts_ms > cutoff_ms or (first.ts_ms == cutoff_ms and not inclusive):
                break
            del pending[rid]
            self.pending_bytes -= first.size
            if first.label is not None:
                self._learn_default(rid, first, first.label, defaulted=False)
            else:
                self._learn_default(rid, first, y)

    def _learn_default(
        self, rid: str, waiting: Pending, y: Value, *, defaulted: bool = True
    ) -> None:
        """Learn a waiting event with the default label, as a label record would (or,
        with maturity, with the label that came for it: not ``defaulted``)."""
        try:
            if waiting.y_pred is not None and waiting.y_pred != {}:
                self._score(y, waiting.y_pred)
            if waiting.x is not None:
                self.model.learn_one(waiting.x, y)
            if waiting.shadow is not None:
                self._challengers_learn(waiting.x, y, waiting.shadow)
        except Exception as exc:  # the event's own features: it alone is given up
            self._warn_once(
                "default", "learning an event with RIVERBED_LABEL_DEFAULT failed: %r", exc
            )
            self._finish(rid, learned=False)
            self.expired += 1
            return
        if waiting.x is not None:
            self.learned += 1
            self.learned_by_model += 1
        if defaulted:
            self.labels[LabelOutcome.DEFAULTED] += 1
        self._watch(y, waiting.y_pred, topic="labels", offset=self.last_label_offset)
        self._challengers_watch(
            y, waiting.shadow, topic="labels", offset=self.last_label_offset,
            champion_pred=waiting.y_pred,
        )  # fmt: skip
        self._finish(rid, learned=True)

    def process_label(
        self,
        label: Label,
        *,
        offset: int,
        ts_ms: int,
        source: Any = None,
        siblings: Siblings | None = None,
    ) -> str:
        """Join a delayed label with its pending event; return a :class:`LabelOutcome`.

        ``siblings`` (the worker's other partitions' learners) tell whether the id's
        event waits in another partition of this worker: a label that would wait as
        early is then ``misrouted`` instead (it can never join) and is not kept.
        Raises :class:`~riverbed.exceptions.ModelError` as :meth:`process_event` does.
        """
        if offset <= self.last_label_offset:
            self.labels[LabelOutcome.REPLAYED] += 1
            return LabelOutcome.REPLAYED
        self._check_label(label.y)
        self.last_label_offset = offset
        if self.label_maturity and self.task != "anomaly":
            outcome = self._attach(label, ts_ms, siblings)
            self.journal.append(("l", None if source else label, offset, ts_ms, source, 0))
            return outcome
        self._expire(ts_ms)
        pending = self.pending.pop(label.id, None)
        if pending is None:
            outcome = self._unmatched(label, ts_ms, siblings)
        else:
            self.pending_bytes -= pending.size
            try:
                if pending.y_pred is not None and pending.y_pred != {}:
                    self._score(label.y, pending.y_pred)
                if pending.x is not None:
                    self.model.learn_one(pending.x, label.y)
                if pending.shadow is not None:
                    self._challengers_learn(pending.x, label.y, pending.shadow)
            except Exception as exc:
                self._undo_last()
                raise ModelError(LEARN, exc) from exc
            if (
                (pending.x is not None and huge(pending.x)) or huge_value(label.y)
            ) and self.poisoned():
                self._undo_last()
                raise ModelError(LEARN, NonFiniteState(NONFINITE_REASON))
            if pending.x is not None:
                self.learned += 1
                self.learned_by_model += 1
            self._watch(label.y, pending.y_pred, topic="labels", offset=offset)
            self._challengers_watch(
                label.y, pending.shadow, topic="labels", offset=offset,
                champion_pred=pending.y_pred,
            )  # fmt: skip
            self._finish(label.id, learned=True)
            outcome = LabelOutcome.JOINED
        self.labels[outcome] += 1
        self.journal.append(("l", None if source else label, offset, ts_ms, source, 0))
        return outcome

    def _attach(self, label: Label, ts_ms: int, siblings: Siblings | None) -> str:
        """RIVERBED_LABEL_MATURITY: a label waits with its event until the event is
        mature, and is learned then, in event order. Events due before the label's time
        mature first (on the Kafka clock: labels carry no event time), so a label counts
        only if it came by its event's due time, whatever the order it was fetched in."""
        if self._kafka_clock:
            self._expire(ts_ms)
        waiting = self.pending.get(label.id)
        if waiting is None:
            outcome = self._unmatched(label, ts_ms, siblings)
        elif waiting.label is not None:
            outcome = LabelOutcome.LATE  # a second label: the first one counts
        else:
            waiting.label = label.y
            outcome = LabelOutcome.JOINED
        self.labels[outcome] += 1
        return outcome

    def _unmatched(self, label: Label, ts_ms: int, siblings: Siblings | None) -> str:
        """The outcome of a label whose event does not wait here: late (learned),
        orphan (expired), misrouted (it waits in another partition), or early (kept)."""
        finished = self._finished.get(label.id)
        if finished is not None:
            return LabelOutcome.LATE if finished else LabelOutcome.ORPHAN
        if siblings is not None and siblings.waits_elsewhere(label.id, self.partition):
            return LabelOutcome.MISROUTED
        self._keep_early(label, ts_ms)
        return LabelOutcome.EARLY

    def _keep_early(self, label: Label, ts_ms: int) -> None:
        """A label before its event: it waits (as many as events may)."""
        self.early[label.id] = (label.y, ts_ms)
        self.early.move_to_end(label.id)
        if len(self.early) > self.pending_max:
            self.early.popitem(last=False)
            self.labels[LabelOutcome.ORPHAN] += 1
