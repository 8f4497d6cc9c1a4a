"""``riverbed worker --processes 2`` through the real broker: restarts, static
membership, giving up, a clean stop, and the supervisor's one HTTP entry."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from riverbed.devtools.broker import STATE, LocalBroker, free_ports
from riverbed.devtools.replay import comparable, replay
from tests.helpers import wait_for
from tests.integration.helpers import (
    BROKER_START_TIMEOUT_S,
    RECV_TIMEOUT_S,
    WORKER_READY_TIMEOUT_S,
    Names,
    Worker,
    committed,
    consume,
    free_port,
    produce,
    riverbed,
    riverbed_env,
    total,
)
from tests.integration.test_recovery import AGRAWAL, N, check_exactly_once

pytestmark = pytest.mark.integration

PROCESSES = 2
SUPERVISOR_STOP_TIMEOUT_S = 90.0
SETTINGS = {"partitions": 4, "snapshot_every": 1500, "snapshot_interval": 1}


class Supervised(Worker):
    """A ``riverbed worker --processes N`` process (its HTTP entry is the supervisor's)."""

    def __init__(self, env: dict[str, str], log: Path, processes: int = PROCESSES) -> None:
        super().__init__(env, log, ("worker", "--processes", str(processes), "-l", "info"))

    def child(self, slot: int) -> Worker:
        """A view of slot ``slot``'s own HTTP server."""
        w = object.__new__(Worker)
        w.port = self.port + 1 + slot
        w.proc = self.proc
        return w

    def pids(self) -> dict[int, int]:
        return {p["slot"]: p["pid"] for p in self.get("/health")[1]["processes"]}

    def synced(self, pid: int) -> int:
        """How many times process ``pid`` synced the group (joined a generation)."""
        pattern = re.compile(rf"\] \[{pid}\] \[INFO\] Successfully synced group")
        return len(pattern.findall(self.log.read_text(errors="replace")))


@pytest.fixture
def supervised(kafka: str, names: Names, output_dir: Path) -> Any:
    started: list[Supervised] = []

    def start(wait: bool = True, processes: int = PROCESSES, **settings: Any) -> Supervised:
        env = riverbed_env(kafka, names, web_port=free_ports(processes + 1),
                           data_dir=output_dir / f"machine-{len(started)}", **settings)  # fmt: skip
        s = Supervised(env, output_dir / f"machine-{len(started)}.log", processes)
        started.append(s)
        if wait:
            s.wait_ready(WORKER_READY_TIMEOUT_S * 2)
        return s

    yield start
    for s in started:
        s.stop()


def test_a_killed_child_is_restarted_and_all_die_with_a_killed_supervisor(
    supervised: Any, start_producer: Any, kafka: str, names: Names
) -> None:
    machine = supervised(**SETTINGS)
    owned = {slot: machine.child(slot).models()["assigned"] for slot in range(PROCESSES)}
    assert sorted(owned[0] + owned[1]) == [0, 1, 2, 3] and owned[0] and owned[1], owned
    # The supervisor's /models is the machine's: every partition, the same schema.
    doc = machine.models()
    assert doc["assigned"] == [0, 1, 2, 3] and doc["ready"] and len(doc["processes"]) == 2

    producer = start_producer(*AGRAWAL, "--rate", "4000", partitions=4)
    wait_for(
        lambda: total(machine, "events") >= N // 3 and machine.models()["snapshots_written"] > 0,
        timeout=RECV_TIMEOUT_S,
        what="a third of the stream and a snapshot",
    )
    pids = machine.pids()
    other_syncs = machine.synced(pids[1])
    killed = time.monotonic()
    os.kill(pids[0], signal.SIGKILL)  # the supervisor stays; its child 0 dies
    wait_for(
        lambda: machine.pids()[0] != pids[0] and machine.get("/ready")[0] == 200,
        timeout=RECV_TIMEOUT_S,
        what="slot 0 restarted and ready",
    )
    back = time.monotonic() - killed
    health = machine.get("/health")[1]
    assert health["processes"][0]["restarts"] == 1 and health["restarts"] == 1
    # The warm spare took the slot, and a new one waits once the slot is ready again.
    assert f"worker slot 0 taken over by the warm spare (pid {machine.pids()[0]}" in (
        machine.log.read_text()
    )
    spare = wait_for(lambda: machine.get("/health")[1]["spare"], timeout=RECV_TIMEOUT_S,
                     what="a new warm spare")  # fmt: skip
    print(f"warm spare: pid {spare['pid']}, {spare['rss_mb']:.0f} MB resident")
    assert "killed by SIGKILL" in health["processes"][0]["exits"][-1]
    assert machine.child(0).models()["assigned"] == owned[0], "static membership: the same"
    assert machine.child(1).models()["assigned"] == owned[1]
    assert machine.synced(pids[1]) == other_syncs, "the other child never rejoined the group"
    assert producer.wait(RECV_TIMEOUT_S) == 0
    check_exactly_once(kafka, names, [machine])

    # The longest silence of any partition: gaps between its predictions' timestamps.
    stamps: dict[int, list[int]] = {}
    for r in consume(kafka, names.topic("predictions"), N):
        stamps.setdefault(r.partition, []).append(r.timestamp)
    silence = max(
        max((b - a for a, b in zip(sorted(ts), sorted(ts)[1:], strict=False)), default=0)
        for ts in stamps.values()
    )
    print(f"slot 0 ready again {back:.1f} s after kill -9; longest silence {silence / 1000:.1f} s")
    assert silence / 1000 < 45, "no partition waited for a session timeout"
    _, metrics = machine.get("/metrics")
    assert 'riverbed_worker_restarts_total{slot="0"} 1.0' in metrics
    assert re.search(r'riverbed_events_total\{partition="\d",slot="1"\}', metrics)

    # Then the supervisor itself is killed -9 while its children are frozen (SIGSTOP:
    # as if they had not died with it), and a new one starts on the same ports: it stops
    # them by its predecessor's PID file instead of crash-looping on "address in use".
    children = machine.pids()
    for pid in children.values():
        os.kill(pid, signal.SIGSTOP)
    # A stop is asynchronous: a thread not yet stopped would take the SIGTERM below
    # (Python's C handler) and leave nothing pending to see.
    wait_for(lambda: all(_stopped(p) for p in children.values()), timeout=RECV_TIMEOUT_S,
             what="the children stopped, every thread")  # fmt: skip
    machine.proc.send_signal(signal.SIGKILL)
    machine.proc.wait(SUPERVISOR_STOP_TIMEOUT_S)
    # The kernel sent each frozen child SIGTERM as its supervisor died (PR_SET_PDEATHSIG):
    # pending until it runs again. The warm spare, not frozen, is gone with it.
    assert all(_sigterm_pending(p) for p in children.values()), "children die with it"
    wait_for(lambda: _gone(spare["pid"]), timeout=RECV_TIMEOUT_S, what="the spare gone")
    successor = Supervised(machine.env, machine.log)
    try:
        successor.wait_ready(WORKER_READY_TIMEOUT_S * 2)
        assert all(_gone(p) for p in children.values())
        assert not set(successor.pids().values()) & set(children.values())
        health = successor.get("/health")[1]
        assert health["restarts"] == 0, health
        log = machine.log.read_text()
        assert "the workers of a previous supervisor still run (pids " in log
        assert "address already in use" not in log
    finally:
        successor.stop()


def test_restarts_past_the_intensity_stop_the_supervisor_with_the_reason(
    supervised: Any,
) -> None:
    # A model whose worker processes die at start (the supervisor's own check passes):
    # each slot is given up after its own restarts, and the supervisor with the last.
    machine = supervised(wait=False, model="tests.faulty_model:dies_in_a_worker_process",
                         restart_intensity=1)  # fmt: skip
    assert machine.proc.wait(SUPERVISOR_STOP_TIMEOUT_S) == 1
    log = machine.log.read_text()
    assert "stays down: 2 restarts within 60 s (more than the intensity 1)" in log
    assert "supervisor gave up: every worker slot is down" in log
    assert "exited with status 3" in log


def test_a_record_that_kills_its_process_is_quarantined_and_the_other_slot_goes_on(
    supervised: Any, kafka: str, names: Names
) -> None:
    """A segfault in the model on one record (as a C extension bug would): the slot
    that owns it dies twice, then dead-letters it (stage quarantine) and goes on; the
    other slot never notices; every other record is learned once, as offline."""
    model = "tests.faulty_model:segfaults_on_poison"
    machine = supervised(partitions=2, model=model)
    owner = next(s for s in range(PROCESSES) if 0 in machine.child(s).models()["assigned"])
    pids = machine.pids()
    other_syncs = machine.synced(pids[1 - owner])
    n, poison_at = 400, 150
    values = {p: [orjson.dumps({"id": f"e{p}-{i}", "x": {"a": i % 7, "b": (i * p) % 5},
                               "y": i % 3 == 0}) for i in range(n)] for p in (0, 1)}  # fmt: skip
    values[0][poison_at] = orjson.dumps({"id": "poison", "x": {"a": 1, "poison": 1}, "y": True})
    for p in (0, 1):
        produce(kafka, names.topic("events"), [(v, v, p) for v in values[p]])

    dlq = consume(kafka, names.topic("dlq"), 1)
    headers = {k: v.decode() for k, v in dlq[0].headers}
    assert headers["riverbed.stage"] == "quarantine", headers
    assert (headers["riverbed.source.partition"], headers["riverbed.source.offset"]) == (
        "0",
        str(poison_at),
    )
    assert "2 worker processes died while handling this record" in headers["riverbed.error"]
    assert dlq[0].value == values[0][poison_at]
    wait_for(lambda: total(machine, "learned") == 2 * n - 1, timeout=RECV_TIMEOUT_S,
             what="every other record learned")  # fmt: skip

    health = machine.get("/health")[1]["processes"]
    assert health[owner]["restarts"] == 2, health
    assert all("SIGSEGV" in e for e in health[owner]["exits"]), health
    assert machine.pids()[1 - owner] == pids[1 - owner], "the other slot was never stopped"
    assert machine.synced(pids[1 - owner]) == other_syncs, "nor did it rejoin the group"
    # Exactly as offline, without the quarantined record; repeats (after the crashes)
    # identical.
    seen: dict[tuple[int, int], dict[str, Any]] = {}
    for r in consume(kafka, names.topic("predictions"), 2 * n - 1):
        pred = orjson.loads(r.value)
        key = (pred["partition"], pred["offset"])
        assert seen.setdefault(key, comparable(pred)) == comparable(pred), key
    assert len(seen) == 2 * n - 1 and (0, poison_at) not in seen
    for p in (0, 1):
        steps = [("event", (e := orjson.loads(v))["x"], e["y"]) for v in values[p]]
        offsets = [o for o in range(n) if (p, o) != (0, poison_at)]
        expected, _ = replay(model, [steps[o] for o in offsets])
        assert [seen[(p, o)] for o in offsets] == expected, f"partition {p}"
    assert machine.get("/ready")[0] == 200
    assert machine.models()["crashes"] == [], "the crashes are passed"


def test_sigterm_stops_every_child_with_final_snapshots_and_exits_0(
    supervised: Any, kafka: str, names: Names
) -> None:
    machine = supervised(**SETTINGS)
    sent = riverbed("produce", *AGRAWAL[:2], "--limit", "3000",
                    env=riverbed_env(kafka, names, partitions=4))  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: total(machine, "events") == 3000, timeout=RECV_TIMEOUT_S, what="3000 events")
    # /predict through the supervisor's port is answered (by a child, or its owner).
    status, body = _post(machine.port, "?key=k-1", {"x": {"salary": 1.0}})
    assert status == 200 and body["partition"] in range(4)
    # The model export through it keeps the child's headers (offsets, model, file name).
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{machine.port}/models/0/model",
                                timeout=10) as r:  # fmt: skip
        assert r.status == 200 and r.headers["X-Riverbed-Model"] == "logreg"
        assert int(r.headers["X-Riverbed-Events-Offset"]) >= 0
        assert "model-p0.pkl" in r.headers["Content-Disposition"]
    machine.proc.send_signal(signal.SIGTERM)
    assert machine.proc.wait(SUPERVISOR_STOP_TIMEOUT_S) == 0
    # Each child checkpointed and committed everything it handled.
    assert sum(committed(kafka, names.app_id, names.topic("events")).values()) == 3000
    assert "supervisor stopped 2 workers" in machine.log.read_text()


