"""Exact, incremental quality metrics for binary classifiers with rare positives, and
paired significance tests to compare two models on the same events.

Why not River's own? On a stream with few positives they mislead:

- ``metrics.ROCAUC`` keeps one confusion matrix per threshold (10 by default) and
  integrates the trapezoids between them: scores within a bin count as tied, and scores
  outside [0, 1] (anomaly scores) fall off the grid. On a fraud stream it read 0.654
  where the exact AUC was 0.813.
- ``metrics.RollingROCAUC`` is exact without ties, but adds a tie's half with integer
  truncation (one positive and one negative at 0.5 give 0.0, not 0.5), and returns 0.0,
  not NaN, while the window holds one class only.
- ``metrics.RollingPRAUC`` is a trapezoid under a running-max precision envelope, not
  average precision.

:class:`ScoreWindow` keeps the labelled scores of the last ``window`` events (or of all
of them) in two sorted lists, and the Mann-Whitney count of correctly ordered
(positive, negative) pairs up to date in O(log n) an event: the ROC AUC is exact at any
moment, ties counted as halves. Average precision (as scikit-learn computes it) and the
operating points (recall at a false-positive rate, precision at a recall) are read from
the sorted lists on demand. :class:`ExactROCAUC`, :class:`AveragePrecision`,
:class:`RecallAtFPR` and :class:`PrecisionAtRecall` wrap it as River metrics: they take
probabilities (``requires_labels`` is False) or anomaly scores, cumulative or over the
last ``window`` updates, and read NaN (``n/a``) while undefined, never -0.0.

The paired tests compare model 1 with model 2 scored on the same events, and all
follow one sign convention: a **positive statistic favours model 2**.

- :func:`delong`: DeLong's test for two correlated ROC AUCs (DeLong et al., Biometrics
  1988), in O(N log N) with Sun & Xu's midranks (IEEE SPL 2014);
  ``z = (auc2 - auc1) / sd``.
- :func:`paired_z`: a z on per-event losses, ``d = loss1 - loss2`` (smaller losses are
  better, so d > 0 favours model 2).
- :func:`mcnemar`: McNemar's test on 0/1 errors; the chi-square carries the sign of
  ``c - b`` (c: events model 2 got right and model 1 wrong).

Each returns a :class:`PairedTest` with the two models' values of the metric over
those events. Events that are correlated in time (bursts, days) make the p-values too
small: the tests assume independent events.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from river import base
from river.metrics.base import Metric
from sortedcontainers import SortedList

__all__ = [
    "AveragePrecision",
    "ExactROCAUC",
    "PairedTest",
    "PrecisionAtRecall",
    "RecallAtFPR",
    "ScoreWindow",
    "delong",
    "mcnemar",
    "paired_z",
]

_NAN = math.nan
# Below this many negatives per distinct positive score, average_precision bisects the
# negatives' SortedList per score; above, it copies them into an array (O(N) but vectorised).
_BISECT_RATIO = 16


def _fraction_check(value: float, what: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        msg = f"{what} must be between 0 and 1, got {value!r}"
        raise ValueError(msg)
    return value


class ScoreWindow:
    """The labelled scores of the last ``window`` events (None or 0: of all events).

    The scores of positives and of negatives are kept in two sorted lists, and twice the
    Mann-Whitney U (pairs ordered right count 2, tied pairs 1) is kept up to date, so the
    exact ROC AUC costs O(1) to read and O(log n) an event to maintain.

    Parameters
    ----------
    window
        How many of the latest events are kept; None or 0 keeps all (cumulative).

    Examples
    --------
    >>> w = ScoreWindow()
    >>> for s, y in [(0.9, True), (0.5, False), (0.5, True), (0.1, False)]:
    ...     w.add(s, y)
    >>> w.auc(), w.average_precision()
    (0.875, 0.8333333333333333)
    >>> w.threshold_for_fpr(0.5), w.recall_at_fpr(0.5)  # alert when score > 0.1
    (0.1, 1.0)
    >>> w = ScoreWindow(window=2)
    >>> for s, y in [(0.9, True), (0.5, False), (0.1, False)]:
    ...     w.add(s, y)
    >>> w.positives, w.negatives, w.auc()
    (0, 2, nan)

    """

    __slots__ = ("_events", "_neg", "_pos", "_twice_u", "window")

    def __init__(self, window: int | None = None) -> None:
        if window is not None and window < 0:
            msg = f"window must be None or >= 0, got {window!r}"
            raise ValueError(msg)
        self.window: int = int(window or 0)
        self._pos: SortedList = SortedList()
        self._neg: SortedList = SortedList()
        self._twice_u = 0
        self._events: deque[tuple[float, bool]] | None = deque() if self.window else None

    # -- updates ---------------------------------------------------------------------

    def add(self, score: float, positive: bool) -> None:
        """Add one labelled score (and drop the oldest when the window is full).

        Raises
        ------
        ValueError
            When ``score`` is NaN (it has no place in an order).

        """
        if score != score:  # noqa: PLR0124 - NaN, faster than math.isnan
            msg = "a NaN score cannot be ranked"
            raise ValueError(msg)
        if positive:
            neg = self._neg
            # 2 * #neg < s + #neg == s
            self._twice_u += neg.bisect_left(score) + neg.bisect_right(score)
            self._pos.add(score)
        else:
            pos = self._pos
            # 2 * #pos > s + #pos == s
            self._twice_u += 2 * len(pos) - pos.bisect_left(score) - pos.bisect_right(score)
            self._neg.add(score)
        events = self._events
        if events is not None:
            events.append((score, positive is True or bool(positive)))
            if len(events) > self.window:
                old, old_positive = events.popleft()
                self._discard(old, old_positive)

    def remove(self, score: float, positive: bool) -> None:
        """Remove one labelled score added before (the newest such one of the window).

        Raises
        ------
        ValueError
            When no such labelled score is held.

        Examples
        --------
        >>> w = ScoreWindow()
        >>> w.add(0.2, True); w.add(0.7, False); w.remove(0.7, False)
        >>> w.negatives, w.auc()
        (0, nan)

        """
        events = self._events
        if events is not None:
            item = (score, bool(positive))
            for i in range(len(events) - 1, -1, -1):
                if events[i] == item:
                    del events[i]
                    break
            else:
                msg = f"no {'positive' if positive else 'negative'} scored {score!r} is held"
                raise ValueError(msg)
        elif score not in (self._pos if positive else self._neg):
            msg = f"no {'positive' if positive else 'negative'} scored {score!r} is held"
            raise ValueError(msg)
        self._discard(score, positive)

    def _discard(self, score: float, positive: bool) -> None:
        """Remove a held score from its sorted list and its pairs from the U count."""
        if positive:
            neg = self._neg
            self._twice_u -= neg.bisect_left(score) + neg.bisect_right(score)
            self._pos.remove(score)
        else:
            pos = self._pos
            self._twice_u -= 2 * len(pos) - pos.bisect_left(score) - pos.bisect_right(score)
            self._neg.remove(score)

    # -- counts ----------------------------------------------------------------------

    @property
    def positives(self) -> int:
        """How many positives are held."""
        return len(self._pos)

    @property
    def negatives(self) -> int:
        """How many negatives are held."""
        return len(self._neg)

    def __len__(self) -> int:
        return len(self._pos) + len(self._neg)

    def __repr__(self) -> str:
        kept = f"window={self.window}" if self.window else "cumulative"
        return f"ScoreWindow({kept}, positives={self.positives}, negatives={self.negatives})"

    # -- metrics ---------------------------------------------------------------------

    def auc(self) -> float:
        """The exact ROC AUC, ties counted as halves (NaN without both classes).

        Examples
        --------
        >>> w = ScoreWindow()
        >>> w.add(0.5, True); w.add(0.5, False)
        >>> w.auc()
        0.5

        """
        p, n = len(self._pos), len(self._neg)
        if not p or not n:
            return _NAN
        return self._twice_u / (2 * p * n)

    def average_precision(self) -> float:
        """Average precision, exactly as ``sklearn.metrics.average_precision_score``.

        ``sum_n (R_n - R_{n-1}) P_n`` over the distinct scores, highest first, an alert
        being a score >= the threshold (tied scores enter together). NaN without
        positives; 1.0 without negatives.

        Examples
        --------
        >>> w = ScoreWindow()
        >>> for s, y in [(0.8, True), (0.6, False), (0.4, True), (0.2, False)]:
        ...     w.add(s, y)
        >>> w.average_precision()  # (1/2) * 1 + (1/2) * 2/3
        0.8333333333333333

        """
        p, n = len(self._pos), len(self._neg)
        if not p:
            return _NAN
        pos = np.fromiter(self._pos, dtype=float, count=p)  # ascending
        values, first = np.unique(pos, return_index=True)
        tp = p - first  # positives >= each distinct positive score
        tied = np.diff(np.append(first, p))
        below: np.ndarray  # negatives < each distinct positive score
        if n == 0:
            below = np.zeros(len(values), dtype=np.intp)
        elif n < _BISECT_RATIO * len(values):
            neg = np.fromiter(self._neg, dtype=float, count=n)
            below = np.searchsorted(neg, values, side="left")
        else:
            bisect = self._neg.bisect_left
            below = np.array([bisect(v) for v in values.tolist()], dtype=np.intp)
        fp = n - below
        return float(np.sum(tied * (tp / (tp + fp))) / p)

    def threshold_for_fpr(self, alpha: float) -> float | None:
        """The lowest threshold ``tau`` for the rule "alert if score > tau" whose
        false-positive rate on the held negatives is at most ``alpha``.

        With ``k = floor(alpha * N)`` over N negatives, ``tau`` is the (k+1)-th largest
        negative score: at most k negatives score above it. Ties at ``tau`` all stay
        below the rule (fewer false positives than allowed, never more). ``-inf`` when
        every negative may alert (k >= N); None without negatives.

        Examples
        --------
        >>> w = ScoreWindow()
        >>> for s in [0.1, 0.2, 0.3, 0.4]:
        ...     w.add(s, False)
        >>> w.threshold_for_fpr(0.25), w.threshold_for_fpr(0.2), w.threshold_for_fpr(1.0)
        (0.3, 0.4, -inf)

        """
        alpha = _fraction_check(alpha, "alpha")
        n = len(self._neg)
        if not n:
            return None
        k = math.floor(alpha * n + 1e-9)
        if k >= n:
            return -math.inf
        return float(self._neg[n - 1 - k])

    def threshold_for_recall(self, rho: float) -> float | None:
        """The highest threshold ``tau`` for the rule "alert if score >= tau" whose
        recall on the held positives is at least ``rho``.

        With ``r = ceil(rho * P)`` over P positives, ``tau`` is the r-th largest
        positive score. ``inf`` (alert on none) when r is 0; None without positives.

        Examples
        --------
        >>> w = ScoreWindow()
        >>> for s in [0.9, 0.8, 0.7, 0.6, 0.5]:
        ...     w.add(s, True)
        >>> w.threshold_for_recall(0.8), w.threshold_for_recall(0.81), w.threshold_for_recall(0)
        (0.6, 0.5, inf)

        """
        rho = _fraction_check(rho, "rho")
        p = len(self._pos)
        if not p:
            return None
        r = math.ceil(rho * p - 1e-9)
        if r <= 0:
            return math.inf
        return float(self._pos[p - r])

    def recall_at_fpr(self, fpr: float) -> float:
        """The recall of :meth:`threshold_for_fpr` ``(fpr)`` (NaN without both classes).

        Examples
        --------
        >>> w = ScoreWindow()
        >>> for s, y in [(0.9, True), (0.8, False), (0.7, True), (0.1, False)]:
        ...     w.add(s, y)
        >>> w.recall_at_fpr(0.0), w.recall_at_fpr(0.5)
        (0.5, 1.0)

        """
        p = len(self._pos)
        tau = self.threshold_for_fpr(fpr)
        if not p or tau is None:
            return _NAN
        return (p - self._pos.bisect_right(tau)) / p

    def precision_at_recall(self, recall: float) -> float:
        """The precision of :meth:`threshold_for_recall` ``(recall)``: NaN without
        positives, or when the threshold alerts on nothing.

        Examples
        --------
        >>> w = ScoreWindow()
        >>> for s, y in [(0.9, True), (0.8, False), (0.7, True), (0.1, False)]:
        ...     w.add(s, y)
        >>> w.precision_at_recall(0.5), w.precision_at_recall(1.0)
        (1.0, 0.6666666666666666)

        """
        tau = self.threshold_for_recall(recall)
        if tau is None:
            return _NAN
        tp = len(self._pos) - self._pos.bisect_left(tau)
        fp = len(self._neg) - self._neg.bisect_left(tau)
        if not tp + fp:
            return _NAN
        return tp / (tp + fp)

    # -- pickling: flat arrays of doubles, not lists of Python floats ------------------

    def __getstate__(self) -> dict[str, Any]:
        events = self._events
        return {
            "window": self.window,
            "pos": array("d", self._pos),
            "neg": array("d", self._neg),
            "twice_u": self._twice_u,
            "events": None
            if events is None
            else (array("d", [s for s, _ in events]), bytes(y for _, y in events)),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.window = state["window"]
        self._pos = SortedList(state["pos"].tolist())
        self._neg = SortedList(state["neg"].tolist())
        self._twice_u = state["twice_u"]
        events = state["events"]
        if events is None:
            self._events = None
        else:
            scores, flags = events
            self._events = deque(zip(scores.tolist(), map(bool, flags), strict=True))


def _score_of(y_pred: Any) -> float | None:
    """The score of a prediction: P(True) of a dict, a number itself; None to skip."""
    if y_pred is None:
        return None
    if isinstance(y_pred, dict):
        if not y_pred:
            return None
        score = float(y_pred.get(True, 0.0))  # True == 1: 0/1 labels work too
    else:
        score = float(y_pred)
    if score != score:  # noqa: PLR0124 - NaN has no rank
        return None
    return score


class _WindowMetric(Metric):
    """A River metric read from a :class:`ScoreWindow` of (score, label) pairs."""

    name: str = ""
    bigger_is_better = True
    requires_labels = False
    works_with_weights = False

    def __init__(self, window: int | None = None) -> None:
        self.window = window
        self._scores = ScoreWindow(window)

    @property
    def window_size(self) -> int:
        """The number of latest updates the metric covers (0: all of them)."""
        return self._scores.window

    def update(self, y_true: Any, y_pred: Any) -> None:
        """Add one event: its label and its prediction (a dict of probabilities, read at
        key True, or a score). None, ``{}`` and NaN scores are skipped: they do not count
        in the window either."""
        score = _score_of(y_pred)
        if score is not None:
            self._scores.add(score, y_true == 1)  # True == 1: bool and 0/1 labels

    def revert(self, y_true: Any, y_pred: Any) -> None:
        """Undo an :meth:`update` (what ``utils.Rolling`` calls on the oldest one)."""
        score = _score_of(y_pred)
        if score is not None:
            self._scores.remove(score, y_true == 1)

    def get(self) -> float:  # pragma: no cover - each metric defines it
        raise NotImplementedError

    def works_with(self, model: Any) -> bool:
        """Binary classifiers (probabilities) and anomaly detectors (scores), as for
        River's ROCAUC."""
        return isinstance(model, base.Classifier | base.AnomalyDetector | base.AnomalyFilter)

    def __repr__(self) -> str:
        value = self.get()
        return f"{self.name}: {'n/a' if math.isnan(value) else f'{value:.2%}'}"

    def __str__(self) -> str:
        return repr(self)


