"""``riverbed doctor``: the cluster's shape and riverbed's topics as they are, and what to
change. It reads; it creates and alters nothing."""

from __future__ import annotations

from dataclasses import dataclass

from riverbed.config import Settings
from riverbed.kafka.clients import admin_client
from riverbed.kafka.topics import (
    NAMES,
    Cluster,
    TopicNames,
    describe_cluster,
    describe_topics,
    topic_configs,
)

__all__ = ["Report", "examine"]

SHOWN = ("min.insync.replicas", "retention.ms", "cleanup.policy", "max.message.bytes")


@dataclass(frozen=True)
class Report:
    """What ``riverbed doctor`` found."""

    cluster: Cluster
    replication: int  # what riverbed would create topics with now
    topics: dict[str, dict[str, str]]  # name -> partitions, replication and SHOWN configs
    advice: list[str]

    def lines(self) -> list[str]:
        c = self.cluster
        out = [
            f"cluster: {c.brokers} broker{'s' * (c.brokers != 1)} "
            f"({', '.join(c.nodes) or '?'}), controller {c.controller}",
            f"  default.replication.factor={c.default_replication}, "
            f"min.insync.replicas={c.min_insync}; riverbed creates topics with replication "
            f"factor {self.replication}",
            "riverbed's topics:",
        ]
        head = ("topic", "partitions", "replication", *SHOWN)
        rows = [head] + [
            (name, *(t.get(k, "-") for k in head[1:])) for name, t in self.topics.items()
        ]
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
        out += ["  " + "  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                for r in rows]  # fmt: skip
        out.append("advice:" if self.advice else "advice: none, riverbed's topics fit the cluster")
        out += [f"  - {a}" for a in self.advice]
        return out


async def examine(settings: Settings, *, timeout: float = 30.0) -> Report:
    """The cluster and riverbed's topics (those of ``settings``) as they are."""
    names = TopicNames.from_settings(settings)
    wanted = [getattr(names, n) for n in (*NAMES, "versions")]
    async with admin_client(settings, timeout) as admin:
        cluster = await describe_cluster(admin)
        described = await describe_topics(admin, wanted)
        configs = await topic_configs(admin, list(described))
    replication = cluster.replication(settings.replication)
    topics: dict[str, dict[str, str]] = {}
    advice: list[str] = []
    for name in wanted:
        if name not in described:
            topics[name] = {"partitions": "(missing: a worker creates it)"}
            continue
        parts, factor = described[name]
        cfg = configs.get(name, {})
        topics[name] = {"partitions": str(parts), "replication": str(factor),
                        **{k: cfg[k] for k in SHOWN if k in cfg}}  # fmt: skip
        if a := cluster.advice(name, factor):
            advice.append(a)
        if name == names.snapshots:
            insync = int(cfg.get("min.insync.replicas", cluster.min_insync))
            if factor >= 2 and insync < 2:
                advice.append(
                    f"{name} keeps the models with min.insync.replicas={insync}: a snapshot "
                    "acknowledged by one broker is lost with it; set it to 2 "
                    "(kafka-configs.sh --alter --add-config min.insync.replicas=2)"
                )
            if cfg.get("cleanup.policy", "compact") != "compact":
                advice.append(f"{name} must be compacted (cleanup.policy=compact)")
    if settings.replication and cluster.advice("", replication):
        advice.append(
            f"RIVERBED_REPLICATION={settings.replication} is below what this cluster needs; "
            "leave it unset (auto follows the cluster)"
        )
    return Report(cluster, replication, topics, advice)
