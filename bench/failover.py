"""Failover of supervised workers through the real broker (issue 17, item 4).

    .venv/bin/python bench/failover.py          # all three parts, ~13 min on 2 cores

1. **Child kills.** ``riverbed worker --processes 2`` under a steady, paced stream
   (``--rate``, 2,000 events/s, Agrawal with inline labels, 4 partitions); every
   ``--spacing`` s one child is killed with SIGKILL, alternating slots, ``--kills``
   times. The supervisor restarts it (static membership: same ``group.instance.id``).
   For each kill and each of the killed child's partitions: seconds from the kill to
   the Kafka timestamp of the first prediction of an event that had no prediction
   before the kill (repeats of events handled after the last snapshot do not count);
   and the longest pause of the other child's partitions around the kill.
2. **Machine lost.** Two supervised workers (2 processes each, own web ports, data dirs
   and ``RIVERBED_GROUP_INSTANCE_ID`` bases, one app id); the supervisor of one and its
   children are SIGKILLed together (its process group). Seconds until the survivor
   owns every partition, and until each lost partition predicts a new event again,
   with ``RIVERBED_SESSION_TIMEOUT`` 45 (the default) and shorter ones.
3. **Slow model vs short session timeouts.** ``RIVERBED_MODEL=arf`` on a backlog (each
   fetch a full ``RIVERBED_BATCH_MAX`` records), 2 processes, for ``--arf-seconds``:
   the longest fetch (``riverbed_batch_processing_seconds``), the longest time a child
   took to answer ``/health`` (its event loop, where heartbeats run, was busy), and
   group rebalances counted in the log (syncs after each child's first).

After parts 1 and 2, every event must have a prediction (events lost: 0), repeats
must be identical, the labels learned must equal the labels sent, and each
partition's predictions must equal an offline replay (``tests/replay.py``).

Results: a table on stdout and ``bench/results/failover.json``. Before a timed run
nothing else should load the machine; the load average is recorded with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from compare import _security_env  # the bench folder is the script's path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
PARTITIONS = 4
BATCH = "riverbed_batch_processing_seconds"
CREATED: list[str] = []  # this run's topic prefixes (its own and its app ids')
READY_TIMEOUT_S = 120.0


def _client() -> dict[str, Any]:
    from riverbed.config import Settings
    from riverbed.kafka.security import client_args

    return client_args(Settings.from_env(_security_env()))


def _get(port: int, path: str, timeout: float = 5.0) -> tuple[int, Any]:
    """(status, JSON body) of a local HTTP GET; (0, None) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except OSError:
        return 0, None
    try:
        return status, orjson.loads(body)
    except orjson.JSONDecodeError:
        return status, body.decode(errors="replace")


def _wait(condition: Any, what: str, timeout: float = READY_TIMEOUT_S, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})"
            raise TimeoutError(msg)
        time.sleep(every)  # polling a condition, not waiting it out


