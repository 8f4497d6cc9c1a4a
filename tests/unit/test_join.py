"""The join of a partition's events and labels (app/kafka/join.py): one order that
depends only on the records, whatever the fetches were."""

from __future__ import annotations

import random
from collections import namedtuple
from typing import Any

from riverbed.kafka.join import UNKNOWN_LAG_LIMIT_S, Joiner, merged

R = namedtuple("R", "offset timestamp")
TP = namedtuple("TP", "topic partition")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _stream(seed: int, n: int) -> tuple[list[R], list[R]]:
    rng = random.Random(seed)
    events = [R(i, i * 10 + rng.randrange(-3, 4)) for i in range(n)]  # not quite monotone
    stamps = sorted(rng.randrange(0, n * 10 + 500) for _ in range(n // 2))
    return events, [R(i, ts) for i, ts in enumerate(stamps)]


def _order(runs: list[tuple[Any, list[R]]]) -> list[tuple[str, int]]:
    return [(tp.topic, r.offset) for tp, run in runs for r in run]


def test_any_fetch_pattern_gives_the_order_of_the_merge() -> None:
    events, labels = _stream(3, 400)
    want = [("lb" if is_label else "ev", r.offset) for is_label, r in merged(events, labels)]
    for seed in range(20):
        rng = random.Random(seed)
        ends = {"ev": [len(events), 0], "lb": [len(labels), 0]}  # high watermark, position
        joiner = Joiner("ev", "lb", offsets=lambda t, _p, ends=ends: tuple(ends[t]))
        got: list[tuple[str, int]] = []
        pos = {"ev": 0, "lb": 0}
        source = {"ev": events, "lb": labels}
        while pos["ev"] < len(events) or pos["lb"] < len(labels):
            topic = rng.choice([t for t in pos if pos[t] < len(source[t])])
            size = rng.randrange(1, 60)
            chunk = source[topic][pos[topic] : pos[topic] + size]
            pos[topic] += len(chunk)
            ends[topic][1] = pos[topic]
            joiner.add(TP(topic, 0), chunk)
            got += _order(list(joiner.ready()))
        assert got == want, seed
        assert not joiner.holding()


def test_a_side_waits_while_the_other_is_on_its_way_or_unknown() -> None:
    clock = Clock()
    state: dict[str, Any] = {"lb": None, "transit": False}
    joiner = Joiner(
        "ev", "lb", offsets=lambda t, _p: state[t] if t == "lb" else (9, 9),
        in_transit=lambda t, _p: state["transit"], clock=clock,
    )  # fmt: skip
    joiner.add(TP("ev", 0), [R(0, 10)])
    assert list(joiner.ready()) == []  # the labels partition's end is not known yet
    state["lb"] = (5, 5)
    state["transit"] = True  # handed out by the consumer, not here yet
    assert list(joiner.ready()) == []
    state["transit"] = False
    assert _order(list(joiner.ready())) == [("ev", 0)]


def test_records_handed_out_but_not_added_count_as_on_their_way() -> None:
    ends = {"ev": (2, 2), "lb": (3, 1)}
    joiner = Joiner("ev", "lb", offsets=lambda t, _p: ends[t])
    joiner.add(TP("lb", 0), [R(0, 5)])
    joiner.add(TP("ev", 0), [R(0, 1), R(1, 20)])
    assert _order(list(joiner.ready())) == [("ev", 0), ("lb", 0)]
    ends["lb"] = (3, 3)  # the consumer handed out labels 1 and 2: not added yet
    assert list(joiner.ready()) == []
    joiner.add(TP("lb", 0), [R(1, 30), R(2, 40)])
    assert _order(list(joiner.ready())) == [("ev", 1), ("lb", 1), ("lb", 2)]


def test_join_idle_waits_for_a_caught_up_side_then_goes_on() -> None:
    clock = Clock()
    joiner = Joiner("ev", "lb", offsets=lambda _t, _p: (0, 0), idle_s=2.0, clock=clock)
    joiner.add(TP("ev", 0), [R(0, 10)])
    assert list(joiner.ready()) == []
    clock.now = 1.9
    assert list(joiner.ready()) == []
    clock.now = 2.0
    assert _order(list(joiner.ready())) == [("ev", 0)]
    assert joiner.describe() == {"held": 0, "enforced": 0}


def test_a_partition_that_never_answers_is_given_up_after_the_limit_and_counted() -> None:
    clock = Clock()
    joiner = Joiner("ev", "lb", offsets=lambda _t, _p: None, clock=clock)
    joiner.add(TP("ev", 0), [R(0, 10)])
    assert list(joiner.ready()) == []
    clock.now = UNKNOWN_LAG_LIMIT_S
    assert _order(list(joiner.ready())) == [("ev", 0)]
    assert joiner.describe()["enforced"] == 1


def test_a_seek_during_a_hand_out_stops_it() -> None:
    joiner = Joiner("ev", "lb", offsets=lambda _t, _p: (0, 0))
    joiner.add(TP("ev", 0), [R(0, 1), R(1, 3)])
    joiner.add(TP("lb", 0), [R(0, 2)])
    runs = joiner.ready()
    assert _order([next(runs)]) == [("ev", 0)]
    joiner.clear()  # a rebalance or seek: the rest is fetched again
    assert list(runs) == []
    assert not joiner.holding()
