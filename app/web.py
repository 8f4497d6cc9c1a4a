"""HTTP views on Faust's web server: /health, /ready, /models."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View

from app.checkpoint import Checkpointer
from app.processor import Processor
from app.state import Learners

__all__ = ["WorkerStatus", "register"]


class WorkerStatus:
    """Readiness: true once every assigned partition has recovered its learner."""

    def __init__(self) -> None:
        self.ready = False
        self.snapshots_refused = 0
        self.recovery_seconds = 0.0


def register(
    app: faust.App,
    learners: Learners,
    processor: Processor,
    checkpointer: Checkpointer,
    status: WorkerStatus,
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
        return web.json(
            {
                **learners.describe(),
                **processor.describe(),
                **checkpointer.describe(),
                "snapshots_refused": status.snapshots_refused,
                "recovery_seconds": round(status.recovery_seconds, 3),
            }
        )
