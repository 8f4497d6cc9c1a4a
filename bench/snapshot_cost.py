"""Snapshot size and time for each catalog model after N events, and recovery time.

    .venv/bin/python -m bench.snapshot_cost [--events 100000]

Trains each catalog model test-then-train on N synthetic events (Agrawal for the
classifiers and the anomaly detector, Friedman for the regressor), then measures:
encode (pickle + SHA-256 + HMAC, chunked), its size, decode (verify + unpickle), and
recovery through the real broker: the chunk and manifest records are written to a
snapshots topic and read back with the worker's own read + pick code. Uses
RIVERBED_BROKER when it answers, else starts the local broker (and stops it).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from river.datasets import synth

from riverbed import models
from riverbed.checkpoint.recovery import read_snapshot_partitions
from riverbed.checkpoint.snapshots import SnapshotCodec, pick_latest
from riverbed.config import Settings
from riverbed.devtools.broker import LocalBroker
from riverbed.kafka.topics import SNAPSHOT_CONFIG
from riverbed.learning.learner import PartitionLearner
from riverbed.records import Event


def stream(task: str, n: int):
    src = synth.Friedman(seed=7) if task == "regression" else synth.Agrawal(seed=7)
    return itertools.islice(src, n)


async def recover(bootstrap: str, records: list, partition: int, codec: SnapshotCodec) -> float:
    topic = f"bench-snap-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=SNAPSHOT_CONFIG)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2_000_000)
    await producer.start()
    for k, v, h in records:
        await (await producer.send(topic, v, key=k, headers=h, partition=0))
    await producer.stop()
    t0 = time.perf_counter()
    found = await read_snapshot_partitions(bootstrap, topic, [0])
    learner, refused = pick_latest(
        codec, partition, [(r.offset, r.key, r.value, r.headers) for r in found[0]]
    )
    took = time.perf_counter() - t0
    assert learner is not None and not refused, refused
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    args = ap.parse_args()
    settings = Settings.from_env()
    broker = LocalBroker.start_unless_running(settings)
    codec = SnapshotCodec(b"bench-key", chunk_bytes=512_000)
    rows = {}
    try:
        for name in models.available():
            spec = models.spec(name)
            learner = PartitionLearner(spec, partition=0)
            t0 = time.perf_counter()
            for i, (x, y) in enumerate(stream(spec.task, args.events)):
                learner.process_event(Event(str(i), x, y), offset=i, ts_ms=i)
            train_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            records = codec.encode(learner)
            encode_s = time.perf_counter() - t0
            size = sum(len(v) for _, v, _ in records[:-1])
            t0 = time.perf_counter()
            codec.decode(records[-1][1], {i: r[1] for i, r in enumerate(records[:-1])})
            decode_s = time.perf_counter() - t0
            recovery_s = asyncio.run(recover(settings.bootstrap, records, 0, codec))
            rows[name] = {
                "events": args.events,
                "train_s": round(train_s, 2),
                "snapshot_bytes": size,
                "chunks": len(records) - 1,
                "encode_ms": round(encode_s * 1000, 2),
                "decode_ms": round(decode_s * 1000, 2),
                "recovery_ms": round(recovery_s * 1000, 1),
                "metric": str(learner.metric),
            }
            print(
                f"{name:10} {size / 1024:10.1f} KiB {len(records) - 1:3} chunks  "
                f"encode {encode_s * 1000:8.2f} ms  decode {decode_s * 1000:8.2f} ms  "
                f"recovery via Kafka {recovery_s * 1000:8.1f} ms  ({learner.metric})",
                flush=True,
            )
    finally:
        if broker is not None:
            broker.stop()
    out = Path(__file__).parent / "results" / "snapshot_cost.json"
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
