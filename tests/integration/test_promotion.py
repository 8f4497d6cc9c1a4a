"""Auto promotion through the real broker, with a kill -9 in the middle: the champion
changes where an offline replay of the same windows says it should, every candidate's
metric equals its offline run, the published predictions are the champion's."""

from __future__ import annotations

import math
import signal
from collections import Counter, defaultdict, deque
from typing import Any

import orjson
import pytest

from riverbed import models
from riverbed.devtools.replay import comparable
from tests.helpers import wait_for
from tests.integration.helpers import RECV_TIMEOUT_S, Names, consume, read_all, total

pytestmark = pytest.mark.integration

N = 8000
WINDOW = 400
LOOK_EVERY = WINDOW // 50  # the duel is looked at every 1/50 of its window
MIN_POSITIVES = 30  # RIVERBED_PROMOTION_MIN_POSITIVES' default
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
    """Both candidates in plain River, the promotion rule written out independently
    (McNemar's test on the window's paired 0/1 errors, exact below 25 discordant
    pairs, looked at every 1/50 of the window once a window has passed since the last
    promotion): returns each event's published prediction (with the champion's name)
    and the promotions (index, from, to)."""
    cands = {n: models.build(n) for n in ("logreg", "hoeffding")}
    champion, challenger = "logreg", "hoeffding"
    pairs: deque[tuple[Any, float, float]] = deque(maxlen=WINDOW)
    since = added = 0
    out, promotions = [], []
    for i, (x, y) in enumerate(steps):
        preds = {}
        for n, m in cands.items():
            proba = m.predict_proba_one(x)
            preds[n] = (max(proba, key=proba.get) if proba else None, proba)
        y_pred, proba = preds[champion]
        out.append({"model": champion, **comparable({"y_pred": _json(y_pred),
                                                      "proba": _json(proba)})})  # fmt: skip
        for m in cands.values():
            m.learn_one(x, y)
        if preds[champion][0] is None:
            continue
        since += 1
        if preds[challenger][0] is None:
            continue
        pairs.append((y, float(preds[champion][0] != y), float(preds[challenger][0] != y)))
        added += 1
        if since < WINDOW or added % LOOK_EVERY or len(pairs) < WINDOW:
            continue
        classes = Counter(y for y, _a, _c in pairs)
        if len(classes) < 2 or min(classes.values()) < MIN_POSITIVES:
            continue
        b = sum(1 for _y, a, c in pairs if a < c)  # champion right, challenger wrong
        c_ = sum(1 for _y, a, c in pairs if a > c)
        if b + c_ >= 25:
            p_value = math.erfc(math.sqrt(max(abs(b - c_) - 1, 0) ** 2 / (b + c_) / 2))
        else:
            tail = sum(math.comb(b + c_, k) for k in range(min(b, c_) + 1))
            p_value = min(1.0, 2 * tail / 2 ** (b + c_))
        if c_ > b and p_value < 0.05:
            promotions.append((i, champion, challenger))
            champion, challenger = challenger, champion
            pairs.clear()
            since = added = 0
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
    published: dict[tuple[int, int], dict[str, Any]] = {}

    def every_event_predicted() -> bool:
        # The whole topic, again until each event has one: a kill -9 repeats some
        # predictions, so N records are not yet N events' predictions.
        published.clear()
        for r in read_all(kafka, names.topic("predictions")):
            v = orjson.loads(r.value)
            mine = {"model": v["model"], **comparable(v)}
            key = (v["partition"], v["offset"])
            assert published.setdefault(key, mine) == mine, f"a repeat differs at {key}"
        return len(published) == N

    wait_for(every_event_predicted, timeout=RECV_TIMEOUT_S, what="a prediction of every event")
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
