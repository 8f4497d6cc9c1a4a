"""RIVERBED_LABEL_MATURITY, RIVERBED_THRESHOLD, RIVERBED_MIN_LABELS and the promotion
rules in the learner alone: equal to River's delayed progressive validation and to
the rules written out in tests/fraud.py."""

from __future__ import annotations

import math

import pytest
from river import evaluate, metrics

from riverbed import models
from riverbed.config import Settings
from riverbed.exceptions import ConfigError
from riverbed.kafka.join import merged
from riverbed.learning.judgment import ExactROCAUC
from riverbed.learning.learner import LabelOutcome, PartitionLearner
from riverbed.records import Event, Label
from tests.fraud import Txn, learned_label, maturity_reference, payments

WAIT = 5000


def _run(txns: list[Txn], **settings: object) -> tuple[PartitionLearner, list[dict]]:
    """One partition: events and chargebacks through the learner in the join's order."""
    lineup = tuple(models.lineup(str(settings.pop("model", "logreg"))))
    learner = PartitionLearner(
        lineup[0], partition=0, lineup=lineup, label_default=False,
        label_default_after_ms=WAIT, label_maturity=True, **settings,  # type: ignore[arg-type]
    )  # fmt: skip

    class Rec:
        def __init__(self, offset: int, timestamp: int, obj: object) -> None:
            self.offset, self.timestamp, self.obj = offset, timestamp, obj

    events = [Rec(i, t.ts, t) for i, t in enumerate(txns)]
    charge = sorted((t.label_ts, t.id) for t in txns if t.label_ts is not None)
    labels = [Rec(j, ts, tid) for j, (ts, tid) in enumerate(charge)]
    out = []
    for is_label, r in merged(events, labels):
        if is_label:
            learner.process_label(Label(r.obj, True), offset=r.offset, ts_ms=r.timestamp)
        else:
            t = r.obj
            out.append(learner.process_event(Event(t.id, t.x), offset=r.offset, ts_ms=t.ts))
    return learner, out


def test_maturity_predicts_and_learns_as_river_with_moment_and_delay() -> None:
    txns = payments(3000, t0=1_000_000, step_ms=10, seed=2, rate=0.1)
    learner, out = _run(txns)
    offline, learned = maturity_reference(txns, lambda: models.build("logreg"),
                                          wait_ms=WAIT, default=False)  # fmt: skip
    for got, want in zip(out, offline, strict=True):
        assert got["proba"][True] == want.p_true
        assert got["y_pred"] == want.y_pred and got.get("warming", False) == (want.y_pred is None)
    # The metric over what was learned: River's, on the answers before the last question.
    n = learner.learned
    ys = [learned_label(t, WAIT, False) for t in txns[:n]]
    acc = metrics.Accuracy()
    for y, (_lab, score) in zip(ys, learned[:n], strict=True):
        acc.update(y, score > 0.5 if score != 0.5 else False)
    assert learner.metric.get() == acc.get()
    assert learner.labels[LabelOutcome.DEFAULTED] == sum(1 for y in ys if not y)


def test_progressive_val_score_with_delay_gives_the_same_metric_when_flushed() -> None:
    txns = payments(1500, t0=0, step_ms=10, seed=4, rate=0.1)
    # A last event far later matures every earlier one, as River's flush does.
    late = Txn("end", b"k", txns[-1].ts + 10 * WAIT, {"f1": 0.0, "f2": 0.0, "f3": 0.0}, False, None)
    learner, _ = _run([*txns, late], metric="rocauc")
    data = [(dict(t.x, __t=t.ts), learned_label(t, WAIT, False)) for t in txns]
    model = models.build("logreg")
    offline = evaluate.progressive_val_score(
        data, _without_time(model), ExactROCAUC(), moment="__t", delay=WAIT
    )
    assert math.isclose(learner.metric.get(), offline.get(), abs_tol=1e-12)


def _without_time(model: object) -> object:
    from river import compose

    return compose.Discard("__t") | model


def test_the_fpr_threshold_is_the_rule_on_the_window() -> None:
    txns = payments(6000, t0=0, step_ms=10, seed=8)
    learner, out = _run(txns, threshold="fpr:0.02", metric_window=1500)
    offline, _ = maturity_reference(txns, lambda: models.build("logreg"), wait_ms=WAIT,
                                    default=False, alpha=0.02, window=1500)  # fmt: skip
    for got, want in zip(out, offline, strict=True):
        assert got["threshold"] == want.threshold and got["y_pred"] == want.y_pred
    realised = learner.describe()["candidates"]["logreg"]["threshold"]
    assert realised["decided"] == 1500 and abs(realised["fpr"] - 0.02) < 0.01


