"""PartitionLearner: one partition's model, metric and pending labels; pure and synchronous.

No faust import: this is riverbed's learning logic, unit-tested with plain lists, the
way Bytewax keeps stateful logic apart from its runtime. The agent feeds it records in
offset order and publishes what it returns.

For each event, exactly what :func:`river.evaluate.progressive_val_score` does:
predict with the current model, then, when the label came inline, update the metric
with ``(y, prediction)`` and learn. An event without a label is remembered (features
and prediction) until its label arrives on the labels topic; then the metric is
updated with the *remembered* prediction and the model learns from the remembered
features. A remembered event waits at most ``pending_ttl_ms`` of stream time (Kafka
record timestamps, so a replay expires exactly what the live run expired) and at most
``pending_max`` events wait; the oldest go first.

Events and labels are separate topics, fetched independently, so a label can be
handled before its event. Such an early label waits (same bounds); when its event
arrives, the event is predicted first and then learned with it, exactly as if the
label had come inline, so the label never leaks into the prediction.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from river import base, drift

from app.exceptions import InvalidRecord, ModelError
from app.inline import inline_copy
from app.records import Event, Label, Value
from models import ModelSpec, final_step

__all__ = ["DETECTORS", "LEARN", "PREDICT", "LabelOutcome", "PartitionLearner", "make_detector"]

DETECTORS = ("adwin", "page_hinkley", "kswin", "none")


def make_detector(name: str) -> Any:
    """A fresh River drift detector by name (None for ``none``)."""
    if name == "adwin":
        return drift.ADWIN()
    if name == "page_hinkley":
        return drift.PageHinkley()
    if name == "kswin":
        return drift.KSWIN(seed=42)
    if name == "none":
        return None
    msg = f"unknown drift detector {name!r}; choose from {', '.join(DETECTORS)}"
    raise ValueError(msg)


logger = logging.getLogger(__name__)

# Dead-letter stages of model errors.
PREDICT = "predict"
LEARN = "learn"


class LabelOutcome:
    """What became of a label record (string constants, the Prometheus label values)."""

    JOINED = "joined"  # matched its event: metric updated, model learned
    EARLY = "early"  # came before its event; kept until the event arrives (then JOINED)
    LATE = "late"  # its event was already learned (inline label or an earlier label)
    ORPHAN = "orphan"  # no such event: its event expired, or it waited in vain
    REPLAYED = "replayed"  # offset already handled (a re-delivery after a rebalance)


@dataclass(slots=True)
class _Pending:
    x: dict[str, Value] | None  # None for anomaly models: they learned at event time
    y_pred: Any  # what the metric is updated with: label, proba or score
    ts_ms: int


class PartitionLearner:
    """Test-then-train for one partition.

    Parameters
    ----------
    spec
        The catalog entry: builds the model and the metric.
    partition
        The partition this learner owns (only reported).
    pending_max
        Most events waiting for a delayed label.
    pending_ttl_ms
        Stream-time milliseconds an event waits for its label; 0 waits forever.

    Examples
    --------
    >>> import models
    >>> from app.records import Event, Label
    >>> learner = PartitionLearner(models.spec("logreg"), partition=0)
    >>> learner.process_event(Event("a", {"f": 1.0}, y=True), offset=0, ts_ms=0)
    {'id': 'a', 'y_pred': False, 'proba': {False: 0.5, True: 0.5}, 'y': True}
    >>> learner.process_event(Event("b", {"f": 2.0}), offset=1, ts_ms=1)["y_pred"]
    True
    >>> learner.process_label(Label("b", False), offset=0, ts_ms=2)
    'joined'
    >>> learner.process_label(Label("b", False), offset=1, ts_ms=3)
    'late'
    >>> learner.learned, learner.metric
    (2, Accuracy: 0.00%)

    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        partition: int,
        pending_max: int = 100_000,
        pending_ttl_ms: int = 3_600_000,
        drift_detector: str = "adwin",
        drift_reset: bool = False,
    ) -> None:
        self.spec = spec
        self.partition = partition
        self.pending_max = pending_max
        self.pending_ttl_ms = pending_ttl_ms
        self.model = spec.build()
        self.metric = spec.metric()
        self.drift_detector = drift_detector
        self.drift_reset = drift_reset
        self.detector = make_detector(drift_detector) if spec.task != "anomaly" else None
        self.drifts = 0
        self._error_sum = 0.0  # prequential error since the last drift detection
        self._error_n = 0
        # Drift events not yet published; the processor drains them to the metrics topic.
        self.drift_events: list[dict[str, Any]] = []
        self.task = spec.task
        # Proba-based metrics (ROCAUC, LogLoss) get proba/scores, the rest get labels,
        # the same choice progressive_val_score makes with `metric.requires_labels`.
        self._metric_wants_label = bool(getattr(self.metric, "requires_labels", True))
        # River's default Classifier.predict_one is argmax(predict_proba_one): when the
        # final estimator keeps that default, derive y_pred from the proba we need anyway
        # instead of running the whole pipeline twice. Same result, half the work.
        est = final_step(self.model)
        self._argmax_proba = getattr(type(est), "predict_one", None) is base.Classifier.predict_one
        self._has_proba = True
        self.pending: OrderedDict[str, _Pending] = OrderedDict()
        self.early: OrderedDict[str, tuple[Value, int]] = OrderedDict()  # id -> (y, ts_ms)
        # Ids recently finished: True learned, False expired unlabelled. Tells a late
        # duplicate label and a label for an expired event from an early one.
        self._finished: OrderedDict[str, bool] = OrderedDict()
        self.events = 0
        self.learned = 0
        self.labels: dict[str, int] = {
            LabelOutcome.JOINED: 0,
            LabelOutcome.EARLY: 0,
            LabelOutcome.LATE: 0,
            LabelOutcome.ORPHAN: 0,
            LabelOutcome.REPLAYED: 0,
        }
        self.replayed_events = 0
        self.offset_gaps = 0
        self.expired = 0
        self.last_offset = -1  # last events offset handled
        self.last_label_offset = -1  # last labels offset handled
        self.snapshot_offset = -1  # events offset of the last durable snapshot
        self.snapshot_ms: int | None = None  # when it was written (epoch ms)
        self.restored_offset: int | None = None  # events offset of the snapshot it came from

    def configure(
        self, *, pending_max: int, pending_ttl_ms: int, drift_detector: str, drift_reset: bool
    ) -> None:
        """Apply the worker's settings to a restored learner (a snapshot carries the
        settings of the worker that wrote it, which never count). A different drift
        detector starts fresh; the same one keeps its window.

        Examples
        --------
        >>> import models
        >>> learner = PartitionLearner(models.spec("logreg"), partition=0)
        >>> learner.configure(pending_max=5, pending_ttl_ms=0, drift_detector="kswin",
        ...                   drift_reset=True)
        >>> type(learner.detector).__name__, learner.drift_reset, learner.pending_max
        ('KSWIN', True, 5)

        """
        self.pending_max = pending_max
        self.pending_ttl_ms = pending_ttl_ms
        self.drift_reset = drift_reset
        if drift_detector != self.drift_detector:
            self.drift_detector = drift_detector
            self.detector = make_detector(drift_detector) if self.task != "anomaly" else None
            self._error_sum, self._error_n = 0.0, 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A snapshot written by an earlier version lacks attributes added since.
        self.__dict__.update({"_error_sum": 0.0, "_error_n": 0, **state})

    def rebuilt(self) -> PartitionLearner:
        """The same learner, with the per-event objects' attributes inline again.

        A snapshot pickles this learner, which on CPython 3.11 leaves every one of its
        objects slower to use (``app/inline.py``); the checkpoint carries on with this
        copy instead. The model, metric and drift detector are copied; the buffers
        (pending events, early labels, counters) are handed over, not copied: this
        learner is not used again.
        """
        new = object.__new__(PartitionLearner)
        for name, value in self.__dict__.items():
            hot = name in ("model", "metric", "detector") and value is not None
            setattr(new, name, inline_copy(value) if hot else value)
        return new

    # -- prediction ------------------------------------------------------------------
    def _predict(self, x: dict[str, Value]) -> tuple[Any, dict[Any, float] | None]:
        if self.task == "classification":
            if self._has_proba:
                try:
                    proba = self.model.predict_proba_one(x)
                except NotImplementedError:
                    self._has_proba = False
                else:
                    if self._argmax_proba:
                        return (max(proba, key=proba.get) if proba else None), proba
                    return self.model.predict_one(x), proba
            return self.model.predict_one(x), None
        if self.task == "regression":
            return self.model.predict_one(x), None
        return self.model.score_one(x), None

    def _check_label(self, y: Value) -> None:
        if self.task == "regression" and (isinstance(y, bool) or not isinstance(y, int | float)):
            msg = f'"y" must be a number for the regression model {self.spec.name!r}, got {y!r}'
            raise InvalidRecord(msg)

    def _finish(self, rid: str, *, learned: bool) -> None:
        done = self._finished
        done[rid] = learned
        if len(done) > self.pending_max:
            done.popitem(last=False)

    def _expire(self, now_ms: int) -> None:
        if not self.pending_ttl_ms:
            return
        cutoff = now_ms - self.pending_ttl_ms
        pending = self.pending
        while pending:
            first = next(iter(pending.values()))
            if first.ts_ms >= cutoff:
                break
            self._finish(pending.popitem(last=False)[0], learned=False)
            self.expired += 1
        early = self.early
        while early and next(iter(early.values()))[1] < cutoff:
            early.popitem(last=False)
            self.labels[LabelOutcome.ORPHAN] += 1

    def _watch(self, y: Value, y_pred: Any, *, topic: str, offset: int) -> None:
        """Feed the prequential error to the drift detector; record a detection."""
        detector = self.detector
        if detector is None or y_pred is None or y_pred == {}:
            return
        if isinstance(y_pred, dict):  # probabilities: their argmax is the prediction
            y_pred = max(y_pred, key=y_pred.__getitem__)
        error = abs(float(y) - float(y_pred)) if self.task == "regression" else float(y != y_pred)
        # The mean error since the last detection, kept here: reading the detector's
        # own estimate before every update cost more than the update itself.
        self._error_sum += error
        self._error_n += 1
        detector.update(error)
        if not detector.drift_detected:
            return
        before = self._error_sum / self._error_n
        self._error_sum, self._error_n = 0.0, 0
        self.drifts += 1
        self.drift_events.append(
            {
                "type": "drift",
                "partition": self.partition,
                "topic": topic,
                "offset": offset,
                "events_offset": self.last_offset,
                "events": self.events,
                "detector": self.drift_detector,
                "error_before": before,
                "error_after": getattr(detector, "estimation", None),
                "metric": {"name": type(self.metric).__name__, "value": self.metric.get()},
                "action": "reset" if self.drift_reset else "none",
            }
        )
        if self.drift_reset:
            # Re-warm: a fresh model learns the new concept; the metric keeps its history.
            self.model = self.spec.build()
            self.detector = make_detector(self.drift_detector)

    # -- offsets -----------------------------------------------------------------------
    def redelivered(self, offset: int, *, label: bool = False) -> bool:
        """Whether ``offset`` was handled before (a re-delivery after a restore); counted.

        Examples
        --------
        >>> import models
        >>> learner = PartitionLearner(models.spec("logreg"), partition=0)
        >>> learner.skip(4)
        >>> learner.redelivered(4), learner.redelivered(5), learner.replayed_events
        (True, False, 1)

        """
        if label:
            if offset <= self.last_label_offset:
                self.labels[LabelOutcome.REPLAYED] += 1
                return True
            return False
        if offset <= self.last_offset:
            self.replayed_events += 1
            return True
        return False

    def skip(self, offset: int, *, label: bool = False) -> None:
        """Mark ``offset`` handled without learning from it (it became a dead letter)."""
        if label:
            self.last_label_offset = max(self.last_label_offset, offset)
        else:
            self.last_offset = max(self.last_offset, offset)

    # -- the two entry points --------------------------------------------------------
    def process_event(self, event: Event, *, offset: int, ts_ms: int) -> dict[str, Any] | None:
        """Predict, then learn when the label is inline; the prediction record's fields.

        Returns None for an offset this learner already handled (a re-delivery), which
        is neither predicted nor learned again.
        """
        if offset <= self.last_offset:
            self.replayed_events += 1
            return None
        if offset != self.last_offset + 1 and self.last_offset >= 0:
            # Legitimate with transactional producers (markers) and compaction; anything
            # else is a skipped record, so it is counted and logged.
            self.offset_gaps += 1
            logger.info(
                "partition %d: events offset jumped from %d to %d",
                self.partition,
                self.last_offset,
                offset,
            )
        y = event.y
        joined_early = False
        if y is not None:
            self._check_label(y)
        elif self.early:
            early = self.early.pop(event.id, None)
            if early is not None:
                y, joined_early = early[0], True
        x = event.x
        try:
            y_pred, proba = self._predict(x)
        except Exception as exc:
            raise ModelError(PREDICT, exc) from exc
        metric_pred = y_pred if self._metric_wants_label or proba is None else proba
        try:
            # Like progressive_val_score: no metric update for a model with no opinion yet.
            if y is not None and metric_pred is not None and metric_pred != {}:
                self.metric.update(y, metric_pred)
            if self.task == "anomaly":
                self.model.learn_one(x)  # unsupervised: every event teaches it
            elif y is not None:
                self.model.learn_one(x, y)
        except Exception as exc:
            raise ModelError(LEARN, exc) from exc
        if self.task == "anomaly" or y is not None:
            self.learned += 1
        if joined_early:
            # Remembered so a duplicate label is "late". Inline-labelled ids are not
            # remembered (a snapshot would carry them all): a stray label for one waits
            # as early and ends an orphan; either way it is never learned twice.
            self._finish(event.id, learned=True)
        if y is None:
            self._expire(ts_ms)
            pending = self.pending
            pending[event.id] = _Pending(None if self.task == "anomaly" else x, metric_pred, ts_ms)
            pending.move_to_end(event.id)
            if len(pending) > self.pending_max:
                self._finish(pending.popitem(last=False)[0], learned=False)
                self.expired += 1
        if y is not None:
            self._watch(y, metric_pred, topic="events", offset=offset)
        if joined_early:
            self.labels[LabelOutcome.JOINED] += 1
        self.events += 1
        self.last_offset = offset
        out: dict[str, Any] = {"id": event.id, "y_pred": y_pred}
        if proba is not None:
            out["proba"] = proba
        if event.y is not None:
            out["y"] = event.y
        return out

    def process_label(self, label: Label, *, offset: int, ts_ms: int) -> str:
        """Join a delayed label with its pending event; return a :class:`LabelOutcome`."""
        if offset <= self.last_label_offset:
            self.labels[LabelOutcome.REPLAYED] += 1
            return LabelOutcome.REPLAYED
        self._check_label(label.y)
        self.last_label_offset = offset
        self._expire(ts_ms)
        pending = self.pending.pop(label.id, None)
        if pending is None:
            finished = self._finished.get(label.id)
            if finished is not None:
                outcome = LabelOutcome.LATE if finished else LabelOutcome.ORPHAN
            else:
                outcome = LabelOutcome.EARLY
                self.early[label.id] = (label.y, ts_ms)
                self.early.move_to_end(label.id)
                if len(self.early) > self.pending_max:
                    self.early.popitem(last=False)
                    self.labels[LabelOutcome.ORPHAN] += 1
        else:
            try:
                if pending.y_pred is not None and pending.y_pred != {}:
                    self.metric.update(label.y, pending.y_pred)
                if pending.x is not None:
                    self.model.learn_one(pending.x, label.y)
            except Exception as exc:
                raise ModelError(LEARN, exc) from exc
            if pending.x is not None:
                self.learned += 1
            self._watch(label.y, pending.y_pred, topic="labels", offset=offset)
            self._finish(label.id, learned=True)
            outcome = LabelOutcome.JOINED
        self.labels[outcome] += 1
        return outcome

    # -- reporting -------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """The partition's entry of ``/models``."""
        value = self.metric.get()
        return {
            "events": self.events,
            "learned": self.learned,
            "pending": len(self.pending),
            "early_labels": len(self.early),
            "labels": dict(self.labels),
            "expired": self.expired,
            "replayed": self.replayed_events,
            "offset_gaps": self.offset_gaps,
            "metric": {"name": type(self.metric).__name__, "value": value},
            "drifts": self.drifts,
            "last_offset": self.last_offset,
            "last_label_offset": self.last_label_offset,
            "snapshot_offset": self.snapshot_offset,
            "restored_offset": self.restored_offset,
            "snapshot_age_s": (
                None
                if self.snapshot_ms is None
                else round(time.time() - self.snapshot_ms / 1000, 3)
            ),
        }
