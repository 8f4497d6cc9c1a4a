"""Model lifecycle through the real broker: a manual promotion, pinning, rollbacks to a
version (with and without re-learning), each followed by a kill -9; any candidate
exported, and asked through /predict?model=; versions listed. Every check is against
an offline run of the same records with plain riverbed learners (or plain River)."""

from __future__ import annotations

import asyncio
import pickle
import signal
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from river.datasets import synth

from riverbed import models
from riverbed.config import Settings
from riverbed.learning.learner import PartitionLearner
from riverbed.learning.state import Learners
from riverbed.records import Event
from riverbed.serving.export import load_snapshot
from tests.helpers import wait_for
from tests.integration.helpers import RECV_TIMEOUT_S, Names, produce, read_all, riverbed

pytestmark = pytest.mark.integration

SETTINGS = {
    "partitions": 1,
    "model": "logreg,hoeffding",
    "snapshot_every": 400,
    "snapshot_interval": 1,
    "version_interval": 0,  # every snapshot is a version
    # Static membership: a worker started after a kill -9 (on the same port: Faust's
    # assignor insists the assignment's URL is the member's own) takes the dead one's
    # place at once, instead of waiting out its session.
    "group_instance_id": "lifecycle",
}
# Agrawal's function 2 is a staircase a tree learns and a linear model cannot: an
# unpinned partition promotes hoeffding on it.
STREAM = [(x, y) for x, y in synth.Agrawal(classification_function=2, seed=7).take(2000)]


def send(kafka: str, names: Names, first: int, last: int) -> None:
    """Events ``first..last`` (inline labels) to partition 0, in offset order."""
    produce(kafka, names.topic("events"), [
        (f"e{i}".encode(), orjson.dumps({"id": f"e{i}", "x": STREAM[i][0], "y": STREAM[i][1]}), 0)
        for i in range(first, last + 1)
    ])  # fmt: skip


def handled(worker: Any, offset: int) -> None:
    try:
        # Partition 0 is absent from /models while a rebalance moves it (a static member
        # restarted fast is in one right after it is ready).
        wait_for(lambda: worker.models()["partitions"].get("0", {}).get("last_offset", -1)
                 >= offset, timeout=RECV_TIMEOUT_S,
                 what=f"events up to offset {offset} handled")  # fmt: skip
    except BaseException:  # what the worker says of itself, for the failure report
        print(orjson.dumps(worker.models(), option=orjson.OPT_INDENT_2).decode())
        print(worker.get("/health")[1])
        raise


def operate(worker: Any, *args: str) -> list[dict[str, Any]]:
    done = riverbed(*args, "--url", f"http://127.0.0.1:{worker.port}", env=worker.env)
    assert done.returncode == 0, done.stderr
    return [orjson.loads(line) for line in done.stdout.splitlines()]


def predictions(kafka: str, names: Names, last: int) -> dict[int, dict[str, Any]]:
    """The published predictions by offset, once every event up to ``last`` has one (a
    handled event's prediction may still be on its way); a repeat must be identical."""
    out: dict[int, dict[str, Any]] = {}

    def read() -> bool:
        out.clear()
        for r in read_all(kafka, names.topic("predictions")):
            pred = orjson.loads(r.value)
            seen = {k: pred[k] for k in ("proba", "model")}
            assert out.setdefault(pred["offset"], seen) == seen, pred["offset"]
        return all(o in out for o in range(last + 1))

    wait_for(read, timeout=RECV_TIMEOUT_S, what=f"predictions up to offset {last}")
    return out


def learner_settings(kafka: str, names: Names, **extra: Any) -> Any:
    env = {"RIVERBED_BROKER": kafka, "RIVERBED_APP_ID": names.app_id,
           "RIVERBED_TOPIC_PREFIX": names.prefix,
           **{f"RIVERBED_{k.upper()}": str(v)
              for k, v in {**SETTINGS, **extra}.items()}}  # fmt: skip
    settings = Settings.from_env(env)
    return settings, Learners.from_settings(models.lineup(settings.model)[0], settings).settings


def run(learner: PartitionLearner, first: int, last: int) -> dict[int, dict[str, Any]]:
    out = {}
    for i in range(first, last + 1):
        pred = learner.process_event(Event(f"e{i}", *STREAM[i]), offset=i, ts_ms=i)
        assert pred is not None
        proba = orjson.dumps(pred["proba"], option=orjson.OPT_NON_STR_KEYS)
        out[i] = {"proba": orjson.loads(proba), "model": pred["model"]}
    return out


def post(port: int, path: str, body: Any) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=orjson.dumps(body),
                                     method="POST")  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as r:
        return orjson.loads(r.read())


