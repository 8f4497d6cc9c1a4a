"""One run, one broker, one dataset: River in memory, a raw aiokafka loop, Quix Streams, riverbed.

    make bench            # = .venv/bin/python -m bench.compare --events 100000

Pre-produces N JSON events (Agrawal, inline labels, keyed by id) over 4 partitions
once; then each system reads that topic with its own consumer group and, per event,
does exact test-then-train with StandardScaler | LogisticRegression (one model per
partition) and writes one prediction record. events/s is N over the span between the
first and the last prediction's Kafka timestamp (start-up excluded); RSS is the
process's peak (VmHWM). River in memory runs the same decode -> predict -> learn ->
encode loop on the pre-loaded bytes, without Kafka: the ceiling.

Rounds (--repeat, 3): the systems run interleaved, round after round, so a slow spell
of the machine hits them alike; each system's best round is its events/s (every
round's figure is kept in the JSON).

Latency: a second, paced stream (--latency-events at --rate events/s) is produced
while each Kafka system runs, after 4 unmeasured warm-up rounds of 100 events on its
fresh topics; p50/p99 are over (prediction's Kafka timestamp - its
event's Kafka timestamp), joined on the key (the event id); the run with the median
p99 of --repeat runs is reported.

Scaling: 1 and --workers riverbed workers in one consumer group on a fresh, empty
topic; once every worker has its share of the partitions, the same events are
written at full speed and the predictions' span is measured the same way.

Processes: the same workload through one ``riverbed worker --processes N`` command
(a supervisor and N worker processes in one group), --processes against 1, measured
as the scaling run.

Secured clusters: RIVERBED_SECURITY_PROTOCOL, RIVERBED_SASL_* and RIVERBED_SSL_* in
the environment apply to every client of the run (riverbed's workers, the raw aiokafka
loop, Quix Streams' librdkafka, the harness's readers and writers).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from bench.harness import (
    PARTITIONS,
    RESULTS,
    ROOT,
    Keyed,
    broker_settings,
    create_topics,
    delete_run_topics,
    kafka_client,
    mean_fetch_seconds,
    new_prefix,
    peak_rss_of,
    produce_values,
    read,
    ready,
    run_settings,
    run_worker,
    security_env,
    span_rate,
    start_worker,
    stop_worker,
    wait_written,
    worker_env,
)

WARMUP = 100  # events per warm-up round of a paced run
WARMUP_ROUNDS = 4


def _quix_broker(bootstrap: str) -> Any:
    """Quix Streams' broker_address: the address, or a ConnectionConfig when secured."""
    from quixstreams.kafka.configuration import ConnectionConfig

    from riverbed.config import Settings

    s = Settings.from_env(security_env())
    if s.security_protocol == "PLAINTEXT":
        return bootstrap
    conf: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "security_protocol": s.security_protocol.lower(),  # librdkafka's spelling
        "ssl_ca_location": s.ssl_cafile or None,
        "ssl_certificate_location": s.ssl_certfile or None,
        "ssl_key_location": s.ssl_keyfile or None,
    }
    if s.security_protocol.startswith("SASL"):
        conf.update(sasl_mechanism=s.sasl_mechanism, sasl_username=s.sasl_username,
                    sasl_password=s.sasl_password)  # fmt: skip
    return ConnectionConfig(**conf)


# The workload's model is a catalog name (logreg, or a tree workload's), passed down as
# ``model``: every system builds it from the same catalog; a child and a riverbed worker
# are told it.
def _model(model: str) -> Any:
    from riverbed import models

    return models.build(model)


