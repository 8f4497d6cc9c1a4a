"""Bad input goes to the dead-letter topic, byte for byte, and the worker goes on."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.helpers import wait_for
from tests.integration.helpers import (
    RECV_TIMEOUT_S,
    Names,
    consume,
    post,
    produce,
    riverbed,
    riverbed_env,
)

GOOD = [
    orjson.dumps({"id": f"g{i}", "x": {"a": float(i), "b": i % 3}, "y": i % 2 == 0})
    for i in range(40)
]
BAD_EVENTS: list[tuple[bytes | None, str, str]] = [
    (b"{this is not json", "deserialize", "not valid JSON"),
    (b'{"id":"n1","x":{"a":NaN},"y":true}', "deserialize", "not valid JSON"),
    (b'{"id":"n2","x":{"a":1e999}}', "deserialize", "infinity"),
    (b"\xff\xfe\x00binary", "deserialize", "not valid JSON"),
    (None, "deserialize", "tombstone"),
    (b'{"x":{"a":1.0}}', "validate", '"id" must be a non-empty string'),
    (b'{"id":"m1"}', "validate", '"x" must be a non-empty object'),
    (b'{"id":"m2","x":{"a":[1,2]}}', "validate", '"x.a" must be'),
    (b'{"id":"m3","x":{"a":1},"y":{"k":1}}', "validate", '"y" must be'),
    (b'{"id":"big","x":{"a":"' + b"z" * 9000 + b'"}}', "deserialize", "RIVERBED_MAX_RECORD_BYTES"),
    # Nested past RIVERBED_MAX_DEPTH (32): a dead letter, never a recursion that stops
    # the worker (1,000 levels: a recursive flattening raised RecursionError).
    (
        b'{"id":"deep","x":' + b'{"a":' * 1000 + b"1" + b"}" * 1001,
        "validate",
        "nested deeper than 32",
    ),
]
BAD_LABELS: list[tuple[bytes | None, str, str]] = [
    (b'{"id":"g1"}', "validate", '"y" is missing'),
    (b"[]", "validate", "JSON object"),
]


def _headers(record: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


def test_bad_records_are_dead_lettered_and_good_ones_predicted(
    kafka: str, names: Names, start_worker: Any
) -> None:
    worker = start_worker(partitions=1, max_record_bytes=8000)
    records: list[tuple[bytes | None, bytes | None, int | None]] = []
    for i, good in enumerate(GOOD):
        records.append((f"g{i}".encode(), good, 0))
        if i < len(BAD_EVENTS):
            records.append((f"bad{i}".encode(), BAD_EVENTS[i][0], 0))
    produce(kafka, names.topic("events"), records, headers=[("trace", b"abc")])
    produce(
        kafka, names.topic("labels"), [(b"l0", BAD_LABELS[0][0], 0), (b"l1", BAD_LABELS[1][0], 0)]
    )

    dlq = consume(kafka, names.topic("dlq"), len(BAD_EVENTS) + len(BAD_LABELS))
    preds = consume(kafka, names.topic("predictions"), len(GOOD))
    assert sorted(orjson.loads(p.value)["id"] for p in preds) == sorted(f"g{i}" for i in range(40))

    by_source = {
        (_headers(r)["riverbed.source.topic"], int(_headers(r)["riverbed.source.offset"])): r
        for r in dlq
    }
    assert len(by_source) == len(dlq) == len(BAD_EVENTS) + len(BAD_LABELS)
    events_topic = names.topic("events")
    offset_of_bad = {i: 2 * i + 1 for i in range(len(BAD_EVENTS))}  # good, bad, good, bad, ...
    for i, (raw, stage, reason) in enumerate(BAD_EVENTS):
        r = by_source[(events_topic, offset_of_bad[i])]
        h = _headers(r)
        assert r.value == raw, "the dead letter carries the original bytes"
        assert r.key == f"bad{i}".encode()
        assert h["riverbed.stage"] == stage and reason in h["riverbed.error"], h
        assert h["riverbed.source.partition"] == "0"
        assert h["trace"] == "abc", "original headers are kept"
    for j, (raw, stage, reason) in enumerate(BAD_LABELS):
        r = by_source[(names.topic("labels"), j)]
        assert r.value == raw and reason in _headers(r)["riverbed.error"]
        assert _headers(r)["riverbed.stage"] == stage

    assert worker.alive() and worker.get("/health")[0] == 200
    dead = worker.models()["dead_letters"]
    assert sum(dead.values()) == len(BAD_EVENTS) + len(BAD_LABELS)
    # and it still learns: one more good event is predicted
    produce(
        kafka,
        names.topic("events"),
        [(b"after", orjson.dumps({"id": "after", "x": {"a": 1.0}}), 0)],
    )
    wait_for(
        lambda: worker.models()["partitions"]["0"]["events"] == len(GOOD) + 1,
        timeout=RECV_TIMEOUT_S,
        what="the event after the bad ones",
    )


def test_a_model_error_dead_letters_that_record_only(
    kafka: str, names: Names, start_worker: Any
) -> None:
    worker = start_worker(partitions=1, model="tests.faulty_model:build")
    values = [
        orjson.dumps({"id": "ok1", "x": {"a": 1.0}, "y": True}),
        orjson.dumps({"id": "p", "x": {"boom_predict": 1.0}, "y": True}),
        orjson.dumps({"id": "l", "x": {"boom_learn": 1.0}, "y": True}),
        orjson.dumps({"id": "ok2", "x": {"a": 2.0}, "y": False}),
    ]
    produce(kafka, names.topic("events"), [(v, v, 0) for v in values])
    dlq = consume(kafka, names.topic("dlq"), 2)
    stages = sorted(_headers(r)["riverbed.stage"] for r in dlq)
    assert stages == ["learn", "predict"]
    assert all("boom at" in _headers(r)["riverbed.error"] for r in dlq)
    assert {r.value for r in dlq} == {values[1], values[2]}
    preds = consume(kafka, names.topic("predictions"), 2)
    assert sorted(orjson.loads(p.value)["id"] for p in preds) == ["ok1", "ok2"]
    # The same model error on /predict is the caller's 400 with the reason, never a 500.
    status, body, _ = post(worker, "?partition=0", {"x": {"a": 1.0}})
    assert status == 200 and body["model"], body
    status, body, _ = post(worker, "?partition=0", [{"x": {"a": 1.0}}, {"x": {"boom_predict": 1}}])
    assert status == 400 and body["error"].startswith("record 1: ") and "boom at" in body["error"]
    assert worker.alive()


def test_bad_settings_stop_start_up_naming_the_variable(kafka: str, names: Names) -> None:
    for var, value in [("partitions", "-2"), ("model", "nope"), ("web_port", "http")]:
        res = riverbed("worker", env=riverbed_env(kafka, names, **{var: value}), timeout=60)
        assert res.returncode == 2, res.stdout + res.stderr
        assert f"RIVERBED_{var.upper()}" in res.stderr


def test_mismatched_partitions_stop_start_up(kafka: str, names: Names) -> None:
    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(names.topic("events"), 2, 1), NewTopic(names.topic("labels"), 3, 1)]
            )
        finally:
            await admin.close()

    asyncio.run(create())
    res = riverbed("worker", env=riverbed_env(kafka, names, partitions=2), timeout=60)
    assert res.returncode == 2
    assert "same number of partitions" in res.stderr
    assert f"{names.topic('events')}=2" in res.stderr and f"{names.topic('labels')}=3" in res.stderr
