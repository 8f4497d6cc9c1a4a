"""Per-record time of a restored learner: as unpickled, and as the recovery installs it.

Issue 19, item 2: an unpickled object keeps a real ``__dict__`` and every attribute
access of the model becomes a dict lookup (``app/learning/inline.py``); recovery now
installs ``learner.rebuilt()``, an inline copy made before the partition goes live.

    .venv/bin/python -m bench.restore_speed
"""

from __future__ import annotations

import argparse
import pickle
import time

from river.datasets import synth

from riverbed import models
from riverbed.learning.learner import PartitionLearner
from riverbed.records import Event


def per_record(learner: PartitionLearner, events: list[Event], start: int) -> float:
    t0 = time.perf_counter()
    for i, e in enumerate(events, start):
        learner.process_event(e, offset=i, ts_ms=i)
    return (time.perf_counter() - t0) / len(events) * 1e6


def main() -> None:
    # No options: --help says what it measures instead of running it.
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    print(f"{'model':<10} {'unpickled µs':>13} {'rebuilt µs':>11}")
    for name in ("logreg", "hoeffding", "hst"):
        data = [Event(str(i), x, y) for i, (x, y) in enumerate(synth.Agrawal(seed=1).take(6000))]
        learner = PartitionLearner(models.spec(name), partition=0)
        for i, e in enumerate(data[:3000]):
            learner.process_event(e, offset=i, ts_ms=i)
        blob = pickle.dumps(learner)
        unpickled = min(per_record(pickle.loads(blob), data[3000:], 3000) for _ in range(3))
        rebuilt = min(per_record(pickle.loads(blob).rebuilt(), data[3000:], 3000) for _ in range(3))
        print(f"{name:<10} {unpickled:>13.1f} {rebuilt:>11.1f}")


if __name__ == "__main__":
    main()
