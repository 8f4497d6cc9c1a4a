"""RIVERBED_METRIC: which metric a name means, its rolling window, and how two
candidates are compared on it.

River's prequential metrics serve where they are exact (accuracy, F1, log loss, MAE,
...). For ranking quality River offers only approximations (``ROCAUC`` with 10
thresholds, ``RollingROCAUC`` truncating ties, ``RollingPRAUC`` that is not average
precision), so ``rocauc``, ``prauc``, ``recall_at_fpr:<f>`` and
``precision_at_recall:<r>`` are riverbed's exact ones (:mod:`riverbed.learning.judgment`).

Each metric names the paired test a promotion uses on it (``RIVERBED_PROMOTION=auto``):
McNemar's on 0/1 errors for accuracy, DeLong's for ROC AUC, a paired z on per-event
losses for log loss and the regression errors. The others (F1, MCC, PR AUC, ...) have
no per-event decomposition a simple paired test fits; auto promotion refuses them at
start-up rather than deciding by another metric than the one chosen.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "METRICS",
    "MetricChoice",
    "RollingAccuracy",
    "choose",
    "log_loss",
    "metric_value",
    "migrate_rolling",
    "names",
]

CLASSIFICATION = frozenset({"classification"})
REGRESSION = frozenset({"regression"})


def _abs_error(y: Any, pred: Any) -> float:
    return abs(float(y) - float(pred))


def _squared_error(y: Any, pred: Any) -> float:
    return (float(y) - float(pred)) ** 2


def log_loss(y: bool, p_true: float) -> float:
    """The log loss of one binary prediction, ``p_true`` clipped to [1e-15, 1 - 1e-15]
    as River's ``metrics.LogLoss`` does.

    Examples
    --------
    >>> round(log_loss(True, 0.8), 6), round(log_loss(False, 0.8), 6), log_loss(True, 0.0)
    (0.223144, 1.609438, 34.538776394910684)

    """
    p = min(max(float(p_true), 1e-15), 1.0 - 1e-15)
    return -math.log(p) if y else -math.log(1.0 - p)


def _log_loss(y: Any, proba: Any) -> float:
    """River's LogLoss of one event: ``-ln p(y)`` of a binary classifier's proba."""
    p_true = proba.get(True, 0.0) if isinstance(proba, dict) else float(proba)
    return log_loss(y == True, p_true)  # noqa: E712 - True and 1 are the positive class


class RollingAccuracy:
    """Accuracy over the last ``window_size`` labelled events: the values of River's
    ``utils.Rolling(metrics.Accuracy, window_size=...)``, exactly.

    Hand-written, not River's: ``Rolling`` keeps each update's ``(args, kwargs)`` and
    reverts the oldest through a confusion matrix (four defaultdict updates and two
    calls each way), ~1 µs a labelled event, the most expensive step of the learner's
    bookkeeping; a ring of hits is ~0.15 µs. Both count ``y_true == y_pred`` and divide
    the hits by the events in the window, integers all the way (River's sums of
    ``w=1.0`` are exact integers in floats), so the quotient is the same float.
    Snapshots written with River's ``Rolling`` are migrated on load
    (:func:`migrate_rolling`).

    Examples
    --------
    >>> r = RollingAccuracy(3)
    >>> for y, p in [(True, True), (True, False), (False, False), (True, True)]:
    ...     r.update(y, p)
    >>> r, r.get(), r.window_size
    (Accuracy: 66.67%, 0.6666666666666666, 3)

    """

    __slots__ = ("_i", "_ring", "hits", "n", "window_size")

    def __init__(self, window_size: int) -> None:
        self.window_size = window_size
        self._ring = bytearray(window_size)  # 1: a hit, oldest at _i once full
        self._i = 0
        self.hits = 0
        self.n = 0

    def update(self, y_true: Any, y_pred: Any) -> None:
        ok = 1 if y_true == y_pred else 0  # the confusion matrix's test, as it makes it
        i = self._i
        ring = self._ring
        if self.n == self.window_size:
            self.hits += ok - ring[i]
        else:
            self.n += 1
            self.hits += ok
        ring[i] = ok
        i += 1
        self._i = 0 if i == self.window_size else i

    def get(self) -> float:
        return self.hits / self.n if self.n else 0.0

    def __repr__(self) -> str:
        return f"Accuracy: {self.get():.2%}"


def migrate_rolling(rolling: Any) -> Any:
    """A snapshot's rolling metric, River's ``Rolling(Accuracy)`` as a
    :class:`RollingAccuracy` with the same window (others as they are)."""
    from river import metrics, utils

    if type(rolling) is not utils.Rolling or type(rolling.obj) is not metrics.Accuracy:
        return rolling
    ring = RollingAccuracy(rolling.window_size)
    for args, kwargs in rolling.window:  # oldest first: the same hits, in the same order
        ring.update(*args, **kwargs)
    return ring


@dataclass(frozen=True)
class MetricChoice:
    """A metric RIVERBED_METRIC may name.

    ``factory`` names the class, ``module.Class``, imported when a metric is made:
    ``river.metrics`` imports scipy.stats (~0.7 s), which checking a setting's name
    (every command of the CLI reads the settings) has no use for. ``test`` is the promotion's
    paired test on it (None: none fits; refused with auto promotion), ``loss`` the
    per-event loss a paired z compares.
    """

    name: str
    # Not compared: the name says which metric (a parametric one with its argument),
    # and snapshots before 2026-12-06 hold the class itself here, not its name; a
    # restored duel must still equal a fresh one (same_duel), or its pairs are dropped.
    factory: str = field(compare=False)
    tasks: frozenset[str]
    test: str | None = None
    loss: Callable[[Any, Any], float] | None = None
    exact: bool = False  # riverbed's own: takes ``window=`` for its rolling version
    arg: float | None = None  # recall_at_fpr:<f> and precision_at_recall:<r>

    @property
    def cls(self) -> Callable[..., Any]:
        """The metric's class."""
        if not isinstance(self.factory, str):  # a snapshot's from before 2026-12-06
            return self.factory
        module, _, name = self.factory.rpartition(".")
        return getattr(importlib.import_module(module), name)

    def make(self) -> Any:
        """The cumulative metric."""
        if self.arg is not None:
            return self.cls(self.arg)
        return self.cls()

    def rolling(self, window: int) -> Any:
        """The metric over the last ``window`` labelled events (None for 0)."""
        if not window:
            return None
        if self.exact:
            if self.arg is not None:
                return self.cls(self.arg, window=window)
            return self.cls(window=window)
        if self.name == "accuracy":
            return RollingAccuracy(window)
        from river import utils

        return utils.Rolling(self.cls, window_size=window)


