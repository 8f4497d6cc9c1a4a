"""``riverbed demo`` (``make run``): broker, worker, a drifting stream, live accuracy.

Starts the local broker unless one answers at ``RIVERBED_BROKER``, starts a worker
process, replays a drifting synthetic stream at a steady rate with inline labels, and
reads the predictions back to show throughput and prequential accuracy as they move
through the drift. Ctrl-C (or ``--duration``) stops the worker, and the broker if the
demo started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from riverbed.config import Settings
from riverbed.devtools.broker import STATE, LocalBroker
from riverbed.devtools.produce import ProduceStats, produce
from riverbed.exceptions import BrokerError

__all__ = ["run_demo"]

READY_TIMEOUT_S = 90.0
SPARK = "▁▂▃▄▅▆▇█"
WINDOW = 500


@dataclass
class _Live:
    prefix: str
    sent: int = 0
    predicted: int = 0
    correct: int = 0
    recent: deque[bool] = field(default_factory=lambda: deque(maxlen=WINDOW))
    history: deque[float] = field(default_factory=lambda: deque(maxlen=40))


def _spark(values: deque[float]) -> str:
    return "".join(SPARK[min(int(v * len(SPARK)), len(SPARK) - 1)] for v in values)


def _wait_ready(port: int, worker: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            msg = f"the worker exited with {worker.returncode}:\n{tail}"
            raise BrokerError(msg)
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r,
        ):
            if r.status == 200:
                return
        time.sleep(0.3)  # poll interval while the worker joins its group
    msg = f"the worker was not ready within {READY_TIMEOUT_S:.0f} s; see {log}"
    raise BrokerError(msg)


async def _read_predictions(settings: Settings, live: _Live) -> None:
    consumer = AIOKafkaConsumer(
        settings.topic("predictions"),
        bootstrap_servers=settings.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="latest",
        **settings.kafka_client(),
    )
    await consumer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    p = orjson.loads(r.value)
                    if not p["id"].startswith(live.prefix):
                        continue  # an earlier run's record
                    live.predicted += 1
                    ok = p.get("y") == p["y_pred"]
                    live.correct += ok
                    live.recent.append(ok)
    finally:
        await consumer.stop()


async def _show(live: _Live, drift_at: int, duration: float | None) -> None:
    t0 = time.monotonic()
    last_n, last_t = 0, t0
    while duration is None or time.monotonic() - t0 < duration:
        await asyncio.sleep(1.0)  # refresh period of the display
        now = time.monotonic()
        rate = (live.predicted - last_n) / (now - last_t)
        last_n, last_t = live.predicted, now
        overall = live.correct / live.predicted if live.predicted else 0.0
        window = sum(live.recent) / len(live.recent) if live.recent else 0.0
        if live.recent:
            live.history.append(window)
        marker = (
            "  ◀ drift" if live.sent >= drift_at and live.predicted < drift_at + 2 * WINDOW else ""
        )
        print(
            f"{now - t0:5.0f}s │ sent {live.sent:>7,} │ predicted {live.predicted:>7,} │ "
            f"{rate:6,.0f} ev/s │ accuracy {overall:6.1%} │ last {WINDOW}: {window:6.1%} "
            f"{_spark(live.history)}{marker}",
            flush=True,
        )


async def _live(settings: Settings, *, rate: float, dataset: str, duration: float | None) -> None:
    live = _Live(prefix=uuid.uuid4().hex[:8])
    drift_at = 5000

    def on_sent(stats: ProduceStats) -> None:
        live.sent = stats.events

    reader = asyncio.create_task(_read_predictions(settings, live))
    await asyncio.sleep(0.5)  # let the reader reach the end of the topic before producing
    producer = asyncio.create_task(
        produce(
            settings,
            dataset=dataset,
            rate=rate,
            id_prefix=live.prefix,
            drift_at=drift_at,
            on_sent=on_sent,
        )
    )
    try:
        await _show(live, drift_at, duration)
    finally:
        for task in (producer, reader):
            task.cancel()
        for task in (producer, reader):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    print(
        f"\ndone: {live.predicted:,} predictions, prequential accuracy "
        f"{live.correct / max(live.predicted, 1):.2%}"
    )


def run_demo(settings: Settings, *, rate: float, dataset: str, duration: float | None) -> int:
    """Run the demo until Ctrl-C or ``duration`` seconds; return an exit code."""
    broker = LocalBroker.start_unless_running(settings)
    if broker is not None:
        print(f"started the local Kafka broker at {broker.bootstrap}", flush=True)
    STATE.mkdir(parents=True, exist_ok=True)
    log = STATE / "demo-worker.log"
    with log.open("wb") as fh:
        worker = subprocess.Popen(
            [sys.executable, "-m", "riverbed", "worker", "-l", "warn"],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    interrupted = False
    try:
        print(f"starting a worker (model {settings.model}, log {log}) ...", flush=True)
        _wait_ready(settings.web_port, worker, log)
        web = f"http://{settings.web_host}:{settings.web_port}"
        print(
            f"\nriverbed demo: {dataset} stream"
            + (" (Agrawal function 0 → 4 at event 5,000)" if dataset == "drift" else "")
            + f", {rate:,.0f} events/s, inline labels, model {settings.model}\n"
            f"  per-partition models  {web}/models\n"
            f"  predictions           riverbed tail predictions --from-end\n"
            f"  dead letters          riverbed tail dlq\n"
            f"  Ctrl-C stops the demo\n",
            flush=True,
        )
        asyncio.run(_live(settings, rate=rate, dataset=dataset, duration=duration))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        if broker is not None:
            broker.stop()
            print("stopped the worker and the broker", flush=True)
        else:
            print("stopped the worker", flush=True)
    return 130 if interrupted else 0
