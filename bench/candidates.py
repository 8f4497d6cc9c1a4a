"""What challengers cost: riverbed's learner with 1 and 3 candidates against River alone.

Issue 18's goal: with ``RIVERBED_MODEL=logreg,hoeffding,logreg_lr05`` riverbed's cost
per event should be the sum of the models' own costs, no more than running them one
after another in one River loop. Measured in process (no Kafka: the broker's share is
the same for 1 or 3 candidates), exact test-then-train with inline labels, on the
bench's Agrawal stream; best of ``--repeat`` rounds.

    .venv/bin/python -m bench.candidates --events 20000
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from river import linear_model, optim
from river.datasets import synth

from riverbed import models
from riverbed.learning.learner import PartitionLearner
from riverbed.models import ModelSpec
from riverbed.models.features import MixedScaler
from riverbed.records import Event

RESULTS = Path(__file__).resolve().parent / "results" / "candidates.json"


def logreg_lr05() -> Any:
    """The catalog's logreg with another learning rate (SGD at 0.05, not 0.01)."""
    return MixedScaler() | linear_model.LogisticRegression(optimizer=optim.SGD(0.05))


LR05 = ModelSpec("logreg_lr05", "classification", logreg_lr05, models.spec("logreg").metric)


def lineup(names: list[str]) -> tuple[ModelSpec, ...]:
    return tuple(LR05 if n == "logreg_lr05" else models.spec(n) for n in names)


def river_loop(specs: tuple[ModelSpec, ...], data: list[tuple[dict, Any]]) -> float:
    """Seconds per event of the models one after another in one River loop, each
    evaluated as progressive_val_score does (predict, update its metric, learn)."""
    built = [(s.build(), s.metric()) for s in specs]
    t0 = time.perf_counter()
    for x, y in data:
        for m, metric in built:
            y_pred = m.predict_one(x)
            if y_pred is not None:
                metric.update(y, y_pred)
            m.learn_one(x, y)
    return (time.perf_counter() - t0) / len(data)


def riverbed_learner_bare(specs: tuple[ModelSpec, ...], data: list[tuple[dict, Any]]) -> float:
    """riverbed's learner without the rolling window and drift detectors (what River's
    loop above does not do either)."""
    learner = PartitionLearner(specs[0], partition=0, lineup=specs, metric_window=0,
                               drift_detector="none")  # fmt: skip
    events = [Event(str(i), x, y) for i, (x, y) in enumerate(data)]
    t0 = time.perf_counter()
    for i, e in enumerate(events):
        learner.process_event(e, offset=i, ts_ms=i)
    return (time.perf_counter() - t0) / len(data)


def riverbed_learner(specs: tuple[ModelSpec, ...], data: list[tuple[dict, Any]]) -> float:
    """Seconds per event of riverbed's PartitionLearner with these candidates."""
    learner = PartitionLearner(specs[0], partition=0, lineup=specs)
    events = [Event(str(i), x, y) for i, (x, y) in enumerate(data)]
    t0 = time.perf_counter()
    for i, e in enumerate(events):
        learner.process_event(e, offset=i, ts_ms=i)
    return (time.perf_counter() - t0) / len(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    data = list(synth.Agrawal(seed=42).take(args.events))
    names = ["logreg", "hoeffding", "logreg_lr05"]
    rows: dict[str, dict[str, float]] = {}
    for label, which in (("logreg", names[:1]), ("hoeffding", names[1:2]),
                         ("logreg_lr05", names[2:]), ("all three", names)):  # fmt: skip
        specs = lineup(which)
        river = min(river_loop(specs, data) for _ in range(args.repeat))
        ours = min(riverbed_learner(specs, data) for _ in range(args.repeat))
        bare = min(riverbed_learner_bare(specs, data) for _ in range(args.repeat))
        rows[label] = {"river_us": river * 1e6, "riverbed_us": ours * 1e6,
                       "riverbed_bare_us": bare * 1e6}  # fmt: skip
    alone = sum(rows[n]["riverbed_us"] for n in names)
    rows["all three"]["sum_of_alone_us"] = alone
    print(f"{'candidates':<14} {'River loop':>12} {'riverbed':>10} {'riverbed bare':>14}"
          "   (µs/event; bare: no rolling window, no drift detector)")  # fmt: skip
    for label, r in rows.items():
        print(f"{label:<14} {r['river_us']:>12.1f} {r['riverbed_us']:>10.1f} "
              f"{r['riverbed_bare_us']:>14.1f}")  # fmt: skip
    three = rows["all three"]
    print(
        f"riverbed with 3 candidates: {three['riverbed_us']:.1f} µs/event; the three alone "
        f"in riverbed sum to {alone:.1f}; River's one loop of the three: "
        f"{three['river_us']:.1f} ({three['riverbed_us'] / three['river_us']:.2f}x; without "
        f"rolling windows and drift detectors {three['riverbed_bare_us']:.1f}, "
        f"{three['riverbed_bare_us'] / three['river_us']:.2f}x)"
    )
    RESULTS.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "events": args.events,
                                   "python": platform.python_version(), "rows": rows},
                                  indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
