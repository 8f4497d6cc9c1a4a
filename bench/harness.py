"""What the benchmarks share: the broker, the run's topics, riverbed worker processes.

    from bench import harness

    settings = harness.broker_settings()         # RIVERBED_BROKER and the security settings
    prefix = harness.new_prefix("mine")          # this run's topics: mine1a2b3c.events, ...
    env, port = harness.worker_env(settings.bootstrap, prefix, "mine-1", "mine", model="arf")
    worker = harness.start_worker(env)           # python -m riverbed worker, from the root
    ...                                          # harness.ready(port), harness.scrape(port)
    harness.stop_worker(worker)
    asyncio.run(harness.delete_run_topics(settings.bootstrap))

Everything a run varies (the model, the workers' settings, the partitions) is an
argument; nothing here is meant to be set from outside. Secured clusters:
RIVERBED_SECURITY_PROTOCOL, RIVERBED_SASL_* and RIVERBED_SSL_* in the environment apply
to every client of a run (riverbed's workers and the harness's readers and writers).

Imports of riverbed are lazy: a benchmark's child process (compare's raw aiokafka loop,
Quix Streams) imports this module, and its peak memory is measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PARTITIONS = 4
SECURITY = tuple(
    f"RIVERBED_{name}"
    for name in ("SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD",
                 "SSL_CAFILE", "SSL_CERTFILE", "SSL_KEYFILE")
)  # fmt: skip

Keyed = list[tuple[int, bytes, bytes]]  # (partition, key, value)


# -- the broker and its clients ---------------------------------------------------------
def security_env() -> dict[str, str]:
    """The run's connection settings (the environment's), for riverbed's Settings."""
    return {k: v for k, v in os.environ.items() if k in SECURITY}


def broker_settings() -> Any:
    """riverbed's Settings of the run's broker: RIVERBED_BROKER (or riverbed's default
    address) and the environment's security settings; nothing else of the environment.
    ``LocalBroker.start_unless_running`` starts the project's broker there if none answers.
    """
    from riverbed.config import Settings

    broker = {k: v for k, v in os.environ.items() if k == "RIVERBED_BROKER"}
    return Settings.from_env(broker | security_env())


def run_settings(bootstrap: str, prefix: str, partitions: int = PARTITIONS) -> Any:
    """riverbed's Settings for this run's topics under ``prefix`` (the harness's
    producers and topic creation use them)."""
    from riverbed.config import Settings

    env = {"RIVERBED_BROKER": bootstrap, "RIVERBED_TOPIC_PREFIX": prefix,
           "RIVERBED_PARTITIONS": str(partitions)}  # fmt: skip
    return Settings.from_env(env | security_env())


@functools.cache
def kafka_client() -> dict[str, Any]:
    """aiokafka connection arguments of every client of the run (riverbed's own)."""
    from riverbed.config import Settings
    from riverbed.kafka.security import client_args

    return client_args(Settings.from_env(security_env()))


# -- the run's topics -------------------------------------------------------------------
# Topic prefixes this run created; its topics are deleted at the end, so a broker kept
# for many runs does not pile them up (each full metadata response grows with them:
# ~30 ms of a client's loop to decode with 1,600 topics on a slow core). One run a
# process: new_prefix, own_prefix and worker_env add to it, delete_run_topics reads it.
_prefixes: list[str] = []


def new_prefix(name: str) -> str:
    """A fresh topic prefix, ``<name><6 hex digits>.``; its topics are the run's."""
    prefix = f"{name}{uuid.uuid4().hex[:6]}."
    _prefixes.append(prefix)
    return prefix


def own_prefix(prefix: str) -> None:
    """Topics starting with ``prefix`` are the run's too (deleted with them)."""
    _prefixes.append(prefix)


@contextlib.asynccontextmanager
async def admin(bootstrap: str) -> AsyncIterator[Any]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin_ = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kafka_client())
    await admin_.start()
    try:
        yield admin_
    finally:
        await admin_.close()


async def delete_run_topics(bootstrap: str) -> int:
    """Delete every topic under the run's prefixes; how many there were."""
    if not _prefixes:
        return 0
    async with admin(bootstrap) as a:
        ours = [t for t in await a.list_topics() if t.startswith(tuple(_prefixes))]
        if ours:
            await a.delete_topics(ours)
        return len(ours)


async def create_topics(bootstrap: str, topics: list[str], partitions: int = PARTITIONS) -> None:
    from aiokafka.admin import NewTopic

    async with admin(bootstrap) as a:
        await a.create_topics([NewTopic(t, partitions, 1) for t in topics])


# -- reading and writing ----------------------------------------------------------------
async def read(bootstrap: str, topic: str, n: int, timeout: float = 600) -> list[Any]:
    """``topic``'s records from the beginning until there are ``n`` (or ``timeout`` s)."""
    c = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **kafka_client(),
    )
    await c.start()
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            for records in (await c.getmany(timeout_ms=500, max_records=5000)).values():
                out.extend(records)
    finally:
        await c.stop()
    return out


def span_rate(records: list[Any]) -> float:
    """events/s: the records over the span of their Kafka timestamps."""
    ts = [r.timestamp for r in records]
    return len(records) / max((max(ts) - min(ts)) / 1000, 1e-3)


