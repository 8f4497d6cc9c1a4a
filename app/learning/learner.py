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

With label maturity (``label_maturity``, RIVERBED_LABEL_MATURITY) every label waits
with its event, inline, early or on time, until the event is ``label_default_after_ms``
of stream time old, and is learned then, in event order, or the default is: River's
``progressive_val_score`` with ``moment`` and ``delay``. Under RIVERBED_THRESHOLD a
binary classifier's decision is its :class:`~riverbed.learning.threshold.Threshold`'s,
and what a candidate remembers of an event is a :class:`~riverbed.learning.promotion.Decided`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import pickle
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from river import base, drift

from riverbed.exceptions import InvalidRecord, ModelError
from riverbed.learning import quality
from riverbed.learning.guard import finite_prediction, huge, huge_value, nonfinite
from riverbed.learning.inline import inline_copy
from riverbed.learning.judgment import PairedTest
from riverbed.learning.promotion import SIGNIFICANCE, Decided, Duel, decision_of
from riverbed.learning.threshold import Threshold, parse_threshold
from riverbed.models import ModelSpec, final_step
from riverbed.records import Event, FieldMapping, Label, Value

__all__ = [
    "DETECTORS",
    "LEARN",
    "PREDICT",
    "LabelOutcome",
    "LearnerSettings",
    "PartitionLearner",
    "make_detector",
]

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
    # Its event waits in another partition of this worker: produced with a different
    # partitioner or key than the event; it can never join (never learned).
    MISROUTED = "misrouted"
    # Not a label record: an event learned with RIVERBED_LABEL_DEFAULT because no label
    # came within RIVERBED_LABEL_DEFAULT_AFTER (labels by absence).
    DEFAULTED = "defaulted"
    REPLAYED = "replayed"  # offset already handled (a re-delivery after a rebalance)


@dataclass(slots=True)
class _Pending:
    x: dict[str, Value] | None  # None for anomaly models: they learned at event time
    y_pred: Any  # what the metric is updated with: label, proba or score
    ts_ms: int
    size: int = 0  # bytes of the event record (counted against pending_max_bytes)
    shadow: tuple[Any, ...] | None = None  # the challengers' y_pred, in their order
    # RIVERBED_LABEL_MATURITY: the label that came for it (inline, early or on time),
    # learned when the event is mature; None: none yet (the default applies then).
    label: Value | None = None


@dataclass(frozen=True)
class LearnerSettings:
    """A partition learner's settings (``RIVERBED_PENDING_*``, ``RIVERBED_MAX_FEATURES``,
    ``RIVERBED_DRIFT_*``): the worker's, never a snapshot's."""

    pending_max: int = 100_000
    pending_ttl_ms: int = 3_600_000
    pending_max_bytes: int = 64 * 1024 * 1024
    max_features: int = 10_000
    drift_detector: str = "adwin"
    drift_reset: bool = False
    mapping: FieldMapping = dataclasses.field(
        default_factory=FieldMapping
    )  # how the journal's record bytes decode again
    label_default: Value | None = None  # labels by absence: the label...
    label_default_after_ms: int = 0  # ...an event still waiting after this long gets
    metric: str = ""  # RIVERBED_METRIC ("": the task's default)
    metric_window: int = 1000  # RIVERBED_METRIC_WINDOW: the rolling metric's window; 0: none
    # RIVERBED_MODEL's candidates, the first the champion at start; the others predict
    # every event and learn every label too. Empty: the learner's spec alone.
    lineup: tuple[ModelSpec, ...] = ()
    shadow_predictions: bool = False  # RIVERBED_SHADOW_PREDICTIONS: keep their predictions
    promotion_window: int = 0  # RIVERBED_PROMOTION=auto: its window; 0: no promotion
    promotion_min_positives: int = 30  # RIVERBED_PROMOTION_MIN_POSITIVES
    threshold: str = ""  # RIVERBED_THRESHOLD ("": the argmax)
    label_maturity: bool = False  # RIVERBED_LABEL_MATURITY (resolved: on or off)
    min_labels: int = 100  # RIVERBED_MIN_LABELS: "warming" until the champion learned them

    def fields(self) -> dict[str, Any]:
        """The settings as keyword arguments (shallow: the mapping stays an object)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(slots=True)
class Culprit:
    """A record whose learn was undone after the fact: it left the state non-finite."""

    topic: str  # "events" or "labels"
    offset: int
    source: Any  # what the processor passed along: (value, key, headers) of the record


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
    "_base",
    "_journal",
)


def _skipped(entry: tuple[Any, ...]) -> tuple[Any, ...]:
    """A journal entry replayed as a dead letter."""
    kind, _record, offset, _ts, _source, _size = entry
    return ("sl" if kind == "l" else "s", None, offset, 0, None, 0)


NONFINITE_REASON = "learning it left the model's state non-finite (inf or nan)"


class NonFiniteState(ArithmeticError):
    """A learn left the model's state non-finite; it was undone."""


