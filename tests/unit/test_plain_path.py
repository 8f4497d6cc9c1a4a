"""The learner's common case in fewer steps (``_plain_event``) is the general path's
work exactly: the same predictions, metrics, drift records, undone learns and state."""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import pytest

from riverbed import models
from riverbed.devtools.produce import dataset_stream
from riverbed.exceptions import ModelError
from riverbed.learning.learner import PartitionLearner
from riverbed.records import Event, decode_event


@contextmanager
def _general_path() -> Iterator[None]:
    """Every event through the general path (``_any_event``), replays of undos too."""
    plain = PartitionLearner._plain_event
    PartitionLearner._plain_event = PartitionLearner._any_event  # type: ignore[assignment,method-assign]
    try:
        yield
    finally:
        PartitionLearner._plain_event = plain  # type: ignore[method-assign]


def _events(n: int) -> list[tuple[Event, bytes]]:
    # A drifting stream (ADWIN fires), a poisonous value (its learn is undone) and a
    # new feature name now and then (past the cap: left out), the labels inline.
    events = []
    for i, (features, y) in enumerate(itertools.islice(dataset_stream("drift", drift_at=600), n)):
        x = dict(features)
        if i % 500 == 250:
            x["salary"] = 1e300
        if i % 700 == 10:
            x[f"new{i}"] = 1.0
        raw = orjson.dumps({"id": str(i), "x": x, "y": y})
        events.append((decode_event(raw, 1 << 20), raw))  # the magnitude check's flag with it
    return events


@pytest.mark.parametrize(("model", "metric", "drift_reset"),
                         [("logreg", "", False), ("logreg", "rocauc", True),
                          ("hoeffding", "", True)])  # fmt: skip
def test_the_plain_path_is_the_general_one(model: str, metric: str, drift_reset: bool) -> None:
    n = 3000
    plain, general = (
        PartitionLearner(
            models.spec(model), partition=0, metric=metric, drift_reset=drift_reset, max_features=10
        )
        for _ in range(2)
    )
    errors = 0
    for i, (e, raw) in enumerate(_events(n)):
        outs = []
        for learner in (plain, general):
            try:
                if learner is general:
                    with _general_path():
                        out = learner.process_event(e, offset=i, ts_ms=i, source=(raw, None, ()))
                else:
                    out = learner.process_event(e, offset=i, ts_ms=i, source=(raw, None, ()))
                outs.append(out)
            except ModelError as exc:
                outs.append(str(exc))
                learner.skip(i)
        assert outs[0] == outs[1]
        errors += isinstance(outs[0], str)
        if i % 1000 == 999:  # a checkpoint: the undo journal starts from here
            for learner in (plain, general):
                learner.checkpointed(pickle.dumps(learner))
    assert errors and plain.features_dropped
    assert plain.drift_events and plain.drift_events == general.drift_events
    # A tree's pickle differs in size from one equal tree to the next (two learners on
    # the general path alike): its bytes are compared for the linear model only.
    same = {"snapshot_age_s": 0, "snapshot_bytes": 0}
    assert plain.describe() | same == general.describe() | same
    if model == "logreg":
        assert pickle.dumps(plain) == pickle.dumps(general)
