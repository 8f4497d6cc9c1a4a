"""How long a checkpoint's capture holds the event loop: inline pickling, a forked
child, and auto (the default: inline while the learner's last snapshot was at most
64 KiB, else forked) (RIVERBED_CHECKPOINT_CAPTURE), per model, with the snapshot's
size, the per-record time of the live model after ten checkpoints against a twin that
never checkpointed (same records, alternating blocks), and the in-process part of a
restore (verify, unpickle, copy; bench/snapshot_cost.py times the read from Kafka).
Results go to bench/results/capture_cost.json.

    .venv/bin/python -m bench.capture_cost

The loop is held, inline, for the pickle (and the inline copy after it, for small
learners); with fork, for the fork itself and the parent's work on the bytes (signing,
chunking and the finite-state scan). Measured with a ticker task that records the
longest gap between its wake-ups while one checkpoint runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from river.datasets import synth

from riverbed import models
from riverbed.checkpoint.snapshots import Checkpointer, SnapshotCodec
from riverbed.learning.learner import PartitionLearner
from riverbed.learning.state import Learners
from riverbed.records import Event

EVENTS = {"logreg": 6000, "hoeffding": 6000, "hst": 6000, "arf": 3000}
RESULTS = Path(__file__).resolve().parent / "results"


async def held(capture: str, learners: Learners) -> tuple[float, float]:
    """(longest loop gap in ms, whole checkpoint in ms) for one checkpoint."""
    sent = 0

    async def send(k: bytes, v: bytes, h: Any, p: int) -> None:
        nonlocal sent
        sent += len(v)

    cp = Checkpointer(learners, SnapshotCodec(b"k" * 32), send=send, topics=("e", "l"),
                      every=10**9, interval=10**9, capture=capture)  # fmt: skip
    cp.note(0, 1)
    gaps: list[float] = []
    done = False

    async def tick() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.ensure_future(tick())
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    await cp.checkpoint()
    whole = time.perf_counter() - t0
    done = True
    await ticker
    assert cp.failed is None, cp.failed
    cp.close()
    return max(gaps) * 1000, whole * 1000


async def ten(capture: str, learners: Learners) -> list[tuple[float, float]]:
    return [await held(capture, learners) for _ in range(10)]


def per_record(learner: PartitionLearner, data: list[Event], start: int) -> float:
    t0 = time.perf_counter()
    for i, e in enumerate(data, start):
        learner.process_event(e, offset=i, ts_ms=i)
    return (time.perf_counter() - t0) / len(data) * 1e6


def paired(live: PartitionLearner, twin: PartitionLearner, data: list[Event], start: int,
           block: int = 100) -> tuple[float, float]:  # fmt: skip
    """µs a record of ``live`` and of its ``twin`` (equal state, never checkpointed) on
    the same records, in alternating blocks so a slow spell hits both alike."""
    took = {id(live): 0.0, id(twin): 0.0}
    for at in range(0, len(data), block):
        chunk = data[at : at + block]
        for learner in (live, twin) if at // block % 2 else (twin, live):
            took[id(learner)] += per_record(learner, chunk, start + at) * len(chunk)
    return took[id(live)] / len(data), took[id(twin)] / len(data)


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS")) / 1024


def restore_ms(learner: PartitionLearner) -> float:
    """Verify, unpickle and copy (what recovery does once the records are read)."""
    codec = SnapshotCodec(b"k" * 32)
    records = codec.encode(learner)
    t0 = time.perf_counter()
    restored = codec.decode(records[-1][1], {i: r[1] for i, r in enumerate(records[:-1])})
    restored.rebuilt()
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    # No options: --help says what it measures instead of running it.
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    print(f"{'model':<10} {'capture':<7} {'snapshot':>9} {'held: median / max ms':>22} "
          f"{'checkpoint ms':>14} {'µs/record: after 10 / never':>28} "
          f"{'restore ms':>11} {'RSS':>7}")  # fmt: skip
    out: dict[str, dict[str, Any]] = {}
    for name, n in EVENTS.items():
        data = [Event(str(i), x, y) for i, (x, y) in enumerate(synth.Agrawal(seed=3).take(n))]
        half = n // 2
        for capture in ("inline", "fork", "auto"):
            learners, twins = Learners(models.spec(name)), Learners(models.spec(name))
            for lr in (learners.get(0), twins.get(0)):
                per_record(lr, data[:half], 0)
            # One event loop for the ten, as in a worker (its capture thread persists).
            results = asyncio.run(ten(capture, learners))
            live = learners.get(0)
            after, never = paired(live, twins.get(0), data[half:], half)
            held_ms = sorted(r[0] for r in results)
            whole_ms = sorted(r[1] for r in results)[5]
            restore = restore_ms(live) if capture == "auto" else None
            out.setdefault(name, {"events": half})[capture] = {
                "snapshot_bytes": live.snapshot_bytes,
                "held_median_ms": round(held_ms[5], 2), "held_max_ms": round(held_ms[-1], 2),
                "checkpoint_ms": round(whole_ms, 1),
                "us_per_record_after_10": round(after, 1),
                "us_per_record_never": round(never, 1),
                "process_rss_mb": round(rss_mb()),  # a fork's cost grows with it
            }  # fmt: skip
            if restore is not None:
                out[name]["restore_ms"] = round(restore, 1)
            print(f"{name:<10} {capture:<7} {live.snapshot_bytes / 1024:>7.0f} KB "
                  f"{held_ms[5]:>11.1f} / {held_ms[-1]:>6.1f} {whole_ms:>14.1f} "
                  f"{after:>16.1f} / {never:>9.1f} "
                  f"{'' if restore is None else f'{restore:.1f}':>11} "
                  f"{rss_mb():>4.0f} MB")  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "capture_cost.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
