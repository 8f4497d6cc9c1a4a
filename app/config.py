"""Settings: the only reader of the environment.

Every setting is a ``RIVERBED_*`` environment variable with a default and a line of
documentation (the ``SPECS`` table, which ``riverbed config`` and the README print).
Values are parsed once into a frozen :class:`Settings`; a bad value raises
:class:`~riverbed.exceptions.ConfigError` naming the variable, so a worker never starts
half-configured.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from riverbed.exceptions import ConfigError

__all__ = ["SPECS", "Settings", "parse_broker"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def parse_broker(value: str) -> tuple[str, ...]:
    """Parse Faust's ``kafka://host:port`` form or plain ``host:port``, comma-separated.

    Examples
    --------
    >>> parse_broker("kafka://127.0.0.1:9092")
    ('127.0.0.1:9092',)
    >>> parse_broker("a:1, kafka://b:2")
    ('a:1', 'b:2')

    """
    out = []
    for raw in value.split(","):
        part = raw.strip()
        if part.startswith("kafka://"):
            part = part[len("kafka://") :]
        part = part.rstrip("/")
        m = re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})", part)
        if not m or not 0 < int(m.group(2)) < 65536:
            msg = f"{part!r} is not host:port (or kafka://host:port)"
            raise ValueError(msg)
        out.append(part)
    if not out:
        msg = "no broker address given"
        raise ValueError(msg)
    return tuple(out)


def _positive_int(value: str) -> int:
    n = int(value)
    if n <= 0:
        msg = f"{value!r} must be a positive integer"
        raise ValueError(msg)
    return n


def _non_negative_float(value: str) -> float:
    f = float(value)
    if not f >= 0 or f == float("inf"):
        msg = f"{value!r} must be a finite number >= 0"
        raise ValueError(msg)
    return f


def _positive_float(value: str) -> float:
    f = _non_negative_float(value)
    if f == 0:
        msg = f"{value!r} must be > 0"
        raise ValueError(msg)
    return f


def _choice(*options: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        v = value.strip().lower()
        if v not in options:
            msg = f"{value!r} is not one of {', '.join(options)}"
            raise ValueError(msg)
        return v

    return parse


_BOOLS = {"true": True, "1": True, "yes": True, "on": True,
          "false": False, "0": False, "no": False, "off": False}  # fmt: skip


def _bool(value: str) -> bool:
    v = _BOOLS.get(value.strip().lower())
    if v is None:
        msg = f"{value!r} is not a boolean (true/false, 1/0, yes/no, on/off)"
        raise ValueError(msg)
    return v


def _port(value: str) -> int:
    n = int(value)
    if not 0 < n < 65536:
        msg = f"{value!r} is not a TCP port"
        raise ValueError(msg)
    return n


def _name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]+", value):
        msg = f"{value!r} may only hold letters, digits, '.', '_' and '-'"
        raise ValueError(msg)
    return value


def _prefix(value: str) -> str:
    if value and not re.fullmatch(r"[A-Za-z0-9._-]+", value):
        msg = f"{value!r} may only hold letters, digits, '.', '_' and '-'"
        raise ValueError(msg)
    return value


_LOG_LEVELS = {
    "debug": "debug",
    "info": "info",
    "warn": "warn",
    "warning": "warn",
    "error": "error",
    "crit": "crit",
    "critical": "crit",
}


def _log_level(value: str) -> str:
    """A log level in Faust's spelling (``warn``, ``crit``)."""
    v = _LOG_LEVELS.get(value.lower())
    if v is None:
        msg = f"{value!r} is not one of debug, info, warning, error, critical"
        raise ValueError(msg)
    return v


def _model(value: str) -> str:
    if not value.strip():
        msg = "model name is empty"
        raise ValueError(msg)
    return value.strip()


@dataclass(frozen=True)
class _Spec:
    field: str
    default: str
    parse: Callable[[str], Any]
    doc: str

    @property
    def env(self) -> str:
        return "RIVERBED_" + self.field.upper()


