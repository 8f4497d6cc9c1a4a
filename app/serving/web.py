"""HTTP views on Faust's web server: /health, /ready, /models, /models/<p>/model,
/metrics, /history and the live page."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from riverbed.config import Settings
from riverbed.exceptions import RiverbedError, UnknownCandidate
from riverbed.kafka.transport import BrokerWatch
from riverbed.learning.state import Learners
from riverbed.serving.auth import authorized
from riverbed.serving.export import dumps, load_snapshot
from riverbed.serving.history import History
from riverbed.serving.metrics import RiverbedMetrics

__all__ = ["WorkerStatus", "lag", "register", "register_model_export"]

PAGE = Path(__file__).parent / "static" / "index.html"


class WorkerStatus:
    """Readiness: every assigned partition has recovered its learner, and the broker
    answered for the group lately (``watch``: :class:`riverbed.kafka.transport.BrokerWatch`,
    10 s, or a third of the session timeout if that is shorter).

    Examples
    --------
    >>> from riverbed.kafka.transport import BrokerWatch
    >>> status = WorkerStatus(BrokerWatch(session_timeout=45.0))
    >>> status.ready = True
    >>> status.watch.saw(True, now=100.0); status.problem(now=105.0) is None
    True
    >>> status.watch.saw(False, now=106.0); status.problem(now=109.0) is None  # a blip
    True
    >>> status.problem(now=116.0)
    'no broker has answered for the group for 16 s'

    """

    def __init__(self, watch: BrokerWatch) -> None:
        self.watch = watch
        self.ready = False

    def problem(self, now: float) -> str | None:
        """Why the worker is not ready, or None when it is."""
        if not self.ready:
            return "partitions are being assigned or restored"
        if self.watch.unreachable(now):
            return f"no broker has answered for the group for {self.watch.silent(now):.0f} s"
        return None


def lag(learners: Learners, highwater: Callable[[int], int | None]) -> Callable[[int], int | None]:
    """``lag(partition)``: events in the partition not yet predicted (None: unknown)."""

    def behind(partition: int) -> int | None:
        if not learners.has(partition):
            return None
        try:
            high = highwater(partition)
        except Exception:  # not assigned to the consumer (yet): unknown
            return None
        if high is None or high < 0:
            return None
        return max(0, int(high) - (learners.get(partition).last_offset + 1))

    return behind


def register(app: faust.App, document: Callable[[], dict[str, Any]], status: WorkerStatus,
             metrics: RiverbedMetrics, history: History | None = None) -> None:  # fmt: skip
    """Attach the views to ``app``; ``document()`` is the ``/models`` body, ``history``
    the ``/history`` one (the live page's past)."""
    page = PAGE.read_bytes()

    @app.page("/health")
    async def health(web: View, request: Request) -> Response:
        return web.json({"status": "ok"})

    @app.page("/ready")
    async def ready(web: View, request: Request) -> Response:
        # Learning gaps (records deleted before any snapshot covered them) do not stop
        # a worker from serving; they are reported here, loudly in the log, and in
        # riverbed_learning_gaps_total.
        problem = status.problem(time.monotonic())
        ok = problem is None
        gaps = document().get("learning_gaps", [])
        # The pid: a supervisor counts only its own children's answers (a previous
        # supervisor's worker may still hold the port).
        body = {"ready": ok, "learning_gaps": gaps, "pid": os.getpid()}
        if problem:
            body["reason"] = problem
        return web.json(body, status=200 if ok else 503)

    @app.page("/models")
    async def models_view(web: View, request: Request) -> Response:
        return web.json(document())

    @app.page("/metrics")
    async def metrics_view(web: View, request: Request) -> Response:
        # aiohttp refuses a charset inside content_type; the header carries it whole.
        body = generate_latest(metrics.registry)
        return web.bytes(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/history")
    async def history_view(web: View, request: Request) -> Response:
        body = history.document() if history is not None else {"partitions": {}}
        return web.json(body)

    @app.page("/")
    async def live(web: View, request: Request) -> Response:
        return web.bytes(page, content_type="text/html")


def register_model_export(app: faust.App, learners: Learners, settings: Settings) -> None:
    """``GET /models/<p>/model``: partition p's live River model (``?model=NAME``: that
    candidate's; ``?version=V``: that version's, read from the versions topic), pickled
    as ``riverbed export`` writes it (loads without riverbed); guarded by
    ``RIVERBED_HTTP_TOKEN``."""

    @app.page("/models/{partition}/model")
    async def model_export(web: View, request: Request, partition: str) -> Response:
        if not authorized(request, settings.http_token):
            return web.json(
                {"error": "RIVERBED_HTTP_TOKEN is set: send Authorization: Bearer <token>"},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        p = int(partition) if partition.isascii() and partition.isdigit() else -1
        version = request.query.get("version")
        if version is not None:
            if not version.isdigit():
                return web.json({"error": f"version={version!r}: a number"}, status=400)
            try:
                snap = await load_snapshot(settings, p, int(version))
            except RiverbedError as exc:
                return web.json({"error": str(exc)}, status=404)
            learner = snap.learner
        else:
            if p not in learners.assigned:
                owned = sorted(learners.assigned)
                msg = f"partition {partition} is not this worker's; it owns {owned}"
                return web.json({"error": msg}, status=404)
            if not learners.has(p):
                msg = f"partition {p} is being restored"
                return web.json({"error": msg}, status=503, headers={"Retry-After": "1"})
            learner = learners.get(p)
        try:
            holder = learner.candidate(request.query.get("model"))
        except UnknownCandidate as exc:
            return web.json({"error": str(exc)}, status=404)
        # Pickled on the event loop, between two fetches of the agent, so the model is
        # never half-way through one. That holds the loop (7 ms for hst's 170 KB, 130 ms
        # for a 10 MB forest): fine for an occasional export. A copy pickled in a thread
        # would free the loop, but taking the copy costs about as much.
        exported = dumps(holder.model)
        headers = {
            "Content-Disposition": f'attachment; filename="model-p{p}.pkl"',
            "X-Riverbed-Model": holder.spec.name,
            "X-Riverbed-Champion": learner.spec.name,
            "X-Riverbed-Events-Offset": str(learner.last_offset),
            "X-Riverbed-Labels-Offset": str(learner.last_label_offset),
            **({"X-Riverbed-Version": version} if version is not None else {}),
        }
        return web.bytes(exported.blob, content_type="application/octet-stream", headers=headers)
