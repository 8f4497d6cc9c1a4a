"""RIVERBED_METRIC and RIVERBED_METRIC_WINDOW: River's metrics, cumulative and rolling."""

from __future__ import annotations

import pickle

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