METRICS: dict[str, MetricChoice] = {
    m.name: m
    for m in (
        MetricChoice("accuracy", "river.metrics.Accuracy", CLASSIFICATION, test="mcnemar"),
        MetricChoice("balanced_accuracy", "river.metrics.BalancedAccuracy", CLASSIFICATION),
        MetricChoice("f1", "river.metrics.F1", CLASSIFICATION),
        MetricChoice("precision", "river.metrics.Precision", CLASSIFICATION),
        MetricChoice("recall", "river.metrics.Recall", CLASSIFICATION),
        MetricChoice("mcc", "river.metrics.MCC", CLASSIFICATION),
        MetricChoice(
            "rocauc",
            "riverbed.learning.judgment.ExactROCAUC",
            frozenset({"classification", "anomaly"}),
            test="delong",
            exact=True,
        ),
        MetricChoice(
            "prauc",
            "riverbed.learning.judgment.AveragePrecision",
            frozenset({"classification", "anomaly"}),
            exact=True,
        ),
        MetricChoice(
            "logloss", "river.metrics.LogLoss", CLASSIFICATION, test="paired_z", loss=_log_loss
        ),
        MetricChoice("mae", "river.metrics.MAE", REGRESSION, test="paired_z", loss=_abs_error),
        MetricChoice(
            "rmse", "river.metrics.RMSE", REGRESSION, test="paired_z", loss=_squared_error
        ),
        MetricChoice("mse", "river.metrics.MSE", REGRESSION, test="paired_z", loss=_squared_error),
        MetricChoice("r2", "river.metrics.R2", REGRESSION),
    )
}
PARAMETRIC: dict[str, tuple[str, str]] = {
    "recall_at_fpr": ("riverbed.learning.judgment.RecallAtFPR", "a false-positive rate"),
    "precision_at_recall": ("riverbed.learning.judgment.PrecisionAtRecall", "a recall"),
}
DEFAULTS = {"classification": "accuracy", "regression": "mae", "anomaly": "rocauc"}


