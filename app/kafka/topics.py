"""riverbed's topics: names from settings, and creating them with the right partitions.

Faust only creates topics it owns (``internal=True``), and a topic auto-created by
the broker on first produce gets ``num.partitions`` (1), which would silently break
co-partitioning of events and labels. So the worker and ``riverbed produce`` both call
:func:`ensure_topics` first: it creates what is missing with ``RIVERBED_PARTITIONS``
and refuses to start when events, labels and predictions disagree.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

from riverbed.config import Settings
from riverbed.exceptions import ConfigError
from riverbed.kafka.clients import admin_client

__all__ = [
    "Cluster",
    "Layout",
    "TopicNames",
    "check_layout",
    "default_partition",
    "describe_cluster",
    "describe_topics",
    "ensure_topics",
    "snapshots_topic",
    "topic_configs",
    "versions_topic",
]

logger = logging.getLogger(__name__)

NAMES = ("events", "labels", "predictions", "metrics", "dlq", "snapshots")
TOPIC_AUTHORIZATION_FAILED = 29  # a CreateTopics result's error code
# These must share a partition count: a label joins its event in the same partition,
# a prediction is written to its event's partition, and so is its learner's snapshot.
CO_PARTITIONED = ("events", "labels", "predictions", "snapshots", "versions")
# The snapshots topic keeps the latest record per key; small segments let the log
# cleaner drop superseded snapshots soon, so recovery reads little.
SNAPSHOT_CONFIG = {
    "cleanup.policy": "compact",
    "segment.ms": "600000",
    "min.cleanable.dirty.ratio": "0.1",
}


@dataclass(frozen=True)
class TopicNames:
    """Full topic names for one prefix and app.

    Snapshots are per app (``<prefix>snapshots.<app id>``), like Kafka Streams'
    ``<application.id>-<store>-changelog``: two apps on one prefix (a second model
    tried on the same stream) must never compact each other's snapshots away, and a
    recovery reads only its own app's records. ``legacy_snapshots`` is the topic all
    apps of a prefix shared before; recovery migrates from it only a snapshot that
    matches the app's own committed offsets (app/checkpoint/recovery.py).
    """

    events: str
    labels: str
    predictions: str
    metrics: str
    dlq: str
    snapshots: str
    legacy_snapshots: str = ""
    # The app's versions: snapshots kept for their retention (riverbed versions,
    # export --version, rollback), keyed and partitioned as the snapshots.
    versions: str = ""
    # The challengers' predictions (RIVERBED_SHADOW_PREDICTIONS), partitioned like the
    # predictions: made only when that setting is on.
    shadow: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> TopicNames:
        names = {n: settings.topic(n) for n in NAMES}
        names["snapshots"] = snapshots_topic(settings.topic_prefix, settings.app_id)
        shadow = f"{names['predictions']}.shadow" if settings.shadow_predictions else ""
        return cls(**names, legacy_snapshots=settings.topic("snapshots"), shadow=shadow,
                   versions=versions_topic(settings.topic_prefix, settings.app_id))  # fmt: skip


def snapshots_topic(prefix: str, app_id: str) -> str:
    """The app's own snapshots topic.

    Examples
    --------
    >>> snapshots_topic("riverbed.", "fraud")
    'riverbed.snapshots.fraud'

    """
    return f"{prefix}snapshots.{app_id}"


def versions_topic(prefix: str, app_id: str) -> str:
    """The app's versions topic.

    >>> versions_topic("riverbed.", "fraud")
    'riverbed.versions.fraud'
    """
    return f"{prefix}versions.{app_id}"


def default_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions``
    (murmur2, as the Java clients, aiokafka and ``riverbed produce`` do).

    Examples
    --------
    >>> default_partition(b"tx-1", 4), default_partition(b"tx-1", 1)
    (1, 0)

    """
    return (murmur2(key) & 0x7FFFFFFF) % partitions


