"""``riverbed ARGS`` processes of the tests, forked from an interpreter that has
imported riverbed already (multiprocessing's forkserver, preloaded as gunicorn's
``--preload`` is).

Why: the suite starts ~90 workers. Each spent ~1.5 s of CPU importing riverbed, Faust
and River (River's metrics and models import ``scipy.stats``) before doing anything a
test looks at, and on 2 cores that CPU is the suite's time. A forked child runs the
same entry point as ``python -m riverbed`` (:func:`riverbed.cli.main`), in a process of
its own with the test's ``os.environ``, working directory and log; the test signals,
kills and waits for it as for a ``subprocess.Popen`` (its parent is the forkserver,
which reaps it and reports its exit code or signal).

What a fork skips is the interpreter's own start-up, so a test that depends on it
spawns ``python -m riverbed`` instead, as the CLI tests, the packaging test, the demo's
and test_hosts' do, and every supervisor for its children. That is, anything read at
import time or interpreter start comes from the environment the forkserver started
with (pytest's), not the test's: ``PYTHON*`` but ``PYTHONPATH`` (applied here),
``FAUST_LOOP``, ``PROMETHEUS_*``, BLAS thread counts; the hash seed is the forkserver's
for all its children (``random`` reseeds itself after a fork); stdin is ``/dev/null``.
The forkserver imports riverbed (Faust, River, numpy, scipy) and nothing runs in it: it
opens no connection and runs no thread of Python's, only the BLAS pools numpy and scipy
start, which survive a fork by design (their ``pthread_atfork`` hooks).
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["ForkedRiverbed", "run"]

ROOT = Path(__file__).resolve().parent.parent
PRELOAD = ["riverbed.main", "riverbed.cli", "tests.forked"]
# The forkserver of this test process (one per xdist worker), made on first use.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(PRELOAD)
_RUNNING: set[ForkedRiverbed] = set()


def _ensure_forkserver() -> None:
    """Start the forkserver, able to import ``tests.forked`` from any working directory.

    It is ``python -c ...`` with this process's environment; Python 3.11 does not give
    it this process's ``sys.path``, and a preload it cannot import is skipped silently.
    """
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), before) if p)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def _main(argv: list[str], env: dict[str, str], cwd: str, out: str, err: str) -> None:
    """In the forked child: become ``riverbed ARGV`` run from ``cwd`` with ``env``, its
    stdout appended to the file ``out`` and its stderr to ``err`` (the same or not)."""
    for target, path in ((1, out), (2, err)):  # first: any failure below is in the log
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(fd, target)
        os.close(fd)
    # A child that hangs is asked for its threads' stacks (run() does, before the kill).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    missing = [m for m in PRELOAD if m not in sys.modules]
    if missing:  # it still runs, as a spawned process would: only slower
        print(f"tests/forked.py: the forkserver did not preload {missing}", file=sys.stderr)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    # What the interpreter would have done with the environment's PYTHONPATH.
    for path in reversed(env.get("PYTHONPATH", "").split(os.pathsep)):
        if path and path not in sys.path:
            sys.path.insert(0, path)
    from riverbed.cli import main

    sys.argv = ["riverbed", *argv]
    sys.exit(main(argv))


class ForkedRiverbed:
    """``riverbed ARGV`` in a forked process: the part of ``subprocess.Popen`` that the
    tests use (``pid``, ``poll``, ``wait``, ``send_signal``, ``kill``, ``returncode``)."""

    def __init__(
        self, argv: list[str], env: dict[str, str], cwd: Path, out: Path, err: Path | None = None
    ) -> None:
        self.args = ["riverbed", *argv]
        self.log = out
        for path in (out, err or out):  # there from the start, as Popen's files are
            path.touch()
        self._process = _CONTEXT.Process(
            target=_main,
            args=(list(argv), dict(env), str(cwd), str(out), str(err or out)),
            name=argv[0],
        )
        _ensure_forkserver()
        self._process.start()
        assert self._process.pid is not None
        self.pid: int = self._process.pid
        _RUNNING.add(self)

    @property
    def returncode(self) -> int | None:
        """The exit code, or minus the signal that ended it, as ``Popen``'s."""
        code = self._process.exitcode
        if code is not None:
            _RUNNING.discard(self)
        return code

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self.returncode
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        return code

    def send_signal(self, sig: int) -> None:
        # As Popen's: a child that has just exited (the forkserver reaped it) is no error.
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def run(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(["riverbed", *argv], capture_output=True, text=True)``, forked."""
    with tempfile.TemporaryDirectory(prefix="riverbed-run-") as tmp:
        out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
        proc = ForkedRiverbed(argv, env, cwd, out, err)
        try:
            code = proc.wait(timeout)
        except BaseException:  # a timeout, pytest-timeout's failure, Ctrl-C: as subprocess.run
            proc.send_signal(signal.SIGUSR1)  # its stacks, to stderr
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(1.0)
            proc.kill()
            proc.wait()
            print(f"{' '.join(proc.args)}: stdout\n{out.read_text(errors='replace')}")
            print(f"stderr\n{err.read_text(errors='replace')}")
            raise
        return subprocess.CompletedProcess(
            proc.args, code, out.read_text(errors="replace"), err.read_text(errors="replace")
        )


@atexit.register
def _kill_the_left_over() -> None:
    # Registered after multiprocessing's own exit hook, so it runs first: that hook
    # joins every child, and a worker a failed test left running would hang the exit.
    for proc in list(_RUNNING):
        proc.kill()
        proc.wait()
