"""Helpers of the integration tests: unique names, worker processes, a Kafka client.

The fixtures that use them are in ``conftest.py``; tests import these from here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from riverbed.devtools.broker import free_ports
from riverbed.kafka import compat
from tests import forked
from tests.forked import ForkedRiverbed
from tests.helpers import ROOT, wait_for

BROKER_START_TIMEOUT_S = 120.0
WORKER_READY_TIMEOUT_S = 60.0
RECV_TIMEOUT_S = 90.0
WORKER_STOP_TIMEOUT_S = 30.0
PRODUCER_STOP_TIMEOUT_S = 10.0


def free_port(pair: bool = False) -> int:
    """A free TCP port on 127.0.0.1 (and the next one too, with ``pair``), below the
    kernel's ephemeral range (:func:`riverbed.devtools.broker.free_ports` says why)."""
    return free_ports(2 if pair else 1)


@dataclass
class Names:
    """uuid topic prefix and app id (consumer group) for one test."""

    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def prefix(self) -> str:
        return f"t{self.uid}."

    @property
    def app_id(self) -> str:
        return f"rb-{self.uid}"

    def topic(self, name: str) -> str:
        return self.prefix + name

    @property
    def snapshots(self) -> str:
        """The app's own snapshots topic (``<prefix>snapshots.<app id>``)."""
        return f"{self.prefix}snapshots.{self.app_id}"


def riverbed_env(kafka: str, names: Names, **settings: Any) -> dict[str, str]:
    """Environment for a riverbed process of this test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERBED_")}
    env.update(
        RIVERBED_BROKER=kafka,
        RIVERBED_APP_ID=names.app_id,
        RIVERBED_TOPIC_PREFIX=names.prefix,
        PYTHONPATH=str(ROOT),
    )
    for k, v in settings.items():
        env[f"RIVERBED_{k.upper()}"] = str(v)
    return env


def riverbed(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the riverbed CLI to completion (forked: tests/forked.py says why)."""
    return forked.run(list(args), env, ROOT, timeout)


def total(worker: Worker, field: str, sub: str | None = None) -> int:
    """A /models counter summed over the worker's partitions (``sub``: a nested key)."""
    parts = worker.models()["partitions"].values()
    return sum(p[field][sub] if sub else p[field] for p in parts)


class Worker:
    """A ``riverbed worker`` process of a test."""

    def __init__(
        self, env: dict[str, str], log: Path, args: tuple[str, ...] = ("worker", "-l", "info")
    ) -> None:
        self.env = env
        self.port = int(env["RIVERBED_WEB_PORT"])
        self.log = log
        # Forked from a preloaded interpreter: tests/forked.py says why and what differs.
        self.proc: subprocess.Popen[bytes] | ForkedRiverbed = ForkedRiverbed(
            list(args), env, ROOT, log
        )

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                body = r.read()
                status = r.status
        except urllib.error.HTTPError as exc:
            body, status = exc.read(), exc.code
        try:
            return status, orjson.loads(body)
        except orjson.JSONDecodeError:
            return status, body.decode(errors="replace")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"worker exited with {self.proc.returncode}; log:\n{self.tail_log()}")
        try:
            return self.get("/ready")[0] == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float = WORKER_READY_TIMEOUT_S) -> None:
        wait_for(self._ready, timeout=timeout, what=f"worker on :{self.port} to be ready")

    def models(self) -> dict[str, Any]:
        return self.get("/models")[1]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail_log(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(WORKER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        assert code is not None
        return code


def post(
    worker: Worker, query: str, body: Any, token: str | None = None, raw: bytes | None = None
) -> tuple[int, Any, dict[str, str]]:
    data = raw if raw is not None else orjson.dumps(body)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    url = f"http://127.0.0.1:{worker.port}/predict{query}"
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, orjson.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read()), dict(exc.headers)


# -- Kafka helpers ---------------------------------------------------------------------


async def _produce(
    bootstrap: str,
    topic: str,
    records: list[tuple[bytes | None, bytes | None, int | None]],
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)
    await producer.start()
    try:
        futs = [
            await producer.send(topic, value=v, key=k, partition=p, headers=headers)
            for k, v, p in records
        ]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


def produce(
    bootstrap: str,
    topic: str,
    records: list[tuple[bytes | None, bytes | None, int | None]],
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """Send ``(key, value, partition)`` records and wait for the acks."""
    asyncio.run(_produce(bootstrap, topic, records, headers))


async def _consume(bootstrap: str, topic: str, n: int, timeout: float, **client: Any) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **client,
    )
    await consumer.start()
    out: list[Any] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while len(out) < n and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The consumer group's committed offsets of ``topic``, by partition."""

    async def read() -> dict[int, int]:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        return {tp.partition: m.offset for tp, m in offsets.items() if tp.topic == topic}

    return asyncio.run(read())


def consume(
    bootstrap: str, topic: str, n: int, timeout: float = RECV_TIMEOUT_S, **client: Any
) -> list[Any]:
    """At least ``n`` records of ``topic`` from the beginning; fails after ``timeout``.
    ``client``: aiokafka's connection arguments (security), if any."""
    records = asyncio.run(_consume(bootstrap, topic, n, timeout, **client))
    if len(records) < n:
        pytest.fail(f"got {len(records)} of {n} records from {topic} in {timeout:.0f} s")
    return records


def producer_process(
    kafka: str, names: Names, *args: str, partitions: int, log: Path
) -> ForkedRiverbed:
    """``riverbed produce ARGS`` in the background (for streams a test acts on midway),
    its output in ``log``."""
    env = riverbed_env(kafka, names, partitions=partitions)
    return ForkedRiverbed(["produce", *args], env, ROOT, log)


def read_all(bootstrap: str, topic: str, **client: Any) -> list[Any]:
    """Every record ``topic`` holds now (up to its end offsets when called)."""

    async def read() -> list[Any]:
        from aiokafka import TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                    **client)  # fmt: skip
        await consumer.start()
        try:
            parts = consumer.partitions_for_topic(topic) or set()
            if not parts:
                await compat.client_of(consumer).force_metadata_update()
                parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out: list[Any] = []
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    out.extend(records)
            return out
        finally:
            await consumer.stop()

    return asyncio.run(read())