def test_a_manual_promotion_survives_a_kill_9_and_any_candidate_is_exported_and_asked(
    start_worker: Any, kafka: str, names: Names, output_dir: Path
) -> None:
    worker = start_worker(**SETTINGS)
    send(kafka, names, 0, 599)
    handled(worker, 599)
    (op,) = operate(worker, "promote", "--partition", "0", "--model", "hoeffding")
    assert (op["op"], op["from"], op["to"], op["events_offset"]) == ("promote", "logreg",
                                                                    "hoeffding", 599)  # fmt: skip
    assert op["snapshot_offset"] == 599 and "@" in op["by"]
    worker.stop(signal.SIGKILL)  # right after the answer

    again = start_worker(**SETTINGS, web_port=worker.port)
    doc = again.models()["partitions"]["0"]
    assert doc["champion"] == "hoeffding" and doc["last_offset"] == 599, "in the snapshot"
    send(kafka, names, 600, 1199)
    handled(again, 1199)
    _, settings = learner_settings(kafka, names)
    offline = PartitionLearner(models.spec("logreg"), partition=0, **settings.fields())
    expected = run(offline, 0, 599)
    offline.promote("hoeffding", by="offline")
    expected |= run(offline, 600, 1199)
    assert predictions(kafka, names, 1199) == expected
    audit = [orjson.loads(r.value) for r in read_all(kafka, names.topic("metrics"))]
    ops = [a for a in audit if a.get("type") == "operation"]
    assert [(a["op"], a["events_offset"], a["by"]) for a in ops] == [("promote", 599, op["by"])]

    # The challenger (logreg now), exported from the snapshot and loaded in plain River,
    # predicts what /predict?model=logreg answers (nothing is streaming).
    wait_for(lambda: again.models()["partitions"]["0"]["snapshot_offset"] == 1199,
             timeout=RECV_TIMEOUT_S, what="a snapshot of everything")  # fmt: skip
    out = output_dir / "logreg.pkl"
    done = riverbed("export", "--partition", "0", "--model", "logreg", "--out", str(out),
                    env=again.env)  # fmt: skip
    assert done.returncode == 0 and "(challenger)" in done.stdout, done.stderr
    plain = pickle.loads(out.read_bytes())
    x = STREAM[1300][0]
    asked = post(again.port, "/predict?partition=0&model=logreg", {"x": x})
    assert asked["model"] == "logreg"
    assert asked["proba"] == {str(k).lower(): v for k, v in plain.predict_proba_one(x).items()}
    champion = post(again.port, "/predict?partition=0", {"x": x})
    assert champion["model"] == "hoeffding" and champion["proba"] != asked["proba"]
    url = f"http://127.0.0.1:{again.port}/models/0/model?model=logreg"
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers["X-Riverbed-Model"] == "logreg"
        live = pickle.loads(r.read())
    assert live.predict_proba_one(x) == plain.predict_proba_one(x)


def test_pinned_never_promotes_and_rollbacks_to_a_version_survive_a_kill_9(
    start_worker: Any, kafka: str, names: Names
) -> None:
    auto = {"promotion": "auto", "promotion_window": 300, "metric_window": 300}
    settings, learner_cfg = learner_settings(kafka, names, **auto)
    first = start_worker(**SETTINGS, **auto)
    (pin,) = operate(first, "pin", "--partition", "all")
    assert pin["op"] == "pin" and pin["partition"] == 0 and pin["changed"]
    first.stop(signal.SIGKILL)  # right after the answer: the pin is in the snapshot
    worker = start_worker(**SETTINGS, **auto, web_port=first.port)
    send(kafka, names, 0, 599)
    wait_for(lambda: worker.models()["partitions"]["0"]["snapshot_offset"] == 599,
             timeout=RECV_TIMEOUT_S, what="a snapshot (a version) at 599")  # fmt: skip
    send(kafka, names, 600, 999)
    handled(worker, 999)
    doc = worker.models()["partitions"]["0"]
    assert doc["promotions"] == 0 and doc["champion"] == "logreg" and doc["pinned"]
    unpinned = PartitionLearner(models.spec("logreg"), partition=0, **learner_cfg.fields())
    run(unpinned, 0, 999)
    assert unpinned.promotions > 0, "unpinned, the same stream promotes"

    listed = riverbed("versions", "--partition", "0", "--json", env=worker.env)
    assert listed.returncode == 0, listed.stderr
    versions = orjson.loads(listed.stdout)
    assert versions == sorted(versions, key=lambda v: -v["version"]), "newest first"
    v = next(v for v in versions if v["events_offset"] == 599)
    assert set(v["candidates"]) == {"logreg", "hoeffding"} and v["pinned"]

    (back,) = operate(worker, "rollback", "--partition", "0", "--version", str(v["version"]))
    assert back["skipped"] == {"events": [v["events_offset"] + 1, 999], "labels": [0, -1]}
    worker.stop(signal.SIGKILL)
    again = start_worker(**SETTINGS, **auto, web_port=worker.port)
    assert again.models()["partitions"]["0"]["skipped"][-1]["version"] == v["version"]
    send(kafka, names, 1000, 1199)
    handled(again, 1199)
    # Offline: the version's learner carries on from offset 999.
    old = asyncio.run(load_snapshot(settings, 0, v["version"])).learner
    old.configure(learner_cfg)
    old.last_offset = 999
    expected = run(old, 1000, 1199)
    live = predictions(kafka, names, 1199)
    assert {o: live[o] for o in range(1000, 1200)} == expected

    # With --replay the version re-learns the retained records after it instead.
    (replayed,) = operate(again, "rollback", "--partition", "0", "--version",
                          str(v["version"]), "--replay")  # fmt: skip
    assert replayed["replayed"] and replayed["skipped"] is None
    again.stop(signal.SIGKILL)
    third = start_worker(**SETTINGS, **auto, web_port=worker.port)
    send(kafka, names, 1200, 1399)
    handled(third, 1399)
    old = asyncio.run(load_snapshot(settings, 0, v["version"])).learner
    old.configure(learner_cfg)
    run(old, v["events_offset"] + 1, 1199)
    expected = run(old, 1200, 1399)
    live = predictions(kafka, names, 1399)
    assert {o: live[o] for o in range(1200, 1400)} == expected

    # Unpinned at 1399, the partition promotes again as the offline run does.
    (unpin,) = operate(third, "unpin", "--partition", "0")
    assert (unpin["op"], unpin["events_offset"], unpin["changed"]) == ("unpin", 1399, True)
    send(kafka, names, 1400, 1999)
    handled(third, 1999)
    old.unpin(by="offline")
    expected = run(old, 1400, 1999)
    assert old.promotions > 0
    live = predictions(kafka, names, 1999)
    assert {o: live[o] for o in range(1400, 2000)} == expected
    assert third.models()["partitions"]["0"]["promotions"] == old.promotions


