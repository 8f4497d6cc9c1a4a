"""A learner pickled by the code before round two (a8908a7) loads and carries on exactly.

``tests/data/learner-a8908a7.pkl`` is a ``logreg`` learner of Phishing's first 300
events (200 labelled inline, 50 labels joined, 50 still waiting), pickled by that
commit; ``learner-a8908a7.json`` is what that same code did next: the 50 waiting
labels, then 50 inline-labelled events. The current code must do exactly the same
with the restored learner, and give it the attributes added since (rolling metric,
candidates, ...).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from river import datasets

from riverbed import models
from riverbed.learning.learner import LearnerSettings
from riverbed.records import Event, Label

DATA = Path(__file__).resolve().parent.parent / "data"


def test_a_snapshot_of_the_previous_version_carries_on_exactly() -> None:
    learner = pickle.loads((DATA / "learner-a8908a7.pkl").read_bytes())
    expected = json.loads((DATA / "learner-a8908a7.json").read_text())
    # As a worker installs it: the worker's settings, here with a challenger added.
    learner.configure(LearnerSettings(lineup=tuple(models.lineup("logreg,hoeffding"))))
    data = list(datasets.Phishing())
    for i in range(250, 300):
        learner.process_label(Label(str(i), data[i][1]), offset=i - 200, ts_ms=300 + i)
    got = []
    for i, (x, y) in enumerate(data[300:350], 300):
        out = learner.process_event(Event(str(i), x, y), offset=i, ts_ms=400 + i)
        got.append({str(k).lower(): v for k, v in out["proba"].items()})
    assert got == expected["proba"]
    assert learner.learned == expected["learned"] and learner.metric.get() == expected["metric"]
    assert {k: learner.labels[k] for k in expected["labels"]} == expected["labels"]
    doc = learner.describe()
    assert doc["champion"] == "logreg" and set(doc["candidates"]) == {"logreg", "hoeffding"}
    assert doc["rolling"]["window"] == 1000 and doc["labels"]["defaulted"] == 0
    # The old waiting events had no challenger predictions: the labels still joined.
    assert doc["candidates"]["hoeffding"]["learned"] == 50


def test_a_snapshot_from_before_the_learner_split_carries_on_exactly() -> None:
    # learner-2284ce4.pkl: written by 2284ce4, before the learner was split by concern
    # (its classes Candidate, _Pending, Duel by their old module): logreg champion with a
    # hoeffding challenger, ROC AUC, auto promotion (two promotions by then), shadow
    # predictions, 50 events waiting for labels and one early label. The .json is what
    # that code did next; the split code must do exactly the same.
    learner = pickle.loads((DATA / "learner-2284ce4.pkl").read_bytes())
    expected = json.loads((DATA / "learner-2284ce4.json").read_text())
    (duel,) = learner.duels
    assert duel.pairs, "the snapshot holds a duel under way"
    learner.configure(LearnerSettings(
        lineup=tuple(models.lineup("logreg,hoeffding")), promotion_window=50,
        promotion_min_positives=5, shadow_predictions=True, metric="rocauc",
    ))  # fmt: skip
    # Its metric choice names its class as that code did (the class, not its dotted
    # name): the same settings keep the duel and its pairs, not a new empty one.
    assert learner.duels == [duel] and learner.duels[0] is duel
    assert duel.choice.cls is duel.choice.make().__class__
    data = list(datasets.Phishing())
    outcomes = [
        learner.process_label(Label(str(i), data[i][1]), offset=i - 199, ts_ms=600 + i)
        for i in range(250, 300)
    ]
    assert outcomes == expected["outcomes"]
    learner.process_event(Event("early-1", data[0][0]), offset=300, ts_ms=900)
    got = []
    for i, (x, y) in enumerate(data[300:700], 301):
        out = learner.process_event(Event(str(i), x, y), offset=i, ts_ms=1000 + i)
        got.append({str(k).lower(): v for k, v in out["proba"].items()})
    assert got == expected["proba"]
    doc = json.loads(json.dumps(learner.describe(), default=str))
    assert {k: doc[k] for k in expected["describe"]} == expected["describe"]
    assert len(learner.shadows) == expected["shadows"]
    assert json.loads(json.dumps(learner.drift_events, default=str)) == expected["drift_events"]
