"""Issue 15 acceptance: the user's own topics and JSON layout, produced by kcat.

A ``payments`` topic and a ``chargebacks`` topic that riverbed did not create, filled
by kcat (librdkafka, another client than riverbed's) with nested fields, strings,
booleans, nulls and ISO times; riverbed maps them with ``RIVERBED_EVENT_*`` and
``RIVERBED_LABEL_*``, predicts and learns each exactly once, dead-letters what cannot
be mapped with the path and the reason, learns unlabelled payments as legit after
``RIVERBED_LABEL_DEFAULT_AFTER`` (labels by absence), counts chargebacks that kcat's
default partitioner sent to another partition as misrouted, and leaves the user's
topics as they were. The same runs over SASL_SSL (SCRAM) against the suite's secured
broker, kcat included.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from riverbed import models
from riverbed.config import Settings
from riverbed.kafka.security import client_args
from tests.helpers import wait_for
from tests.integration.helpers import RECV_TIMEOUT_S, Names, consume, riverbed_env, total
from tests.integration.secured import Secured

pytestmark = pytest.mark.integration

PARTITIONS = 3  # not RIVERBED_PARTITIONS' 4: missing topics must follow the user's
LABELLED = 240  # payments with is_fraud inline
UNLABELLED = 60  # payments whose label comes by chargeback, or by absence
JOINED = 12  # chargebacks sent with murmur2, like the payments
MISROUTED = 5  # chargebacks sent with kcat's default partitioner to another partition
DEFAULT_AFTER_S = 600
COUNTRIES = ["FR", "DE", "US", "BR", None]

MAPPING = {
    "events_topic": "",  # set per test
    "event_id": "txn_id",
    "event_features": "amount,country,merchant.mcc,user.*",
    "event_label": "is_fraud",
    "event_time": "event_time",
    "label_id": "txn_id",
    "label_value": "fraud",
    "prediction_fields": "txn_id,merchant.id",
    "label_default": "false",
    "label_default_after": str(DEFAULT_AFTER_S),
    # Inline labels learned at once, as fetched, and labels by absence on the Kafka
    # clock: the tests below check that path (maturity, the default with a label
    # default, is tests/integration/test_judgment.py's).
    "label_maturity": "off",
}


@dataclass(frozen=True)
class Cluster:
    """Where the test's clients connect, and how: riverbed settings, aiokafka's
    arguments and kcat's (librdkafka) for the same security."""

    bootstrap: str
    settings: dict[str, Any]
    kcat_args: tuple[str, ...] = ()

    @property
    def client(self) -> dict[str, Any]:
        env = riverbed_env(self.bootstrap, Names(), **self.settings)
        return client_args(Settings.from_env(env))


def plaintext(kafka: str) -> Cluster:
    return Cluster(kafka, {})


def sasl_ssl(secured: Secured) -> Cluster:
    sasl = secured.sasl()
    # kcat over SASL_SSL too, with PLAIN: Debian's librdkafka (2.0) predates the
    # SCRAM nonce fix Kafka 4 brokers require (librdkafka 2.6.1, CVE-2024-56128), so
    # its SCRAM is refused. riverbed's own clients (aiokafka) use SCRAM-SHA-512.
    kcat_args = tuple(
        arg
        for setting in (
            "security.protocol=SASL_SSL",
            "sasl.mechanisms=PLAIN",
            f"sasl.username={sasl['sasl_username']}",
            f"sasl.password={sasl['sasl_password']}",
            f"ssl.ca.location={sasl['ssl_cafile']}",
        )
        for arg in ("-X", setting)
    )
    return Cluster(secured.sasl_ssl, {"broker": secured.sasl_ssl, **sasl}, kcat_args)


@pytest.fixture(params=["plaintext", "sasl_ssl"])
def cluster(request: pytest.FixtureRequest, kafka: str) -> Cluster:
    if request.param == "plaintext":
        return plaintext(kafka)
    return sasl_ssl(request.getfixturevalue("secured"))


def murmur2_partition(key: str) -> int:
    return DefaultPartitioner()(key.encode(), list(range(PARTITIONS)), list(range(PARTITIONS)))


def crc32_partition(key: str) -> int:
    """librdkafka's default partitioner (consistent_random): CRC32 of the key."""
    return zlib.crc32(key.encode()) % PARTITIONS


def payment(i: int, rng: random.Random, *, labelled: bool) -> dict[str, Any]:
    p: dict[str, Any] = {
        "txn_id": f"tx-{i}",
        "amount": round(rng.lognormvariate(3, 1), 2),
        "country": rng.choice(COUNTRIES),
        "merchant": {"id": f"m{rng.randrange(40)}", "mcc": rng.choice(["5411", "5812", "7995"])},
        "user": {"age": rng.randrange(18, 90), "new": rng.random() < 0.3, "vip": None},
        "event_time": f"2026-11-30T{i % 24:02d}:{i % 60:02d}:00{rng.choice(['Z', '+02:00'])}",
    }
    if labelled:
        p["is_fraud"] = p["amount"] > 40 and (p["user"]["new"] or p["merchant"]["mcc"] == "7995")
    return p