class ExactROCAUC(_WindowMetric):
    """The exact ROC AUC (ties count half), cumulative or over the last ``window``
    updates; O(log n) an update, O(1) a read. NaN until both classes are seen.

    Examples
    --------
    >>> auc = ExactROCAUC()
    >>> for y, p in [(1, 0.3), (0, 0.2), (1, 0.8), (0, 0.3), (0, 0.1)]:
    ...     auc.update(y, {True: p, False: 1 - p})
    >>> auc
    ROCAUC: 91.67%
    >>> rolling = ExactROCAUC(window=2)
    >>> rolling.update(True, 0.9); rolling.update(False, 0.1); rolling.update(False, 0.2)
    >>> rolling, rolling.window_size
    (ROCAUC: n/a, 2)

    """

    name = "ROCAUC"

    def get(self) -> float:
        """The exact ROC AUC (NaN while one class only)."""
        return self._scores.auc()


class AveragePrecision(_WindowMetric):
    """Average precision (the area under the PR curve, as scikit-learn's
    ``average_precision_score``), cumulative or over the last ``window`` updates.
    O(log n) an update; a read sorts out the distinct positive scores, O(P log n).

    Examples
    --------
    >>> ap = AveragePrecision()
    >>> for y, p in [(1, 0.8), (0, 0.6), (1, 0.4), (0, 0.2)]:
    ...     ap.update(y, p)
    >>> ap
    PRAUC: 83.33%

    """

    name = "PRAUC"

    def get(self) -> float:
        """Average precision (NaN without positives)."""
        return self._scores.average_precision() + 0.0


