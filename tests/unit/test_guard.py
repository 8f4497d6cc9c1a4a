"""A learn that raises or poisons the model is undone; bounds on pending bytes and names."""

from __future__ import annotations

import itertools
import logging
import math
import pickle
from typing import Any

import pytest
from river import datasets, linear_model

from riverbed import models
from riverbed.checkpoint.snapshots import Checkpointer, SnapshotCodec
from riverbed.exceptions import ModelError
from riverbed.learning import river_compat
from riverbed.learning.learner import LEARN, PartitionLearner
from riverbed.learning.state import Learners
from riverbed.logs import RateLimit
from riverbed.records import Event, Label

PHISHING = list(itertools.islice(datasets.Phishing(), 400))


def _pair(spec: Any = None, **kwargs: Any) -> tuple[PartitionLearner, PartitionLearner]:
    spec = spec or models.spec("logreg")
    return (
        PartitionLearner(spec, partition=0, **kwargs),
        PartitionLearner(spec, partition=0, **kwargs),
    )


def _feed(learners: tuple[PartitionLearner, ...], start: int, stop: int) -> list[Any]:
    outs = []
    for i in range(start, stop):
        x, y = PHISHING[i]
        outs.append([lr.process_event(Event(str(i), x, y), offset=i, ts_ms=i) for lr in learners])
    return outs


def _dead_letter(learner: PartitionLearner, event: Event, offset: int) -> ModelError:
    with pytest.raises(ModelError) as info:
        learner.process_event(event, offset=offset, ts_ms=offset)
    learner.skip(offset)  # what the processor does with a dead letter
    return info.value


def test_a_huge_feature_is_a_dead_letter_and_the_model_is_as_if_never_given_it() -> None:
    live, reference = _pair()
    _feed((live, reference), 0, 200)
    x = {**PHISHING[200][0], "long_url": 1e308}
    error = _dead_letter(live, Event("poison", x, True), 200)
    reference.skip(200)
    assert error.stage == LEARN and "non-finite" in str(error)
    for a, b in _feed((live, reference), 201, 400):
        assert a == b and math.isfinite(sum(a["proba"].values()))
    assert live.learned == reference.learned == 399 and live.rollbacks == 1


def test_a_learn_that_raises_half_way_leaves_no_trace() -> None:
    live, reference = _pair()
    _feed((live, reference), 0, 100)
    # The scaler updates the features it meets before an int too big for a float
    # raises (no such int comes off the wire: orjson refuses past 64 bits).
    x = {**PHISHING[100][0], "zz_big": 10**400}
    error = _dead_letter(live, Event("s", x, True), 100)
    reference.skip(100)
    assert error.stage == LEARN and isinstance(error.cause, OverflowError)
    assert live.model["MixedScaler"].counts == reference.model["MixedScaler"].counts
    assert all(a == b for a, b in _feed((live, reference), 101, 300))
    assert live.model["MixedScaler"].counts == reference.model["MixedScaler"].counts


class _SilentPoison(linear_model.LogisticRegression):
    """Learning ``{"poison": 1}`` silently sets a weight to nan (no huge value, no raise)."""

    def learn_one(self, x: dict[str, Any], y: Any, w: float = 1.0) -> None:
        super().learn_one(x, y, w)
        if "poison" in x:
            river_compat.weights(self)["a"] = float("nan")


def _silent() -> _SilentPoison:
    return _SilentPoison()


def test_a_silent_poison_is_found_by_the_next_prediction_and_undone() -> None:
    spec = models.spec(f"{__name__}:_silent")
    live, reference = _pair(spec)
    for i in range(50):
        x = {"a": float(i % 5), "b": 1.0}
        for lr in (live, reference):
            lr.process_event(Event(str(i), x, i % 2 == 0), offset=i, ts_ms=i)
    live.process_event(Event("p", {"a": 1.0, "poison": 1}, True), offset=50, ts_ms=50)
    reference.skip(50)
    # the next prediction would be nan: the learner repairs itself before answering
    got = live.process_event(Event("n", {"a": 2.0, "b": 1.0}, True), offset=51, ts_ms=51)
    want = reference.process_event(Event("n", {"a": 2.0, "b": 1.0}, True), offset=51, ts_ms=51)
    assert got == want
    assert [(c.topic, c.offset) for c in live.culprits] == [("events", 50)]
    assert live.learned == reference.learned


@pytest.mark.parametrize("capture", ["inline", "fork"])
def test_a_checkpoint_never_captures_a_poisoned_model(capture: str) -> None:
    import asyncio

    spec = models.spec(f"{__name__}:_silent")
    learners = Learners(spec)
    written: list[bytes] = []

    async def send(k: bytes, v: bytes, h: Any, p: int) -> None:
        written.append(v)

    cp = Checkpointer(learners, SnapshotCodec(b"k"), send=send, topics=("e", "l"), every=1,
                      interval=1.0, capture=capture)  # fmt: skip
    lr = learners.get(0)
    lr.process_event(Event("a", {"a": 1.0}, True), offset=0, ts_ms=0)
    lr.process_event(Event("p", {"a": 1.0, "poison": 1}, False), offset=1, ts_ms=1)
    cp.note(0, 2)
    asyncio.run(cp.checkpoint())
    current = learners.get(0)
    assert not current.poisoned() and [c.offset for c in current.culprits] == [1]
    assert current.learned == 1 and current.last_offset == 1
    # The repaired state is what the next checkpoint captures (fork: the child found
    # the poison in the state at the fork and this checkpoint wrote nothing for it).
    asyncio.run(cp.checkpoint())
    assert cp.written >= 1 and cp.failed is None
    base = pickle.loads(learners.get(0).journal_base)
    assert not base.poisoned() and base.learned == 1