def features(p: dict[str, Any]) -> dict[str, Any]:
    """The mapping of MAPPING, written out by hand (an independent check of riverbed's)."""
    # In the mapping's order: a model's sums run over x in order, so the order counts
    # in the last bits of a float.
    x: dict[str, Any] = {"amount": p["amount"]}
    if p["country"] is not None:
        x["country"] = p["country"]
    x["merchant.mcc"] = p["merchant"]["mcc"]
    x["user.age"] = p["user"]["age"]
    x["user.new"] = p["user"]["new"]
    return x


def kcat(cluster: Cluster, topic: str, lines: list[tuple[str, bytes]], *extra: str) -> None:
    exe = shutil.which("kcat")
    assert exe, "kcat is missing: `make setup` installs it (deploy/install-system-deps.sh)"
    data = b"".join(k.encode() + b"\t" + v + b"\n" for k, v in lines)
    subprocess.run(
        [exe, "-P", "-b", cluster.bootstrap, "-t", topic, "-K", "\t", *cluster.kcat_args, *extra],
        input=data,
        check=True,
        timeout=60,
    )


async def _admin(cluster: Cluster, action: str, topics: list[str]) -> Any:
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap, **cluster.client)
    await admin.start()
    try:
        if action == "create":
            await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics])
            return None
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        out: dict[str, Any] = {}
        for d in await admin.describe_topics(topics):
            out[d["topic"]] = {"partitions": len(d["partitions"])}
        for response in await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
        ):
            for _err, _msg, _type, name, entries in response.resources:
                out[name]["configs"] = sorted((e[0], e[1]) for e in entries)
        return out
    finally:
        await admin.close()


async def _send_at(cluster: Cluster, topic: str, records: list[tuple[str, bytes]], ts: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, **cluster.client)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key.encode(), timestamp_ms=ts)
    finally:
        await producer.stop()


def _count(cluster: Cluster, topic: str) -> int:
    async def read() -> int:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        c = AIOKafkaConsumer(bootstrap_servers=cluster.bootstrap, **cluster.client)
        await c.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            return sum((await c.end_offsets(tps)).values())
        finally:
            await c.stop()

    return asyncio.run(read())


