"""PartitionLearner: test-then-train for one partition; pure and synchronous.

No faust import: this is riverbed's learning logic, unit-tested with plain lists, the
way Bytewax keeps stateful logic apart from its runtime. The agent feeds it records in
offset order and publishes what it returns.

For each event, exactly what :func:`river.evaluate.progressive_val_score` does:
predict with the current model, then, when the label came inline, update the metric
with ``(y, prediction)`` and learn. Its concerns live in modules of their own, each a
part of this one class (a snapshot pickles it as one flat object):

- :mod:`riverbed.learning.labels`: events waiting for their labels, early labels,
  TTLs, labels by absence and label maturity (``process_label``);
- :mod:`riverbed.learning.candidates`: the champion and its challengers, their
  metrics, drift watch, duels and promotions;
- :mod:`riverbed.learning.journal`: the undo journal, a learn undone exactly;
- here: the event's path (``process_event``), the feature cap, offsets, settings,
  pickling and the ``/models`` entry.

Under RIVERBED_THRESHOLD a binary classifier's decision is its
:class:`~riverbed.learning.threshold.Threshold`'s, and what a candidate remembers of an
event is a :class:`~riverbed.learning.promotion.Decided`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from riverbed.exceptions import InvalidRecord, ModelError
from riverbed.learning import quality
from riverbed.learning.candidates import (
    DETECTORS,
    HOT,
    MODEL_FIELDS,
    Candidate,
    Challengers,
    describe_quality,
    make_detector,
    metric_differs,
    new_decider,
    predict_with,
    shown,
    threshold_differs,
)
from riverbed.learning.guard import finite_prediction, huge, huge_value
from riverbed.learning.inline import inline_copy
from riverbed.learning.journal import (
    LEARN,
    NONFINITE_REASON,
    PREDICT,
    Culprit,
    NonFiniteState,
    UndoJournal,
)
from riverbed.learning.labels import LabelOutcome, Labels, Pending
from riverbed.learning.promotion import decision_of
from riverbed.learning.settings import LearnerSettings
from riverbed.models import ModelSpec
from riverbed.records import HUGE, Event, FieldMapping, Value

__all__ = [
    "DETECTORS",
    "LEARN",
    "MODEL_FIELDS",
    "NONFINITE_REASON",
    "PREDICT",
    "Candidate",
    "Culprit",
    "LabelOutcome",
    "LearnerOutputs",
    "LearnerSettings",
    "NonFiniteState",
    "PartitionLearner",
    "make_detector",
]

logger = logging.getLogger(__name__)

# Snapshots written before the learner was split name these classes by this module.
_Pending = Pending


@dataclass(slots=True)
class LearnerOutputs:
    """What a learner made besides prediction records, handed over by
    :meth:`PartitionLearner.take_outputs`: drift and promotion records (for the metrics
    topic), the challengers' predictions (RIVERBED_SHADOW_PREDICTIONS) and the records
    whose learn a repair undid after the fact (dead letters)."""

    drifts: list[dict[str, Any]]
    shadows: list[dict[str, Any]]
    culprits: list[Culprit]


# Settings (but the drift detector's name: it says what the pickled detector is) and
# the undo journal stay out of a snapshot.
_NOT_PICKLED = (
    "pending_max",
    "pending_ttl_ms",
    "pending_max_bytes",
    "max_features",
    "drift_reset",
    "mapping",
    "label_default",
    "label_default_after_ms",
    "metric_window",
    "shadow_predictions",
    "shadows",
    "promotion_window",
    "promotion_min_positives",
    "threshold",
    "label_maturity",
    "min_labels",
    "_lineup_specs",
    "journal_base",
    "journal",
)


class PartitionLearner(Challengers, Labels, UndoJournal):
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
    >>> from riverbed import models
    >>> from riverbed.records import Event, Label
    >>> learner = PartitionLearner(models.spec("logreg"), partition=0)
    >>> learner.process_event(Event("a", {"f": 1.0}, y=True), offset=0, ts_ms=0)
    {'id': 'a', 'y_pred': False, 'proba': {False: 0.5, True: 0.5}, 'y': True, 'model': 'logreg'}
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
        pending_max_bytes: int = 64 * 1024 * 1024,
        max_features: int = 10_000,
        mapping: FieldMapping | None = None,
        label_default: Value | None = None,
        label_default_after_ms: int = 0,
        metric: str = "",
        metric_window: int = 1000,
        lineup: tuple[ModelSpec, ...] = (),
        shadow_predictions: bool = False,
        promotion_window: int = 0,
        promotion_min_positives: int = 30,
        threshold: str = "",
        label_maturity: bool = False,
        min_labels: int = 100,
    ) -> None:
        self.partition = partition
        self.task = spec.task
        self.threshold = threshold
        self.min_labels = min_labels
        self.mapping = mapping or FieldMapping()
        self.max_features = max_features
        self.features: set[str] = set()  # names the model has been given
        self.features_dropped = 0  # feature values left out: new names past the cap
        self._warned: set[str] = set()
        self._init_labels(
            pending_max=pending_max,
            pending_ttl_ms=pending_ttl_ms,
            pending_max_bytes=pending_max_bytes,
            label_default=label_default,
            label_default_after_ms=label_default_after_ms,
            label_maturity=label_maturity,
        )
        self._init_candidates(
            spec,
            lineup,
            metric=metric,
            metric_window=metric_window,
            drift_detector=drift_detector,
            drift_reset=drift_reset,
            promotion_window=promotion_window,
            promotion_min_positives=promotion_min_positives,
            shadow_predictions=shadow_predictions,
        )
        self.events = 0
        self.learned = 0
        self.replayed_events = 0
        self.offset_gaps = 0
        self.last_offset = -1  # last events offset handled
        self.last_label_offset = -1  # last labels offset handled
        self.snapshot_offset = -1  # events offset of the last durable snapshot
        self.snapshot_ms: int | None = None  # when it was written (epoch ms)
        self.restored_offset: int | None = None  # events offset of the snapshot it came from
        self.rollbacks = 0
        self.snapshot_bytes = 0  # size of the last snapshot's pickle
        # Records of this partition sent to the dead-letter topic, by stage: in the
        # snapshot, so the count survives a restart (records replayed after the
        # snapshot are dead-lettered, and counted, again).
        self.dead_letters: dict[str, int] = {}
        # Ranges deliberately not learned: a rollback to a version (riverbed rollback).
        self.skipped: list[dict[str, Any]] = []
        # Learns undone by a repair (non-finite state found later than the learn): the
        # processor dead-letters them. Pickled, so a crash does not lose them.
        self.culprits: list[Culprit] = []
        self._init_journal(None)

    def __getstate__(self) -> dict[str, Any]:
        # Learned state only: settings come from the worker that installs the learner
        # (Learners.install), and the undo journal from the process that made it.
        state = self.__dict__.copy()
        for name in _NOT_PICKLED:
            state.pop(name, None)
        return state

    @property
    def settings(self) -> LearnerSettings:
        """The settings this learner runs with."""
        return LearnerSettings(
            pending_max=self.pending_max,
            pending_ttl_ms=self.pending_ttl_ms,
            pending_max_bytes=self.pending_max_bytes,
            max_features=self.max_features,
            drift_detector=self.drift_detector,
            drift_reset=self.drift_reset,
            mapping=self.mapping,
            label_default=self.label_default,
            label_default_after_ms=self.label_default_after_ms,
            metric=self.metric_name,
            metric_window=self.metric_window,
            lineup=self._lineup_specs,
            shadow_predictions=self.shadow_predictions,
            promotion_window=self.promotion_window,
            promotion_min_positives=self.promotion_min_positives,
            threshold=self.threshold,
            label_maturity=self.label_maturity,
            min_labels=self.min_labels,
        )

    def configure(self, settings: LearnerSettings) -> None:
        """Apply the worker's settings to a restored learner (a snapshot carries the
        settings of the worker that wrote it, which never count). A different drift
        detector starts fresh; the same one keeps its window.

        Examples
        --------
        >>> from riverbed import models
        >>> learner = PartitionLearner(models.spec("logreg"), partition=0)
        >>> learner.configure(LearnerSettings(pending_max=5, drift_detector="kswin",
        ...                                   drift_reset=True))
        >>> type(learner.detector).__name__, learner.drift_reset, learner.pending_max
        ('KSWIN', True, 5)

        """
        self.pending_max = settings.pending_max
        self.pending_ttl_ms = settings.pending_ttl_ms
        self.pending_max_bytes = settings.pending_max_bytes
        self.max_features = settings.max_features
        self.drift_reset = settings.drift_reset
        self.mapping = settings.mapping
        self.label_default = settings.label_default
        self.label_default_after_ms = settings.label_default_after_ms
        self.promotion_min_positives = settings.promotion_min_positives
        self.label_maturity = settings.label_maturity
        self.min_labels = settings.min_labels
        if threshold_differs(self, settings.threshold):
            self.decider = new_decider(settings.threshold, settings.metric_window, self.task)
        self.threshold = settings.threshold
        if settings.metric != self.metric_name:
            # A snapshot made with another RIVERBED_METRIC: the chosen one starts now.
            logger.warning(
                "partition %d: the metric is now %s (the snapshot's was %s); it starts "
                "from this point",
                self.partition,
                settings.metric or "the default",
                self.metric_name or "the default",
            )
            self.metric_name = settings.metric
            self.metric = quality.choose(settings.metric, self.task).make()
            self.rolling = quality.choose(settings.metric, self.task).rolling(
                settings.metric_window
            )
        elif metric_differs(self, settings.metric, settings.metric_window):
            # The window is a setting, not state: a snapshot keeps the rolling metric
            # itself, and only a different window (or an older kind) starts a new one.
            self.rolling = quality.choose(settings.metric, self.task).rolling(
                settings.metric_window
            )
        self.metric_window = settings.metric_window
        self.shadow_predictions = settings.shadow_predictions
        self._set_candidates(settings)
        if settings.drift_detector != self.drift_detector:
            self.drift_detector = settings.drift_detector
            detector = settings.drift_detector
            self.detector = make_detector(detector) if self.task != "anomaly" else None
            self._error_sum, self._error_n = 0.0, 0

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A snapshot written by an earlier version lacks attributes added since.
        defaults = {
            **LearnerSettings().fields(),
            "_error_sum": 0.0,
            "_error_n": 0,
            "rollbacks": 0,
            "snapshot_bytes": 0,
            "dead_letters": {},
            "culprits": [],
            "pending_bytes": 0,
            "features": set(),
            "features_dropped": 0,
            "_warned": set(),
            "metric_name": "",
            "rolling": None,
            "challengers": [],
            "duels": [],
            "_since_promotion": 0,
            "promotions": 0,
            "shadows": [],
            "learned_by_model": state.get("learned", 0),
            "decider": None,
            "_kafka_clock": True,
            "pinned": False,
            "operations": 0,
            "skipped": [],
            "imported": set(),
        }
        self.__dict__.update({**defaults, **state})
        self.rolling = quality.migrate_rolling(self.rolling)
        for outcome in (LabelOutcome.MISROUTED, LabelOutcome.DEFAULTED):
            self.labels.setdefault(outcome, 0)
        self._init_journal(None)
        if "lineup" not in state:
            self.lineup = (self.spec.name, *(c.name for c in self.challengers))
        self._lineup_specs = (self.spec, *(c.spec for c in self.challengers))
        for waiting in self.pending.values():
            if not hasattr(waiting, "size"):  # written before pending bytes were counted
                waiting.size = 0
            if not hasattr(waiting, "shadow"):
                waiting.shadow = None
            if not hasattr(waiting, "label"):
                waiting.label = None

    def rebuilt(self) -> PartitionLearner:
        """The same learner, with the per-event objects' attributes inline again.

        A snapshot pickles this learner, which on CPython 3.11 leaves every one of its
        objects slower to use (``app/learning/inline.py``); the checkpoint carries on with this
        copy instead. The model, metric and drift detector are copied; the buffers
        (pending events, early labels, counters) are handed over, not copied: this
        learner is not used again.
        """
        new = object.__new__(PartitionLearner)
        for name, value in self.__dict__.items():
            hot = name in HOT and value is not None
            setattr(new, name, inline_copy(value) if hot else value)
        new.challengers = []
        for c in self.challengers:
            copy = object.__new__(Candidate)
            for name, value in c.__dict__.items():
                setattr(
                    copy, name, inline_copy(value) if name in HOT and value is not None else value
                )
            new.challengers.append(copy)
        return new

    # -- prediction ------------------------------------------------------------------
    def predict_one(
        self, x: dict[str, Value], model: str | None = None
    ) -> tuple[Any, dict[Any, float] | None]:
        """What the stream would predict for ``x`` now, changing nothing (``POST
        /predict``): the same feature cap, the same model, no learning, no counting.
        With ``model``, what that candidate (a challenger: shadow scoring on demand)
        would predict; a KeyError names the candidates when there is no such one.

        Examples
        --------
        >>> from riverbed import models
        >>> learner = PartitionLearner(models.spec("logreg"), partition=0)
        >>> learner.predict_one({"f": 1.0}), learner.events, learner.features
        ((False, {False: 0.5, True: 0.5}), 0, set())

        """
        if not self.features.issuperset(x):
            room = self.max_features - len(self.features)
            kept: dict[str, Value] = {}
            for name, v in x.items():
                if name in self.features:
                    kept[name] = v
                elif room > 0:
                    room -= 1
                    kept[name] = v
            x = kept
        holder = self if model is None else self.candidate(model)
        y_pred, proba = predict_with(holder, x)
        if holder.decider is not None and proba is not None:
            y_pred = holder.decider.decide(proba, record=False).y_pred
        return y_pred, proba

    # The champion's prediction: the shared function itself, so no extra call frame.
    _predict = predict_with

    def _check_label(self, y: Value) -> None:
        if self.task == "regression" and (isinstance(y, bool) or not isinstance(y, int | float)):
            msg = f'"y" must be a number for the regression model {self.spec.name!r}, got {y!r}'
            raise InvalidRecord(msg)

    def _warn_once(self, what: str, msg: str, *args: Any) -> None:
        if what not in self._warned:
            self._warned.add(what)
            logger.warning("partition %d: " + msg, self.partition, *args)

    def _known_features(self, x: dict[str, Value]) -> dict[str, Value]:
        """``x`` with new names past ``max_features`` left out (and counted)."""
        features = self.features
        room = self.max_features - len(features)
        kept: dict[str, Value] = {}
        for name, v in x.items():
            if name in features:
                kept[name] = v
            elif room > 0:
                features.add(name)
                room -= 1
                kept[name] = v
            else:
                self.features_dropped += 1
        if len(kept) < len(x):
            self._warn_once(
                "features",
                "%d distinct feature names reached RIVERBED_MAX_FEATURES; values of new "
                "names are dropped from here on (riverbed_features_dropped counts them)",
                self.max_features,
            )
        return kept

    # -- offsets -----------------------------------------------------------------------
    def redelivered(self, offset: int, *, label: bool = False) -> bool:
        """Whether ``offset`` was handled before (a re-delivery after a restore); counted.

        Examples
        --------
        >>> from riverbed import models
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
        self.journal.append(("sl" if label else "s", None, offset, 0, None, 0))

    # -- the two entry points --------------------------------------------------------
    def process_event(
        self, event: Event, *, offset: int, ts_ms: int, source: Any = None, size: int = 0
    ) -> dict[str, Any] | None:
        """Predict, then learn when the label is inline; the prediction record's fields.

        Returns None for an offset this learner already handled (a re-delivery), which
        is neither predicted nor learned again. ``source``, the record's ``(value, key,
        headers)``, is kept until the next checkpoint (a replay decodes the value again;
        a culprit's dead letter carries them); ``size`` (its bytes) counts against
        ``pending_max_bytes`` while the event waits for a label.
        Raises :class:`~riverbed.exceptions.ModelError` when the model raises or learning
        leaves its state non-finite; the model is then as it was before the record.
        """
        if (
            event.y is not None
            and offset == self.last_offset + 1
            and not self.challengers
            and self.decider is None
            and not self.label_maturity
            and not self.label_default_after_ms
            and self.task == "classification"
            and self._argmax_proba
            and self._has_proba
        ):
            # The common case, in fewer steps (_plain_event): what the rest does for it.
            return self._plain_event(event, offset, ts_ms, source, size)
        return self._any_event(event, offset, ts_ms, source, size)

    def _any_event(
        self, event: Event, offset: int, ts_ms: int, source: Any, size: int
    ) -> dict[str, Any] | None:
        """:meth:`process_event`, for every event and setting."""
        if offset != self.last_offset + 1 and self._redelivered_or_gap(offset):
            return None
        mature_later = self.label_maturity and self.task != "anomaly"
        if mature_later:
            # Stream time: the event's own time where the record has one (so a replay
            # of history matures as the live stream did), else its Kafka timestamp.
            self._kafka_clock = event.ts is None
            ts_ms = ts_ms if event.ts is None else int(event.ts)
        if self.label_default_after_ms and self.pending:
            # Labels by absence come due before this event is predicted, as a label
            # record would have: the default "arrived" when the wait ran out. With
            # maturity, every event due by now (inclusive, as River's simulate_qa).
            self._default_labels(ts_ms - self.label_default_after_ms, inclusive=mature_later)
        x = event.x
        if not self.features.issuperset(x):
            x = self._known_features(x)
        y_pred, proba, shadow = self._predict_event(event, x, offset)
        by = self.spec.name  # the champion that predicts (a promotion may follow the learn)
        decider = self.decider
        if decider is not None and proba is not None:
            metric_pred: Any = decider.decide(proba)
            y_pred = metric_pred.y_pred
        else:
            metric_pred = y_pred if self._metric_wants_label or proba is None else proba
        y = event.y
        joined_early = False
        if y is not None:
            self._check_label(y)
        elif self.early:
            early = self.early.pop(event.id, None)
            if early is not None:
                y, joined_early = early[0], True
        # With maturity the label waits with its event until the event is mature.
        learns = self.task == "anomaly" or (y is not None and not mature_later)
        if learns:
            self._learn_event(x, y, metric_pred, shadow)
        if joined_early and not mature_later:
            # Remembered so a duplicate label is "late". Inline-labelled ids are not
            # remembered (a snapshot would carry them all): a stray label for one waits
            # as early and ends an orphan; either way it is never learned twice.
            self._finish(event.id, learned=True)
        if y is None or mature_later:
            self._wait_for_label(event.id, x, metric_pred, ts_ms, size, shadow, y)
        if y is not None and learns:
            self._watch(y, metric_pred, topic="events", offset=offset)
            if shadow is not None:
                self._challengers_watch(
                    y, shadow, topic="events", offset=offset, champion_pred=metric_pred
                )
        if joined_early:
            self.labels[LabelOutcome.JOINED] += 1
        self.events += 1
        self.last_offset = offset
        # With the record's bytes at hand, the journal keeps them and not the decoded
        # event: bytes are not tracked by the garbage collector, while ~10,000 live
        # feature dicts between checkpoints cost 1.8 µs a record in collections.
        self.journal.append(("e", None if source else event, offset, ts_ms, source, size))
        out: dict[str, Any] = {"id": event.id, "y_pred": y_pred}
        if proba is not None:
            out["proba"] = proba
        if mature_later or decider is not None:
            self._decision_fields(out, y_pred)
        if event.y is not None:
            out["y"] = event.y
        out["model"] = by
        return out

    def _plain_event(
        self, event: Event, offset: int, ts_ms: int, source: Any, size: int
    ) -> dict[str, Any]:
        """:meth:`_any_event` for the common case, step for step, with its calls inline: a
        classifier that predicts the argmax of its probabilities, alone (no challenger),
        the label inline, the next offset, no threshold, maturity or label default."""
        x = event.x
        if not self.features.issuperset(x):
            x = self._known_features(x)
        try:  # _predict_event and predict_with, for a classifier with probabilities
            try:
                proba = self.model.predict_proba_one(x)
            except NotImplementedError:
                self._has_proba = False
                y_pred, proba = self.model.predict_one(x), None
            else:
                y_pred = max(proba, key=proba.get) if proba else None
            if not finite_prediction(y_pred, proba) and self.poisoned() and self.repair():
                y_pred, proba = self._predict(x)
        except Exception as exc:
            raise ModelError(PREDICT, exc) from exc
        by = self.spec.name
        metric_pred = y_pred if self._metric_wants_label or proba is None else proba
        y = event.y
        try:  # _learn_event
            if metric_pred is not None and metric_pred != {}:
                self.metric.update(y, metric_pred)
                rolling = self.rolling
                if rolling is not None:
                    rolling.update(y, metric_pred)
            self.model.learn_one(x, y)
        except Exception as exc:
            self._undo_last()
            raise ModelError(LEARN, exc) from exc
        big = event.huge  # huge(x), found while decoding (None: not decoded here)
        if big is None or x is not event.x:
            big = huge(x)
        if (big or (type(y) is float and not -HUGE < y < HUGE)) and self.poisoned():
            self._undo_last()
            raise ModelError(LEARN, NonFiniteState(NONFINITE_REASON))
        self.learned += 1
        self.learned_by_model += 1
        detector = self.detector  # _watch, up to a detection
        if detector is not None and metric_pred is not None and metric_pred != {}:
            decided = decision_of(metric_pred) if isinstance(metric_pred, dict) else metric_pred
            if decided is not None:
                error = float(y != decided)
                self._error_sum += error
                self._error_n += 1
                detector.update(error)
                if detector.drift_detected:
                    self._drift_found(self, topic="events", offset=offset)
        self.events += 1
        self.last_offset = offset
        self.journal.append(("e", None if source else event, offset, ts_ms, source, size))
        if proba is None:
            return {"id": event.id, "y_pred": y_pred, "y": y, "model": by}
        return {"id": event.id, "y_pred": y_pred, "proba": proba, "y": y, "model": by}

    def _decision_fields(self, out: dict[str, Any], y_pred: Any) -> None:
        """Under RIVERBED_THRESHOLD or RIVERBED_LABEL_MATURITY: the threshold decided
        with, and no decision while warming (RIVERBED_MIN_LABELS: too few labels
        learned, or no threshold yet, for a decision anyone should act on; the
        probabilities are still given)."""
        if self.decider is not None:
            out["threshold"] = shown(self.decider.value)
        if self.learned_by_model < self.min_labels or y_pred is None:
            out["y_pred"] = None
            out["warming"] = True

    def _redelivered_or_gap(self, offset: int) -> bool:
        """An events offset that does not follow the last: True for one handled before
        (a re-delivery after a restore, counted); a gap is counted and logged."""
        if offset <= self.last_offset:
            self.replayed_events += 1
            return True
        if self.last_offset >= 0:
            # Legitimate with transactional producers (markers) and compaction; anything
            # else is a skipped record, so it is counted and logged.
            self.offset_gaps += 1
            logger.info(
                "partition %d: events offset jumped from %d to %d",
                self.partition,
                self.last_offset,
                offset,
            )
        return False

    def _predict_event(
        self, event: Event, x: dict[str, Value], offset: int
    ) -> tuple[Any, dict[Any, float] | None, tuple[Any, ...] | None]:
        """The champion's ``(y_pred, proba)`` of ``x`` and the challengers' predictions."""
        try:
            y_pred, proba = self._predict(x)
            # A non-finite prediction is either this x's doing or a poisoned model: a
            # state walk tells, and a poisoned model is repaired before it answers.
            if not finite_prediction(y_pred, proba) and self.poisoned() and self.repair():
                y_pred, proba = self._predict(x)
            shadow = self._challengers_predict(event, x, offset) if self.challengers else None
        except Exception as exc:
            raise ModelError(PREDICT, exc) from exc
        return y_pred, proba, shadow

    def _learn_event(
        self, x: dict[str, Value], y: Value | None, metric_pred: Any, shadow: tuple[Any, ...] | None
    ) -> None:
        """Score the prediction and learn the event, every candidate; undone when a model
        raises or its state turns non-finite."""
        try:
            # Like progressive_val_score: no metric update for a model with no opinion.
            if y is not None and metric_pred is not None and metric_pred != {}:
                if self.decider is not None:
                    self._score(y, metric_pred)
                else:
                    self.metric.update(y, metric_pred)  # _score, inline on the hot path
                    if self.rolling is not None:
                        self.rolling.update(y, metric_pred)
            if self.task == "anomaly":
                self.model.learn_one(x)  # unsupervised: every event teaches it
            else:
                self.model.learn_one(x, y)
            if shadow is not None:
                self._challengers_learn(x, y, shadow)
        except Exception as exc:
            self._undo_last()
            raise ModelError(LEARN, exc) from exc
        if (huge(x) or huge_value(y)) and self.poisoned():
            self._undo_last()
            raise ModelError(LEARN, NonFiniteState(NONFINITE_REASON))
        self.learned += 1
        self.learned_by_model += 1

    def take_outputs(self) -> LearnerOutputs | None:
        """Hand over what was made besides predictions since the last call (None: nothing).

        The caller publishes them; until then a culprit stays in the learner's state (a
        snapshot carries it, so a crash does not lose its dead letter).

        Examples
        --------
        >>> from riverbed import models
        >>> learner = PartitionLearner(models.spec("logreg"), partition=0)
        >>> learner.take_outputs() is None
        True

        """
        if not (self.drift_events or self.shadows or self.culprits):
            return None
        out = LearnerOutputs(self.drift_events, self.shadows, self.culprits)
        self.drift_events, self.shadows, self.culprits = [], [], []
        return out

    def rolled_back_to(
        self, old: PartitionLearner, *, version: int, by: str, replayed: bool
    ) -> tuple[PartitionLearner, dict[str, Any]]:
        """The learner that carries on after ``riverbed rollback``: ``old`` (version
        ``version``'s learner, whole: its candidates, metrics, buffers and counters) at
        this learner's offsets, so the records between them are deliberately not
        learned; with ``replayed``, ``old`` has re-learned them already (its offsets
        are this learner's). Returns it and the operation's record (the skipped range
        with it), which it keeps for ``/models``.
        """
        skipped = None
        if not replayed:
            skipped = {
                "events": [old.last_offset + 1, self.last_offset],
                "labels": [old.last_label_offset + 1, self.last_label_offset],
            }
        old.last_offset, old.last_label_offset = self.last_offset, self.last_label_offset
        old.snapshot_offset, old.snapshot_ms = self.snapshot_offset, self.snapshot_ms
        old.restored_offset = self.restored_offset
        old.skipped = [*self.skipped, *([{"version": version, **skipped}] if skipped else [])]
        old.dead_letters = self.dead_letters  # those were sent: a rollback does not unsend them
        old.operations = max(old.operations, self.operations)
        old.drift_events = self.drift_events
        old.configure(self.settings)
        record = old.audit(
            "rollback", by=by, changed=True, version=version, replayed=replayed,
            skipped=skipped, champion=old.spec.name,
        )  # fmt: skip
        old.rebase()  # an undo rebuilds from here, not from the version's offsets
        return old, record

    def version_summary(self) -> dict[str, Any]:
        """What a snapshot's manifest says of the learner (``riverbed versions``): its
        candidates, the champion, whether it is pinned, and each candidate's metrics
        and labels learned then.

        Examples
        --------
        >>> from riverbed import models
        >>> learner = PartitionLearner(models.spec("logreg"), partition=0)
        >>> learner.version_summary()["candidates"]["logreg"]["metric"]
        {'name': 'Accuracy', 'value': None}

        """
        return {
            "model": ",".join(self.lineup),
            "champion": self.spec.name,
            "pinned": self.pinned,
            "promotions": self.promotions,
            "operations": self.operations,
            "candidates": {
                h.spec.name: describe_quality(h, self.metric_window)
                for h in (self, *self.challengers)
            },
        }

    # -- reporting -------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """The partition's entry of ``/models``."""
        mine = describe_quality(self, self.metric_window)
        value, rolling = mine["metric"]["value"], mine["rolling"]
        return {
            "events": self.events,
            "learned": self.learned,
            "pending": len(self.pending),
            "early_labels": len(self.early),
            "labels": dict(self.labels),
            "expired": self.expired,
            "replayed": self.replayed_events,
            "offset_gaps": self.offset_gaps,
            "pending_bytes": self.pending_bytes,
            "features": len(self.features),
            "features_dropped": self.features_dropped,
            "rollbacks": self.rollbacks,
            "snapshot_bytes": self.snapshot_bytes,
            "dead_letters": dict(self.dead_letters),
            "drift_detector": self.drift_detector,
            "metric": {"name": quality.metric_label(self.metric), "value": value},
            "rolling": rolling,
            "champion": self.spec.name,
            "label_maturity": self.label_maturity,
            "warming": (self.label_maturity or self.decider is not None)
            and self.learned_by_model < self.min_labels,
            "candidates": {
                h.spec.name: describe_quality(h, self.metric_window)
                for h in (self, *self.challengers)
            },
            "promotions": self.promotions,
            "pinned": self.pinned,
            "skipped": self.skipped,
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
