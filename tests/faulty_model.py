"""A River classifier that fails on purpose: feature ``boom_predict`` or ``boom_learn``.

Used as ``RIVERBED_MODEL=tests.faulty_model:build`` to check that a model error on one
record sends that record to the dead-letter topic and the worker goes on.
"""

from __future__ import annotations

from typing import Any

from river import linear_model


class FaultyClassifier(linear_model.LogisticRegression):
    def predict_proba_one(self, x: dict[str, Any]) -> dict[Any, float]:
        if "boom_predict" in x:
            msg = "boom at predict"
            raise RuntimeError(msg)
        return super().predict_proba_one(x)

    def learn_one(self, x: dict[str, Any], y: Any, w: float = 1.0) -> None:
        if "boom_learn" in x:
            msg = "boom at learn"
            raise RuntimeError(msg)
        super().learn_one(x, y, w)


def build() -> FaultyClassifier:
    return FaultyClassifier()