def test_kcat_records_in_the_users_own_layout_are_learned_exactly_once(
    cluster: Cluster, names: Names, start_worker: Any
) -> None:
    client = cluster.client
    rng = random.Random(15)
    payments_topic = f"payments-{names.uid}"
    chargebacks_topic = f"chargebacks-{names.uid}"
    scores_topic = f"scores-{names.uid}"
    asyncio.run(_admin(cluster, "create", [payments_topic, chargebacks_topic]))

    def described() -> dict[str, Any] | None:
        # Right after the create, a broker's metadata may not hold the topics yet.
        d = asyncio.run(_admin(cluster, "describe", [payments_topic, chargebacks_topic]))
        whole = all(v["partitions"] == PARTITIONS and v["configs"] for v in d.values())
        return d if whole else None

    before = wait_for(described, timeout=RECV_TIMEOUT_S, what="the user's topics described")

    labelled = [payment(i, rng, labelled=True) for i in range(LABELLED)]
    bad = [
        (b"no-id", b'{"amount": 3, "country": "FR"}', '"txn_id" (the id)'),
        (b"tx-b1", b'{"txn_id": "tx-b1", "amount": 3, "event_time": "2026-13-45T00:00Z"}',
         '"event_time" is not an ISO-8601'),
        (b"tx-b2", b'{"txn_id": "tx-b2", "amount": 3, "is_fraud": {"maybe": 1}}',
         '"is_fraud" must be'),
        (b"tx-b3", b'{"txn_id": "tx-b3", "amount": [1, 2]}', '"amount" must be'),
        (b"tx-b4", b'{"txn_id": "tx-b4", "amount": ', "not valid JSON"),
    ]  # fmt: skip
    lines = [(p["txn_id"], orjson.dumps(p)) for p in labelled]
    lines[100:100] = [(k.decode(), v) for k, v, _ in bad]
    kcat(cluster, payments_topic, lines, "-X", "partitioner=murmur2_random")

    settings = {**MAPPING, "events_topic": payments_topic, "labels_topic": chargebacks_topic,
                "predictions_topic": scores_topic, **cluster.settings}  # fmt: skip
    worker = start_worker(**settings)
    preds = consume(cluster.bootstrap, scores_topic, LABELLED, **client)
    dead = consume(cluster.bootstrap, names.topic("dlq"), len(bad), **client)

    # Every payment predicted once, with the mapped id and the copied fields.
    values = [orjson.loads(r.value) for r in preds]
    assert sorted(v["id"] for v in values) == sorted(p["txn_id"] for p in labelled)
    by_id = {p["txn_id"]: p for p in labelled}
    for v in values:
        assert v["txn_id"] == v["id"] and v["merchant.id"] == by_id[v["id"]]["merchant"]["id"]
    # The unmappable ones are dead letters naming the path and the reason.
    reasons = {r.key: dict(r.headers)["riverbed.error"].decode() for r in dead}
    for key, _value, reason in bad:
        assert reason in reasons[key], (key, reasons[key])

    # Each partition's predictions equal an offline River replay of the mapped features.
    per_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for v in values:
        per_partition[v["partition"]].append(v)
    assert len(per_partition) == PARTITIONS
    for partition, got in per_partition.items():
        model = models.build("logreg")
        for v in sorted(got, key=lambda v: v["offset"]):
            p = by_id[v["id"]]
            assert murmur2_partition(p["txn_id"]) == partition
            x = features(p)
            proba = {str(k).lower(): pr for k, pr in model.predict_proba_one(x).items()}
            assert v["proba"] == proba, (partition, v["offset"])
            model.learn_one(x, p["is_fraud"])

    # Labels: by chargeback (murmur2, like the payments), misrouted (kcat's default
    # partitioner put them elsewhere), or by absence after DEFAULT_AFTER_S.
    unlabelled = [payment(LABELLED + i, rng, labelled=False) for i in range(UNLABELLED)]
    kcat(cluster, payments_topic, [(p["txn_id"], orjson.dumps(p)) for p in unlabelled],
         "-X", "partitioner=murmur2_random")  # fmt: skip
    consume(cluster.bootstrap, scores_topic, LABELLED + UNLABELLED, **client)
    ids = [p["txn_id"] for p in unlabelled]
    joined = ids[:JOINED]
    astray = [i for i in ids[JOINED:] if crc32_partition(i) != murmur2_partition(i)][:MISROUTED]
    assert len(astray) == MISROUTED
    chargeback = [(i, orjson.dumps({"txn_id": i, "fraud": True})) for i in joined]
    kcat(cluster, chargebacks_topic, chargeback, "-X", "partitioner=murmur2_random")
    kcat(
        cluster,
        chargebacks_topic,
        [(i, orjson.dumps({"txn_id": i, "fraud": True})) for i in astray],
    )
    wait_for(
        lambda: (
            (total(worker, "labels", "joined"), total(worker, "labels", "misrouted"))
            == (JOINED, MISROUTED)
        ),
        timeout=RECV_TIMEOUT_S,
        what="chargebacks joined and misrouted",
    )
    # Stream time moves past the wait: one payment per partition, stamped later.
    later = int(time.time() * 1000) + (DEFAULT_AFTER_S + 60) * 1000
    ticks, n = [], LABELLED + UNLABELLED
    while len({murmur2_partition(k) for k, _ in ticks}) < PARTITIONS:
        p = payment(n, rng, labelled=False)
        if murmur2_partition(p["txn_id"]) not in {murmur2_partition(k) for k, _ in ticks}:
            ticks.append((p["txn_id"], orjson.dumps(p)))
        n += 1
    asyncio.run(_send_at(cluster, payments_topic, ticks, later))
    defaulted = UNLABELLED - JOINED
    wait_for(
        lambda: total(worker, "labels", "defaulted") == defaulted,
        timeout=RECV_TIMEOUT_S,
        what=f"{defaulted} payments learned as legit by absence",
    )
    # A real chargeback after the default is late: learned once, never twice.
    kcat(cluster, chargebacks_topic, [(ids[-1], orjson.dumps({"txn_id": ids[-1], "fraud": True}))],
         "-X", "partitioner=murmur2_random")  # fmt: skip
    wait_for(lambda: total(worker, "labels", "late") == 1, timeout=RECV_TIMEOUT_S, what="late")
    assert total(worker, "learned") == LABELLED + JOINED + defaulted
    assert total(worker, "events") == LABELLED + UNLABELLED + PARTITIONS
    _, metrics = worker.get("/metrics")
    assert 'outcome="defaulted"' in metrics and 'outcome="misrouted"' in metrics
    assert "misrouted" in worker.log.read_text() and "murmur2_random" in worker.log.read_text()

    # The user's topics are as they were: same partitions and configs, and riverbed
    # wrote nothing to them; the missing predictions topic got the events' count.
    after = asyncio.run(
        _admin(cluster, "describe", [payments_topic, chargebacks_topic, scores_topic])
    )
    assert {t: after[t] for t in before} == before
    assert after[scores_topic]["partitions"] == PARTITIONS
    assert _count(cluster, payments_topic) == LABELLED + len(bad) + UNLABELLED + PARTITIONS
    assert _count(cluster, chargebacks_topic) == JOINED + MISROUTED + 1
