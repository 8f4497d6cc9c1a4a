"""POST /predict's pieces without a server: routing, parsing, the owner, 401/503."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from riverbed import models
from riverbed.learning.state import Learners
from riverbed.records import Event, FieldMapping
from riverbed.serving.predict import FORWARDED, HTTPProblem, Predictor, key_partition


def predictor(
    partitions: int = 4, token: str = "", mapping: FieldMapping | None = None
) -> Predictor:
    learners = Learners(models.spec("logreg"))
    return Predictor(learners, mapping or FieldMapping(), partitions=partitions,
                     events_topic="ev", url="http://127.0.0.1:7000", token=token,
                     max_bytes=300, max_records=3, model="logreg")  # fmt: skip


def test_keys_go_where_kafkas_default_partitioner_puts_them() -> None:
    java = DefaultPartitioner()
    for i in range(200):
        key = f"k{i}"
        assert key_partition(key, 7) == java(key.encode(), list(range(7)), list(range(7)))


def test_the_partition_comes_from_the_query_or_a_one_partition_topic() -> None:
    p = predictor()
    assert p.partition_of({"partition": "3"}) == 3
    assert p.partition_of({"key": "abc"}) == key_partition("abc", 4)
    for bad in ({}, {"partition": "4"}, {"partition": "-1"}, {"partition": "x"}):
        with pytest.raises(HTTPProblem) as exc:
            p.partition_of(bad)
        assert exc.value.status == 400
    assert predictor(partitions=1).partition_of({}) == 0


def test_records_are_mapped_like_events_with_the_id_optional() -> None:
    m = FieldMapping(event_id="@key", features=("amount", "user.*"))
    events, many = predictor(mapping=m).parse(b'[{"amount": 3, "user": {"age": 4}}]', "k")
    assert many and events == [Event("k", {"amount": 3, "user.age": 4})]
    events, many = predictor(mapping=m).parse(b'{"amount": 3}', None)
    assert not many and events[0].id == ""
    with pytest.raises(HTTPProblem, match="record 1: no features"):
        predictor(mapping=m).parse(b'[{"amount": 3}, {"b": 1}]', None)
    with pytest.raises(HTTPProblem, match="above RIVERBED_PREDICT_MAX_RECORDS=3") as exc:
        predictor().parse(b"[{}, {}, {}, {}]", None)
    assert exc.value.status == 413


def test_the_owner_is_read_from_the_groups_assignment() -> None:
    meta = {"http://a:1": {"ev": [0, 2], "lb": [0, 2]}, "http://b:2/": {"ev": [1, 3]}}
    p = predictor()
    assert [p.owner(meta, i) for i in range(4)] == ["http://a:1", "http://b:2"] * 2
    assert p.owner({}, 0) is None


class FakeRequest:
    def __init__(self, query: dict[str, str], body: bytes, headers: dict[str, str]) -> None:
        self.query = query
        self.headers = headers
        self.content_length = len(body)
        self.content = asyncio.StreamReader()
        self.content.feed_data(body)
        self.content.feed_eof()
        self.path_qs = "/predict"


class FakeApp:
    class router:
        @staticmethod
        def external_topics_metadata() -> dict[str, Any]:
            return {}


def handle(p: Predictor, query: dict[str, str], body: bytes, **headers: str) -> Any:
    async def run() -> Any:
        return await p.handle(FakeApp(), FakeRequest(query, body, headers))  # type: ignore[arg-type]

    return asyncio.run(run())


def test_a_partition_being_restored_or_moved_is_503_with_retry_after() -> None:
    p = predictor()
    p.learners.assigned = {0}  # assigned, its learner not installed yet
    status, body, headers = handle(p, {"partition": "0"}, b'{"x": {"f": 1}}')
    assert (status, headers) == (503, {"Retry-After": "1"}) and b"restored" in body
    status, body, headers = handle(p, {"partition": "1"}, b'{"x": {"f": 1}}')
    assert (status, headers) == (503, {"Retry-After": "1"}) and b"moving" in body
    p.learners.install(0)
    assert handle(p, {"partition": "0"}, b'{"x": {"f": 1}}')[0] == 200
    # A forwarded request is never forwarded again.
    assert handle(p, {"partition": "1"}, b'{"x": {"f": 1}}', **{FORWARDED: "x"})[0] == 503


def test_the_token_is_checked_first() -> None:
    p = predictor(token="t0k")
    assert handle(p, {"partition": "0"}, b"{}")[0] == 401
    assert handle(p, {"partition": "0"}, b"{}", Authorization="Bearer nope")[0] == 401
    p.learners.assigned = {0}
    p.learners.install(0)
    status, body, _ = handle(p, {"partition": "0"}, b'{"x": {"f": 1}}', Authorization="Bearer t0k")
    assert status == 200 and b'"offset":-1' in body


def test_a_body_nested_past_the_limit_is_a_400_naming_it() -> None:
    body = b'{"x": ' + b'{"a": ' * 1000 + b"1" + b"}" * 1001
    with pytest.raises(HTTPProblem) as problem:
        predictor().parse(body, "k")
    assert problem.value.status == 400 and "RIVERBED_MAX_DEPTH" in problem.value.reason


def test_a_partition_in_other_digits_is_a_400_not_a_500() -> None:
    for raw in ("\u00b2", "\u0663", "1\u00b2"):  # superscript two, Arabic-Indic three
        with pytest.raises(HTTPProblem) as problem:
            predictor().partition_of({"partition": raw})
        assert problem.value.status == 400


def test_the_supervisors_relay_outwaits_a_childs_forward() -> None:
    """The relay gives a child longer than the child gives the partition's owner."""
    from riverbed.serving import predict
    from riverbed.supervisor import gateway

    assert gateway.RELAY_TIMEOUT_S > predict.FORWARD_TIMEOUT_S + gateway.CHILD_TIMEOUT_S
