"""riverbed.learning.judgment: exact windowed metrics against scikit-learn and brute
force, on streams with many ties and rare positives; the paired tests against
independent implementations and values worked out by hand."""

from __future__ import annotations

import math
import pickle
from collections import deque
from fractions import Fraction

import numpy as np
import pytest
from river import anomaly, linear_model, metrics, preprocessing, utils
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

from riverbed.learning import judgment
from riverbed.learning.judgment import (
    AveragePrecision,
    ExactROCAUC,
    PairedTest,
    PrecisionAtRecall,
    RecallAtFPR,
    ScoreWindow,
    delong,
    mcnemar,
    paired_z,
)
from riverbed.learning.quality import log_loss

ALPHAS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
RHOS = (0.0, 0.2, 0.5, 0.8, 0.9, 1.0)


# -- independent references --------------------------------------------------------------


def brute_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    if not len(pos) or not len(neg):
        return math.nan
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return float(psi.mean())


def brute_ap(pos: np.ndarray, neg: np.ndarray) -> float:
    """sum_n (R_n - R_{n-1}) P_n over every distinct score, highest first."""
    if not len(pos):
        return math.nan
    t = np.unique(np.concatenate([pos, neg]))[::-1]
    tp = (pos[None, :] >= t[:, None]).sum(axis=1)
    fp = (neg[None, :] >= t[:, None]).sum(axis=1)
    recall = tp / len(pos)
    return float(np.sum(np.diff(recall, prepend=0.0) * tp / (tp + fp)))


