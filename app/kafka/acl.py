"""What riverbed's principal may do: checked at start-up, on clusters with an authorizer.

Without an ACL riverbed needs, a worker failed somewhere deep (a topic that looked
missing, a consumer that never joined, a snapshot that was never acknowledged). Kafka
tells a client which operations it may perform on a topic (Metadata v8+,
``include_topic_authorized_operations``, KIP-430) and on a group (DescribeGroups v3+);
the Java admin client exposes both, aiokafka neither (its DescribeGroups v3 request
even reads the v2 response), so the two request shapes are written here from Kafka's
protocol definitions. One round trip each, before the worker starts: every missing
operation is named in one line.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import errors as Errors
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.admin import DescribeGroupsResponse_v3
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int16, Int32, Schema, String

from riverbed.config import Settings
from riverbed.exceptions import ConfigError
from riverbed.kafka import clients
from riverbed.kafka.topics import TopicNames

__all__ = ["OPERATIONS", "Needed", "check_permissions", "needed", "required"]

# Kafka's AclOperation codes; an authorized-operations field has bit (1 << code) set
# for each operation allowed.
OPERATIONS = {"Read": 3, "Write": 4, "Create": 5, "Describe": 8, "DescribeConfigs": 10}
DESCRIBING = ("Read", "Write")  # operations that imply Describe (Kafka's ACL rules)
UNKNOWN_OPERATIONS = -(2**31)  # the field's value when the broker did not compute it
TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED = 29, 30

_STR = String("utf-8")


class _MetadataResponseV8(Response):
    API_KEY = 3
    API_VERSION = 8
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("brokers", Array(("node_id", Int32), ("host", _STR), ("port", Int32), ("rack", _STR))),
        ("cluster_id", _STR),
        ("controller_id", Int32),
        ("topics", Array(
            ("error_code", Int16), ("name", _STR), ("is_internal", Boolean),
            ("partitions", Array(
                ("error_code", Int16), ("partition", Int32), ("leader", Int32),
                ("leader_epoch", Int32), ("replicas", Array(Int32)), ("isr", Array(Int32)),
                ("offline_replicas", Array(Int32)),
            )),
            ("topic_authorized_operations", Int32),
        )),
        ("cluster_authorized_operations", Int32),
    )  # fmt: skip


class _MetadataRequestV8(RequestStruct):
    API_KEY = 3
    API_VERSION = 8
    RESPONSE_TYPE = _MetadataResponseV8
    SCHEMA = Schema(
        ("topics", Array(_STR)),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
    )


class _Metadata(Request[_MetadataRequestV8]):
    API_KEY = 3

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics

    def build(self, request_struct_class: type[_MetadataRequestV8]) -> _MetadataRequestV8:
        return request_struct_class(self.topics, False, False, True)


class _DescribeGroupsRequestV3(RequestStruct):
    API_KEY = 15
    API_VERSION = 3
    RESPONSE_TYPE = DescribeGroupsResponse_v3
    SCHEMA = Schema(("groups", Array(_STR)), ("include_authorized_operations", Boolean))


class _DescribeGroup(Request[_DescribeGroupsRequestV3]):
    API_KEY = 15

    def __init__(self, group: str) -> None:
        self.group = group

    def build(
        self, request_struct_class: type[_DescribeGroupsRequestV3]
    ) -> _DescribeGroupsRequestV3:
        return request_struct_class([self.group], True)


@dataclass(frozen=True)
class Needed:
    """An operation riverbed needs on a resource."""

    operation: str
    kind: str  # "topic" or "group"
    name: str

    def __str__(self) -> str:
        return f"{self.operation} on {self.kind} {self.name}"


def required(settings: Settings) -> list[Needed]:
    """Every operation a worker needs on its topics and group (README: Running on a real
    cluster). Creating missing topics is checked when they are created.

    Examples
    --------
    >>> s = Settings.from_env({"RIVERBED_TOPIC_PREFIX": "p.", "RIVERBED_APP_ID": "a"})
    >>> [str(n) for n in required(s)][:3]
    ['Read on topic p.events', 'DescribeConfigs on topic p.events', 'Read on topic p.labels']
    >>> str(required(s)[-1])
    'Read on group a'

    """
    names = TopicNames.from_settings(settings)
    ops: dict[str, tuple[str, ...]] = {
        names.events: ("Read", "DescribeConfigs"),
        names.labels: ("Read", "DescribeConfigs"),
        names.predictions: ("Write",),
        names.metrics: ("Write",),
        names.dlq: ("Write", "DescribeConfigs"),
        names.snapshots: ("Read", "Write", "DescribeConfigs"),
        names.versions: ("Read", "Write"),
        # Faust's assignor writes the group's leader here and its consumer reads it; it
        # declares the topic at every start (CreateTopics, which Kafka authorizes before
        # it finds the topic exists), so Create even when the topic was made beforehand.
        assignor_topic(settings.app_id): ("Read", "Write", "Create"),
    }
    if names.shadow:
        ops[names.shadow] = ("Write",)
    out = [Needed(op, "topic", t) for t, wanted in ops.items() for op in wanted]
    return [*out, Needed("Read", "group", settings.app_id)]


def assignor_topic(app_id: str) -> str:
    """The topic Faust's leader assignor keeps (``<app id>-__assignor-__leader``)."""
    return f"{app_id}-__assignor-__leader"