def _post(port: int, query: str, body: Any) -> tuple[int, Any]:
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}/predict{query}",
                                 data=orjson.dumps(body), method="POST")  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, orjson.loads(r.read())


def _sigterm_pending(pid: int) -> bool:
    """Whether SIGTERM is pending for process ``pid`` (a stopped one has not run it)."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    pending = [int(line.split()[1], 16) for line in status if line[:6] in ("SigPnd", "ShdPnd")]
    return any(mask & (1 << (signal.SIGTERM - 1)) for mask in pending)


def _stopped(pid: int) -> bool:
    """Whether every thread of process ``pid`` is stopped (state T)."""
    states = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:  # the process is gone: never stopped (wait_for says so)
        return False
    for task in tasks:
        try:  # the state follows the parenthesised name, which may hold spaces
            states.append((task / "stat").read_text().rpartition(")")[2].split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that has just exited
            continue
    return bool(states) and all(state in ("T", "t") for state in states)


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie waiting for init counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in state


@pytest.fixture
def own_broker() -> Iterator[LocalBroker]:
    """A broker of this test's own, which it may stop."""
    port = free_port(pair=True)
    broker = LocalBroker(port=port, data_dir=STATE / f"test-broker-{port}")
    broker.wipe()
    broker.start(timeout=BROKER_START_TIMEOUT_S)
    try:
        yield broker
    finally:
        broker.stop()
        broker.wipe()