async def wait_written(
    bootstrap: str,
    topic: str,
    n: int,
    *,
    ready_port: int | None = None,
    timeout: float = 600,
    partitions: int = PARTITIONS,
) -> None:
    """Until ``topic`` holds ``n`` records, asking only for its end offsets.

    A worker is measured while it runs, so this takes as little CPU as it can: reading
    the output meanwhile, or listing the broker's topics (hundreds, on a broker that
    served earlier runs) took enough from a 2-core machine to show in the worker's
    latency. A worker answers ``/ready`` only after it created its topics, so
    ``end_offsets`` never asks for a missing one (it would wait 40 s for it).
    """
    from aiokafka import TopicPartition

    deadline = time.monotonic() + timeout
    while ready_port is not None and not ready(ready_port):
        if time.monotonic() > deadline:
            msg = f"the worker on port {ready_port} never became ready"
            raise TimeoutError(msg)
        await asyncio.sleep(0.25)  # polling a condition, not waiting it out
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **kafka_client())
    await c.start()
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    try:
        while time.monotonic() < deadline:
            if sum((await c.end_offsets(tps)).values()) >= n:
                return
            await asyncio.sleep(0.25)  # polling a condition, not waiting it out
    finally:
        await c.stop()
    msg = f"{topic} did not reach {n} records in {timeout:.0f} s"
    raise TimeoutError(msg)


async def produce_values(
    bootstrap: str, topic: str, values: Keyed, partitions: int = PARTITIONS
) -> None:
    """Write pre-encoded (partition, key, value) records as fast as aiokafka can."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024, **kafka_client()
    )
    await producer.start()
    try:
        futures = []
        for p in range(partitions):
            batch = producer.create_batch()
            for part, key, value in values:
                if part != p:
                    continue
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=p))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            futures.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


# -- worker processes -------------------------------------------------------------------
def worker_env(
    bootstrap: str,
    prefix: str,
    app_id: str,
    name: str,
    *,
    model: str = "logreg",
    settings: Mapping[str, str] | None = None,
    partitions: int = PARTITIONS,
) -> tuple[dict[str, str], int]:
    """A riverbed worker's environment, and the free port it will answer HTTP on.

    The environment's own RIVERBED_* variables are not passed on (a run measures the
    defaults unless asked), but for the security settings; ``settings`` (RIVERBED_NAME:
    value) come last and win. ``name`` names its data directory, ``.riverbed/bench-<name>``.
    """
    # Faust makes one topic outside the prefix, named after the app: its assignor's
    # ``<app id>-__assignor-__leader``. Deleted with the run's topics, or every run left
    # ~15 on the broker.
    own_prefix(f"{app_id}-__assignor-")
    from riverbed.devtools.broker import free_ports

    port = free_ports(1)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RIVERBED_")},
        "RIVERBED_BROKER": bootstrap,
        "RIVERBED_TOPIC_PREFIX": prefix,
        "RIVERBED_APP_ID": app_id,
        "RIVERBED_PARTITIONS": str(partitions),
        "RIVERBED_WEB_PORT": str(port),
        "RIVERBED_LOG_LEVEL": "warning",
        "RIVERBED_MODEL": model,
        "RIVERBED_DATA_DIR": str(ROOT / ".riverbed" / f"bench-{name}"),
        **security_env(),
        **(settings or {}),
    }
    return env, port


def start_worker(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """``python -m riverbed worker [args]`` from the project root, its output discarded."""
    return subprocess.Popen(
        [sys.executable, "-m", "riverbed", "worker", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """SIGTERM (a graceful stop; a supervisor stops its children so), then wait."""
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout)


def ready(port: int) -> bool:
    """Does the worker (or supervisor) on ``port`` answer ``/ready`` with 200?"""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def scrape(port: int) -> dict[str, float]:
    """The worker's unlabelled samples from its ``/metrics``."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def mean_fetch_seconds(samples: dict[str, float]) -> float | None:
    """The mean time the worker took to handle one fetch (riverbed_batch_processing_seconds)."""
    count = samples.get("riverbed_batch_processing_seconds_count", 0)
    return samples["riverbed_batch_processing_seconds_sum"] / count if count else None


def peak_rss_of(pid: int) -> float:
    """A process's peak RSS (VmHWM), MB. Not getrusage's ru_maxrss: Linux carries that
    across exec, so a child started by a big parent reported the parent's peak."""
    status = Path(f"/proc/{pid}/status").read_text()
    kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    return kb / 1024


@dataclass(frozen=True)
class WorkerRun:
    """What ``run_worker`` measured: the worker's peak RSS and its last /metrics."""

    rss_mb: float
    metrics: dict[str, float]


def run_worker(
    bootstrap: str,
    prefix: str,
    n: int,
    *,
    model: str = "logreg",
    settings: Mapping[str, str] | None = None,
) -> WorkerRun:
    """One riverbed worker on ``prefix``'s topics until ``n`` predictions are written.

    Its peak RSS and its /metrics are read before it is stopped (SIGTERM).
    """
    env, port = worker_env(
        bootstrap, prefix, f"bench-{uuid.uuid4().hex[:8]}", "worker", model=model,
        settings=settings,
    )  # fmt: skip
    proc = start_worker(env)
    try:
        asyncio.run(wait_written(bootstrap, prefix + "predictions", n, ready_port=port))
        rss = peak_rss_of(proc.pid)
        metrics = scrape(port)
    finally:
        stop_worker(proc)
    return WorkerRun(rss, metrics)