# A dead letter carries the original key, value and headers plus riverbed's headers
# (source, stage, error: at most ~2.5 KB). The dead-letter topic and the producer take
# the largest record the source topics accept plus this much, so every record
# riverbed can be given can be dead-lettered whole (docs/durability.md).
DLQ_HEADROOM_BYTES = 64 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 1_048_588  # Kafka's message.max.bytes default
CHUNK_OVERHEAD_BYTES = 1024  # a snapshot chunk record's key, headers and framing


@dataclass(frozen=True)
class Cluster:
    """The cluster's shape, as riverbed's topics depend on it.

    Examples
    --------
    >>> three = Cluster(brokers=3, default_replication=3, min_insync=2)
    >>> three.replication(0), three.replication(2), three.snapshot_min_insync(3)
    (3, 2, None)
    >>> print(three.advice("t.dlq", 1))  # doctest: +ELLIPSIS
    t.dlq has replication factor 1 on a cluster of 3 brokers ... kafka-reassign-partitions.sh ...
    >>> bare = Cluster(brokers=3, default_replication=1, min_insync=1)
    >>> bare.replication(0), bare.snapshot_min_insync(3), bare.advice("t.events", 3)
    (1, 2, None)
    >>> Cluster(brokers=1, default_replication=1, min_insync=1).advice("t.events", 1) is None
    True

    """

    brokers: int
    default_replication: int
    min_insync: int
    controller: int | None = None
    nodes: tuple[str, ...] = ()  # "id host:port" of each broker
    session_timeout_ms: tuple[int, int] = (6000, 1_800_000)

    def replication(self, wanted: int) -> int:
        """``RIVERBED_REPLICATION`` resolved: as set, or (0, auto) the cluster's default,
        at most its brokers."""
        return wanted or max(1, min(self.default_replication, self.brokers))

    def snapshot_min_insync(self, replication: int) -> int | None:
        """``min.insync.replicas`` for the snapshots topic: 2 when it is replicated at
        least twice and the cluster's default is lower (None: the default is enough).
        With acks=all a snapshot is then on two brokers before its offsets commit."""
        wanted = min(2, replication)
        return wanted if wanted > self.min_insync else None

    def advice(self, topic: str, replication: int) -> str | None:
        """What to do about ``topic``'s replication factor, if anything."""
        expected = max(1, min(self.default_replication, self.brokers))
        if replication >= expected and not (replication == 1 and self.brokers >= 3):
            return None
        target = max(expected, min(3, self.brokers))
        return (
            f"{topic} has replication factor {replication} on a cluster of {self.brokers} "
            f"brokers (default.replication.factor={self.default_replication}): losing one "
            f"broker stops riverbed, or loses its models; raise it to {target} with "
            "kafka-reassign-partitions.sh (README: Running on a real cluster)"
        )


@dataclass(frozen=True)
class Layout:
    """What :func:`ensure_topics` found and made: the facts start-up checks settings against."""

    partitions: dict[str, int]  # topic -> partition count
    source_max_bytes: int  # the larger max.message.bytes of events and labels
    snapshots_max_bytes: int  # max.message.bytes of the snapshots topic
    session_timeout_ms: tuple[int, int]  # the brokers' group.min/max.session.timeout.ms
    replication: int = 1  # what riverbed creates topics with (RIVERBED_REPLICATION resolved)

    @property
    def dlq_max_bytes(self) -> int:
        return self.source_max_bytes + DLQ_HEADROOM_BYTES

    def __getitem__(self, topic: str) -> int:  # the partition count, as before
        return self.partitions[topic]