def names() -> str:
    """Every name RIVERBED_METRIC takes, for messages and help."""
    return ", ".join([*METRICS, *(f"{p}:<0..1>" for p in PARAMETRIC)])


def choose(name: str, task: str | None = None) -> MetricChoice:
    """The metric ``name`` ("": the task's default), checked against ``task``.

    Examples
    --------
    >>> choose("rocauc", "classification").make()
    ROCAUC: n/a
    >>> choose("recall_at_fpr:0.01").make()
    RecallAtFPR(0.01): n/a
    >>> choose("", "regression").name
    'mae'
    >>> choose("mae", "classification")
    Traceback (most recent call last):
    ...
    ValueError: 'mae' does not score classification models; use one of accuracy, ...

    """
    name = (name or DEFAULTS.get(task or "", "")).strip().lower()
    kind, _, arg = name.partition(":")
    if kind in PARAMETRIC:
        factory, what = PARAMETRIC[kind]
        try:
            value = float(arg)
        except ValueError:
            value = math.nan
        if not 0 < value < 1:
            msg = f"{name!r} needs {what} between 0 and 1, e.g. {kind}:0.01"
            raise ValueError(msg)
        choice = MetricChoice(name, factory, CLASSIFICATION | {"anomaly"}, exact=True, arg=value)
    elif name in METRICS:
        choice = METRICS[name]
    else:
        msg = f"{name!r} is not one of {names()}"
        raise ValueError(msg)
    if task is not None and task not in choice.tasks:
        fits = ", ".join(n for n, m in METRICS.items() if task in m.tasks)
        msg = f"{name!r} does not score {task} models; use one of {fits}"
        raise ValueError(msg)
    return choice


def metric_value(metric: Any) -> float | None:
    """A metric's value for JSON and Prometheus: None when undefined (nan, or no event
    yet), never -0.0.

    Examples
    --------
    >>> metric_value(choose("rocauc").make()) is None, metric_value(choose("mae").make())
    (True, None)

    """
    if metric is None:
        return None
    value = float(metric.get())
    if math.isnan(value) or not _has_events(metric):
        return None
    return value + 0.0  # -0.0 + 0.0 is 0.0


def _has_events(metric: Any) -> bool:
    """Whether a River metric has seen an update (its value before one means nothing)."""
    from river import utils

    if isinstance(metric, utils.Rolling):
        return len(getattr(metric, "window", ())) > 0
    if type(metric) is RollingAccuracy:
        return metric.n > 0
    cm = getattr(metric, "cm", None)
    if cm is not None:
        return bool(cm.n_samples)
    for attr in ("_mean", "_y_var"):  # MAE, RMSE, LogLoss, ...; R2 (its Var's mean)
        inner = getattr(metric, attr, None)
        inner = getattr(inner, "mean", inner)
        if inner is not None and hasattr(inner, "n"):
            return bool(inner.n)
    return True


def metric_label(metric: Any) -> str:
    """A metric's name for ``/models`` and records: River's class name, or the exact
    metric's own (``ROCAUC``, ``RecallAtFPR(0.01)``)."""
    return str(getattr(metric, "name", None) or type(metric).__name__)
