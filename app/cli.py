"""``riverbed``: project commands plus the Faust app's own command line.

``broker``, ``produce``, ``tail``, ``models``, ``config``, ``export``, ``inspect`` and
``demo`` are riverbed's;
anything else (``worker``, ``agents``, ``--help`` of Faust ...) goes to Faust's
command line of the app built from the settings, so ``riverbed worker -l info`` is
exactly ``faust -A ... worker -l info``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from riverbed.config import Settings
from riverbed.exceptions import ConfigError, RiverbedError

if TYPE_CHECKING:
    # What add_subparsers() returns (argparse names its class only privately).
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["main"]

PROJECT_COMMANDS = {
    "broker", "produce", "tail", "models", "config", "demo", "export", "inspect", "doctor",
    "versions", "promote", "pin", "unpin", "rollback", "import",
}  # fmt: skip
HELP = ("-h", "--help")
# Options of `produce` that only a dataset takes, and those only --file takes.
DATASET_OPTIONS = ("dataset", "key", "seed", "label_delay", "no_labels", "id_prefix", "drift_at")
FILE_OPTIONS = ("key_field", "topic")


def _fail(msg: str, code: int = 2) -> int:
    print(f"riverbed: error: {msg}", file=sys.stderr)
    return code


def _unreachable(settings: Settings, exc: BaseException) -> str:
    """The one line saying that Kafka does not answer (no traceback)."""
    detail = str(exc) or type(exc).__name__
    if not detail.startswith(type(exc).__name__):
        detail = f"{type(exc).__name__}: {detail}"
    return (
        f"cannot reach Kafka at RIVERBED_BROKER={settings.bootstrap} ({detail}); "
        "start one with `riverbed broker start` or `make kafka-up`"
    )


def _is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the brokers did not answer (in time)."""
    from riverbed.kafka.clients import unreachable

    return unreachable(exc)


def _model_error(settings: Settings) -> str | None:
    """Why ``RIVERBED_MODEL`` names no model (or one that cannot be snapshotted), or
    None when it does."""
    from riverbed import models
    from riverbed.learning.state import check_picklable

    try:
        for spec in models.lineup(settings.model):
            check_picklable(spec)
    except models.UnknownModel as exc:
        return f"RIVERBED_MODEL={settings.model!r}: {exc}"
    except ConfigError as exc:
        return str(exc)
    return None


def _cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    from riverbed.devtools.broker import LocalBroker, answers_metadata, kafka_version

    if args.nodes > 1:
        return _broker_cluster(args, settings)
    broker = LocalBroker.from_settings(settings, port=args.port)
    if args.action == "fetch":
        print(f"Kafka {kafka_version()} jars in {broker.fetch()}")
    elif args.action == "start":
        if answers_metadata(broker.bootstrap) and broker.pid() is None:
            print(f"a Kafka broker already answers at {broker.bootstrap}; using it")
            return 0
        import time

        t0 = time.monotonic()
        was = broker.pid()
        bootstrap = broker.start()
        pid = broker.pid()
        if was is not None:
            print(f"Kafka {kafka_version()} already running at {bootstrap} (pid {pid})")
        else:
            took = time.monotonic() - t0
            print(f"Kafka {kafka_version()} ready at {bootstrap} (pid {pid}, {took:.1f} s)")
    elif args.action == "stop":
        if broker.stop():
            print(f"stopped the broker at {broker.bootstrap}")
        else:
            print(f"no broker started by riverbed is running at {broker.bootstrap}")
    elif args.action == "status":
        pid = broker.pid()
        if pid is not None and broker.running():
            print(f"running: Kafka {kafka_version()} at {broker.bootstrap} (pid {pid})")
            return 0
        if answers_metadata(broker.bootstrap):
            print(f"a Kafka broker not started by riverbed answers at {broker.bootstrap}")
            return 0
        print(f"stopped: nothing answers at {broker.bootstrap}")
        return 3
    elif args.action == "wipe":
        broker.wipe()
        print(f"deleted {broker.data_dir}")
    return 0


def _broker_cluster(args: argparse.Namespace, settings: Settings) -> int:
    """``riverbed broker ACTION --nodes N``: a local KRaft cluster of N nodes."""
    from riverbed.devtools.broker import LocalBroker, LocalCluster, kafka_version

    port = args.port or LocalBroker.from_settings(settings).port
    cluster = LocalCluster(port=port, nodes=args.nodes)
    if args.action == "fetch":
        print(f"Kafka {kafka_version()} jars in {cluster.brokers[0].fetch()}")
    elif args.action == "start":
        bootstrap = cluster.start()
        print(f"Kafka {kafka_version()}: {args.nodes} nodes ready at {bootstrap} "
              f"(RIVERBED_BROKER={bootstrap})")  # fmt: skip
    elif args.action == "stop":
        stopped = cluster.stop()
        print(f"stopped the {args.nodes} nodes at {cluster.bootstrap}" if stopped
              else f"no cluster started by riverbed is running at {cluster.bootstrap}")  # fmt: skip
    elif args.action == "status":
        up = [b.bootstrap for b in cluster.brokers if b.pid() is not None and b.running()]
        print(f"{len(up)} of {args.nodes} nodes running: {', '.join(up) or 'none'}")
        return 0 if len(up) == args.nodes else 3
    elif args.action == "wipe":
        cluster.wipe()
        print(f"deleted {cluster.data_dir}")
    return 0


