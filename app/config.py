"""Settings: the only reader of the environment.

Every setting is a ``RIVERBED_*`` environment variable with a default and a line of
documentation (the ``SPECS`` table, which ``riverbed config`` and the README print).
Values are parsed once into a frozen :class:`Settings`; a bad value raises
:class:`~riverbed.exceptions.ConfigError` naming the variable, so a worker never starts
half-configured.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from riverbed.exceptions import ConfigError

__all__ = ["SECRETS", "SPECS", "Settings", "parse_broker"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Settings whose values are never printed (riverbed config, logs, /models).
SECRETS = frozenset({"snapshot_key", "sasl_password", "http_token"})


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


def _choice(*options: str, upper: bool = False) -> Callable[[str], str]:
    """A parser of one of ``options`` (case-insensitive; given back in their case)."""

    def parse(value: str) -> str:
        v = value.strip().upper() if upper else value.strip().lower()
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


def _file(value: str) -> str:
    """A readable file, or empty (not used)."""
    if value and not Path(value).is_file():
        msg = f"{value!r} is not a file"
        raise ValueError(msg)
    return value


def _topic(value: str) -> str:
    """A full topic name, or empty (the prefixed default)."""
    if value and (not re.fullmatch(r"[A-Za-z0-9._-]+", value) or len(value) > 249):
        msg = f"{value!r} is not a Kafka topic name (letters, digits, '.', '_', '-')"
        raise ValueError(msg)
    return value


def _path(value: str) -> str:
    """A dotted path into a JSON record (``user.age``)."""
    v = value.strip()
    if not v or any(not part for part in v.split(".")):
        msg = f"{value!r} is not a dotted path (like id or user.id)"
        raise ValueError(msg)
    return v


def _id_path(value: str) -> str:
    return "@key" if value.strip() == "@key" else _path(value)


def _paths(value: str) -> tuple[str, ...]:
    """Comma-separated dotted paths (may be empty)."""
    return tuple(_path(p) for p in value.split(",") if p.strip())


def _features(value: str) -> tuple[str, ...]:
    """``x`` (one object), ``*``, or comma-separated dotted paths and globs."""
    parts = tuple(p.strip() for p in value.split(",") if p.strip())
    if not parts:
        msg = "no feature path given (x, *, or paths like amount,user.*)"
        raise ValueError(msg)
    for p in parts:
        if p != "*":
            _path(p)
    return parts


def _json_label(value: str) -> Any:
    """A JSON label value (``false``, ``0``, ``"legit"``), or empty (none)."""
    if not value.strip():
        return None
    try:
        v = json.loads(value)
    except ValueError:
        msg = f'{value!r} is not a JSON value (true, 0, "legit")'
        raise ValueError(msg) from None
    if v is None or not isinstance(v, str | int | float):
        msg = f"{value!r} must be a JSON string, number or boolean"
        raise ValueError(msg)
    return v


def _url(value: str) -> str:
    """An http(s) URL with a host (and port), or empty."""
    if not value:
        return value
    m = re.fullmatch(r"(https?)://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+)(:\d{1,5})?/?", value.strip())
    if not m:
        msg = f"{value!r} is not an http(s)://host[:port] URL"
        raise ValueError(msg)
    return value.strip().rstrip("/")


def _urls(value: str) -> tuple[str, ...]:
    """Comma-separated http(s)://host[:port] URLs (may be empty)."""
    return tuple(_url(u) for u in value.split(",") if u.strip())


def _processes(value: str) -> int:
    """A positive number of processes, or ``auto`` (the CPUs this process may use)."""
    if value.strip().lower() == "auto":
        return (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1)
        )
    return _positive_int(value)


def _instance_id(value: str) -> str:
    if value and not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", value):
        msg = f"{value!r} may only hold letters, digits, '.', '_' and '-'"
        raise ValueError(msg)
    return value


def _metric_name(value: str) -> str:
    from riverbed.learning.quality import choose

    v = value.strip().lower()
    if v:
        choose(v)
    return v


def _threshold(value: str) -> str:
    from riverbed.learning.threshold import parse_threshold

    parse_threshold(value)
    return value.strip().lower()