def _predict_learn(models_by_p: dict[int, Any], p: int, value: bytes, model: str) -> bytes:
    e = orjson.loads(value)
    m = models_by_p.get(p)
    if m is None:
        m = models_by_p[p] = _model(model)
    proba = m.predict_proba_one(e["x"])
    y_pred = max(proba, key=proba.__getitem__) if proba else None
    if e.get("y") is not None:
        m.learn_one(e["x"], e["y"])
    return orjson.dumps(
        {"id": e["id"], "y_pred": y_pred, "proba": proba}, option=orjson.OPT_NON_STR_KEYS
    )


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM), MB."""
    return peak_rss_of(os.getpid())


# -- the systems ------------------------------------------------------------------------
async def raw_aiokafka(bootstrap: str, src: str, dst: str, n: int, model: str) -> None:
    """The hand-written loop: getmany -> test-then-train -> non-awaited sends."""
    from aiokafka import AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        src,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        **kafka_client(),
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **kafka_client())
    await consumer.start()
    await producer.start()
    models_by_p: dict[int, Any] = {}
    done = 0
    try:
        while done < n:
            batch = await consumer.getmany(timeout_ms=200, max_records=1000)
            for tp, records in batch.items():
                for r in records:
                    out = _predict_learn(models_by_p, tp.partition, r.value, model)
                    await producer.send(dst, out, key=r.key, partition=tp.partition)
                    done += 1
        await producer.flush()
    finally:
        await producer.stop()
        await consumer.stop()


def quix(bootstrap: str, src: str, dst: str, n: int, model: str) -> None:
    """A minimal Quix Streams app doing the same per event."""
    from quixstreams import Application

    # Quix keeps state (none here) under ./state by default: one empty folder per
    # run in the project's root.
    state = tempfile.TemporaryDirectory(prefix="bench-quix-")
    app = Application(
        broker_address=_quix_broker(bootstrap),
        consumer_group=f"quix-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        loglevel="WARNING",
        state_dir=state.name,
    )
    models_by_p: dict[int, Any] = {}
    done = {"n": 0}
    producer = app.get_producer()

    def on_message(value: bytes, key: Any, timestamp: int, headers: Any) -> None:
        from quixstreams import message_context

        p = message_context().partition
        producer.produce(dst, _predict_learn(models_by_p, p, value, model), key=key, partition=p)
        done["n"] += 1
        if done["n"] >= n:
            app.stop()

    topic = app.topic(src, value_deserializer="bytes", key_deserializer="bytes")
    sdf = app.dataframe(topic)
    sdf.update(on_message, metadata=True)
    with state, producer:
        app.run()


def in_memory(values: list[tuple[int, bytes]], model: str) -> float:
    models_by_p: dict[int, Any] = {}
    t0 = time.perf_counter()
    for p, v in values:
        _predict_learn(models_by_p, p, v, model)
    return len(values) / (time.perf_counter() - t0)


def in_memory_per_event(values: list[tuple[int, bytes]], model: str) -> tuple[float, float]:
    """p50 and p99 of one event's decode -> predict -> learn -> encode, in ms (a second
    pass on fresh models: what the model alone adds to an event's latency)."""
    import numpy as np

    models_by_p: dict[int, Any] = {}
    took = np.empty(len(values))
    clock = time.perf_counter
    for i, (p, v) in enumerate(values):
        t0 = clock()
        _predict_learn(models_by_p, p, v, model)
        took[i] = clock() - t0
    p50, p99 = np.percentile(took * 1000, [50, 99])
    return float(p50), float(p99)


