"""``POST /predict`` at its limits: a worker's memory and event loop (issue 26, item 4).

    .venv/bin/python -m bench.predict_limits      # ~30 s

One riverbed worker (logreg, 1 partition, trained on 2,000 Agrawal events first) on
the broker at RIVERBED_BROKER, or the project's local broker started for the run. Then,
one request at a time, each --repeat times:

    small    one record
    limit    RIVERBED_PREDICT_MAX_RECORDS (1,000) records in a body just under
             RIVERBED_PREDICT_MAX_BYTES (4 MiB): each record carries ~4 KB of features
    over     a body of RIVERBED_PREDICT_MAX_BYTES + 1 (must be a 413)

While each request runs, a probe asks the same worker's ``/health`` every 5 ms: the
longest probe answer is how long the request held the worker's loop (its heartbeats
and the stream wait as long). Memory is the worker's resident set (VmRSS) after each
phase and its peak (VmHWM), from /proc. Before issue 26 the cap was
RIVERBED_MAX_RECORD_BYTES x RIVERBED_BATCH_MAX (1e9 bytes): a 129 MB body took a
worker to 1.96 GB and held its loop 5.9 s.

Prints a markdown table and writes bench/results/predict_limits.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.harness import (
    RESULTS,
    broker_settings,
    delete_run_topics,
    new_prefix,
    ready,
    run_settings,
    start_worker,
    stop_worker,
    worker_env,
)

OUT = RESULTS / "predict_limits.json"
MAX_BYTES = 4 * 1024 * 1024
MAX_RECORDS = 1000


def _mem(pid: int) -> dict[str, float]:
    """The process's resident and peak resident memory, MB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


async def _probe(session: Any, url: str, stop: asyncio.Event) -> float:
    """The longest /health answer while ``stop`` is unset (s)."""
    longest = 0.0
    while not stop.is_set():
        t0 = time.perf_counter()
        async with session.get(url) as r:
            await r.read()
        longest = max(longest, time.perf_counter() - t0)
        await asyncio.sleep(0.005)  # the probe's pace, not a wait for a condition
    return longest


async def _request(session: Any, base: str, body: bytes) -> dict[str, Any]:
    stop = asyncio.Event()
    probe = asyncio.ensure_future(_probe(session, f"{base}/health", stop))
    await asyncio.sleep(0.05)  # a few probes before the request, as a baseline
    t0 = time.perf_counter()
    async with session.post(f"{base}/predict?partition=0", data=body) as r:
        answer = await r.read()
        status = r.status
    took = time.perf_counter() - t0
    stop.set()
    return {"status": status, "seconds": took, "loop_hold_s": await probe,
            "answer_bytes": len(answer)}  # fmt: skip


def _bodies() -> dict[str, bytes]:
    import orjson

    one = {"x": {f"f{i}": i * 0.5 for i in range(8)}}
    # ~4 KB of features a record, 1,000 records, under 4 MiB in all
    wide = [{"x": {f"feature_{i:03d}": float(r * 1000 + i) for i in range(190)}}
            for r in range(MAX_RECORDS)]  # fmt: skip
    limit = orjson.dumps(wide)
    while len(limit) > MAX_BYTES:
        for rec in wide:
            rec["x"].popitem()
        limit = orjson.dumps(wide)
    return {
        "small": orjson.dumps(one),
        "limit": limit,
        "over": b"[" + b" " * (MAX_BYTES - 1) + b"]",
    }


async def _run(args: argparse.Namespace, bootstrap: str) -> dict[str, Any]:
    import aiohttp

    from riverbed.devtools.produce import produce

    prefix = new_prefix("predlim")
    env, port = worker_env(bootstrap, prefix, f"predlim-{uuid.uuid4().hex[:8]}", "lim",
                           model="logreg", partitions=1)  # fmt: skip
    worker = start_worker(env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not ready(port):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the worker did not become ready")
            await asyncio.sleep(0.2)  # polls readiness
        s = run_settings(bootstrap, prefix, partitions=1)
        await produce(s, dataset="agrawal", limit=2000, seed=3)
        bodies = _bodies()
        phases: list[dict[str, Any]] = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            for name in ("small", "limit", "over"):
                runs = [await _request(session, base, bodies[name]) for _ in range(args.repeat)]
                phases.append({
                    "phase": name, "body_bytes": len(bodies[name]),
                    "status": sorted({r["status"] for r in runs}),
                    "seconds_max": max(r["seconds"] for r in runs),
                    "loop_hold_s_max": max(r["loop_hold_s"] for r in runs),
                    **{f"{k}_mb": v for k, v in _mem(worker.pid).items()},
                })  # fmt: skip
    finally:
        stop_worker(worker)
    return {"python": sys.version.split()[0], "repeat": args.repeat, "phases": phases}


def markdown_table(out: dict[str, Any]) -> str:
    rows = ["| request | body | status | answered in (max) | longest /health meanwhile | "
            "RSS after | peak RSS |", "|---|---:|---|---:|---:|---:|---:|"]  # fmt: skip
    for p in out["phases"]:
        rows.append(
            f"| {p['phase']} | {p['body_bytes']:,} B | {', '.join(map(str, p['status']))} | "
            f"{p['seconds_max'] * 1000:.0f} ms | {p['loop_hold_s_max'] * 1000:.0f} ms | "
            f"{p['VmRSS_mb']:.0f} MB | {p['VmHWM_mb']:.0f} MB |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5, help="requests of each kind")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    from riverbed.devtools.broker import LocalBroker

    settings = broker_settings()
    broker = LocalBroker.start_unless_running(settings)
    try:
        out = asyncio.run(_run(args, settings.bootstrap))
    finally:
        asyncio.run(delete_run_topics(settings.bootstrap))
        if broker is not None:
            broker.stop()
    print(markdown_table(out))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
