"""A partition's candidates: the champion and its challengers, their duels and drift.

What a candidate model is made of (:class:`ModelHolder`: the model, its cumulative and
rolling metric, its drift detector, its decision threshold), a challenger
(:class:`Candidate`), and the learner's part that runs them (:class:`Challengers`):
each challenger predicts every event and learns every label as the champion does
(shadow scoring), is scored (``_score``) and watched for drift (``_watch``) as the
champion is, and under RIVERBED_PROMOTION=auto duels with the champion over the last
labelled events (:class:`~riverbed.learning.promotion.Duel`); a significant win swaps
the two (``_promote``), recorded on the metrics topic.

A mixin of :class:`~riverbed.learning.learner.PartitionLearner`, not an object of its
own: a snapshot pickles the learner as one flat object, and every snapshot written
since round one must keep loading (``tests/unit/test_old_snapshots.py``); the hot path
also pays no extra attribute hop. The state this part reads and writes is declared
below, and what it calls of the other parts is declared under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from river import base, drift

from riverbed.exceptions import DuplicateCandidate, UnknownCandidate
from riverbed.learning import quality
from riverbed.learning.judgment import PairedTest
from riverbed.learning.promotion import SIGNIFICANCE, Decided, Duel, decision_of
from riverbed.learning.threshold import Threshold, parse_threshold
from riverbed.models import ModelSpec, final_step
from riverbed.records import Event, Value

if TYPE_CHECKING:
    from riverbed.learning.labels import Pending
    from riverbed.learning.settings import LearnerSettings

__all__ = [
    "DETECTORS",
    "HOT",
    "MODEL_FIELDS",
    "Candidate",
    "Challengers",
    "ModelHolder",
    "describe_quality",
    "make_detector",
    "metric_differs",
    "model_state",
    "new_decider",
    "predict_with",
    "same_duel",
    "shown",
    "threshold_differs",
]

logger = logging.getLogger("riverbed.learning.learner")

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


def new_decider(threshold: str, window: int, task: str) -> Threshold | None:
    """A fresh decision rule for RIVERBED_THRESHOLD (None: the argmax)."""
    parsed = parse_threshold(threshold) if task == "classification" else None
    return Threshold(*parsed, window=window) if parsed else None


def model_state(
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
    holder.decider = new_decider(threshold, window, spec.task)
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


def predict_with(holder: ModelHolder, x: dict[str, Value]) -> tuple[Any, dict[Any, float] | None]:
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


def describe_quality(holder: ModelHolder, window: int) -> dict[str, Any]:
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
        model_state(self, spec, metric, window, detector, threshold)

    @property
    def name(self) -> str:
        return str(self.spec.name)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"learned_by_model": 0, "decider": None, **state})
        if "rolling" in state:
            self.rolling = quality.migrate_rolling(state["rolling"])


def metric_differs(holder: ModelHolder, metric: str, window: int) -> bool:
    """Whether ``holder``'s metric is not RIVERBED_METRIC's ``metric`` (or its window)."""
    fresh = quality.choose(metric, holder.spec.task).make()
    mine = holder.metric
    rolling_window = getattr(holder.rolling, "window_size", 0) if holder.rolling else 0
    return (
        type(mine) is not type(fresh)
        or quality.metric_label(mine) != quality.metric_label(fresh)
        or rolling_window != window
    )


def shown(threshold: float | None) -> float | None:
    """A threshold for JSON (an infinite one, "alert on everything/nothing", as None)."""
    return threshold if threshold is None or math.isfinite(threshold) else None


def same_duel(duel: Any, fresh: Duel) -> bool:
    """Whether a snapshot's duel is judged as ``fresh`` is (window, metric, minimum)."""
    return (
        getattr(duel, "choice", None) == fresh.choice
        and getattr(duel, "window", None) == fresh.window
        and getattr(duel, "min_positives", None) == fresh.min_positives
    )


def threshold_differs(holder: ModelHolder, threshold: str) -> bool:
    """Whether ``holder``'s decision rule is not RIVERBED_THRESHOLD's."""
    parsed = parse_threshold(threshold) if holder.spec.task == "classification" else None
    mine = holder.decider
    return (mine.rule, mine.target) != parsed if mine is not None else parsed is not None