def test_undo_after_a_checkpoint_rebuilds_from_the_checkpoint() -> None:
    live, reference = _pair()
    _feed((live, reference), 0, 150)
    codec = SnapshotCodec(b"k")
    records = codec.encode(live)
    live.checkpointed(b"".join(v for _, v, _ in records[:-1]))
    _feed((live, reference), 150, 160)
    _dead_letter(live, Event("poison", {**PHISHING[160][0], "long_url": -1e300}, True), 160)
    reference.skip(160)
    assert all(a == b for a, b in _feed((live, reference), 161, 260))


def test_a_delayed_label_that_poisons_is_undone_and_its_event_waits_again() -> None:
    live, reference = _pair()
    _feed((live, reference), 0, 100)
    x = {**PHISHING[100][0], "long_url": 1e200}
    for lr in (live, reference):
        lr.process_event(Event("d", x), offset=100, ts_ms=100)
    with pytest.raises(ModelError):
        live.process_label(Label("d", True), offset=0, ts_ms=101)
    live.skip(0, label=True)
    reference.skip(0, label=True)
    assert "d" in live.pending and live.learned == reference.learned
    assert all(a == b for a, b in _feed((live, reference), 101, 200))


def test_pending_events_are_bounded_in_bytes_oldest_first(caplog: Any) -> None:
    learner = PartitionLearner(models.spec("logreg"), partition=0, pending_max_bytes=10_000)
    with caplog.at_level(logging.WARNING):
        for i in range(30):
            learner.process_event(Event(str(i), {"a": 1.0}), offset=i, ts_ms=i, size=1_000)
    assert len(learner.pending) == 10 and learner.pending_bytes == 10_000
    assert next(iter(learner.pending)) == "20" and learner.expired == 20
    assert learner.process_label(Label("25", True), offset=0, ts_ms=31) == "joined"
    assert learner.pending_bytes == 9_000
    assert sum("RIVERBED_PENDING_MAX_BYTES" in r.message for r in caplog.records) == 1


def test_new_feature_names_past_the_cap_are_dropped_and_counted() -> None:
    learner = PartitionLearner(models.spec("logreg"), partition=0, max_features=5)
    for i in range(20):
        x = {f"r{i}_{j}": 1.0 for j in range(3)}
        learner.process_event(Event(str(i), x, True), offset=i, ts_ms=i)
    assert len(learner.features) == 5
    assert learner.features_dropped == 20 * 3 - 5
    assert set(learner.model["MixedScaler"].counts) <= learner.features


def test_settings_of_a_restored_learner_are_the_workers() -> None:
    learner = PartitionLearner(models.spec("logreg"), partition=0, drift_detector="adwin")
    _feed((learner,), 0, 50)
    codec = SnapshotCodec(b"k")
    records = codec.encode(learner)
    restored = codec.decode(records[-1][1], {i: r[1] for i, r in enumerate(records[:-1])})
    learners = Learners(models.spec("logreg"), drift_detector="page_hinkley", drift_reset=True,
                        pending_max=7)  # fmt: skip
    learners.install(0, restored)
    got = learners.get(0)
    assert type(got.detector).__name__ == "PageHinkley" and got.drift_reset
    assert got.pending_max == 7 and got.describe()["drift_detector"] == "page_hinkley"


def test_rate_limit_counts_what_it_held_back() -> None:
    now = [0.0]
    limit = RateLimit(burst=3, window=10.0, clock=lambda: now[0])
    records = [
        logging.LogRecord("aiokafka", logging.ERROR, "f", 1, "Unable connect to %s", (i,), None)
        for i in range(3400)
    ]
    passed = [r for r in records if limit.filter(r)]
    assert len(passed) == 3
    now[0] = 10.5
    assert limit.flush() == ["... 3,397 more like this in the last 10 s: Unable connect to 3399"]


def test_a_snapshot_carries_learned_state_only() -> None:
    import pickle

    learner = PartitionLearner(models.spec("logreg"), partition=0, pending_max=3,
                               max_features=7, drift_reset=True)  # fmt: skip
    _feed((learner,), 0, 20)
    state = learner.__getstate__()
    assert not {"pending_max", "pending_ttl_ms", "pending_max_bytes", "max_features",
                "drift_reset", "journal_base", "journal"} & set(state)  # fmt: skip
    restored = pickle.loads(pickle.dumps(learner))
    assert restored.learned == learner.learned and restored.pending_max == 100_000
