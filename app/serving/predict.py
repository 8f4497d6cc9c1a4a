"""``POST /predict``: ask a partition's live model, on whichever worker owns it.

A request names its partition by ``?key=K`` (Kafka's default murmur2 partitioner on
the key's UTF-8 bytes: the partition a producer would write the key to) or
``?partition=P``. The body is one event record in the events topic's layout
(``RIVERBED_EVENT_*``, the id optional) or a JSON list of them. The answer is what the
stream would predict for that record now (``PartitionLearner.predict_one``): no
learning, no Kafka record, nothing counted.

A partition another worker of the group owns is forwarded to that worker's advertised
URL (``RIVERBED_WEB_ADVERTISED_URL``), read from Faust's own assignor: every member's
URL and active partitions travel with the group's assignment
(``app.router.external_topics_metadata()``, what Faust's topic routes use). Faust's
router itself forwards a request without its body, so the POST is forwarded here.
The handler runs on the worker's event loop between two fetches of the agent, so it
reads a learner at a fetch boundary, never half-way through one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
import faust
import orjson
from aiohttp import web
from faust.types import AppT
from faust.web import Request, Response, View

from riverbed.exceptions import InvalidRecord, UnknownCandidate
from riverbed.kafka.topics import default_partition
from riverbed.learning.state import Learners
from riverbed.records import Event, FieldMapping, encode
from riverbed.serving.auth import authorized

__all__ = ["FORWARDED", "Predictor", "key_partition", "register"]

logger = logging.getLogger(__name__)

FORWARDED = "X-Riverbed-Forwarded"  # set on a forwarded request: never forwarded twice
FORWARD_TIMEOUT_S = 10.0
RETRY_AFTER_S = "1"


def key_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (its UTF-8 bytes).

    Examples
    --------
    >>> key_partition("tx-1", 4), key_partition("tx-1", 1)
    (1, 0)

    """
    return default_partition(key.encode(), partitions)


ANSWER_SLICE = 64  # records of a /predict body answered between two turns of the loop