class RecallAtFPR(_WindowMetric):
    """The recall at the lowest threshold whose false-positive rate is at most ``fpr``
    (see :meth:`ScoreWindow.threshold_for_fpr`), cumulative or over the last ``window``.

    Examples
    --------
    >>> m = RecallAtFPR(0.5)
    >>> for y, p in [(1, 0.9), (0, 0.8), (1, 0.7), (0, 0.1)]:
    ...     m.update(y, p)
    >>> m
    RecallAtFPR(0.5): 100.00%

    """

    name = "RecallAtFPR"

    def __init__(self, fpr: float, window: int | None = None) -> None:
        super().__init__(window)
        self.fpr = _fraction_check(fpr, "fpr")
        self.name = f"RecallAtFPR({self.fpr:g})"

    def get(self) -> float:
        """The recall at a false-positive rate <= ``fpr`` (NaN without both classes)."""
        return self._scores.recall_at_fpr(self.fpr) + 0.0


class PrecisionAtRecall(_WindowMetric):
    """The precision at the highest threshold whose recall is at least ``recall``
    (see :meth:`ScoreWindow.threshold_for_recall`), cumulative or over the last
    ``window``.

    Examples
    --------
    >>> m = PrecisionAtRecall(1.0)
    >>> for y, p in [(1, 0.9), (0, 0.8), (1, 0.7), (0, 0.1)]:
    ...     m.update(y, p)
    >>> m
    PrecisionAtRecall(1): 66.67%

    """

    name = "PrecisionAtRecall"

    def __init__(self, recall: float, window: int | None = None) -> None:
        super().__init__(window)
        self.recall = _fraction_check(recall, "recall")
        self.name = f"PrecisionAtRecall({self.recall:g})"

    def get(self) -> float:
        """The precision at a recall >= ``recall`` (NaN without positives)."""
        return self._scores.precision_at_recall(self.recall) + 0.0


