"""Model lifecycle in the learner: a manual promotion, pinning, and asking a challenger
(riverbed promote / pin / unpin, POST /predict?model=)."""

from __future__ import annotations

import pickle

import pytest
from river import datasets
from river.datasets import synth

from riverbed import models
from riverbed.learning.learner import PartitionLearner
from riverbed.records import Event, Label


def learner(names: str, **kw: object) -> PartitionLearner:
    lineup = tuple(models.lineup(names))
    return PartitionLearner(lineup[0], partition=0, lineup=lineup, **kw)  # type: ignore[arg-type]


def test_a_manual_promotion_at_o_predicts_as_the_challenger_did_from_o_on() -> None:
    # Offline: no promotion, the challenger's shadow predictions. Live: promoted after
    # offset 199. From 200 on, the published predictions are the shadow ones exactly.
    live = learner("logreg,hoeffding")
    offline = learner("logreg,hoeffding", shadow_predictions=True)
    data = list(datasets.Phishing())[:600]
    published = []
    for i, (x, y) in enumerate(data):
        if i == 200:
            op = live.promote("hoeffding", by="test")
            assert op["type"] == "operation" and op["events_offset"] == 199
            assert (op["from"], op["to"], op["changed"]) == ("logreg", "hoeffding", True)
        published.append(live.process_event(Event(str(i), x, y), offset=i, ts_ms=i))
        offline.process_event(Event(str(i), x, y), offset=i, ts_ms=i)
    shadow = {s["offset"]: s for s in offline.shadows}
    for i in range(200, 600):
        assert published[i]["model"] == "hoeffding"
        assert published[i]["proba"] == shadow[i]["proba"], i
    assert live.describe()["champion"] == "hoeffding" and live.promotions == 1
    # The old champion is a challenger now, with its whole history.
    assert live.candidate("logreg").learned_by_model == 600


def test_a_pinned_partition_never_promotes_and_unpinning_lets_it() -> None:
    def run(pin: bool) -> PartitionLearner:
        # Agrawal's function 2 is a staircase a tree learns and a linear model cannot.
        lr = learner("logreg,hoeffding", promotion_window=300, metric_window=300)
        if pin:
            lr.pin(None, by="test")
        for i, (x, y) in enumerate(synth.Agrawal(classification_function=2, seed=7).take(3000)):
            lr.process_event(Event(str(i), x, y), offset=i, ts_ms=i)
        return lr

    assert run(pin=False).promotions > 0, "the stream does promote unpinned"
    pinned = run(pin=True)
    assert pinned.promotions == 0 and pinned.spec.name == "logreg" and pinned.pinned
    # Survives a snapshot.
    restored = pickle.loads(pickle.dumps(pinned))
    assert restored.pinned and restored.describe()["pinned"]
    op = restored.unpin(by="test")
    assert op["op"] == "unpin" and op["changed"] and not restored.pinned


def test_pin_with_a_model_promotes_it_first_and_names_are_checked() -> None:
    lr = learner("logreg,hoeffding")
    lr.pin("hoeffding", by="alice")
    ops = [e["op"] for e in lr.take_outputs().drifts]  # type: ignore[union-attr]
    assert ops == ["promote", "pin"] and lr.spec.name == "hoeffding" and lr.pinned
    with pytest.raises(KeyError, match="no candidate 'arf' \\(it has hoeffding, logreg\\)"):
        lr.promote("arf", by="alice")
    assert lr.promote("hoeffding", by="alice")["changed"] is False


def test_a_challenger_is_asked_without_changing_anything() -> None:
    lr = learner("logreg,hoeffding")
    for i, (x, y) in enumerate(list(datasets.Phishing())[:300]):
        lr.process_event(Event(str(i), x, None), offset=i, ts_ms=i)
        lr.process_label(Label(str(i), y), offset=i, ts_ms=i)
    x = next(iter(datasets.Phishing()))[0]
    events = lr.events
    assert lr.predict_one(x, model="hoeffding") == (
        lr.challengers[0].model.predict_one(x),
        lr.challengers[0].model.predict_proba_one(x),
    )
    assert lr.predict_one(x, model="logreg") == lr.predict_one(x)
    assert lr.events == events


def test_an_imported_model_joins_and_stays_through_a_restart_s_configure() -> None:
    from river import linear_model, preprocessing

    from riverbed.exceptions import DuplicateCandidate
    from riverbed.learning.learner import LearnerSettings

    lr = learner("logreg,hoeffding")
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    op = lr.import_model("offline", model, champion=False, by="test")
    assert op["op"] == "import" and lr.challengers[-1].name == "offline"
    with pytest.raises(DuplicateCandidate):
        lr.import_model("logreg", model, champion=False, by="test")
    restored = pickle.loads(pickle.dumps(lr))
    # A worker's settings name only RIVERBED_MODEL's candidates: the import stays.
    restored.configure(LearnerSettings(lineup=tuple(models.lineup("logreg,hoeffding"))))
    assert [c.name for c in restored.challengers] == ["hoeffding", "offline"]
    assert restored.candidate("offline").model.predict_proba_one({"a": 1.0}) == (
        model.predict_proba_one({"a": 1.0})
    )
