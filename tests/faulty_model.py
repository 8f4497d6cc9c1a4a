"""A River classifier that fails on purpose: feature ``boom_predict`` or ``boom_learn``.

Used as ``RIVERBED_MODEL=tests.faulty_model:build`` to check that a model error on one
record sends that record to the dead-letter topic and the worker goes on; and
``tests.faulty_model:unpicklable``, a model no snapshot can be taken of, which a worker
refuses at start-up; ``tests.faulty_model:slow_logreg``, the catalog's logreg 1 ms slower
per record, so that a worker falls behind its stream.
"""

from __future__ import annotations

import threading
import time
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


class Unpicklable(linear_model.LogisticRegression):
    """Predicts and learns, but holds a lock: ``pickle`` refuses it."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()


def unpicklable() -> Unpicklable:
    return Unpicklable()


def dies_in_a_worker_process() -> Any:
    """logreg, except in a supervisor's worker process, which it ends (exit status 3):
    the supervisor restarts it until the intensity is exceeded."""
    import os

    if os.environ.get("RIVERBED_GROUP_INSTANCE_ID"):
        os._exit(3)
    from riverbed import models

    return models.build("logreg")


def logreg_twin() -> Any:
    """The catalog's logreg under another name: a challenger that never wins."""
    from riverbed import models

    return models.build("logreg")


class Segfaults(linear_model.LogisticRegression):
    """logreg whose ``learn_one`` ends the process with SIGSEGV on a record with a
    ``poison`` feature, as a bug in a model's C extension would: no Python exception."""

    def learn_one(self, x: dict[str, Any], y: Any, w: float = 1.0) -> None:
        if "poison" in x:
            import ctypes

            ctypes.string_at(0)  # reads address 0: SIGSEGV
        super().learn_one(x, y, w)


def segfaults_on_poison() -> Segfaults:
    return Segfaults()


class SlowLogisticRegression(linear_model.LogisticRegression):
    """River's LogisticRegression, 1 ms longer per ``learn_one``: what a heavier model
    costs a worker's loop (its predictions and learning are River's own)."""

    def learn_one(self, x: dict[str, Any], y: Any, w: float = 1.0) -> None:
        time.sleep(0.001)  # the model's cost, held on the loop as a model's CPU would be
        super().learn_one(x, y, w)


def slow_logreg() -> Any:
    """The catalog's logreg (the offline replay's model), its last step slow: the agent
    falls behind and the consumer waits on its full queue."""
    from riverbed import models

    model = models.build("logreg")
    model.steps["LogisticRegression"].__class__ = SlowLogisticRegression
    return model
