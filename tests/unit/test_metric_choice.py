"""RIVERBED_METRIC and RIVERBED_METRIC_WINDOW: River's metrics, cumulative and rolling."""

from __future__ import annotations

import pickle
import random

import pytest
from river import datasets, evaluate, metrics, utils

from riverbed import models
from riverbed.config import Settings
from riverbed.exceptions import ConfigError
from riverbed.learning import quality
from riverbed.learning.judgment import ExactROCAUC
from riverbed.learning.learner import LearnerSettings, PartitionLearner
from riverbed.learning.state import Learners
from riverbed.records import Event


def run(metric: str, window: int) -> PartitionLearner:
    learner = PartitionLearner(models.spec("logreg"), partition=0, metric=metric,
                               metric_window=window)  # fmt: skip
    for i, (x, y) in enumerate(datasets.Phishing()):
        learner.process_event(Event(str(i), x, y), offset=i, ts_ms=i)
    return learner


@pytest.mark.parametrize(("name", "offline_metric", "shown"),
                         [("rocauc", ExactROCAUC, "ROCAUC"), ("f1", metrics.F1, "F1"),
                          ("logloss", metrics.LogLoss, "LogLoss")])  # fmt: skip
def test_the_metric_is_what_progressive_val_score_reports(
    name: str, offline_metric: type, shown: str
) -> None:
    learner = run(name, 0)
    offline = evaluate.progressive_val_score(datasets.Phishing(), models.build("logreg"),
                                             offline_metric())  # fmt: skip
    assert learner.metric.get() == offline.get()
    assert learner.describe()["metric"]["name"] == shown
    assert learner.describe()["rolling"] is None


def test_the_rolling_metric_covers_the_last_window_of_labels() -> None:
    learner = run("accuracy", 100)
    rolling = utils.Rolling(metrics.Accuracy, window_size=100)
    model = models.build("logreg")
    for x, y in datasets.Phishing():
        rolling.update(y, model.predict_one(x))
        model.learn_one(x, y)
    doc = learner.describe()
    assert doc["rolling"] == {"name": "Accuracy", "value": rolling.get(), "window": 100}
    assert doc["rolling"]["value"] != doc["metric"]["value"]
    again = pickle.loads(pickle.dumps(learner))  # part of the snapshot
    assert again.rolling.get() == rolling.get()


def test_a_metric_that_cannot_score_the_task_stops_start_up() -> None:
    settings = Settings.from_env({"RIVERBED_METRIC": "mae"})
    with pytest.raises(ConfigError, match="RIVERBED_METRIC=mae: 'mae' does not score"):
        Learners.from_settings(models.spec("logreg"), settings)
    with pytest.raises(ConfigError, match="RIVERBED_METRIC"):
        Settings.from_env({"RIVERBED_METRIC": "auc"})


def test_a_snapshot_with_another_metric_switches_to_the_configured_one() -> None:
    learner = run("", 50)
    assert type(learner.metric).__name__ == "Accuracy"
    learner.configure(LearnerSettings(metric="rocauc", metric_window=10))
    assert quality.metric_label(learner.metric) == "ROCAUC" and learner.metric_window == 10
    assert learner.describe()["rolling"]["window"] == 10


def test_the_rolling_accuracy_is_rivers_rolling_accuracy_exactly() -> None:
    # A ring of hits instead of utils.Rolling(Accuracy): the same float at every step,
    # through pickling (a snapshot) and from a snapshot written with River's Rolling.
    rng = random.Random(5)
    for window in (1, 2, 7, 50, 1000):
        for classes in ([True, False], [0, 1, 2], [0, 1, True, 1.0, "1"]):
            river_one = utils.Rolling(metrics.Accuracy, window_size=window)
            ours = quality.choose("accuracy").rolling(window)
            assert type(ours) is quality.RollingAccuracy
            for i in range(3 * window + 20):
                y, pred = rng.choice(classes), rng.choice(classes)
                river_one.update(y, pred)
                ours.update(y, pred)
                assert ours.get() == river_one.get()
                assert quality.metric_value(ours) == quality.metric_value(river_one)
                if i % 97 == 3:
                    ours = pickle.loads(pickle.dumps(ours))
                if i % 89 == 5:
                    ours = quality.migrate_rolling(pickle.loads(pickle.dumps(river_one)))
            assert repr(ours) == repr(river_one)
    assert quality.metric_value(quality.RollingAccuracy(5)) is None


def test_a_snapshot_with_rivers_rolling_accuracy_carries_on_exactly() -> None:
    # Snapshots written before the ring hold utils.Rolling(Accuracy): migrated on load.
    old = run("accuracy", 100)
    old.rolling = utils.Rolling(metrics.Accuracy, window_size=100)
    rng = random.Random(3)
    for _ in range(150):
        old.rolling.update(rng.choice([True, False]), rng.choice([True, False]))
    restored = pickle.loads(pickle.dumps(old))
    assert type(restored.rolling) is quality.RollingAccuracy
    assert restored.rolling.get() == old.rolling.get()
    data = list(datasets.Phishing())
    for i, (x, y) in enumerate(data[:300], len(data)):
        restored.process_event(Event(str(i), x, y), offset=i, ts_ms=i)
        old.process_event(Event(str(i), x, y), offset=i, ts_ms=i)
        assert restored.rolling.get() == old.rolling.get()