def test_with_the_broker_gone_ready_says_so_and_a_stop_takes_seconds(
    own_broker: LocalBroker, names: Names, output_dir: Path
) -> None:
    bootstrap = f"127.0.0.1:{own_broker.port}"
    env = riverbed_env(bootstrap, names, web_port=free_ports(PROCESSES + 1), partitions=2,
                       data_dir=output_dir / "machine", session_timeout=6)  # fmt: skip
    machine = Supervised(env, output_dir / "machine.log")
    try:
        machine.wait_ready(WORKER_READY_TIMEOUT_S * 2)
        sent = riverbed(
            "produce", "--limit", "1000", env=riverbed_env(bootstrap, names, partitions=2)
        )
        assert sent.returncode == 0, sent.stderr
        wait_for(lambda: total(machine, "events") == 1000, timeout=RECV_TIMEOUT_S,
                 what="1000 events")  # fmt: skip
        broker_pid = own_broker.pid()
        assert broker_pid is not None
        os.kill(broker_pid, signal.SIGKILL)  # gone at once (its graceful stop can take 30 s)

        def unreachable() -> bool:
            status, doc = machine.get("/ready")
            said = [p.get("reason", "") for p in doc["processes"]]
            return status == 503 and all(r.startswith("no broker has answered") for r in said)

        wait_for(unreachable, timeout=RECV_TIMEOUT_S, what="/ready: 503, the broker gone")
        # A stop cannot write the final checkpoints: each child says so and ends, at
        # once, in parallel (it took 60 s per child, one after the other, then SIGKILL).
        began = time.monotonic()
        machine.proc.send_signal(signal.SIGTERM)
        assert machine.proc.wait(SUPERVISOR_STOP_TIMEOUT_S) == 0
        took = time.monotonic() - began
        log = machine.log.read_text()
        assert log.count("the final checkpoint cannot be written") == PROCESSES
        assert "did not stop in" not in log
        print(f"stopped with the broker down in {took:.1f} s")
        assert took < 30
    finally:
        machine.stop()
