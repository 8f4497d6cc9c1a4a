"""The supervisor's gateway: /ready counts a child only by its own answer."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from riverbed.config import Settings
from riverbed.supervisor.gateway import Gateway
from riverbed.supervisor.process import Supervisor


class _Running:
    """Stands in for a child's asyncio process: alive, with this pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _ready_with(answers: dict[int, dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """/ready of a gateway whose slot i has pid 1000+i and whose port answers
    ``answers[i]`` (a dict with a pid: some process answers there)."""
    first = _free_port()
    settings = Settings.from_env(
        {"RIVERBED_PROCESSES": str(len(answers)), "RIVERBED_WEB_PORT": str(first)}
    )
    sup = Supervisor(settings, [], environ={})
    runners = []
    for child in sup.children:
        child.port = _free_port()
        child.process = _Running(1000 + child.slot)  # type: ignore[assignment]
        doc = answers[child.slot]

        async def ready(_request: web.Request, doc: dict[str, Any] = doc) -> web.Response:
            return web.Response(body=orjson.dumps(doc), status=200,
                                content_type="application/json")  # fmt: skip

        app = web.Application()
        app.router.add_get("/ready", ready)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", child.port).start()
        runners.append(runner)
    gateway = Gateway(sup)
    gateway.session = aiohttp.ClientSession()
    try:
        response = await gateway.ready(None)  # type: ignore[arg-type]
        assert isinstance(response.body, bytes)
        return response.status, orjson.loads(response.body)
    finally:
        await gateway.session.close()
        for runner in runners:
            await runner.cleanup()


def test_ready_counts_only_a_childs_own_answer() -> None:
    # Both ports answer 200; slot 1's answer comes from another process (a worker of
    # an earlier supervisor, say): the machine is not ready, and slot 1 says why.
    status, doc = asyncio.run(_ready_with({0: {"pid": 1000}, 1: {"pid": os.getpid()}}))
    assert status == 503 and not doc["ready"], doc
    by_slot = {p["slot"]: p for p in doc["processes"]}
    assert by_slot[0]["ready"] and not by_slot[1]["ready"]
    assert by_slot[1]["reason"] == "does not answer"
    status, doc = asyncio.run(_ready_with({0: {"pid": 1000}, 1: {"pid": 1001}}))
    assert status == 200 and doc["ready"], doc


def test_a_spare_started_as_the_supervisor_stops_is_told_to_exit(
    tmp_path: Any, monkeypatch: Any
) -> None:
    """SIGTERM while the warm spare's process is being made: stop() cannot see it yet,
    so the spare is told there is no slot to take once it exists (its stdin closed);
    the stop waited 30 s for it before."""
    settings = Settings.from_env({"RIVERBED_PROCESSES": "1", "RIVERBED_DATA_DIR": str(tmp_path)})
    sup = Supervisor(settings, ["worker"], environ={})

    class Stdin:
        closed = False

        def close(self) -> None:
            self.closed = True

    class Spare:
        pid, returncode, stdin = 4242, None, Stdin()

    async def exec_while_stopping(*_args: Any, **_kwargs: Any) -> Spare:
        sup.stop()  # the signal arrives while the process is being made
        return Spare()

    monkeypatch.setattr(asyncio, "create_subprocess_exec", exec_while_stopping)
    asyncio.run(sup._start_spare())
    assert sup.stopping and sup.spare is not None
    assert sup.spare.stdin.closed, "the spare was told to exit"


def test_slots_ready_together_start_one_spare(tmp_path: Any, monkeypatch: Any) -> None:
    """Two slots found ready in the same instant: one spare, not two with one lost."""
    settings = Settings.from_env({"RIVERBED_PROCESSES": "2", "RIVERBED_DATA_DIR": str(tmp_path)})
    sup = Supervisor(settings, ["worker"], environ={})
    made: list[Any] = []

    class Spare:
        returncode, stdin = None, None

        def __init__(self) -> None:
            self.pid = 4000 + len(made)

    async def exec_slowly(*_args: Any, **_kwargs: Any) -> Spare:
        await asyncio.sleep(0)  # the process is being made: the other start runs now
        made.append(Spare())
        return made[-1]

    async def both() -> None:
        await asyncio.gather(sup._start_spare(), sup._start_spare())

    monkeypatch.setattr(asyncio, "create_subprocess_exec", exec_slowly)
    asyncio.run(both())
    assert len(made) == 1 and sup.spare is made[0]