def _replication(value: str) -> int:
    """A replication factor, or ``auto`` (0): the cluster's default.

    >>> _replication("auto"), _replication("3")
    (0, 3)
    """
    return 0 if value.strip().lower() == "auto" else _positive_int(value)


def _non_negative_int(value: str) -> int:
    n = int(value)
    if n < 0:
        msg = f"{value!r} must be an integer >= 0"
        raise ValueError(msg)
    return n


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
        "security_protocol",
        "PLAINTEXT",
        _choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL", upper=True),
        "How every Kafka client connects: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    ),
    _Spec(
        "sasl_mechanism",
        "PLAIN",
        _choice("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", upper=True),
        "SASL mechanism (SASL_* protocols): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.",
    ),
    _Spec("sasl_username", "", str, "SASL user name (SASL_* protocols)."),
    _Spec("sasl_password", "", str, "SASL password (SASL_* protocols); never printed."),
    _Spec(
        "ssl_cafile",
        "",
        _file,
        "PEM file of the CA(s) that signed the brokers' certificates (SSL, SASL_SSL); "
        "empty: the system's trust store.",
    ),
    _Spec(
        "ssl_certfile",
        "",
        _file,
        "PEM client certificate, for brokers that require mutual TLS (with SSL_KEYFILE).",
    ),
    _Spec("ssl_keyfile", "", _file, "PEM private key of RIVERBED_SSL_CERTFILE."),
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
        "events_topic",
        "",
        _topic,
        "Full name of the events topic (an existing topic of yours); empty: <prefix>events.",
    ),
    _Spec("labels_topic", "", _topic, "Full name of the labels topic; empty: <prefix>labels."),
    _Spec(
        "predictions_topic",
        "",
        _topic,
        "Full name of the predictions topic; empty: <prefix>predictions.",
    ),
    _Spec(
        "event_id",
        "id",
        _id_path,
        "Dotted path of an event's id (numbers become strings); @key: the record key.",
    ),
    _Spec(
        "event_features",
        "x",
        _features,
        "The features: one object's path (x: its fields); or paths and globs "
        "(amount,country,user.*), or * (all fields but id, label and time). Nested "
        "objects flatten to dotted names; nulls are left out.",
    ),
    _Spec("event_label", "y", _path, "Dotted path of an event's inline label (optional)."),
    _Spec(
        "event_time",
        "ts",
        _path,
        "Dotted path of an event's time (optional): epoch ms, or ISO-8601 with a zone.",
    ),
    _Spec("label_id", "id", _id_path, "Dotted path of a label record's id; @key: the record key."),
    _Spec("label_value", "y", _path, "Dotted path of a label record's label."),
    _Spec(
        "predict_max_bytes",
        "4194304",
        _positive_int,
        "Largest POST /predict body (bytes); larger is a 413.",
    ),
    _Spec(
        "predict_max_records",
        "1000",
        _positive_int,
        "Most records in one POST /predict body; more is a 413.",
    ),
    _Spec(
        "max_depth",
        "32",
        _positive_int,
        "Levels of objects an event may nest (the record is 1); deeper is a dead letter.",
    ),
    _Spec(
        "name_cache_max_bytes",
        str(16 * 1024 * 1024),
        _positive_int,
        "Bytes of the cache of dotted feature names (built from nested keys); past it the "
        "cache starts afresh (riverbed_name_cache_resets_total).",
    ),
    _Spec(
        "quarantine_after",
        "2",
        _positive_int,
        "Worker processes that may die (a signal, the OOM killer) while handling one record "
        "before the next start dead-letters it (stage quarantine) instead of handling it.",
    ),
    _Spec(
        "prediction_fields",
        "",
        _paths,
        "Event paths copied into each prediction (e.g. txn_id), comma-separated.",
    ),
    _Spec(
        "label_default",
        "",
        _json_label,
        "Labels by absence: the JSON label (e.g. false) an event is learned with when no "
        "label came within RIVERBED_LABEL_DEFAULT_AFTER; empty: none.",
    ),
    _Spec(
        "label_default_after",
        "0",
        _non_negative_float,
        "Seconds of stream time an event waits before RIVERBED_LABEL_DEFAULT applies.",
    ),
    _Spec(
        "model",
        "logreg",
        _model,
        "Catalog model name (see `riverbed models`) or module:factory; a comma-separated "
        "list runs candidates, the first the champion at start.",
    ),
    _Spec(
        "partitions",
        "4",
        _positive_int,
        "Partitions of the topics riverbed creates; events and labels must match.",
    ),
    _Spec(
        "replication",
        "auto",
        _replication,
        "Replication factor of the topics riverbed creates; auto: the cluster's "
        "default.replication.factor (at most its brokers).",
    ),
    _Spec(
        "web_host",
        "127.0.0.1",
        _name,
        "Interface of the HTTP server (/metrics, /health, /ready, /models).",
    ),
    _Spec("web_port", "6066", _port, "Port of the HTTP server."),
    _Spec(
        "web_advertised_url",
        "",
        _url,
        "URL other workers of the group reach this one at (forwarded /predict requests); "
        "empty: http://<web host>:<web port>.",
    ),
    _Spec(
        "peer_urls",
        "",
        _urls,
        "Advertised URLs of the group's other workers that /predict may forward the Bearer "
        "token to, comma-separated; empty: only workers on this worker's own host.",
    ),
    _Spec(
        "http_token",
        "",
        str,
        "Bearer token /predict and the model export require (Authorization: Bearer ...); "
        "empty: none. Never printed.",
    ),
    _Spec(
        "shadow_predictions",
        "false",
        _bool,
        "Publish the challengers' predictions (RIVERBED_MODEL's other candidates) to "
        "<prefix>predictions.shadow.",
    ),
    _Spec(
        "promotion",
        "none",
        _choice("none", "auto"),
        "none: the first of RIVERBED_MODEL stays champion; auto: a challenger significantly "
        "better over the promotion window replaces it (per partition).",
    ),
    _Spec(
        "promotion_window",
        "1000",
        _positive_int,
        "Labelled events a promotion compares the candidates over (at most one promotion "
        "per window).",
    ),
    _Spec(
        "warmup",
        "replay",
        _choice("replay", "fresh"),
        "A candidate added to RIVERBED_MODEL: replay the retained events and labels into it "
        "before its partition goes live (replay), or start it fresh (fresh).",
    ),
    _Spec(
        "promotion_min_positives",
        "30",
        _non_negative_int,
        "Events of the rarer class the promotion window must hold before a promotion "
        "(a test on fewer positives says little).",
    ),
    _Spec(
        "metric",
        "",
        _metric_name,
        "Prequential metric: accuracy, balanced_accuracy, f1, precision, recall, mcc, "
        "rocauc (exact), prauc (average precision), recall_at_fpr:<f>, "
        "precision_at_recall:<r>, logloss (classifiers), mae, rmse, mse, r2 (regressors); "
        "empty: accuracy, mae, or rocauc (anomaly) by the model's task.",
    ),
    _Spec(
        "threshold",
        "",
        _threshold,
        "Binary classifiers' decision: the positive class's probability above which "
        "y_pred is positive (a number; empty: the argmax, i.e. 0.5), or a target set on "
        "the rolling window: fpr:0.01, recall:0.8, alert_rate:0.005.",
    ),
    _Spec(
        "label_maturity",
        "auto",
        _choice("auto", "on", "off"),
        "on: a label is learned when its event is mature (RIVERBED_LABEL_DEFAULT_AFTER of "
        "stream time), in event order, early or by absence; auto: on whenever "
        "RIVERBED_LABEL_DEFAULT is set.",
    ),
    _Spec(
        "min_labels",
        "100",
        _non_negative_int,
        "Labels the champion learns before its predictions carry a decision (until then "
        '"warming": true and y_pred null), with maturity or a threshold.',
    ),
    _Spec(
        "join_idle",
        "0",
        _non_negative_float,
        "Seconds a partition's events (or labels) wait for the other topic's partition "
        "when it has nothing buffered and is caught up (Kafka Streams' max.task.idle.ms); "
        "0: wait only for records already on the brokers.",
    ),
    _Spec(
        "metric_window",
        "1000",
        _non_negative_int,
        "Labelled events in the rolling version of the metric (River's utils.Rolling), "
        "reported next to the cumulative one; 0: none.",
    ),
    _Spec(
        "processes",
        "1",
        _processes,
        "Worker processes on this machine under one supervisor (riverbed worker "
        "--processes); auto: one per CPU.",
    ),
    _Spec(
        "restart_intensity",
        "5",
        _non_negative_int,
        "With --processes: restarts of one slot within RIVERBED_RESTART_PERIOD after which "
        "that slot stays down (the others go on; all down: the supervisor exits 1).",
    ),
    _Spec(
        "restart_period",
        "60",
        _positive_float,
        "Seconds over which RIVERBED_RESTART_INTENSITY counts a slot's restarts.",
    ),
    _Spec(
        "warm_spare",
        "on",
        _choice("on", "off"),
        "With --processes: keep one worker process started and waiting, which takes the "
        "slot of a child that dies (its partitions predict again ~1 s sooner; the spare "
        "costs its memory, shown in /health).",
    ),
    _Spec(
        "group_instance_id",
        "",
        _instance_id,
        "Static group membership id (Kafka group.instance.id): a restarted worker takes "
        "its partitions back without a rebalance; the supervisor sets one per slot. Empty: "
        "dynamic membership.",
    ),
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
        "version_interval",
        "600",
        _non_negative_float,
        "Seconds between a partition's versions: a snapshot also copied to the versions "
        "topic (riverbed versions, export --version, rollback); a promotion or a manual "
        "operation makes one at once; 0: every snapshot is a version.",
    ),
    _Spec(
        "versions_retention",
        "604800",
        _positive_float,
        "Seconds the versions topic keeps versions (its retention.ms, set when riverbed "
        "creates it).",
    ),
    _Spec(
        "checkpoint_capture",
        "auto",
        _choice("auto", "inline", "fork"),
        "How a checkpoint captures the learners: pickle them in the worker (inline), in "
        "a forked child that holds the loop only for the fork (fork; POSIX), or the one "
        "of the two measured to hold the loop less, forked while a learner's size is not "
        "known yet (auto).",
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
        "20",
        _positive_float,
        "Seconds without heartbeats before Kafka gives a dead worker's partitions away "
        "(measured: a lost machine's partitions back in 21 s; slow models' fetches held "
        "heartbeats at most 4.8 s; bench/failover.py).",
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
    security_protocol: str
    sasl_mechanism: str
    sasl_username: str
    sasl_password: str = field(repr=False)
    ssl_cafile: str
    ssl_certfile: str
    ssl_keyfile: str
    app_id: str
    topic_prefix: str
    events_topic: str
    labels_topic: str
    predictions_topic: str
    event_id: str
    event_features: tuple[str, ...]
    event_label: str
    event_time: str
    label_id: str
    label_value: str
    prediction_fields: tuple[str, ...]
    max_depth: int
    restart_intensity: int
    restart_period: float
    warm_spare: str
    quarantine_after: int
    name_cache_max_bytes: int
    predict_max_bytes: int
    predict_max_records: int
    label_default: Any
    label_default_after: float
    model: str
    partitions: int
    replication: int  # 0: auto, the cluster's default (app/kafka/topics.py resolves it)
    web_host: str
    web_port: int
    web_advertised_url: str
    peer_urls: tuple[str, ...]
    http_token: str = field(repr=False)
    shadow_predictions: bool
    promotion: str
    promotion_window: int
    promotion_min_positives: int
    threshold: str
    label_maturity: str
    min_labels: int
    join_idle: float
    warmup: str
    metric: str
    metric_window: int
    processes: int
    group_instance_id: str
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
    version_interval: float
    versions_retention: float
    checkpoint_capture: str
    snapshot_key: str = field(repr=False)
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
        settings = cls(**values)
        settings._check()
        return settings

    def _check(self) -> None:
        """Rules that tie settings together; each error names a variable."""
        sasl = self.security_protocol.startswith("SASL")
        if sasl and not (self.sasl_username and self.sasl_password):
            missing = "USERNAME" if not self.sasl_username else "PASSWORD"
            msg = (
                f"RIVERBED_SASL_{missing} is empty; "
                f"RIVERBED_SECURITY_PROTOCOL={self.security_protocol} needs it"
            )
            raise ConfigError(msg)
        tls = self.security_protocol in ("SSL", "SASL_SSL")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, name) and not tls:
                msg = (
                    f"RIVERBED_{name.upper()} is set but RIVERBED_SECURITY_PROTOCOL="
                    f"{self.security_protocol} does not use TLS (SSL or SASL_SSL)"
                )
                raise ConfigError(msg)
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            given, missing = (
                ("CERTFILE", "KEYFILE") if self.ssl_certfile else ("KEYFILE", "CERTFILE")
            )
            msg = f"RIVERBED_SSL_{missing} is empty; RIVERBED_SSL_{given} needs it (mutual TLS)"
            raise ConfigError(msg)
        if (self.label_default is None) != (self.label_default_after == 0):
            msg = (
                "RIVERBED_LABEL_DEFAULT and RIVERBED_LABEL_DEFAULT_AFTER go together: set "
                "both (a label and seconds > 0) or neither"
            )
            raise ConfigError(msg)
        if self.label_default is not None and 0 < self.pending_ttl <= self.label_default_after:
            msg = (
                f"RIVERBED_LABEL_DEFAULT_AFTER={self.label_default_after:g} must be shorter "
                f"than RIVERBED_PENDING_TTL={self.pending_ttl:g}, or events expire first"
            )
            raise ConfigError(msg)
        if self.label_maturity == "on" and self.label_default is None:
            msg = (
                "RIVERBED_LABEL_MATURITY=on needs RIVERBED_LABEL_DEFAULT and "
                "RIVERBED_LABEL_DEFAULT_AFTER: an event is mature that long after its time"
            )
            raise ConfigError(msg)
        if self.promotion == "auto" and self.metric:
            from riverbed.learning.quality import choose

            if choose(self.metric).test is None:
                msg = (
                    f"RIVERBED_METRIC={self.metric} has no paired test riverbed can decide a "
                    "promotion by (accuracy: McNemar; rocauc: DeLong; logloss, mae, mse, "
                    "rmse: paired z); with RIVERBED_PROMOTION=auto choose one of those, or "
                    "RIVERBED_PROMOTION=none"
                )
                raise ConfigError(msg)
        names = {self.topic_names()[n] for n in ("events", "labels", "predictions")}
        if len(names) < 3:
            msg = (
                "RIVERBED_EVENTS_TOPIC, RIVERBED_LABELS_TOPIC and RIVERBED_PREDICTIONS_TOPIC "
                "must be three different topics"
            )
            raise ConfigError(msg)

    @property
    def maturity(self) -> bool:
        """RIVERBED_LABEL_MATURITY resolved: on, or auto with a label default."""
        if self.label_maturity == "auto":
            return self.label_default is not None
        return self.label_maturity == "on"

    @property
    def bootstrap(self) -> str:
        """Bootstrap servers in aiokafka's ``host:port,host:port`` form."""
        return ",".join(self.broker)

    @property
    def faust_broker(self) -> str:
        """Bootstrap servers in Faust's ``kafka://host:port;...`` form."""
        return ";".join(f"kafka://{b}" for b in self.broker)

    def topic(self, name: str) -> str:
        """Full name of one of riverbed's topics: the prefixed default, or the name set
        for events, labels and predictions."""
        own = {"events": self.events_topic, "labels": self.labels_topic,
               "predictions": self.predictions_topic}.get(name)  # fmt: skip
        return own or f"{self.topic_prefix}{name}"

    @property
    def advertised_url(self) -> str:
        """Where the other workers of the group reach this worker's HTTP server."""
        return self.web_advertised_url or f"http://{self.web_host}:{self.web_port}"

    def topic_names(self) -> dict[str, str]:
        """``{"events": full name, ...}`` for the user-facing topics."""
        return {n: self.topic(n) for n in ("events", "labels", "predictions", "metrics", "dlq")}

    def describe(self) -> list[tuple[str, str, str]]:
        """``(variable, current value, documentation)`` for every setting."""
        out = []
        for spec in SPECS:
            value = getattr(self, spec.field)
            if isinstance(value, tuple):
                shown = ",".join(value)
            elif value is None:
                shown = ""
            elif spec.field == "label_default":
                shown = json.dumps(value)
            else:
                shown = str(value)
            if spec.field in SECRETS and value:
                shown = "<set>"  # a secret: never printed
            out.append((spec.env, shown, spec.doc))
        return out
