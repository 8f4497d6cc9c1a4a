"""The supervisor of ``riverbed worker --processes N``: N worker processes, restarted.

Like an OTP one-for-one supervisor: each slot's child is a whole ``riverbed worker``
process in the app's consumer group. A child that exits or is killed is started again
after a backoff (0.5 s, doubling, capped; reset once a child has been up for a while).
The intensity is per slot: a slot whose restarts exceed it (5 in 60 s by default,
``RIVERBED_RESTART_INTENSITY`` and ``RIVERBED_RESTART_PERIOD``) stays down, logged,
while the others go on (a record that crashes its process is quarantined by the worker
itself, ``riverbed.pipeline.quarantine``); when every slot is down the supervisor exits
non-zero with the reason. A child that stops on a configuration error (exit status 2)
is not restarted: it would fail alike, and so would the others.
On SIGTERM or SIGINT it stops every child gracefully (each checkpoints and commits)
and exits 0.

Each slot has a stable Kafka ``group.instance.id`` (static membership): a restarted
child takes its own partitions back without a group rebalance, so the other children
keep theirs, undisturbed. Slot i serves HTTP on ``RIVERBED_WEB_PORT + 1 + i``; the
supervisor serves the machine's merged view on ``RIVERBED_WEB_PORT``
(``riverbed.supervisor.gateway``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from riverbed.config import Settings
from riverbed.lifetime import SUPERVISOR_ENV

__all__ = ["Child", "Server", "Supervisor", "child_env"]

logger = logging.getLogger("riverbed.supervisor")

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 30.0  # a child up this long starts its next backoff from the start again
STOP_TIMEOUT_S = 60.0  # a child's graceful stop (final checkpoint) before SIGKILL
POLL_S = 0.1  # how often a wait for another process's exit looks
CONFIG_ERROR = 2  # riverbed's exit status for a refused setting: restarting cannot help


class Server(Protocol):
    """The supervisor's HTTP server (``riverbed.supervisor.gateway.Gateway``)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def child_env(settings: Settings, slot: int, environ: dict[str, str]) -> dict[str, str]:
    """The environment of slot ``slot``'s worker process.

    Examples
    --------
    >>> s = Settings.from_env({"RIVERBED_APP_ID": "fraud", "RIVERBED_PROCESSES": "2"})
    >>> env = child_env(s, 1, {})
    >>> env["RIVERBED_PROCESSES"], env["RIVERBED_WEB_PORT"], env["RIVERBED_WEB_ADVERTISED_URL"]
    ('1', '6068', 'http://127.0.0.1:6068')
    >>> name = env["RIVERBED_GROUP_INSTANCE_ID"]
    >>> name.startswith("fraud-") and name.endswith("-1")
    True

    """
    port = settings.web_port + 1 + slot
    advertised = urlsplit(settings.advertised_url)
    host = advertised.hostname or settings.web_host
    if ":" in host:
        host = f"[{host}]"
    base = settings.group_instance_id or f"{settings.app_id}-{socket.gethostname()}"
    env = dict(environ)
    env.update(
        RIVERBED_PROCESSES="1",
        RIVERBED_WEB_PORT=str(port),
        RIVERBED_WEB_ADVERTISED_URL=f"{advertised.scheme or 'http'}://{host}:{port}",
        RIVERBED_GROUP_INSTANCE_ID=_instance_name(f"{base}-{slot}"),
        RIVERBED_DATA_DIR=os.path.join(settings.data_dir, f"slot-{slot}"),
    )
    env[SUPERVISOR_ENV] = str(os.getpid())  # not a setting: the child dies with this pid
    return env


def _is_riverbed(pid: int) -> bool:
    """Whether ``pid`` is a running riverbed process (not a zombie, not a reused pid)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        if sys.platform.startswith("linux"):
            return False
        try:  # no /proc: whether it exists at all
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    return b"riverbed" in cmdline and state != "Z"


def _port_free(host: str, port: int) -> bool:
    """Whether ``port`` can be bound on ``host`` now (as the worker's web server will)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _instance_name(name: str) -> str:
    """``name`` with characters a group.instance.id cannot hold replaced."""
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name)[:249]


