"""Issue 13: the faults that broke exactly-once learning and availability, through the broker.

Each test reproduces one reported case with real worker processes, the real broker
and a second client, and checks what riverbed now promises (docs/durability.md).
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

from riverbed.devtools.replay import comparable, replay
from riverbed.ports import ephemeral_ports, reserved_ports
from tests.helpers import wait_for
from tests.integration.helpers import (
    RECV_TIMEOUT_S,
    Names,
    committed,
    consume,
    produce,
    read_all,
    riverbed,
    riverbed_env,
    total,
)
from tests.integration.test_recovery import check_exactly_once

STALL_SESSION_TIMEOUT_S = 6.0  # the local broker's group.min.session.timeout.ms
RESTART_TIMEOUT_S = 120.0


def _headers(record: Any) -> dict[str, bytes]:
    return dict(record.headers)


def _event(i: int, x: dict[str, Any] | None = None, y: Any = True) -> bytes:
    return orjson.dumps({"id": f"e{i}", "x": x or {"a": float(i % 7), "b": i % 3}, "y": y})


def _learn(kafka: str, names: Names, worker: Any, start: int, n: int) -> None:
    """Produce ``n`` labelled events to partition 0 and wait until ``worker`` learned them."""
    produce(
        kafka,
        names.topic("events"),
        [(f"e{i}".encode(), _event(i, y=i % 2 == 0), 0) for i in range(start, start + n)],
    )
    wait_for(
        lambda: total(worker, "learned") >= start + n,
        timeout=RECV_TIMEOUT_S,
        what=f"{start + n} learned",
    )


def _manifests(kafka: str, topic: str) -> list[Any]:
    records = consume(kafka, topic, 1)
    return [r for r in records if _headers(r).get("riverbed.snapshot") == b"manifest"]


# -- 1. a stall longer than the session timeout -------------------------------------------
STALL_ATTEMPTS = 5  # the assignor hands a returning member its old partitions 1 time in ~2


def _stall_until_taken_over(stalled: Any, other: Any, owned: set[int]) -> None:
    """SIGSTOP ``stalled`` until ``other`` owns its partitions and learned past them."""
    stalled.proc.send_signal(signal.SIGSTOP)  # a GC or VM pause, longer than the session
    try:
        wait_for(
            lambda: other.models()["assigned"] == [0, 1, 2, 3],
            timeout=RESTART_TIMEOUT_S,
            what="the other worker taking the stalled worker's partitions",
        )
        start = {p: other.models()["partitions"][str(p)]["events"] for p in owned}
        wait_for(
            lambda: all(
                other.models()["partitions"][str(p)]["events"] > start[p] + 100 for p in owned
            ),
            timeout=RECV_TIMEOUT_S,
            what="the other worker learning past the stalled worker",
        )
    finally:
        stalled.proc.send_signal(signal.SIGCONT)


def test_a_worker_stalled_past_its_session_restores_instead_of_keeping_a_stale_learner(
    kafka: str, names: Names, start_worker: Any, start_producer: Any
) -> None:
    n = 40_000
    settings = {
        "partitions": 4,
        "snapshot_every": 1000,
        "snapshot_interval": 1,
        "session_timeout": STALL_SESSION_TIMEOUT_S,
    }
    first = start_worker(**settings)
    producer = start_producer("--dataset", "agrawal", "--limit", str(n), "--id-prefix", "s",
        "--rate", "800", partitions=4,
    )  # fmt: skip
    wait_for(lambda: total(first, "events") >= 1500, timeout=RECV_TIMEOUT_S, what="1500 events")
    second = start_worker(**settings)

    def shared() -> bool:
        return (
            _ready(first)
            and len(first.models()["assigned"]) == 2
            and len(second.models()["assigned"]) == 2
        )

    wait_for(shared, timeout=RESTART_TIMEOUT_S, what="the partitions shared 2 + 2")
    got_back: set[int] = set()
    for _ in range(STALL_ATTEMPTS):
        owned = set(first.models()["assigned"])
        _stall_until_taken_over(first, second, owned)
        wait_for(shared, timeout=RESTART_TIMEOUT_S, what="the stalled worker back in the group")
        got_back = owned & set(first.models()["assigned"])
        if got_back:  # it was given back partitions the other worker learned further
            break
    assert got_back, f"the stalled worker never got an old partition back in {STALL_ATTEMPTS}"
    # The rest of the stream adds nothing to the case (it took ~35 s): stop the producer
    # and check what it wrote.
    producer.terminate()
    producer.wait(RECV_TIMEOUT_S)
    written = len(read_all(kafka, names.topic("events")))
    assert 1500 < written <= n
    check_exactly_once(kafka, names, [first, second], n=written)
    assert first.models()["restores"]["stale"] >= 1
    assert "is not current" in first.log.read_text()


# -- 2. dead letters of the largest records ------------------------------------------------
def test_the_largest_records_are_dead_lettered_whole_and_the_worker_goes_on(
    kafka: str, names: Names, start_worker: Any
) -> None:
    worker = start_worker(partitions=1)
    big_value = b"{" + b"x" * 999_700  # invalid JSON, under RIVERBED_MAX_RECORD_BYTES
    produce(kafka, names.topic("events"), [(b"big", big_value, 0)])
    produce(
        kafka,
        names.topic("events"),
        [(b"hdr", b'{"id":"h","x":{}}', 0)],
        headers=[("blob", b"h" * 999_800)],
    )
    valid = _event(2)  # valid, but its headers make the record too large to take
    produce(kafka, names.topic("events"), [(b"hv", valid, 0)], headers=[("blob", b"v" * 1_000_100)])
    produce(kafka, names.topic("events"), [(b"ok", _event(3), 0)])
    dlq = consume(kafka, names.topic("dlq"), 3)
    by_offset = {int(_headers(r)["riverbed.source.offset"]): r for r in dlq}
    assert by_offset[0].value == big_value
    assert _headers(by_offset[0])["riverbed.stage"] == b"deserialize"
    assert _headers(by_offset[1])["blob"] == b"h" * 999_800, "original header kept whole"
    assert _headers(by_offset[2])["blob"] == b"v" * 1_000_100 and by_offset[2].value == valid
    assert b"value and headers are" in _headers(by_offset[2])["riverbed.error"]
    wait_for(lambda: total(worker, "events") == 1, timeout=RECV_TIMEOUT_S, what="the good event")
    assert worker.alive()


# -- 3. one finite number must not poison a model -----------------------------------------
def test_a_poisoning_record_is_a_learn_dead_letter_and_the_model_is_as_if_never_given_it(
    kafka: str, names: Names, start_worker: Any
) -> None:
    from river import datasets

    worker = start_worker(partitions=1)
    rows = list(itertools.islice(datasets.Phishing(), 600))
    # a huge float on a known feature, then a huge negative one on another (a string no
    # longer poisons: logreg one-hot encodes it)
    poison_at = {300: ("long_url", 1e308), 301: ("popup_window", -1e308)}
    values = []
    for i, (x, y) in enumerate(rows):
        sent = {**x, poison_at[i][0]: poison_at[i][1]} if i in poison_at else x
        values.append(orjson.dumps({"id": f"p{i}", "x": sent, "y": y}))
    produce(kafka, names.topic("events"), [(f"p{i}".encode(), v, 0) for i, v in enumerate(values)])
    dlq = consume(kafka, names.topic("dlq"), 2)
    assert sorted(int(_headers(r)["riverbed.source.offset"]) for r in dlq) == [300, 301]
    assert {_headers(r)["riverbed.stage"] for r in dlq} == {b"learn"}
    preds = {orjson.loads(r.value)["offset"]: orjson.loads(r.value)
             for r in consume(kafka, names.topic("predictions"), 598)}  # fmt: skip
    steps = [("event", x, y) for i, (x, y) in enumerate(rows) if i not in poison_at]
    expected, _ = replay("logreg", steps)
    got = [comparable(preds[i]) for i in range(len(rows)) if i not in poison_at]
    assert got == expected, "predictions equal a replay that never saw the poison"
    part = worker.models()["partitions"]["0"]
    assert part["learned"] == 598 and part["rollbacks"] == 2


# -- 4. a refused snapshot never skips learning ---------------------------------------------
def test_a_refused_newest_snapshot_falls_back_and_reads_the_records_after_the_older(
    kafka: str, names: Names, start_worker: Any
) -> None:
    one = {"partitions": 1, "snapshot_every": 100_000, "snapshot_interval": 600}
    first = start_worker(**one)
    _learn(kafka, names, first, 0, 3000)
    first.stop(signal.SIGTERM)  # snapshot at 2999, commit 3000
    second = start_worker(**one)
    _learn(kafka, names, second, 3000, 1000)
    second.stop(signal.SIGTERM)  # snapshot at 3999, commit 4000
    assert committed(kafka, names.app_id, names.topic("events")) == {0: 4000}
    newest = _manifests(kafka, names.snapshots)[-1]
    generation = orjson.loads(newest.value)["generation"].encode()
    # a forged chunk of the newest generation: its digest no longer matches
    forged_headers = [("riverbed.snapshot", b"chunk"), ("riverbed.snapshot.generation", generation)]
    produce(kafka, names.snapshots, [(b"0/0", b"forged", 0)], headers=forged_headers)
    third = start_worker(**one)
    m = third.models()
    assert m["snapshots_refused"] == 1 and m["partitions"]["0"]["restored_offset"] == 2999
    wait_for(lambda: total(third, "learned") == 4000, timeout=RECV_TIMEOUT_S, what="4000 learned")
    assert total(third, "offset_gaps") == 0 and m["learning_gaps"] == []
    assert "nothing is skipped" in third.log.read_text()


def test_records_deleted_before_a_snapshot_covered_them_are_a_loud_learning_gap(
    kafka: str, names: Names, start_worker: Any
) -> None:
    one = {"partitions": 1, "snapshot_every": 100_000, "snapshot_interval": 600}
    first = start_worker(**one)
    _learn(kafka, names, first, 0, 1000)
    first.stop(signal.SIGTERM)  # snapshot at 999
    produce(kafka, names.topic("events"),
            [(f"e{i}".encode(), _event(i), 0) for i in range(1000, 1500)])  # fmt: skip

    async def delete_before(offset: int) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        try:
            tp = TopicPartition(names.topic("events"), 0)
            await admin.delete_records({tp: RecordsToDelete(before_offset=offset)})
        finally:
            await admin.close()

    asyncio.run(delete_before(1200))  # retention took 1000..1199 before any snapshot did
    second = start_worker(**one)
    status, ready = second.get("/ready")
    assert status == 200
    assert ready["learning_gaps"] == [
        {"topic": names.topic("events"), "partition": 0, "from": 1000, "to": 1199, "records": 200}
    ]
    wait_for(lambda: total(second, "learned") == 1300, timeout=RECV_TIMEOUT_S, what="1300 learned")
    assert "LEARNING GAP" in second.log.read_text()
    assert "riverbed_learning_gaps_total 1.0" in second.get("/metrics")[1]


def test_a_worker_whose_key_verifies_no_snapshot_stops_naming_the_setting(
    kafka: str, names: Names, start_worker: Any
) -> None:
    one = {"partitions": 1, "snapshot_key": "the-teams-secret"}
    first = start_worker(**one)
    _learn(kafka, names, first, 0, 500)
    first.stop(signal.SIGTERM)
    wrong = start_worker(wait=False, **{**one, "snapshot_key": "a-typo"})
    wait_for(lambda: not wrong.alive(), timeout=RESTART_TIMEOUT_S, what="the worker to stop")
    assert wrong.proc.returncode != 0
    assert "RIVERBED_SNAPSHOT_KEY verifies none of the 1 snapshots" in wrong.log.read_text()
    # nothing was written with the wrong key
    assert len(_manifests(kafka, names.snapshots)) == 1


# -- 5. two apps on one prefix ----------------------------------------------------------------
def test_two_apps_on_one_prefix_keep_their_own_snapshots(
    kafka: str, names: Names, start_worker: Any
) -> None:
    one = {"partitions": 1}
    first = start_worker(**one)
    other = Names(uid=names.uid + "b")
    second = start_worker(app_id=other.app_id, **one)  # same prefix, another app id
    _learn(kafka, names, first, 0, 800)
    wait_for(lambda: total(second, "learned") == 800, timeout=RECV_TIMEOUT_S, what="800 (app 2)")
    first.stop(signal.SIGTERM)
    second.stop(signal.SIGTERM)
    ours = f"{names.prefix}snapshots.{other.app_id}"
    assert {orjson.loads(r.value)["events_offset"] for r in _manifests(kafka, names.snapshots)} == {
        799
    }
    assert len(_manifests(kafka, ours)) >= 1
    again = start_worker(**one)
    assert again.models()["snapshots_refused"] == 0
    assert again.models()["partitions"]["0"]["restored_offset"] == 799


def test_snapshots_of_the_shared_topic_of_earlier_versions_migrate_or_are_refused(
    kafka: str, names: Names, start_worker: Any
) -> None:
    one = {"partitions": 1}
    first = start_worker(**one)
    _learn(kafka, names, first, 0, 700)
    first.stop(signal.SIGTERM)
    # What an earlier version left: the same records in <prefix>snapshots, none in ours.
    mine = consume(kafka, names.snapshots, 2)
    legacy = names.topic("snapshots")

    async def move() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(legacy, 1, 1)])
            await admin.delete_topics([names.snapshots])
        finally:
            await admin.close()

    asyncio.run(move())
    for r in mine:
        produce(kafka, legacy, [(r.key, r.value, 0)], headers=list(r.headers))
    again = start_worker(**one)
    m = again.models()
    assert m["restores"]["migrated"] == 1 and m["partitions"]["0"]["restored_offset"] == 699
    again.stop(signal.SIGTERM)
    assert "migrated the snapshot" in again.log.read_text()
    # another app of the prefix does not take it: refused, loudly, and learned afresh
    stranger = Names(uid=names.uid + "c")
    other = start_worker(app_id=stranger.app_id, **one)
    assert other.models()["restores"]["migrated"] == 0
    assert "REFUSED the snapshots of the shared topic" in other.log.read_text()
    wait_for(lambda: total(other, "learned") == 700, timeout=RECV_TIMEOUT_S, what="700 learned")


# -- 6. settings are never read from a snapshot ---------------------------------------------
def test_restored_partitions_take_the_workers_drift_settings(
    kafka: str, names: Names, start_worker: Any
) -> None:
    first = start_worker(partitions=1, drift_detector="adwin")
    _learn(kafka, names, first, 0, 500)
    first.stop(signal.SIGTERM)
    second = start_worker(partitions=1, drift_detector="page_hinkley", drift_action="reset")
    part = second.models()["partitions"]["0"]
    assert part["restored_offset"] == 499 and part["drift_detector"] == "page_hinkley"


# -- 8. bounds ------------------------------------------------------------------------------
def test_pending_bytes_and_feature_names_are_bounded_and_exported(
    kafka: str, names: Names, start_worker: Any
) -> None:
    worker = start_worker(partitions=1, pending_max_bytes=50_000, max_features=30,
                          name_cache_max_bytes=10_000)  # fmt: skip
    padding = "p" * 9_000
    records = []
    for i in range(40):
        # Each record's keys are new nested prefixes (x.r<i>_<j>: 120 in all, ~21 KB
        # of names): the name cache starts afresh instead of growing.
        x: dict[str, Any] = {f"r{i}_{j}": {"v": 1.0} for j in range(3)}
        x["note"] = padding  # ~9 KB a record, no label: each waits
        records.append((f"e{i}".encode(), orjson.dumps({"id": f"e{i}", "x": x}), 0))
    produce(kafka, names.topic("events"), records)
    wait_for(lambda: total(worker, "events") == 40, timeout=RECV_TIMEOUT_S, what="40 events")
    part = worker.models()["partitions"]["0"]
    assert part["pending_bytes"] <= 50_000 and part["pending"] <= 6 and part["expired"] >= 34
    assert part["features"] == 30 and part["features_dropped"] == 40 * 3 + 1 - 30
    metrics = worker.get("/metrics")[1]
    assert 'riverbed_features_dropped_total{partition="0"} 91.0' in metrics
    assert 'riverbed_snapshot_bytes{partition="0"}' in metrics
    cache = worker.models()["name_cache"]
    assert cache["resets"] >= 1 and cache["bytes"] <= 10_000 + 1_000, cache
    assert f"riverbed_name_cache_resets_total {float(cache['resets'])}" in metrics
    log = worker.log.read_text()
    assert log.count("RIVERBED_MAX_FEATURES") == 1 and log.count("RIVERBED_PENDING_MAX_BYTES") == 1


# -- 9. settings the cluster cannot honour --------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("session_timeout", "1", "RIVERBED_SESSION_TIMEOUT=1: the brokers accept 6 to"),
        ("snapshot_chunk_bytes", "2000000", "RIVERBED_SNAPSHOT_CHUNK_BYTES=2000000"),
    ],
)
def test_settings_the_cluster_cannot_honour_stop_start_up(
    kafka: str, names: Names, setting: str, value: str, says: str
) -> None:
    res = riverbed("worker", env=riverbed_env(kafka, names, **{setting: value}), timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert says in res.stderr, res.stderr


def _mismatched_layout(kafka: str, names: Names) -> None:
    """events with 2 partitions, labels with 3: a worker refuses to start on them. Once
    the broker's metadata shows both: right after a create it may not yet, and a worker
    that finds them missing creates them (then finds the mismatch only afterwards)."""
    layout = {names.topic("events"): 2, names.topic("labels"): 3}

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(t, n, 1) for t, n in layout.items()])
        finally:
            await admin.close()

    async def shown() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        try:
            described = await admin.describe_topics(list(layout))
        finally:
            await admin.close()
        return {d["topic"]: len(d["partitions"]) for d in described} == layout

    asyncio.run(create())
    wait_for(lambda: asyncio.run(shown()), timeout=RECV_TIMEOUT_S, what="the topics described")


def test_a_partition_mismatch_is_found_before_any_topic_is_created(
    kafka: str, names: Names
) -> None:
    _mismatched_layout(kafka, names)
    res = riverbed("worker", env=riverbed_env(kafka, names, partitions=2), timeout=60)
    assert res.returncode == 2 and "nothing was created" in res.stderr

    async def ours() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
        await admin.start()
        try:
            return {t for t in await admin.list_topics() if t.startswith(names.prefix)}
        finally:
            await admin.close()

    assert asyncio.run(ours()) == {names.topic("events"), names.topic("labels")}


def test_web_ports_in_the_ephemeral_range_are_warned_of_at_start(kafka: str, names: Names) -> None:
    # The worker stops on the layout (after the warning, before it binds a port), so
    # that no port of the range is bound here: a test must not race outgoing connections.
    _mismatched_layout(kafka, names)
    low, _ = ephemeral_ports()
    env = riverbed_env(kafka, names, partitions=2, web_port=low - 1)
    res = riverbed("worker", "--processes", "2", env=env, timeout=60)
    assert res.returncode == 2 and "nothing was created" in res.stderr, res.stderr
    exposed = [p for p in (low, low + 1) if p not in reserved_ports()]
    if exposed:
        assert (
            f"RIVERBED_WEB_PORT={low - 1}: port{'s' if len(exposed) > 1 else ''} "
            f"{', '.join(map(str, exposed))} lie"
        ) in res.stderr, res.stderr
    # Below the range, all three: not a word.
    env = riverbed_env(kafka, names, partitions=2, web_port=low - 3)
    res = riverbed("worker", "--processes", "2", env=env, timeout=60)
    assert res.returncode == 2 and "RIVERBED_WEB_PORT" not in res.stderr, res.stderr


def test_a_one_partition_events_topic_made_by_a_producer_gets_matching_topics(
    kafka: str, names: Names, start_worker: Any
) -> None:
    produce(kafka, names.topic("events"), [(b"k", _event(0), None)])  # auto-created, 1 partition
    worker = start_worker()  # RIVERBED_PARTITIONS=4 by default
    assert worker.models()["assigned"] == [0]
    wait_for(lambda: total(worker, "learned") == 1, timeout=RECV_TIMEOUT_S, what="1 learned")


# -- 10. log floods ------------------------------------------------------------------------
def test_a_flood_of_failing_records_logs_a_few_lines_and_a_count(
    kafka: str, names: Names, start_worker: Any
) -> None:
    worker = start_worker(partitions=1, model="tests.faulty_model:build")
    values = [
        orjson.dumps({"id": f"b{i}", "x": {"boom_learn": 1.0}, "y": True}) for i in range(3000)
    ]
    produce(kafka, names.topic("events"), [(v[:12], v, 0) for v in values])
    wait_for(lambda: sum(worker.models()["dead_letters"].values()) == 3000,
             timeout=RECV_TIMEOUT_S, what="3000 dead letters")  # fmt: skip
    worker.stop(signal.SIGTERM)
    lines = [ln for ln in worker.log.read_text().splitlines() if "model error at" in ln]
    assert 1 <= len(lines) <= 10, len(lines)


# -- 7. a graceful stop in the middle of a rebalance --------------------------------------
HANDOVER_GOAL_S = 5.0


def _ready(worker: Any) -> bool:
    try:
        return worker.alive() and worker.get("/ready")[0] == 200
    except OSError:  # not serving HTTP yet
        return False


@pytest.mark.parametrize("stopping", ["joining", "leaving"])
def test_a_graceful_stop_during_a_rebalance_hands_the_partitions_over_in_seconds(
    kafka: str, names: Names, start_worker: Any, stopping: str
) -> None:
    """Stop the worker that is joining (its partitions were just being assigned to
    it), or the one already there, while the group rebalances."""
    import time

    settings = {"partitions": 4, "session_timeout": 45}  # the default: what a user waits
    first = start_worker(**settings)
    produce(kafka, names.topic("events"),
            [(f"e{i}".encode(), _event(i), i % 4) for i in range(400)])  # fmt: skip
    wait_for(lambda: total(first, "learned") == 400, timeout=RECV_TIMEOUT_S, what="400 learned")
    second = start_worker(wait=False, **settings)
    # The second worker's JoinGroup starts the rebalance; the first learns of it at its
    # next heartbeat (up to 3 s later) and rejoins: stop one of them in between.
    wait_for(lambda: "Revoking previously assigned partitions set()" in second.log.read_text(),
             timeout=RESTART_TIMEOUT_S, what="the second worker joining the group")  # fmt: skip
    stopped, staying = (second, first) if stopping == "joining" else (first, second)
    t0 = time.monotonic()
    stopped.stop(signal.SIGTERM)
    wait_for(
        lambda: _ready(staying) and staying.models()["assigned"] == [0, 1, 2, 3],
        timeout=RESTART_TIMEOUT_S,
        what="the other worker owning every partition",
    )
    handover = time.monotonic() - t0
    print(f"hand-over after SIGTERM of the {stopping} worker during a rebalance: {handover:.1f} s")
    assert handover <= HANDOVER_GOAL_S, f"{handover:.1f} s; log:\n{stopped.tail_log(80)}"
    assert total(staying, "learned") == 400
