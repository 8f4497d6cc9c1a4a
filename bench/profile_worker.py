"""Profile the riverbed worker over N pre-produced events (cProfile, whole process).

    .venv/bin/python -m bench.profile_worker --events 50000 [--out bench/results/profile.txt]

Produces N Agrawal events (inline labels) over 4 partitions to a fresh topic prefix,
runs ``python -m cProfile -m riverbed worker`` until every prediction is in Kafka, stops it
with SIGTERM, and prints the functions with the most own time (tottime) plus the
events/s of the run (first to last prediction's Kafka timestamp). The profiler slows
the process down, so the rate here is only for comparing profiles with each other;
``bench/compare.py`` measures speed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import pstats
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench.harness import (
    ROOT,
    broker_settings,
    delete_run_topics,
    new_prefix,
    read,
    run_settings,
    span_rate,
    stop_worker,
    worker_env,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--out", type=Path, help="also write the report here")
    args = ap.parse_args()

    from riverbed.devtools.broker import LocalBroker
    from riverbed.devtools.produce import produce

    settings = broker_settings()
    broker = LocalBroker.start_unless_running(settings)
    prefix = new_prefix("prof")
    # The worker's own environment (the default model, logreg), its data in
    # .riverbed/bench-profile-worker; its app's topics are the run's, deleted at the end.
    env, _ = worker_env(settings.bootstrap, prefix, f"prof-{uuid.uuid4().hex[:8]}",
                        "profile-worker")  # fmt: skip
    s = run_settings(settings.bootstrap, prefix)
    try:
        asyncio.run(produce(s, dataset="agrawal", limit=args.events, seed=7))
        with tempfile.TemporaryDirectory() as tmp:
            stats_file = Path(tmp) / "worker.prof"
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cProfile",
                    "-o",
                    str(stats_file),
                    "-m",
                    "riverbed",
                    "worker",
                ],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                out = prefix + "predictions"
                records = asyncio.run(read(settings.bootstrap, out, args.events))
            finally:
                stop_worker(proc, 120)
            buf = io.StringIO()
            print(
                f"{len(records)} predictions, {span_rate(records):,.0f} events/s under cProfile",
                file=buf,
            )
            pstats.Stats(str(stats_file), stream=buf).sort_stats("tottime").print_stats(args.top)
    finally:
        asyncio.run(delete_run_topics(settings.bootstrap))
        if broker is not None:
            broker.stop()
    report = buf.getvalue()
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
