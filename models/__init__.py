"""The riverbed model catalog: one builder per named model.

``build(name)`` returns a fresh, unfitted River estimator; ``available()`` lists the
names; ``spec(name)`` also gives the task and the prequential metric riverbed reports
for it. A name of the form ``module:factory`` imports ``module`` and calls
``factory()`` instead, so users can bring their own River model without forking.

Random models are seeded, so two runs over the same records give the same predictions.
Every model takes numbers, booleans and strings in one event: the trees split on
strings natively; the linear models and half-space trees get strings one-hot encoded
and numbers (booleans as 0/1) scaled, by :class:`~riverbed.models.features.MixedScaler`.

Examples
--------
>>> from riverbed import models
>>> models.available()
['arf', 'hoeffding', 'hst', 'linreg', 'logreg']
>>> models.build("logreg")
Pipeline (
  MixedScaler (
    scale="standard"
  ),
  LogisticRegression (
  ...
>>> models.spec("linreg").metric()
MAE: 0.

"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from river import anomaly, base, forest, linear_model, metrics, tree

from riverbed.models.features import MixedScaler

__all__ = [
    "ModelSpec",
    "UnknownModel",
    "available",
    "build",
    "final_step",
    "lineup",
    "spec",
]


class UnknownModel(LookupError):
    """A name that is no catalog model and no importable ``module:factory``.

    The catalog imports nothing from the app: riverbed reports this as a bad
    ``RIVERBED_MODEL`` setting.
    """


Task = Literal["classification", "regression", "anomaly"]

SEED = 42


@dataclass(frozen=True)
class ModelSpec:
    """A named recipe for a per-partition model and its prequential metric."""

    name: str
    task: Task
    factory: Callable[[], Any]
    metric: Callable[[], Any]

    def build(self) -> Any:
        """A fresh estimator; never shared between partitions."""
        return self.factory()


def logreg() -> base.Estimator:
    """Standard-scaled logistic regression: the default, a fast binary classifier.

    Strings are one-hot encoded and booleans count as 0/1 (:class:`MixedScaler`).

    Examples
    --------
    >>> from river import datasets, evaluate, metrics
    >>> evaluate.progressive_val_score(datasets.Phishing(), logreg(), metrics.Accuracy())
    Accuracy: 89.28%
    >>> model = logreg()
    >>> x = {"amount": 12.5, "country": "FR", "new_user": True}
    >>> model.learn_one(x, True)
    >>> model.predict_one(x)
    True

    """
    return MixedScaler() | linear_model.LogisticRegression()


def hoeffding() -> base.Classifier:
    """Hoeffding adaptive tree: grows splits online and swaps branches on drift.

    Examples
    --------
    >>> from river import datasets, evaluate, metrics
    >>> evaluate.progressive_val_score(datasets.Phishing(), hoeffding(), metrics.Accuracy())
    Accuracy: 87.43%

    """
    return tree.HoeffdingAdaptiveTreeClassifier(seed=SEED)


def arf() -> base.Classifier:
    """Adaptive random forest of 10 Hoeffding trees with per-tree drift detection.

    Examples
    --------
    >>> from river import datasets, evaluate, metrics
    >>> evaluate.progressive_val_score(datasets.Phishing(), arf(), metrics.Accuracy())
    Accuracy: 91.03%

    """
    return forest.ARFClassifier(n_models=10, seed=SEED)


def linreg() -> base.Estimator:
    """Standard-scaled linear regression, for numeric targets (features as ``logreg``'s).

    Examples
    --------
    >>> from river import datasets, evaluate, metrics
    >>> evaluate.progressive_val_score(datasets.TrumpApproval(), linreg(), metrics.MAE())
    MAE: 1.314548

    """
    return MixedScaler() | linear_model.LinearRegression()


def hst() -> base.Estimator:
    """Half-space trees on min-max scaled features: anomaly scores in [0, 1].

    Strings are one-hot encoded, booleans count as 0/1 (:class:`MixedScaler`). The trees
    are drawn on the features of the first event; a feature an event lacks takes the
    heavier branch.

    It learns from every event (no label needed); a label, when one comes, only
    scores it (ROC AUC of the score against ``y``).

    Examples
    --------
    >>> from river import datasets
    >>> model = hst()
    >>> scores = []
    >>> for x, _ in datasets.Phishing():
    ...     scores.append(model.score_one(x))
    ...     model.learn_one(x)
    >>> 0.0 <= min(scores) <= max(scores) <= 1.0
    True

    """
    return MixedScaler("minmax") | anomaly.HalfSpaceTrees(seed=SEED)


_CATALOG: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("logreg", "classification", logreg, metrics.Accuracy),
        ModelSpec("hoeffding", "classification", hoeffding, metrics.Accuracy),
        ModelSpec("arf", "classification", arf, metrics.Accuracy),
        ModelSpec("linreg", "regression", linreg, metrics.MAE),
        ModelSpec("hst", "anomaly", hst, metrics.ROCAUC),
    )
}


def available() -> list[str]:
    """Names of the catalog models, sorted."""
    return sorted(_CATALOG)


def final_step(model: Any) -> Any:
    """The estimator at the end of a pipeline (or the model itself)."""
    steps = getattr(model, "steps", None)
    return list(steps.values())[-1] if isinstance(steps, dict) and steps else model


def _task_of(model: Any) -> Task:
    est = final_step(model)
    if isinstance(est, base.AnomalyDetector):
        return "anomaly"
    if isinstance(est, base.Classifier):
        return "classification"
    if isinstance(est, base.Regressor):
        return "regression"
    msg = f"{type(est).__name__} is not a River classifier, regressor or anomaly detector"
    raise UnknownModel(msg)


_METRIC_OF: dict[Task, Callable[[], Any]] = {
    "classification": metrics.Accuracy,
    "regression": metrics.MAE,
    "anomaly": metrics.ROCAUC,
}


def spec(name: str) -> ModelSpec:
    """The catalog entry ``name``, or a spec for ``module:factory``.

    Raises
    ------
    UnknownModel
        When ``name`` is neither a catalog name nor an importable factory of a River model.

    """
    if name in _CATALOG:
        return _CATALOG[name]
    if ":" not in name:
        msg = f"unknown model {name!r}; catalog: {', '.join(available())}, or module:factory"
        raise UnknownModel(msg)
    module_name, _, attr = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        msg = f"cannot load model factory {name!r}: {exc}"
        raise UnknownModel(msg) from exc
    if not callable(factory):
        msg = f"{name!r} is not callable"
        raise UnknownModel(msg)
    task = _task_of(factory())
    return ModelSpec(name, task, factory, _METRIC_OF[task])


def lineup(value: str) -> list[ModelSpec]:
    """The candidates of ``RIVERBED_MODEL``: comma-separated names, the champion first.

    Examples
    --------
    >>> [s.name for s in lineup("logreg, hoeffding")]
    ['logreg', 'hoeffding']
    >>> try:
    ...     lineup("logreg,linreg")
    ... except UnknownModel as exc:
    ...     print(exc)
    candidates must share a task: logreg is classification, linreg is regression

    """
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        msg = "no model named"
        raise UnknownModel(msg)
    if len(set(names)) < len(names):
        msg = f"a candidate is named twice in {value!r}"
        raise UnknownModel(msg)
    specs = [spec(n) for n in names]
    for s in specs[1:]:
        if s.task != specs[0].task:
            msg = (
                f"candidates must share a task: {specs[0].name} is {specs[0].task}, "
                f"{s.name} is {s.task}"
            )
            raise UnknownModel(msg)
    return specs


def build(name: str) -> Any:
    """A fresh estimator for ``name`` (a catalog name or ``module:factory``)."""
    return spec(name).build()