# The objects a record's handling touches, copied inline after a snapshot's pickle.
HOT = frozenset(("model", "metric", "rolling", "detector"))
# What a candidate model is made of: a challenger (Candidate) holds these, and so does
# the learner for its champion. A promotion swaps them between the two.
MODEL_FIELDS = (
    "spec",
    "model",
    "metric",
    "rolling",
    "detector",
    "drifts",
    "_error_sum",
    "_error_n",
    "_metric_wants_label",
    "_argmax_proba",
    "_has_proba",
    "learned_by_model",
    "decider",
)


class ModelHolder:
    """What a candidate model is made of (``MODEL_FIELDS``): a challenger
    (:class:`Candidate`) holds these, and the learner holds its champion's."""

    spec: ModelSpec
    model: Any
    metric: Any
    rolling: Any
    detector: Any
    drifts: int
    _error_sum: float
    _error_n: int
    _metric_wants_label: bool
    _argmax_proba: bool
    _has_proba: bool
    learned_by_model: int
    decider: Threshold | None  # RIVERBED_THRESHOLD's rule, for a binary classifier


def _decider(threshold: str, window: int, task: str) -> Threshold | None:
    """A fresh decision rule for RIVERBED_THRESHOLD (None: the argmax)."""
    parsed = parse_threshold(threshold) if task == "classification" else None
    return Threshold(*parsed, window=window) if parsed else None


def _model_state(
    holder: ModelHolder,
    spec: ModelSpec,
    metric: str,
    window: int,
    detector: str,
    threshold: str = "",
) -> None:
    """Give ``holder`` a fresh model of ``spec`` and its metric, window and detector."""
    holder.spec = spec
    holder.model = spec.build()
    choice = quality.choose(metric, spec.task)
    holder.metric = choice.make()
    holder.rolling = choice.rolling(window)
    holder.decider = _decider(threshold, window, spec.task)
    holder.detector = make_detector(detector) if spec.task != "anomaly" else None
    holder.drifts = 0
    holder._error_sum = 0.0  # prequential error since the last drift detection
    holder._error_n = 0
    # Proba-based metrics (ROCAUC, LogLoss) get proba/scores, the rest get labels,
    # the same choice progressive_val_score makes with `metric.requires_labels`.
    holder._metric_wants_label = bool(getattr(holder.metric, "requires_labels", True))
    # River's default Classifier.predict_one is argmax(predict_proba_one): when the
    # final estimator keeps that default, derive y_pred from the proba we need anyway
    # instead of running the whole pipeline twice. Same result, half the work.
    est = final_step(holder.model)
    holder._argmax_proba = getattr(type(est), "predict_one", None) is base.Classifier.predict_one
    holder._has_proba = True
    holder.learned_by_model = 0


def _predict_with(holder: ModelHolder, x: dict[str, Value]) -> tuple[Any, dict[Any, float] | None]:
    """``(y_pred, proba)`` of ``holder``'s model (the learner's champion, or a challenger)."""
    task = holder.spec.task
    if task == "classification":
        if holder._has_proba:
            try:
                proba = holder.model.predict_proba_one(x)
            except NotImplementedError:
                holder._has_proba = False
            else:
                if holder._argmax_proba:
                    return (max(proba, key=proba.get) if proba else None), proba
                return holder.model.predict_one(x), proba
        return holder.model.predict_one(x), None
    if task == "regression":
        return holder.model.predict_one(x), None
    return holder.model.score_one(x), None


def _quality(holder: ModelHolder, window: int) -> dict[str, Any]:
    """A candidate's entry of ``/models``: metric, rolling metric, learned, drifts,
    and its decision threshold (RIVERBED_THRESHOLD) with what it realised."""
    name = quality.metric_label(holder.metric)
    rolling = None
    if holder.rolling is not None:
        value = quality.metric_value(holder.rolling)
        rolling = {"name": name, "value": value, "window": window}
    out = {
        "metric": {"name": name, "value": quality.metric_value(holder.metric)},
        "rolling": rolling,
        "learned": holder.learned_by_model,
        "drifts": holder.drifts,
    }
    decider = getattr(holder, "decider", None)
    if decider is not None:
        out["threshold"] = decider.describe()
    return out


