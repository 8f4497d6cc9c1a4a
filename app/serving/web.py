"""HTTP views on Faust's web server: /health, /ready, /models, /metrics and the live page."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from riverbed.learning.state import Learners
from riverbed.serving.metrics import RiverbedMetrics

__all__ = ["WorkerStatus", "lag", "register"]

PAGE = Path(__file__).parent / "static" / "index.html"


class WorkerStatus:
    """Readiness: true once every assigned partition has recovered its learner."""

    def __init__(self) -> None:
        self.ready = False


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
             metrics: RiverbedMetrics) -> None:  # fmt: skip
    """Attach the views to ``app``; ``document()`` is the ``/models`` body."""
    page = PAGE.read_bytes()

    @app.page("/health")
    async def health(web: View, request: Request) -> Response:
        return web.json({"status": "ok"})

    @app.page("/ready")
    async def ready(web: View, request: Request) -> Response:
        # Learning gaps (records deleted before any snapshot covered them) do not stop
        # a worker from serving; they are reported here, loudly in the log, and in
        # riverbed_learning_gaps_total.
        ok = status.ready
        gaps = document().get("learning_gaps", [])
        return web.json({"ready": ok, "learning_gaps": gaps}, status=200 if ok else 503)

    @app.page("/models")
    async def models_view(web: View, request: Request) -> Response:
        return web.json(document())

    @app.page("/metrics")
    async def metrics_view(web: View, request: Request) -> Response:
        # aiohttp refuses a charset inside content_type; the header carries it whole.
        body = generate_latest(metrics.registry)
        return web.bytes(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/")
    async def live(web: View, request: Request) -> Response:
        return web.bytes(page, content_type="text/html")
