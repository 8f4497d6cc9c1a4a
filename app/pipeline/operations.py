"""Manual model operations over HTTP: ``POST /models/<p>/promote|pin|unpin|rollback``.

Each is applied by the worker that owns partition p (another worker forwards the
request to it, as ``/predict`` does; ``all`` applies it to every partition), on its event
loop between two runs of the agent, so between two records at a known offset. Then:

1. the operation's record (``"type": "operation"``: what, who, the offsets it was
   applied after; a rollback's skipped range) is sent to the metrics topic: the audit
   trail;
2. a checkpoint is written at once and awaited: the snapshot holds the operation
   (its record is in Kafka before the snapshot, as every output is), so a kill -9 right
   after the answer restores a learner that has it, and the next version (the versions
   topic) is written with it;
3. the answer is the record, with the snapshot's offsets.

A rollback reads the version from the versions topic first (the agent goes on
meanwhile) and, with ``replay``, re-learns the retained records after it (nothing
published) before it is installed. ``RIVERBED_HTTP_TOKEN`` guards them all.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import faust
import orjson
from aiohttp import web
from faust.web import Request, Response, View

from riverbed.checkpoint.snapshots import Checkpointer
from riverbed.checkpoint.warmup import read_range, replay_into
from riverbed.config import Settings
from riverbed.exceptions import RiverbedError, UnknownCandidate
from riverbed.kafka.security import client_args
from riverbed.learning.imported import loaded_estimator
from riverbed.learning.state import Learners
from riverbed.pipeline.processor import Processor
from riverbed.protocols import RecordProducer
from riverbed.serving.auth import authorized
from riverbed.serving.export import list_versions, load_snapshot
from riverbed.serving.predict import HTTPProblem, Predictor

__all__ = ["OPERATIONS", "Operations", "register"]

logger = logging.getLogger(__name__)

OPERATIONS = ("promote", "pin", "unpin", "rollback", "import")


class Operations:
    """Applies manual operations to this worker's partitions, forwards the others'."""

    def __init__(
        self,
        settings: Settings,
        learners: Learners,
        processor: Processor,
        checkpointer: Checkpointer,
        predictor: Predictor,
        producer: Any,
    ) -> None:
        self.settings = settings
        self.learners = learners
        self.processor = processor
        self.checkpointer = checkpointer
        self.predictor = predictor  # its routing: which worker owns a partition
        self.producer = producer  # () -> RecordProducer: Faust's, once started
        self.applied = 0

    async def handle(
        self, app: Any, request: web.Request, partition: str, op: str
    ) -> tuple[int, bytes, dict[str, str]]:
        """``(status, JSON body, headers)`` for one request."""
        try:
            if not authorized(request, self.predictor.token):
                raise HTTPProblem(
                    401, "RIVERBED_HTTP_TOKEN is set: send Authorization: Bearer <token>",
                    {"WWW-Authenticate": "Bearer"},
                )  # fmt: skip
            if op not in OPERATIONS:
                raise HTTPProblem(404, f"no operation {op!r}: one of {', '.join(OPERATIONS)}")
            body = await request.read()
            if op == "import":
                return await self._import(app, request, partition, body)
            args = self._args(body)
            args.setdefault("by", f"http:{request.remote}")
            return await self._route(app, request, partition, op, body, args)
        except HTTPProblem as problem:
            return problem.status, orjson.dumps({"error": problem.reason}), problem.headers

    async def _import(
        self, app: Any, request: web.Request, partition: str, body: bytes
    ) -> tuple[int, bytes, dict[str, str]]:
        """``POST /models/<p>/import?model=NAME[&champion=1]`` with a pickled River model
        as the body (``riverbed import``). Unpickling runs the file's code: refused
        unless ``RIVERBED_HTTP_TOKEN`` is set (and sent)."""
        if not self.predictor.token:
            raise HTTPProblem(403, "an import unpickles the file, which runs its code: set "
                              "RIVERBED_HTTP_TOKEN on the workers to allow imports")  # fmt: skip
        name = request.query.get("model", "")
        if not name:
            raise HTTPProblem(400, "name the imported candidate: ?model=NAME")
        args = {"model": name, "champion": request.query.get("champion") in ("1", "true"),
                "by": request.query.get("by") or f"http:{request.remote}"}  # fmt: skip
        return await self._route(app, request, partition, "import", body, args, payload=body)

    @staticmethod
    def _args(body: bytes) -> dict[str, Any]:
        if not body.strip():
            return {}
        try:
            args = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HTTPProblem(400, f"not valid JSON: {exc}") from None
        if not isinstance(args, dict):
            raise HTTPProblem(400, 'the body is a JSON object: {"model": ..., "by": ...}')
        return args

    async def _route(
        self,
        app: Any,
        request: web.Request,
        partition: str,
        op: str,
        body: bytes,
        args: dict[str, Any],
        payload: bytes = b"",
    ) -> tuple[int, bytes, dict[str, str]]:
        """Apply ``op`` to a partition of this worker's, forward another's (the request
        as it came) to its owner; ``all``: every partition of the events topic, each on
        its owner, the answers in order (207 unless all are 200)."""
        if partition != "all":
            p = self.predictor.partition_of({"partition": partition})
            if p not in self.learners.assigned:
                return await self.predictor.forward(app, request, p, body)
            return 200, orjson.dumps(await self.apply(p, op, dict(args), payload)), {}
        query = f"?{request.query_string}" if request.query_string else ""
        answers = []
        for p in range(self.predictor.partitions):
            if p in self.learners.assigned:
                status, out = 200, orjson.dumps(await self.apply(p, op, dict(args), payload))
            else:
                status, out, _ = await self.predictor.forward(
                    app, request, p, body, path=f"/models/{p}/{op}{query}"
                )
            answers.append({"partition": p, "status": status, **orjson.loads(out)})
        status = 200 if all(a["status"] == 200 for a in answers) else 207
        return status, orjson.dumps(answers), {}

    async def apply(
        self, p: int, op: str, args: dict[str, Any], payload: bytes = b""
    ) -> dict[str, Any]:
        """Apply ``op`` to partition ``p`` (this worker's), publish its record and make
        it durable; the record, with the snapshot's offsets."""
        if not self.learners.has(p):
            raise HTTPProblem(503, f"partition {p} is being restored", {"Retry-After": "1"})
        by = str(args.get("by", "unknown"))
        model = args.get("model")
        if model is not None and not isinstance(model, str):
            raise HTTPProblem(400, '"model" is a candidate\'s name')
        try:
            if op == "rollback":
                record = await self._rollback(p, args, by)
            elif op == "import":
                learner = self.learners.get(p)
                model = loaded_estimator(payload, learner.task)
                record = learner.import_model(str(args["model"]), model,
                                              champion=bool(args["champion"]), by=by)  # fmt: skip
            else:
                learner = self.learners.get(p)
                if op == "promote":
                    if model is None:
                        raise HTTPProblem(400, 'say which candidate: {"model": NAME}')
                    record = learner.promote(model, by=by)
                elif op == "pin":
                    record = learner.pin(model, by=by)
                else:
                    record = learner.unpin(by=by)
        except UnknownCandidate as exc:
            raise HTTPProblem(404, str(exc)) from None
        except RiverbedError as exc:
            raise HTTPProblem(409, str(exc)) from None
        await self._publish(p)
        self.checkpointer.note(p, 0)  # the partition changed: the next snapshot has it
        await self.checkpointer.checkpoint()
        if self.checkpointer.failed is not None:
            raise HTTPProblem(503, f"the snapshot failed: {self.checkpointer.failed!r}")
        self.applied += 1
        current = self.learners.get(p)
        return {**record, "snapshot_offset": current.snapshot_offset}

    async def _publish(self, p: int) -> None:
        """The operation's record (and anything else the learner made since the agent's
        last run) to its topics, tracked so the snapshot awaits it."""
        made = self.learners.get(p).take_outputs()
        if made is None:
            return
        producer: RecordProducer = self.producer()
        for out in self.processor.outgoing(made, p):
            delivery = await producer.send(
                out.topic, out.value, key=out.key, partition=out.partition, headers=out.headers
            )
            self.checkpointer.track(delivery, out.topic)

    async def _rollback(self, p: int, args: dict[str, Any], by: str) -> dict[str, Any]:
        version = args.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise HTTPProblem(400, 'say which version: {"version": V} (riverbed versions)')
        replay = bool(args.get("replay", False))
        snap = await load_snapshot(self.settings, p, version)
        old = snap.learner
        old.configure(self.learners.settings)
        if replay:
            current = self.learners.get(p)
            names = self.processor.topics
            client = client_args(self.settings)
            events = await read_range(self.settings.bootstrap, client, names.events, p,
                                      old.last_offset, current.last_offset)  # fmt: skip
            labels = await read_range(self.settings.bootstrap, client, names.labels, p,
                                      old.last_label_offset, current.last_label_offset)  # fmt: skip
            # Records the agent handled while these were read are replayed too.
            current = self.learners.get(p)
            events += await read_range(self.settings.bootstrap, client, names.events, p,
                                       events[-1].offset if events else old.last_offset,
                                       current.last_offset)  # fmt: skip
            labels += await read_range(self.settings.bootstrap, client, names.labels, p,
                                       labels[-1].offset if labels else old.last_label_offset,
                                       current.last_label_offset)  # fmt: skip
            replay_into(old, events, labels, self.learners.settings, what=f"version {version}")
        current = self.learners.get(p)
        new, record = current.rolled_back_to(old, version=version, by=by, replayed=replay)
        self.learners.replace(p, new)
        how = " (re-learned since)" if replay else f"; not learned: {record['skipped']}"
        logger.warning("partition %d: rolled back to version %d by %s%s", p, version, by, how)
        return record

    async def versions(
        self, request: web.Request, partition: str, what: str
    ) -> tuple[int, bytes, dict[str, str]]:
        """``GET /models/<p>/versions``: the partition's versions, newest first (any
        worker answers: they are read from the versions topic)."""
        try:
            if what != "versions":
                raise HTTPProblem(404, f"no /models/{partition}/{what}: model or versions")
            if not authorized(request, self.predictor.token):
                raise HTTPProblem(
                    401, "RIVERBED_HTTP_TOKEN is set: send Authorization: Bearer <token>",
                    {"WWW-Authenticate": "Bearer"},
                )  # fmt: skip
            p = self.predictor.partition_of({"partition": partition})
            found, refused = await list_versions(self.settings, p)
            return 200, orjson.dumps({"partition": p, "versions": found,
                                      "unverified": refused}), {}  # fmt: skip
        except HTTPProblem as problem:
            return problem.status, orjson.dumps({"error": problem.reason}), problem.headers
        except RiverbedError as exc:
            return 404, orjson.dumps({"error": str(exc)}), {}

    def describe(self) -> dict[str, Any]:
        return {"operations": {"applied": self.applied}}


def register(app: faust.App, operations: Operations) -> None:
    """``POST /models/<p>/<op>`` and ``GET /models/<p>/versions`` on Faust's web server
    (``GET /models/<p>/model`` is a route of its own, registered first)."""

    @app.page("/models/{partition}/{op}")
    class OperationView(View):
        async def post(self, request: Request, partition: str, op: str) -> Response:
            status, body, headers = await operations.handle(
                self.app, cast(web.Request, request), partition, op
            )
            return self.web.bytes(
                body, content_type="application/json", status=status, headers=headers
            )

        async def get(self, request: Request, partition: str, op: str) -> Response:
            status, body, headers = await operations.versions(
                cast(web.Request, request), partition, op
            )
            return self.web.bytes(
                body, content_type="application/json", status=status, headers=headers
            )