SPECS: tuple[_Spec, ...] = (
    _Spec(
        "broker",
        "kafka://127.0.0.1:9092",
        parse_broker,
        "Kafka bootstrap servers: kafka://host:port or host:port, comma-separated.",
    ),
    _Spec(
        "app_id",
        "riverbed",
        _name,
        "Consumer group and prefix of Faust's internal topics; one per application.",
    ),
    _Spec(
        "topic_prefix",
        "riverbed.",
        _prefix,
        "Prefix of every riverbed topic (events, labels, predictions, metrics, dlq).",
    ),
    _Spec(
        "model", "logreg", _model, "Catalog model name (see `riverbed models`) or module:factory."
    ),
    _Spec(
        "partitions",
        "4",
        _positive_int,
        "Partitions of the topics riverbed creates; events and labels must match.",
    ),
    _Spec("replication", "1", _positive_int, "Replication factor of the topics riverbed creates."),
    _Spec(
        "web_host",
        "127.0.0.1",
        _name,
        "Interface of the HTTP server (/metrics, /health, /ready, /models).",
    ),
    _Spec("web_port", "6066", _port, "Port of the HTTP server."),
    _Spec(
        "pending_max",
        "100000",
        _positive_int,
        "Per partition: most events kept waiting for a delayed label; oldest evicted first.",
    ),
    _Spec(
        "pending_max_bytes",
        str(64 * 1024 * 1024),
        _positive_int,
        "Per partition: most bytes (of event records) kept waiting for delayed labels; "
        "oldest evicted first.",
    ),
    _Spec(
        "max_features",
        "10000",
        _positive_int,
        "Per partition: most distinct feature names a model is given; values of new names "
        "past it are dropped and counted (riverbed_features_dropped).",
    ),
    _Spec(
        "pending_ttl",
        "3600",
        _non_negative_float,
        "Seconds of stream time an unlabelled event waits for its label (0: forever).",
    ),
    _Spec(
        "max_record_bytes",
        "1000000",
        _positive_int,
        "Larger event or label values go to the dead-letter topic.",
    ),
    _Spec(
        "batch_max",
        "1000",
        _positive_int,
        "Most records one fetch hands to the agent (Faust's broker_max_poll_records).",
    ),
    _Spec(
        "fetch_max_wait",
        "0.02",
        _positive_float,
        "Seconds the broker may hold a fetch for new records while records flow (aiokafka "
        "fetch_max_wait_ms); an idle worker uses Kafka's default 0.5 s.",
    ),
    _Spec(
        "consumer_thread",
        "false",
        _bool,
        "Run Kafka's consumer in Faust's own thread: heartbeats go on while a very slow "
        "model holds the loop; ~15% less throughput than on the event loop (the default).",
    ),
    _Spec(
        "snapshot_every",
        "10000",
        _positive_int,
        "Snapshot the changed partitions after this many records over all of them (and "
        "commit up to the snapshots).",
    ),
    _Spec(
        "snapshot_interval",
        "10",
        _positive_float,
        "...or after this many seconds, whichever comes first.",
    ),
    _Spec(
        "snapshot_key",
        "",
        str,
        "HMAC key signing snapshots; empty: a random key kept in .riverbed/snapshot.key.",
    ),
    _Spec(
        "snapshot_chunk_bytes",
        "512000",
        _positive_int,
        "Snapshots larger than this are written as several chunk records.",
    ),
    _Spec(
        "drift_detector",
        "adwin",
        _choice("adwin", "page_hinkley", "kswin", "none"),
        "River drift detector watching each partition's prequential error.",
    ),
    _Spec(
        "drift_action",
        "none",
        _choice("none", "reset"),
        "On drift: only report it (none), or also restart the model (reset).",
    ),
    _Spec(
        "metrics_interval",
        "10",
        _positive_float,
        "Seconds between per-partition records on the metrics topic.",
    ),
    _Spec(
        "session_timeout",
        "45",
        _positive_float,
        "Seconds without heartbeats before Kafka gives a dead worker's partitions away.",
    ),
    _Spec(
        "data_dir",
        str(PROJECT_ROOT / ".riverbed" / "worker"),
        str,
        "Faust's data directory for this worker.",
    ),
    _Spec("log_level", "info", _log_level, "Log level: debug, info, warning, error."),
)


@dataclass(frozen=True)
class Settings:
    """Frozen riverbed settings; build with :meth:`from_env`.

    Examples
    --------
    >>> s = Settings.from_env({"RIVERBED_PARTITIONS": "2", "RIVERBED_TOPIC_PREFIX": "t."})
    >>> s.partitions, s.topic("events"), s.bootstrap
    (2, 't.events', '127.0.0.1:9092')
    >>> Settings.from_env({"RIVERBED_PARTITIONS": "zero"})
    Traceback (most recent call last):
    ...
    riverbed.exceptions.ConfigError: RIVERBED_PARTITIONS='zero': invalid literal for int() ...

    """

    broker: tuple[str, ...]
    app_id: str
    topic_prefix: str
    model: str
    partitions: int
    replication: int
    web_host: str
    web_port: int
    pending_max: int
    pending_max_bytes: int
    max_features: int
    pending_ttl: float
    max_record_bytes: int
    batch_max: int
    fetch_max_wait: float
    consumer_thread: bool
    snapshot_every: int
    snapshot_interval: float
    snapshot_key: str
    snapshot_chunk_bytes: int
    drift_detector: str
    drift_action: str
    metrics_interval: float
    session_timeout: float
    data_dir: str
    log_level: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every ``RIVERBED_*`` variable once; unknown ``RIVERBED_*`` names are errors."""
        env = os.environ if environ is None else environ
        known = {spec.env for spec in SPECS}
        unknown = sorted(k for k in env if k.startswith("RIVERBED_") and k not in known)
        if unknown:
            msg = f"unknown setting {unknown[0]} (known: {', '.join(s.env for s in SPECS)})"
            raise ConfigError(msg)
        values: dict[str, Any] = {}
        for spec in SPECS:
            raw = env.get(spec.env, spec.default)
            try:
                values[spec.field] = spec.parse(raw)
            except ValueError as exc:
                msg = f"{spec.env}={raw!r}: {exc}"
                raise ConfigError(msg) from None
        return cls(**values)

    @property
    def bootstrap(self) -> str:
        """Bootstrap servers in aiokafka's ``host:port,host:port`` form."""
        return ",".join(self.broker)

    @property
    def faust_broker(self) -> str:
        """Bootstrap servers in Faust's ``kafka://host:port;...`` form."""
        return ";".join(f"kafka://{b}" for b in self.broker)

    def kafka_client(self) -> dict[str, Any]:
        """Connection arguments every aiokafka client of riverbed takes (none yet beyond
        the bootstrap servers)."""
        return {}

    def topic(self, name: str) -> str:
        """Full name of one of riverbed's topics, with the prefix."""
        return f"{self.topic_prefix}{name}"

    def describe(self) -> list[tuple[str, str, str]]:
        """``(variable, current value, documentation)`` for every setting."""
        out = []
        for spec in SPECS:
            value = getattr(self, spec.field)
            shown = ",".join(value) if isinstance(value, tuple) else str(value)
            if spec.field == "snapshot_key" and value:
                shown = "<set>"  # a secret: never printed
            out.append((spec.env, shown, spec.doc))
        return out