class HTTPProblem(Exception):
    """An answer other than 200: status, a reason for the JSON body, extra headers."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


class Predictor:
    """Answers /predict for this worker's partitions and forwards the others'.

    Parameters
    ----------
    learners
        This worker's learners (``assigned``: the partitions it owns).
    mapping
        The events topic's layout.
    partitions
        The events topic's partition count.
    events_topic
        Its name (the key of Faust's assignment metadata).
    url
        This worker's advertised URL.

    """

    def __init__(
        self,
        learners: Learners,
        mapping: FieldMapping,
        *,
        partitions: int,
        events_topic: str,
        url: str,
        token: str,
        peers: tuple[str, ...] = (),
        max_bytes: int,
        max_records: int,
        model: str,
    ) -> None:
        self.learners = learners
        self.mapping = mapping
        self.partitions = partitions
        self.events_topic = events_topic
        self.url = url.rstrip("/")
        self.token = token
        # Where a request's Bearer token may be forwarded: RIVERBED_PEER_URLS, or else
        # the workers on this worker's own host. A member of the group advertises any
        # URL it likes; a rogue one would otherwise collect every forwarded token.
        self.peers = frozenset(u.rstrip("/") for u in peers)
        # RIVERBED_PREDICT_MAX_BYTES and _RECORDS: a body is read, parsed and answered
        # on the worker's loop, so its size bounds the memory and the loop's hold (the
        # records' bounds allowed 1 GB: a 213 MB body held a loop 8.4 s, past the
        # session timeout).
        self.max_body = max_bytes
        self.batch_max = max_records
        self.model = model
        self.requests = 0
        self.forwarded = 0

    # -- the pieces, each testable without a server ----------------------------------
    def partition_of(self, query: Any) -> int:
        """The partition a request asks for (``?partition=P`` or ``?key=K``)."""
        if "partition" in query:
            raw = query["partition"]
            if not (raw.isascii() and raw.isdigit()) or int(raw) >= self.partitions:
                msg = f"partition={raw!r}: the events topic has partitions 0..{self.partitions - 1}"
                raise HTTPProblem(400, msg)
            return int(raw)
        if "key" in query:
            return key_partition(query["key"], self.partitions)
        if self.partitions == 1:
            return 0
        msg = (
            f"say which partition's model answers: ?key=K (the record key; the partition "
            f"Kafka's default partitioner gives it) or ?partition=P (0..{self.partitions - 1})"
        )
        raise HTTPProblem(400, msg)

    def parse(self, body: bytes, key: str | None) -> tuple[list[Event], bool]:
        """The events of a body (one record or a list) and whether it was a list."""
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HTTPProblem(400, f"not valid JSON: {exc}") from None
        many = isinstance(obj, list)
        records = obj if many else [obj]
        if not records:
            raise HTTPProblem(400, "an empty list: send one record or a list of them")
        if len(records) > self.batch_max:
            msg = f"{len(records)} records, above RIVERBED_PREDICT_MAX_RECORDS={self.batch_max}"
            raise HTTPProblem(413, msg)
        kb = key.encode() if key is not None else None
        events = []
        for i, record in enumerate(records):
            where = f"record {i}: " if many else ""
            if not isinstance(record, dict):
                msg = f"{where}must be a JSON object, got {type(record).__name__}"
                raise HTTPProblem(400, msg)
            try:
                events.append(self.mapping.event_from(record, kb, require_id=False))
            except InvalidRecord as exc:
                raise HTTPProblem(400, where + exc.reason) from None
        return events, many

    def answer(
        self, partition: int, events: list[Event], model: str | None = None, first: int = 0
    ) -> list[dict[str, Any]]:
        """The live model's predictions for ``events`` (this worker owns ``partition``);
        with ``model``, that candidate's (a challenger: shadow scoring on demand)."""
        learner = self.learners.get(partition)
        name = learner.candidate(model).spec.name
        out = []
        for i, event in enumerate(events):
            try:
                y_pred, proba = learner.predict_one(event.x, model)
            except Exception as exc:  # the model's own error, on this record: the caller's 400
                logger.warning("/predict: %s raised on record %d", name, first + i, exc_info=True)
                raise HTTPProblem(400, f"record {first + i}: {name} cannot predict it: "
                                       f"{type(exc).__name__}: {exc}") from exc  # fmt: skip
            one: dict[str, Any] = {"y_pred": y_pred}
            if proba is not None:
                one["proba"] = proba
            one.update(model=name, partition=partition, offset=learner.last_offset)
            if event.id:
                one["id"] = event.id
            out.append(one)
        return out

    def owner(self, metadata: Mapping[str, Mapping[str, list[int]]], partition: int) -> str | None:
        """The advertised URL of the member that owns ``partition`` (None: nobody now)."""
        for url, topics in metadata.items():
            if partition in topics.get(self.events_topic, ()):
                return str(url).rstrip("/")
        return None

    # -- the view --------------------------------------------------------------------
    async def handle(self, app: AppT, request: web.Request) -> tuple[int, bytes, dict[str, str]]:
        """``(status, JSON body, headers)`` for one request."""
        try:
            if not authorized(request, self.token):
                raise HTTPProblem(
                    401, "RIVERBED_HTTP_TOKEN is set: send Authorization: Bearer <token>",
                    {"WWW-Authenticate": "Bearer"},
                )  # fmt: skip
            query = request.query
            partition = self.partition_of(query)
            body = await self._body(request)
            if partition in self.learners.assigned:
                if not self.learners.has(partition):
                    raise HTTPProblem(503, f"partition {partition} is being restored",
                                      {"Retry-After": RETRY_AFTER_S})  # fmt: skip
                events, many = self.parse(body, query.get("key"))
                self.requests += 1
                answers = []
                for start in range(0, len(events), ANSWER_SLICE):
                    if start:
                        await asyncio.sleep(0)  # the stream and heartbeats go on meanwhile
                    answers += self.answer(
                        partition, events[start : start + ANSWER_SLICE], query.get("model"), start
                    )
                return 200, encode(answers if many else answers[0]), {}
            return await self.forward(app, request, partition, body)
        except HTTPProblem as problem:
            return problem.status, encode({"error": problem.reason}), problem.headers
        except UnknownCandidate as exc:
            return 404, encode({"error": str(exc)}), {}

    async def _body(self, request: web.Request) -> bytes:
        """The body, refused with 413 past ``RIVERBED_MAX_RECORD_BYTES`` x the batch bound."""
        if request.content_length is not None and request.content_length > self.max_body:
            raise HTTPProblem(413, self._too_big())
        chunks, size = [], 0
        while chunk := await request.content.read(65536):
            size += len(chunk)
            if size > self.max_body:
                raise HTTPProblem(413, self._too_big())
            chunks.append(chunk)
        if not size:
            raise HTTPProblem(400, "no body: send one event record or a JSON list of them")
        return b"".join(chunks)

    def trusted(self, owner: str) -> bool:
        """Whether a request's token may be forwarded to ``owner`` (an advertised URL).

        Examples
        --------
        >>> from riverbed import models
        >>> p = Predictor(Learners(models.spec("logreg")), FieldMapping(), partitions=1,
        ...               events_topic="ev", url="http://10.0.0.5:6066", token="t",
        ...               peers=("http://10.0.0.6:6066",), max_bytes=1, max_records=1,
        ...               model="logreg")
        >>> p.trusted("http://10.0.0.6:6066"), p.trusted("http://10.0.0.5:6068")
        (True, True)
        >>> p.trusted("http://10.0.0.7:6066"), p.trusted("http://10.0.0.6:9999")
        (False, False)

        """
        owner = owner.rstrip("/")
        if owner in self.peers:
            return True
        return urlsplit(owner).hostname == urlsplit(self.url).hostname

    def _too_big(self) -> str:
        return f"the body is over {self.max_body} bytes (RIVERBED_PREDICT_MAX_BYTES)"

    async def forward(
        self,
        app: AppT,
        request: web.Request,
        partition: int,
        body: bytes,
        *,
        path: str | None = None,
    ) -> tuple[int, bytes, dict[str, str]]:
        """The answer of the worker that owns ``partition`` to ``request`` (its path, or
        ``path``); a 503 while nobody owns it, a 502 for an owner the token must not
        reach."""
        moved = HTTPProblem(503, f"partition {partition} is moving between workers",
                            {"Retry-After": RETRY_AFTER_S})  # fmt: skip
        if request.headers.get(FORWARDED):
            raise moved  # the sender thought this worker owns it: a rebalance is on
        owner = self.owner(app.router.external_topics_metadata(), partition)
        if owner is None or owner == self.url:
            raise moved
        headers = {"Content-Type": "application/json", FORWARDED: self.url}
        if "Authorization" in request.headers:
            if not self.trusted(owner):
                msg = (
                    f"the owner of partition {partition} advertises {owner}, which is not in "
                    "RIVERBED_PEER_URLS (nor on this worker's host): the token is not sent "
                    "there; ask the owner directly, or list it in RIVERBED_PEER_URLS"
                )
                raise HTTPProblem(502, msg)
            headers["Authorization"] = request.headers["Authorization"]
        self.forwarded += 1
        try:
            async with app.http_client.post(
                f"{owner}{path or request.path_qs}",
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S),
            ) as response:
                out = await response.read()
                keep = {k: v for k, v in response.headers.items() if k == "Retry-After"}
                return response.status, out, keep
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("forwarding %s for partition %d to %s failed: %r",
                           path or request.path, partition, owner, exc)  # fmt: skip
            msg = f"the owner of partition {partition} ({owner}) did not answer: {exc!r}"
            raise HTTPProblem(503, msg, {"Retry-After": RETRY_AFTER_S}) from None

    def describe(self) -> dict[str, Any]:
        return {"predict": {"requests": self.requests, "forwarded": self.forwarded}}


def register(app: faust.App, predictor: Predictor) -> None:
    """``POST /predict`` on Faust's web server."""

    @app.page("/predict")
    class PredictView(View):
        async def post(self, request: Request) -> Response:
            # Faust runs on aiohttp: its Request is aiohttp.web.Request (body, path_qs).
            status, body, headers = await predictor.handle(self.app, cast(web.Request, request))
            return self.web.bytes(
                body, content_type="application/json", status=status, headers=headers
            )
