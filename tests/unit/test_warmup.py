"""Warm-up of a candidate added to RIVERBED_MODEL (app/checkpoint/warmup.py), with its
Kafka reads replaced by lists: the warmed candidate is the one a worker that had it
from the start would hold, under the worker's own settings, and an undo keeps it."""

from __future__ import annotations

import asyncio
import json
import pickle
import random
from dataclasses import dataclass
from typing import Any

import pytest

from riverbed import models
from riverbed.checkpoint import warmup
from riverbed.exceptions import ModelError
from riverbed.kafka.join import merged
from riverbed.learning.learner import PartitionLearner
from riverbed.learning.state import Learners
from riverbed.records import Event, FieldMapping


@dataclass
class Rec:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes


def _data(own_layout: bool, inline: bool) -> tuple[list[Rec], list[Rec]]:
    rnd = random.Random(1)
    events, labels = [], []
    for i in range(1500):
        f, g = rnd.random(), rnd.random()
        y = f + 0.2 * g > 0.6
        label = {("is_fraud" if own_layout else "y"): y} if inline else {}
        if own_layout:
            d: dict[str, Any] = {"txn_id": f"e{i}", "amount": f, "n": g, **label}
        else:
            d = {"id": f"e{i}", "x": {"f": f, "g": g}, **label}
        events.append(Rec(i, 1000 * i, None, json.dumps(d).encode()))
        if not inline and y and i % 3 == 0:
            labels.append(Rec(len(labels), 1000 * i + 2000, None,
                              json.dumps({"id": f"e{i}", "y": True}).encode()))  # fmt: skip
    return events, labels


def _feed(learner: PartitionLearner, events: list[Rec], labels: list[Rec]) -> None:
    decode_event = learner.mapping.event_decoder()
    decode_label = learner.mapping.label_decoder()
    for is_label, r in merged(events, labels):
        if is_label:
            learner.process_label(decode_label(r.value, r.key, 10**6), offset=r.offset,
                                  ts_ms=r.timestamp)  # fmt: skip
        else:
            learner.process_event(decode_event(r.value, r.key, 10**6), offset=r.offset,
                                  ts_ms=r.timestamp)  # fmt: skip


def _quality(learner: PartitionLearner) -> dict[str, Any]:
    return {
        name: (c["learned"], c["metric"]["value"], (c["rolling"] or {}).get("value"))
        for name, c in learner.describe()["candidates"].items()
    }


def _restored_and_warmed(
    settings: dict[str, Any], events: list[Rec], labels: list[Rec], monkeypatch: Any
) -> PartitionLearner:
    """A logreg-only worker's snapshot, restored by a worker of logreg,hoeffding."""
    lineup = tuple(models.lineup("logreg,hoeffding"))
    old = PartitionLearner(lineup[0], partition=0, **{**settings, "lineup": lineup[:1]})
    _feed(old, events, labels)
    blob = pickle.dumps(old, protocol=pickle.HIGHEST_PROTOCOL)
    learner: PartitionLearner = pickle.loads(blob)
    learner.checkpointed(blob)  # as the snapshot codec leaves it
    learners = Learners(lineup[0], **{**settings, "lineup": lineup})

    async def read(_b: str, _c: Any, topic: str, _p: int, last: int) -> list[Rec]:
        return [r for r in (events if topic == "ev" else labels) if r.offset <= last]

    monkeypatch.setattr(warmup, "_read", read)
    new = warmup.missing_candidates(learner, learners.settings.lineup)
    asyncio.run(warmup.warm_up(learner, new, settings=learners.settings, events_topic="ev",
                               labels_topic="lb", bootstrap="", client={}))  # fmt: skip
    learner = learner.rebuilt()
    learners.install(0, learner)
    return learner


@pytest.mark.parametrize(
    ("settings", "own_layout", "inline"),
    [
        (
            {
                "mapping": FieldMapping(
                    event_id="txn_id", features=("amount", "n"), label="is_fraud"
                )
            },
            True,
            True,
        ),
        (
            {"label_default": False, "label_default_after_ms": 5000, "label_maturity": True},
            False,
            False,
        ),
        ({"metric_window": 500}, False, True),
    ],
    ids=["own layout", "labels by absence, maturity", "metric window"],
)
def test_a_warmed_candidate_is_the_one_a_worker_with_it_from_the_start_holds(
    settings: dict[str, Any], own_layout: bool, inline: bool, monkeypatch: Any
) -> None:
    events, labels = _data(own_layout, inline)
    lineup = tuple(models.lineup("logreg,hoeffding"))
    reference = PartitionLearner(lineup[0], partition=0, **{**settings, "lineup": lineup})
    _feed(reference, events, labels)
    warmed = _restored_and_warmed(settings, events, labels, monkeypatch)
    assert _quality(warmed)["hoeffding"] == _quality(reference)["hoeffding"]
    assert _quality(warmed)["hoeffding"][0] > 0


def test_an_undo_after_a_warm_up_keeps_the_warmed_candidate(monkeypatch: Any) -> None:
    events, labels = _data(own_layout=False, inline=True)
    learner = _restored_and_warmed({}, events, labels, monkeypatch)
    before = _quality(learner)["hoeffding"][0]
    learner.model = models.spec("tests.faulty_model:build").build()  # a champion that fails
    with pytest.raises(ModelError):
        learner.process_event(Event("bad", {"boom_learn": 1.0}, True), offset=len(events),
                              ts_ms=10**9)  # fmt: skip
    assert _quality(learner)["hoeffding"][0] == before
