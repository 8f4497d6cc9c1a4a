"""``POST /predict`` under load, and the stream under /predict's load (issue 16, item 4).

    .venv/bin/python -m bench.predict_load               # ~3 min on 2 cores
    .venv/bin/python -m bench.predict_load --seconds 5   # a quick look

One riverbed worker (logreg, 4 partitions, its own web port) on the broker at
RIVERBED_BROKER, or the project's local broker started for the run. A paced producer
sends Agrawal events at --rate (5,000/s) in phases of --seconds each, the same way
bench/compare.py's paced latency does (``riverbed produce`` with pre-built events);
while it runs, a second process sends /predict requests open-loop:

    a   no HTTP load                      d   200 req/s, batches of 100 records
    b   200 req/s, single records         e   1,000 req/s, batches of 100 records
    c   1,000 req/s, single records       a'  no HTTP load again (drift of the baseline)

The stream's latency is the prediction's Kafka timestamp minus its event's, joined on
the key, as in bench/compare.py. A request's latency runs from the time it was
scheduled to be sent (requests go at fixed times whatever the answers: a slow answer
does not hold back the next request, so coordinated omission hides nothing) to its
answer's last byte; the client is one aiohttp session with keep-alive, ``?key=`` a
random key, the records Agrawal's (another seed). Each answer is checked: status 200,
one prediction per record, the partition Kafka's default partitioner gives the key.

The first --warmup seconds of each phase are left out of both measurements, and an
unmeasured warm-up phase runs first. Between phases the producer stops until the worker
has caught up (one prediction per event). The broker, the worker, the producer and the
HTTP client share the machine's cores (2 on the reference machine): that is part of
what is measured; each process's CPU share per phase is recorded.

Prints a markdown table and writes bench/results/predict.json; deletes its topics.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import platform
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bench.harness import (
    PARTITIONS,
    RESULTS,
    ROOT,
    broker_settings,
    delete_run_topics,
    kafka_client,
    new_prefix,
    ready,
    run_settings,
    start_worker,
    stop_worker,
    worker_env,
)

OUT = RESULTS / "predict.json"
GOAL_PREDICT_P99_MS = 10.0  # at 200 req/s
GOAL_STREAM_P99_RATIO = 1.2  # with the load against without

# (name, what, requests/s, records a request)
PHASES: tuple[tuple[str, str, float, int], ...] = (
    ("a", "no HTTP load", 0, 0),
    ("b", "200 req/s, 1 record", 200, 1),
    ("c", "1,000 req/s, 1 record", 1000, 1),
    ("d", "200 req/s, 100 records", 200, 100),
    ("e", "1,000 req/s, 100 records", 1000, 100),
    ("a2", "no HTTP load (again)", 0, 0),
)
WARM_PHASE = ("warm", "warm-up (not reported)", 100, 1)


# -- the HTTP client (its own process) ---------------------------------------------------
def _pct(values: list[float], qs: tuple[float, ...] = (50, 99)) -> list[float]:
    import numpy as np

    return [float(v) for v in np.percentile(np.array(values, dtype=float), qs)]


async def _client_phase(session: Any, base: str, cmd: dict[str, Any], data: Any) -> dict[str, Any]:
    """One phase of open-loop requests: scheduled at ``start + i / rate``."""
    import orjson
    from aiokafka.partitioner import murmur2

    rate, batch, seconds, warmup = cmd["rate"], cmd["batch"], cmd["seconds"], cmd["warmup"]
    start = cmd["start"]
    keys, bodies = data["keys"], data["single" if batch == 1 else "batch"]
    n = int(rate * seconds)
    measured_from = start + warmup
    lat: list[float] = []  # ms, from the scheduled send time
    lag: list[float] = []  # ms, the client's own lateness in starting a request
    done_at: list[float] = []
    errors: Counter[str] = Counter()
    samples: list[str] = []
    rnd = random.Random(cmd["name"])

    async def one(t_sched: float, key: str, body: bytes) -> None:
        t_start = time.time()
        try:
            async with session.post(f"{base}/predict?key={key}", data=body) as resp:
                payload = await resp.read()
                status = resp.status
        except Exception as exc:  # every failure is counted, by kind
            errors[type(exc).__name__] += 1
            if len(samples) < 5:
                samples.append(repr(exc)[:300])
            return
        t_done = time.time()
        problem = None
        if status != 200:
            problem = f"HTTP {status}"
        else:
            want = (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS
            got = orjson.loads(payload)
            answers = got if isinstance(got, list) else [got]
            if (isinstance(got, list)) != (batch > 1) or len(answers) != batch:
                problem = "wrong number of answers"
            elif any(a.get("partition") != want or "y_pred" not in a for a in answers):
                problem = "wrong partition or no y_pred"
        if problem:
            errors[problem] += 1
            if len(samples) < 5:
                samples.append(f"{problem}: key={key} {payload[:300]!r}")
            return
        if t_sched >= measured_from:
            lat.append((t_done - t_sched) * 1000)
            lag.append((t_start - t_sched) * 1000)
            done_at.append(t_done)

    tasks = []
    for i in range(n):
        t_sched = start + i / rate
        ahead = t_sched - time.time()
        if ahead > 0.001:
            await asyncio.sleep(ahead)  # the schedule: every request due by now goes
        key = keys[rnd.randrange(len(keys))]
        body = bodies[rnd.randrange(len(bodies))]
        tasks.append(asyncio.create_task(one(t_sched, key, body)))
    end = start + seconds
    pending: set[Any] = set()
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=max(end + 15 - time.time(), 1))
    for t in pending:
        t.cancel()
    if pending:
        errors["unanswered 15 s after the phase"] += len(pending)
        await asyncio.gather(*pending, return_exceptions=True)
    measured = n - int(rate * warmup)
    in_window = sum(1 for t in done_at if t <= end)
    out: dict[str, Any] = {
        "offered_rps": rate,
        "batch": batch,
        "sent": n,
        "measured_requests": measured,
        "ok_measured": len(lat),
        "errors": dict(errors),
        "error_samples": samples,
        "achieved_rps": round(in_window / (seconds - warmup), 1),
    }
    if lat:
        p50, p99 = _pct(lat)
        (lag99,) = _pct(lag, (99,))
        out.update(
            p50_ms=round(p50, 2),
            p99_ms=round(p99, 2),
            max_ms=round(max(lat), 1),
            client_send_lag_p99_ms=round(lag99, 2),
            client_send_lag_max_ms=round(max(lag), 1),
        )
    return out


async def _client_main() -> None:
    """Phases from stdin (one JSON line each), results to stdout, until EOF."""
    import aiohttp
    import orjson

    from riverbed.devtools.produce import dataset_stream

    xs = [x for x, _ in itertools.islice(dataset_stream("agrawal", seed=99), 5000)]
    rnd = random.Random(5)
    data = {
        "keys": [f"k{rnd.randrange(10**9)}" for _ in range(10_000)],
        "single": [orjson.dumps({"x": x}) for x in xs[:2000]],
        "batch": [orjson.dumps([{"x": x} for x in rnd.sample(xs, 100)]) for _ in range(200)],
    }
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=60)
    async with aiohttp.ClientSession(
        connector=connector,
        headers={"Content-Type": "application/json"},
        timeout=aiohttp.ClientTimeout(total=10),
    ) as session:
        print(json.dumps({"ready": True}), flush=True)
        while line := await reader.readline():
            cmd = json.loads(line)
            base = f"http://127.0.0.1:{cmd['port']}"
            cpu0 = time.process_time()
            out = await _client_phase(session, base, cmd, data)
            out["client_cpu_s"] = round(time.process_time() - cpu0, 2)
            print(json.dumps(out), flush=True)


# -- the harness -----------------------------------------------------------------------
def _cpu_s(pid: int | None) -> float:
    """utime + stime of a process, in seconds (0 when it is not there)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (every core; /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


async def _caught_up(consumer: Any, topic: str, n: int, timeout: float = 120) -> float:
    """Seconds until ``topic`` holds ``n`` records (asks only for end offsets)."""
    from aiokafka import TopicPartition

    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if sum((await consumer.end_offsets(tps)).values()) >= n:
            return time.monotonic() - t0
        await asyncio.sleep(0.25)  # polling a condition, not waiting it out
    msg = f"{topic} did not reach {n} records in {timeout:.0f} s"
    raise TimeoutError(msg)


async def _timestamps(
    bootstrap: str, topic: str, n: int, client: dict[str, Any]
) -> dict[bytes, int]:
    """key -> Kafka timestamp of ``topic``'s first ``n`` records (read after the run)."""
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 << 20,
        **client,
    )
    await c.start()
    out: dict[bytes, int] = {}
    deadline = time.monotonic() + 300
    try:
        while len(out) < n and time.monotonic() < deadline:
            for records in (await c.getmany(timeout_ms=500, max_records=20_000)).values():
                for r in records:
                    out[r.key] = r.timestamp
    finally:
        await c.stop()
    return out


