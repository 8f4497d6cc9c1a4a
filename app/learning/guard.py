"""Finite-state checks for River models: what tells a poisoned model from a healthy one.

A River model keeps running sums in plain Python floats (StandardScaler's variances,
a linear model's weights, a metric's sums). One finite but huge feature value
(``1e308``) overflows a square to ``inf``, the next update turns it into ``nan``, and
from then on every prediction of the partition is NaN. riverbed does not let such a
learn stand (:meth:`riverbed.learning.learner.PartitionLearner.process_event`): these helpers are
the cheap tests that decide when to look, and the full walk that decides for sure.
"""

from __future__ import annotations

import functools
import math
import re
import types
from collections import deque
from typing import Any

import numpy as np

from riverbed.records import HUGE  # the decoder checks with it too

__all__ = ["HUGE", "finite_prediction", "huge", "huge_value", "nonfinite", "suspect_blob"]


# Pickle's BINFLOAT opcode ("G") followed by a big-endian double whose exponent bits
# are all ones (inf or nan). Other bytes can match too; a match only means "walk".
_NONFINITE_FLOAT = re.compile(rb"G[\x7f\xff][\xf0-\xff]")

_ATOMS = (str, bytes, bool, int, type(None), complex, range)
# Code, not state: never entered.
_OPAQUE = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    functools.partial,
)


def huge(x: dict[str, Any]) -> bool:
    """Whether a feature value is a float beyond ``HUGE`` (or not finite).

    Examples
    --------
    >>> huge({"a": 1.5, "c": "FR"}), huge({"a": 1e308})
    (False, True)

    """
    for v in x.values():  # noqa: SIM110 - a loop, not any(): 2x faster (no generator)
        if type(v) is float and not -HUGE < v < HUGE:
            return True
    return False


def huge_value(y: Any) -> bool:
    """Whether a label is a float beyond ``HUGE``.

    Examples
    --------
    >>> huge_value(3.5), huge_value(-1e300), huge_value("spam")
    (False, True, False)

    """
    return type(y) is float and not -HUGE < y < HUGE


def finite_prediction(y_pred: Any, proba: dict[Any, float] | None) -> bool:
    """Whether a prediction is usable: probabilities and numbers are finite.

    Examples
    --------
    >>> finite_prediction(True, {False: 0.2, True: 0.8})
    True
    >>> finite_prediction(None, {True: float("nan")})
    False

    """
    if proba:
        return math.isfinite(sum(proba.values()))
    if isinstance(y_pred, float):
        return math.isfinite(y_pred)
    return True


def suspect_blob(blob: bytes) -> bool:
    """Whether a pickle may hold a non-finite float (then :func:`nonfinite` decides)."""
    return _NONFINITE_FLOAT.search(blob) is not None


def nonfinite(root: Any) -> bool:
    """Whether any float (or numpy float array) reachable from ``root`` is inf or nan.

    Walks containers and objects' attributes, each object once; classes, functions
    and modules are not entered.

    Examples
    --------
    >>> from riverbed import models
    >>> model = models.build("logreg")
    >>> model.learn_one({"a": 1.0}, True)
    >>> nonfinite(model)
    False
    >>> model["MixedScaler"].vars["a"] = float("inf")
    >>> nonfinite(model)
    True

    """
    seen: set[int] = set()
    todo: deque[Any] = deque([root])
    while todo:
        obj = todo.pop()
        if isinstance(obj, float):
            if not math.isfinite(obj):
                return True
            continue
        if isinstance(obj, _ATOMS) or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, dict):
            todo.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset | deque):
            todo.extend(obj)
        elif isinstance(obj, np.ndarray):
            if obj.dtype.kind in "fc" and not np.isfinite(obj).all():
                return True
            if obj.dtype.kind == "O":
                todo.extend(obj.ravel().tolist())
        elif isinstance(obj, _OPAQUE):
            continue
        else:
            attrs = getattr(obj, "__dict__", None)
            if attrs is not None:
                todo.extend(attrs.values())
            slotted = False
            for cls in type(obj).__mro__:
                for name in getattr(cls, "__slots__", ()):
                    slotted = True
                    if isinstance(name, str) and hasattr(obj, name):
                        todo.append(getattr(obj, name))
            if attrs is None and not slotted:
                # An extension type (River's Rust VectorDict holds linear weights): its
                # state is what it pickles.
                try:
                    reduced = obj.__reduce_ex__(4)
                except Exception:  # noqa: S112 - not picklable: nothing to walk
                    continue
                if isinstance(reduced, tuple):
                    todo.extend(reduced[1:3])
    return False
