"""Does checkpointing slow a tree model? A hoeffding worker with a checkpoint every
1,000 records against one without checkpoints, in one run (issue 19's acceptance).

    .venv/bin/python -m bench.checkpoint_speed [--events 40000] [--repeat 5]

The same Agrawal events (4 partitions) are read by riverbed workers in rounds that
interleave the settings, each round starting one setting later, so a slow spell of the
machine, or a place in the round, hits them alike:

* ``none``: no checkpoint during the run (RIVERBED_SNAPSHOT_EVERY and _INTERVAL past
  its end);
* ``every 1000, auto``: a checkpoint every 1,000 records, the default capture (the one
  measured to hold the loop less: forked, for a tree);
* ``every 1000, inline``: the same with the learners pickled in the worker, the
  capture the default replaced (pickling leaves a tree's objects slower for good);
* ``defaults``: riverbed's default checkpoints (every 10,000 records or 10 s, auto).

events/s is measured as in ``bench/compare.py`` (the predictions' Kafka timestamps);
each setting's best round is reported, with every round's figure. Since the rounds
interleave the settings, each round's events/s is also divided by the same round's
``none``: the median of those ratios is the setting's cost, and it is "within noise"
when it is closer to 1.0 than ``none``'s own rounds spread ((max - min) / median).
Results go to ``bench/results/checkpoint_speed.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from typing import Any

from bench.harness import (
    PARTITIONS,
    RESULTS,
    broker_settings,
    create_topics,
    delete_run_topics,
    new_prefix,
    produce_values,
    read,
    run_settings,
    run_worker,
    span_rate,
)

NEVER = str(10**9)
SETTINGS = {
    "none": {"RIVERBED_SNAPSHOT_EVERY": NEVER, "RIVERBED_SNAPSHOT_INTERVAL": NEVER},
    "every 1000, auto": {"RIVERBED_SNAPSHOT_EVERY": "1000", "RIVERBED_SNAPSHOT_INTERVAL": NEVER,
                         "RIVERBED_CHECKPOINT_CAPTURE": "auto"},
    "every 1000, inline": {"RIVERBED_SNAPSHOT_EVERY": "1000", "RIVERBED_SNAPSHOT_INTERVAL": NEVER,
                           "RIVERBED_CHECKPOINT_CAPTURE": "inline"},
    "defaults": {},
}  # fmt: skip


def summarize(model: str, events: int, runs: dict[str, list[float]]) -> dict[str, Any]:
    """The run's results: best round per setting, and the paired comparison.

    The rounds interleave the settings, so each round's ratio to its own ``none`` cancels
    the machine's slow and fast spells. ``noise`` is how far ``none``'s rounds spread
    around their median ((max - min) / median): a setting whose median ratio to ``none``
    is within that of 1.0 cannot be told from ``none`` in this run.

    Examples
    --------
    >>> out = summarize("hoeffding", 10, {"none": [100.0, 110.0, 90.0],
    ...                                   "slow": [70.0, 80.0, 60.0]})
    >>> out["paired_against_none_median"], out["noise"], out["within_noise"]
    ({'none': 1.0, 'slow': 0.7}, 0.2, {'none': True, 'slow': False})

    """
    best = {name: max(r) for name, r in runs.items()}
    base = runs["none"]
    paired = {name: [x / b for x, b in zip(r, base, strict=True)] for name, r in runs.items()}
    median = {name: round(statistics.median(r), 3) for name, r in paired.items()}
    noise = round((max(base) - min(base)) / statistics.median(base), 3)
    return {
        "model": model,
        "events": events,
        "partitions": PARTITIONS,
        "events_per_s": {name: round(v) for name, v in best.items()},
        "runs_events_per_s": {name: [round(x) for x in r] for name, r in runs.items()},
        "against_none": {name: round(v / best["none"], 3) for name, v in best.items()},
        "paired_against_none": {name: [round(x, 3) for x in r] for name, r in paired.items()},
        "paired_against_none_median": median,
        "noise": noise,
        "within_noise": {name: 1 - m <= noise for name, m in median.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--model", default="hoeffding")
    args = ap.parse_args()
    from riverbed.devtools.broker import LocalBroker
    from riverbed.devtools.produce import produce

    settings = broker_settings()
    broker = LocalBroker.start_unless_running(settings)
    bootstrap = settings.bootstrap
    prefix = new_prefix("ckpt")
    s = run_settings(bootstrap, prefix)
    runs: dict[str, list[float]] = {name: [] for name in SETTINGS}
    # Snapshots each run wrote (one a partition a checkpoint): fewer than every 1,000
    # records asks for, as a checkpoint asked for while one is being written joins it.
    snapshots: dict[str, list[int]] = {name: [] for name in SETTINGS}
    try:
        asyncio.run(produce(s, dataset="agrawal", limit=args.events, seed=7))
        dataset = asyncio.run(read(bootstrap, prefix + "events", args.events))
        keyed = [(r.partition, r.key, r.value) for r in dataset]
        names = list(SETTINGS)
        for rnd in range(args.repeat):
            # Each round starts one setting later: a setting's place in the round (the
            # broker still deleting the last run's files, say) is not its cost.
            for name in names[rnd % len(names) :] + names[: rnd % len(names)]:
                worker_settings = SETTINGS[name]
                rprefix = f"{prefix}r{rnd}{names.index(name)}."
                asyncio.run(create_topics(bootstrap, [rprefix + "events"]))
                asyncio.run(produce_values(bootstrap, rprefix + "events", keyed))
                worker = run_worker(bootstrap, rprefix, args.events, model=args.model,
                                    settings=worker_settings)  # fmt: skip
                rate = span_rate(asyncio.run(read(bootstrap, rprefix + "predictions",
                                                  args.events)))  # fmt: skip
                runs[name].append(rate)
                written = int(worker.metrics.get("riverbed_snapshots_written_total", 0))
                snapshots[name].append(written)
                print(f"{args.model} {name:20} {rate:10,.0f} events/s  {written:3} snapshots  "
                      f"(round {rnd + 1})", flush=True)  # fmt: skip
    finally:
        asyncio.run(delete_run_topics(bootstrap))
        if broker is not None:
            broker.stop()
    out = summarize(args.model, args.events, runs)
    out["runs_snapshots_written"] = snapshots
    print(json.dumps(out, indent=2))
    for name, verdict in out["within_noise"].items():
        print(f"{name:20} median of the rounds' ratios to none: "
              f"{out['paired_against_none_median'][name]:.3f}  "
              f"within noise ({out['noise']:.3f}): {'yes' if verdict else 'no'}")  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "checkpoint_speed.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