def test_an_imported_model_predicts_as_the_file_does_from_its_offset_through_a_kill_9(
    start_worker: Any, kafka: str, names: Names, output_dir: Path
) -> None:
    from river import linear_model, preprocessing

    plain = start_worker(**{**SETTINGS, "group_instance_id": ""})  # leaves on its stop
    refused = riverbed("import", "--partition", "0", "--model", "x", "--file", __file__,
                       "--url", f"http://127.0.0.1:{plain.port}", env=plain.env)  # fmt: skip
    assert refused.returncode == 1 and "set RIVERBED_HTTP_TOKEN" in refused.stderr
    plain.stop()

    secured = {**SETTINGS, "http_token": "s3cret"}
    worker = start_worker(**secured)
    send(kafka, names, 0, 299)
    handled(worker, 299)
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    for x, y in STREAM[:300]:  # trained offline, on other data
        model.learn_one(x, y)
    path = output_dir / "offline.pkl"
    path.write_bytes(pickle.dumps(model))
    wrong = output_dir / "wrong.pkl"
    wrong.write_bytes(pickle.dumps(linear_model.LinearRegression()))
    bad = riverbed("import", "--partition", "0", "--model", "lr", "--file", str(wrong),
                   "--url", f"http://127.0.0.1:{worker.port}", env=worker.env)  # fmt: skip
    assert bad.returncode == 1 and "not a river.base.Classifier" in bad.stderr, bad.stderr
    (op,) = operate(worker, "import", "--partition", "0", "--model", "offline", "--file",
                    str(path), "--champion")  # fmt: skip
    assert (op["op"], op["model"], op["events_offset"]) == ("import", "offline", 299)
    worker.stop(signal.SIGKILL)  # right after the answer

    again = start_worker(**secured, web_port=worker.port)
    doc = again.models()["partitions"]["0"]
    assert doc["champion"] == "offline" and set(doc["candidates"]) == {
        "offline",
        "logreg",
        "hoeffding",
    }, "kept across a restart though RIVERBED_MODEL does not name it"
    send(kafka, names, 300, 599)
    handled(again, 599)
    live = predictions(kafka, names, 599)
    for i in range(300, 600):
        x, y = STREAM[i]
        proba = {str(k).lower(): v for k, v in model.predict_proba_one(x).items()}
        assert live[i] == {"proba": proba, "model": "offline"}, i
        model.learn_one(x, y)


def test_a_static_member_restarted_at_another_url_takes_its_partitions_back(
    start_worker: Any, kafka: str, names: Names
) -> None:
    # Faust's assignor asserted the leader's URL for the member was its own: a worker
    # restarted with the same group.instance.id on another port never became ready.
    worker = start_worker(**SETTINGS)
    send(kafka, names, 0, 199)
    handled(worker, 199)
    assert "created topics" in worker.log.read_text(), "start-up says what it created"
    worker.stop(signal.SIGKILL)
    moved = start_worker(**SETTINGS)  # another port, the same group.instance.id
    assert moved.port != worker.port
    assert moved.models()["assigned"] == [0]
    send(kafka, names, 200, 299)
    handled(moved, 299)
    assert "joining again so that the group learns the new URL" in moved.log.read_text()
