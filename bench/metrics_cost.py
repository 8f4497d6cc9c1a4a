"""Cost of riverbed's Prometheus metrics per record, and of one scrape.

    .venv/bin/python -m bench.metrics_cost [--events 50000] [--repeat 5]

The latency histogram is the only per-record metric work (counters and gauges are read
from the learners at scrape time), and it lives in Processor.handle_many; so this
times handle_many() over the same pre-encoded records, 250 records of a partition at a
time (a 1,000-record fetch over 4 partitions), with metrics off and on, best of
--repeat, with the default model. Scrape cost: generate_latest() with 4 partitions.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from river.datasets import synth

from riverbed import models
from riverbed.config import Settings
from riverbed.kafka.topics import TopicNames
from riverbed.learning.state import Learners
from riverbed.pipeline.processor import Processor, Record
from riverbed.serving.metrics import RiverbedMetrics

FETCH_PER_PARTITION = 250


def run(records: list[bytes], names: TopicNames, with_metrics: bool) -> tuple[float, Processor]:
    learners = Learners(models.spec("logreg"))
    metrics = RiverbedMetrics.create(CollectorRegistry()) if with_metrics else None
    proc = Processor(learners, names, max_record_bytes=1_000_000, metrics=metrics)
    handle_many = proc.handle_many
    by_partition = [
        [Record(i // 4, 0, None, value, []) for i, value in enumerate(records) if i % 4 == p]
        for p in range(4)
    ]
    t0 = time.perf_counter()
    for start in range(0, len(by_partition[0]), FETCH_PER_PARTITION):
        for p, recs in enumerate(by_partition):
            handle_many(names.events, p, recs[start : start + FETCH_PER_PARTITION])
    return time.perf_counter() - t0, proc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    names = TopicNames.from_settings(Settings.from_env({}))
    now = int(time.time() * 1000)
    records = [
        orjson.dumps({"id": str(i), "x": x, "y": y, "ts": now})
        for i, (x, y) in enumerate(itertools.islice(synth.Agrawal(seed=1), args.events))
    ]
    off = min(run(records, names, False)[0] for _ in range(args.repeat))
    on_runs = [run(records, names, True) for _ in range(args.repeat)]
    on = min(t for t, _ in on_runs)
    proc = on_runs[0][1]
    metrics = proc.metrics
    assert metrics is not None
    metrics.register_collector(lambda: {**proc.learners.describe(), "ready": True}, lambda p: 0)
    t0 = time.perf_counter()
    for _ in range(100):
        body = generate_latest(metrics.registry)
    scrape_ms = (time.perf_counter() - t0) * 10
    per_off = off / args.events * 1e6
    per_on = on / args.events * 1e6
    result = {
        "events": args.events,
        "handle_many_us_per_record_metrics_off": round(per_off, 2),
        "handle_many_us_per_record_metrics_on": round(per_on, 2),
        "metrics_us_per_record": round(per_on - per_off, 2),
        "metrics_cost_pct_of_handle": round(100 * (on - off) / off, 1),
        "scrape_ms_4_partitions": round(scrape_ms, 3),
        "scrape_bytes": len(body),
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).parent / "results" / "metrics_cost.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
