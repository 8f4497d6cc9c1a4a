"""``riverbed demo`` (``make run``): broker, worker, a drifting stream, live accuracy.

Starts the local broker unless one answers at ``RIVERBED_BROKER``, starts a worker
process, replays a drifting synthetic stream at a steady rate with inline labels, and
reads the predictions back to show throughput and prequential accuracy as they move
through the drift; next to them each candidate's rolling metric from ``/models`` (the
champion starred), and, as they happen, the drift detectors' detections and the
promotions the worker publishes on the metrics topic. Where the stream's own drift lies
is printed once, as a reference. Ctrl-C (or ``--duration``) stops the worker, and the
broker if the demo started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from riverbed.config import Settings
from riverbed.devtools.broker import STATE, LocalBroker
from riverbed.devtools.produce import ProduceStats, dataset_stream, produce
from riverbed.exceptions import BrokerError
from riverbed.kafka import clients

__all__ = ["run_demo"]

READY_TIMEOUT_S = 90.0
SPARK = "▁▂▃▄▅▆▇█"
WINDOW = 500
DRIFT_AT = 5000  # where the synthetic stream switches concept (``--dataset drift``)
WHERE_KEPT = 200_000  # (partition, offset) -> stream index entries kept for the events
EVENT_WAIT_S = 3.0  # how long an event waits for its prediction to place it in the stream
PERCENT = {
    "Accuracy",
    "BalancedAccuracy",
    "ROCAUC",
    "PRAUC",
    "F1",
    "Precision",
    "Recall",
    "accuracy",
    "balanced_accuracy",
    "rocauc",
    "prauc",
    "f1",
    "precision",
    "recall",
}


@dataclass
class _Live:
    prefix: str
    sent: int = 0
    predicted: int = 0
    correct: int = 0
    furthest: int = -1  # the furthest stream index predicted
    recent: deque[bool] = field(default_factory=lambda: deque(maxlen=WINDOW))
    history: deque[float] = field(default_factory=lambda: deque(maxlen=40))
    where: dict[tuple[int, int], int] = field(default_factory=dict)  # (p, offset) -> index
    waiting: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # metrics topic
    detections: list[tuple[dict[str, Any], int | None]] = field(default_factory=list)
    promotions: list[dict[str, Any]] = field(default_factory=list)
    models: dict[str, Any] | None = None  # the last /models


def _spark(values: deque[float]) -> str:
    return "".join(SPARK[min(int(v * len(SPARK)), len(SPARK) - 1)] for v in values)


def _fmt(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if name in PERCENT else f"{value:.4f}"


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


def _get_models(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/models", timeout=2) as r:
            doc: dict[str, Any] = orjson.loads(r.read())
            return doc
    except (OSError, orjson.JSONDecodeError):
        return None


def _candidates(doc: dict[str, Any] | None) -> str:
    """Each candidate's rolling metric over the partitions (weighted by what it learned;
    the cumulative one without a rolling window), the champion starred."""
    if not doc or not doc.get("partitions"):
        return ""
    parts = list(doc["partitions"].values())
    sums: dict[str, list[float]] = {}  # name -> [weighted sum, weight]
    champions: dict[str, int] = {}
    window = None
    metric = ""
    for d in parts:
        champion = d.get("champion", doc["model"])
        champions[champion] = champions.get(champion, 0) + 1
        for name, q in d.get("candidates", {}).items():
            m = q.get("rolling") or q["metric"]
            metric, window = m["name"], m.get("window")
            acc = sums.setdefault(name, [0.0, 0.0])
            weight = min(q["learned"], window) if window else q["learned"]
            if m["value"] is not None and weight:
                acc[0] += m["value"] * weight
                acc[1] += weight
    if not sums:
        return ""
    shown = []
    for name, (total, weight) in sums.items():
        n = champions.get(name, 0)
        star = "" if n == 0 else "★" if n == len(parts) else f"★{n}/{len(parts)}"
        shown.append(f"{name}{star} {_fmt(metric, total / weight if weight else None)}")
    what = f"last {window:,}" if window else "all"
    return f" │ {metric.lower()} ({what}): " + "  ".join(shown)


async def _read_topics(settings: Settings, live: _Live, positioned: asyncio.Event) -> None:
    """Our predictions (accuracy, and where each event lies in the stream), and the
    detections and promotions the worker publishes on the metrics topic. ``positioned``
    is set once the topics' ends are known: what is produced after that is read."""
    predictions, metrics = settings.topic("predictions"), settings.topic("metrics")
    consumer = clients.consumer(
        settings, predictions, metrics, enable_auto_commit=False, auto_offset_reset="latest"
    )
    await consumer.start()
    try:
        for tp in consumer.assignment():  # assigned by start(): the topics exist
            await consumer.position(tp)  # "latest", resolved now, not at the first fetch
        positioned.set()
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for r in records:
                    if r.topic == metrics:
                        m = orjson.loads(r.value)
                        if m.get("type") in ("drift", "promotion"):
                            live.waiting.append((time.monotonic(), m))
                        continue
                    p = orjson.loads(r.value)
                    if not p["id"].startswith(live.prefix):
                        continue  # an earlier run's record
                    live.predicted += 1
                    ok = p.get("y") == p["y_pred"]
                    live.correct += ok
                    live.recent.append(ok)
                    with contextlib.suppress(ValueError):
                        index = int(p["id"].rsplit("-", 1)[1])
                        live.furthest = max(live.furthest, index)
                        live.where[(p["partition"], p["offset"])] = index
            if len(live.where) > WHERE_KEPT:
                for k in list(live.where)[: WHERE_KEPT // 2]:  # the oldest half
                    del live.where[k]
    finally:
        await consumer.stop()


def _event_line(m: dict[str, Any], index: int | None, drift_at: int | None) -> str:
    """A detection or a promotion from the metrics topic, placed in the stream."""
    at = f"partition {m['partition']} offset {m.get('events_offset', m['offset']):,}"
    if index is not None:
        at += f" = stream event {index:,}"
        if drift_at is not None:
            d = index - drift_at
            at += f" ({abs(d):,} {'after' if d >= 0 else 'before'} the stream's drift)"
    if m["type"] == "promotion":
        metric = m["metric"]
        return (
            f"      ★ promotion: {m['to']} replaces {m['from']} as champion, {at}; "
            f"{metric['name']} {_fmt(metric['name'], metric['from_value'])} → "
            f"{_fmt(metric['name'], metric['to_value'])} over the last {m['window']:,} "
            f"labels ({m['test']['name']}, p={m['test']['p_value']:.2g})"
        )
    role = "champion" if m.get("champion", True) else "challenger"
    return f"      ▲ drift detected by {m.get('model', '?')}'s detector ({role}), {at}"


def _place(live: _Live, drift_at: int | None) -> list[str]:
    """Lines for the metrics topic's records whose stream position is known (or that
    waited long enough)."""
    lines: list[str] = []
    now = time.monotonic()
    still: list[tuple[float, dict[str, Any]]] = []
    for got, m in live.waiting:
        index = live.where.get((m["partition"], m.get("events_offset", m["offset"])))
        if index is None and now - got < EVENT_WAIT_S:
            still.append((got, m))
            continue
        if m["type"] == "drift":
            live.detections.append((m, index))
        else:
            live.promotions.append(m)
        lines.append(_event_line(m, index, drift_at))
    live.waiting = still
    return lines


async def _show(live: _Live, port: int, drift_at: int | None, duration: float | None) -> None:
    t0 = time.monotonic()
    last_n, last_t = 0, t0
    reference_shown = drift_at is None
    while duration is None or time.monotonic() - t0 < duration:
        await asyncio.sleep(1.0)  # refresh period of the display
        live.models = await asyncio.to_thread(_get_models, port) or live.models
        now = time.monotonic()
        rate = (live.predicted - last_n) / (now - last_t)
        last_n, last_t = live.predicted, now
        overall = live.correct / live.predicted if live.predicted else 0.0
        window = sum(live.recent) / len(live.recent) if live.recent else 0.0
        if live.recent:
            live.history.append(window)
        if not reference_shown and drift_at is not None and live.furthest >= drift_at:
            reference_shown = True
            print(
                f"      ┄ reference: the stream's own drift is centred on event {drift_at:,} "
                "(known from the generator, not detected)",
                flush=True,
            )
        events = _place(live, drift_at)
        for line in events:
            print(line, flush=True)
        n = sum(line.startswith("      ▲") for line in events)
        marker = f"  ◀ {n} drift detection{'s' * (n > 1)}" if n else ""
        print(
            f"{now - t0:5.0f}s │ sent {live.sent:>7,} │ predicted {live.predicted:>7,} │ "
            f"{rate:6,.0f} ev/s │ accuracy {overall:6.1%} │ last {WINDOW}: {window:6.1%} "
            f"{_spark(live.history)}{_candidates(live.models)}{marker}",
            flush=True,
        )


def _summary(live: _Live, drift_at: int | None) -> str:
    lines = [
        f"\ndone: {live.predicted:,} predictions, prequential accuracy "
        f"{live.correct / max(live.predicted, 1):.2%}"
    ]
    placed = sorted(i for _, i in live.detections if i is not None)
    line = f"drift detections: {len(live.detections)}"
    if drift_at is not None:
        after = [i for i in placed if i >= drift_at]
        line += (
            f"; the first after the stream's drift (event {drift_at:,}) at stream event "
            f"{after[0]:,} ({after[0] - drift_at:+,})"
            if after
            else f"; none after the stream's drift (event {drift_at:,})"
        )
    lines.append(line + f"; promotions: {len(live.promotions)}")
    return "\n".join(lines)


async def _live(
    settings: Settings, *, rate: float, dataset: str, duration: float | None, port: int
) -> None:
    live = _Live(prefix=uuid.uuid4().hex[:8])
    drift_at = DRIFT_AT if dataset == "drift" else None

    def on_sent(stats: ProduceStats) -> None:
        live.sent = stats.events

    # The stream made before the loop runs: making it imports river.datasets (and
    # scikit-learn where installed, ~1 s), which would hold the loop and the display.
    pairs = dataset_stream(dataset, drift_at=DRIFT_AT)
    positioned = asyncio.Event()
    reader = asyncio.create_task(_read_topics(settings, live, positioned))
    ready = asyncio.create_task(positioned.wait())
    await asyncio.wait({reader, ready}, return_when=asyncio.FIRST_COMPLETED)
    if not positioned.is_set():
        ready.cancel()
        await reader  # it ended before reaching the topics' ends: its error, raised here
    producer = asyncio.create_task(
        produce(
            settings,
            dataset=dataset,
            rate=rate,
            id_prefix=live.prefix,
            drift_at=DRIFT_AT,
            on_sent=on_sent,
            pairs=pairs,
        )
    )
    try:
        await _show(live, port, drift_at, duration)
    finally:
        for task in (producer, reader):
            task.cancel()
        for task in (producer, reader):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    print(_summary(live, drift_at))


def _worker_env(settings: Settings) -> tuple[dict[str, str], str]:
    """The worker's environment: with several candidates and no RIVERBED_PROMOTION set,
    promotion is turned on, so that the demo can show one."""
    env = dict(os.environ)
    several = len([m for m in settings.model.split(",") if m.strip()]) > 1
    if several and "RIVERBED_PROMOTION" not in env:
        env["RIVERBED_PROMOTION"] = "auto"
        return env, ", RIVERBED_PROMOTION=auto"
    return env, f", RIVERBED_PROMOTION={settings.promotion}" if several else ""


class ForeignBroker(BrokerError):
    """A broker the project did not start answers where the demo would start its own."""


def _broker(settings: Settings, use_running: bool) -> LocalBroker | None:
    """The project's local broker, started unless it runs (the demo stops what it
    started); a broker the project did not start is used only when asked to."""
    from riverbed.devtools.broker import answers_metadata
    from riverbed.kafka.security import client_args

    local = LocalBroker.from_settings(settings)
    if answers_metadata(settings.bootstrap, **client_args(settings)):
        if local.pid() is None and not use_running:  # not the project's own broker
            msg = (
                f"a Kafka broker this project did not start answers at "
                f"RIVERBED_BROKER={settings.bootstrap}; the demo would write riverbed's "
                "topics there: riverbed demo --use-running-broker uses it, or set "
                "RIVERBED_BROKER to another address for the project's own"
            )
            raise ForeignBroker(msg)
        return None
    local.start()
    return local


async def _forget(settings: Settings) -> list[str]:
    """Delete the demo's topics (riverbed's, of its prefix and app id): the next worker
    starts with fresh models and an empty stream."""
    from riverbed.kafka.topics import TopicNames

    names = TopicNames.from_settings(settings)
    wanted = {names.events, names.labels, names.predictions, names.metrics, names.dlq,
              names.snapshots, names.versions, f"{names.predictions}.shadow"}  # fmt: skip
    admin = clients.admin(settings)
    await admin.start()
    try:
        present = [t for t in await admin.list_topics() if t in wanted]
        if present:
            await admin.delete_topics(present)
        for _ in range(100):  # deletion is asynchronous: until the metadata says so
            if not wanted & set(await admin.list_topics()):
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    return sorted(present)


def _resumed(doc: dict[str, Any] | None) -> int:
    """Events the worker's learners had learned before this run (restored models)."""
    parts = (doc or {}).get("partitions", {}).values()
    return sum(p.get("events", 0) for p in parts if p.get("restored_offset") is not None)


def _hangup(signum: int, frame: Any) -> None:
    """SIGHUP: as SIGINT, unless SIGINT is ignored (a background job of a script), where
    it interrupts as Ctrl-C would have."""
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
        signal.default_int_handler(signum, frame)
    signal.raise_signal(signal.SIGINT)


def run_demo(
    settings: Settings,
    *,
    rate: float,
    dataset: str,
    duration: float | None,
    fresh: bool = False,
    use_running_broker: bool = False,
) -> int:
    """Run the demo until Ctrl-C, SIGHUP or ``duration`` seconds; return an exit code."""
    broker = _broker(settings, use_running_broker)
    if broker is not None:
        print(f"started the local Kafka broker at {broker.bootstrap} (controller port "
              f"{broker.port + 1})", flush=True)  # fmt: skip
    if fresh:
        gone = asyncio.run(_forget(settings))
        print(f"--fresh: deleted the previous run's topics {', '.join(gone) or '(none)'}",
              flush=True)  # fmt: skip
    # Closing the terminal stops the demo (and its broker) as Ctrl-C does: SIGHUP is
    # made a SIGINT, so that inside asyncio.run it takes asyncio's own path (the main
    # task cancelled, its cleanup run, then KeyboardInterrupt), not a KeyboardInterrupt
    # raised wherever the loop happens to be (it escaped from a task's cleanup).
    signal.signal(signal.SIGHUP, _hangup)
    STATE.mkdir(parents=True, exist_ok=True)
    log = STATE / "demo-worker.log"
    env, promotion = _worker_env(settings)
    with log.open("wb") as fh:
        worker = subprocess.Popen(
            [sys.executable, "-m", "riverbed", "worker", "-l", "warn"],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
        )
    interrupted = False
    try:
        print(f"starting a worker (model {settings.model}, log {log}) ...", flush=True)
        _wait_ready(settings.web_port, worker, log)
        web = f"http://{settings.web_host}:{settings.web_port}"
        resumed = _resumed(_get_models(settings.web_port))
        if resumed:
            print(f"resuming the previous run: its models had seen {resumed:,} events and "
                  "go on learning (make run FRESH=1, or riverbed demo --fresh, starts "
                  "clean)", flush=True)  # fmt: skip
        print(
            f"\nriverbed demo: {dataset} stream"
            + (f" (Agrawal function 0 → 4 at event {DRIFT_AT:,})" if dataset == "drift" else "")
            + f", {rate:,.0f} events/s, inline labels, model {settings.model}{promotion}\n"
            f"  live page             {web}/\n"
            f"  per-partition models  {web}/models\n"
            f"  predictions           riverbed tail predictions --from-end\n"
            f"  dead letters          riverbed tail dlq\n"
            f"  ▲ drift detected by a candidate's detector, ★ promotion or champion "
            f"(the metrics topic, /models)\n"
            f"  Ctrl-C stops the demo\n",
            flush=True,
        )
        asyncio.run(
            _live(settings, rate=rate, dataset=dataset, duration=duration, port=settings.web_port)
        )
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