def guard_cost(values: list[tuple[int, bytes]]) -> dict[str, float]:
    """Per-record cost of what keeps one record from poisoning a model (issue 13).

    A learner's own test-then-train, timed over the run's events, against the guard's
    per-record steps alone on the same events: the finite check of the prediction, the
    magnitude check before a learn, the feature-name check, and the journal append that
    lets a bad learn be undone (app/learning/learner.py). The rare paths (a walk of the model's
    state, a replay) cost nothing on a clean stream and are not in it.
    """
    import math

    from riverbed import models
    from riverbed.learning.guard import finite_prediction, huge
    from riverbed.learning.learner import PartitionLearner
    from riverbed.records import decode_event

    events = [(p, decode_event(v, 1 << 20), v) for p, v in values]
    learners = {p: PartitionLearner(models.spec("logreg"), partition=p) for p, _, _ in events}
    offsets = dict.fromkeys(learners, 0)
    t0 = time.perf_counter()
    for i, (p, e, v) in enumerate(events, 1):
        learners[p].process_event(e, offset=offsets[p], ts_ms=0, source=(v, None, ()))
        offsets[p] += 1
        if i % 10_000 == 0:  # checkpoints start the journals afresh
            for learner in learners.values():
                learner.checkpointed(b"")
    per_record = (time.perf_counter() - t0) / len(events)
    proba = {False: 0.25, True: 0.75}
    features: set[str] = set(events[0][1].x)
    journal: list[Any] = []
    t0 = time.perf_counter()
    for i, (_p, e, v) in enumerate(events):
        finite_prediction(False, proba)
        features.issuperset(e.x)
        huge(e.x)
        journal.append(("e", None, i, 0, (v, None, ()), len(v)))
        if len(journal) == 10_000:  # a checkpoint starts the journal afresh
            journal = []
    guard = (time.perf_counter() - t0) / len(events)
    assert math.isfinite(guard)
    return {
        "learner_us_per_record": round(per_record * 1e6, 2),
        "guard_us_per_record": round(guard * 1e6, 3),
        "guard_share": round(guard / per_record, 4),
    }


# -- orchestration ----------------------------------------------------------------------
def _latencies_ms(events: list[Any], outputs: list[Any]) -> tuple[float, float]:
    import numpy as np

    sent = {r.key: r.timestamp for r in events}
    pairs = [(sent[r.key], r.timestamp - sent[r.key]) for r in outputs if r.key in sent]
    lat = np.array([d for _, d in pairs], dtype=float)
    p50, p99 = np.percentile(lat, [50, 99])
    # Where a high p99 comes from: the worst 100 ms windows of the paced stream (by
    # send time), a one-off stall and a steady queue look different here.
    t0 = min(t for t, _ in pairs)
    worst: dict[int, float] = {}
    for t, d in pairs:
        w = (t - t0) // 100
        worst[w] = max(worst.get(w, d), d)
    top = sorted(worst.items(), key=lambda kv: -kv[1])[:3]
    print("  worst 100 ms windows: " + ", ".join(f"{w / 10:.1f} s {d:.0f} ms" for w, d in top))
    return float(p50), float(p99)