def _stream_stats(
    events: dict[bytes, int], preds: dict[bytes, int], tag: str, skip: int
) -> dict[str, Any]:
    """The stream's latency over phase ``tag``'s events after the first ``skip``."""
    prefix = f"{tag}-".encode()
    lat = []
    missing = 0
    for k, ts in events.items():
        if not k.startswith(prefix) or int(k[len(prefix) :]) < skip:
            continue
        if k in preds:
            lat.append(preds[k] - ts)
        else:
            missing += 1
    if not lat:
        return {"events": 0, "missing": missing}
    p50, p99 = _pct(lat)
    return {
        "events": len(lat),
        "missing": missing,
        "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1),
        "max_ms": round(max(lat), 1),
    }


async def _run(args: argparse.Namespace, bootstrap: str, broker_pid: int | None) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer

    from riverbed.devtools.produce import dataset_stream, produce

    client_args = kafka_client()
    prefix = new_prefix("predload")
    s = run_settings(bootstrap, prefix)
    env, port = worker_env(
        bootstrap, prefix, f"predload-{uuid.uuid4().hex[:8]}", "predict-load", model="logreg"
    )
    worker = start_worker(env)
    client = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.predict_load",
        "--client",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert client.stdin is not None and client.stdout is not None
    # Built before the clock starts (generating Agrawal costs more than sending it) and
    # cycled: the model sees the same 20,000 events again, which costs it the same.
    pairs = list(itertools.islice(dataset_stream("agrawal", seed=11), 20_000))
    watcher = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **client_args)
    phases: list[dict[str, Any]] = []
    sent = 0
    try:
        json.loads(await asyncio.wait_for(client.stdout.readline(), 120))  # {"ready": true}
        deadline = time.monotonic() + 180
        while not ready(port):
            if worker.poll() is not None:
                msg = f"the worker exited with {worker.returncode} before it was ready"
                raise RuntimeError(msg)
            if time.monotonic() > deadline:
                raise TimeoutError("the worker never became ready")
            await asyncio.sleep(0.25)  # polling a condition, not waiting it out
        await watcher.start()
        gc.collect()
        gc.freeze()  # the harness's heap: no full collection while it sends
        pids = {"worker": worker.pid, "client": client.pid, "producer": os.getpid()}
        if broker_pid:
            pids["broker"] = broker_pid
        for name, what, rate, batch in (WARM_PHASE, *PHASES):
            seconds = args.warm_seconds if name == "warm" else args.seconds
            n = int(args.rate * seconds)
            start = time.time() + 0.5
            if rate:
                cmd = {"name": name, "start": start, "seconds": seconds, "rate": rate,
                       "batch": batch, "warmup": args.warmup, "port": port}  # fmt: skip
                client.stdin.write(json.dumps(cmd).encode() + b"\n")
                await client.stdin.drain()
            await asyncio.sleep(max(start - time.time(), 0))
            cpu0 = {k: _cpu_s(p) for k, p in pids.items()}
            busy0 = _machine_busy_s()
            t0 = time.monotonic()
            stream = (pairs[i % len(pairs)] for i in range(sent, sent + n))
            await produce(s, pairs=stream, rate=args.rate, id_prefix=name)
            wall = time.monotonic() - t0
            cpu = {k: round((_cpu_s(p) - cpu0[k]) / wall, 2) for k, p in pids.items()}
            # Everything else the machine ran meanwhile (another job: a spoilt phase).
            busy = (_machine_busy_s() - busy0) / wall
            cpu["machine"] = round(busy, 2)
            cpu["others"] = round(busy - sum(v for k, v in cpu.items() if k != "machine"), 2)
            sent += n
            http = json.loads(await client.stdout.readline()) if rate else None
            catch_up = await _caught_up(watcher, prefix + "predictions", sent)
            phases.append({"name": name, "what": what, "seconds": seconds,
                           "produce_wall_s": round(wall, 2), "cpu_cores": cpu,
                           "caught_up_after_s": round(catch_up, 2), "http": http})  # fmt: skip
            if worker.poll() is not None:
                msg = f"the worker exited with {worker.returncode} during phase {name}"
                raise RuntimeError(msg)
            shown = (
                f"{http['achieved_rps']:7.0f} req/s  p50 {http.get('p50_ms', 0):7.2f}  "
                f"p99 {http.get('p99_ms', 0):7.2f}  max {http.get('max_ms', 0):7.1f} ms  "
                f"errors {sum(http['errors'].values())}"
                if http
                else "no HTTP load"
            )
            print(f"phase {name:5} {what:26} {shown}  cpu {cpu}", flush=True)
    finally:
        gc.unfreeze()
        client.stdin.close()
        try:
            await asyncio.wait_for(client.wait(), 30)
        except TimeoutError:
            client.kill()
        await watcher.stop()
        await asyncio.to_thread(stop_worker, worker)
    events = await _timestamps(bootstrap, prefix + "events", sent, client_args)
    preds = await _timestamps(bootstrap, prefix + "predictions", sent, client_args)
    skip = int(args.rate * args.warmup)
    for phase in phases:
        phase["stream"] = _stream_stats(events, preds, phase["name"], skip)
    return {"phases": phases}