@dataclass
class Child:
    """One slot: its process, restarts and last exit."""

    slot: int
    port: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = BACKOFF_START_S
    exits: list[str] = field(default_factory=list)
    recent: deque[float] = field(default_factory=deque)  # when its recent restarts happened
    down: str | None = None  # why the slot was given up, if it was

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None


def describe_exit(status: int) -> str:
    """A child's exit status in words (``-9``: killed by SIGKILL)."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"killed by {name}"
    return f"exited with status {status}"


class Supervisor:
    """Start, watch and restart the worker processes of one machine.

    Parameters
    ----------
    settings
        The machine's settings (``processes`` children, web port base).
    args
        The worker command's arguments (``worker -l info ...``), given to each child.

    """

    def __init__(
        self,
        settings: Settings,
        args: Sequence[str],
        *,
        environ: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.args = list(args)
        self.intensity = settings.restart_intensity
        self.period = settings.restart_period
        self.environ = dict(os.environ if environ is None else environ)
        self.clock = clock
        self.children = [
            Child(slot, settings.web_port + 1 + slot) for slot in range(settings.processes)
        ]
        self.restarts_total = 0
        self.spare: asyncio.subprocess.Process | None = None  # riverbed.supervisor.spare
        self.spares = settings.warm_spare == "on"
        self._spare_starting = False
        self._background: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.failure: str | None = None
        self._done = asyncio.Event()

    # -- the PID file: what a supervisor started after this one must stop first ------
    @property
    def pid_file(self) -> Path:
        return Path(self.settings.data_dir) / f"supervisor-{self.settings.web_port}.pids"

    def _write_pids(self) -> None:
        children = {str(c.slot): c.pid for c in self.children if c.pid}
        if self.spare is not None:
            children["spare"] = self.spare.pid
        pids = {"supervisor": os.getpid(), "children": children}
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(pids))
        os.replace(tmp, self.pid_file)

    async def take_over(self) -> str | None:
        """Stop the workers a previous supervisor on these ports left (by its PID file),
        and check the ports are free; the reason they are not, if they are not.

        A supervisor killed with -9 takes its children with it
        (:func:`riverbed.lifetime.die_with_supervisor`), but they stop gracefully, holding
        their ports a few seconds; a new supervisor whose children were started meanwhile
        crash-looped on ``address already in use``.
        """
        try:
            previous = json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            previous = {}
        left = {slot: pid for slot, pid in previous.get("children", {}).items()
                if _is_riverbed(pid)}  # fmt: skip
        if _is_riverbed(previous.get("supervisor", 0)) and previous["supervisor"] != os.getpid():
            return (f"another supervisor (pid {previous['supervisor']}) runs on port "
                    f"{self.settings.web_port} (its PID file: {self.pid_file})")  # fmt: skip
        if left:
            logger.warning(
                "the workers of a previous supervisor still run (pids %s, ports %s): stopping "
                "them (SIGTERM; their final checkpoint) before starting new ones",
                ", ".join(map(str, left.values())),
                ", ".join(str(self.settings.web_port + 1 + int(s)) for s in left if s.isdigit()),
            )  # fmt: skip
            for pid in left.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                    os.kill(pid, signal.SIGCONT)  # a stopped process acts on it (as systemd)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while any(_is_riverbed(p) for p in left.values()):
                if time.monotonic() > deadline:
                    for pid in left.values():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                await asyncio.sleep(POLL_S)  # polls their exit: they are not our children
        for child in self.children:
            if not _port_free(self.settings.web_host, child.port):
                return (f"port {child.port} (worker slot {child.slot}) is in use by another "
                        f"process; choose another RIVERBED_WEB_PORT")  # fmt: skip
        return None

    async def _spawn(self, child: Child) -> None:
        env = child_env(self.settings, child.slot, self.environ)
        spare, self.spare = self.spare, None
        if spare is not None and spare.returncode is None and spare.stdin is not None:
            # The warm spare takes the slot: its environment and the worker's arguments.
            spare.stdin.write(json.dumps({"env": env, "args": self.args}).encode() + b"\n")
            await spare.stdin.drain()
            spare.stdin.close()
            child.process, how = spare, "taken over by the warm spare"
        else:
            child.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "riverbed", *self.args, env=env
            )
            how = "started"
        if self.stopping:
            # The stop came during the awaits above, when stop() still saw the slot's
            # old process: this one gets its SIGTERM (and final checkpoint) now.
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        child.started = self.clock()
        self._write_pids()
        logger.info("worker slot %d %s (pid %d, port %d, group.instance.id %s)",
                    child.slot, how, child.process.pid, child.port,
                    env["RIVERBED_GROUP_INSTANCE_ID"])  # fmt: skip
        if self.spares:
            self._in_background(self._spare_when_ready(child))

    def _in_background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _spare_when_ready(self, child: Child) -> None:
        """Start a spare once ``child`` is ready (not before: on a small machine its
        imports would slow the child's start), unless one waits already."""
        import aiohttp

        url = f"http://{self.settings.web_host}:{child.port}/ready"
        process = child.process
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while not self.stopping and child.process is process and child.alive:
                try:
                    async with session.get(url) as r:
                        if r.status == 200:
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(POLL_S * 2)  # polls the child's readiness
            else:
                return
        await self._start_spare()

    async def _start_spare(self) -> None:
        # One at a time: the slots become ready together (one rebalance), and two
        # starts awaiting their processes at once made two spares, one of them lost.
        if self.spare is not None or self.stopping or self._spare_starting:
            return
        self._spare_starting = True
        env = dict(self.environ)
        env[SUPERVISOR_ENV] = str(os.getpid())
        try:
            spare = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "riverbed", "_spare", env=env,
                stdin=asyncio.subprocess.PIPE,
            )  # fmt: skip
        finally:
            self._spare_starting = False
        self.spare = spare
        self._write_pids()
        logger.info("warm spare started (pid %d)", spare.pid)
        if self.stopping:
            # The stop came while it was being started, before stop() could see it
            # (left open, the stop waited out its 30 s timeout for it, then killed it).
            self._dismiss_spare()

    async def _watch(self, child: Child) -> None:
        """Restart ``child`` whenever it ends, until the supervisor stops or the slot
        is given up."""
        while not self.stopping:
            assert child.process is not None
            status = await child.process.wait()
            if self.stopping:
                return
            delay = self.ended(child, status)
            if delay is None:
                return
            await asyncio.sleep(delay)  # the backoff itself, not a wait for a condition
            if self.stopping:
                return
            await self._spawn(child)

    def ended(self, child: Child, status: int) -> float | None:
        """``child`` ended with ``status``: the backoff before its restart, or None when
        the slot is given up (and the supervisor with it, once no slot is left).

        Examples
        --------
        >>> now = [0.0]
        >>> s = Settings.from_env({"RIVERBED_PROCESSES": "2", "RIVERBED_RESTART_INTENSITY": "2"})
        >>> sup = Supervisor(s, [], environ={}, clock=lambda: now[0])
        >>> a, b = sup.children
        >>> [sup.ended(a, -11) for _ in range(3)]  # a crash loop: 2 restarts, then down
        [0.5, 1.0, None]
        >>> a.down, sup.stopping
        ('3 restarts within 60 s (more than the intensity 2), the last killed by SIGSEGV', False)
        >>> now[0] = b.started = 61.0  # slot 1 is not held back by slot 0
        >>> sup.ended(b, 1), sup.ended(b, 1), sup.ended(b, 1) is None, sup.stopping
        (0.5, 1.0, True, True)
        >>> print(sup.failure)  # doctest: +NORMALIZE_WHITESPACE
        every worker slot is down; the last: slot 1: 3 restarts within 60 s (more than
        the intensity 2), the last exited with status 1

        """
        now = self.clock()
        up = now - child.started
        how = describe_exit(status)
        child.exits.append(how)
        if status == CONFIG_ERROR and up < STABLE_AFTER_S:
            self._give_up(f"worker slot {child.slot} {how} (a refused setting; see its log)")
            return None
        child.recent.append(now)
        while child.recent and now - child.recent[0] > self.period:
            child.recent.popleft()
        if len(child.recent) > self.intensity:
            child.down = (
                f"{len(child.recent)} restarts within {self.period:g} s (more than the "
                f"intensity {self.intensity}), the last {how}"
            )
            if all(c.down for c in self.children):
                self._give_up(
                    f"every worker slot is down; the last: slot {child.slot}: {child.down}"
                )
            else:
                logger.error("worker slot %d stays down: %s; the other slots go on",
                             child.slot, child.down)  # fmt: skip
            return None
        if up >= STABLE_AFTER_S:
            child.backoff = BACKOFF_START_S
        delay = child.backoff
        child.backoff = min(child.backoff * 2, BACKOFF_MAX_S)
        if delay <= BACKOFF_START_S and self.spare is not None:
            delay = 0.0  # a first restart in a while: the warm spare takes it at once
        child.restarts += 1
        self.restarts_total += 1
        logger.warning("worker slot %d (pid %s) %s after %.1f s; restart %d in %.1f s",
                       child.slot, child.pid, how, up, child.restarts, delay)  # fmt: skip
        return delay

    def _give_up(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
            logger.error("supervisor gives up: %s; stopping the other workers", reason)
        self.stop()

    def stop(self) -> None:
        """Stop every child gracefully (SIGTERM: each takes its final checkpoint)."""
        if self.stopping:
            return
        self.stopping = True
        for child in self.children:
            if child.alive:
                assert child.process is not None
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        self._dismiss_spare()
        self._done.set()

    def _dismiss_spare(self) -> None:
        if self.spare is not None and self.spare.stdin is not None:
            self.spare.stdin.close()  # a spare with no slot to take exits

    async def _reap(self) -> None:
        """Wait for every child's stop at once (they stop in parallel: with the broker
        down each may take its whole timeout), killing those past it."""
        await asyncio.gather(*(self._reap_one(c) for c in self.children if c.process))
        if self.spare is not None:
            try:
                await asyncio.wait_for(self.spare.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.spare.kill()
        for task in list(self._background):
            task.cancel()

    async def _reap_one(self, child: Child) -> None:
        assert child.process is not None
        try:
            await asyncio.wait_for(child.process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            logger.error("worker slot %d did not stop in %.0f s; killing it",
                         child.slot, STOP_TIMEOUT_S)  # fmt: skip
            with contextlib.suppress(ProcessLookupError):
                child.process.kill()
            await child.process.wait()

    async def run(self, gateway: Callable[[Supervisor], Server]) -> int:
        """Run until SIGTERM/SIGINT (exit 0) or giving up (exit 1), serving the machine's
        HTTP entry point made by ``gateway`` (``riverbed.supervisor.gateway.Gateway``,
        which reads this supervisor: passed in, so that neither module imports the other).
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        busy = await self.take_over()
        if busy:
            print(f"riverbed: error: {busy}", file=sys.stderr)
            return 1
        server = gateway(self)
        try:
            await server.start()
        except OSError as exc:
            print(f"riverbed: error: the supervisor cannot serve port {self.settings.web_port}:"
                  f" {exc.strerror}", file=sys.stderr)  # fmt: skip
            await server.stop()
            return 1
        try:
            for child in self.children:
                await self._spawn(child)
            watchers = [asyncio.ensure_future(self._watch(c)) for c in self.children]
            await self._done.wait()
            await self._reap()
            for w in watchers:
                w.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
        finally:
            await server.stop()
            with contextlib.suppress(OSError):
                self.pid_file.unlink()
        if self.failure:
            print(f"riverbed: error: supervisor gave up: {self.failure}", file=sys.stderr)
            return 1
        logger.info("supervisor stopped %d workers", len(self.children))
        return 0