async def ensure_topics(settings: Settings, *, timeout: float = 30.0) -> Layout:
    """Check the topics that exist, then create the missing ones to match them.

    Partition counts are checked before anything is created: when events, labels,
    predictions or snapshots already exist, every missing topic is created with their
    count (a producer that auto-created ``events`` with one partition makes a
    one-partition app, with a warning), and existing ones that disagree stop start-up
    with nothing created. The dead-letter topic is made (or raised) to take the largest
    record the source topics accept.

    Raises
    ------
    ConfigError
        When existing co-partitioned topics have different partition counts.

    """
    names = TopicNames.from_settings(settings)
    wanted = {getattr(names, n): n for n in (*NAMES, "versions")}
    if names.shadow:
        wanted[names.shadow] = "shadow"
    co = [getattr(names, n) for n in CO_PARTITIONED]
    async with admin_client(settings, timeout) as admin:
        cluster = await describe_cluster(admin)
        replication = cluster.replication(settings.replication)
        described = await describe_topics(admin, list(wanted))
        existing = {t: parts for t, (parts, _) in described.items()}
        for topic, (_, factor) in described.items():
            advice = cluster.advice(topic, factor)
            if advice:
                logger.warning("%s", advice)
        count = _co_partition_count(settings, {t: existing[t] for t in co if t in existing})
        configs = await topic_configs(
            admin, [t for t in (names.events, names.labels) if t in existing]
        )
        source_max = max(
            (int(c.get("max.message.bytes", DEFAULT_MAX_MESSAGE_BYTES)) for c in configs.values()),
            default=DEFAULT_MAX_MESSAGE_BYTES,
        )
        dlq_max = source_max + DLQ_HEADROOM_BYTES
        missing = [t for t in wanted if t not in existing]
        if missing:
            new = [
                NewTopic(t, count, replication, topic_configs=_create_config(
                    names, t, dlq_max, cluster, replication, settings.versions_retention))
                for t in missing
            ]  # fmt: skip
            await _create(admin, new, cluster, replication)
            existing = await _wait_for_metadata(admin, list(wanted))
            # Another client may have created some of them meanwhile (a producer's
            # auto-creation, a user, or one whose topics the metadata did not show yet
            # when they were described): the layout is checked again on what is there.
            _check_created(existing, co)
        else:
            await _raise_dlq_limit(admin, names.dlq, dlq_max)
        snap = await topic_configs(admin, [names.snapshots])
        snapshots_max = int(
            snap.get(names.snapshots, {}).get("max.message.bytes", DEFAULT_MAX_MESSAGE_BYTES)
        )
    return Layout(
        partitions={t: existing.get(t, 0) for t in wanted},
        source_max_bytes=source_max,
        snapshots_max_bytes=snapshots_max,
        session_timeout_ms=cluster.session_timeout_ms,
        replication=replication,
    )


def _co_partition_count(settings: Settings, present: dict[str, int]) -> int:
    """The partition count of the missing topics: that of the co-partitioned topics that
    exist (``present``), else ``RIVERBED_PARTITIONS``.

    Raises
    ------
    ConfigError
        When ``present`` topics disagree.

    """
    _refuse_disagreeing(
        present, "; nothing was created.",
        "; RIVERBED_PARTITIONS applies only to topics riverbed creates",
    )  # fmt: skip
    count = next(iter(present.values())) if present else settings.partitions
    if present and count != settings.partitions:
        logger.warning(
            "%s exist with %d partitions; RIVERBED_PARTITIONS=%d only applies to "
            "topics riverbed creates, so the missing ones get %d too",
            ", ".join(present),
            count,
            settings.partitions,
            count,
        )
    return count


def _check_created(existing: dict[str, int], co: list[str]) -> None:
    """After creating topics: the co-partitioned ones must agree, whoever made them.

    Raises
    ------
    ConfigError
        When they do not (one was created by another client meanwhile).

    Examples
    --------
    >>> _check_created({"e": 4, "l": 4, "p": 4}, ["e", "l", "p"])
    >>> try:
    ...     _check_created({"e": 2, "l": 3, "p": 2}, ["e", "l", "p"])
    ... except ConfigError as exc:
    ...     print(str(exc)[:95])
    topics must have the same number of partitions (e=2, l=3, p=2): another client created some of

    """
    present = {t: existing[t] for t in co if t in existing}
    _refuse_disagreeing(
        present, ": another client created some of them while riverbed created the rest."
    )


def _refuse_disagreeing(present: dict[str, int], why: str, tail: str = "") -> None:
    """Raise ConfigError naming each count when the co-partitioned ``present`` disagree
    (``why``: what happened, ``tail``: what else to know)."""
    if len(set(present.values())) > 1:
        detail = ", ".join(f"{t}={c}" for t, c in present.items())
        msg = (
            f"topics must have the same number of partitions ({detail}){why} Recreate the "
            f"odd one, or add partitions to match (kafka-topics.sh --alter --partitions N)"
            f"{tail}"
        )
        raise ConfigError(msg)


