"""The supervisor's HTTP server: one entry point for all the workers of a machine.

On ``RIVERBED_WEB_PORT`` (each child serves ``RIVERBED_WEB_PORT + 1 + slot``):

* ``/health``: the supervisor and each child's pid, port, restarts;
* ``/ready``: 200 when every child answers, itself (its pid), that it is ready;
* ``/models``: the children's documents merged into one of the same schema (all the
  machine's partitions; ``assigned`` merged; counters summed);
* ``/metrics``: every child's metrics with a ``slot`` label, plus
  ``riverbed_worker_restarts_total``. One scrape target per machine, and no shared
  state between processes: prometheus_client's multiprocess mode only aggregates its
  own metric types written to mmap files, while riverbed's metrics are read at scrape
  time from each worker's ``/models`` (a custom collector), which that mode cannot
  carry. So the supervisor scrapes its children and relabels;
* ``POST /predict``: handed to a live child, which answers or forwards to the
  partition's owner (``riverbed.serving.predict``);
* ``GET /models/<p>/model``: handed to the child that owns partition p;
* ``/history``: the children's ``/history`` merged (each partition's series comes
  from the child that owns it);
* ``/``: the live page, drawn from the merged ``/history`` and ``/models``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from riverbed.supervisor.process import Child, Supervisor

__all__ = ["Gateway", "merge_documents", "merge_histories", "relabel"]

logger = logging.getLogger("riverbed.supervisor")

CHILD_TIMEOUT_S = 5.0  # /ready, /models, /metrics of a child
# A relayed /predict or model export: longer than a child takes to answer or to give up
# forwarding to the owner (predict.FORWARD_TIMEOUT_S, 10 s; not imported: the supervisor
# does not load Faust), so the relay never gives up on a child that still works for it.
# The work itself is bounded by RIVERBED_PREDICT_MAX_BYTES and _RECORDS.
RELAY_TIMEOUT_S = 60.0
PAGE = Path(__file__).resolve().parent.parent / "serving" / "static" / "index.html"
# /models fields that are not counts: the largest, not the sum, describes the machine.
MAXIMA = frozenset({"last_checkpoint_seconds", "last_capture_loop_seconds", "recovery_seconds",
                    "snapshot_age_s"})  # fmt: skip
FORWARD_HEADERS = ("Authorization", "Content-Type", "Accept")
# A child's answer headers the relay keeps (and every X-Riverbed-*: the model export's
# offsets and model name, which the export alone would lose).
RELAYED_HEADERS = frozenset(
    ("Content-Type", "Retry-After", "WWW-Authenticate", "Content-Disposition")
)


def _combine(key: str, a: Any, b: Any) -> Any:
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) and bool(b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return max(a, b) if key in MAXIMA else a + b
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = _combine(k, out[k], v) if k in out else v
        return out
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    return a if a is not None else b


def merge_documents(docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Children's ``/models`` documents as one (the same schema).

    Examples
    --------
    >>> a = {"model": "logreg", "assigned": [0, 2], "partitions": {"0": {"events": 3}},
    ...      "dead_letters": {"validate": 1}, "ready": True, "fetches": 10}
    >>> b = {"model": "logreg", "assigned": [1], "partitions": {"1": {"events": 4}},
    ...      "dead_letters": {"validate": 2, "learn": 1}, "ready": True, "fetches": 5}
    >>> m = merge_documents([a, b])
    >>> m["assigned"], sorted(m["partitions"]), m["dead_letters"], m["fetches"]
    ([0, 1, 2], ['0', '1'], {'validate': 3, 'learn': 1}, 15)

    """
    out: dict[str, Any] = {}
    for doc in docs:
        for k, v in doc.items():
            out[k] = _combine(k, out[k], v) if k in out else v
    if "assigned" in out:
        out["assigned"] = sorted(set(out["assigned"]))
    if isinstance(out.get("partitions"), dict):
        out["partitions"] = dict(sorted(out["partitions"].items(), key=lambda kv: int(kv[0])))
    return out


