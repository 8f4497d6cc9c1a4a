"""riverbed's own cost per event, in process: decode, learner, encode, against the bare work.

    .venv/bin/python -m bench.learner_cost [--models logreg,hoeffding] [--repeat 7]

The same records (Agrawal, inline labels, as ``make bench`` sends them) through:

- ``bare``: the model alone, ``predict_proba_one`` + argmax + ``learn_one`` on
  pre-decoded ``(x, y)`` (what every system does);
- ``learner``: :meth:`PartitionLearner.process_event` on pre-decoded events (the
  worker's default settings for the model); ``learner as before``: the same learner
  with River's ``utils.Rolling`` window and every event on the general path, as before
  issue 31 (an A/B in one process, where two checkouts' runs differ by more than it);
- ``decode`` / ``orjson.loads``: the processor's event decoder (the default mapping's)
  against ``orjson.loads``; ``decode+magnitude``: with the guard's magnitude check of
  ``x`` (folded into the decoder since issue 31, ``huge(x)`` in the learner before);
- ``encode`` / ``orjson.dumps``: a prediction record as the processor encodes it
  (partition, offset, ts added) against the raw loop's ``{"id", "y_pred", "proba"}``;
- ``processor``: :meth:`Processor.handle_many` over fetches of 250 records (decode,
  learner, encode; no Prometheus metrics), against ``raw``: the raw aiokafka loop's
  per-record work (``orjson.loads``, predict, learn, ``orjson.dumps``);
- the learner's bookkeeping parts alone (each on stored pairs, no model between):
  the cumulative metric, its rolling window, the drift watch (ADWIN), the guard's
  other checks (feature names, finite prediction) and the journal append.

Each run starts from a fresh learner (or model) and handles the same records; the
runs are interleaved and the best of ``--repeat`` is kept, in CPU time (the machine is
shared).
Prints µs per event, and writes ``bench/results/learner_cost.json``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from river import metrics, utils

from riverbed import models
from riverbed.config import Settings
from riverbed.kafka.topics import TopicNames
from riverbed.learning.guard import finite_prediction, huge
from riverbed.learning.learner import PartitionLearner
from riverbed.learning.state import Learners
from riverbed.pipeline.processor import Processor, Record
from riverbed.records import FieldMapping, decode_event, encode

EVENTS = {"logreg": 20_000, "hoeffding": 8_000}
FETCH = 250
MAX_BYTES = 1 << 20
RESULTS = Path(__file__).parent / "results"


def _records(n: int) -> list[bytes]:
    from riverbed.devtools.produce import dataset_stream

    now = int(time.time() * 1000)
    pairs = itertools.islice(dataset_stream("agrawal", seed=1), n)
    return [
        orjson.dumps({"id": str(i), "x": x, "y": y, "ts": now}) for i, (x, y) in enumerate(pairs)
    ]


def _learners(model: str) -> Learners:
    settings = Settings.from_env({"RIVERBED_MODEL": model})
    return Learners.from_settings(models.spec(model), settings)


def _timed(fn: Callable[[], Any]) -> float:
    """CPU seconds of ``fn`` (this process's: the time it waited for a core while other
    work ran on the machine is not counted, the wall clock's would be)."""
    gc.collect()
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def _variants(model: str, values: list[bytes]) -> dict[str, Callable[[], float]]:
    spec = models.spec(model)
    events = [decode_event(v, MAX_BYTES) for v in values]
    names = TopicNames.from_settings(Settings.from_env({}))
    fetches = [
        [Record(i, 0, None, v, []) for i, v in enumerate(values[s : s + FETCH], s)]
        for s in range(0, len(values), FETCH)
    ]

    def bare() -> float:
        m = spec.build()

        def run() -> None:
            for e in events:
                x = e.x
                proba = m.predict_proba_one(x)
                max(proba, key=proba.get) if proba else None
                m.learn_one(x, e.y)

        return _timed(run)

    def learner(as_before: bool = False) -> float:
        lrn = _learners(model).get(0)
        if as_before:
            # The learner as it was before issue 31, in this process: River's rolling
            # window, and every event through the general path (its huge(x) too).
            lrn.rolling = utils.Rolling(metrics.Accuracy, window_size=lrn.metric_window)
            lrn._plain_event = lrn._any_event  # type: ignore[assignment,method-assign]
        process = lrn.process_event

        def run() -> None:
            for i, (e, v) in enumerate(zip(events, values, strict=True)):
                process(e, offset=i, ts_ms=0, source=(v, None, ()), size=len(v))

        return _timed(run)

    def processor() -> float:
        proc = Processor(_learners(model), names, max_record_bytes=MAX_BYTES)
        handle, topic = proc.handle_many, names.events

        def run() -> None:
            for f in fetches:
                handle(topic, 0, f)

        return _timed(run)

    def raw() -> float:
        m = spec.build()
        loads, dumps, opt = orjson.loads, orjson.dumps, orjson.OPT_NON_STR_KEYS

        def run() -> None:
            for v in values:
                e = loads(v)
                x = e["x"]
                proba = m.predict_proba_one(x)
                y_pred = max(proba, key=proba.get) if proba else None
                if e.get("y") is not None:
                    m.learn_one(x, e["y"])
                dumps({"id": e["id"], "y_pred": y_pred, "proba": proba}, option=opt)

        return _timed(run)

    runs = {"bare": bare, "learner": learner, "processor": processor, "raw": raw}
    if hasattr(PartitionLearner, "_any_event"):  # since issue 31
        runs["learner as before"] = functools.partial(learner, as_before=True)
    return runs


def _codec(values: list[bytes], preds: list[dict[str, Any]]) -> dict[str, Callable[[], float]]:
    """Decoding and encoding alone, riverbed's against the raw loop's."""
    loads, dumps, opt = orjson.loads, orjson.dumps, orjson.OPT_NON_STR_KEYS
    raw_preds = [{"id": p["id"], "y_pred": p["y_pred"], "proba": p["proba"]} for p in preds]

    decoder = FieldMapping().event_decoder()  # what the processor calls

    def decode() -> float:
        return _timed(lambda: [decoder(v, None, MAX_BYTES) for v in values])

    def decode_guarded() -> float:
        # Decoding and the guard's magnitude check of x: the decoder answers it where it
        # does (Event.huge), huge(x) where it does not (before issue 31).
        def run() -> None:
            for v in values:
                e = decoder(v, None, MAX_BYTES)
                if getattr(e, "huge", None) is None:
                    huge(e.x)

        return _timed(run)

    def orjson_loads() -> float:
        return _timed(lambda: [loads(v) for v in values])

    def riverbed_encode() -> float:
        def run() -> None:
            for i, made in enumerate(preds):
                p = dict(made)  # the learner hands over a fresh dict; the processor adds to it
                p["partition"] = 0
                p["offset"] = i
                p["ts"] = 1_796_032_800_000
                encode(p)

        return _timed(run)

    def orjson_dumps() -> float:
        def run() -> None:
            for p in raw_preds:
                dict(p)
                dumps(p, option=opt)

        return _timed(run)

    return {"decode": decode, "decode+magnitude": decode_guarded, "orjson.loads": orjson_loads,
            "encode": riverbed_encode, "orjson.dumps": orjson_dumps}  # fmt: skip


def _parts(
    model: str, values: list[bytes]
) -> tuple[dict[str, Callable[[], float]], list[dict[str, Any]]]:
    """The learner's bookkeeping steps alone, on the (label, prediction) pairs of a run."""
    events = [decode_event(v, MAX_BYTES) for v in values]
    lrn = _learners(model).get(0)
    preds: list[dict[str, Any]] = []
    for i, (e, v) in enumerate(zip(events, values, strict=True)):
        pred = lrn.process_event(e, offset=i, ts_ms=0, source=(v, None, ()), size=len(v))
        assert pred is not None  # every offset is new
        preds.append(pred)
    pairs: list[tuple[Any, Any]] = [(e.y, p["y_pred"]) for e, p in zip(events, preds, strict=True)]

    def metric() -> float:
        m = _learners(model).get(0).metric
        return _timed(lambda: [m.update(y, p) for y, p in pairs])

    def rolling() -> float:
        r = _learners(model).get(0).rolling
        return _timed(lambda: [r.update(y, p) for y, p in pairs])

    def watch() -> float:
        w = _learners(model).get(0)._watch
        return _timed(lambda: [w(y, p, topic="events", offset=i) for i, (y, p) in enumerate(pairs)])

    def checks() -> float:
        # The guard's checks but the magnitude one (decode+magnitude has it): the
        # feature names against the cap, and a finite prediction.
        fresh = _learners(model).get(0)
        features = fresh.features
        features.update(events[0].x)

        def run() -> None:
            for e, p in zip(events, preds, strict=True):
                features.issuperset(e.x)
                finite_prediction(p["y_pred"], p["proba"])

        return _timed(run)

    def journal() -> float:
        def run() -> None:
            kept: list[Any] = []
            append = kept.append
            for i, (e, v) in enumerate(zip(events, values, strict=True)):
                append(("e", None, i, 0, (v, None, ()), len(v)))
                e.y  # noqa: B018 - the same attribute reads as the learner's

        return _timed(run)

    parts = {"metric": metric, "rolling": rolling, "watch": watch, "names+finite": checks,
             "journal": journal}  # fmt: skip
    return parts, preds


def measure(model: str, n: int, repeat: int) -> dict[str, float]:
    values = _records(n)
    parts, preds = _parts(model, values)
    runs = {**_variants(model, values), **_codec(values, preds), **parts}
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, run in runs.items():  # interleaved: each round runs every variant once
            best[name] = min(best[name], run())
    us = {name: round(t / n * 1e6, 3) for name, t in best.items()}
    us["learner - bare"] = round(us["learner"] - us["bare"], 3)
    if "learner as before" in us:
        us["as before - bare"] = round(us["learner as before"] - us["bare"], 3)
    us["processor - raw"] = round(us["processor"] - us["raw"], 3)
    return us


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="logreg,hoeffding")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--events", type=int, default=0, help="0: the model's default")
    ap.add_argument("--label", default="", help="a name for this run in the JSON")
    ap.add_argument("--out", type=Path, default=RESULTS / "learner_cost.json")
    args = ap.parse_args()
    out: dict[str, Any] = {"label": args.label, "repeat": args.repeat, "models": {}}
    for model in args.models.split(","):
        n = args.events or EVENTS[model]
        us = measure(model, n, args.repeat)
        out["models"][model] = {"events": n, "us_per_event": us}
        print(f"{model} ({n} events, best of {args.repeat}), µs per event:")
        for name, v in us.items():
            print(f"  {name:18s} {v:8.3f}")
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