@pytest.mark.parametrize(
    ("rule", "field", "target"),
    [("recall:0.6", "recall", 0.6), ("alert_rate:0.05", "alert_rate", 0.05)],
)
def test_recall_and_alert_rate_targets_are_met_on_the_window(
    rule: str, field: str, target: float
) -> None:
    learner, out = _run(payments(6000, t0=0, step_ms=10, seed=9), threshold=rule,
                        metric_window=2000)  # fmt: skip
    realised = learner.describe()["candidates"]["logreg"]["threshold"]
    assert abs(realised[field] - target) < 0.1, realised
    assert out[-1]["threshold"] is not None and out[-1]["y_pred"] in (True, False)


def test_until_min_labels_predictions_are_warming_without_a_decision() -> None:
    learner, out = _run(payments(800, t0=0, step_ms=10, seed=1), min_labels=200)
    warming = [o for o in out if o.get("warming")]
    assert warming and all(o["y_pred"] is None and "proba" in o for o in warming)
    assert not out[-1].get("warming") and out[-1]["y_pred"] is not None
    assert learner.learned_by_model >= 200


def test_promotion_follows_the_auc_not_the_errors_and_never_to_the_lower_value() -> None:
    txns = payments(8000, t0=0, step_ms=10, seed=5)
    learner, _ = _run(txns, model="tests.fraud:weak,tests.fraud:alarmist", metric="rocauc",
                      promotion_window=1000)  # fmt: skip
    records = [e for e in learner.drift_events if e["type"] == "promotion"]
    assert learner.spec.name == "tests.fraud:alarmist" and records
    for rec in records:
        assert rec["test"]["name"] == "DeLong" and rec["test"]["p_value"] < 0.05
        assert rec["metric"]["to_value"] > rec["metric"]["from_value"]
        assert rec["rarer_class"] >= 30


def test_a_window_with_too_few_positives_never_promotes() -> None:
    txns = payments(6000, t0=0, step_ms=10, seed=5, rate=0.01)
    learner, _ = _run(txns, model="tests.fraud:weak,tests.fraud:alarmist", metric="rocauc",
                      promotion_window=1000, promotion_min_positives=1000)  # fmt: skip
    assert learner.promotions == 0


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"RIVERBED_PROMOTION": "auto", "RIVERBED_METRIC": "f1"}, "RIVERBED_METRIC=f1"),
        ({"RIVERBED_THRESHOLD": "fpr:2"}, "RIVERBED_THRESHOLD"),
        ({"RIVERBED_THRESHOLD": "precision:0.5"}, "RIVERBED_THRESHOLD"),
        ({"RIVERBED_LABEL_MATURITY": "on"}, "RIVERBED_LABEL_MATURITY=on"),
        ({"RIVERBED_METRIC": "recall_at_fpr:1.5"}, "RIVERBED_METRIC"),
    ],
)
def test_bad_judgment_settings_stop_start_up_naming_the_variable(
    env: dict[str, str], names: str
) -> None:
    with pytest.raises(ConfigError, match=names):
        Settings.from_env(env)


def test_maturity_is_the_default_with_a_label_default() -> None:
    on = Settings.from_env({"RIVERBED_LABEL_DEFAULT": "false", "RIVERBED_LABEL_DEFAULT_AFTER": "5"})
    assert on.maturity and not Settings.from_env({}).maturity
    off = {"RIVERBED_LABEL_DEFAULT": "false", "RIVERBED_LABEL_DEFAULT_AFTER": "5",
           "RIVERBED_LABEL_MATURITY": "off"}  # fmt: skip
    assert not Settings.from_env(off).maturity


def test_an_undefined_metric_is_null_never_minus_zero() -> None:
    learner = PartitionLearner(models.spec("logreg"), partition=0, metric="rocauc")
    learner.process_event(Event("a", {"f": 1.0}, True), offset=0, ts_ms=0)
    doc = learner.describe()
    assert doc["metric"]["value"] is None and doc["rolling"]["value"] is None
