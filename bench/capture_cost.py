"""How long a checkpoint's capture holds the event loop: inline pickling, a forked
child, and auto (the default: inline while the learner's last snapshot was at most
64 KiB, else forked) (RIVERBED_CHECKPOINT_CAPTURE), per model, with the snapshot's
size and the per-record time of the live model before and after ten checkpoints.

    .venv/bin/python bench/capture_cost.py

The loop is held, inline, for the pickle (and the inline copy after it, for small
learners); with fork, for the fork itself and the parent's work on the bytes (signing,
chunking and the finite-state scan). Measured with a ticker task that records the
longest gap between its wake-ups while one checkpoint runs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from river.datasets import synth

from riverbed import models
from riverbed.checkpoint.snapshots import Checkpointer, SnapshotCodec
from riverbed.learning.state import Learners
from riverbed.records import Event

EVENTS = {"logreg": 5000, "hoeffding": 5000, "arf": 3000}


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


def per_record(learners: Learners, data: list[Event], start: int) -> float:
    learner = learners.get(0)
    t0 = time.perf_counter()
    for i, e in enumerate(data, start):
        learner.process_event(e, offset=i, ts_ms=i)
    return (time.perf_counter() - t0) / len(data) * 1e6


def main() -> None:
    print(f"{'model':<10} {'capture':<7} {'held: median / max ms':>13} {'checkpoint ms':>14} "
          f"{'µs/record before':>17} {'after 10 checkpoints':>21}")  # fmt: skip
    for name, n in EVENTS.items():
        data = [Event(str(i), x, y) for i, (x, y) in enumerate(synth.Agrawal(seed=3).take(n))]
        for capture in ("inline", "fork", "auto"):
            learners = Learners(models.spec(name))
            per_record(learners, data[: n // 2], 0)
            before = per_record(learners, data[n // 2 : n // 2 + 500], n // 2)
            # One event loop for the ten, as in a worker (its executor thread persists).
            results = asyncio.run(ten(capture, learners))
            after = per_record(learners, data[n // 2 + 500 :], n // 2 + 500)
            held_ms = sorted(r[0] for r in results)
            whole_ms = sorted(r[1] for r in results)[5]
            print(f"{name:<10} {capture:<7} {held_ms[5]:>6.1f} /{held_ms[-1]:>6.1f} "
                  f"{whole_ms:>14.1f} {before:>17.1f} {after:>21.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