def markdown_table(out: dict[str, Any]) -> str:
    base = next(p for p in out["phases"] if p["name"] == "a")["stream"]["p99_ms"]
    rows = [
        "| phase | /predict offered | achieved | /predict p50 / p99 / max | errors "
        "| stream p50 / p99 | stream p99 vs (a) | CPU: worker / all (other jobs) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in out["phases"]:
        if p["name"] == "warm":
            continue
        h, st, cpu = p["http"], p["stream"], p["cpu_cores"]
        offered = "-" if h is None else p["what"]
        achieved = "-" if h is None else f"{h['achieved_rps']:,.0f} req/s"
        lat = (
            "-"
            if h is None or "p99_ms" not in h
            else f"{h['p50_ms']:.1f} / {h['p99_ms']:.1f} / {h['max_ms']:.0f} ms"
        )
        errors = "-" if h is None else f"{sum(h['errors'].values())}"
        ratio = st["p99_ms"] / base if base else float("nan")
        rows.append(
            f"| {p['name']} | {offered} | {achieved} | {lat} | {errors} | "
            f"{st['p50_ms']:.0f} / {st['p99_ms']:.0f} ms | {ratio:.2f}x | "
            f"{cpu['worker']:.0%} / {cpu['machine']:.0%} ({cpu['others']:.0%}) |"
        )
    return "\n".join(rows) + "\n"


def _goals(out: dict[str, Any]) -> dict[str, Any]:
    by = {p["name"]: p for p in out["phases"]}
    base = by["a"]["stream"]["p99_ms"]
    b = by["b"]["http"]
    loaded = {k: round(by[k]["stream"]["p99_ms"] / base, 2) for k in ("b", "c", "d", "e")}
    return {
        "predict_p99_at_200_ms": b.get("p99_ms"),
        "predict_p99_at_200_met": b.get("p99_ms", 1e9) <= GOAL_PREDICT_P99_MS and not b["errors"],
        "predict_p99_at_200_batches_ms": by["d"]["http"].get("p99_ms"),
        "stream_p99_vs_no_load": loaded,
        "stream_p99_met": {k: v <= GOAL_STREAM_P99_RATIO for k, v in loaded.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0, help="each phase's length")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds left out of each phase")
    ap.add_argument("--warm-seconds", type=float, default=8.0, help="the warm-up phase")
    ap.add_argument("--rate", type=float, default=5000.0, help="the stream's events/s")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        asyncio.run(_client_main())
        return
    from riverbed.devtools.broker import LocalBroker

    settings = broker_settings()
    load_start = os.getloadavg()
    broker = LocalBroker.start_unless_running(settings)
    bootstrap = settings.bootstrap
    try:
        broker_pid = (broker or LocalBroker.from_settings(settings)).pid()
    except Exception:  # a remote broker: its CPU is not this machine's
        broker_pid = None
    try:
        out = asyncio.run(_run(args, bootstrap, broker_pid))
    finally:
        deleted = asyncio.run(delete_run_topics(bootstrap))
        print(f"deleted this run's {deleted} topics", flush=True)
        if broker is not None:
            broker.stop()
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu_model": cpu_model,
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "shared": "broker, worker, producer and HTTP client on the same cores",
        },
        "settings": {
            "model": "logreg",
            "partitions": PARTITIONS,
            "stream_rate": args.rate,
            "phase_seconds": args.seconds,
            "warmup_seconds": args.warmup,
        },
        **out,
    }
    out["goals"] = _goals(out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(markdown_table(out))
    print(json.dumps(out["goals"], indent=2))
    print(f"load average at start {out['machine']['loadavg_start']}, end "
          f"{out['machine']['loadavg_end']}; wrote {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
