"""Processor: a partition's records in, predictions, dead letters and drift events out."""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from river import evaluate, metrics

from riverbed import models
from riverbed.config import Settings
from riverbed.devtools.produce import dataset_stream
from riverbed.kafka.topics import TopicNames
from riverbed.learning.state import Learners
from riverbed.pipeline.processor import Processor, Record
from riverbed.pipeline.quarantine import Quarantine
from riverbed.serving.metrics import RiverbedMetrics

NAMES = TopicNames.from_settings(Settings.from_env({}))


def _processor(**kwargs: object) -> Processor:
    return Processor(
        Learners(models.spec("logreg"), **kwargs),  # type: ignore[arg-type]
        NAMES,
        max_record_bytes=10_000,
        metrics=RiverbedMetrics.create(CollectorRegistry()),
    )


def _records(n: int, start: int = 0) -> list[Record]:
    pairs = itertools.islice(dataset_stream("phishing"), start, start + n)
    return [
        Record(i, 1_000, f"k{i}".encode(), orjson.dumps({"id": f"e{i}", "x": x, "y": y}), [])
        for i, (x, y) in enumerate(pairs, start)
    ]


def test_a_fetch_gives_one_prediction_per_event_equal_to_river_offline() -> None:
    proc = _processor()
    records = _records(300)
    handled = proc.handle_many(NAMES.events, 2, records)
    out = handled.predictions
    assert [k for k, _, _ in out] == [r.key for r in records]
    preds = [orjson.loads(v) for _, v, _ in out]
    assert [ts for _, _, ts in out] == [p["ts"] for p in preds]  # Kafka timestamp = "ts"
    assert [p["offset"] for p in preds] == list(range(300))
    assert {p["partition"] for p in preds} == {2} and {p["model"] for p in preds} == {"logreg"}
    offline = evaluate.progressive_val_score(
        itertools.islice(dataset_stream("phishing"), 300),
        models.build("logreg"),
        metrics.Accuracy(),
    )
    assert proc.learners.get(2).metric.get() == offline.get()
    assert not handled.others


def test_same_records_split_into_fetches_or_one_by_one_give_identical_predictions() -> None:
    records = _records(200)
    whole = _processor().handle_many(NAMES.events, 0, records).predictions
    split = _processor()
    parts = [
        split.handle_many(NAMES.events, 0, records[i : i + 37]).predictions
        for i in range(0, 200, 37)
    ]
    one = _processor()
    singles = [one.handle(NAMES.events, 0, r.offset, r.timestamp, r.key, r.value) for r in records]

    def strip(values: list[bytes]) -> list[dict[str, object]]:
        return [{k: v for k, v in orjson.loads(b).items() if k != "ts"} for b in values]

    assert strip([v for _, v, _ in whole]) == strip([v for part in parts for _, v, _ in part])
    assert strip([v for _, v, _ in whole]) == strip([o.value for o in singles if o and o.value])


def test_bad_records_become_dead_letters_in_place_and_the_rest_go_on() -> None:
    proc = _processor()
    good = _records(4)
    bad = [
        Record(4, 1_000, b"x", b"{not json", [("trace", b"1")]),
        Record(5, 1_000, b"y", orjson.dumps({"id": "e5", "x": {"f": [1]}}), []),
    ]
    more = _records(2, start=6)
    out, dead = proc.handle_many(NAMES.events, 1, [*good, *bad, *more])
    assert [orjson.loads(v)["offset"] for _, v, _ in out] == [0, 1, 2, 3, 6, 7]
    assert [d.value for d in dead] == [b"{not json", bad[1].value]
    first = dict(dead[0].headers or [])
    assert first["trace"] == b"1" and first["riverbed.source.offset"] == b"4"
    assert first["riverbed.stage"] == b"deserialize"
    learner = proc.learners.get(1)
    assert learner.last_offset == 7 and learner.offset_gaps == 0


def test_redelivered_records_are_skipped_including_dead_lettered_ones() -> None:
    proc = _processor()
    records = [*_records(3), Record(3, 1_000, b"x", b"nope", [])]
    proc.handle_many(NAMES.events, 0, records)
    again = proc.handle_many(NAMES.events, 0, records)  # a replay after a restore
    assert again.predictions == [] and again.others == []
    assert proc.learners.get(0).replayed_events == 4


def test_labels_join_pending_events_and_bad_labels_are_dead_letters() -> None:
    proc = _processor()
    event = Record(0, 1_000, b"k", orjson.dumps({"id": "a", "x": {"f": 1.0}}), [])
    assert len(proc.handle_many(NAMES.events, 0, [event]).predictions) == 1
    labels = [
        Record(0, 2_000, b"k", orjson.dumps({"id": "a", "y": True}), []),
        Record(1, 2_000, b"k", orjson.dumps({"id": "a"}), []),
    ]
    handled = proc.handle_many(NAMES.labels, 0, labels)
    assert handled.predictions == []
    learner = proc.learners.get(0)
    assert learner.learned == 1 and learner.last_label_offset == 1
    assert [dict(d.headers or [])["riverbed.stage"] for d in handled.others] == [b"validate"]