class Candidate(ModelHolder):
    """A challenger of the partition's champion: it predicts every event and learns
    every label exactly as the champion does, with its own metric, rolling window and
    drift detector; only the champion's predictions are published."""

    def __init__(
        self, spec: ModelSpec, *, metric: str, window: int, detector: str, threshold: str = ""
    ) -> None:
        _model_state(self, spec, metric, window, detector, threshold)

    @property
    def name(self) -> str:
        return str(self.spec.name)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"learned_by_model": 0, "decider": None, **state})


def _metric_differs(holder: ModelHolder, metric: str, window: int) -> bool:
    """Whether ``holder``'s metric is not RIVERBED_METRIC's ``metric`` (or its window)."""
    fresh = quality.choose(metric, holder.spec.task).make()
    mine = holder.metric
    rolling_window = getattr(holder.rolling, "window_size", 0) if holder.rolling else 0
    return (
        type(mine) is not type(fresh)
        or quality.metric_label(mine) != quality.metric_label(fresh)
        or rolling_window != window
    )


def _shown(threshold: float | None) -> float | None:
    """A threshold for JSON (an infinite one, "alert on everything/nothing", as None)."""
    return threshold if threshold is None or math.isfinite(threshold) else None


def _same_duel(duel: Any, fresh: Duel) -> bool:
    """Whether a snapshot's duel is judged as ``fresh`` is (window, metric, minimum)."""
    return (
        getattr(duel, "choice", None) == fresh.choice
        and getattr(duel, "window", None) == fresh.window
        and getattr(duel, "min_positives", None) == fresh.min_positives
    )


def _threshold_differs(holder: ModelHolder, threshold: str) -> bool:
    """Whether ``holder``'s decision rule is not RIVERBED_THRESHOLD's."""
    parsed = parse_threshold(threshold) if holder.spec.task == "classification" else None
    mine = holder.decider
    return (mine.rule, mine.target) != parsed if mine is not None else parsed is not None