def _cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    from riverbed.devtools.produce import produce

    parser: argparse.ArgumentParser = args.parser
    if args.file is not None:
        for dest in DATASET_OPTIONS:
            if getattr(args, dest) != parser.get_default(dest):
                flag = "--" + dest.replace("_", "-")
                parser.error(f"{flag} applies to datasets, not to --file")
        return _produce_file(args, settings)
    for dest in FILE_OPTIONS:
        if getattr(args, dest) is not None:
            parser.error(f"--{dest.replace('_', '-')} applies to --file only")
    stats = asyncio.run(
        produce(
            settings,
            dataset=args.dataset,
            limit=args.limit,
            rate=args.rate,
            key=args.key,
            seed=args.seed,
            label_delay=args.label_delay,
            labels=not args.no_labels,
            id_prefix=args.id_prefix,
            drift_at=args.drift_at,
        )
    )
    rate = stats.events / stats.seconds if stats.seconds else 0.0
    print(
        f"sent {stats.events} events and {stats.labels} labels to "
        f"{settings.topic('events')} in {stats.seconds:.2f} s ({rate:,.0f} events/s); "
        f"ids {stats.id_prefix}-0..{stats.events - 1}"
    )
    return 0


def _produce_file(args: argparse.Namespace, settings: Settings) -> int:
    from riverbed.devtools.produce import produce_file

    try:
        source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as exc:
        return _fail(f"cannot read --file {args.file}: {exc.strerror or exc}")
    with source:
        stats = asyncio.run(
            produce_file(
                settings,
                source,
                topic=args.topic or "events",
                key_field=args.key_field,
                limit=args.limit,
                rate=args.rate,
            )
        )
    rate = stats.records / stats.seconds if stats.seconds else 0.0
    notes = []
    if stats.blank:
        notes.append(f"skipped {stats.blank} blank lines")
    if stats.not_objects:
        notes.append(f"{stats.not_objects} not JSON objects (the worker dead-letters them)")
    if stats.keyless:
        notes.append(f"{stats.keyless} without {args.key_field} (sent with no key)")
    print(
        f"sent {stats.records} records from {'stdin' if args.file == '-' else args.file} "
        f"to {stats.topic} in {stats.seconds:.2f} s ({rate:,.0f} records/s)"
        + "".join(f"; {n}" for n in notes)
    )
    return 0


def _cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    from riverbed.devtools.tail import tail

    topic = args.topic
    if topic in {"events", "labels", "predictions", "metrics", "dlq"}:
        topic = settings.topic(topic)
    asyncio.run(
        tail(
            settings,
            topic,
            from_beginning=not args.from_end,
            limit=args.limit,
            idle_timeout=args.idle_timeout,
        )
    )
    return 0


def _cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from riverbed.kafka.doctor import examine

    report = asyncio.run(examine(settings))
    print("\n".join(report.lines()))
    return 0


def _cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from riverbed import models

    for name in models.available():
        spec = models.spec(name)
        doc = (spec.factory.__doc__ or "").strip().splitlines()[0]
        print(f"{name:10} {spec.task:15} {spec.metric.__name__:9} {doc}")
    return 0


def _cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    bad_model = _model_error(settings)
    if bad_model:
        return _fail(bad_model)  # as a worker would, before listing a config it refuses
    for env, value, doc in settings.describe():
        print(f"{env}={value}\n    {doc}")
    return 0