def test_latency_is_observed_per_prediction_in_the_histogram() -> None:
    proc = _processor()
    proc.handle_many(NAMES.events, 3, _records(50))
    assert proc.metrics is not None
    text = generate_latest(proc.metrics.registry).decode()
    assert 'riverbed_end_to_end_latency_seconds_count{partition="3"} 50.0' in text
    assert len(proc.metrics.recent_latency[3]) == 50


def test_any_error_while_handling_a_record_dead_letters_it_and_the_rest_go_on() -> None:
    proc = _processor()
    records = _records(4)
    decode = proc.decode_event

    def fragile(value: bytes | None, key: bytes | None, max_bytes: int) -> object:
        if key == b"k1":  # a bug of riverbed's, or of a library under it
            msg = "no such field"
            raise KeyError(msg)
        return decode(value, key, max_bytes)

    proc.decode_event = fragile  # type: ignore[method-assign]
    out, (dead,) = proc.handle_many(NAMES.events, 0, records)
    assert [orjson.loads(v)["offset"] for _, v, _ in out] == [0, 2, 3]
    headers = dict(dead.headers or [])
    assert headers["riverbed.stage"] == b"process" and dead.value == records[1].value
    assert headers["riverbed.error.type"] == b"KeyError"
    assert headers["riverbed.error"] == b"KeyError: 'no such field'"
    assert proc.learners.get(0).last_offset == 3


def test_near_a_crash_records_go_one_at_a_time_and_the_culprit_is_quarantined(
    tmp_path: Path,
) -> None:
    """Two processes died on offset 7 (the mark says so); the next one dead-letters it
    and handles the rest exactly as if it had never been there."""
    topics = (NAMES.events, NAMES.labels)
    Quarantine.open(tmp_path, "w", after=2, topics=topics).mark(NAMES.events, 0, 0, 19)
    Quarantine.open(tmp_path, "w", after=2, topics=topics).mark(NAMES.events, 0, 7, 7)
    proc = _processor()
    proc.quarantine = Quarantine.open(tmp_path, "w", after=2, topics=topics)
    records = _records(30)
    out, (dead,) = proc.handle_many(NAMES.events, 0, records)
    assert [orjson.loads(v)["offset"] for _, v, _ in out] == [o for o in range(30) if o != 7]
    headers = dict(dead.headers or [])
    assert headers["riverbed.stage"] == b"quarantine" and dead.value == records[7].value
    assert headers["riverbed.error.type"] == b"ProcessCrash"
    assert proc.quarantine.crashes == [], "passed: the next crash starts afresh"
    assert proc.learners.get(0).last_offset == 29

    clean = _processor()
    expected = clean.handle_many(NAMES.events, 0, records[:7] + records[8:]).predictions
    assert [orjson.loads(v)["proba"] for _, v, _ in out] == [
        orjson.loads(v)["proba"] for _, v, _ in expected
    ]


def test_a_partitions_dead_letters_travel_in_its_learner_and_survive_a_pickle() -> None:
    import pickle

    proc = _processor()
    bad = [Record(i, 1_000, b"x", b"{not json", []) for i in range(2, 5)]
    proc.handle_many(NAMES.events, 1, [*_records(2), *bad])
    learner = proc.learners.get(1)
    assert learner.describe()["dead_letters"] == {"deserialize": 3}
    restored = pickle.loads(pickle.dumps(learner))  # what a snapshot carries
    assert restored.describe()["dead_letters"] == {"deserialize": 3}
    old = learner.__dict__.copy()
    del old["dead_letters"]  # a snapshot written before the count existed
    blank = object.__new__(type(learner))
    blank.__setstate__(old)
    assert blank.dead_letters == {}


def test_an_undone_learn_keeps_the_partitions_dead_letter_count() -> None:
    # An undo rebuilds the learner from its last checkpoint and replays the journal;
    # the replay counts no dead letters, so the live count must be kept, not the base's.
    proc = _processor()
    good = _records(5)
    bad = [Record(5 + i, 1_000, b"x", b"{not json", []) for i in range(3)]
    proc.handle_many(NAMES.events, 0, [*good, *bad])
    learner = proc.learners.get(0)
    assert learner.dead_letters == {"deserialize": 3}
    learner._undo_last()  # what a learn that raises does
    assert proc.learners.get(0).dead_letters == {"deserialize": 3}