def _child(system: str, bootstrap: str, src: str, dst: str, n: int, model: str) -> float:
    """Run one system in a subprocess; return its peak RSS in MB."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.compare",
            "--child",
            system,
            "--bootstrap",
            bootstrap,
            "--src",
            src,
            "--dst",
            dst,
            "--events",
            str(n),
            "--model",
            model,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=900,
    )
    return float(proc.stdout.strip().splitlines()[-1])


def _riverbed(
    bootstrap: str,
    prefix: str,
    n: int,
    model: str,
    settings: Mapping[str, str],
    fetches: list[float] | None = None,
) -> float:
    """One riverbed worker until ``n`` predictions; its peak RSS. The mean time it took
    for one fetch (riverbed_batch_processing_seconds) is added to ``fetches``."""
    run = run_worker(bootstrap, prefix, n, model=model, settings=settings)
    fetch = mean_fetch_seconds(run.metrics)
    if fetch is not None and fetches is not None:
        fetches.append(fetch)
    return run.rss_mb


def _assigned(port: int) -> list[int]:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/models", timeout=2) as resp:
            return list(json.load(resp).get("assigned", []))
    except OSError:
        return []


def _wait_shared(
    ports: list[int], who: str, *, ready_port: int | None = None, alive: Any = lambda: True
) -> None:
    """Until the workers answering on ``ports`` own every partition, each its share
    (and ``ready_port``'s /ready answers); a dead process or 120 s raise."""
    deadline = time.monotonic() + 120
    while True:
        shares = [_assigned(port) for port in ports]
        owned = sorted(p for share in shares for p in share)
        if (
            owned == list(range(PARTITIONS))
            and all(shares)
            and (ready_port is None or ready(ready_port))
        ):
            return
        if not alive() or time.monotonic() > deadline:
            msg = f"{who} did not share the partitions: {shares}"
            raise RuntimeError(msg)
        time.sleep(0.2)  # polling a condition (the assignment), not waiting it out


def _rate_when_written(bootstrap: str, prefix: str, values: Keyed) -> float:
    """Write the events at full speed to ``prefix``'s topic; the predictions' events/s."""
    asyncio.run(produce_values(bootstrap, prefix + "events", values))
    asyncio.run(wait_written(bootstrap, prefix + "predictions", len(values)))
    return span_rate(asyncio.run(read(bootstrap, prefix + "predictions", len(values))))


def _scaling(
    bootstrap: str, workers: int, values: Keyed, model: str, settings: Mapping[str, str]
) -> float:
    """events/s of ``workers`` riverbed workers in one group, all joined before any data.

    The events topic starts empty; once the group's assignment gives every worker its
    share of the partitions, the pre-encoded events are written at full speed (a
    fraction of a second) and the predictions' span is measured as above.
    """
    from riverbed.kafka.topics import ensure_topics

    prefix = new_prefix(f"scale{workers}")
    app_id = f"scale-{uuid.uuid4().hex[:8]}"
    s = run_settings(bootstrap, prefix)
    asyncio.run(ensure_topics(s))
    envs = [
        worker_env(bootstrap, prefix, app_id, f"scale-{i}", model=model, settings=settings)
        for i in range(workers)
    ]
    procs = [start_worker(env) for env, _ in envs]
    try:
        _wait_shared([port for _, port in envs], f"{workers} workers")
        return _rate_when_written(bootstrap, prefix, values)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(60)


def _supervised(
    bootstrap: str, processes: int, values: Keyed, model: str, settings: Mapping[str, str]
) -> float:
    """events/s of one ``riverbed worker --processes N`` command, as ``_scaling``.

    The supervisor and its N worker processes (one consumer group, static membership)
    have every partition assigned, each child its share, before the events are
    written at full speed. ``--processes 1`` is the plain worker (no supervisor).
    """
    from riverbed.devtools.broker import free_ports
    from riverbed.kafka.topics import ensure_topics

    prefix = new_prefix(f"proc{processes}")
    s = run_settings(bootstrap, prefix)
    asyncio.run(ensure_topics(s))
    env, _ = worker_env(bootstrap, prefix, f"proc-{uuid.uuid4().hex[:8]}", f"proc{processes}",
                        model=model, settings=settings)  # fmt: skip
    port = free_ports(processes + 1)  # the supervisor's, then slot i's at port + 1 + i
    workers = [port] if processes == 1 else [port + 1 + slot for slot in range(processes)]
    env["RIVERBED_WEB_PORT"] = str(port)
    proc = start_worker(env, "--processes", str(processes))
    try:
        _wait_shared(workers, f"--processes {processes}", ready_port=port,
                     alive=lambda: proc.poll() is None)  # fmt: skip
        return _rate_when_written(bootstrap, prefix, values)
    finally:
        stop_worker(proc, 120)  # the supervisor stops its children gracefully


def _ratios(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """riverbed's events/s against each other system's."""
    rb = results["riverbed"]["events_per_s"]
    return {f"riverbed/{k}": round(rb / v["events_per_s"], 3)
            for k, v in results.items() if k != "riverbed"}  # fmt: skip


def _throughput(
    bootstrap: str,
    prefix: str,
    keyed: Keyed,
    systems: list[str],
    repeat: int,
    model: str,
    settings: Mapping[str, str],
) -> tuple[dict[str, dict[str, Any]], list[float]]:
    """events/s and peak RSS of each Kafka system on ``prefix``'s events topic, and the
    mean time each riverbed worker took for one fetch.

    Rounds interleave the systems, so a slow spell of the machine hits them alike;
    each system's best round is reported (as timeit reports the best of its runs).
    """
    src = prefix + "events"
    n = len(keyed)
    runs: dict[str, list[tuple[float, float]]] = {x: [] for x in systems}
    fetches: list[float] = []
    for rnd in range(repeat):
        for system in systems:
            if system == "riverbed":
                rprefix = prefix if rnd == 0 else f"{prefix}r{rnd}."
                if rnd:
                    asyncio.run(create_topics(bootstrap, [rprefix + "events"]))
                    asyncio.run(produce_values(bootstrap, rprefix + "events", keyed))
                rss = _riverbed(bootstrap, rprefix, n, model, settings, fetches)
                out = rprefix + "predictions"
            else:
                out = f"{prefix}{system}-out{rnd}"
                asyncio.run(create_topics(bootstrap, [out]))
                rss = _child(system, bootstrap, src, out, n, model)
            r = span_rate(asyncio.run(read(bootstrap, out, n)))
            runs[system].append((r, rss))
            print(
                f"{system:17} {r:10,.0f} events/s  peak RSS {rss:6.0f} MB  (round {rnd + 1})",
                flush=True,
            )
    results: dict[str, dict[str, Any]] = {}
    for system, measured in runs.items():
        best, rss = max(measured)
        results[system] = {
            "events_per_s": round(best),
            "rss_mb": round(rss, 1),
            "runs_events_per_s": [round(r) for r, _ in measured],
        }
    return results, fetches


def _latency(
    bootstrap: str,
    systems: list[str],
    repeat: int,
    n: int,
    rate: float,
    model: str,
    settings: Mapping[str, str],
) -> dict[str, dict[str, Any]]:
    """p50/p99 of each system at ``rate`` offered: the run with the median p99."""
    out: dict[str, dict[str, Any]] = {}
    for system in systems:
        paced = sorted(
            (_paced_latency(system, bootstrap, n, rate, model, settings) for _ in range(repeat)),
            key=lambda lat: lat[1],
        )
        p50, p99 = paced[len(paced) // 2]  # the run with the median p99
        out[system] = {
            "p50_ms": round(p50, 1),
            "p99_ms": round(p99, 1),
            "runs_p99_ms": [round(x[1], 1) for x in paced],
        }
        print(
            f"{system:17} p50 {p50:8.1f} ms  p99 {p99:8.1f} ms at {rate:,.0f}/s offered "
            f"(median of {len(paced)} runs by p99)",
            flush=True,
        )
    return out


# Events per tree workload: enough for several of riverbed's default checkpoints
# (every 10,000 records or 10 s) at each model's speed on 2 cores.
TREE_EVENTS = {"hoeffding": 40_000, "arf": 8_000}


def _workload(
    name: str,
    bootstrap: str,
    args: argparse.Namespace,
    systems: list[str],
    settings: Mapping[str, str],
) -> dict[str, Any]:
    """One tree workload, as the logreg one: Agrawal over 4 partitions, exact
    test-then-train, riverbed with its default checkpoints; latency at half of
    riverbed's events/s, against the mean time riverbed took for one full fetch.
    ``name`` is the model of everything the workload runs."""
    from riverbed.devtools.produce import produce

    n = TREE_EVENTS[name]
    print(f"-- workload {name}: {n:,} events", flush=True)
    prefix = new_prefix(name)
    s = run_settings(bootstrap, prefix)
    asyncio.run(produce(s, dataset="agrawal", limit=n, seed=7))
    dataset = asyncio.run(read(bootstrap, prefix + "events", n))
    values = [(r.partition, r.value) for r in dataset]
    rate = in_memory(values, name)
    p50, p99 = in_memory_per_event(values, name)
    results: dict[str, dict[str, Any]] = {
        "river_in_memory": {"events_per_s": round(rate), "p50_ms": round(p50, 2),
                            "p99_ms": round(p99, 2), "rss_mb": round(_peak_rss_mb(), 1)},
    }  # fmt: skip
    print(f"river in memory   {rate:10,.0f} events/s  per event p50 {p50:.2f} ms "
          f"p99 {p99:.2f} ms", flush=True)  # fmt: skip
    keyed = [(r.partition, r.key, r.value) for r in dataset]
    measured, fetches = _throughput(bootstrap, prefix, keyed, systems, args.repeat, name,
                                    settings)  # fmt: skip
    results.update(measured)
    fetch = sorted(fetches)[len(fetches) // 2] if fetches else None
    out: dict[str, Any] = {"events": n, "systems": results}
    if "riverbed" in results:
        paced_rate = results["riverbed"]["events_per_s"] / 2
        if not args.no_latency:
            events = round(paced_rate * args.tree_latency_seconds)
            for system, lat in _latency(bootstrap, systems, args.repeat, events,
                                        paced_rate, name, settings).items():  # fmt: skip
                results[system].update(lat)
        out["ratios"] = _ratios(results)
        out["latency_rate"] = round(paced_rate)
        if fetch is not None:
            out["fetch_ms"] = round(fetch * 1000, 1)
        one = f"  one fetch {fetch * 1000:.1f} ms" if fetch else ""
        print(json.dumps(out["ratios"]) + one, flush=True)
    return out


def _paced_latency(
    system: str, bootstrap: str, n: int, rate: float, model: str, settings: Mapping[str, str]
) -> tuple[float, float]:
    """Start the system on a fresh topic, produce n events at ``rate``, measure latency."""
    import threading

    from riverbed.devtools.produce import dataset_stream, produce

    prefix = new_prefix("lat")
    s = run_settings(bootstrap, prefix)
    src, dst = (
        prefix + "events",
        (prefix + "predictions" if system == "riverbed" else f"{prefix}{system}-out"),
    )
    asyncio.run(create_topics(bootstrap, [src, dst]))
    # Built before the clock starts: generating Agrawal events costs more CPU than
    # sending them, and on 2 cores the load generator shares the machine with the
    # system it measures.
    paced = list(itertools.islice(dataset_stream("agrawal", seed=11), n))
    total = WARMUP * WARMUP_ROUNDS + n
    runner = threading.Thread(
        target=(lambda: _riverbed(bootstrap, prefix, total, model, settings))
        if system == "riverbed"
        else (lambda: _child(system, bootstrap, src, dst, total, model))
    )
    runner.start()
    # Warm-up (not measured), in rounds: the consumer has joined its group and
    # answers, and the broker has set up the index files of every partition of both
    # topics. It does so lazily, at a log segment's first index entry (after 4 KiB,
    # index.interval.bytes); that append took 20-30 ms, and on fresh topics it fell
    # in the first 100 ms of every system's paced stream.
    for i in range(WARMUP_ROUNDS):
        asyncio.run(produce(s, dataset="agrawal", limit=WARMUP, seed=3 + i, id_prefix=f"warm{i}-"))
        asyncio.run(read(bootstrap, dst, WARMUP * (i + 1)))
    # The harness holds every dataset of the run; a full collection of it while the
    # paced stream is sent (~100 ms here) would hold back events already stamped,
    # and count against whichever system runs. Frozen, the collector skips them.
    gc.collect()
    gc.freeze()
    try:
        asyncio.run(produce(s, pairs=paced, rate=rate, id_prefix="paced"))
    finally:
        gc.unfreeze()
    runner.join()
    events = [r for r in asyncio.run(read(bootstrap, src, total)) if r.key.startswith(b"paced")]
    outputs = asyncio.run(read(bootstrap, dst, total))
    return _latencies_ms(events, outputs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=5000.0, help="offered rate for latency")
    ap.add_argument("--latency-events", type=int, default=20_000)
    ap.add_argument(
        "--systems",
        default="aiokafka,quix,riverbed",
        help="comma-separated Kafka systems to run (River in memory always runs)",
    )
    ap.add_argument("--no-latency", action="store_true", help="skip the paced latency runs")
    ap.add_argument("--workers", type=int, default=2, help="riverbed workers in the scaling run")
    ap.add_argument(
        "--processes",
        type=int,
        default=2,
        help="riverbed worker --processes N against --processes 1 (0: skip)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="rounds per system (best / median)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a riverbed setting for the workers, e.g. --set RIVERBED_CONSUMER_THREAD=true",
    )
    ap.add_argument(
        "--workloads",
        default=",".join(TREE_EVENTS),
        help="tree workloads run after logreg, in the same run (empty: none)",
    )
    ap.add_argument(
        "--tree-latency-seconds",
        type=float,
        default=4.0,
        help="length of a tree workload's paced stream, at half riverbed's events/s",
    )
    ap.add_argument("--model", default="logreg", help=argparse.SUPPRESS)  # a child's
    ap.add_argument("--child")
    ap.add_argument("--bootstrap")
    ap.add_argument("--src")
    ap.add_argument("--dst")
    args = ap.parse_args()
    model = args.model  # a child's, from its command line; logreg for a run
    if args.child:
        if args.child == "aiokafka":
            asyncio.run(raw_aiokafka(args.bootstrap, args.src, args.dst, args.events, model))
        else:
            quix(args.bootstrap, args.src, args.dst, args.events, model)
        print(_peak_rss_mb())
        return

    # --set NAME=VALUE: riverbed settings for every worker of the run (the environment's
    # RIVERBED_* variables are not passed on, so a run measures the defaults unless asked).
    worker_settings: dict[str, str] = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("RIVERBED_"):
            ap.error(f"--set {item!r}: expected RIVERBED_NAME=VALUE")
        worker_settings[name] = value
    from riverbed.devtools.broker import LocalBroker
    from riverbed.devtools.produce import produce

    settings = broker_settings()
    broker = LocalBroker.start_unless_running(settings)
    bootstrap = settings.bootstrap
    prefix = new_prefix("bench")
    s = run_settings(bootstrap, prefix)
    results: dict[str, dict[str, Any]] = {}
    workloads: dict[str, dict[str, Any]] = {}
    scaling: dict[str, Any] = {}
    supervised: dict[str, Any] = {}
    try:
        asyncio.run(produce(s, dataset="agrawal", limit=args.events, seed=7))
        src = prefix + "events"
        dataset = asyncio.run(read(bootstrap, src, args.events))
        values = [(r.partition, r.value) for r in dataset]
        rate = in_memory(values, model)
        results["river_in_memory"] = {
            "events_per_s": round(rate),
            "rss_mb": round(_peak_rss_mb(), 1),
        }
        print(f"river in memory   {rate:10,.0f} events/s", flush=True)
        guard = guard_cost(values)
        print(
            f"poison guard      {guard['guard_us_per_record']:.3f} µs a record of the "
            f"learner's {guard['learner_us_per_record']:.2f} µs "
            f"({guard['guard_share']:.1%})",
            flush=True,
        )
        systems = [x for x in args.systems.split(",") if x]
        keyed = [(r.partition, r.key, r.value) for r in dataset]
        measured, _ = _throughput(bootstrap, prefix, keyed, systems, args.repeat, model,
                                  worker_settings)  # fmt: skip
        results.update(measured)
        if "riverbed" in systems and args.workers > 1:
            one = _scaling(bootstrap, 1, keyed, model, worker_settings)
            many = _scaling(bootstrap, args.workers, keyed, model, worker_settings)
            scaling = {
                "workers": args.workers,
                "one_worker_events_per_s": round(one),
                "workers_events_per_s": round(many),
                "speedup": round(many / one, 2),
                "cores": os.cpu_count(),
            }
            print(
                f"riverbed scaling  1 worker {one:10,.0f} events/s; {args.workers} workers "
                f"{many:10,.0f} events/s ({many / one:.2f}x) on {os.cpu_count()} cores",
                flush=True,
            )
        if "riverbed" in systems and args.processes > 1:
            one = _supervised(bootstrap, 1, keyed, model, worker_settings)
            many = _supervised(bootstrap, args.processes, keyed, model, worker_settings)
            supervised = {
                "1": round(one),
                str(args.processes): round(many),
                "ratio": round(many / one, 2),
                "cores": os.cpu_count(),
            }
            print(
                f"riverbed worker   --processes 1 {one:10,.0f} events/s; --processes "
                f"{args.processes} {many:10,.0f} events/s ({many / one:.2f}x) "
                f"on {os.cpu_count()} cores",
                flush=True,
            )
        if not args.no_latency:
            for system, lat in _latency(bootstrap, systems, args.repeat, args.latency_events,
                                        args.rate, model, worker_settings).items():  # fmt: skip
                results[system].update(lat)
        for name in [w for w in args.workloads.split(",") if w]:
            workloads[name] = _workload(name, bootstrap, args, systems, worker_settings)
    finally:
        deleted = asyncio.run(delete_run_topics(bootstrap))
        print(f"deleted this run's {deleted} topics", flush=True)
        if broker is not None:
            broker.stop()
    if "riverbed" not in results:
        return
    ratios = _ratios(results)
    print(json.dumps(ratios, indent=2))
    full = {"river_in_memory", "aiokafka", "quix", "riverbed"}
    if set(results) != full or args.no_latency or set(workloads) != set(TREE_EVENTS):
        print("(a partial run: bench/results/latest.json is left as it was)")
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "events": args.events,
        "partitions": PARTITIONS,
        "model": "logreg",
        "latency_rate": args.rate,
        "systems": results,
        "ratios": ratios,
        "scaling": scaling,
        "processes": supervised,
        "guard": guard,
        "workloads": workloads,
    }
    (RESULTS / "latest.json").write_text(json.dumps(out, indent=2) + "\n")
    table = markdown_table(out)
    (RESULTS / "latest.md").write_text(table)
    print(table)


NAMES = {
    "river_in_memory": "River in memory",
    "aiokafka": "raw aiokafka loop",
    "quix": "Quix Streams",
    "riverbed": "**riverbed** (1 worker)",
}


def markdown_table(out: dict[str, Any]) -> str:
    """The README's table, from ``latest.json``."""
    rate = f"{out['latency_rate']:,.0f}/s"
    rows = [
        f"| system | events/s | p50 / p99 at {rate} offered | peak RSS | riverbed / system |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in out["systems"].items():
        latency = f"{r['p50_ms']:.0f} / {r['p99_ms']:.0f} ms" if "p99_ms" in r else "-"
        ratio = out["ratios"].get(f"riverbed/{name}")
        rows.append(
            f"| {NAMES.get(name, name)} | {r['events_per_s']:,} | {latency} | "
            f"{r['rss_mb']:.0f} MB | {f'{ratio:.2f}x' if ratio else ''} |"
        )
    sc = out.get("scaling")
    if sc:
        rows.append(
            f"| **riverbed** ({sc['workers']} workers, {sc['cores']} cores) | "
            f"{sc['workers_events_per_s']:,} | - | - | {sc['speedup']:.2f}x one worker |"
        )
    pr = out.get("processes")
    if pr:
        n = next(k for k in pr if k not in ("1", "ratio", "cores"))
        rows.append(
            f"| **riverbed** (`--processes {n}` against `--processes 1`, {pr['cores']} cores) | "
            f"{pr[n]:,} against {pr['1']:,} | - | - | {pr['ratio']:.2f}x |"
        )
    for name, w in out.get("workloads", {}).items():
        rows += [
            "",
            f"`{name}`, {w['events']:,} events; latency at {w['latency_rate']:,}/s offered "
            f"(half riverbed's events/s); riverbed's mean fetch took {w.get('fetch_ms', 0):.0f} ms",
            "",
            "| system | events/s | p50 / p99 | peak RSS | riverbed / system |",
            "|---|---:|---:|---:|---:|",
        ]
        for system, r in w["systems"].items():
            ratio = w["ratios"].get(f"riverbed/{system}")
            latency = f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f} ms" if "p99_ms" in r else "-"
            if system == "river_in_memory":
                latency += " (one event, no Kafka)"
            rows.append(
                f"| {NAMES.get(system, system)} | {r['events_per_s']:,} | {latency} | "
                f"{r['rss_mb']:.0f} MB | {f'{ratio:.2f}x' if ratio else ''} |"
            )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