async def needed(settings: Settings, *, timeout: float = 10.0) -> list[Needed]:
    """The operations of :func:`required` this principal may not perform (empty when the
    cluster has no authorizer, or allows them all)."""
    client = clients.client(settings)
    await asyncio.wait_for(client.bootstrap(), timeout)
    try:
        want = required(settings)
        topics = sorted({n.name for n in want if n.kind == "topic"})
        node = client.get_random_node()
        meta = await asyncio.wait_for(client.send(node, _Metadata(topics)), timeout)
        allowed: dict[str, int | None] = {}
        for error, name, _internal, _parts, ops in meta.topics:
            if error == TOPIC_AUTHORIZATION_FAILED:
                allowed[name] = 0
            elif error == 0:
                allowed[name] = None if ops == UNKNOWN_OPERATIONS else ops
        group = settings.app_id
        try:
            coordinator = await asyncio.wait_for(_coordinator(client, group), timeout)
        except Errors.GroupAuthorizationFailedError:  # not even Describe on the group
            allowed[f"group:{group}"] = 0
        else:
            described = await asyncio.wait_for(
                client.send(coordinator, _DescribeGroup(group)), timeout
            )
            for error, name, *_rest, ops in described.groups:
                if error == GROUP_AUTHORIZATION_FAILED:
                    allowed[f"group:{name}"] = 0
                elif error == 0:
                    allowed[f"group:{name}"] = None if ops == UNKNOWN_OPERATIONS else ops
    finally:
        await client.close()
    missing = []
    for n in want:
        key = n.name if n.kind == "topic" else f"group:{n.name}"
        ops_ = allowed.get(key)
        # Not even Describe: Kafka says nothing of the other operations; those that
        # imply Describe are named (the rest are checked once they are granted).
        if (
            ops_ == 0
            and n.operation not in DESCRIBING
            and any(m.operation in DESCRIBING for m in want if m.name == n.name)
        ):
            continue  # fmt: skip
        if ops_ is not None and not ops_ & (1 << OPERATIONS[n.operation]):
            missing.append(n)
    return missing


async def _coordinator(client: AIOKafkaClient, group: str) -> int:
    """The group's coordinator; a new cluster makes its offsets topic first."""
    while True:
        try:
            return int(await client.coordinator_lookup(0, group))
        except Errors.CoordinatorNotAvailableError:
            await asyncio.sleep(0.2)  # the retry backoff while the offsets topic is made


async def check_permissions(settings: Settings) -> None:
    """Raise naming every operation riverbed needs and may not perform.

    Raises
    ------
    ConfigError
        One line: the principal, and each missing operation and resource.

    """
    missing = await needed(settings)
    if missing:
        who = (f"SASL user {settings.sasl_username!r}" if settings.sasl_username
               else "this client's principal")  # fmt: skip
        msg = (
            f"Kafka does not allow {who} {', '.join(map(str, missing))}; grant "
            f"{'it' if len(missing) == 1 else 'them'} with kafka-acls.sh (README: Running "
            "on a real cluster, what riverbed's principal needs)"
        )
        raise ConfigError(msg)