async def _create(
    admin: AIOKafkaAdminClient, new: list[NewTopic], cluster: Cluster, replication: int
) -> None:
    """Create the ``new`` topics (another worker may have won the race: fine).

    Raises
    ------
    ConfigError
        When the principal may not Create them.

    """
    count = new[0].num_partitions
    # aiokafka returns each topic's result code (it raises only on transport errors).
    created = await admin.create_topics(new)
    codes = {t: (code, (rest or [None])[0])
             for t, code, *rest in getattr(created, "topic_errors", ())}  # fmt: skip
    refused = [t for t, (code, _) in codes.items() if code == TOPIC_AUTHORIZATION_FAILED]
    if refused:
        msg = (
            f"Kafka does not allow this principal Create on topic "
            f"{', '.join(refused)}: create them beforehand (with {count} "
            "partitions) or grant Create (README: Running on a real cluster)"
        )
        raise ConfigError(msg)
    made = [t.name for t in new if codes.get(t.name, (0, None))[0] == 0]
    raced = [t for t, (code, _) in codes.items() if code == TopicAlreadyExistsError.errno]
    if made:
        logger.info("created topics %s with %d partitions, replication factor %d",
                    made, count, replication)  # fmt: skip
    if raced:  # another worker, a producer's auto-creation or a user won the race
        logger.info("topics %s: another client created them meanwhile", raced)
    for topic, (code, message) in codes.items():
        if code not in (0, TopicAlreadyExistsError.errno):
            logger.warning("Kafka did not create %s: error %d (%s)", topic, code, message)
    if cluster.advice("", replication):
        logger.warning(
            "RIVERBED_REPLICATION=%d is below what a cluster of %d brokers "
            "(default.replication.factor=%d) needs: losing one broker stops riverbed "
            "or loses its models (auto, the default, follows the cluster)",
            replication, cluster.brokers, cluster.default_replication,
        )  # fmt: skip


async def _wait_for_metadata(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    """The partition counts of ``topics``, once all are in the metadata (which is
    eventually consistent after creation; at most ~5 s, then what is known)."""
    for _ in range(50):
        existing = await _partition_counts(admin, topics)
        if all(t in existing for t in topics):
            break
        await asyncio.sleep(0.1)
    return existing


def _create_config(
    names: TopicNames,
    topic: str,
    dlq_max: int,
    cluster: Cluster,
    replication: int,
    versions_retention_s: float,
) -> dict[str, str] | None:
    insync = cluster.snapshot_min_insync(replication)
    durable = {"min.insync.replicas": str(insync)} if insync else {}
    if topic == names.snapshots:
        return {**SNAPSHOT_CONFIG, **durable}
    if topic == names.versions:
        # Every version is kept for the retention (not compacted: each one is a model).
        return {"cleanup.policy": "delete",
                "retention.ms": str(int(versions_retention_s * 1000)), **durable}  # fmt: skip
    if topic == names.dlq:
        return {"max.message.bytes": str(dlq_max)}
    return None


async def topic_configs(
    admin: AIOKafkaAdminClient, topics: list[str], *, set_on_topic: bool = False
) -> dict[str, dict[str, str]]:
    """Each topic's configs; with ``set_on_topic``, only those set on the topic itself."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    if not topics:
        return {}
    out: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
    ):
        for error, _msg, _type, name, entries in response.resources:
            if error == 0:
                # (name, value, read_only, config_source, is_sensitive, synonyms);
                # source 1 is DYNAMIC_TOPIC_CONFIG: set on this topic.
                out[name] = {
                    e[0]: e[1]
                    for e in entries
                    if e[1] is not None and (not set_on_topic or e[3] == 1)
                }
    return out


async def _raise_dlq_limit(admin: AIOKafkaAdminClient, dlq: str, dlq_max: int) -> None:
    """Raise an existing dead-letter topic's max.message.bytes to ``dlq_max``."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    configs = (await topic_configs(admin, [dlq])).get(dlq, {})
    now = int(configs.get("max.message.bytes", DEFAULT_MAX_MESSAGE_BYTES))
    if now >= dlq_max:
        return
    # AlterConfigs replaces a topic's whole config: keep the other settings made on it.
    keep = (await topic_configs(admin, [dlq], set_on_topic=True)).get(dlq, {})
    keep["max.message.bytes"] = str(dlq_max)
    await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, dlq, keep)])
    logger.warning(
        "raised %s max.message.bytes from %d to %d so every record can be dead-lettered whole",
        dlq,
        now,
        dlq_max,
    )


