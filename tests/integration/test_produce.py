"""``riverbed.devtools.produce``: the load generator's pacing and pre-built events, and
``riverbed produce --file`` of the user's own JSON lines."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from pathlib import Path

import orjson
from aiokafka.partitioner import murmur2

from riverbed.config import Settings
from riverbed.devtools.produce import dataset_stream, produce
from tests.helpers import ROOT
from tests.integration.helpers import Names, consume, riverbed, riverbed_env

PRODUCE_TIMEOUT_S = 120.0


def test_prebuilt_pairs_are_sent_in_order_no_faster_than_the_rate(kafka: str, names: Names) -> None:
    n, rate = 600, 2000.0
    pairs = list(itertools.islice(dataset_stream("agrawal", seed=5), n))
    env = {"RIVERBED_BROKER": kafka, "RIVERBED_TOPIC_PREFIX": names.prefix}
    settings = Settings.from_env({**env, "RIVERBED_PARTITIONS": "1"})
    stats = asyncio.run(produce(settings, pairs=pairs, rate=rate, id_prefix="p"))
    assert stats.events == n

    records = sorted(consume(kafka, names.topic("events"), n), key=lambda r: r.offset)
    events = [orjson.loads(r.value) for r in records]
    assert [e["id"] for e in events] == [f"p-{i}" for i in range(n)]
    assert [(e["x"], e["y"]) for e in events] == [
        (orjson.loads(orjson.dumps(x)), y) for x, y in pairs
    ]
    # Event i leaves no earlier than i / rate after the first, less the 1 ms the
    # pacing sends ahead (and 1 ms of timestamp rounding).
    first = records[0].timestamp
    for i, r in enumerate(records):
        assert r.timestamp - first >= 1000 * i / rate - 2, f"event {i} sent early"


def java_partition(key: bytes, n: int) -> int:
    """The partition Kafka's Java producer gives ``key``: toPositive(murmur2(key)) % n."""
    return (murmur2(key) & 0x7FFFFFFF) % n


def test_murmur2_is_the_java_clients_hash() -> None:
    # Kafka's UtilsTest.testMurmur2 (signed Java ints; aiokafka's are unsigned).
    java = {b"21": -973932308, b"foobar": -790332482, b"abc": 479470107,
            b"a-little-bit-long-string": -985981536}  # fmt: skip
    assert {k: murmur2(k) - (1 << 32) * (murmur2(k) >= 1 << 31) for k in java} == java


def _lines(n: int) -> list[bytes]:
    """JSON lines as a user has them: nested objects, strings, ISO times, odd spacing;
    user.id is a number or a string."""
    out = []
    for i in range(n):
        uid: int | str = i % 17 if i % 2 else f"u-{i % 17}"
        record = {"txn_id": f"t{i}", "amount": 10.5 + i, "country": ["FR", "DE", "ÉÉ"][i % 3],
                  "user": {"id": uid, "age": 20 + i % 50, "vip": None},
                  "event_time": f"2026-11-30T10:{i % 60:02d}:00+01:00",
                  "is_fraud": i % 5 == 0}  # fmt: skip
        line = orjson.dumps(record)
        out.append(line if i % 4 else b" " + line.replace(b",", b", "))  # spaced as typed
    return out


def test_produce_file_sends_each_line_as_is_keyed_and_partitioned_like_java(
    kafka: str, names: Names, tmp_path: Path
) -> None:
    partitions, n = 4, 200
    lines = _lines(n)
    keyless = [b'{"txn_id": "no-user"}', b"not json {"]  # sent too: the worker dead-letters
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines[:50]) + b"\r\n\n  \n" + b"\n".join(lines[50:] + keyless))
    env = riverbed_env(kafka, names, partitions=partitions)
    res = riverbed("produce", "--file", str(path), "--key-field", "user.id", "--rate", "2000",
                   env=env, timeout=PRODUCE_TIMEOUT_S)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"sent {n + 2} records from {path} to {names.topic('events')}")
    assert "skipped 2 blank lines; 1 not JSON objects" in res.stdout
    assert "1 without user.id (sent with no key)" in res.stdout  # the non-JSON line: above

    records = consume(kafka, names.topic("events"), n + 2)
    assert len(records) == n + 2
    sent = {r.value: r for r in records}
    assert set(sent) == {*lines, *keyless}  # every line, its bytes unchanged
    for line in lines:
        r = sent[line]
        assert r.key == str(orjson.loads(line)["user"]["id"]).encode()  # 3 -> "3"
        assert r.partition == java_partition(r.key, partitions)
    assert sent[keyless[0]].key is None and sent[keyless[1]].key is None
    # A key's records keep the file's order.
    by_key: dict[bytes, list[int]] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        if r.key is not None:
            by_key.setdefault(r.key, []).append(lines.index(r.value))
    assert all(order == sorted(order) for order in by_key.values())


def test_produce_file_from_stdin_to_the_labels_topic(kafka: str, names: Names) -> None:
    labels = [orjson.dumps({"id": f"t{i}", "y": i % 2 == 0, "txn": {"id": i}}) for i in range(30)]
    res = subprocess.run(
        [sys.executable, "-m", "riverbed", "produce", "--file", "-", "--key-field", "txn.id",
         "--topic", "labels", "--limit", "25"],
        input=b"\n".join(labels) + b"\n",
        env=riverbed_env(kafka, names, partitions=3),
        cwd=ROOT, capture_output=True, timeout=PRODUCE_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.decode().startswith(f"sent 25 records from stdin to {names.topic('labels')}")
    records = consume(kafka, names.topic("labels"), 25)
    assert sorted((r.key, r.value) for r in records) == sorted(
        (str(i).encode(), labels[i]) for i in range(25)
    )
    assert all(r.partition == java_partition(r.key, 3) for r in records)
