"""The loader of ``riverbed export --format mlflow``'s MLflow model: shipped verbatim as
``code/riverbed_pyfunc.py`` in the model directory, it is the ``loader_module`` of its
``python_function`` flavour, which ``mlflow.pyfunc.load_model`` imports and calls
(``_load_pyfunc(data_path)``).

It runs where riverbed is not installed: it imports nothing of riverbed, only the
standard library, and river through the pickle it loads (``data/model.pkl``, the
portable pickle of :func:`riverbed.serving.export.dumps`); pandas only when it is given
a DataFrame, which imported it already.

``predict(model_input)`` takes a pandas DataFrame (one event a row, one feature a
column), a list of feature dicts or one feature dict. A row's missing values (None,
NaN, ``pd.NA``) are left out of its features, as riverbed leaves out a null, and numpy
scalars become Python's. It answers one record an event, as a DataFrame for a
DataFrame (the input's index kept), else a list of dicts (a dict for a dict):

- a classifier: ``y_pred`` (River's ``predict_one``: the most probable class) and
  ``proba_<class>``, River's ``predict_proba_one``, one column a class seen in the
  batch (sorted; 0.0 where a row's answer leaves the class out); no ``proba_`` column
  for a classifier without probabilities;
- a regressor: ``y_pred``;
- an anomaly detector: ``score`` (``score_one``; higher is more anomalous).

The model predicts only: it learns nothing of what it is asked.
"""

from __future__ import annotations

import json
import math
import pickle
import sys
from pathlib import Path
from typing import Any

__all__ = ["INFO_FILE", "MODEL_FILE", "RiverPyfunc", "features"]

MODEL_FILE = "model.pkl"
INFO_FILE = "riverbed.json"
TASKS = ("classification", "regression", "anomaly")


def features(row: dict[Any, Any]) -> dict[str, Any]:
    """An event's features from a row: missing values left out, numpy scalars as Python's.

    Examples
    --------
    >>> features({"amount": 3.5, "country": None, "age": float("nan"), "new": True})
    {'amount': 3.5, 'new': True}

    """
    na = getattr(sys.modules.get("pandas"), "NA", None)
    out: dict[str, Any] = {}
    for name, value in row.items():
        v = value
        if type(v).__module__ == "numpy" and hasattr(v, "item"):
            v = v.item()  # np.float64, np.int64, np.bool_ (which River takes for no number)
        if v is None or v is na or type(v).__name__ == "NaTType":
            continue
        if isinstance(v, float) and math.isnan(v):
            continue
        out[str(name)] = v
    return out


def _sorted(labels: list[Any]) -> list[Any]:
    try:
        return sorted(labels)
    except TypeError:  # labels of several types: in the order they came
        return labels


class RiverPyfunc:
    """A River model behind MLflow's ``predict`` (see the module doc)."""

    def __init__(self, model: Any, task: str, info: dict[str, Any] | None = None) -> None:
        if task not in TASKS:
            msg = f"unknown task {task!r}: one of {', '.join(TASKS)}"
            raise ValueError(msg)
        self.model = model
        self.task = task
        self.info = info or {}

    @property
    def first_column(self) -> str:
        """``score`` for an anomaly detector, else ``y_pred``."""
        return "score" if self.task == "anomaly" else "y_pred"

    def predict_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One record of predictions an event's features (see the module doc)."""
        model = self.model
        if self.task == "regression":
            return [{"y_pred": model.predict_one(x)} for x in rows]
        if self.task == "anomaly":
            return [{"score": model.score_one(x)} for x in rows]
        out: list[dict[str, Any]] = []
        probas: list[dict[Any, float] | None] = []
        classes: dict[Any, None] = {}
        for x in rows:
            try:
                proba = model.predict_proba_one(x)
            except NotImplementedError:
                proba = None
            probas.append(proba)
            classes.update(dict.fromkeys(proba or ()))
            out.append({"y_pred": model.predict_one(x)})
        labels = _sorted(list(classes))
        for rec, proba in zip(out, probas, strict=True):
            for c in labels:
                rec[f"proba_{c}"] = float(proba.get(c, 0.0)) if proba else 0.0
        return out

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        """MLflow's pyfunc ``predict``: a DataFrame, a list of dicts or a dict (``params``
        are not used)."""
        pd = sys.modules.get("pandas")
        if pd is not None and isinstance(model_input, pd.DataFrame):
            rows = [features(r) for r in model_input.to_dict(orient="records")]
            records = self.predict_rows(rows)
            columns = list(records[0]) if records else [self.first_column]
            return pd.DataFrame(records, index=model_input.index, columns=columns)
        if isinstance(model_input, dict):
            return self.predict_rows([features(model_input)])[0]
        if isinstance(model_input, list) and all(isinstance(r, dict) for r in model_input):
            return self.predict_rows([features(r) for r in model_input])
        msg = (
            "a River model predicts from a pandas DataFrame (a row an event, a column a "
            f"feature), a list of feature dicts or a dict, not {type(model_input).__name__}"
        )
        raise TypeError(msg)


def _load_pyfunc(data_path: str, model_config: Any = None) -> RiverPyfunc:
    """MLflow's entry point: the model of ``data_path`` (the model directory's ``data``);
    MLflow passes ``model_config`` when its caller gives one, which nothing here uses."""
    data = Path(data_path)
    info = json.loads((data / INFO_FILE).read_text(encoding="utf-8"))
    with (data / MODEL_FILE).open("rb") as fh:
        model = pickle.load(fh)  # noqa: S301 - the model's own file: loading it runs its code
    return RiverPyfunc(model, info["task"], info)