# -- paired tests ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PairedTest:
    """The outcome of a paired test of model 1 against model 2 on the same events.

    Attributes
    ----------
    name
        The test.
    statistic
        z (or McNemar's signed chi-square): **positive when it favours model 2**.
    p_value
        Two-sided.
    values
        The metric of model 1 and of model 2 over those events (AUCs, mean losses,
        accuracies).

    """

    name: str
    statistic: float
    p_value: float
    values: tuple[float, float]


def _two_sided(z: float) -> float:
    """P(|Z| >= |z|) for a standard normal Z."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def _degenerate(diff: float) -> float:
    """The statistic when the variance is 0: 0 when no difference, else +-inf."""
    return 0.0 if diff == 0 else math.copysign(math.inf, diff)


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


def delong(y: Sequence[bool], s1: Sequence[float], s2: Sequence[float]) -> PairedTest:
    """DeLong's test of two correlated ROC AUCs: two models scoring the same events.

    Sun & Xu's midrank algorithm gives DeLong's placements in O(N log N):
    ``V10 = (T_z - T_x) / n`` for the m positives, ``V01 = 1 - (T_z - T_y) / m`` for the
    n negatives (T_z: midranks among all, T_x / T_y: within the class), the covariance
    of the two AUCs ``S = S10 / m + S01 / n`` (divisors m-1, n-1), and
    ``z = (auc2 - auc1) / sqrt(S11 + S22 - 2 S12)``. A positive z favours model 2. A
    variance of 0 gives z = 0 when the AUCs are equal, else +-inf with p = 0.

    Parameters
    ----------
    y
        The labels (truthy: positive).
    s1, s2
        The scores of model 1 and of model 2 for the same events.

    Raises
    ------
    ValueError
        With fewer than 2 positives or 2 negatives, lengths that differ, or NaN scores.

    Examples
    --------
    >>> y = [1, 1, 1, 0, 0, 0, 0]
    >>> t = delong(y, [0.9, 0.4, 0.3, 0.5, 0.2, 0.1, 0.6], [0.9, 0.8, 0.7, 0.5, 0.2, 0.1, 0.6])
    >>> t.name, t.values, round(t.statistic, 4), round(t.p_value, 4)
    ('DeLong', (0.6666666666666666, 1.0), 1.3093, 0.1904)

    """
    labels = np.asarray(y, dtype=bool)
    a, b = np.asarray(s1, dtype=float), np.asarray(s2, dtype=float)
    if not labels.ndim == a.ndim == b.ndim == 1 or not len(labels) == len(a) == len(b):
        msg = "y, s1 and s2 must be sequences of the same length"
        raise ValueError(msg)
    scores = np.stack([a, b])
    if np.isnan(scores).any():
        msg = "scores must not be NaN"
        raise ValueError(msg)
    m = int(labels.sum())
    n = labels.shape[0] - m
    if m < 2 or n < 2:
        msg = f"DeLong's test needs >= 2 positives and >= 2 negatives, got {m} and {n}"
        raise ValueError(msg)
    x, yy = scores[:, labels], scores[:, ~labels]
    v10 = np.empty((2, m))
    v01 = np.empty((2, n))
    aucs = np.empty(2)
    for k in range(2):
        tz = _midranks(np.concatenate([x[k], yy[k]]))
        tx, ty = _midranks(x[k]), _midranks(yy[k])
        aucs[k] = (tz[:m].sum() - m * (m + 1) / 2.0) / (m * n)
        v10[k] = (tz[:m] - tx) / n
        v01[k] = 1.0 - (tz[m:] - ty) / m
    s = np.cov(v10) / m + np.cov(v01) / n
    var = float(s[0, 0] + s[1, 1] - 2.0 * s[0, 1])
    auc1, auc2 = float(aucs[0]), float(aucs[1])
    diff = auc2 - auc1
    if not var > 0.0:
        z = _degenerate(diff)
        return PairedTest("DeLong", z, 1.0 if z == 0 else 0.0, (auc1, auc2))
    z = diff / math.sqrt(var)
    return PairedTest("DeLong", z, _two_sided(z), (auc1, auc2))


def paired_z(loss1: Sequence[float], loss2: Sequence[float], name: str = "paired z") -> PairedTest:
    """A z test on per-event losses of two models on the same events.

    ``d = loss1 - loss2`` (positive: model 2 lost less), ``z = mean(d) / (sd(d) /
    sqrt(n))`` with ``sd`` of ddof 1; a positive z favours model 2. The values are the
    two mean losses. A variance of 0 gives z = 0 when the means are equal, else +-inf
    with p = 0. Autocorrelated losses make p too small (see Diebold & Mariano, 1995).

    Raises
    ------
    ValueError
        With fewer than 2 events, or lengths that differ.

    Examples
    --------
    >>> t = paired_z([0.5, 0.7, 0.4, 0.6], [0.3, 0.4, 0.3, 0.4])
    >>> t.values, round(t.statistic, 4), round(t.p_value, 4)
    ((0.55, 0.35), 4.899, 0.0)

    """
    a = np.asarray(loss1, dtype=float)
    b = np.asarray(loss2, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        msg = "loss1 and loss2 must be sequences of the same length"
        raise ValueError(msg)
    count = a.shape[0]
    if count < 2:
        msg = f"a paired z needs >= 2 events, got {count}"
        raise ValueError(msg)
    d = a - b
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    values = (float(a.mean()), float(b.mean()))
    if not sd > 0.0:
        z = _degenerate(mean)
        return PairedTest(name, z, 1.0 if z == 0 else 0.0, values)
    z = mean / (sd / math.sqrt(count))
    return PairedTest(name, z, _two_sided(z), values)


def mcnemar(err1: Sequence[bool | float], err2: Sequence[bool | float]) -> PairedTest:
    """McNemar's test on the 0/1 errors of two models on the same events.

    ``b``: events model 1 got right and model 2 wrong; ``c``: model 1 wrong and model 2
    right. ``chi2 = max(|b - c| - 1, 0)^2 / (b + c)`` (0 when b + c is 0); the p-value
    is the chi-square's (1 d.f.) when b + c >= 25, else the exact two-sided binomial
    ``min(1, 2 * sum_{i <= min(b, c)} C(b + c, i) / 2^(b + c))``. The statistic is chi2
    with the sign of ``c - b``: positive favours model 2. The values are the two
    accuracies.

    Raises
    ------
    ValueError
        Without events, with lengths that differ, or errors other than 0 and 1.

    Examples
    --------
    >>> t = mcnemar([1, 1, 1, 0, 0, 1], [0, 0, 0, 0, 1, 1])  # b = 1, c = 3
    >>> t.name, t.statistic, t.p_value, t.values
    ('McNemar', 0.25, 0.625, (0.3333333333333333, 0.6666666666666667))

    """
    e1 = np.asarray(err1, dtype=float)
    e2 = np.asarray(err2, dtype=float)
    if e1.shape != e2.shape or e1.ndim != 1:
        msg = "err1 and err2 must be sequences of the same length"
        raise ValueError(msg)
    if not e1.shape[0]:
        msg = "McNemar's test needs events"
        raise ValueError(msg)
    if not (np.isin(e1, (0.0, 1.0)).all() and np.isin(e2, (0.0, 1.0)).all()):
        msg = "errors must be 0 or 1 (or bools)"
        raise ValueError(msg)
    w1, w2 = e1 == 1.0, e2 == 1.0
    b = int(np.count_nonzero(~w1 & w2))
    c = int(np.count_nonzero(w1 & ~w2))
    discordant = b + c
    chi2 = max(abs(b - c) - 1, 0) ** 2 / discordant if discordant else 0.0
    if discordant >= 25:
        p = math.erfc(math.sqrt(chi2 / 2.0))
    else:
        tail = sum(math.comb(discordant, i) for i in range(min(b, c) + 1))
        p = min(1.0, 2 * tail / 2**discordant)
    statistic = chi2 if c > b else -chi2 if b > c else 0.0
    values = (1.0 - float(e1.mean()), 1.0 - float(e2.mean()))
    return PairedTest("McNemar", statistic + 0.0, p, values)
