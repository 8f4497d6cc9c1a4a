"""A payments-like stream for the judgment tests, its candidate models, and the offline
references written independently of riverbed: River's delayed evaluation order
(``stream.simulate_qa``, the loop under ``evaluate.progressive_val_score`` with
``moment`` and ``delay``), the exact AUC and the FPR threshold rule.

Models for ``RIVERBED_MODEL=tests.fraud:weak,tests.fraud:alarmist``:

- ``weak``: a logistic regression on one of the three informative features; its
  scores rank fraud poorly, and it says "not fraud" almost always.
- ``alarmist``: a logistic regression on all three, with positives weighted 10x: it
  ranks fraud far better and flags many more events as fraud, so it makes *more* 0/1
  errors at 0.5 than ``weak`` does on a 4% stream: McNemar would keep ``weak``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from river import compose, linear_model, optim, preprocessing, stream


def weak() -> Any:
    return compose.Select("f1") | preprocessing.StandardScaler() | linear_model.LogisticRegression()


def alarmist() -> Any:
    return preprocessing.StandardScaler() | linear_model.LogisticRegression(
        loss=optim.losses.Log(weight_pos=10.0)
    )


@dataclass
class Txn:
    """One event of the stream: its key, Kafka timestamp, features and true class, and
    its chargeback's timestamp (None: no chargeback)."""

    id: str
    key: bytes
    ts: int
    x: dict[str, float]
    fraud: bool
    label_ts: int | None


def payments(n: int, *, t0: int, step_ms: int, seed: int, rate: float = 0.04) -> list[Txn]:
    """``n`` transactions ``step_ms`` apart from ``t0``, ~``rate`` fraud; each fraud's
    chargeback 1-3 s after it (labels of the negatives come only by absence)."""
    rng = np.random.default_rng(seed)
    out = []
    bias = math.log(rate / (1 - rate)) - 1.2
    for i in range(n):
        f = rng.normal(size=3)
        p = 1 / (1 + math.exp(-(bias + 0.8 * f[0] + 1.6 * f[1] + 1.6 * f[2])))
        fraud = bool(rng.random() < p)
        ts = t0 + i * step_ms
        label_ts = ts + int(rng.integers(1000, 3000)) if fraud else None
        x = {"f1": float(f[0]), "f2": float(f[1]), "f3": float(f[2])}
        out.append(Txn(f"t{i}", f"k{i % 97}".encode(), ts, x, fraud, label_ts))
    return out


def learned_label(txn: Txn, wait_ms: int, default: Any) -> Any:
    """The label a mature event learns: its label if stamped by its due time."""
    if txn.label_ts is not None and txn.label_ts <= txn.ts + wait_ms:
        return txn.fraud
    return default


def exact_auc(y: Sequence[bool], s: Sequence[float]) -> float:
    """The exact ROC AUC (ties count one half), by all pairs: nothing shared with riverbed."""
    pos = np.array([v for v, t in zip(s, y, strict=True) if t])
    neg = np.array([v for v, t in zip(s, y, strict=True) if not t])
    if not len(pos) or not len(neg):
        return math.nan
    greater = (pos[:, None] > neg[None, :]).sum()
    equal = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * equal) / (len(pos) * len(neg)))


def fpr_threshold(negative_scores: Sequence[float], alpha: float) -> float | None:
    """The FPR rule: over N negatives, the (floor(alpha N)+1)-th largest score (alert
    above it); None below 1/alpha negatives."""
    n = len(negative_scores)
    if n < math.ceil(1 / alpha - 1e-9):
        return None
    k = math.floor(alpha * n + 1e-9)
    ranked = sorted(negative_scores, reverse=True)
    return ranked[k] if k < n else -math.inf


@dataclass
class Offline:
    """What the offline reference predicted for one event."""

    p_true: float
    threshold: float | None
    y_pred: Any  # None while warming or without a threshold


def maturity_reference(
    txns: Sequence[Txn],
    build: Callable[[], Any],
    *,
    wait_ms: int,
    default: Any,
    alpha: float | None = None,
    window: int = 0,
    min_labels: int = 100,
) -> tuple[list[Offline], list[tuple[bool, float]]]:
    """One partition's events in offset order through River's delayed progressive
    validation: ``simulate_qa`` with ``moment`` the event time and ``delay`` the wait
    (an answer due at a question's moment is learned before it). Returns each event's
    prediction and the (label, score) pairs learned, in order. With ``alpha``, the FPR
    threshold rule on the last ``window`` learned scores decides."""
    model = build()
    by_index = list(txns)
    preds: list[Offline] = []
    learned: list[tuple[bool, float]] = []
    scores: dict[int, float] = {}
    for _i, idx, y in stream.simulate_qa(
        [(k, learned_label(t, wait_ms, default)) for k, t in enumerate(by_index)],
        moment=lambda k: by_index[k].ts,
        delay=wait_ms,
        copy=False,
    ):
        x = by_index[idx].x
        if y is None:  # the question: predict before anything later is learned
            p = model.predict_proba_one(x).get(True, 0.0)
            scores[idx] = p
            tau = None
            decision = None
            if alpha is not None:
                recent = learned[-window:] if window else learned
                tau = fpr_threshold([s for lab, s in recent if not lab], alpha)
                if tau is not None and len(learned) >= min_labels:
                    decision = p > tau
            elif len(learned) >= min_labels:
                decision = p > 0.5 if p != 0.5 else False
            preds.append(Offline(p, tau, decision))
        else:  # the answer
            model.learn_one(x, y)
            learned.append((bool(y), scores[idx]))
    return preds, learned