class Challengers(ModelHolder):
    """The learner's part that runs its candidates: the champion's own metric and drift
    watch (it is a :class:`ModelHolder` itself) and its challengers'."""

    partition: int
    task: str
    metric_name: str
    metric_window: int
    drift_detector: str
    drift_reset: bool
    threshold: str
    challengers: list[Candidate]
    duels: list[Duel]
    lineup: tuple[str, ...]
    _lineup_specs: tuple[ModelSpec, ...]
    promotion_window: int
    promotion_min_positives: int
    promotions: int
    _since_promotion: int
    pinned: bool  # riverbed pin: no automatic promotion until unpinned
    operations: int  # manual operations applied (promote, pin, unpin, rollback, import)
    imported: set[str]  # candidates imported (riverbed import), kept across restarts
    last_label_offset: int
    shadow_predictions: bool
    shadows: list[dict[str, Any]]
    drift_events: list[dict[str, Any]]
    pending: OrderedDict[str, Pending]
    events: int
    learned: int
    last_offset: int

    def _init_candidates(
        self,
        spec: ModelSpec,
        lineup: tuple[ModelSpec, ...],
        *,
        metric: str,
        metric_window: int,
        drift_detector: str,
        drift_reset: bool,
        promotion_window: int,
        promotion_min_positives: int,
        shadow_predictions: bool,
    ) -> None:
        """The champion ``spec`` (this object's own model state) and the challengers of
        ``lineup`` (RIVERBED_MODEL's others), fresh."""
        challengers = [c for c in lineup if c.name != spec.name]
        self.metric_name = metric  # "" : the task's default
        self.metric_window = metric_window
        self.drift_detector = drift_detector
        self.drift_reset = drift_reset
        model_state(self, spec, metric, metric_window, drift_detector, self.threshold)
        self.challengers = [
            Candidate(c, metric=metric, window=metric_window, detector=drift_detector,
                      threshold=self.threshold)
            for c in challengers
        ]  # fmt: skip
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
        self.pinned = False
        self.operations = 0
        self.imported = set()
        self.shadow_predictions = shadow_predictions
        # Challengers' predictions not yet published (RIVERBED_SHADOW_PREDICTIONS).
        self.shadows = []
        # Drift events not yet published; the processor drains them to the metrics topic.
        self.drift_events = []

    def _new_duel(self) -> Duel:
        """A challenger's duel with the champion, judged by the chosen metric."""
        return Duel(
            self.promotion_window or 1,
            quality.choose(self.metric_name, self.spec.task),
            min_positives=self.promotion_min_positives,
        )

    def _set_candidates(self, settings: LearnerSettings) -> None:
        """Match the candidates to the configured ones (RIVERBED_MODEL): a challenger the
        settings add starts fresh, one they no longer name is dropped (logged). The
        champion stays (a promotion made it so; RIVERBED_MODEL's first is only the
        champion at start)."""
        lineup = settings.lineup or (self.spec,)
        # Imported candidates (riverbed import) stay though RIVERBED_MODEL does not name them.
        configured = {s.name for s in lineup}
        extra_specs = [h.spec for h in (self, *self.challengers)
                if h.spec.name in self.imported and h.spec.name not in configured]  # fmt: skip
        lineup = (*lineup, *extra_specs)
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
            if metric_differs(c, self.metric_name, self.metric_window):
                c.metric = choice.make()
                c.rolling = choice.rolling(self.metric_window)
            if threshold_differs(c, self.threshold):
                c.decider = new_decider(self.threshold, self.metric_window, self.task)
        duels = {c.name: d for c, d in zip(self.challengers, self.duels, strict=False)}
        self.promotion_window = settings.promotion_window
        fresh = self._new_duel()
        self.duels = [
            d if (d := duels.get(c.name)) is not None and same_duel(d, fresh)
            else self._new_duel()
            for c in kept
        ]  # fmt: skip
        self.challengers = kept

    def _challengers_predict(
        self, event: Event, x: dict[str, Value], offset: int
    ) -> tuple[Any, ...]:
        """Each challenger's prediction of ``x`` (what its metric is updated with);
        with RIVERBED_SHADOW_PREDICTIONS, their prediction records too."""
        preds: list[Any] = []
        for c in self.challengers:
            y_pred, proba = predict_with(c, x)
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
                    rec["threshold"] = shown(c.decider.value)
                if event.y is not None:
                    rec["y"] = event.y
                rec.update(model=c.name, partition=self.partition, offset=offset)
                if event.fields:
                    rec.update(event.fields)
                self.shadows.append(rec)
        return tuple(preds)

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
        if best is not None and not self.pinned:  # pinned: no automatic promotion
            self._promote(best[0], best[1], topic=topic, offset=offset)

    # -- manual operations (riverbed promote, pin, unpin) ------------------------------
    def candidate(self, name: str | None = None) -> ModelHolder:
        """The candidate named ``name`` (None: the champion).

        Raises
        ------
        UnknownCandidate
            No candidate of that name (the message names those there are).
        """
        if name is None or name == self.spec.name:
            return self
        for c in self.challengers:
            if c.name == name:
                return c
        names = ", ".join([self.spec.name, *(c.name for c in self.challengers)])
        msg = f"partition {self.partition} has no candidate {name!r} (it has {names})"
        raise UnknownCandidate(msg)

    def promote(self, name: str, *, by: str) -> dict[str, Any]:
        """Make challenger ``name`` the champion now, between two records (``riverbed
        promote``); the operation's record (also published on the metrics topic)."""
        if name == self.spec.name:
            return self.audit("promote", by=by, changed=False, to=name)
        self.candidate(name)  # UnknownCandidate, naming the candidates, when there is none
        i = next(i for i, c in enumerate(self.challengers) if c.name == name)
        old = self.spec.name
        self._swap(i)
        self.promotions += 1
        self._since_promotion = 0
        self.duels = [self._new_duel() for _ in self.challengers]
        return self.audit("promote", by=by, changed=True, to=name, **{"from": old})

    def import_model(self, name: str, model: Any, *, champion: bool, by: str) -> dict[str, Any]:
        """``model`` (a River estimator trained elsewhere, of this learner's task) joins
        as challenger ``name`` (``riverbed import``), or as the champion with
        ``champion``; it predicts from the next record on and learns as the others do.
        Its fresh form (a drift reset) is River's ``clone()`` of it."""
        if name in {self.spec.name, *(c.name for c in self.challengers)}:
            msg = (
                f"partition {self.partition} has a candidate {name!r} already; choose another name"
            )
            raise DuplicateCandidate(msg)
        spec = ModelSpec(name, self.spec.task, functools.partial(_fresh, model), self.spec.metric)
        c = Candidate(spec, metric=self.metric_name, window=self.metric_window,
                      detector=self.drift_detector, threshold=self.threshold)  # fmt: skip
        c.model = model
        self.challengers.append(c)
        self.duels.append(self._new_duel())
        self.imported.add(name)
        self._lineup_specs = (*self._lineup_specs, spec)
        self.lineup = (*self.lineup, name)
        record = self.audit("import", by=by, changed=True, model=name,
                            estimator=type(model).__name__, as_champion=champion)  # fmt: skip
        if champion:
            self.promote(name, by=by)
        return record

    def pin(self, name: str | None, *, by: str) -> dict[str, Any]:
        """No automatic promotion until :meth:`unpin` (``riverbed pin``); with ``name``,
        that candidate is promoted first."""
        if name is not None and name != self.spec.name:
            self.promote(name, by=by)
        changed = not self.pinned
        self.pinned = True
        return self.audit("pin", by=by, changed=changed, champion=self.spec.name)

    def unpin(self, *, by: str) -> dict[str, Any]:
        """Automatic promotion again (RIVERBED_PROMOTION=auto), from here on."""
        changed = self.pinned
        self.pinned = False
        self._since_promotion = 0
        self.duels = [self._new_duel() for _ in self.challengers]
        return self.audit("unpin", by=by, changed=changed, champion=self.spec.name)

    def audit(self, op: str, *, by: str, changed: bool, **fields: Any) -> dict[str, Any]:
        """The audit record of a manual operation, at the offsets it was applied after."""
        self.operations += 1
        record = {
            "type": "operation",
            "op": op,
            "partition": self.partition,
            "events_offset": self.last_offset,
            "labels_offset": self.last_label_offset,
            "by": by,
            "changed": changed,
            **fields,
        }
        self.drift_events.append(record)
        return record

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
        if detector.drift_detected:
            self._drift_found(h, topic=topic, offset=offset)

    def _drift_found(self, h: ModelHolder, *, topic: str, offset: int) -> None:
        """A candidate's drift detector fired: counted and recorded (and, with
        RIVERBED_DRIFT_ACTION=reset, the candidate re-warmed)."""
        detector = h.detector
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


def _fresh(model: Any) -> Any:
    """An imported model's fresh form: its parameters, nothing learned (River's clone)."""
    return model.clone()