def merge_histories(docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Children's ``/history`` as one: each partition lives in one child; during a
    rebalance two may answer for it, and the one with the later last sample wins.

    Examples
    --------
    >>> a = {"interval": 1.0, "points": 1800, "partitions": {"0": [[5.0, 1, 0, 0, {}]]}}
    >>> b = {"interval": 1.0, "points": 1800, "partitions": {"1": [[6.0, 2, 1, 0, {}]],
    ...                                                      "0": [[9.0, 3, 2, 0, {}]]}}
    >>> m = merge_histories([a, b])
    >>> sorted(m["partitions"]), m["partitions"]["0"][-1][0]
    (['0', '1'], 9.0)

    """
    out: dict[str, Any] = {"interval": 1.0, "points": 1800, "partitions": {}}
    parts: dict[str, list[Any]] = out["partitions"]
    for doc in docs:
        out["interval"], out["points"] = doc.get("interval", 1.0), doc.get("points", 1800)
        for p, samples in doc.get("partitions", {}).items():
            mine = parts.get(p)
            if not mine or (samples and samples[-1][0] > mine[-1][0]):
                parts[p] = samples
    out["partitions"] = dict(sorted(parts.items(), key=lambda kv: int(kv[0])))
    return out


def relabel(texts: dict[int, str]) -> list[Metric]:
    """Children's Prometheus text as metric families, each sample labelled ``slot``."""
    families: dict[str, Metric] = {}
    for slot, text in texts.items():
        for fam in text_string_to_metric_families(text):
            merged = families.get(fam.name)
            if merged is None:
                merged = families[fam.name] = Metric(fam.name, fam.documentation, fam.type)
            for s in fam.samples:
                merged.add_sample(s.name, {**s.labels, "slot": str(slot)}, s.value, s.timestamp)
    return list(families.values())


class _Families:
    """A prometheus_client collector of ready-made families."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


class Gateway:
    """The supervisor's aiohttp application."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.settings = supervisor.settings
        self._next = itertools.count()
        self.session: aiohttp.ClientSession | None = None
        self.runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        # /predict's own limit (a child refuses more with a 413 that says which setting)
        app = web.Application(client_max_size=self.settings.predict_max_bytes + 1)
        app.router.add_get("/health", self.health)
        app.router.add_get("/ready", self.ready)
        app.router.add_get("/models", self.models)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/history", self.history)
        app.router.add_get("/", self.page)
        app.router.add_post("/predict", self.predict)
        app.router.add_get("/models/{partition}/model", self.model_export)
        # Versions are read from Kafka, and an operation is forwarded to the partition's
        # owner: any live child does.
        app.router.add_get("/models/{partition}/versions", self.any_child)
        app.router.add_post("/models/{partition}/{op}", self.any_child)
        return app

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CHILD_TIMEOUT_S))
        self.runner = web.AppRunner(self.app(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.web_host, self.settings.web_port)
        await site.start()
        logger.info("supervisor serving on http://%s:%d", self.settings.web_host,
                    self.settings.web_port)  # fmt: skip

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.session is not None:
            await self.session.close()

    # -- asking the children ---------------------------------------------------------
    def _url(self, child: Child, path: str) -> str:
        return f"http://{self.settings.web_host}:{child.port}{path}"

    async def _get(self, child: Child, path: str) -> tuple[int, bytes]:
        """A child's answer (status, body); (0, b"") when it does not answer."""
        assert self.session is not None
        if not child.alive:
            return 0, b""
        try:
            async with self.session.get(self._url(child, path)) as r:
                return r.status, await r.read()
        except (aiohttp.ClientError, TimeoutError):
            return 0, b""

    async def _all(self, path: str) -> list[tuple[Child, int, bytes]]:
        children = self.supervisor.children
        answers = await asyncio.gather(*(self._get(c, path) for c in children))
        return [(c, status, body) for c, (status, body) in zip(children, answers, strict=True)]

    def _processes(self, ready: dict[int, bool] | None = None) -> list[dict[str, Any]]:
        return [
            {"slot": c.slot, "pid": c.pid, "port": c.port, "alive": c.alive,
             "restarts": c.restarts, "exits": c.exits[-5:],
             **({"ready": ready.get(c.slot, False)} if ready is not None else {})}
            for c in self.supervisor.children
        ]  # fmt: skip

    def _spare(self) -> dict[str, Any] | None:
        """The warm spare's pid and resident memory (MB), if one waits."""
        spare = self.supervisor.spare
        if spare is None or spare.returncode is not None:
            return None
        try:
            status = Path(f"/proc/{spare.pid}/status").read_text()
            rss = next(int(line.split()[1]) for line in status.splitlines()
                       if line.startswith("VmRSS:")) / 1024  # fmt: skip
        except (OSError, StopIteration, ValueError):
            rss = None
        return {"pid": spare.pid, "rss_mb": rss}

    # -- views -----------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        body = {"status": "ok", "processes": self._processes(),
                "restarts": self.supervisor.restarts_total, "spare": self._spare()}  # fmt: skip
        return web.json_response(body, dumps=lambda o: orjson.dumps(o).decode())

    async def ready(self, request: web.Request) -> web.Response:
        answers = await self._all("/ready")
        ready: dict[int, bool] = {}
        reasons: dict[int, str] = {}
        gaps: list[Any] = []
        for c, status, body in answers:
            doc = orjson.loads(body) if status in (200, 503) and body else {}
            # Only this child's own answer counts, not another process on its port.
            ours = doc.get("pid") == c.pid
            ready[c.slot] = status == 200 and ours
            if ours:
                gaps.extend(doc.get("learning_gaps", []))
            if not ready[c.slot]:
                reasons[c.slot] = (doc.get("reason", "not ready") if ours else c.down
                                   or "does not answer")  # fmt: skip
        ok = bool(ready) and all(ready.values()) and not self.supervisor.stopping
        processes = self._processes(ready)
        for p in processes:
            if p["slot"] in reasons:
                p["reason"] = reasons[p["slot"]]
        doc = {"ready": ok, "learning_gaps": gaps, "processes": processes}
        return web.Response(body=orjson.dumps(doc), status=200 if ok else 503,
                            content_type="application/json")  # fmt: skip

    async def models(self, request: web.Request) -> web.Response:
        answers = await self._all("/models")
        docs = [orjson.loads(body) for _c, status, body in answers if status == 200]
        merged = merge_documents(docs)
        merged["ready"] = len(docs) == len(answers) and all(d.get("ready") for d in docs)
        merged["processes"] = self._processes()
        return web.Response(body=orjson.dumps(merged), content_type="application/json")

    async def metrics(self, request: web.Request) -> web.Response:
        answers = await self._all("/metrics")
        texts = {c.slot: body.decode() for c, status, body in answers if status == 200}
        families = relabel(texts)
        restarts = Metric("riverbed_worker_restarts", "Worker processes restarted by the "
                          "supervisor, by slot.", "counter")  # fmt: skip
        up = Metric("riverbed_worker_up", "1 when the slot's worker answers /metrics.", "gauge")
        for c in self.supervisor.children:
            restarts.add_sample("riverbed_worker_restarts_total", {"slot": str(c.slot)},
                                c.restarts)  # fmt: skip
            up.add_sample("riverbed_worker_up", {"slot": str(c.slot)},
                          1.0 if c.slot in texts else 0.0)  # fmt: skip
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families([*families, restarts, up]))
        return web.Response(body=generate_latest(registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})  # fmt: skip

    async def history(self, request: web.Request) -> web.Response:
        answers = await self._all("/history")
        merged = merge_histories(orjson.loads(body) for _c, status, body in answers
                                 if status == 200)  # fmt: skip
        return web.Response(body=orjson.dumps(merged), content_type="application/json")

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(body=PAGE.read_bytes(), content_type="text/html")

    async def _relay(
        self, child: Child, request: web.Request, body: bytes | None, timeout: float
    ) -> web.Response:
        assert self.session is not None
        headers = {k: request.headers[k] for k in FORWARD_HEADERS if k in request.headers}
        try:
            async with self.session.request(
                request.method,
                self._url(child, request.path_qs),
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as r:
                keep = {k: v for k, v in r.headers.items()
                        if k in RELAYED_HEADERS or k.startswith("X-Riverbed-")}  # fmt: skip
                return web.Response(body=await r.read(), status=r.status, headers=keep)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return self._unavailable(f"worker slot {child.slot} did not answer: {exc!r}")

    @staticmethod
    def _unavailable(reason: str) -> web.Response:
        return web.Response(
            body=orjson.dumps({"error": reason}),
            status=503,
            headers={"Retry-After": "1"},
            content_type="application/json",
        )

    async def predict(self, request: web.Request) -> web.Response:
        """Any live child answers for any partition (it forwards to the owner)."""
        live = [c for c in self.supervisor.children if c.alive]
        if not live:
            return self._unavailable("no worker process is running")
        child = live[next(self._next) % len(live)]
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            reason = (f"the body is over {self.settings.predict_max_bytes} bytes "
                      "(RIVERBED_PREDICT_MAX_BYTES)")  # fmt: skip
            return web.Response(body=orjson.dumps({"error": reason}), status=413,
                                content_type="application/json")  # fmt: skip
        return await self._relay(child, request, body, RELAY_TIMEOUT_S)

    async def any_child(self, request: web.Request) -> web.Response:
        """A live child answers (it forwards to the owner what must be)."""
        live = [c for c in self.supervisor.children if c.alive]
        if not live:
            return self._unavailable("no worker process is running")
        child = live[next(self._next) % len(live)]
        body = await request.read() if request.method == "POST" else None
        return await self._relay(child, request, body, RELAY_TIMEOUT_S)

    async def model_export(self, request: web.Request) -> web.Response:
        try:
            partition = int(request.match_info["partition"])
        except ValueError:
            return web.Response(status=400, text="the partition is a number")
        for child, status, body in await self._all("/models"):
            if status == 200 and partition in orjson.loads(body).get("assigned", []):
                return await self._relay(child, request, None, RELAY_TIMEOUT_S)
        return self._unavailable(f"no worker of this machine owns partition {partition} now")
