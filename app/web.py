"""HTTP views on Faust's web server: /health, /ready, /models."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View

from app.processor import Processor
from app.state import Learners

__all__ = ["WorkerStatus", "register"]


class WorkerStatus:
    """Readiness: true once partitions are assigned and no rebalance is under way."""

    def __init__(self) -> None:
        self.ready = False


def register(
    app: faust.App, learners: Learners, processor: Processor, status: WorkerStatus
) -> None:
    """Attach the views to ``app``."""

    @app.page("/health")
    async def health(web: View, request: Request) -> Response:
        return web.json({"status": "ok"})

    @app.page("/ready")
    async def ready(web: View, request: Request) -> Response:
        ok = status.ready
        body: dict[str, Any] = {"ready": ok, "assigned": sorted(learners.assigned)}
        return web.json(body, status=200 if ok else 503)

    @app.page("/models")
    async def models_view(web: View, request: Request) -> Response:
        return web.json({**learners.describe(), **processor.describe()})
