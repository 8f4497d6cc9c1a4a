"""Auto promotion through the real broker, with a kill -9 in the middle: the champion
changes where an offline replay of the same windows says it should, every candidate's
metric equals its offline run, the published predictions are the champion's."""

from __future__ import annotations

import signal
from collections import defaultdict, deque
from typing import Any

import orjson
import pytest
from river import metrics, utils

from riverbed import models
from tests.helpers import wait_for
from tests.integration.helpers import RECV_TIMEOUT_S, Names, consume, read_all, total
from tests.replay import comparable

pytestmark = pytest.mark.integration

N = 8000
WINDOW = 400
CHI2 = 3.841  # McNemar, 1 degree of freedom, 5%
STREAM = ("--dataset", "drift", "--drift-at", "3000", "--limit", str(N), "--id-prefix", "d")
SETTINGS = {
    "partitions": 2,
    "model": "logreg,hoeffding",
    "promotion": "auto",
    "promotion_window": WINDOW,
    "metric_window": WINDOW,
    "snapshot_every": 800,
    "snapshot_interval": 1,
    "session_timeout": 8,
}


def offline(steps: list[tuple[dict[str, Any], Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Both candidates in plain River, the promotion rule written out independently:
    returns each event's published prediction (with the champion's name) and the
    promotions (index, from, to)."""
    cands = {n: models.build(n) for n in ("logreg", "hoeffding")}
    rolling = {n: utils.Rolling(metrics.Accuracy, window_size=WINDOW) for n in cands}
    champion, challenger = "logreg", "hoeffding"
    pairs: deque[tuple[float, float]] = deque(maxlen=WINDOW)
    since = 0
    out, promotions = [], []
    for i, (x, y) in enumerate(steps):
        preds = {}
        for n, m in cands.items():
            proba = m.predict_proba_one(x)
            preds[n] = (max(proba, key=proba.get) if proba else None, proba)
        y_pred, proba = preds[champion]
        out.append({"model": champion, **comparable({"y_pred": _json(y_pred),
                                                      "proba": _json(proba)})})  # fmt: skip
        for n, m in cands.items():
            if preds[n][0] is not None:
                rolling[n].update(y, preds[n][0])
            m.learn_one(x, y)
        if preds[champion][0] is None:
            continue
        since += 1
        if preds[challenger][0] is None:
            continue
        pairs.append((float(preds[champion][0] != y), float(preds[challenger][0] != y)))
        b = sum(1 for a, c in pairs if a < c)
        c_ = sum(1 for a, c in pairs if a > c)
        stat = (abs(b - c_) - 1) ** 2 / (b + c_) if b + c_ else 0.0
        if (
            since >= WINDOW
            and len(pairs) == WINDOW
            and c_ > b
            and stat > CHI2
            and rolling[challenger].get() > rolling[champion].get()
        ):
            promotions.append((i, champion, challenger))
            champion, challenger = challenger, champion
            pairs.clear()
            since = 0
    return out, promotions


def _json(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))


def test_auto_promotion_matches_the_offline_windows_through_a_kill_9(
    kafka: str, names: Names, start_worker: Any, start_producer: Any
) -> None:
    first = start_worker(**SETTINGS)
    producer = start_producer(*STREAM, "--rate", "2500", partitions=2)
    wait_for(
        lambda: total(first, "events") >= N // 2 and first.models()["snapshots_written"] > 0,
        timeout=RECV_TIMEOUT_S,
        what="half the stream and a snapshot",
    )
    first.stop(signal.SIGKILL)
    second = start_worker(**SETTINGS)
    assert producer.wait(RECV_TIMEOUT_S) == 0
    wait_for(lambda: total(second, "learned") == N, timeout=RECV_TIMEOUT_S, what="all learned")

    events = consume(kafka, names.topic("events"), N)
    preds = consume(kafka, names.topic("predictions"), N)
    published: dict[tuple[int, int], dict[str, Any]] = {}
    for r in preds:
        v = orjson.loads(r.value)
        mine = {"model": v["model"], **comparable(v)}
        key = (v["partition"], v["offset"])
        assert published.setdefault(key, mine) == mine, f"a repeat differs at {key}"
    promoted = [orjson.loads(r.value) for r in read_all(kafka, names.topic("metrics"))
                if b'"promotion"' in r.value]  # fmt: skip
    doc = second.models()
    by_part: dict[int, list[Any]] = defaultdict(list)
    for r in events:
        by_part[r.partition].append(r)
    seen_promotions = 0
    for p, evs in by_part.items():
        evs.sort(key=lambda r: r.offset)
        steps = [((e := orjson.loads(r.value))["x"], e["y"]) for r in evs]
        expected, promotions = offline(steps)
        assert [published[(p, r.offset)] for r in evs] == expected, f"partition {p}"
        entry = doc["partitions"][str(p)]
        assert entry["promotions"] == len(promotions)
        if promotions:
            assert entry["champion"] == promotions[-1][2]
        seen_promotions += len(promotions)
        # A promotion replayed after the kill is published again: the same record.
        mine = list(dict.fromkeys((m["offset"], m["from"], m["to"]) for m in promoted
                                  if m["partition"] == p))  # fmt: skip
        assert [(evs_offset(evs, i), a, b) for i, a, b in promotions] == mine
    assert seen_promotions > 0, "the drift makes the tree better: a promotion happens"


def evs_offset(evs: list[Any], i: int) -> int:
    return int(evs[i].offset)
