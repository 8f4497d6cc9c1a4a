"""Integration fixtures: the real local Kafka broker, unique names, worker and producer
processes (stopped at teardown, also when a test fails).

The session broker is started through the same :class:`riverbed.devtools.broker.LocalBroker` code as
``riverbed broker start``, on free ports and a fresh data directory, and stopped at the
end. ``RIVERBED_BROKER``, when set and answering, is used instead. The helpers the
fixtures use, and tests import, are in ``tests/integration/helpers.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from riverbed.devtools.broker import STATE, LocalBroker, answers_metadata
from tests.forked import ForkedRiverbed
from tests.integration.helpers import (
    BROKER_START_TIMEOUT_S,
    PRODUCER_STOP_TIMEOUT_S,
    Names,
    Worker,
    free_port,
    producer_process,
    riverbed_env,
)
from tests.integration.secured import Secured, secured_broker


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real Kafka broker for the whole session (with
    pytest-xdist, one broker for all its worker processes)."""
    given = os.environ.get("RIVERBED_BROKER")
    if given:
        from riverbed.config import parse_broker

        bootstrap = ",".join(parse_broker(given))
        if not answers_metadata(bootstrap, timeout=10):
            pytest.fail(f"RIVERBED_BROKER={given} does not answer metadata requests")
        yield bootstrap
        return
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # The run's temporary root, shared by the xdist workers of one run.
        yield from _shared_broker(tmp_path_factory.getbasetemp().parent)
        return
    broker = _new_broker()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
        broker.wipe()


def _new_broker() -> LocalBroker:
    port = free_port(pair=True)
    broker = LocalBroker(port=port, data_dir=STATE / f"test-broker-{port}")
    broker.wipe()
    broker.start(timeout=BROKER_START_TIMEOUT_S)
    return broker


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _shared_broker(root: Path) -> Iterator[str]:
    """One broker for the xdist workers of a run: the first to need it starts it, the
    last to finish stops it (a count of users in a file, under a file lock)."""
    state, lock = root / "kafka.json", root / "kafka.lock"
    with _locked(lock):
        shared = json.loads(state.read_text()) if state.exists() else {"users": 0}
        if not shared["users"]:
            broker = _new_broker()
            shared = {"users": 0, "port": broker.port, "bootstrap": broker.bootstrap}
        shared["users"] += 1
        state.write_text(json.dumps(shared))
    try:
        yield shared["bootstrap"]
    finally:
        with _locked(lock):
            shared = json.loads(state.read_text())
            shared["users"] -= 1
            state.write_text(json.dumps(shared))
            if not shared["users"]:
                port = shared["port"]
                broker = LocalBroker(port=port, data_dir=STATE / f"test-broker-{port}")
                broker.stop()
                broker.wipe()


@pytest.fixture
def names() -> Names:
    return Names()


@pytest.fixture
def start_worker(kafka: str, names: Names, output_dir: Path) -> Iterator[Any]:
    """Factory: start a worker with extra settings; all are stopped at teardown."""
    workers: list[Worker] = []

    def start(wait: bool = True, **settings: Any) -> Worker:
        settings.setdefault("web_port", free_port())
        settings.setdefault("data_dir", output_dir / f"worker-{len(workers)}")
        env = riverbed_env(kafka, names, **settings)
        w = Worker(env, output_dir / f"worker-{len(workers)}.log")
        workers.append(w)
        if wait:
            w.wait_ready()
        return w

    yield start
    for w in workers:
        w.stop()


@pytest.fixture
def start_producer(
    kafka: str, names: Names, output_dir: Path
) -> Iterator[Callable[..., ForkedRiverbed]]:
    """Factory: ``riverbed produce ARGS`` in the background (its output in
    ``producer-<i>.log``); killed at teardown."""
    procs: list[ForkedRiverbed] = []

    def start(*args: str, partitions: int) -> ForkedRiverbed:
        log = output_dir / f"producer-{len(procs)}.log"
        proc = producer_process(kafka, names, *args, partitions=partitions, log=log)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(PRODUCER_STOP_TIMEOUT_S)


@pytest.fixture(scope="session")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """A broker of its own with SASL_SSL and mutual-TLS listeners, signed by our CA."""
    yield from secured_broker(tmp_path_factory)