def _candidates(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    return np.concatenate([[-math.inf, math.inf], np.unique(np.concatenate([pos, neg]))])


def brute_fpr_rule(pos: np.ndarray, neg: np.ndarray, alpha: float) -> float:
    """The best recall of "alert if s > t" with FPR <= alpha, over every candidate t."""
    t = _candidates(pos, neg)
    allowed = (neg[None, :] > t[:, None]).sum(axis=1) <= alpha * len(neg) + 1e-9
    return float(((pos[None, :] > t[allowed][:, None]).sum(axis=1) / len(pos)).max())


def brute_recall_rule(pos: np.ndarray, neg: np.ndarray, rho: float) -> tuple[float, float]:
    """The highest t of "alert if s >= t" with recall >= rho, and its precision."""
    t = _candidates(pos, neg)
    allowed = (pos[None, :] >= t[:, None]).sum(axis=1) >= rho * len(pos) - 1e-9
    best_t = float(t[allowed].max())
    tp, fp = (pos >= best_t).sum(), (neg >= best_t).sum()
    return best_t, (tp / (tp + fp) if tp + fp else math.nan)


def brute_delong(y: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> tuple[float, float, float]:
    """DeLong (1988) with O(m n) placements: (auc1, auc2, z)."""
    thetas, v10s, v01s = [], [], []
    for s in (s1, s2):
        x, yy = s[y], s[~y]
        psi = np.zeros((len(x), len(yy)))
        for i, xi in enumerate(x):
            for j, yj in enumerate(yy):
                psi[i, j] = 1.0 if xi > yj else 0.5 if xi == yj else 0.0
        thetas.append(psi.mean())
        v10s.append(psi.mean(axis=1))
        v01s.append(psi.mean(axis=0))
    m, n = len(v10s[0]), len(v01s[0])

    def cov(v: list[np.ndarray], r: int, s: int, d: int) -> float:
        return float(((v[r] - thetas[r]) * (v[s] - thetas[s])).sum() / (d - 1))

    def entry(r: int, s: int) -> float:
        return cov(v10s, r, s, m) / m + cov(v01s, r, s, n) / n

    var = entry(0, 0) + entry(1, 1) - 2 * entry(0, 1)
    return thetas[0], thetas[1], (thetas[1] - thetas[0]) / math.sqrt(var)


def stream(seed: int, size: int, rate: float, decimals: int) -> list[tuple[bool, float]]:
    """Labels with ``rate`` positives; scores that rank positives higher, rounded (ties)."""
    rng = np.random.default_rng(seed)
    ys = rng.random(size) < rate
    scores = np.round(np.clip(rng.normal(0.35 + 0.3 * ys, 0.2), 0, 1), decimals)
    return [(bool(y), float(s)) for y, s in zip(ys, scores, strict=True)]


def positive_zero(x: float) -> bool:
    return math.isnan(x) or math.copysign(1.0, x) == 1.0 or x != 0


# -- ScoreWindow and the metrics, event by event ------------------------------------------


@pytest.mark.parametrize(
    ("seed", "size", "rate", "decimals", "window"),
    [
        (1, 400, 0.03, 1, None),
        (2, 300, 0.05, 2, None),
        (3, 400, 0.03, 2, 50),
        (4, 400, 0.05, 1, 50),
        (5, 400, 0.02, 2, 200),
        (6, 300, 0.05, 1, 200),
    ],
)
def test_metrics_match_brute_force_after_every_update(
    seed: int, size: int, rate: float, decimals: int, window: int | None
) -> None:
    events = stream(seed, size, rate, decimals)
    auc, ap = ExactROCAUC(window=window), AveragePrecision(window=window)
    at_fpr = {a: RecallAtFPR(a, window=window) for a in (0.01, 0.1)}
    at_recall = {r: PrecisionAtRecall(r, window=window) for r in (0.5, 0.8)}
    kept: deque[tuple[bool, float]] = deque(maxlen=window or None)
    for i, (y, s) in enumerate(events):
        proba = {False: 1 - s, True: s}
        for m in (auc, ap, *at_fpr.values(), *at_recall.values()):
            m.update(y, proba)
        kept.append((y, s))
        ys = np.array([k[0] for k in kept])
        ss = np.array([k[1] for k in kept])
        pos, neg = ss[ys], ss[~ys]
        assert auc.get() == pytest.approx(brute_auc(pos, neg), abs=1e-12, nan_ok=True)
        assert ap.get() == pytest.approx(brute_ap(pos, neg), abs=1e-12, nan_ok=True)
        for a, m in at_fpr.items():
            want = brute_fpr_rule(pos, neg, a) if len(pos) and len(neg) else math.nan
            assert m.get() == pytest.approx(want, abs=1e-12, nan_ok=True)
        for r, m in at_recall.items():
            want = brute_recall_rule(pos, neg, r)[1] if len(pos) else math.nan
            assert m.get() == pytest.approx(want, abs=1e-12, nan_ok=True)
        for m in (auc, ap, *at_fpr.values(), *at_recall.values()):
            assert positive_zero(m.get())
        if i % 10 == 9 and 0 < len(pos) < len(ss):  # scikit-learn, every 10 updates
            assert auc.get() == pytest.approx(roc_auc_score(ys, ss), abs=1e-12)
            assert ap.get() == pytest.approx(average_precision_score(ys, ss), abs=1e-12)
    assert auc.window_size == (window or 0)


@pytest.mark.parametrize(("seed", "window"), [(11, None), (12, 60), (13, 200)])
def test_thresholds_are_the_best_ones_by_brute_force(seed: int, window: int | None) -> None:
    w = ScoreWindow(window)
    kept: deque[tuple[bool, float]] = deque(maxlen=window or None)
    for i, (y, s) in enumerate(stream(seed, 300, 0.05, 2)):
        w.add(s, y)
        kept.append((y, s))
        if i % 7:
            continue
        ss = np.array([k[1] for k in kept])
        ys = np.array([k[0] for k in kept])
        pos, neg = ss[ys], ss[~ys]
        for a in ALPHAS:
            tau = w.threshold_for_fpr(a)
            if not len(neg):
                assert tau is None
                continue
            assert tau is not None
            assert (neg > tau).sum() <= a * len(neg) + 1e-9  # realised FPR <= alpha
            if len(pos):
                best = brute_fpr_rule(pos, neg, a)
                assert (pos > tau).sum() / len(pos) == best
                assert w.recall_at_fpr(a) == best
            else:
                assert math.isnan(w.recall_at_fpr(a))
        for r in RHOS:
            tau = w.threshold_for_recall(r)
            if not len(pos):
                assert tau is None
                assert math.isnan(w.precision_at_recall(r))
                continue
            best_t, precision = brute_recall_rule(pos, neg, r)
            assert tau == best_t
            assert (pos >= tau).sum() >= r * len(pos) - 1e-9
            assert w.precision_at_recall(r) == pytest.approx(precision, nan_ok=True)


def test_threshold_edges() -> None:
    w = ScoreWindow()
    assert w.threshold_for_fpr(0.1) is None
    assert w.threshold_for_recall(0.5) is None
    for s in (0.1, 0.2, 0.2, 0.3):
        w.add(s, False)
    assert w.threshold_for_fpr(0.0) == 0.3  # alert above the highest negative
    assert w.threshold_for_fpr(0.25) == 0.2
    assert w.threshold_for_fpr(0.5) == 0.2  # tied at 0.2: only one false positive
    assert w.threshold_for_fpr(0.3 * 10 / 3) == -math.inf  # 1.0: alert on all
    w.add(0.2, True)
    assert w.threshold_for_recall(0.0) == math.inf
    assert math.isnan(w.precision_at_recall(0.0))  # alerts on nothing
    assert w.threshold_for_recall(1.0) == 0.2
    assert w.precision_at_recall(1.0) == 1 / 4  # 0.2, 0.2, 0.3 alert too
    assert w.recall_at_fpr(0.25) == 0.0  # s > 0.2
    with pytest.raises(ValueError, match="between 0 and 1"):
        w.threshold_for_fpr(-0.1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        RecallAtFPR(1.5)
    with pytest.raises(ValueError, match="NaN"):
        w.add(math.nan, True)


def test_one_class_is_nan_and_ties_count_half() -> None:
    auc, ap = ExactROCAUC(), AveragePrecision()
    assert math.isnan(auc.get()) and math.isnan(ap.get())
    assert repr(auc) == "ROCAUC: n/a" and str(ap) == "PRAUC: n/a"
    for _ in range(3):
        auc.update(False, 0.5)
        ap.update(False, 0.5)
    assert math.isnan(auc.get()) and math.isnan(ap.get())  # negatives only
    auc.update(True, 0.5)  # River's RollingROCAUC reads 0.0 here
    assert auc.get() == 0.5
    only_pos = ExactROCAUC(window=2)
    for s in (0.1, 0.9, 0.3):
        only_pos.update(True, s)
    assert math.isnan(only_pos.get())
    ap2 = AveragePrecision()
    ap2.update(True, 0.3)
    assert ap2.get() == 1.0  # no negatives: precision 1


def test_river_rollings_tie_example_is_exact_here() -> None:
    auc = ExactROCAUC()
    for y, s in [(1, 0.5), (0, 0.5), (1, 0.9), (0, 0.1)]:
        auc.update(y, s)
    assert auc.get() == 0.875  # RollingROCAUC: 0.75


def test_no_negative_zero() -> None:
    m = RecallAtFPR(0.0)
    m.update(False, 0.9)
    m.update(True, 0.1)
    assert m.get() == 0.0 and math.copysign(1.0, m.get()) == 1.0
    auc = ExactROCAUC()
    auc.update(False, 0.9)
    auc.update(True, 0.1)
    assert math.copysign(1.0, auc.get()) == 1.0
    assert repr(auc) == "ROCAUC: 0.00%"
    t = mcnemar([0, 1, 0, 1], [1, 0, 1, 0])  # b == c
    assert math.copysign(1.0, t.statistic) == 1.0 and t.p_value == 1.0


def test_predictions_accepted_and_skipped() -> None:
    auc = ExactROCAUC()
    auc.update(1, {0: 0.2, 1: 0.8})  # 0/1 labels: True == 1
    auc.update(0, {0: 0.7, 1: 0.3})
    auc.update(True, -3.5)  # an anomaly score, any real
    auc.update(False, 12.0)
    auc.update(False, {False: 1.0})  # no True key: 0.0
    for skipped in (None, {}, math.nan, {True: math.nan}):
        auc.update(True, skipped)
    assert (auc._scores.positives, auc._scores.negatives) == (2, 3)
    pos, neg = np.array([0.8, -3.5]), np.array([0.3, 12.0, 0.0])
    assert auc.get() == brute_auc(pos, neg)
    auc.update("fraud", 0.9)  # only True / 1 is positive
    assert auc._scores.negatives == 4


def test_repr_names_and_river_protocol() -> None:
    m = RecallAtFPR(0.01)
    assert repr(m) == "RecallAtFPR(0.01): n/a"
    assert PrecisionAtRecall(0.8).name == "PrecisionAtRecall(0.8)"
    assert ExactROCAUC.name == "ROCAUC" and AveragePrecision.name == "PRAUC"
    auc = ExactROCAUC()
    for y, p in [(1, 0.3), (0, 0.2), (1, 0.8), (0, 0.3), (0, 0.1)]:
        auc.update(y, p)
    assert repr(auc) == str(auc) == "ROCAUC: 91.67%"
    assert isinstance(auc, metrics.base.Metric)
    assert auc.bigger_is_better and not auc.requires_labels and not auc.works_with_weights
    assert auc.works_with(preprocessing.StandardScaler() | linear_model.LogisticRegression())
    assert auc.works_with(anomaly.HalfSpaceTrees())
    assert not auc.works_with(linear_model.LinearRegression())
    clone = RecallAtFPR(0.05, window=30).clone()
    assert (clone.fpr, clone.window_size, clone.name) == (0.05, 30, "RecallAtFPR(0.05)")
    assert ExactROCAUC(window=0).window_size == 0


def test_river_rolling_over_the_cumulative_one_matches_the_windowed_one() -> None:
    rolling = utils.Rolling(ExactROCAUC, window_size=40)
    windowed, ap_rolling = ExactROCAUC(window=40), utils.Rolling(AveragePrecision, window_size=40)
    ap_windowed = AveragePrecision(window=40)
    for y, s in stream(21, 250, 0.1, 1):
        for m in (rolling, windowed, ap_rolling, ap_windowed):
            m.update(y, s)
        assert rolling.get() == pytest.approx(windowed.get(), abs=1e-12, nan_ok=True)
        assert ap_rolling.get() == pytest.approx(ap_windowed.get(), abs=1e-12, nan_ok=True)


@pytest.mark.parametrize("ratio", [0, 10**9])
def test_average_precision_both_ways_of_counting_negatives(
    ratio: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(judgment, "_BISECT_RATIO", ratio)
    for rate, decimals in [(0.4, 1), (0.05, 2), (0.6, 2)]:
        events = stream(61, 300, rate, decimals)
        w = ScoreWindow()
        for y, s in events:
            w.add(s, y)
        ys, ss = [y for y, _ in events], [s for _, s in events]
        assert w.average_precision() == pytest.approx(average_precision_score(ys, ss), abs=1e-12)


def test_remove() -> None:
    w = ScoreWindow(window=5)
    for s, y in [(0.1, False), (0.5, True), (0.1, False), (0.3, True)]:
        w.add(s, y)
    w.remove(0.1, False)
    assert list(w._events or ()) == [(0.1, False), (0.5, True), (0.3, True)]
    assert w.auc() == 1.0
    with pytest.raises(ValueError, match=r"no negative scored 0\.7"):
        w.remove(0.7, False)
    cumulative = ScoreWindow()
    cumulative.add(0.2, True)
    with pytest.raises(ValueError, match=r"no positive scored 0\.3"):
        cumulative.remove(0.3, True)


@pytest.mark.parametrize("window", [None, 30])
def test_pickle_round_trip_keeps_the_state(window: int | None) -> None:
    events = stream(31, 200, 0.1, 1)
    metrics_ = [ExactROCAUC(window), AveragePrecision(window), RecallAtFPR(0.1, window)]
    for y, s in events[:100]:
        for m in metrics_:
            m.update(y, s)
    copies = pickle.loads(pickle.dumps(metrics_))
    for a, b in zip(metrics_, copies, strict=True):
        assert a._scores._twice_u == b._scores._twice_u
        assert list(a._scores._pos) == list(b._scores._pos)
        assert a._scores._events == b._scores._events
    for y, s in events[100:]:
        for m in (*metrics_, *copies):
            m.update(y, s)
        for a, b in zip(metrics_, copies, strict=True):
            assert a.get() == pytest.approx(b.get(), nan_ok=True)
    numpy_labels = ExactROCAUC(window=3)
    for y, s in [(np.int64(1), 0.3), (np.int64(0), np.float32(0.25)), (np.bool_(True), 0.1)]:
        numpy_labels.update(y, s)
    again = pickle.loads(pickle.dumps(numpy_labels))
    assert again._scores._events == deque([(0.3, True), (0.25, False), (0.1, True)])
    assert again.get() == numpy_labels.get() == 0.5
    big = ScoreWindow()
    for y, s in stream(32, 5000, 0.05, 3):
        big.add(s, y)
    assert len(pickle.dumps(big)) < 9 * 5000  # ~8 bytes a score


# -- paired tests --------------------------------------------------------------------------


def test_delong_by_hand() -> None:
    # Model 1: positives 0.9, 0.4 against negatives 0.5, 0.1: AUC 3/4, placements
    # V10 = (1, 1/2), V01 = (1/2, 1); model 2 separates: AUC 1, constant placements.
    # Var = (1/8)/2 + (1/8)/2 = 1/8, z = (1/4)/sqrt(1/8) = 1/sqrt(2).
    t = delong([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1], [0.9, 0.8, 0.5, 0.1])
    assert isinstance(t, PairedTest) and t.name == "DeLong"
    assert t.values == (0.75, 1.0)
    assert t.statistic == pytest.approx(1 / math.sqrt(2), abs=1e-12)
    assert t.p_value == pytest.approx(math.erfc(0.5), abs=1e-12)  # 0.4795...
    reverse = delong([1, 1, 0, 0], [0.9, 0.8, 0.5, 0.1], [0.9, 0.4, 0.5, 0.1])
    assert reverse.statistic == pytest.approx(-t.statistic) and reverse.p_value == t.p_value


@pytest.mark.parametrize(("seed", "size", "decimals"), [(41, 60, 1), (42, 150, 2), (43, 40, 1)])
def test_delong_matches_brute_force_with_ties(seed: int, size: int, decimals: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.random(size) < 0.2
    y[:2], y[2:4] = True, False
    s1 = np.round(rng.normal(0.4 + 0.2 * y, 0.25), decimals)
    s2 = np.round(rng.normal(0.4 + 0.3 * y, 0.25), decimals)
    auc1, auc2, z = brute_delong(y, s1, s2)
    t = delong(y.tolist(), s1.tolist(), s2.tolist())
    assert t.values[0] == pytest.approx(auc1, abs=1e-12)
    assert t.values[1] == pytest.approx(auc2, abs=1e-12)
    assert t.values[0] == pytest.approx(roc_auc_score(y, s1), abs=1e-12)
    assert t.statistic == pytest.approx(z, abs=1e-9)
    assert t.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), abs=1e-9)


def test_delong_degenerate_and_invalid() -> None:
    y = [1, 1, 0, 0, 0]
    s = [0.9, 0.3, 0.5, 0.1, 0.3]
    same = delong(y, s, [2 * v for v in s])  # same ranks: variance 0, AUCs equal
    assert (same.statistic, same.p_value) == (0.0, 1.0)
    tied = delong([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1], [0.5] * 4)  # constant placements
    assert tied.values == (1.0, 0.5)
    assert (tied.statistic, tied.p_value) == (-math.inf, 0.0)
    with pytest.raises(ValueError, match="2 positives"):
        delong([1, 0, 0, 0], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="same length"):
        delong([1, 1, 0, 0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="NaN"):
        delong([1, 1, 0, 0], [0.1, math.nan, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4])


def test_paired_z() -> None:
    rng = np.random.default_rng(51)
    a = rng.random(200)
    b = a - 0.05 + rng.normal(0, 0.2, 200)
    t = paired_z(a.tolist(), b.tolist())
    d = a - b
    z = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    assert t.name == "paired z"
    assert t.statistic == pytest.approx(z, abs=1e-12)
    assert t.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), abs=1e-12)
    assert t.values == pytest.approx((a.mean(), b.mean()))
    assert paired_z([1.0, 2.0], [0.5, 1.5], name="x") == PairedTest("x", math.inf, 0.0, (1.5, 1.0))
    assert paired_z([1.0, 2.0], [1.0, 2.0]).statistic == 0.0
    with pytest.raises(ValueError, match=">= 2 events"):
        paired_z([1.0], [2.0])


@pytest.mark.parametrize(("b", "c"), [(1, 3), (0, 0), (7, 2), (5, 5), (12, 12), (0, 24)])
def test_mcnemar_exact_branch(b: int, c: int) -> None:
    both_right, both_wrong = 6, 4
    err1 = [0] * both_right + [1] * both_wrong + [0] * b + [1] * c
    err2 = [0] * both_right + [1] * both_wrong + [1] * b + [0] * c
    t = mcnemar(err1, [bool(e) for e in err2])
    chi2 = max(abs(b - c) - 1, 0) ** 2 / (b + c) if b + c else 0.0
    assert t.name == "McNemar"
    assert t.statistic == (chi2 if c > b else -chi2 if b > c else 0.0)
    p = stats.binomtest(min(b, c), b + c, 0.5).pvalue if b + c else 1.0
    assert t.p_value == pytest.approx(p, abs=1e-12)
    n = len(err1)
    assert t.values == pytest.approx((1 - (both_wrong + c) / n, 1 - (both_wrong + b) / n))


def test_mcnemar_by_hand_and_chi2_branch() -> None:
    t = mcnemar([1, 1, 1, 0, 0, 1], [0, 0, 0, 0, 1, 1])  # b = 1, c = 3
    exact = Fraction(2 * (1 + 4), 2**4)
    assert (t.statistic, t.p_value) == (0.25, float(exact))
    b, c = 10, 25
    err1 = [0.0] * b + [1.0] * c + [0.0] * 50
    err2 = [1.0] * b + [0.0] * c + [0.0] * 50
    t = mcnemar(err1, err2)
    assert t.statistic == pytest.approx(14**2 / 35)
    assert t.p_value == pytest.approx(stats.chi2.sf(14**2 / 35, 1), abs=1e-12)
    assert t.values == pytest.approx((60 / 85, 75 / 85))
    with pytest.raises(ValueError, match="0 or 1"):
        mcnemar([0.5, 1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="needs events"):
        mcnemar([], [])


def test_log_loss_matches_river() -> None:
    for y, p in [(True, 0.8), (False, 0.8), (True, 0.0), (False, 1.0), (1, 0.3), (0, 1e-20)]:
        river_loss = metrics.LogLoss()
        river_loss.update(y, p)
        assert log_loss(y, p) == pytest.approx(river_loss.get(), rel=1e-12)
