"""A model trained elsewhere, checked before it joins a partition (``riverbed import``)."""

from __future__ import annotations

import pickle
from typing import Any

from river import base

from riverbed.exceptions import RiverbedError
from riverbed.models import final_step

__all__ = ["NotAnEstimator", "loaded_estimator"]

# What a candidate of each task must be (its final step, for a pipeline).
KINDS: dict[str, tuple[type, str]] = {
    "classification": (base.Classifier, "river.base.Classifier"),
    "regression": (base.Regressor, "river.base.Regressor"),
    "anomaly": (base.AnomalyDetector, "river.base.AnomalyDetector"),
}


class NotAnEstimator(RiverbedError):
    """The file is not a River estimator of the partition's task."""


def loaded_estimator(payload: bytes, task: str) -> Any:
    """The River estimator pickled in ``payload``, if it is one of ``task``.

    Unpickling runs the file's code: the caller makes sure it may (riverbed's HTTP form
    requires ``RIVERBED_HTTP_TOKEN``).

    Examples
    --------
    >>> from river import linear_model, preprocessing
    >>> model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    >>> type(loaded_estimator(pickle.dumps(model), "classification")).__name__
    'Pipeline'
    >>> for payload, task in ((pickle.dumps(model), "regression"), (b"no", "classification")):
    ...     try:
    ...         loaded_estimator(payload, task)
    ...     except NotAnEstimator as exc:
    ...         print(exc)
    the file holds a Pipeline ending in LogisticRegression, not a river.base.Regressor (the
    partition's task is regression)
    the file is not a pickle: UnpicklingError: invalid load key, 'n'.

    """
    try:
        model = pickle.loads(payload)  # noqa: S301 - the caller is authorized (see above)
    except Exception as exc:
        msg = f"the file is not a pickle: {type(exc).__name__}: {exc}"
        raise NotAnEstimator(msg) from None
    kind, name = KINDS[task]
    est = final_step(model)
    if not isinstance(est, kind):
        ending = f" ending in {type(est).__name__}" if est is not model else ""
        msg = (
            f"the file holds a {type(model).__name__}{ending}, not a {name} (the "
            f"partition's task is {task})"
        )
        raise NotAnEstimator(msg)
    return model
