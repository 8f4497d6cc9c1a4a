"""riverbed.learning.inline: equal copies of learners whose objects have inline attributes again."""

from __future__ import annotations

import gc
import itertools
import pickle
import sys

import orjson
import pytest
from river import datasets

from riverbed import models
from riverbed.learning.inline import inline_copy
from riverbed.learning.learner import PartitionLearner
from riverbed.records import Event


def _events(n: int) -> list[Event]:
    # Decoded as the worker decodes them (orjson), so feature names come from its key
    # cache as they do in a worker.
    out = []
    for i, (x, y) in enumerate(itertools.islice(datasets.synth.Agrawal(seed=4), n)):
        d = orjson.loads(orjson.dumps({"x": x, "y": y}))
        out.append(Event(str(i), d["x"], d["y"]))
    return out


@pytest.mark.parametrize("name", models.available())
def test_a_rebuilt_learner_is_equal_and_learns_the_same(name: str) -> None:
    events = _events(400)
    learner = PartitionLearner(models.spec(name), partition=1)
    for i, e in enumerate(events[:200]):
        learner.process_event(e, offset=i, ts_ms=i)
    before = pickle.dumps(learner)
    copy = learner.rebuilt()
    assert copy is not learner and copy.model is not learner.model
    assert pickle.dumps(copy) == before
    # From here on the copy and the original (as a snapshot restores it) agree.
    original = pickle.loads(before)
    for i, e in enumerate(events[200:], start=200):
        assert copy.process_event(e, offset=i, ts_ms=i) == original.process_event(
            e, offset=i, ts_ms=i
        )
    assert copy.describe() == original.describe()


def test_the_copy_keeps_the_feature_name_strings() -> None:
    learner = PartitionLearner(models.spec("logreg"), partition=0)
    for i, e in enumerate(_events(50)):
        learner.process_event(e, offset=i, ts_ms=i)
    scaler = learner.model["MixedScaler"]
    copy = learner.rebuilt().model["MixedScaler"]
    assert list(copy.means) == list(scaler.means)
    assert all(a is b for a, b in zip(copy.means, scaler.means, strict=True))


class _Point:
    def __init__(self) -> None:
        self.x = 1.5
        self.tags = ["a"]


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="CPython 3.11's object layout")
def test_the_copy_has_inline_attributes_where_pickle_left_a_dict() -> None:
    point = _Point()
    pickle.dumps(point)  # reads point.__dict__: the attributes now live in a dict
    assert [type(r) for r in gc.get_referents(point)] == [dict, type]
    copy = inline_copy(point)
    # Inline values: the referents are the attribute values themselves, no dict.
    assert dict not in [type(r) for r in gc.get_referents(copy)]
    assert (copy.x, copy.tags) == (1.5, ["a"]) and copy.tags is not point.tags