def _cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    import time
    from pathlib import Path

    from riverbed.serving.export import dumps, load_snapshot

    as_mlflow = args.format == "mlflow"
    out = args.out or f"model-p{args.partition}" + ("-mlflow" if as_mlflow else ".pkl")
    if as_mlflow:
        from riverbed.serving.mlflow_model import check_out

        if out == "-":
            return _fail("--format mlflow writes a directory: give --out DIR, not -")
        check_out(Path(out))  # before the snapshot is read: an error at once
    elif out == "-" and sys.stdout.isatty():
        return _fail("--out -: stdout is a terminal; redirect it, or give --out FILE")
    snap = asyncio.run(load_snapshot(settings, args.partition, args.version))
    for reason in snap.refused:
        print(f"riverbed: warning: skipped the newer {reason}", file=sys.stderr)
    holder = snap.learner.candidate(args.model)
    exported = dumps(holder.model)
    meta, learner = snap.meta, snap.learner
    role = "champion" if holder is learner else "challenger"
    report = sys.stdout
    if as_mlflow:
        from riverbed.serving.mlflow_model import write_mlflow_model

        info = _provenance(args, settings, snap, holder, role)
        written = write_mlflow_model(Path(out), exported, info)
        where = f"the MLflow model {out}"
        loads = (
            f"loads with mlflow.pyfunc.load_model({str(out)!r}) where mlflow, pandas and "
            f"river {info['river']} are installed (its requirements.txt), not riverbed"
        )
        if written.unpinned:
            loads += (f" and these modules import: {', '.join(written.unpinned)} (not in "
                      "requirements.txt: no installed distribution provides them)")  # fmt: skip
    elif out == "-":
        sys.stdout.buffer.write(exported.blob)
        sys.stdout.buffer.flush()
        report, where, loads = sys.stderr, "stdout", exported.loads_with
    else:
        path = Path(out)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            tmp.write_bytes(exported.blob)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            return _fail(f"cannot write --out {out}: {exc.strerror or exc}")
        where, loads = out, exported.loads_with
    age = time.time() - meta["created_ms"] / 1000
    which = "the snapshot" if snap.version is None else f"version {snap.version}"
    print(
        f"exported {holder.spec.name} ({role}) of partition {args.partition} to "
        f"{where} ({len(exported.blob):,} bytes): {which} at "
        f"events offset {meta['events_offset']}, labels offset {meta['labels_offset']}, "
        f"written {age:.1f} s ago ({holder.learned_by_model:,} labels learned); {loads}",
        file=report,
    )
    return 0


def _provenance(
    args: argparse.Namespace, settings: Settings, snap: Any, holder: Any, role: str
) -> dict[str, Any]:
    """What an MLflow export says of its model (data/riverbed.json, MLmodel's metadata)."""
    from datetime import UTC, datetime
    from importlib.metadata import version

    meta = snap.meta
    created = datetime.fromtimestamp(meta["created_ms"] / 1000, UTC)
    info: dict[str, Any] = {
        "task": holder.spec.task,
        "model": holder.spec.name,
        "role": role,
        "app_id": settings.app_id,
        "partition": args.partition,
        "topic": snap.topic,
        "version": snap.version,
        "events_offset": meta["events_offset"],
        "labels_offset": meta["labels_offset"],
        "snapshot_created": created.isoformat(timespec="seconds"),
        "labels_learned": holder.learned_by_model,
        "snapshot_riverbed": meta["riverbed"],
        "riverbed": version("riverbed"),
        "river": version("river"),
    }
    decider = getattr(holder, "decider", None)
    if decider is not None:
        # y_pred is River's own (the most probable class); RIVERBED_THRESHOLD's rule and
        # the threshold then in force, for whoever applies it to the probabilities.
        d = decider.describe()
        info["threshold"] = {"rule": d["rule"], "target": d["target"], "value": d["value"]}
    return info


