"""Offline replay with plain River: the reference riverbed's predictions must equal.

Written independently of riverbed.learning.learner on purpose: it calls ``predict_one`` and
``predict_proba_one`` separately, in River's prequential order, so it also checks
riverbed's shortcut of deriving ``y_pred`` from the probabilities. The tests compare a
worker's predictions with it, and so does ``bench/failover.py`` after its kills (here,
in the installed package, so that neither imports the other).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from riverbed import models
from riverbed.learning import quality


def _normalise(value: Any) -> Any:
    """What a value looks like after a JSON round trip (label keys become strings)."""
    if isinstance(value, dict):
        return {_key(k): v for k, v in value.items()}
    return value


def _key(k: Any) -> str:
    if isinstance(k, bool):
        return "true" if k else "false"
    return str(k)


def replay(
    model_name: str, steps: Iterable[tuple[str, Any, Any]]
) -> tuple[list[dict[str, Any]], Any]:
    """Run ``steps`` through a fresh catalog model; return predictions and the metric.

    Each step is ``("event", x, y_or_None)`` (predict; learn when y is given) or
    ``("label", id_index, y)`` where ``id_index`` is the position, among the events, of
    the event it labels (learn from that event's features, score its prediction).
    """
    spec = models.spec(model_name)
    model = spec.build()
    # The metric riverbed reports for the task (the exact ROC AUC for anomaly models:
    # River's own ROCAUC is a 10-threshold approximation).
    metric = quality.choose("", spec.task).make()
    wants_label = getattr(metric, "requires_labels", True)
    preds: list[dict[str, Any]] = []
    remembered: list[tuple[dict[str, Any], Any]] = []
    for kind, a, b in steps:
        if kind == "event":
            x, y = a, b
            assert x is not None
            if spec.task == "classification":
                y_pred = model.predict_one(x)
                proba = model.predict_proba_one(x)
            elif spec.task == "regression":
                y_pred, proba = model.predict_one(x), None
            else:
                y_pred, proba = model.score_one(x), None
            for_metric = y_pred if wants_label or proba is None else proba
            rec: dict[str, Any] = {"y_pred": _normalise(y_pred)}
            if proba is not None:
                rec["proba"] = _normalise(proba)
            preds.append(rec)
            remembered.append((x, for_metric))
            if y is not None:
                if for_metric is not None and for_metric != {}:
                    metric.update(y, for_metric)
                model.learn_one(x, y) if spec.task != "anomaly" else None
            if spec.task == "anomaly":
                model.learn_one(x)
        else:
            x, for_metric = remembered[a]
            if for_metric is not None and for_metric != {}:
                metric.update(b, for_metric)
            if spec.task != "anomaly":
                model.learn_one(x, b)
    return preds, metric


def comparable(prediction: dict[str, Any]) -> dict[str, Any]:
    """The fields of a published prediction that the replay reproduces."""
    out = {"y_pred": prediction["y_pred"]}
    if "proba" in prediction:
        out["proba"] = prediction["proba"]
    return out