async def describe_cluster(admin: AIOKafkaAdminClient) -> Cluster:
    """The brokers, the controller, and one broker's defaults that riverbed depends on
    (replication, min.insync.replicas, the group session bounds)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    shape = await admin.describe_cluster()
    brokers = shape.get("brokers") or []
    broker = str(brokers[0]["node_id"]) if brokers else "0"
    values: dict[str, str] = {}
    for response in await admin.describe_configs(
        [ConfigResource(ConfigResourceType.BROKER, broker)]
    ):
        for error, _msg, _type, _name, entries in response.resources:
            if error == 0:
                values = {e[0]: e[1] for e in entries if e[1] is not None}
    # Without DescribeConfigs on the cluster the brokers' settings are unknown: then
    # min(3, brokers), what a production cluster uses.
    unknown = str(min(3, max(1, len(brokers))))
    return Cluster(
        brokers=max(1, len(brokers)),
        default_replication=int(values.get("default.replication.factor") or unknown),
        min_insync=int(values.get("min.insync.replicas") or 1),
        controller=shape.get("controller_id"),
        nodes=tuple(f"{b['node_id']} {b['host']}:{b['port']}" for b in brokers),
        session_timeout_ms=(int(values.get("group.min.session.timeout.ms") or 6000),
                            int(values.get("group.max.session.timeout.ms") or 1_800_000)),
    )  # fmt: skip


async def describe_topics(
    admin: AIOKafkaAdminClient, topics: list[str]
) -> dict[str, tuple[int, int]]:
    """``(partitions, replication factor)`` of each of ``topics`` that exists (the
    smallest replica count of its partitions)."""
    # Describe only topics that exist: a metadata request naming a missing topic makes a
    # broker with auto.create.topics.enable create it with num.partitions (often 1).
    present = set(await admin.list_topics())
    wanted = [t for t in topics if t in present]
    out: dict[str, tuple[int, int]] = {}
    if not wanted:
        return out
    for desc in await admin.describe_topics(wanted):
        parts = desc.get("partitions") or []
        if desc.get("error_code", 0) == 0 and parts:
            out[desc["topic"]] = (len(parts), min(len(p["replicas"]) for p in parts))
    return out


async def _partition_counts(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    return {t: parts for t, (parts, _) in (await describe_topics(admin, topics)).items()}


def check_layout(settings: Settings, layout: Layout) -> None:
    """Refuse settings the cluster cannot honour, before the worker joins the group.

    Raises
    ------
    ConfigError
        Naming the variable: a session timeout outside the brokers' group bounds (the
        group would refuse the member, and the worker would sit ready with no
        partitions), or snapshot chunks larger than the snapshots topic takes.

    """
    lo, hi = layout.session_timeout_ms
    ms = settings.session_timeout * 1000
    if not lo <= ms <= hi:
        msg = (
            f"RIVERBED_SESSION_TIMEOUT={settings.session_timeout:g}: the brokers accept "
            f"{lo / 1000:g} to {hi / 1000:g} s (group.min/max.session.timeout.ms)"
        )
        raise ConfigError(msg)
    room = layout.snapshots_max_bytes - CHUNK_OVERHEAD_BYTES
    if settings.snapshot_chunk_bytes > room:
        msg = (
            f"RIVERBED_SNAPSHOT_CHUNK_BYTES={settings.snapshot_chunk_bytes}: a chunk record "
            f"must fit the snapshots topic's max.message.bytes "
            f"({layout.snapshots_max_bytes}); use at most {room}"
        )
        raise ConfigError(msg)
