"""RIVERBED_MODEL=a,b: challengers learn alongside the champion; auto promotion."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from river import datasets, evaluate, metrics
from river.datasets import synth

from riverbed import models
from riverbed.learning.judgment import PairedTest
from riverbed.learning.learner import LabelOutcome, PartitionLearner
from riverbed.records import Event, Label


def learner(names: str, **kw: object) -> PartitionLearner:
    lineup = tuple(models.lineup(names))
    return PartitionLearner(lineup[0], partition=0, lineup=lineup, **kw)  # type: ignore[arg-type]


def test_every_candidate_learns_and_scores_like_its_own_offline_run() -> None:
    two = learner("logreg,hoeffding", metric_window=100)
    solo = PartitionLearner(models.spec("logreg"), partition=0)
    data = list(datasets.Phishing())
    # Half the labels inline, half delayed by 5 events: the join remembers each
    # candidate's own prediction.
    delayed: list[tuple[str, bool]] = []
    for i, (x, y) in enumerate(data):
        inline = i % 2 == 0
        a = two.process_event(Event(str(i), x, y if inline else None), offset=i, ts_ms=i)
        b = solo.process_event(Event(str(i), x, y if inline else None), offset=i, ts_ms=i)
        assert a == b  # the published prediction is the champion's, as if alone
        if not inline:
            delayed.append((str(i), y))
        if len(delayed) > 5:
            rid, label = delayed.pop(0)
            for lr in (two, solo):
                lr.process_label(Label(rid, label), offset=i, ts_ms=i)
    doc = two.describe()
    assert doc["champion"] == "logreg" and set(doc["candidates"]) == {"logreg", "hoeffding"}
    assert doc["candidates"]["logreg"]["metric"] == solo.describe()["metric"] == doc["metric"]
    assert doc["candidates"]["hoeffding"]["learned"] == doc["learned"] == solo.learned
    # The offline check for the challenger, with the same order of learning.
    model, metric = models.build("hoeffding"), metrics.Accuracy()
    delayed2: list[tuple[dict, bool, object]] = []
    for i, (x, y) in enumerate(data):
        pred = model.predict_one(x)
        if i % 2 == 0:
            if pred is not None:  # like progressive_val_score: no opinion, no score
                metric.update(y, pred)
            model.learn_one(x, y)
        else:
            delayed2.append((x, y, pred))
        if len(delayed2) > 5:
            dx, dy, dp = delayed2.pop(0)
            if dp is not None:
                metric.update(dy, dp)
            model.learn_one(dx, dy)
    assert doc["candidates"]["hoeffding"]["metric"]["value"] == metric.get()
    again = pickle.loads(pickle.dumps(two))
    again.configure(two.settings)  # as a worker installs a restored learner
    assert again.describe()["candidates"] == doc["candidates"]


def test_a_significantly_better_challenger_is_promoted_and_published() -> None:
    # Agrawal's function 2 is a staircase a tree learns and a linear model cannot.
    two = learner("logreg,hoeffding", promotion_window=300, metric_window=300)
    stream = synth.Agrawal(classification_function=2, seed=7).take(3000)
    models_seen = set()
    for i, (x, y) in enumerate(stream):
        models_seen.add(two.spec.name)
        two.process_event(Event(str(i), x, y), offset=i, ts_ms=i)
    promotions = [e for e in two.drift_events if e["type"] == "promotion"]
    assert two.spec.name == "hoeffding" and two.promotions == 1 == len(promotions)
    p = promotions[0]
    assert (p["from"], p["to"], p["window"]) == ("logreg", "hoeffding", 300)
    assert p["metric"]["to_value"] > p["metric"]["from_value"]
    assert p["test"]["name"] == "McNemar" and p["test"]["p_value"] < 0.05
    doc = two.describe()
    assert doc["champion"] == "hoeffding" and doc["promotions"] == 1
    # Both keep learning every label, whichever is champion.
    assert doc["candidates"]["logreg"]["learned"] == doc["candidates"]["hoeffding"]["learned"]


def test_no_promotion_without_significance_or_when_off() -> None:
    same = learner("logreg,tests.faulty_model:logreg_twin", promotion_window=200)
    off = learner("logreg,hoeffding")
    for i, (x, y) in enumerate(synth.Agrawal(classification_function=2, seed=7).take(1500)):
        same.process_event(Event(str(i), x, y), offset=i, ts_ms=i)
        off.process_event(Event(str(i), x, y), offset=i, ts_ms=i)
    assert same.promotions == 0 and off.promotions == 0


def test_shadow_predictions_name_each_challenger() -> None:
    two = learner("logreg,hoeffding", shadow_predictions=True)
    two.process_event(Event("a", {"f": 1.0}, True), offset=0, ts_ms=0)
    assert [s["model"] for s in two.shadows] == ["hoeffding"]
    assert two.shadows[0]["id"] == "a" and two.shadows[0]["offset"] == 0


def test_a_pending_event_keeps_each_candidates_prediction_through_a_promotion() -> None:
    two = learner("logreg,hoeffding", promotion_window=1)
    two.process_event(Event("w", {"f": 1.0}), offset=0, ts_ms=0)
    waiting = two.pending["w"]
    before = (waiting.y_pred, waiting.shadow)
    two._promote(0, PairedTest("McNemar", 5.0, 0.01, (0.5, 0.6)), topic="events", offset=0)
    assert (waiting.shadow[0], (waiting.y_pred,)) == (before[0], before[1])
    assert two.process_label(Label("w", True), offset=0, ts_ms=1) == LabelOutcome.JOINED


def test_progressive_val_score_agrees_for_the_champion_alone() -> None:
    two = learner("logreg,hoeffding")
    for i, (x, y) in enumerate(datasets.Phishing()):
        two.process_event(Event(str(i), x, y), offset=i, ts_ms=i)
    offline = evaluate.progressive_val_score(datasets.Phishing(), models.build("logreg"),
                                             metrics.Accuracy())  # fmt: skip
    assert two.metric.get() == offline.get()


@pytest.mark.parametrize("now", ["hoeffding", "hoeffding,arf"])
def test_a_champion_taken_out_of_the_lineup_gives_its_place_and_is_dropped(
    now: str, caplog: pytest.LogCaptureFixture
) -> None:
    two = learner("logreg,hoeffding")
    for i, (x, y) in enumerate(synth.Agrawal(seed=3).take(200)):
        two.process_event(Event(str(i), x, y), offset=i, ts_ms=i)
    hoeffding = two.challengers[0].model
    lineup = tuple(models.lineup(now))
    two.configure(dataclasses.replace(two.settings, lineup=lineup))
    assert two.spec.name == "hoeffding" and two.model is hoeffding
    assert "logreg" not in [c.name for c in two.challengers]
    assert "no longer in RIVERBED_MODEL" in caplog.text


def test_a_champion_replaced_by_a_new_model_starts_it_fresh() -> None:
    one = learner("logreg")
    for i, (x, y) in enumerate(synth.Agrawal(seed=3).take(50)):
        one.process_event(Event(str(i), x, y), offset=i, ts_ms=i)
    one.configure(dataclasses.replace(one.settings, lineup=tuple(models.lineup("hoeffding"))))
    assert one.spec.name == "hoeffding" and one.challengers == []
    assert one.describe()["candidates"]["hoeffding"]["learned"] == 0
