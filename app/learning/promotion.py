"""Auto promotion: a challenger against the champion on the same labelled events,
judged by the chosen metric with a paired test suited to it.

Both candidates predicted every event of the window before learning it, so their
outcomes are paired: McNemar's test on 0/1 errors (accuracy), DeLong's test for two
correlated ROC AUCs (rocauc), a paired z on per-event losses (log loss, MAE, MSE,
RMSE). A challenger is promoted only when its value of the metric over the window is
better than the champion's and the test says so at 5% (two-sided), on a full window
holding at least ``min_positives`` events of the rarer class: on a stream with 4%
positives a window of 1,000 events holds ~40 of them, and a test on fewer says little.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

from riverbed.learning.judgment import PairedTest, delong, mcnemar, paired_z
from riverbed.learning.quality import MetricChoice

# Decided is the threshold's; named here too, where snapshots before 2026-12-06 pickled it.
from riverbed.learning.threshold import Decided

__all__ = ["SIGNIFICANCE", "Decided", "Duel", "decision_of", "score_of"]

SIGNIFICANCE = 0.05  # two-sided
# Labelled events between two looks at a duel, as a fraction of its window: DeLong's
# test costs O(W log W), too much for every event; a look every W/50 costs ~1 µs an event.
LOOKS_PER_WINDOW = 50


def decision_of(pred: Any) -> Any:
    """The class a remembered prediction decided (a dict of probabilities: its argmax)."""
    if type(pred) is Decided:
        return pred.y_pred
    if isinstance(pred, dict):
        return max(pred, key=pred.__getitem__) if pred else None
    return pred


def score_of(pred: Any) -> float | None:
    """The positive class's probability (or the anomaly score) of a prediction."""
    if type(pred) is Decided:
        pred = pred.proba
    if isinstance(pred, dict):
        return float(pred.get(True, 0.0)) if pred else None
    return None if pred is None else float(pred)


class Duel:
    """A challenger against the champion over their last ``window`` paired outcomes.

    Examples
    --------
    >>> from riverbed.learning.quality import choose
    >>> duel = Duel(100, choose("accuracy"), min_positives=10)
    >>> for i in range(100):
    ...     y = i % 4 == 0
    ...     duel.add(y, champion=(not y) if i % 3 == 0 else y, challenger=y)
    >>> v = duel.verdict()
    >>> v.name, v.values, v.p_value < 0.05, duel.favours_challenger(v)
    ('McNemar', (0.66, 1.0), True, True)

    """

    def __init__(self, window: int, choice: MetricChoice, *, min_positives: int = 0) -> None:
        self.window = window
        self.choice = choice
        self.min_positives = min_positives
        self.pairs: deque[tuple[Any, float, float]] = deque()  # (y, champion, challenger)
        self.classes: Counter[Any] = Counter()
        self.added = 0

    def _outcome(self, y: Any, pred: Any) -> float | None:
        test = self.choice.test
        if test == "mcnemar":
            decided = decision_of(pred)
            return None if decided is None else float(decided != y)
        if test == "delong":
            return score_of(pred)
        if pred is None or pred == {}:
            return None
        loss = self.choice.loss
        assert loss is not None
        return loss(y, pred.proba if type(pred) is Decided else pred)

    def add(self, y: Any, *, champion: Any, challenger: Any) -> None:
        """One labelled event both candidates predicted (their remembered predictions)."""
        a, b = self._outcome(y, champion), self._outcome(y, challenger)
        if a is None or b is None:
            return
        self.pairs.append((y, a, b))
        self.added += 1
        if "regression" not in self.choice.tasks:
            self.classes[y] += 1
        if len(self.pairs) > self.window:
            old = self.pairs.popleft()[0]
            if old in self.classes:
                self.classes[old] -= 1

    def rarer_class_count(self) -> int:
        """Events of the rarer class in the window (0 when only one class was seen)."""
        counts = [n for n in self.classes.values() if n > 0]
        return min(counts) if len(counts) >= 2 else 0

    def ready(self) -> bool:
        """Whether the window is full and holds enough of the rarer class."""
        if len(self.pairs) < self.window:
            return False
        return not self.classes or self.rarer_class_count() >= self.min_positives

    def due(self) -> bool:
        """Whether this is a labelled event the duel is looked at (every W/50 of them)."""
        return self.added % max(1, self.window // LOOKS_PER_WINDOW) == 0

    def verdict(self) -> PairedTest | None:
        """The paired test over the window, or None when it cannot be made yet."""
        if not self.ready():
            return None
        ys, a, b = zip(*self.pairs, strict=True)
        test = self.choice.test
        try:
            if test == "mcnemar":
                return mcnemar(a, b)
            if test == "delong":
                return delong([y == True for y in ys], a, b)  # noqa: E712 - 1 is True
            return paired_z(a, b, name=f"paired z on {self.choice.name} per event")
        except ValueError:  # too few of a class for DeLong, or of events for a z
            return None

    def favours_challenger(self, verdict: PairedTest) -> bool:
        """A significantly better challenger: better over the window, p < 5%."""
        champion, challenger = verdict.values
        # Losses (paired z): smaller is better; accuracy and AUC: bigger.
        better = challenger < champion if self.choice.test == "paired_z" else challenger > champion
        return bool(better and verdict.statistic > 0 and verdict.p_value < SIGNIFICANCE)
