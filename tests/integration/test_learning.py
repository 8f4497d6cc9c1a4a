"""Issue 3 acceptance: test-then-train through the real broker equals offline River."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
import pytest
from river import datasets, evaluate, metrics

from riverbed import models
from riverbed.devtools.replay import comparable, replay
from tests.helpers import wait_for
from tests.integration.helpers import (
    RECV_TIMEOUT_S,
    Names,
    consume,
    produce,
    riverbed,
    riverbed_env,
    total,
)

N_PHISHING = 1250


def by_partition(records: list[Any]) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = defaultdict(list)
    for r in records:
        out[r.partition].append(r)
    for rs in out.values():
        rs.sort(key=lambda r: r.offset)
    return out


@pytest.mark.parametrize(
    "consumer_thread", [False, True], ids=["consumer-on-loop", "consumer-thread"]
)
def test_phishing_on_four_partitions_equals_offline_replay(
    kafka: str, names: Names, start_worker: Any, consumer_thread: bool
) -> None:
    worker = start_worker(partitions=4, consumer_thread=consumer_thread)
    env = riverbed_env(kafka, names, partitions=4)
    res = riverbed("produce", "--dataset", "phishing", env=env)
    assert res.returncode == 0, res.stderr
    assert f"sent {N_PHISHING} events" in res.stdout

    preds = consume(kafka, names.topic("predictions"), N_PHISHING)
    events = consume(kafka, names.topic("events"), N_PHISHING)
    assert len(preds) == N_PHISHING
    ev_parts, pred_parts = by_partition(events), by_partition(preds)
    assert len(ev_parts) == 4, "ids hash over all four partitions"
    for p, evs in ev_parts.items():
        steps = []
        for r in evs:
            e = orjson.loads(r.value)
            steps.append(("event", e["x"], e["y"]))
        expected, metric = replay("logreg", steps)
        got = [orjson.loads(r.value) for r in pred_parts[p]]
        assert [(g["partition"], g["offset"]) for g in got] == [(p, r.offset) for r in evs]
        assert [g["id"] for g in got] == [orjson.loads(r.value)["id"] for r in evs]
        assert [comparable(g) for g in got] == expected, f"partition {p} differs from its replay"
        assert all(g["model"] == "logreg" and "y" in g and "ts" in g for g in got)
        # the Kafka timestamp is when the prediction was made, as its "ts" says
        assert [r.timestamp for r in pred_parts[p]] == [g["ts"] for g in got]
        # the worker's metric for this partition is the replay's metric
        wait_for(
            lambda p=p, n=len(evs): worker.models()["partitions"][str(p)]["events"] == n,  # noqa: B008
            timeout=RECV_TIMEOUT_S,
            what="the worker's counters",
        )
        assert worker.models()["partitions"][str(p)]["metric"]["value"] == metric.get()
    assert total(worker, "learned") == N_PHISHING
    # the consumer ran where the setting put it (mode logs each service it starts)
    started = "BatchConsumerThread" if consumer_thread else "LoopConsumerThread"
    assert f"{started}]: Starting..." in worker.log.read_text(), worker.tail_log()

    tail = riverbed("tail", "predictions", "--limit", "3", "--idle-timeout", "20", env=env)
    assert tail.returncode == 0, tail.stderr
    lines = [ln for ln in tail.stdout.splitlines() if ln.startswith("p")]
    assert len(lines) == 3 and all('"y_pred"' in ln for ln in lines)


def test_phishing_on_one_partition_matches_progressive_val_score(
    names: Names, kafka: str, start_worker: Any
) -> None:
    worker = start_worker(partitions=1)
    res = riverbed(
        "produce",
        "--dataset",
        "phishing",
        "--key",
        "none",
        env=riverbed_env(kafka, names, partitions=1),
    )
    assert res.returncode == 0, res.stderr
    wait_for(
        lambda: worker.models()["partitions"].get("0", {}).get("events") == N_PHISHING,
        timeout=RECV_TIMEOUT_S,
        what="1250 events predicted",
    )
    offline = evaluate.progressive_val_score(
        datasets.Phishing(), models.build("logreg"), metrics.Accuracy()
    )
    value = worker.models()["partitions"]["0"]["metric"]["value"]
    assert value == offline.get()
    assert f"{value:.2%}" == "89.28%"


def test_delayed_labels_are_learned_exactly_once(
    names: Names, kafka: str, start_worker: Any
) -> None:
    worker = start_worker(partitions=4)
    res = riverbed(
        "produce",
        "--dataset",
        "phishing",
        "--label-delay",
        "25",
        env=riverbed_env(kafka, names, partitions=4),
    )
    assert res.returncode == 0, res.stderr
    assert f"sent {N_PHISHING} events and {N_PHISHING} labels" in res.stdout
    wait_for(
        lambda: total(worker, "labels", "joined") == N_PHISHING,
        timeout=RECV_TIMEOUT_S,
        what="every label joined",
    )
    m = worker.models()
    assert total(worker, "learned") == N_PHISHING
    assert total(worker, "labels", "late") == 0 and total(worker, "labels", "orphan") == 0
    assert total(worker, "pending") == 0

    # The metric is scored with the prediction made before the label was known: the
    # y_pred published for each id, against the label sent later.
    preds = [orjson.loads(r.value) for r in consume(kafka, names.topic("predictions"), N_PHISHING)]
    labels = {
        orjson.loads(r.value)["id"]: orjson.loads(r.value)["y"]
        for r in consume(kafka, names.topic("labels"), N_PHISHING)
    }
    assert all("y" not in p for p in preds)
    per_partition: dict[int, metrics.Accuracy] = defaultdict(metrics.Accuracy)
    for p in preds:
        per_partition[p["partition"]].update(labels[p["id"]], p["y_pred"])
    for part, acc in per_partition.items():
        assert m["partitions"][str(part)]["metric"]["value"] == acc.get()


def test_delayed_labels_equal_a_replay_that_learns_at_label_time(
    names: Names, kafka: str, start_worker: Any
) -> None:
    """Phases make the interleaving of events and labels known, so the replay is exact."""
    worker = start_worker(partitions=2)
    stream = list(datasets.Phishing())[:600]
    phase = 150
    sent = 0
    for start in range(0, len(stream), phase):
        chunk = list(enumerate(stream[start : start + phase], start))
        produce(
            kafka,
            names.topic("events"),
            [
                (f"e{i}".encode(), orjson.dumps({"id": f"e{i}", "x": x}), None)
                for i, (x, _) in chunk
            ],
        )
        sent += len(chunk)
        wait_for(
            lambda sent=sent: total(worker, "events") == sent,
            timeout=RECV_TIMEOUT_S,
            what=f"{sent} events predicted",
        )
        produce(
            kafka,
            names.topic("labels"),
            [
                (f"e{i}".encode(), orjson.dumps({"id": f"e{i}", "y": y}), None)
                for i, (_, y) in chunk
            ],
        )
        wait_for(
            lambda sent=sent: total(worker, "learned") == sent,
            timeout=RECV_TIMEOUT_S,
            what=f"{sent} labels learned",
        )

    events = by_partition(consume(kafka, names.topic("events"), len(stream)))
    labels = by_partition(consume(kafka, names.topic("labels"), len(stream)))
    preds = by_partition(consume(kafka, names.topic("predictions"), len(stream)))
    m = worker.models()
    for p in events:
        # Rebuild this partition's order: phase by phase, its events then its labels.
        steps: list[tuple[str, Any, Any]] = []
        index: dict[str, int] = {}
        evs, lbs = list(events[p]), list(labels[p])
        for start in range(0, len(stream), phase):
            ids = {f"e{i}" for i in range(start, start + phase)}
            for r in [r for r in evs if orjson.loads(r.value)["id"] in ids]:
                e = orjson.loads(r.value)
                index[e["id"]] = len(index)
                steps.append(("event", e["x"], None))
            for r in [r for r in lbs if orjson.loads(r.value)["id"] in ids]:
                lb = orjson.loads(r.value)
                steps.append(("label", index[lb["id"]], lb["y"]))
        expected, metric = replay("logreg", steps)
        assert [comparable(orjson.loads(r.value)) for r in preds[p]] == expected
        assert m["partitions"][str(p)]["metric"]["value"] == metric.get()
    assert total(worker, "labels", "joined") == len(stream)