def _cmd_versions(args: argparse.Namespace, settings: Settings) -> int:
    import orjson

    from riverbed.serving.export import list_versions

    found, refused = asyncio.run(list_versions(settings, args.partition))
    if args.json:
        print(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
    else:
        print(format_versions(found))
    if refused:
        print(f"riverbed: warning: {refused} versions do not verify with "
              "RIVERBED_SNAPSHOT_KEY (not listed)", file=sys.stderr)  # fmt: skip
    return 0


def format_versions(found: list[dict[str, Any]]) -> str:
    """``riverbed versions``' table: one line a version, newest first.

    Examples
    --------
    >>> print(format_versions([{"version": 12, "events_offset": 999, "labels_offset": 40,
    ...     "created": "2026-12-06T17:00:00+00:00", "champion": "hoeffding", "pinned": True,
    ...     "candidates": {"hoeffding": {"metric": {"name": "ROCAUC", "value": 0.9}},
    ...                    "logreg": {"metric": {"name": "ROCAUC", "value": None}}},
    ...     "bytes": 2048, "sha256": "ab" * 32}]))
    version  events  labels  created                    champion      bytes  sha256
      candidates
         12     999      40  2026-12-06T17:00:00+00:00  hoeffding*     2048  abababababab
      hoeffding ROCAUC 0.9000, logreg ROCAUC -

    """
    head = (f"{'version':>7}  {'events':>6}  {'labels':>6}  {'created':<25}  {'champion':<12}"
            f"  {'bytes':>5}  {'sha256':<12}  candidates")  # fmt: skip
    lines = [head]
    for v in found:
        cands = ", ".join(
            f"{name} {q['metric']['name']} "
            + ("-" if q["metric"]["value"] is None else f"{q['metric']['value']:.4f}")
            for name, q in v["candidates"].items()
        )
        champion = v["champion"] + ("*" if v["pinned"] else "")
        lines.append(f"{v['version']:>7}  {v['events_offset']:>6}  {v['labels_offset']:>6}  "
                     f"{v['created']:<25}  {champion:<12}  {v['bytes']:>5}  "
                     f"{v['sha256'][:12]:<12}  {cands}")  # fmt: skip
    return "\n".join(lines)


def _cmd_inspect(args: argparse.Namespace, settings: Settings) -> int:
    import orjson

    from riverbed.serving.export import format_inspection, inspection, load_snapshot

    snap = asyncio.run(load_snapshot(settings, args.partition, args.version))
    for reason in snap.refused:
        print(f"riverbed: warning: skipped the newer {reason}", file=sys.stderr)
    doc = inspection(snap.learner, snap.meta, snap.topic, model=args.model)
    if snap.version is not None:
        doc["version"] = snap.version
    if args.json:
        print(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())
    else:
        print(format_inspection(doc))
    return 0


def _cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from riverbed.devtools.demo import run_demo

    return run_demo(settings, rate=args.rate, dataset=args.dataset, duration=args.duration,
                    fresh=args.fresh, use_running_broker=args.use_running_broker)  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    from riverbed.devtools.produce import DATASETS

    p = argparse.ArgumentParser(
        prog="riverbed",
        description="Online learning on Kafka streams. Project commands are below; "
        "`riverbed worker` and the rest are Faust's command line.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    _add_broker(sub)
    _add_produce(sub)
    _add_tail(sub)
    # `worker` is Faust's command (main() hands it over before this parser): listed here
    # so that `riverbed --help` shows the command a user runs most.
    sub.add_parser(
        "worker",
        add_help=False,
        help="run a worker: learn from events, publish predictions and serve HTTP (Faust's "
        "worker command; `riverbed worker --help` lists its options)",
    )
    sub.add_parser("models", help="list the model catalog")
    _add_export_and_inspect(sub)
    _add_operations(sub)
    sub.add_parser("config", help="list every RIVERBED_* setting, its value and meaning")
    sub.add_parser(
        "doctor",
        help="the cluster's shape and riverbed's topics (replication, partitions, "
        "retention, cleanup policy), and what to change; reads only",
    )
    d = sub.add_parser("demo", help="broker + worker + drifting stream + live accuracy")
    d.add_argument("--rate", type=float, default=400.0)
    d.add_argument("--dataset", choices=DATASETS, default="drift")
    d.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    d.add_argument(
        "--fresh",
        action="store_true",
        help="delete the previous run's topics first: fresh models, empty stream",
    )
    d.add_argument("--use-running-broker", action="store_true",
                   help="use a broker this project did not start that answers at "
                   "RIVERBED_BROKER (refused by default)")  # fmt: skip
    return p


def _add_broker(sub: Subparsers) -> None:
    b = sub.add_parser("broker", help="the local Apache Kafka broker (KRaft, 127.0.0.1)")
    b.add_argument("action", choices=["start", "stop", "status", "fetch", "wipe"])
    b.add_argument(
        "--port",
        type=int,
        default=None,
        help="client port (default: the port of RIVERBED_BROKER); the KRaft controller "
        "listens on the next one (port + 1)",
    )
    b.add_argument(
        "--nodes", type=int, default=1, metavar="N",
        help="a replicated cluster of N nodes (replication min(3, N), min.insync one less): "
        "node i serves PORT + 2(i-1), its controller the port after",
    )  # fmt: skip


def _add_produce(sub: Subparsers) -> None:
    from riverbed.devtools.produce import DATASETS, KEYS

    pr = sub.add_parser(
        "produce",
        help="replay a River dataset, a synthetic stream or your JSON lines into events",
        description="Replay a River dataset or synthetic stream into the events topic, or "
        "with --file your own JSON lines. Options marked 'datasets' apply to --dataset only.",
    )
    pr.set_defaults(parser=pr)
    src = pr.add_mutually_exclusive_group()
    src.add_argument(
        "--dataset", choices=DATASETS, default="phishing", help="what to replay (default: phishing)"
    )
    src.add_argument(
        "--file",
        metavar="PATH",
        help="replay a JSON-lines file (-: stdin), one record a line, instead of a dataset. "
        "Each line is sent as it is: riverbed validates it, so a line that is not a valid "
        "record reaches the dead-letter topic as it would from any producer. Blank lines "
        "are skipped",
    )
    pr.add_argument(
        "--key-field",
        metavar="PATH",
        help="(--file) the message key is the record's value at this dotted path (txn_id, "
        "user.id); numbers become strings (12 -> '12'); partitioned by murmur2, as Java "
        "clients do. Without it, or where the field is missing or null: no key",
    )
    pr.add_argument(
        "--topic",
        choices=("events", "labels"),
        default=None,
        help="(--file) the riverbed topic the lines go to (default: events; labels replays "
        "a labels file: give it the key field of its events, so each label reaches its "
        "event's partition)",
    )
    pr.add_argument("--limit", type=int, default=None, help="stop after N events (or records)")
    pr.add_argument("--rate", type=float, default=0.0, help="events (records) per second (0: max)")
    pr.add_argument(
        "--key",
        choices=KEYS,
        default="id",
        help="(datasets) message key: the event id (hash-partitioned) or none (round-robin)",
    )
    pr.add_argument("--seed", type=int, default=42, help="(datasets) seed of synthetic streams")
    pr.add_argument(
        "--label-delay",
        type=int,
        default=0,
        metavar="N",
        help="(datasets) send each label on the labels topic N events later (0: inline)",
    )
    pr.add_argument("--no-labels", action="store_true", help="(datasets) send no labels at all")
    pr.add_argument(
        "--id-prefix", default=None, help="(datasets) event ids are PREFIX-<n> (default random)"
    )
    pr.add_argument(
        "--drift-at", type=int, default=5000, help="(datasets) drift position (dataset drift)"
    )


def _add_tail(sub: Subparsers) -> None:
    t = sub.add_parser("tail", help="pretty-print a topic")
    t.add_argument("topic", help="events, labels, predictions, metrics, dlq or a full name")
    t.add_argument("--from-end", action="store_true", help="only new records")
    t.add_argument("--limit", type=int, default=None)
    t.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        help="exit after this many seconds without a record",
    )


OPERATION_HELP = {
    "promote": "make a challenger the champion of partition P (or all) now",
    "pin": "no automatic promotion on partition P (or all) until unpinned; --model promotes first",
    "unpin": "automatic promotion again on partition P (or all)",
    "rollback": "partition P's candidates go back to version V and carry on from now",
    "import": "a River model trained elsewhere joins partition P (or all) as a candidate",
}


def _add_operations(sub: Subparsers) -> None:
    for op, text in OPERATION_HELP.items():
        cmd = sub.add_parser(
            op, help=text,
            description=f"{text[0].upper()}{text[1:]}: asks a running worker (--url), which "
            "forwards to the partition's owner; applied between two records, published on "
            "the metrics topic with who and the offsets (the audit trail), and in a "
            "snapshot before the answer. RIVERBED_HTTP_TOKEN is sent when set.",
        )  # fmt: skip
        if op == "rollback":
            cmd.add_argument("--partition", "-p", type=int, required=True, metavar="P")
            cmd.add_argument("--version", "-V", type=int, required=True, metavar="V",
                             help="the version (riverbed versions)")  # fmt: skip
            cmd.add_argument(
                "--replay", action="store_true",
                help="re-learn the retained records after V (default: they are not learned)",
            )  # fmt: skip
        else:
            cmd.add_argument("--partition", "-p", required=True, metavar="P|all")
        if op in ("promote", "pin", "import"):
            cmd.add_argument("--model", "-m", metavar="NAME", required=op != "pin",
                             default=None, help="a candidate of the partition")  # fmt: skip
        if op == "import":
            cmd.add_argument("--file", "-f", required=True, metavar="FILE.pkl",
                             help="a pickled River estimator of the partition's task (what "
                             "riverbed export writes); loading it runs its code")  # fmt: skip
            cmd.add_argument("--champion", action="store_true",
                             help="the champion at once (default: a challenger)")  # fmt: skip
        cmd.add_argument("--url", metavar="URL", default=None,
                         help="a worker's HTTP address (default: http://127.0.0.1:"
                         "RIVERBED_WEB_PORT)")  # fmt: skip


def _operate(op: str, args: argparse.Namespace, settings: Settings) -> int:
    import getpass
    import socket
    import urllib.error
    import urllib.request

    import orjson

    partition = str(args.partition)
    if partition != "all" and not partition.isdigit():
        return _fail(f"--partition {partition}: a partition number or all")
    body: dict[str, Any] = {"by": f"{getpass.getuser()}@{socket.gethostname()}"}
    if getattr(args, "model", None):
        body["model"] = args.model
    if op == "rollback":
        body.update(version=args.version, replay=args.replay)
    url = (args.url or f"http://127.0.0.1:{settings.web_port}").rstrip("/")
    if not url.startswith(("http://", "https://")):
        return _fail(f"--url {url}: an http:// or https:// address")
    path, data, kind = f"/models/{partition}/{op}", orjson.dumps(body), "application/json"
    if op == "import":
        from urllib.parse import urlencode

        try:
            data = Path(args.file).read_bytes()
        except OSError as exc:
            return _fail(f"cannot read --file {args.file}: {exc.strerror or exc}")
        query = {"model": args.model, "by": body["by"], "champion": int(args.champion)}
        path, kind = f"{path}?{urlencode(query)}", "application/octet-stream"
    auth = {"Authorization": f"Bearer {settings.http_token}"} if settings.http_token else {}
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        f"{url}{path}", data=data, method="POST", headers={"Content-Type": kind, **auth}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as r:  # noqa: S310 - http(s) only
            status, answer = r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        status, answer = exc.code, orjson.loads(exc.read() or b"{}")
    except (urllib.error.URLError, OSError) as exc:
        return _fail(f"no worker answers at {url} ({exc}); give --url")
    for one in answer if isinstance(answer, list) else [answer]:
        if "error" in one:
            where = f"partition {one['partition']}: " if "partition" in one else ""
            print(f"riverbed: error: {where}{one['error']}", file=sys.stderr)
        else:
            print(orjson.dumps(one).decode())
    return 0 if status == 200 else 1


def _cmd_promote(args: argparse.Namespace, settings: Settings) -> int:
    return _operate("promote", args, settings)


def _cmd_pin(args: argparse.Namespace, settings: Settings) -> int:
    return _operate("pin", args, settings)


def _cmd_unpin(args: argparse.Namespace, settings: Settings) -> int:
    return _operate("unpin", args, settings)


def _cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    return _operate("rollback", args, settings)


def _cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    return _operate("import", args, settings)


def _add_export_and_inspect(sub: Subparsers) -> None:
    ex = sub.add_parser(
        "export",
        help="write a partition's River model to a pickle (or an MLflow model) that loads "
        "without riverbed",
        description="Read the newest snapshot of partition P that verifies "
        "(RIVERBED_SNAPSHOT_KEY) from the app's snapshots topic, no worker needed, and "
        "write its River model with pickle: it loads in a Python with river installed "
        "and predicts as the partition's learner did at that snapshot. With --format "
        "mlflow, an MLflow model directory (python_function flavour) that "
        "mlflow.pyfunc.load_model loads where mlflow, pandas and river are installed.",
    )
    ex.add_argument("--partition", "-p", type=int, required=True, metavar="P")
    _add_model_and_version(ex)
    ex.add_argument(
        "--format",
        "-f",
        choices=["pickle", "mlflow"],
        default="pickle",
        help="pickle: the River model's pickle (default); mlflow: an MLflow model directory",
    )
    ex.add_argument(
        "--out",
        "-o",
        metavar="PATH",
        default=None,
        help="where to write the pickle (default: model-p<P>.pkl; -: stdout, not a "
        "terminal), or with --format mlflow a new or empty directory (default: "
        "model-p<P>-mlflow)",
    )
    ins = sub.add_parser(
        "inspect",
        help="describe a partition's model: steps, counts, metric, snapshot, weights or tree",
        description="Read the newest snapshot of partition P that verifies (no worker "
        "needed) and describe it: pipeline steps, events and labels learned, metric, "
        "snapshot offsets and age, the largest weights of a linear model, the size of a "
        "tree, each tree of a forest.",
    )
    ins.add_argument("--partition", "-p", type=int, required=True, metavar="P")
    _add_model_and_version(ins)
    ins.add_argument("--json", action="store_true", help="machine-readable output")
    ver = sub.add_parser(
        "versions",
        help="list a partition's versions (snapshots kept in the versions topic)",
        description="Read the app's versions topic (no worker needed) and list partition "
        "P's versions that verify (RIVERBED_SNAPSHOT_KEY), newest first: offsets, time, "
        "champion (* pinned), size, digest, and each candidate's metric then.",
    )
    ver.add_argument("--partition", "-p", type=int, required=True, metavar="P")
    ver.add_argument("--json", action="store_true", help="machine-readable output")


def _add_model_and_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", metavar="NAME", default=None,
                        help="a candidate of the partition (default: its champion)")  # fmt: skip
    parser.add_argument(
        "--version", "-V", type=int, metavar="V", default=None,
        help="a version (riverbed versions) instead of the newest snapshot",
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``riverbed`` console script."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["_spare"]:  # a supervisor's warm spare (riverbed.supervisor.spare)
        from riverbed.supervisor.spare import wait_for_slot

        args_list = wait_for_slot()
    # A custom RIVERBED_MODEL=module:factory names a module of the directory riverbed
    # is started from, as uvicorn's "module:app" does; riverbed's own modules are
    # riverbed.*, so a user's models.py or app.py shadows nothing.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        return _fail(str(exc))
    if (
        (args_list and args_list[0] in PROJECT_COMMANDS)
        or not args_list
        or args_list[0] in {"-h", "--help"}
    ):
        args = _parser().parse_args(args_list)
        handler = globals()[f"_cmd_{args.command}"]
        try:
            return int(handler(args, settings))
        except RiverbedError as exc:
            return _fail(str(exc))
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:
            # `riverbed tail dlq | head`: the reader has what it wanted and left. Exit 0,
            # not 141 (128 + SIGPIPE, what `yes | head` gives): a tail without --limit
            # only ends this way, so it is its normal end, and a `set -o pipefail`
            # script must not fail on it. stdout goes to devnull so that Python's own
            # flush at exit does not raise again (the idiom of the signal module's docs).
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
        except Exception as exc:
            if _is_unreachable(exc):
                return _fail(_unreachable(settings, exc))
            raise
    if args_list[0] == "worker" and any(a in HELP for a in args_list[1:]):
        print(worker_help(settings))
        return 0
    if args_list[:2] == ["worker", "--faust-help"]:
        args_list = ["worker", "--help", *args_list[2:]]
    return _faust(settings, args_list)


def worker_help(settings: Settings) -> str:
    """``riverbed worker --help``: riverbed's options and where its settings come from,
    then a pointer to Faust's own (its web host and port defaults are not riverbed's).

    Examples
    --------
    >>> print(worker_help(Settings.from_env({})))  # doctest: +ELLIPSIS
    usage: riverbed worker [--processes N|auto] [-l LEVEL] [Faust's worker options]
    ...
      --processes N|auto  worker processes under one supervisor (RIVERBED_PROCESSES, now 1)...
      HTTP                127.0.0.1:6066 (RIVERBED_WEB_HOST, RIVERBED_WEB_PORT)
    ...

    """
    return "\n".join(
        [
            "usage: riverbed worker [--processes N|auto] [-l LEVEL] [Faust's worker options]",
            "",
            "Consume the events and labels topics, predict every event before learning from it,",
            "and publish predictions, metrics and dead letters (README: Use it). Settings are",
            "RIVERBED_* environment variables (riverbed config lists them with their values).",
            "",
            "options:",
            f"  --processes N|auto  worker processes under one supervisor (RIVERBED_PROCESSES, "
            f"now {settings.processes}); auto: one per CPU",
            "  -l LEVEL            log level: debug, info, warning, error (Faust's --loglevel)",
            "  -h, --help          this help",
            "  --faust-help        Faust's own worker options (its --web-host and --web-port",
            "                      defaults, 0.0.0.0 and 6066, are not riverbed's: riverbed's",
            "                      come from the settings below)",
            "",
            "where it serves and reads:",
            f"  HTTP                {settings.web_host}:{settings.web_port} (RIVERBED_WEB_HOST, "
            "RIVERBED_WEB_PORT)",
            f"  Kafka               {settings.bootstrap} (RIVERBED_BROKER)",
            f"  topics              prefix {settings.topic_prefix!r} (RIVERBED_TOPIC_PREFIX), "
            f"app {settings.app_id!r} (RIVERBED_APP_ID)",
            f"  model               {settings.model} (RIVERBED_MODEL; riverbed models lists them)",
        ]
    )


def _log_level(args: list[str], settings: Settings) -> str:
    """The level of ``-l X`` / ``--loglevel X`` / ``--loglevel=X``, else the setting's.

    >>> _log_level(["worker", "-l", "info"], Settings.from_env({}))
    'info'
    >>> _log_level(["worker", "--loglevel=debug"], Settings.from_env({}))
    'debug'
    """
    for i, a in enumerate(args):
        if a in ("-l", "--loglevel") and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--loglevel="):
            return a.split("=", 1)[1]
    return settings.log_level


def _faust_help_is_h() -> None:
    """``-h`` is help for Faust's commands too, as for riverbed's and argparse's: Faust's
    worker had it for ``--web-host``, which keeps its long name."""
    from faust.cli.faust import cli

    cli.context_settings.setdefault("help_option_names", list(HELP))
    for command in cli.commands.values():
        for param in command.params:
            if "-h" in param.opts:
                param.opts.remove("-h")


def _processes_option(args: list[str], settings: Settings) -> tuple[list[str], Settings]:
    """``worker --processes N|auto`` (else ``RIVERBED_PROCESSES``): the worker's other
    arguments and the settings with that number."""
    from riverbed.config import SPECS

    out, value = [], None
    it = iter(args)
    for a in it:
        if a == "--processes":
            value = next(it, "")
        elif a.startswith("--processes="):
            value = a.split("=", 1)[1]
        else:
            out.append(a)
    if value is None:
        return out, settings
    spec = next(s for s in SPECS if s.field == "processes")
    try:
        n = spec.parse(value)
    except ValueError as exc:
        msg = f"--processes {value!r}: {exc}"
        raise ConfigError(msg) from None
    return out, dataclasses.replace(settings, processes=n)


def _warn_exposed_ports(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """Warn when the web ports of this worker (a supervisor's: its own and its
    processes') lie where outgoing connections take their local ports
    (:mod:`riverbed.ports` says what goes wrong). A supervised process says nothing:
    its supervisor has said it for every port.

    Examples
    --------
    >>> import dataclasses
    >>> s = dataclasses.replace(Settings.from_env({}), web_port=6066)
    >>> _warn_exposed_ports(s, {})  # 6066: outside Linux's ephemeral range, no warning

    """
    from riverbed.lifetime import SUPERVISOR_ENV
    from riverbed.ports import ephemeral_ports, exposed_ports

    if SUPERVISOR_ENV in (os.environ if environ is None else environ):
        return
    extra = settings.processes if settings.processes > 1 else 0
    exposed = exposed_ports(range(settings.web_port, settings.web_port + 1 + extra))
    if exposed:
        low, high = ephemeral_ports()
        logging.getLogger("riverbed").warning(
            "RIVERBED_WEB_PORT=%d: port%s %s lie%s in the kernel's ephemeral port range "
            "%d-%d (net.ipv4.ip_local_port_range), where outgoing connections take their "
            "local ports: one may hold a port when a worker binds it, and that worker "
            "fails to start. Choose ports outside it (below %d or above %d), or reserve "
            "them (net.ipv4.ip_local_reserved_ports).",
            settings.web_port, "s" if len(exposed) > 1 else "",
            ", ".join(map(str, exposed)), "" if len(exposed) > 1 else "s", low, high, low,
            high,
        )  # fmt: skip


def _supervise(settings: Settings, args: list[str], loop: asyncio.AbstractEventLoop) -> int:
    """Run the supervisor of ``settings.processes`` workers (topics already made)."""
    from riverbed.checkpoint.snapshots import load_key
    from riverbed.config import PROJECT_ROOT
    from riverbed.logs import setup_supervisor_logging
    from riverbed.supervisor.gateway import Gateway
    from riverbed.supervisor.process import Supervisor

    # The children share the snapshot key: made once here, not raced by N processes.
    load_key(settings.snapshot_key, PROJECT_ROOT / ".riverbed" / "snapshot.key")
    setup_supervisor_logging(settings.log_level)
    return loop.run_until_complete(Supervisor(settings, args).run(Gateway))


def _faust(settings: Settings, args_list: list[str]) -> int:
    from riverbed.kafka.acl import check_permissions
    from riverbed.kafka.security import preflight
    from riverbed.kafka.topics import ensure_topics
    from riverbed.main import check_layout, create_app

    bad_model = _model_error(settings)
    if bad_model:
        return _fail(bad_model)
    _faust_help_is_h()
    if any(a in HELP for a in itertools.takewhile(lambda a: a != "--", args_list)):
        # Help has no side effects: no topics made, no snapshot key file written (the app
        # gets a placeholder key), nothing contacted. Only the command's name is passed
        # on, so that nothing else can run (`worker --web-host --help` would be a worker).
        command = list(itertools.takewhile(lambda a: not a.startswith("-"), args_list))[:1]
        app = create_app(dataclasses.replace(settings, snapshot_key="help: no key"))
        sys.argv = ["riverbed", *command, "--help"]
        app.main()  # exits the process
        return 0
    if args_list and args_list[0] == "worker":
        try:
            args_list, settings = _processes_option(args_list, settings)
        except ConfigError as exc:
            return _fail(str(exc))
        _warn_exposed_ports(settings)
        # What start-up says before Faust's logging is set up ("created topics ...")
        # at the level the worker will log at.
        with contextlib.suppress(ValueError):  # a level Faust refuses, it says so itself
            logging.getLogger("riverbed").setLevel(_log_level(args_list, settings).upper())
        # Create the topics with the right partitions before Faust subscribes, on the
        # loop Faust will then use (mode takes the current event loop).
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            # First: a refused password or certificate is one clear line, not a crash.
            loop.run_until_complete(preflight(settings))
            # On a cluster with an authorizer: every ACL riverbed needs, named at once
            # (before the topics: one riverbed may not Describe looks missing).
            loop.run_until_complete(check_permissions(settings))
            layout = loop.run_until_complete(ensure_topics(settings))
            check_layout(settings, layout)
        except ConfigError as exc:
            return _fail(str(exc))
        except Exception as exc:
            return _fail(_unreachable(settings, exc))
        if not any(a in {"-l", "--loglevel"} or a.startswith("--loglevel=") for a in args_list):
            args_list = [*args_list, "--loglevel", settings.log_level]
        if settings.processes > 1:
            return _supervise(settings, args_list, loop)
        from riverbed.lifetime import die_with_supervisor

        die_with_supervisor()
        # Faust makes only the last directory of datadir; a new RIVERBED_DATA_DIR (or a
        # supervisor's slot-<i> under it) may need its parents too.
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    else:
        layout = None
    app = create_app(settings, layout)
    sys.argv = ["riverbed", *args_list]
    app.main()  # exits the process
    return 0
