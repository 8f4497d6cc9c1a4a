from __future__ import annotations

import itertools

import orjson
import pytest
from river import datasets, evaluate

from riverbed import models
from riverbed.devtools.replay import comparable, replay
from riverbed.exceptions import InvalidRecord, ModelError
from riverbed.learning import quality
from riverbed.learning.learner import LabelOutcome, PartitionLearner
from riverbed.records import Event, Label


def _learner(name: str = "logreg", **kw: int) -> PartitionLearner:
    return PartitionLearner(models.spec(name), partition=0, **kw)


def _roundtrip(pred: dict) -> dict:
    return orjson.loads(orjson.dumps(pred, option=orjson.OPT_NON_STR_KEYS))


@pytest.mark.parametrize(
    ("name", "dataset"),
    [
        ("logreg", datasets.Phishing),
        ("hoeffding", datasets.Phishing),
        ("linreg", datasets.TrumpApproval),
    ],
)
def test_metric_equals_progressive_val_score(name: str, dataset: type) -> None:
    learner = _learner(name)
    for i, (x, y) in enumerate(dataset()):
        learner.process_event(Event(str(i), x, y), offset=i, ts_ms=i)
    expected = evaluate.progressive_val_score(
        dataset(), models.build(name), quality.choose("", models.spec(name).task).make()
    )
    assert learner.metric.get() == expected.get()
    assert learner.learned == learner.events


@pytest.mark.parametrize("name", ["logreg", "hoeffding", "arf", "linreg", "hst"])
def test_predictions_equal_plain_river_replay(name: str) -> None:
    stream = list(
        itertools.islice(datasets.TrumpApproval() if name == "linreg" else datasets.Phishing(), 400)
    )
    learner = _learner(name)
    got = [
        comparable(_roundtrip(learner.process_event(Event(str(i), x, y), offset=i, ts_ms=i)))
        for i, (x, y) in enumerate(stream)
    ]
    expected, metric = replay(name, [("event", x, y) for x, y in stream])
    assert got == expected
    assert learner.metric.get() == metric.get()


def test_delayed_labels_learn_at_label_time() -> None:
    stream = list(itertools.islice(datasets.Phishing(), 300))
    learner = _learner()
    steps, got = [], []
    label_offset = 0
    for i, (x, _) in enumerate(stream):
        got.append(
            comparable(_roundtrip(learner.process_event(Event(str(i), x), offset=i, ts_ms=i)))
        )
        steps.append(("event", x, None))
        if i >= 5:  # the label of event i-5 arrives now
            j = i - 5
            assert (
                learner.process_label(Label(str(j), stream[j][1]), offset=label_offset, ts_ms=i)
                == "joined"
            )
            label_offset += 1
            steps.append(("label", j, stream[j][1]))
    expected, metric = replay("logreg", steps)
    assert got == expected
    assert learner.metric.get() == metric.get()
    assert learner.learned == 295 and len(learner.pending) == 5


def test_labels_are_never_learned_twice() -> None:
    learner = _learner()
    learner.process_event(Event("inline", {"f": 1.0}, True), offset=0, ts_ms=0)
    learner.process_event(Event("later", {"f": 2.0}), offset=1, ts_ms=0)
    outcomes = [
        learner.process_label(Label("later", True), offset=0, ts_ms=0),
        learner.process_label(Label("later", True), offset=1, ts_ms=0),
        learner.process_label(Label("inline", True), offset=2, ts_ms=0),
        learner.process_label(Label("unknown", True), offset=3, ts_ms=0),
        learner.process_label(Label("later", True), offset=3, ts_ms=0),  # re-delivered offset
    ]
    assert outcomes == [
        LabelOutcome.JOINED,
        LabelOutcome.LATE,
        LabelOutcome.EARLY,
        LabelOutcome.EARLY,
        LabelOutcome.REPLAYED,
    ]
    assert learner.learned == 2


def test_pending_expires_by_stream_time_and_by_count() -> None:
    learner = _learner(pending_max=3, pending_ttl_ms=1000)
    for i in range(5):
        learner.process_event(Event(str(i), {"f": float(i)}), offset=i, ts_ms=i * 100)
    assert list(learner.pending) == ["2", "3", "4"] and learner.expired == 2
    assert learner.process_label(Label("4", True), offset=0, ts_ms=1350) == LabelOutcome.JOINED
    # at t=1350 ms, events older than 350 ms (2 and 3 at 200, 300) have expired
    assert learner.process_label(Label("3", True), offset=1, ts_ms=1350) == LabelOutcome.ORPHAN
    assert learner.expired == 4 and not learner.pending


def test_redelivered_events_are_skipped() -> None:
    learner = _learner()
    assert learner.process_event(Event("a", {"f": 1.0}, True), offset=5, ts_ms=0) is not None
    assert learner.process_event(Event("a", {"f": 1.0}, True), offset=5, ts_ms=0) is None
    assert learner.learned == 1 and learner.replayed_events == 1


def test_regression_labels_must_be_numbers() -> None:
    learner = _learner("linreg")
    with pytest.raises(InvalidRecord, match="must be a number"):
        learner.process_event(Event("a", {"f": 1.0}, "high"), offset=0, ts_ms=0)
    assert learner.events == 0


@pytest.mark.parametrize(
    ("feature", "stage"), [("boom_predict", "predict"), ("boom_learn", "learn")]
)
def test_model_errors_name_the_stage(feature: str, stage: str) -> None:
    learner = PartitionLearner(models.spec("tests.faulty_model:build"), partition=0)
    with pytest.raises(ModelError) as exc:
        learner.process_event(Event("a", {feature: 1.0}, y=True), offset=0, ts_ms=0)
    assert exc.value.stage == stage
    assert learner.process_event(Event("b", {"f": 1.0}, y=True), offset=1, ts_ms=0) is not None


def test_anomaly_learns_every_event_and_scores_on_labels() -> None:
    learner = _learner("hst")
    for i, (x, y) in enumerate(itertools.islice(datasets.Phishing(), 100)):
        learner.process_event(Event(str(i), x, y if i % 2 else None), offset=i, ts_ms=i)
    assert learner.learned == 100
    assert quality.metric_label(learner.metric) == "ROCAUC"


def test_an_early_label_joins_its_event_after_the_prediction() -> None:
    stream = list(itertools.islice(datasets.Phishing(), 50))
    learner = _learner()
    for i, (x, y) in enumerate(stream[:49]):
        learner.process_event(Event(str(i), x, y), offset=i, ts_ms=i)
    x, y = stream[49]
    assert learner.process_label(Label("49", y), offset=0, ts_ms=49) == LabelOutcome.EARLY
    pred = learner.process_event(Event("49", x), offset=49, ts_ms=49)
    assert pred is not None and "y" not in pred
    expected, metric = replay("logreg", [("event", x, y) for x, y in stream])
    assert comparable(_roundtrip(pred)) == expected[-1], "predicted before learning the label"
    assert learner.metric.get() == metric.get() and learner.learned == 50
    assert learner.labels[LabelOutcome.JOINED] == 1 and not learner.early


def test_early_labels_that_wait_in_vain_become_orphans() -> None:
    learner = _learner(pending_max=2, pending_ttl_ms=100)
    for i in range(3):
        learner.process_label(Label(f"x{i}", True), offset=i, ts_ms=0)
    assert learner.labels[LabelOutcome.ORPHAN] == 1 and len(learner.early) == 2
    learner.process_event(Event("other", {"f": 1.0}), offset=0, ts_ms=500)
    assert learner.labels[LabelOutcome.ORPHAN] == 3 and not learner.early
