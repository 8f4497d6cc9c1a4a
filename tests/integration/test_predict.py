"""POST /predict through the real broker: exact, routed to the owner, side-effect free."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
import pytest
from river import datasets

from riverbed import models
from riverbed.serving.predict import key_partition
from tests.helpers import wait_for
from tests.integration.helpers import (
    RECV_TIMEOUT_S,
    Names,
    Worker,
    consume,
    free_port,
    post,
    riverbed,
    riverbed_env,
    total,
)

pytestmark = pytest.mark.integration

N = 400
PARTITIONS = 4
PROBES = [x for x, _ in list(datasets.Phishing())[-20:]]  # features no event had


def learn_phishing(kafka: str, names: Names, worker: Worker, *more: Worker) -> None:
    sent = riverbed("produce", "--dataset", "phishing", "--limit", str(N),
                    env=riverbed_env(kafka, names, partitions=PARTITIONS))  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    wait_for(
        lambda: sum(total(w, "events") for w in (worker, *more)) == N,
        timeout=RECV_TIMEOUT_S,
        what=f"{N} events handled",
    )


def test_predict_equals_an_offline_replay_at_the_offset_it_names(
    kafka: str, names: Names, start_worker: Any
) -> None:
    worker = start_worker(partitions=PARTITIONS)
    learn_phishing(kafka, names, worker)
    before = worker.models()

    by_partition: dict[int, list[Any]] = defaultdict(list)
    for r in consume(kafka, names.topic("events"), N):
        by_partition[r.partition].append(r)
    for p, records in sorted(by_partition.items()):
        status, answers, _ = post(worker, f"?partition={p}", [{"x": x} for x in PROBES])
        assert status == 200, answers
        offset = answers[0]["offset"]
        assert offset == before["partitions"][str(p)]["last_offset"] == records[-1].offset
        # The offline replay of the partition up to that offset, in River alone.
        model = models.build("logreg")
        for r in records:
            e = orjson.loads(r.value)
            model.predict_proba_one(e["x"])
            model.learn_one(e["x"], e["y"])
        for x, got in zip(PROBES, answers, strict=True):
            proba = {str(k).lower(): v for k, v in model.predict_proba_one(x).items()}
            assert got["proba"] == proba and got["partition"] == p and got["model"] == "logreg"
            assert got["y_pred"] == (max(proba, key=proba.__getitem__) == "true")

    # A key is answered by the partition a producer writes it to; one record -> one object.
    status, one, _ = post(worker, "?key=user-42", {"id": "q1", "x": PROBES[0]})
    assert status == 200 and one["partition"] == key_partition("user-42", PARTITIONS)
    assert one["id"] == "q1"
    # Nothing learned, counted or published.
    after = worker.models()
    for p, entry in before["partitions"].items():
        assert {k: after["partitions"][p][k] for k in ("events", "learned", "features")} == {
            k: entry[k] for k in ("events", "learned", "features")
        }
    assert after["predict"]["requests"] == PARTITIONS + 1
    assert len(consume(kafka, names.topic("predictions"), N)) == N


def test_any_worker_answers_for_any_partition(kafka: str, names: Names, start_worker: Any) -> None:
    a = start_worker(partitions=PARTITIONS)
    # b advertises itself under another host name than a's (127.0.0.1): reachable, but
    # not a host a may send a request's token to.
    port_b = free_port()
    b = start_worker(partitions=PARTITIONS, web_port=port_b,
                     web_advertised_url=f"http://localhost:{port_b}")  # fmt: skip
    wait_for(
        lambda: (
            len(a.models()["assigned"]) + len(b.models()["assigned"]) == PARTITIONS
            and a.models()["assigned"]
            and b.models()["assigned"]
        ),
        timeout=RECV_TIMEOUT_S,
        what="the two workers to share the partitions",
    )
    learn_phishing(kafka, names, a, b)
    owned = {p: w for w in (a, b) for p in w.models()["assigned"]}
    for i in range(40):
        key = f"customer-{i}"
        status, got, _ = post(a, f"?key={key}", {"x": PROBES[i % len(PROBES)]})
        assert status == 200, got
        assert got["partition"] == key_partition(key, PARTITIONS)
        # The owner's own answer is the same.
        status, direct, _ = post(owned[got["partition"]], f"?key={key}", {"x": PROBES[i % 20]})
        assert direct == got
    forwarded = a.models()["predict"]["forwarded"]
    assert forwarded > 0, "some keys live on the other worker"
    assert b.models()["predict"]["requests"] >= forwarded
    # A token goes only where RIVERBED_PEER_URLS (or the same host) allows.
    on_b = next(p for p, w in owned.items() if w is b)
    status, got, _ = post(a, f"?partition={on_b}", {"x": PROBES[0]}, token="t")
    assert status == 502 and "RIVERBED_PEER_URLS" in got["error"], got
    assert post(b, f"?partition={on_b}", {"x": PROBES[0]}, token="t")[0] == 200


def test_the_token_sizes_and_bad_requests_are_refused_clearly(
    kafka: str, names: Names, start_worker: Any
) -> None:
    worker = start_worker(partitions=PARTITIONS, http_token="s3cret-token",
                          predict_max_bytes=8000, predict_max_records=4, max_depth=4)  # fmt: skip
    body = {"x": PROBES[0]}
    assert post(worker, "?partition=0", body)[0] == 401
    status, got, headers = post(worker, "?partition=0", body, token="wrong")
    assert status == 401 and "RIVERBED_HTTP_TOKEN" in got["error"]
    assert headers.get("WWW-Authenticate") == "Bearer"
    assert post(worker, "?partition=0", body, token="s3cret-token")[0] == 200
    cases = [
        ("", body, None, 400, "?key=K"),
        ("?partition=9", body, None, 400, "partitions 0..3"),
        ("?partition=%C2%B2", body, None, 400, "partition"),  # a superscript two: was a 500
        ("?partition=0", None, b'{"x": ', 400, "not valid JSON"),
        ("?partition=0", {"x": {"f": [1]}}, None, 400, '"x.f" must be'),
        ("?partition=0", [body] * 5, None, 413, "RIVERBED_PREDICT_MAX_RECORDS=4"),
        ("?partition=0", {"x": {"f": "z" * 9000}}, None, 413, "over 8000 bytes"),
        ("?partition=0", {"x": {"a": {"a": {"a": {"a": {"a": 1}}}}}}, None, 400, "nested deeper"),
    ]
    for query, payload, raw, code, reason in cases:
        status, got, _ = post(worker, query, payload, token="s3cret-token", raw=raw)
        assert (status, reason in got["error"]) == (code, True), (query, status, got)
