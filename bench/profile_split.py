"""Where a worker's CPU goes under load, by part, next to the raw aiokafka loop's.

    .venv/bin/python -m bench.profile_split --events 100000 [--model logreg]

Produces N Agrawal events (inline labels) over 4 partitions, then runs the raw aiokafka
loop of ``bench/compare.py`` and a riverbed worker (default settings) over them, one
after the other, each under py-spy (``--gil``: only the thread holding the GIL, the
one that competes for the core; ``--nonblocking``: the process is never paused). Every
sample's stack is given to one part, from its innermost frame outwards:

- **model**: River (and numpy under it);
- **learner**: riverbed's ``learning/`` (test-then-train's bookkeeping: the metrics,
  the rolling window, drift, the guard, the journal, labels, candidates);
- **decode**: ``records.py`` (JSON to an event, field mapping); **encode**: its
  ``encode`` (the output records' JSON);
- **pipeline**: ``pipeline/`` and ``kafka/intake.py``, ``kafka/join.py`` (a fetch's
  records to the learner and out; the prediction record's encoding is here);
- **fetch**: aiokafka's consumer (fetch requests, record batches to records);
- **produce**: aiokafka's producer (batches, sends);
- **kafka io**: aiokafka's connections and protocol (both directions);
- **Faust**: faust and mode (agents, channels, timers, the consumer service);
- **checkpoint** and **serving**: riverbed's snapshots and HTTP/metrics;
- **loop and other**: asyncio, selectors, logging, the rest.

The raw loop's ``_predict_learn`` (decode, model call, encode in one function) is
**loop's own**. Samples while the process imports modules (start-up) are left out.
Prints the share of each part and its microseconds per event (sampled GIL time over
the events). Compare shares: the profiler slows the two unequally (the raw loop by
~29%, riverbed by ~14% on 2026-12-06), so the totals are not each other's measure. For
riverbed it also prints how much of the run its agent was busy handling fetches
(``riverbed_batch_processing_seconds``): near 100%, the worker is bound by CPU, not by
waiting for fetches. Writes ``bench/results/profile-split.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from bench.harness import (
    ROOT,
    broker_settings,
    create_topics,
    delete_run_topics,
    new_prefix,
    read,
    ready,
    run_settings,
    scrape,
    span_rate,
    stop_worker,
    worker_env,
)

RATE_HZ = 1000  # py-spy's samples a second
PARTS = [  # (part, a path fragment of the frame's file); the first that matches wins
    ("model", "/river/"),
    ("model", "/numpy/"),
    ("model", "/models/"),  # riverbed's catalog: the model's own steps (MixedScaler)
    ("learner", "riverbed/learning/"),
    ("learner", "app/learning/"),
    ("decode", "/records.py"),
    ("pipeline", "/pipeline/"),
    ("pipeline", "/kafka/intake.py"),
    ("pipeline", "/kafka/join.py"),
    ("checkpoint", "/checkpoint/"),
    ("serving", "/serving/"),
    ("loop's own", "bench/compare.py"),
    ("fetch", "aiokafka/consumer/"),
    ("produce", "aiokafka/producer/"),
    ("kafka io", "/aiokafka/"),
    ("kafka io", "/kafka/transport.py"),
    ("Faust", "/faust/"),
    ("Faust", "/mode/"),
]
OTHER = "loop and other"
START_UP = ("_find_and_load", "_call_with_frames_removed")


def part_of(frames: list[str]) -> str | None:
    """The part a stack (outermost first) belongs to; None for start-up's imports."""
    if any(f.startswith(START_UP) for f in frames):
        return None
    for frame in reversed(frames):
        # "func (river/compose/pipeline.py:558)": py-spy names a file from its sys.path
        # entry, or in full; a leading "/" lets "/river/" match either way.
        where = "/" + frame.rpartition(" (")[2]
        for part, fragment in PARTS:
            if fragment in where:
                # records.encode: the output records' JSON, apart from decoding
                return "encode" if part == "decode" and frame.startswith("encode ") else part
    return OTHER


def split(raw: Path) -> tuple[Counter[str], dict[str, Counter[str]]]:
    """Samples per part of a py-spy ``--format raw`` file (``frame;frame;... count``),
    and per part, samples per the innermost frame that belongs to it."""
    parts: Counter[str] = Counter()
    frames_of: dict[str, Counter[str]] = {}
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        part = part_of(frames)
        if part is None:
            continue
        parts[part] += int(count)
        frames_of.setdefault(part, Counter())[frames[-1]] += int(count)
    return parts, frames_of