class Run:
    """One scenario's topics, app id, machines and producer."""

    def __init__(self, bootstrap: str, name: str, workdir: Path, model: str = "logreg") -> None:
        self.bootstrap = bootstrap
        self.model = model
        uid = uuid.uuid4().hex[:8]
        self.prefix = f"fo{uid}."
        self.app_id = f"failover-{name}-{uid}"
        CREATED.extend([self.prefix, self.app_id])  # topic prefixes to delete at the end
        self.dir = workdir / f"{name}-{uid}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = uuid.uuid4().hex
        self.machines: list[Machine] = []
        self.producer: subprocess.Popen[bytes] | None = None

    def env(self, **settings: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RIVERBED_")}
        env.update(
            RIVERBED_BROKER=self.bootstrap,
            RIVERBED_TOPIC_PREFIX=self.prefix,
            RIVERBED_APP_ID=self.app_id,
            RIVERBED_PARTITIONS=str(PARTITIONS),
            RIVERBED_SNAPSHOT_KEY=self.key,
            RIVERBED_MODEL=self.model,
            PYTHONPATH=str(ROOT),
            **_security_env(),
        )
        for k, v in settings.items():
            if v is not None:
                env[f"RIVERBED_{k.upper()}"] = str(v)
        return env

    def topic(self, name: str) -> str:
        return self.prefix + name

    def create_topics(self) -> None:
        from riverbed.config import Settings
        from riverbed.kafka.topics import ensure_topics

        asyncio.run(ensure_topics(Settings.from_env(self.env())))

    def machine(self, name: str, processes: int = 2, **settings: Any) -> Machine:
        m = Machine(self, name, processes, **settings)
        self.machines.append(m)
        return m

    def produce(self, n: int, rate: float, seed: int = 7) -> subprocess.Popen[bytes]:
        self.producer = subprocess.Popen(
            [sys.executable, "-m", "riverbed", "produce", "--dataset", "agrawal",
             "--limit", str(n), "--rate", str(rate), "--seed", str(seed), "--id-prefix", "k"],
            env=self.env(), cwd=ROOT, stdout=subprocess.DEVNULL,
            stderr=(self.dir / "producer.log").open("ab"),
        )  # fmt: skip
        return self.producer

    def close(self) -> None:
        if self.producer is not None and self.producer.poll() is None:
            self.producer.kill()
            self.producer.wait()
        for m in self.machines:
            m.stop()


class Machine:
    """A ``riverbed worker --processes N`` process group (a supervisor and its children)."""

    def __init__(self, run: Run, name: str, processes: int, **settings: Any) -> None:
        self.name = name
        self.processes = processes
        from riverbed.devtools.broker import free_ports

        self.port = free_ports(processes + 1)
        self.log = run.dir / f"{name}.log"
        env = run.env(
            web_port=self.port,
            data_dir=run.dir / f"data-{name}",
            group_instance_id=f"{run.app_id}-{name}",
            **settings,
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "riverbed", "worker", "--processes", str(processes),
             "-l", "info"],
            env=env, cwd=ROOT, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the whole machine dies at once
        )  # fmt: skip

    def child_port(self, slot: int) -> int:
        return self.port + 1 + slot

    def models(self) -> dict[str, Any]:
        status, doc = _get(self.port, "/models")
        return doc if status == 200 and isinstance(doc, dict) else {}

    def pids(self) -> dict[int, int]:
        status, doc = _get(self.port, "/health")
        if status != 200:
            return {}
        return {p["slot"]: p["pid"] for p in doc["processes"] if p["alive"]}

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            msg = f"machine {self.name} exited with {self.proc.returncode}; see {self.log}"
            raise RuntimeError(msg)
        return _get(self.port, "/ready")[0] == 200

    def assigned(self, slot: int | None = None) -> list[int]:
        port = self.port if slot is None else self.child_port(slot)
        status, doc = _get(port, "/models")
        return list(doc.get("assigned", [])) if status == 200 and isinstance(doc, dict) else []

    def total(self, field: str) -> int:
        return sum(p.get(field, 0) for p in self.models().get("partitions", {}).values())

    def kill_all(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


# -- reading and checking ---------------------------------------------------------------
async def _read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` up to its end offsets now."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **_client())
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        end = await c.end_offsets(tps)
        out: list[Any] = []
        while [tp for tp in tps if await c.position(tp) < end[tp]]:
            for records in (await c.getmany(timeout_ms=500, max_records=20_000)).values():
                out.extend(records)
        return out
    finally:
        await c.stop()


def read_all(run: Run, name: str) -> list[Any]:
    return asyncio.run(_read_all(run.bootstrap, run.topic(name)))


Prediction = tuple[int, int]  # (event offset, Kafka timestamp ms)


def predictions_by_partition(records: list[Any]) -> dict[int, list[Prediction]]:
    out: dict[int, list[Prediction]] = defaultdict(list)
    for r in records:
        p = orjson.loads(r.value)
        out[p["partition"]].append((p["offset"], r.timestamp))
    return out


def check_exactly_once(run: Run, final: list[Machine], n: int) -> dict[str, Any]:
    """Events lost, repeats, labels learned, and equality with an offline replay."""
    from tests.replay import comparable, replay

    _wait(lambda: sum(m.total("learned") for m in final) >= n, f"{n} labels learned", 300, 0.5)
    learned = sum(m.total("learned") for m in final)
    gaps = sum(m.total("offset_gaps") for m in final)
    events = read_all(run, "events")
    preds = read_all(run, "predictions")
    seen: dict[tuple[int, int], dict[str, Any]] = {}
    repeats = differing = 0
    for r in preds:
        p = orjson.loads(r.value)
        key = (p["partition"], p["offset"])
        mine = {"id": p["id"], **comparable(p)}
        if key in seen:
            repeats += 1
            differing += seen[key] != mine
        seen[key] = mine
    by_part: dict[int, list[Any]] = defaultdict(list)
    for r in events:
        by_part[r.partition].append(r)
    replay_differs: list[int] = []
    for part, evs in sorted(by_part.items()):
        evs.sort(key=lambda r: r.offset)
        steps = [("event", (e := orjson.loads(r.value))["x"], e["y"]) for r in evs]
        expected, _ = replay(run.model, steps)
        got = [{k: v for k, v in seen.get((part, r.offset), {}).items() if k != "id"} for r in evs]
        if got != expected:
            replay_differs.append(part)
    return {
        "events": len(events),
        "predictions": len(preds),
        "lost": len(events) - sum(1 for r in events if (r.partition, r.offset) in seen),
        "repeats": repeats,
        "repeats_differing": differing,
        "labels_sent": len(events),
        "learned": learned,
        "offset_gaps": gaps,
        "replay_equal": not replay_differs and len(events) == n,
        "partitions_differing": replay_differs,
        "ok": (
            len(events) == n
            and len(seen) == n
            and differing == 0
            and learned == n
            and gaps == 0
            and not replay_differs
        ),
    }


def back_after(preds: list[Prediction], kill_ms: int) -> float | None:
    """Seconds from ``kill_ms`` to the first prediction of an event not predicted before."""
    before = [off for off, ts in preds if ts < kill_ms]
    last = max(before, default=-1)
    new = [ts for off, ts in preds if ts > kill_ms and off > last]
    return (min(new) - kill_ms) / 1000 if new else None


def pause_around(preds: list[Prediction], kill_ms: int, within_ms: int) -> float:
    """Longest gap between a partition's prediction timestamps in ``[kill, kill+within]``
    (from its last prediction before the kill)."""
    stamps = sorted(ts for _, ts in preds)
    window = [ts for ts in stamps if kill_ms <= ts <= kill_ms + within_ms]
    before = [ts for ts in stamps if ts < kill_ms]
    if before:
        window.insert(0, before[-1])
    gaps = [b - a for a, b in itertools.pairwise(window)]
    return max(gaps, default=0) / 1000


# -- 1. child kills ---------------------------------------------------------------------
def child_kills(
    bootstrap: str, workdir: Path, args: argparse.Namespace, spare: str = "on"
) -> dict[str, Any]:
    run = Run(bootstrap, "kills", workdir)
    try:
        run.create_topics()
        machine = run.machine("m0", processes=2, warm_spare=spare)
        _wait(lambda: machine.ready() and all(machine.assigned(s) for s in (0, 1)), "ready")
        warmup, tail = 15.0, 15.0
        n = int(args.rate * (warmup + args.kills * args.spacing + tail))
        producer = run.produce(n, args.rate)
        t0 = time.monotonic()
        _wait(lambda: machine.models().get("snapshots_written", 0) > 0, "a first snapshot")
        time.sleep(max(0.0, t0 + warmup - time.monotonic()))  # steady load before the first kill
        kills: list[dict[str, Any]] = []
        last_kill = 0.0
        for k in range(args.kills):
            slot = k % 2
            time.sleep(max(0.0, last_kill + args.spacing - time.monotonic()))  # the spacing
            _wait(machine.ready, "the machine ready before a kill")
            pids = machine.pids()
            owned = machine.assigned(slot)
            other = machine.assigned(1 - slot)
            os.kill(pids[slot], signal.SIGKILL)
            # Stamped once the signal is sent: a prediction after it is the new owner's.
            last_kill = time.monotonic()
            kill_ms = int(time.time() * 1000)
            _wait(
                lambda s=slot, old=pids[slot]: (
                    machine.pids().get(s, old) != old and machine.ready()
                ),
                f"slot {slot} restarted and ready",
            )
            ready_s = time.monotonic() - last_kill
            kills.append({"kill": k + 1, "slot": slot, "pid": pids[slot], "kill_ms": kill_ms,
                          "partitions": owned, "others": other,
                          "ready_s": round(ready_s, 2)})  # fmt: skip
            print(f"  kill {k + 1:2}: slot {slot} (pid {pids[slot]}, partitions {owned}) "
                  f"ready again after {ready_s:.1f} s", flush=True)  # fmt: skip
        if producer.wait(n / args.rate + 120) != 0:
            raise RuntimeError(f"the producer failed; see {run.dir / 'producer.log'}")
        health = _get(machine.port, "/health")[1]
        assert machine.proc.poll() is None, "the supervisor gave up"
        check = check_exactly_once(run, [machine], n)
        preds = predictions_by_partition(read_all(run, "predictions"))
        for kill in kills:
            ms = kill["kill_ms"]
            back = {p: back_after(preds[p], ms) for p in kill["partitions"]}
            kill["back_s"] = {str(p): round(s, 2) if s is not None else None
                              for p, s in back.items()}  # fmt: skip
            kill["worst_back_s"] = max((s for s in back.values() if s is not None), default=None)
            kill["others_pause_s"] = round(
                max((pause_around(preds[p], ms, 10_000) for p in kill["others"]), default=0), 3
            )
        return {
            "warm_spare": spare,
            "spare_rss_mb": (health.get("spare") or {}).get("rss_mb"),
            "rate": args.rate,
            "events": n,
            "spacing_s": args.spacing,
            "kills": kills,
            "restarts": health["restarts"],
            "check": check,
            "log": str(machine.log.relative_to(ROOT)),
        }
    finally:
        run.close()


# -- 2. a whole machine lost ------------------------------------------------------------
def machine_lost(
    bootstrap: str, workdir: Path, args: argparse.Namespace, timeout: float | None
) -> dict[str, Any]:
    label = "default" if timeout is None else f"{timeout:g}"
    run = Run(bootstrap, f"machine-{label}", workdir)
    try:
        run.create_topics()
        settings = {"session_timeout": timeout}
        lost = run.machine("a", processes=2, **settings)
        survivor = run.machine("b", processes=2, **settings)
        both = (lost, survivor)
        _wait(
            lambda: (
                all(m.ready() for m in both) and all(m.assigned(s) for m in both for s in (0, 1))
            ),
            "both machines ready, every child with a partition",
        )
        session = timeout if timeout is not None else 45.0
        warmup, tail = 15.0, 20.0
        n = int(args.rate * (warmup + session + tail))
        producer = run.produce(n, args.rate)
        t0 = time.monotonic()
        _wait(lambda: all(m.models().get("snapshots_written", 0) > 0 for m in both), "snapshots")
        time.sleep(max(0.0, t0 + warmup - time.monotonic()))  # steady load before the loss
        owned = lost.assigned()
        kept = survivor.assigned()
        lost.kill_all()  # the supervisor and its children, SIGKILL, at once
        killed = time.monotonic()
        kill_ms = int(time.time() * 1000)
        _wait(
            lambda: survivor.assigned() == list(range(PARTITIONS)) and survivor.ready(),
            "the survivor owning every partition",
            timeout=session + 120,
            every=0.1,
        )
        owns_s = time.monotonic() - killed
        print(f"  session timeout {session:g} s: the survivor owns every partition "
              f"{owns_s:.1f} s after the loss", flush=True)  # fmt: skip
        if producer.wait(n / args.rate + 120) != 0:
            raise RuntimeError(f"the producer failed; see {run.dir / 'producer.log'}")
        check = check_exactly_once(run, [survivor], n)
        preds = predictions_by_partition(read_all(run, "predictions"))
        back = {p: back_after(preds[p], kill_ms) for p in owned}
        return {
            "session_timeout_s": session,
            "default": timeout is None,
            "rate": args.rate,
            "events": n,
            "lost_partitions": owned,
            "survivor_partitions": kept,
            "owns_all_s": round(owns_s, 2),
            "back_s": {str(p): round(s, 2) if s is not None else None for p, s in back.items()},
            "worst_back_s": max((s for s in back.values() if s is not None), default=None),
            "survivor_pause_s": round(
                max(pause_around(preds[p], kill_ms, int((session + 30) * 1000)) for p in kept), 2
            ),
            "check": check,
        }
    finally:
        run.close()


# -- 3. a slow model and short session timeouts ------------------------------------------
def _histogram(text: str, name: str) -> dict[float, float]:
    """Cumulative bucket counts of a histogram, summed over its series (``-1``: the sum)."""
    buckets: dict[float, float] = defaultdict(float)
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = re.search(r'le="([^"]+)"', line)
            assert le is not None
            buckets[float(le.group(1))] += float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_sum"):
            buckets[-1.0] += float(line.rsplit(" ", 1)[1])
    return buckets


def _fetch_times(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """Fetches handled between two scrapes: count, mean, the bucket of the longest."""
    diff = {b: after.get(b, 0.0) - before.get(b, 0.0) for b in after}
    count = diff.get(float("inf"), 0.0)
    bounds = sorted(b for b in diff if b >= 0)
    return {
        "fetches": int(count),
        "mean_s": round(diff.get(-1.0, 0.0) / count, 3) if count else None,
        "longest_at_most_s": next((b for b in bounds if diff[b] >= count), None),
        **{f"over_{b:g}s": int(count - diff[b]) for b in bounds if 0.5 <= b < 30},
    }


def slow_model(
    bootstrap: str, workdir: Path, args: argparse.Namespace, timeout: float
) -> dict[str, Any]:
    run = Run(bootstrap, f"arf-{timeout:g}", workdir, model="arf")
    try:
        run.create_topics()
        # More than the run can handle (~3,800 events/s here): every fetch a full one.
        backlog = args.arf_backlog or int(50_000 + 6_000 * args.arf_seconds)
        producer = run.produce(backlog, 0, seed=3)
        if producer.wait(600) != 0:
            raise RuntimeError(f"the producer failed; see {run.dir / 'producer.log'}")
        machine = run.machine("m0", processes=2, session_timeout=timeout)
        _wait(lambda: machine.ready() and all(machine.assigned(s) for s in (0, 1)), "ready")
        # Measured from here: the group is stable, each child has its partitions.
        before = machine.log.stat().st_size
        restarts_before = _get(machine.port, "/health")[1]["restarts"]
        handled_before = machine.total("events")
        batch_before = _histogram(_get(machine.port, "/metrics")[1], BATCH)
        started = time.monotonic()
        slowest = {0: 0.0, 1: 0.0}
        while time.monotonic() - started < args.arf_seconds:
            for slot in (0, 1):
                t = time.perf_counter()
                _get(machine.child_port(slot), "/health", timeout=60)
                slowest[slot] = max(slowest[slot], time.perf_counter() - t)
            time.sleep(0.2)  # polling interval of the loop probe
        elapsed = time.monotonic() - started
        handled = machine.total("events") - handled_before
        batch = _fetch_times(batch_before, _histogram(_get(machine.port, "/metrics")[1], BATCH))
        restarts = _get(machine.port, "/health")[1]["restarts"] - restarts_before
        with machine.log.open("rb") as fh:
            fh.seek(before)
            log = fh.read().decode(errors="replace")
        return {
            "model": "arf",
            "session_timeout_s": timeout,
            "heartbeat_interval_s": min(1.0, timeout / 3),
            "seconds": args.arf_seconds,
            "events_handled": handled,
            "events_per_s": round(handled / elapsed),
            "fetch": batch,
            "longest_health_answer_s": {str(s): round(v, 2) for s, v in slowest.items()},
            "rebalances": len(re.findall(r"Successfully synced group", log)),
            "revocations": log.count("Revoking previously assigned partitions"),
            "heartbeat_failures": log.count("Heartbeat failed"),
            "child_restarts": restarts,
            "restarts_before_measuring": restarts_before,
        }
    finally:
        run.close()


# -- output -----------------------------------------------------------------------------
def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def table(out: dict[str, Any]) -> str:
    rows: list[str] = []
    for key in ("child_kills_no_spare", "child_kills"):
        rows += _kills_table(out.get(key))
    rows += _rest_table(out)
    return "\n".join(rows)


def _kills_table(kills: dict[str, Any] | None) -> list[str]:
    rows: list[str] = []
    if kills:
        c = kills["check"]
        spare = kills.get("warm_spare", "off")
        memory = (f", the spare {kills['spare_rss_mb']:.0f} MB resident"
                  if kills.get("spare_rss_mb") else "")  # fmt: skip
        rows += [
            f"Child kills, RIVERBED_WARM_SPARE={spare}{memory} (kill -9 of one child every "
            f"{kills['spacing_s']:g} s, alternating slots, {kills['rate']:,.0f} events/s "
            "steady):",
            "",
            "| kill | slot | partitions | back to new predictions, s (each partition) | "
            "supervisor /ready, s | other child's longest pause, s |",
            "|---:|---:|---|---|---:|---:|",
        ]
        for k in kills["kills"]:
            each = ", ".join(f"p{p} {_s(s)}" for p, s in k["back_s"].items())
            rows.append(f"| {k['kill']} | {k['slot']} | {k['partitions']} | {each} | "
                        f"{k['ready_s']:.1f} | {k['others_pause_s']:.2f} |")  # fmt: skip
        worst = [k["worst_back_s"] for k in kills["kills"] if k["worst_back_s"] is not None]
        rows += [
            "",
            f"worst {max(worst):.1f} s, median {sorted(worst)[len(worst) // 2]:.1f} s; "
            f"events {c['events']:,}, lost {c['lost']}, learned {c['learned']:,} of "
            f"{c['labels_sent']:,} labels, repeats {c['repeats']:,} "
            f"(differing {c['repeats_differing']}), replay equal: {c['replay_equal']}",
            "",
        ]
    return rows


def _rest_table(out: dict[str, Any]) -> list[str]:
    rows: list[str] = []
    lost = out.get("machine_lost")
    if lost:
        rows += [
            "Machine lost (supervisor and both children SIGKILLed; a second supervised "
            "worker alive):",
            "",
            "| RIVERBED_SESSION_TIMEOUT | survivor owns all, s | lost partitions predict "
            "again, s | survivor's own pause, s | lost events | learned / labels | replay |",
            "|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in lost:
            c = r["check"]
            name = f"{r['session_timeout_s']:g}" + (" (default)" if r["default"] else "")
            rows.append(
                f"| {name} | {r['owns_all_s']:.1f} | {_s(r['worst_back_s'])} | "
                f"{r['survivor_pause_s']:.1f} | {c['lost']} | {c['learned']:,} / "
                f"{c['labels_sent']:,} | {'equal' if c['replay_equal'] else 'DIFFERS'} |"
            )
        rows.append("")
    slow = out.get("slow_model")
    if slow:
        rows += [
            "arf on a backlog (full fetches of RIVERBED_BATCH_MAX records), 2 processes:",
            "",
            "| RIVERBED_SESSION_TIMEOUT | events/s | fetches | mean fetch, s | longest fetch "
            "at most, s | longest /health answer, s | rebalances |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in slow:
            b = r["fetch"]
            health = max(r["longest_health_answer_s"].values())
            rows.append(
                f"| {r['session_timeout_s']:g} | {r['events_per_s']:,} | {b['fetches']:,} | "
                f"{b['mean_s']} | {b['longest_at_most_s']} | {health:.2f} | "
                f"{r['rebalances']} |"
            )
        rows.append("")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rate", type=float, default=2000.0, help="events/s of the steady stream")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument(
        "--spacing",
        type=float,
        default=16.0,
        help="seconds between kills (alternating slots: each child is up >30 s before its "
        "next kill, so its restart backoff is the first, 0.5 s; and at most 4 restarts "
        "fall in any 60 s, below the supervisor's intensity of 5)",
    )
    ap.add_argument("--session-timeouts", default="default,20,10,6",
                    help="machine-lost runs: 'default' (45 s) and shorter, in seconds")  # fmt: skip
    ap.add_argument("--arf-timeouts", default="6,10", help="slow-model runs' session timeouts")
    ap.add_argument("--arf-seconds", type=float, default=60.0)
    ap.add_argument("--arf-backlog", type=int, default=0, help="events (0: 6,000 a second)")
    ap.add_argument("--parts", default="kills,machine,arf")
    ap.add_argument("--out", type=Path, default=RESULTS / "failover.json")
    args = ap.parse_args()
    from riverbed.config import Settings as _Defaults
    from riverbed.supervisor.process import STABLE_AFTER_S

    INTENSITY = _Defaults.from_env({}).restart_intensity
    PERIOD_S = _Defaults.from_env({}).restart_period

    if args.kills > INTENSITY and args.spacing * INTENSITY <= PERIOD_S:
        ap.error(f"--spacing {args.spacing:g}: more than {INTENSITY} kills would fall in "
                 f"{PERIOD_S:g} s and the supervisor would give up")  # fmt: skip
    if 2 * args.spacing < STABLE_AFTER_S:
        print(f"note: a child up less than {STABLE_AFTER_S:g} s restarts after a doubled "
              "backoff; its kills measure the backoff too")  # fmt: skip

    from riverbed.config import Settings

    bootstrap = Settings.from_env(
        {k: v for k, v in os.environ.items() if k == "RIVERBED_BROKER"} | _security_env()
    ).bootstrap
    parts = set(args.parts.split(","))
    workdir = ROOT / ".riverbed" / "failover"
    out: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cores": os.cpu_count(),
        "load_before": os.getloadavg(),
        "model": "logreg (slow_model: arf)",
        "partitions": PARTITIONS,
    }
    try:
        if "kills" in parts:
            # Without the warm spare first (how round two restarted a child), then with.
            print("child kills, no warm spare", flush=True)
            out["child_kills_no_spare"] = child_kills(bootstrap, workdir, args, spare="off")
            print("child kills, warm spare", flush=True)
            out["child_kills"] = child_kills(bootstrap, workdir, args, spare="on")
        if "machine" in parts:
            out["machine_lost"] = []
            for t in args.session_timeouts.split(","):
                timeout = None if t == "default" else float(t)
                print(f"machine lost, session timeout {t}", flush=True)
                out["machine_lost"].append(machine_lost(bootstrap, workdir, args, timeout))
        if "arf" in parts:
            out["slow_model"] = []
            for t in args.arf_timeouts.split(","):
                print(f"arf, session timeout {t}", flush=True)
                out["slow_model"].append(slow_model(bootstrap, workdir, args, float(t)))
    finally:
        out["load_after"] = os.getloadavg()
        deleted = asyncio.run(_delete_topics(bootstrap))
        print(f"deleted this run's {deleted} topics", flush=True)
    print(table(out))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


async def _delete_topics(bootstrap: str) -> int:
    """Delete the topics this run created (its prefixes' and its app ids' own)."""
    from aiokafka.admin import AIOKafkaAdminClient

    if not CREATED:
        return 0
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **_client())
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(tuple(CREATED))]
        if ours:
            await admin.delete_topics(ours)
        return len(ours)
    finally:
        await admin.close()


if __name__ == "__main__":
    main()
