"""Field mapping (RIVERBED_EVENT_*, RIVERBED_LABEL_*), labels by absence, misrouted labels."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest

from riverbed import models
from riverbed.config import Settings
from riverbed.exceptions import ConfigError, InvalidRecord
from riverbed.learning.learner import LabelOutcome, LearnerSettings, PartitionLearner
from riverbed.learning.state import Learners
from riverbed.records import Event, FieldMapping, Label, decode_event

PAYMENT = (
    b'{"txn_id": "t1", "amount": 12.5, "country": "FR", "user": {"age": 31, "tags": [1],'
    b' "vip": null, "new": true}, "event_time": "2026-11-30T10:00:00+01:00", "is_fraud": true}'
)


def payments(**over: str) -> FieldMapping:
    env = {
        "RIVERBED_EVENT_ID": "txn_id",
        "RIVERBED_EVENT_FEATURES": "amount,country,user.age,user.new",
        "RIVERBED_EVENT_LABEL": "is_fraud",
        "RIVERBED_EVENT_TIME": "event_time",
        "RIVERBED_PREDICTION_FIELDS": "txn_id,user.age",
        **over,
    }
    return FieldMapping.from_settings(Settings.from_env(env))


def test_paths_flatten_nested_fields_and_read_iso_times() -> None:
    e = payments().event(PAYMENT, None, 10_000)
    assert e.id == "t1"
    assert e.x == {"amount": 12.5, "country": "FR", "user.age": 31, "user.new": True}
    assert e.y is True
    assert e.ts == datetime(2026, 11, 30, 9, tzinfo=UTC).timestamp() * 1000
    assert e.fields == {"txn_id": "t1", "user.age": 31}


def test_globs_and_star_skip_the_id_label_time_nulls_and_lists() -> None:
    e = payments(RIVERBED_EVENT_FEATURES="amount,user.*").event(PAYMENT, None, 10_000)
    assert e.x == {"amount": 12.5, "user.age": 31, "user.new": True}
    e = payments(RIVERBED_EVENT_FEATURES="*").event(PAYMENT, None, 10_000)
    assert e.x == {"amount": 12.5, "country": "FR", "user.age": 31, "user.new": True}


def test_one_object_path_names_features_relative_to_it() -> None:
    m = payments(RIVERBED_EVENT_FEATURES="user", RIVERBED_PREDICTION_FIELDS="")
    with pytest.raises(InvalidRecord, match=r'"user\.tags" must be a number'):
        m.event(PAYMENT, None, 10_000)  # a list named (inside the object) is refused
    raw = PAYMENT.replace(b'"tags": [1],', b"")
    assert m.event(raw, None, 10_000).x == {"age": 31, "new": True}


def test_key_as_id_and_numbers_as_ids() -> None:
    m = payments(RIVERBED_EVENT_ID="@key", RIVERBED_LABEL_ID="@key", RIVERBED_LABEL_VALUE="fraud")
    assert m.event(PAYMENT, b"k-9", 10_000).id == "k-9"
    assert m.label_record(b'{"fraud": 1}', b"k-9", 100) == Label("k-9", 1)
    with pytest.raises(InvalidRecord, match="no key"):
        m.event(PAYMENT, None, 10_000)
    m = payments(RIVERBED_LABEL_ID="txn", RIVERBED_LABEL_VALUE="chargeback.fraud")
    assert m.label_record(b'{"txn": 42, "chargeback": {"fraud": true}}', None, 100) == Label(
        "42", True
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (PAYMENT.replace(b'"txn_id": "t1"', b'"txn": "t1"'), '"txn_id" \\(the id\\) must be'),
        (PAYMENT.replace(b'"is_fraud": true', b'"is_fraud": {"a": 1}'), '"is_fraud" must be'),
        (PAYMENT.replace(b"+01:00", b""), '"event_time" has no time zone'),
        (PAYMENT.replace(b"2026-11-30T10", b"yesterday"), '"event_time" is not an ISO-8601'),
        (b'{"txn_id": "t1", "country": null}', "no features"),
    ],
)
def test_unmappable_records_name_the_path(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        payments().event(raw, None, 10_000)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        (
            {"RIVERBED_EVENT_FEATURES": "amount,is_fraud", "RIVERBED_EVENT_LABEL": "is_fraud"},
            "RIVERBED_EVENT_FEATURES",
        ),
        ({"RIVERBED_PREDICTION_FIELDS": "txn_id,offset"}, "RIVERBED_PREDICTION_FIELDS"),
        ({"RIVERBED_EVENT_FEATURES": "amount,,user..age"}, "RIVERBED_EVENT_FEATURES"),
        ({"RIVERBED_EVENT_ID": ""}, "RIVERBED_EVENT_ID"),
        ({"RIVERBED_LABEL_DEFAULT": "maybe"}, "RIVERBED_LABEL_DEFAULT"),
        ({"RIVERBED_LABEL_DEFAULT": "false"}, "RIVERBED_LABEL_DEFAULT_AFTER"),
        (
            {"RIVERBED_LABEL_DEFAULT": "0", "RIVERBED_LABEL_DEFAULT_AFTER": "7200"},
            "RIVERBED_PENDING_TTL",
        ),
        ({"RIVERBED_LABELS_TOPIC": "riverbed.events"}, "RIVERBED_LABELS_TOPIC"),
    ],
)
def test_bad_mappings_stop_start_up_naming_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        Learners.from_settings(models.spec("logreg"), Settings.from_env(env))


def test_the_default_mapping_keeps_the_fast_decoder() -> None:
    m = FieldMapping.from_settings(Settings.from_env({}))
    assert m.is_default
    raw = b'{"id": "a", "x": {"f": 1.5}, "y": true, "ts": 5}'
    assert m.event_decoder()(raw, None, 100) == decode_event(raw, 100) == m.event(raw, None, 100)


def _learner(**settings: object) -> PartitionLearner:
    learner = PartitionLearner(models.spec("logreg"), partition=0)
    learner.configure(LearnerSettings(**settings))  # type: ignore[arg-type]
    return learner


def test_an_event_with_no_label_in_time_learns_the_default() -> None:
    learner = _learner(label_default=False, label_default_after_ms=1000)
    learner.process_event(Event("a", {"f": 1.0}), offset=0, ts_ms=0)
    learner.process_event(Event("b", {"f": 2.0}), offset=1, ts_ms=500)
    assert learner.process_label(Label("b", True), offset=0, ts_ms=900) == LabelOutcome.JOINED
    assert learner.labels[LabelOutcome.DEFAULTED] == 0
    learner.process_event(Event("c", {"f": 3.0}), offset=2, ts_ms=1001)  # a: 1001 ms old
    assert learner.labels[LabelOutcome.DEFAULTED] == 1
    assert learner.learned == 2 and "a" not in learner.pending
    # A real label after the default is late: never learned twice.
    assert learner.process_label(Label("a", True), offset=1, ts_ms=1002) == LabelOutcome.LATE
    assert learner.learned == 2
    # The default is the learner's state: a snapshot and its replay hold it.
    restored = pickle.loads(pickle.dumps(learner))
    assert restored.labels[LabelOutcome.DEFAULTED] == 1 and restored.learned == 2


def test_defaults_equal_the_labels_coming_at_that_moment() -> None:
    by_default = _learner(label_default=False, label_default_after_ms=100)
    by_label = _learner()
    for i in range(50):
        # by_default learns event j with False once it is over 100 ms old: before
        # predicting event j + 11. by_label is given that label at that moment.
        if i >= 11:
            by_label.process_label(Label(str(i - 11), False), offset=i - 11, ts_ms=i * 10)
        e = Event(str(i), {"f": float(i % 7), "g": float(i % 3)})
        a = by_default.process_event(e, offset=i, ts_ms=i * 10)
        b = by_label.process_event(e, offset=i, ts_ms=i * 10)
        assert a == b
    assert by_default.labels[LabelOutcome.DEFAULTED] == by_label.labels[LabelOutcome.JOINED]
    assert by_default.model.predict_proba_one({"f": 1.0}) == by_label.model.predict_proba_one(
        {"f": 1.0}
    )


def test_a_label_whose_event_waits_in_another_partition_is_misrouted() -> None:
    learners = Learners(models.spec("logreg"))
    learners.get(0).process_event(Event("a", {"f": 1.0}), offset=0, ts_ms=0)
    other = learners.get(1)
    seen = other.process_label(Label("a", True), offset=0, ts_ms=1, siblings=learners)
    assert seen == LabelOutcome.MISROUTED
    assert other.labels[LabelOutcome.MISROUTED] == 1 and not other.early
    # A label for an id no partition knows waits as early, as before.
    assert other.process_label(Label("z", True), offset=1, ts_ms=2, siblings=learners) == (
        LabelOutcome.EARLY
    )


def test_with_a_default_events_past_the_pending_bound_learn_it_sooner() -> None:
    learner = _learner(label_default=False, label_default_after_ms=10_000, pending_max=2)
    for i in range(4):
        learner.process_event(Event(str(i), {"f": float(i)}), offset=i, ts_ms=i)
    assert learner.labels[LabelOutcome.DEFAULTED] == 2 and learner.expired == 0
    assert list(learner.pending) == ["2", "3"] and learner.learned == 2