def profiled(
    cmd: list[str],
    env: dict[str, str] | None,
    bootstrap: str,
    dst: str,
    n: int,
    port: int | None = None,
) -> dict:
    """Run ``cmd`` under py-spy until ``dst`` holds ``n`` records; its split. With
    ``port``, sampling starts once the process answers ``/ready`` there (a worker's
    start-up reads source and checks names: not per-event work)."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "stacks.txt"
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 120
        while port is not None and not ready(port) and time.monotonic() < deadline:
            time.sleep(0.05)  # polls the worker's /ready
        sampler = subprocess.Popen(
            [spy, "record", "--pid", str(proc.pid), "--rate", str(RATE_HZ), "--gil",
             "--nonblocking", "--format", "raw", "--output", str(raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        busy = None
        try:
            records = asyncio.run(read(bootstrap, dst, n))
            if port is not None:
                busy = scrape(port).get("riverbed_batch_processing_seconds_sum")
        finally:
            sampler.send_signal(signal.SIGINT)  # py-spy writes its file and exits
            _, err = sampler.communicate(timeout=60)
            if proc.poll() is None:
                stop_worker(proc, 120)
        if not raw.exists():
            sys.exit(f"py-spy wrote nothing: {err.decode(errors='replace').strip()}")
        parts, frames_of = split(raw)
    samples = sum(parts.values())
    ts = [r.timestamp for r in records]
    return {
        "agent_busy": busy / max((max(ts) - min(ts)) / 1000, 1e-3) if busy else None,
        "events": len(records),
        "events_per_s": round(span_rate(records)),
        "samples": samples,
        "parts": {
            p: {"share": c / samples, "us_per_event": c / RATE_HZ / len(records) * 1e6}
            for p, c in parts.most_common()
        },
        "innermost": {
            p: [[f, c / RATE_HZ / len(records) * 1e6] for f, c in frames.most_common(6)]
            for p, frames in frames_of.items()
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--model", default="logreg")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "profile-split.json")
    args = ap.parse_args()

    from riverbed.devtools.broker import LocalBroker
    from riverbed.devtools.produce import produce

    settings = broker_settings()
    broker = LocalBroker.start_unless_running(settings)
    bootstrap = settings.bootstrap
    prefix = new_prefix("split")
    src = prefix + "events"
    out: dict[str, dict] = {}
    try:
        asyncio.run(produce(run_settings(bootstrap, prefix), dataset="agrawal",
                            limit=args.events, seed=7))  # fmt: skip
        asyncio.run(create_topics(bootstrap, [prefix + "raw-out"]))
        raw_cmd = [sys.executable, "-m", "bench.compare", "--child", "aiokafka",
                   "--bootstrap", bootstrap, "--src", src, "--dst", prefix + "raw-out",
                   "--events", str(args.events), "--model", args.model]  # fmt: skip
        out["raw aiokafka loop"] = profiled(
            raw_cmd, None, bootstrap, prefix + "raw-out", args.events
        )
        env, port = worker_env(bootstrap, prefix, f"split-{uuid.uuid4().hex[:8]}",
                               "profile-split", model=args.model)  # fmt: skip
        cmd = [sys.executable, "-m", "riverbed", "worker"]
        out["riverbed"] = profiled(cmd, env, bootstrap, prefix + "predictions", args.events, port)
    finally:
        asyncio.run(delete_run_topics(bootstrap))
        if broker is not None:
            broker.stop()
    report(out, args)


def report(out: dict[str, dict], args: argparse.Namespace) -> None:
    names = list(out)
    ours = out["riverbed"]["parts"]
    parts = sorted({p for r in out.values() for p in r["parts"]},
                   key=lambda p: -ours.get(p, {}).get("us_per_event", 0))  # fmt: skip
    print(f"{args.model}, {args.events:,} events, py-spy --gil at {RATE_HZ}/s, "
          f"{time.strftime('%Y-%m-%d')}")  # fmt: skip
    print("| part | " + " | ".join(f"{n}, µs/event (share)" for n in names) + " |")
    print("|---|" + "---:|" * len(names))
    for p in parts:
        cells = []
        for n in names:
            got = out[n]["parts"].get(p)
            cells.append(f"{got['us_per_event']:.1f} ({got['share']:.0%})" if got else "-")
        print(f"| {p} | " + " | ".join(cells) + " |")
    totals = [sum(v["us_per_event"] for v in out[n]["parts"].values()) for n in names]
    print("| **all sampled** | " + " | ".join(f"**{t:.1f}**" for t in totals) + " |")
    print("| events/s (under py-spy) | "
          + " | ".join(f"{out[n]['events_per_s']:,}" for n in names) + " |")  # fmt: skip
    for n in names:
        if out[n].get("agent_busy") is not None:
            print(f"{n}: the agent busy handling fetches {out[n]['agent_busy']:.0%} of the run")
    for n in names:
        for p in parts:
            if p in out[n]["innermost"] and p != "model":
                print(f"{n}, {p}: the innermost frames, µs/event")
                for frame, us in out[n]["innermost"][p]:
                    print(f"  {us:5.2f}  {frame}")
    args.out.write_text(json.dumps({"model": args.model, "events": args.events,
                                    "rate_hz": RATE_HZ, "systems": out}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