class PartitionLearner(ModelHolder):
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
        challengers = [c for c in lineup if c.name != spec.name]
        self.threshold = threshold
        self.label_maturity = label_maturity
        self.min_labels = min_labels
        self._kafka_clock = True  # the last event had no time of its own (maturity)
        self.mapping = mapping or FieldMapping()
        self.label_default = label_default
        self.label_default_after_ms = label_default_after_ms
        self.partition = partition
        self.pending_max = pending_max
        self.pending_max_bytes = pending_max_bytes
        self.pending_bytes = 0
        self.max_features = max_features
        self.features: set[str] = set()  # names the model has been given
        self.features_dropped = 0  # feature values left out: new names past the cap
        self._warned: set[str] = set()
        self.pending_ttl_ms = pending_ttl_ms
        self.metric_name = metric  # "" : the task's default
        self.metric_window = metric_window
        self.drift_detector = drift_detector
        self.drift_reset = drift_reset
        _model_state(self, spec, metric, metric_window, drift_detector, threshold)  # champion's
        self.challengers: list[Candidate] = [
            Candidate(
                c, metric=metric, window=metric_window, detector=drift_detector, threshold=threshold
            )
            for c in challengers
        ]
        # The candidates' names as configured (RIVERBED_MODEL): what snapshots are of.
        self.lineup = (spec.name, *(c.name for c in challengers))
        self._lineup_specs = (spec, *challengers)
        # Auto promotion (RIVERBED_PROMOTION=auto: the window; 0: never): each challenger's
        # duel with the champion over the last promotion_window labelled events.
        self.promotion_window = promotion_window
        self.promotion_min_positives = promotion_min_positives
        self.duels = [self._new_duel() for _ in challengers]
        self._since_promotion = 0
        self.promotions = 0
        self.shadow_predictions = shadow_predictions
        # Challengers' predictions not yet published (RIVERBED_SHADOW_PREDICTIONS).
        self.shadows: list[dict[str, Any]] = []
        # Drift events not yet published; the processor drains them to the metrics topic.
        self.drift_events: list[dict[str, Any]] = []
        self.task = spec.task
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
            LabelOutcome.MISROUTED: 0,
            LabelOutcome.DEFAULTED: 0,
        }
        self.replayed_events = 0
        self.offset_gaps = 0
        self.expired = 0
        self.last_offset = -1  # last events offset handled
        self.last_label_offset = -1  # last labels offset handled
        self.snapshot_offset = -1  # events offset of the last durable snapshot
        self.snapshot_ms: int | None = None  # when it was written (epoch ms)
        self.restored_offset: int | None = None  # events offset of the snapshot it came from
        self.rollbacks = 0
        self.snapshot_bytes = 0  # size of the last snapshot's pickle
        # Learns undone by a repair (non-finite state found later than the learn): the
        # processor dead-letters them. Pickled, so a crash does not lose them.
        self.culprits: list[Culprit] = []
        self._init_journal(None)

    # -- undoing a learn -------------------------------------------------------------
    # A learn that raises half-way, or leaves the model's state non-finite, must not
    # change the model. Copying the model before every learn would cost ~40x the learn
    # (1 ms for logreg). Instead the learner keeps what it needs to rebuild itself
    # exactly: the pickled state of its last checkpoint (``_base``; None: fresh) and
    # the records handled since, in order (``_journal``). Undoing a learn rebuilds from
    # the base and replays the journal without it: the same records in the same order
    # through the same deterministic code, so the result is the state the partition
    # would have had if the record had been a dead letter. It costs a list append a
    # record; a rebuild (rare) costs a replay of at most one checkpoint interval.
    def _init_journal(self, base: bytes | None) -> None:
        self._base = base
        self._journal: list[tuple[Any, ...]] = []

    def __getstate__(self) -> dict[str, Any]:
        # Learned state only: settings come from the worker that installs the learner
        # (Learners.install), and the undo journal from the process that made it.
        state = self.__dict__.copy()
        for name in _NOT_PICKLED:
            state.pop(name, None)
        return state

    def checkpointed(self, blob: bytes, keep: list[tuple[Any, ...]] | None = None) -> None:
        """This learner's state is ``blob`` (the pickle a snapshot just captured), plus
        the journal entries ``keep`` (handled since the capture: a forked one)."""
        self._init_journal(blob)
        if keep:
            self._journal.extend(keep)
        self.snapshot_bytes = len(blob)

    def _rebuilt_from_base(self) -> PartitionLearner:
        if self._base is not None:
            restored: PartitionLearner = pickle.loads(self._base)  # noqa: S301 - our own bytes
        else:
            restored = PartitionLearner(self.spec, partition=self.partition)
        restored.configure(self.settings)
        restored._init_journal(self._base)
        return restored

    def _replay(
        self, entries: list[tuple[Any, ...]], *, check: bool, failed: list[int] | None = None
    ) -> int | None:
        """Apply journal entries; with ``check``, the index of the first whose learn
        left the state non-finite (it is not applied: the caller rebuilds)."""
        for i, (kind, kept, offset, ts_ms, source, size) in enumerate(entries):
            learned = self.learned
            record = kept
            if kept is None and source:  # decoded again from its bytes, as at first
                raw, key = source[0], source[1]
                mapping = self.mapping
                decode = mapping.event_decoder() if kind == "e" else mapping.label_decoder()
                record = decode(raw, key, len(raw))
            try:
                if kind == "e":
                    self.process_event(record, offset=offset, ts_ms=ts_ms, source=source, size=size)
                elif kind == "l":
                    self.process_label(record, offset=offset, ts_ms=ts_ms, source=source)
                else:
                    self.skip(offset, label=kind == "sl")
                    continue
            except (ModelError, InvalidRecord):
                # Only after a culprit was left out can the state differ from the live
                # run's; the record is then what it would have been: a dead letter.
                self.skip(offset, label=kind == "l")
                if failed is not None:
                    failed.append(i)
                continue
            if check and self.learned != learned and self.poisoned():
                return i
        return None

    def _adopt(self, restored: PartitionLearner) -> None:
        """Become ``restored`` in place (the processor holds this object)."""
        keep = {
            "drift_events": self.drift_events,
            "culprits": self.culprits,
            "rollbacks": self.rollbacks + 1,
            "snapshot_offset": self.snapshot_offset,
            "snapshot_ms": self.snapshot_ms,
            "restored_offset": self.restored_offset,
        }
        restored.drift_events = []  # the replay's: published already
        self.__dict__.clear()
        self.__dict__.update(restored.__dict__)
        self.__dict__.update(keep)

    def _undo_last(self) -> None:
        """Rebuild without the record being handled (it is not in the journal yet)."""
        restored = self._rebuilt_from_base()
        restored._replay(self._journal, check=False)
        self._adopt(restored)
        self._rebase()

    def _rebase(self) -> None:
        """Make the current state the base of the next undo (in memory only): a flood
        of failing records then costs a pickle each, not a replay of the whole
        checkpoint interval each."""
        self._init_journal(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))

    def poisoned(self) -> bool:
        """Whether the model or metric holds an inf or nan (a full walk of their state)."""
        return any(
            nonfinite(h.model) or nonfinite(h.metric) or nonfinite(h.rolling)
            for h in (self, *self.challengers)
        )

    def repair(self) -> list[Culprit]:
        """Undo every learn since the last checkpoint that left the state non-finite.

        Replays the journal with a state check after each learn; each record found
        is left out (and added to :attr:`culprits`) and the replay resumes after it.
        Returns the records left out (none when the base itself is not finite).
        """
        journal = list(self._journal)
        found: list[int] = []
        restored = self._rebuilt_from_base()
        if restored.poisoned():
            logger.error(
                "partition %d: the model's state was already non-finite at its last "
                "checkpoint; it cannot be repaired",
                self.partition,
            )
            return []
        start = 0
        while True:
            failed: list[int] = []
            bad = restored._replay(journal[start:], check=True, failed=failed)
            found.extend(start + i for i in failed)
            if bad is None:
                break
            index = start + bad
            found.append(index)
            restored = self._rebuilt_from_base()
            restored._replay(
                [e if i not in found else _skipped(e) for i, e in enumerate(journal[:index])],
                check=False,
            )
            restored.skip(journal[index][2], label=journal[index][0] == "l")
            start = index + 1
        culprits = [
            Culprit("labels" if journal[i][0] == "l" else "events", journal[i][2], journal[i][4])
            for i in sorted(found)
        ]
        self._adopt(restored)
        self._rebase()
        self.culprits.extend(culprits)
        for c in culprits:
            logger.error(
                "partition %d: learning %s offset %d left the model non-finite; undone "
                "(the record goes to the dead-letter topic)",
                self.partition,
                c.topic,
                c.offset,
            )
        return culprits

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

    def _new_duel(self) -> Duel:
        """A challenger's duel with the champion, judged by the chosen metric."""
        return Duel(
            self.promotion_window or 1,
            quality.choose(self.metric_name, self.spec.task),
            min_positives=self.promotion_min_positives,
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
        if _threshold_differs(self, settings.threshold):
            self.decider = _decider(settings.threshold, settings.metric_window, self.task)
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
        elif _metric_differs(self, settings.metric, settings.metric_window):
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

    def _set_candidates(self, settings: LearnerSettings) -> None:
        """Match the candidates to the configured ones (RIVERBED_MODEL): a challenger the
        settings add starts fresh, one they no longer name is dropped (logged). The
        champion stays (a promotion made it so; RIVERBED_MODEL's first is only the
        champion at start)."""
        lineup = settings.lineup or (self.spec,)
        self._lineup_specs = lineup
        self.lineup = tuple(s.name for s in lineup)
        wanted = list(self.lineup)
        if self.spec.name not in wanted:
            # The champion was taken out of RIVERBED_MODEL: the first configured
            # candidate this learner has (else a fresh one of the first) takes over.
            i = next((i for i, c in enumerate(self.challengers) if c.name in wanted), None)
            if i is None:
                self.challengers.append(Candidate(
                    lineup[0], metric=self.metric_name, window=self.metric_window,
                    detector=self.drift_detector, threshold=self.threshold,
                ))  # fmt: skip
                i = len(self.challengers) - 1
            logger.warning(
                "partition %d: the champion %s is no longer in RIVERBED_MODEL; %s takes "
                "its place", self.partition, self.spec.name, self.challengers[i].name,
            )  # fmt: skip
            self._swap(i)
        have = {c.name: c for c in self.challengers}
        champion = self.spec.name
        kept = []
        for spec in lineup:
            if spec.name == champion:
                continue
            c = have.get(spec.name)
            if c is None:
                logger.warning("partition %d: candidate %s is new; it starts fresh",
                               self.partition, spec.name)  # fmt: skip
                c = Candidate(spec, metric=self.metric_name, window=self.metric_window,
                              detector=self.drift_detector, threshold=self.threshold)  # fmt: skip
            kept.append(c)
        for name in have:
            if name not in wanted:
                logger.warning("partition %d: candidate %s is no longer configured; dropped",
                               self.partition, name)  # fmt: skip
        # A pending event's challenger predictions follow the challengers they belong to.
        if [c.name for c in kept] != [c.name for c in self.challengers]:
            old = [c.name for c in self.challengers]
            for waiting in self.pending.values():
                if waiting.shadow is not None:
                    by_name = dict(zip(old, waiting.shadow, strict=False))
                    waiting.shadow = tuple(by_name.get(c.name) for c in kept)
        choice = quality.choose(self.metric_name, self.task)
        for c in kept:
            if _metric_differs(c, self.metric_name, self.metric_window):
                c.metric = choice.make()
                c.rolling = choice.rolling(self.metric_window)
            if _threshold_differs(c, self.threshold):
                c.decider = _decider(self.threshold, self.metric_window, self.task)
        duels = {c.name: d for c, d in zip(self.challengers, self.duels, strict=False)}
        self.promotion_window = settings.promotion_window
        fresh = self._new_duel()
        self.duels = [
            d if (d := duels.get(c.name)) is not None and _same_duel(d, fresh)
            else self._new_duel()
            for c in kept
        ]  # fmt: skip
        self.challengers = kept

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A snapshot written by an earlier version lacks attributes added since.
        defaults = {
            **LearnerSettings().fields(),
            "_error_sum": 0.0,
            "_error_n": 0,
            "rollbacks": 0,
            "snapshot_bytes": 0,
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
        }
        self.__dict__.update({**defaults, **state})
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
    def predict_one(self, x: dict[str, Value]) -> tuple[Any, dict[Any, float] | None]:
        """What the stream would predict for ``x`` now, changing nothing (``POST
        /predict``): the same feature cap, the same model, no learning, no counting.

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
        y_pred, proba = self._predict(x)
        if self.decider is not None and proba is not None:
            y_pred = self.decider.decide(proba, record=False).y_pred
        return y_pred, proba

    # The champion's prediction: the shared function itself, so no extra call frame.
    _predict = _predict_with

    def _challengers_predict(
        self, event: Event, x: dict[str, Value], offset: int
    ) -> tuple[Any, ...]:
        """Each challenger's prediction of ``x`` (what its metric is updated with);
        with RIVERBED_SHADOW_PREDICTIONS, their prediction records too."""
        preds: list[Any] = []
        for c in self.challengers:
            y_pred, proba = _predict_with(c, x)
            if c.decider is not None and proba is not None:
                decided = c.decider.decide(proba)
                y_pred = decided.y_pred
                preds.append(decided)
            else:
                preds.append(y_pred if c._metric_wants_label or proba is None else proba)
            if self.shadow_predictions:
                rec: dict[str, Any] = {"id": event.id, "y_pred": y_pred}
                if proba is not None:
                    rec["proba"] = proba
                if c.decider is not None:
                    rec["threshold"] = _shown(c.decider.value)
                if event.y is not None:
                    rec["y"] = event.y
                rec.update(model=c.name, partition=self.partition, offset=offset)
                if event.fields:
                    rec.update(event.fields)
                self.shadows.append(rec)
        return tuple(preds)

    def _check_label(self, y: Value) -> None:
        if self.task == "regression" and (isinstance(y, bool) or not isinstance(y, int | float)):
            msg = f'"y" must be a number for the regression model {self.spec.name!r}, got {y!r}'
            raise InvalidRecord(msg)

    def _finish(self, rid: str, *, learned: bool) -> None:
        done = self._finished
        done[rid] = learned
        if len(done) > self.pending_max:
            done.popitem(last=False)

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
        self, rid: str, waiting: _Pending, y: Value, *, defaulted: bool = True
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

    def _score(self, y: Value, y_pred: Any, holder: Any = None) -> None:
        """Update a candidate's cumulative metric and rolling window with one label
        (and, under RIVERBED_THRESHOLD, its decision rule)."""
        h: ModelHolder = self if holder is None else holder
        if type(y_pred) is Decided:
            if h.decider is not None:
                h.decider.scored(y, y_pred)
            y_pred = y_pred.y_pred if h._metric_wants_label else y_pred.proba
            if y_pred is None:  # no decision yet: nothing for a label-based metric
                return
        h.metric.update(y, y_pred)
        if h.rolling is not None:
            h.rolling.update(y, y_pred)

    def _challengers_learn(
        self, x: dict[str, Value] | None, y: Value | None, preds: tuple[Any, ...] | None
    ) -> None:
        """Each challenger scores its own prediction of the event and learns it."""
        for i, c in enumerate(self.challengers):
            pred = preds[i] if preds is not None and i < len(preds) else None
            if y is not None and pred is not None and pred != {}:
                self._score(y, pred, c)
            if x is not None:
                if self.task == "anomaly":
                    c.model.learn_one(x)  # unsupervised: every event teaches it
                else:
                    c.model.learn_one(x, y)
                c.learned_by_model += 1

    def _challengers_watch(
        self,
        y: Value,
        preds: tuple[Any, ...] | None,
        *,
        topic: str,
        offset: int,
        champion_pred: Any = None,
    ) -> None:
        """Each challenger's drift detector; with auto promotion, its duel with the
        champion and, when a challenger wins significantly, the promotion."""
        if preds is None:
            return
        for c, pred in zip(self.challengers, preds, strict=False):
            self._watch(y, pred, topic=topic, offset=offset, holder=c)
        if not self.promotion_window or self.task == "anomaly":
            return
        if champion_pred is None or champion_pred == {}:
            return
        self._since_promotion += 1
        best = None
        for i, (duel, pred) in enumerate(zip(self.duels, preds, strict=False)):
            duel.add(y, champion=champion_pred, challenger=pred)
            if self._since_promotion < self.promotion_window or not duel.due():
                continue
            verdict = duel.verdict()
            if verdict is None or not duel.favours_challenger(verdict):
                continue
            if best is None or verdict.statistic > best[1].statistic:
                best = (i, verdict)
        if best is not None:
            self._promote(best[0], best[1], topic=topic, offset=offset)

    def _swap(self, i: int) -> None:
        """Challenger ``i`` becomes the champion; the champion becomes challenger ``i``."""
        c = self.challengers[i]
        for name in MODEL_FIELDS:
            mine, theirs = getattr(self, name), getattr(c, name)
            setattr(self, name, theirs)
            setattr(c, name, mine)
        # Waiting events remember every candidate's prediction: swap them too, so a
        # later label scores each model's own prediction (None: it made none).
        for waiting in self.pending.values():
            shadow = list(waiting.shadow or ())
            shadow += [None] * (i + 1 - len(shadow))
            waiting.y_pred, shadow[i] = shadow[i], waiting.y_pred
            waiting.shadow = tuple(shadow)

    def _promote(self, i: int, verdict: PairedTest, *, topic: str, offset: int) -> None:
        """Challenger ``i`` becomes the champion, as the duel decided; recorded."""
        duel = self.duels[i]
        old = self.spec.name
        self._swap(i)
        self.promotions += 1
        self._since_promotion = 0
        self.duels = [self._new_duel() for _ in self.challengers]
        champion_value, challenger_value = verdict.values
        self.drift_events.append(
            {
                "type": "promotion",
                "partition": self.partition,
                "topic": topic,
                "offset": offset,
                "events_offset": self.last_offset,
                "from": old,
                "to": self.spec.name,
                # The chosen metric over the window that decided (accuracy for McNemar,
                # ROC AUC for DeLong, the mean per-event loss for a paired z).
                "metric": {
                    "name": duel.choice.name,
                    "from_value": champion_value,
                    "to_value": challenger_value,
                    "over": "mean loss" if duel.choice.test == "paired_z" else duel.choice.name,
                },
                "window": self.promotion_window,
                "labelled": self.learned,  # the window: the labelled events up to here
                "rarer_class": duel.rarer_class_count() if duel.classes else None,
                "test": {
                    "name": verdict.name,
                    "statistic": verdict.statistic,
                    "p_value": verdict.p_value,
                    "significance": SIGNIFICANCE,
                },
            }
        )

    def _watch(self, y: Value, y_pred: Any, *, topic: str, offset: int, holder: Any = None) -> None:
        """Feed a candidate's prequential error to its drift detector; record a detection."""
        h: ModelHolder = self if holder is None else holder
        detector = h.detector
        if detector is None or y_pred is None or y_pred == {}:
            return
        if isinstance(y_pred, dict | Decided):  # its decision, or the argmax of a proba
            y_pred = decision_of(y_pred)
            if y_pred is None:
                return
        error = abs(float(y) - float(y_pred)) if self.task == "regression" else float(y != y_pred)
        # The mean error since the last detection, kept here: reading the detector's
        # own estimate before every update cost more than the update itself.
        h._error_sum += error
        h._error_n += 1
        detector.update(error)
        if not detector.drift_detected:
            return
        before = h._error_sum / h._error_n
        h._error_sum, h._error_n = 0.0, 0
        h.drifts += 1
        if h is self:
            self.drifts_total = getattr(self, "drifts_total", 0)
        self.drift_events.append(
            {
                "type": "drift",
                "partition": self.partition,
                "model": h.spec.name,
                "champion": h is self,
                "topic": topic,
                "offset": offset,
                "events_offset": self.last_offset,
                "events": self.events,
                "detector": self.drift_detector,
                "error_before": before,
                "error_after": getattr(detector, "estimation", None),
                "metric": {
                    "name": quality.metric_label(h.metric),
                    "value": quality.metric_value(h.metric),
                },
                "action": "reset" if self.drift_reset else "none",
            }
        )
        if self.drift_reset:
            # Re-warm: a fresh model learns the new concept; the metric keeps its history.
            h.model = h.spec.build()
            h.detector = make_detector(self.drift_detector)

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
        self._journal.append(("sl" if label else "s", None, offset, 0, None, 0))

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
        try:
            y_pred, proba = self._predict(x)
            # A non-finite prediction is either this x's doing or a poisoned model: a
            # state walk tells, and a poisoned model is repaired before it answers.
            if not finite_prediction(y_pred, proba) and self.poisoned() and self.repair():
                y_pred, proba = self._predict(x)
            shadow = self._challengers_predict(event, x, offset) if self.challengers else None
        except Exception as exc:
            raise ModelError(PREDICT, exc) from exc
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
            try:
                # Like progressive_val_score: no metric update for a model with no opinion.
                if y is not None and metric_pred is not None and metric_pred != {}:
                    if decider is not None:
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
        if joined_early and not mature_later:
            # Remembered so a duplicate label is "late". Inline-labelled ids are not
            # remembered (a snapshot would carry them all): a stray label for one waits
            # as early and ends an orphan; either way it is never learned twice.
            self._finish(event.id, learned=True)
        if y is None or mature_later:
            self._expire(ts_ms)
            pending = self.pending
            gone = pending.pop(event.id, None)  # the same id again: the newer waits
            if gone is not None:
                self.pending_bytes -= gone.size
            pending[event.id] = _Pending(
                None if self.task == "anomaly" else x, metric_pred, ts_ms, size, shadow, y
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
        self._journal.append(("e", None if source else event, offset, ts_ms, source, size))
        out: dict[str, Any] = {"id": event.id, "y_pred": y_pred}
        if proba is not None:
            out["proba"] = proba
        if decider is not None:
            out["threshold"] = _shown(decider.value)
        if (mature_later or decider is not None) and (
            self.learned_by_model < self.min_labels or y_pred is None
        ):
            # RIVERBED_MIN_LABELS: too few labels learned (or no threshold yet) for a
            # decision anyone should act on; the probabilities are still given.
            out["y_pred"] = None
            out["warming"] = True
        if event.y is not None:
            out["y"] = event.y
        out["model"] = by
        return out

    def process_label(
        self,
        label: Label,
        *,
        offset: int,
        ts_ms: int,
        source: Any = None,
        elsewhere: Callable[[str], bool] | None = None,
    ) -> str:
        """Join a delayed label with its pending event; return a :class:`LabelOutcome`.

        ``elsewhere(id)`` tells whether the id's event waits in another partition of
        this worker: a label that would wait as early is then ``misrouted`` instead
        (it can never join) and is not kept.
        Raises :class:`~riverbed.exceptions.ModelError` as :meth:`process_event` does.
        """
        if offset <= self.last_label_offset:
            self.labels[LabelOutcome.REPLAYED] += 1
            return LabelOutcome.REPLAYED
        self._check_label(label.y)
        self.last_label_offset = offset
        if self.label_maturity and self.task != "anomaly":
            outcome = self._attach(label, ts_ms, elsewhere)
            self._journal.append(("l", None if source else label, offset, ts_ms, source, 0))
            return outcome
        self._expire(ts_ms)
        pending = self.pending.pop(label.id, None)
        if pending is None:
            outcome = self._unmatched(label, ts_ms, elsewhere)
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
        self._journal.append(("l", None if source else label, offset, ts_ms, source, 0))
        return outcome

    def _attach(self, label: Label, ts_ms: int, elsewhere: Callable[[str], bool] | None) -> str:
        """RIVERBED_LABEL_MATURITY: a label waits with its event until the event is
        mature, and is learned then, in event order. Events due before the label's time
        mature first (on the Kafka clock: labels carry no event time), so a label counts
        only if it came by its event's due time, whatever the order it was fetched in."""
        if self._kafka_clock:
            self._expire(ts_ms)
        waiting = self.pending.get(label.id)
        if waiting is None:
            outcome = self._unmatched(label, ts_ms, elsewhere)
        elif waiting.label is not None:
            outcome = LabelOutcome.LATE  # a second label: the first one counts
        else:
            waiting.label = label.y
            outcome = LabelOutcome.JOINED
        self.labels[outcome] += 1
        return outcome

    def _unmatched(self, label: Label, ts_ms: int, elsewhere: Callable[[str], bool] | None) -> str:
        """The outcome of a label whose event does not wait here: late (learned),
        orphan (expired), misrouted (it waits in another partition), or early (kept)."""
        finished = self._finished.get(label.id)
        if finished is not None:
            return LabelOutcome.LATE if finished else LabelOutcome.ORPHAN
        if elsewhere is not None and elsewhere(label.id):
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

    # -- reporting -------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """The partition's entry of ``/models``."""
        mine = _quality(self, self.metric_window)
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
            "drift_detector": self.drift_detector,
            "metric": {"name": quality.metric_label(self.metric), "value": value},
            "rolling": rolling,
            "champion": self.spec.name,
            "label_maturity": self.label_maturity,
            "warming": (self.label_maturity or self.decider is not None)
            and self.learned_by_model < self.min_labels,
            "candidates": {
                h.spec.name: _quality(h, self.metric_window) for h in (self, *self.challengers)
            },
            "promotions": self.promotions,
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
