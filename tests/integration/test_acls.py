"""Least privilege: a broker with Kafka's StandardAuthorizer and
allow.everyone.if.no.acl.found=false. riverbed's principal granted exactly the ACLs
the README lists runs end to end; with any one of them taken away, start-up names it
in one line (issue 27, item 5)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest

from riverbed.config import Settings
from riverbed.kafka.acl import OPERATIONS, Needed, assignor_topic, needed, required
from riverbed.kafka.topics import ensure_topics
from tests.helpers import wait_for
from tests.integration.helpers import (
    RECV_TIMEOUT_S,
    Names,
    Worker,
    free_port,
    produce,
    riverbed,
    riverbed_env,
    total,
)
from tests.integration.secured import USER, Secured, secured_broker

pytestmark = pytest.mark.integration

TOPIC, GROUP = 2, 3  # Kafka's ResourceType codes
LITERAL, ALLOW = 3, 3  # PatternType and PermissionType codes
PRINCIPAL = f"User:{USER}"


@pytest.fixture(scope="module")
def authorized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    yield from secured_broker(tmp_path_factory, authorizer=True)


async def _acl(plain: str, need: Needed, *, grant: bool) -> None:
    """Grant (or take away) ``need`` for riverbed's principal, as the admin."""
    kind = TOPIC if need.kind == "topic" else GROUP
    args = (kind, need.name, LITERAL, PRINCIPAL, "*", OPERATIONS[need.operation], ALLOW)
    client = AIOKafkaClient(bootstrap_servers=plain)
    await client.bootstrap()
    try:
        request = CreateAclsRequest(*args) if grant else DeleteAclsRequest(*args)
        response = await client.send(client.get_random_node(), request)
        results = getattr(response, "creation_responses", None) or response.filter_responses
        assert all(r[0] == 0 for r in results), results
    finally:
        await client.close()


def test_exactly_the_listed_acls_run_end_to_end_and_each_missing_one_is_named(
    authorized: Secured, names: Names, output_dir: Path
) -> None:
    env = riverbed_env(authorized.sasl_ssl, names, partitions=2, web_port=free_port(),
                       data_dir=output_dir / "worker", snapshot_interval=1,
                       **authorized.sasl(mechanism="SCRAM-SHA-512"))  # fmt: skip
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("RIVERBED_")})
    admin = Settings.from_env({"RIVERBED_BROKER": authorized.plain, "RIVERBED_PARTITIONS": "2",
                               "RIVERBED_TOPIC_PREFIX": names.prefix,
                               "RIVERBED_APP_ID": names.app_id})  # fmt: skip
    # The topics are made beforehand by the admin (so riverbed needs no Create), Faust's
    # assignor topic too.
    asyncio.run(ensure_topics(admin))
    asyncio.run(_create(authorized.plain, assignor_topic(names.app_id)))
    want = required(settings)
    for need in want:
        asyncio.run(_acl(authorized.plain, need, grant=True))
    assert asyncio.run(needed(settings)) == []

    worker = Worker(env, output_dir / "worker.log")
    try:
        worker.wait_ready()
        events = [orjson.dumps({"id": f"e{i}", "x": {"a": i % 5}, "y": i % 2 == 0})
                  for i in range(200)]  # fmt: skip
        produce(
            authorized.plain, names.topic("events"), [(e, e, i % 2) for i, e in enumerate(events)]
        )
        wait_for(lambda: total(worker, "learned") == 200
                 and worker.models()["snapshots_written"],
                 timeout=RECV_TIMEOUT_S, what="200 events learned and a snapshot")  # fmt: skip
    finally:
        assert worker.stop() == 0, worker.tail_log()

    # Each ACL taken away is named, alone: the check start-up runs.
    for need in want:
        asyncio.run(_acl(authorized.plain, need, grant=False))
        try:
            assert asyncio.run(needed(settings)) == [need]
        finally:
            asyncio.run(_acl(authorized.plain, need, grant=True))
    # And through the command: one line, exit 2, in seconds.
    for need in (Needed("Write", "topic", names.topic("predictions")),
                 Needed("Read", "group", names.app_id)):  # fmt: skip
        asyncio.run(_acl(authorized.plain, need, grant=False))
        began = time.monotonic()
        res = riverbed("worker", env=env, timeout=60)
        took = time.monotonic() - began
        asyncio.run(_acl(authorized.plain, need, grant=True))
        assert res.returncode == 2, res.stdout + res.stderr
        lines = [line for line in res.stderr.splitlines() if line.startswith("riverbed: error")]
        assert len(lines) == 1 and str(need) in lines[0], res.stderr
        assert "Traceback" not in res.stderr
        assert took < 10, took


async def _create(plain: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=plain)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
