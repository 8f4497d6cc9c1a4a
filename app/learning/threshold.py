"""RIVERBED_THRESHOLD: the decision of a binary classifier, fixed or set for a target.

``y_pred`` is the positive class when the positive class's probability is above the
threshold. A number fixes it. A target sets it on the candidate's own scores over the
rolling window (``RIVERBED_METRIC_WINDOW``) and revises it after every event that adds
to that window, so it follows the model as it learns:

- ``fpr:a``: over the N negatives of the window, k = floor(a N); the threshold is the
  (k+1)-th largest negative score, alert above it (ties at it give fewer false alerts).
- ``recall:r``: over the P positives, the ceil(r P)-th largest positive score; alert at
  or above it.
- ``alert_rate:q``: as ``fpr`` over the scores of *all* the window's predictions,
  labelled or not (an alert budget needs no label).

Until the window holds enough of what the target is set on (1/a negatives, 1/(1-r)
positives, 1/q predictions), there is no threshold and no decision. Each decision is
scored against its label when it comes: the realised false-positive rate and recall
over the window are what ``/models`` shows next to the threshold.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, NamedTuple

__all__ = ["Decided", "Threshold", "parse_threshold"]

RULES = ("fpr", "recall", "alert_rate")


class Decided(NamedTuple):
    """What a candidate answered for an event under RIVERBED_THRESHOLD: its
    probabilities and its decision (the class, or None while it has no threshold)."""

    proba: dict[Any, float]
    y_pred: Any


def parse_threshold(value: str) -> tuple[str, float] | None:
    """``RIVERBED_THRESHOLD`` as ``(rule, target)``; None when empty (the argmax).

    Examples
    --------
    >>> parse_threshold("0.3"), parse_threshold("fpr:0.01"), parse_threshold("")
    (('fixed', 0.3), ('fpr', 0.01), None)
    >>> parse_threshold("fpr:2")
    Traceback (most recent call last):
    ...
    ValueError: 'fpr:2': the target must be between 0 and 1 (e.g. fpr:0.01)

    """
    value = value.strip().lower()
    if not value:
        return None
    rule, sep, target = value.partition(":")
    if not sep:
        rule, target = "fixed", value
    elif rule not in RULES:
        msg = f"{value!r} is a number or one of fpr:, recall:, alert_rate: with a target"
        raise ValueError(msg)
    try:
        t = float(target)
    except ValueError:
        t = math.nan
    if not 0 < t < 1:
        example = "0.5" if rule == "fixed" else f"{rule}:0.01"
        msg = f"{value!r}: the target must be between 0 and 1 (e.g. {example})"
        raise ValueError(msg)
    return rule, t


class Threshold:
    """One candidate's decision rule and the windows it is set and judged on.

    Examples
    --------
    >>> t = Threshold("fpr", 0.25, window=8)
    >>> t.decide({False: 0.9, True: 0.1}).y_pred is None  # no negatives seen yet
    True
    >>> for s in (0.1, 0.2, 0.3, 0.4):
    ...     t.scored(False, Decided({True: s}, None))
    >>> t.value, t.decide({True: 0.35}).y_pred, t.decide({True: 0.45}).y_pred
    (0.3, True, True)

    """

    def __init__(self, rule: str, target: float, *, window: int) -> None:
        self.rule = rule
        self.target = target
        self.window = window
        self.value: float | None = target if rule == "fixed" else None
        # Imported here: judgment's metrics are River's (river.metrics pulls scipy.stats,
        # ~0.7 s), which parse_threshold, the settings' check in every command, needs not.
        from riverbed.learning.judgment import ScoreWindow

        self.scores = ScoreWindow(window or None)  # labelled (fpr, recall) or all (alert_rate)
        # (positive, alerted) of the window's decided events, and their four counts.
        self.outcomes: deque[tuple[bool, bool]] = deque()
        self.counts = {"tp": 0, "fp": 0, "tn": 0, "fn": 0}

    def decide(self, proba: dict[Any, float], *, record: bool = True) -> Decided:
        """The decision for probabilities ``proba`` with the threshold in force;
        ``record=False`` (``POST /predict``) leaves the alert-rate window as it is."""
        score = float(proba.get(True, 0.0)) if proba else 0.0
        if self.rule == "alert_rate" and record:
            self.scores.add(score, False)
            self._revise()
        tau = self.value
        if tau is None or not proba:
            return Decided(proba, None)
        alert = score >= tau if self.rule == "recall" else score > tau
        positive = next((k for k in proba if k == True), True)  # noqa: E712 - 1 too
        negative = next((k for k in proba if k != positive), not positive)
        if isinstance(positive, int) and not isinstance(positive, bool):
            negative = 0
        return Decided(proba, positive if alert else negative)

    def scored(self, y: Any, pred: Decided) -> None:
        """A label came for a prediction this rule decided: revise and count."""
        positive = y == True  # noqa: E712 - True and 1
        if self.rule in ("fpr", "recall"):
            self.scores.add(float(pred.proba.get(True, 0.0)) if pred.proba else 0.0, positive)
            self._revise()
        if pred.y_pred is None:
            return
        alerted = pred.y_pred == True  # noqa: E712
        self.outcomes.append((positive, alerted))
        self._count(positive, alerted, 1)
        if self.window and len(self.outcomes) > self.window:
            self._count(*self.outcomes.popleft(), -1)

    def _count(self, positive: bool, alerted: bool, sign: int) -> None:
        key = ("tp" if alerted else "fn") if positive else ("fp" if alerted else "tn")
        self.counts[key] += sign

    def _revise(self) -> None:
        s, rule, target = self.scores, self.rule, self.target
        if rule == "recall":
            enough = s.positives >= math.ceil(1 / (1 - target) - 1e-9)
            self.value = s.threshold_for_recall(target) if enough else None
        elif rule in ("fpr", "alert_rate"):
            enough = s.negatives >= math.ceil(1 / target - 1e-9)
            self.value = s.threshold_for_fpr(target) if enough else None

    def describe(self) -> dict[str, Any]:
        """``/models``: the rule, the threshold in force, what it realised over the window."""
        c = self.counts
        negatives, positives = c["fp"] + c["tn"], c["tp"] + c["fn"]
        value = self.value
        return {
            "rule": self.rule,
            "target": self.target,
            "value": value if value is None or math.isfinite(value) else None,
            "decided": negatives + positives,
            "fpr": c["fp"] / negatives if negatives else None,
            "recall": c["tp"] / positives if positives else None,
            "alert_rate": (c["tp"] + c["fp"]) / (negatives + positives)
            if negatives + positives
            else None,
        }
