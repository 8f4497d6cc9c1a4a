"""Profile the riverbed worker over N pre-produced events (cProfile, whole process).

    .venv/bin/python bench/profile_worker.py --events 50000 [--out bench/results/profile.txt]

Produces N Agrawal events (inline labels) over 4 partitions to a fresh topic prefix,
runs ``python -m cProfile -m app worker`` until every prediction is in Kafka, stops it
with SIGTERM, and prints the functions with the most own time (tottime) plus the
events/s of the run (first to last prediction's Kafka timestamp). The profiler slows
the process down, so the rate here is only for comparing profiles with each other;
``bench/compare.py`` measures speed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import compare  # noqa: E402
from compare import (  # noqa: E402
    PARTITIONS,
    _delete_run_topics,
    _free_port,
    _new_prefix,
    _read,
    _span_rate,
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--out", type=Path, help="also write the report here")
    args = ap.parse_args()

    from riverbed.config import Settings
    from riverbed.devtools.broker import LocalBroker
    from riverbed.devtools.produce import produce

    settings = Settings.from_env({k: v for k, v in os.environ.items() if k == "RIVERBED_BROKER"})
    broker = LocalBroker.start_unless_running(settings)
    prefix = _new_prefix("prof")
    app_id = f"prof-{uuid.uuid4().hex[:8]}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RIVERBED_")},
        "RIVERBED_BROKER": settings.bootstrap,
        "RIVERBED_TOPIC_PREFIX": prefix,
        "RIVERBED_APP_ID": app_id,
        "RIVERBED_PARTITIONS": str(PARTITIONS),
        "RIVERBED_WEB_PORT": str(_free_port()),
        "RIVERBED_LOG_LEVEL": "warning",
        "RIVERBED_DATA_DIR": str(ROOT / ".riverbed" / "profile-worker"),
    }
    s = Settings.from_env({k: v for k, v in env.items() if k.startswith("RIVERBED_")})
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
                records = asyncio.run(_read(settings.bootstrap, out, args.events))
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(120)
            buf = io.StringIO()
            print(
                f"{len(records)} predictions, {_span_rate(records):,.0f} events/s under cProfile",
                file=buf,
            )
            pstats.Stats(str(stats_file), stream=buf).sort_stats("tottime").print_stats(args.top)
    finally:
        # The run's topics, and Faust's assignor topic named after the app
        compare._PREFIXES.append(f"{app_id}-__assignor-")
        asyncio.run(_delete_run_topics(settings.bootstrap))
        if broker is not None:
            broker.stop()
    report = buf.getvalue()
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
