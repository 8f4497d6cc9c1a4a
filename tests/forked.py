"""``riverbed ARGS`` processes of the tests, forked from an interpreter that has
imported riverbed already (multiprocessing's forkserver, preloaded as gunicorn's
``--preload`` is).

Why: the suite starts ~90 workers. Each spent ~1.5 s of CPU importing riverbed, Faust
and River (River's metrics and models import ``scipy.stats``) before doing anything a
test looks at, and on 2 cores that CPU is the suite's time. A forked child runs the
same entry point as ``python -m riverbed`` (:func:`riverbed.cli.main`), in a process of
its own with the test's environment, working directory and log, and it is signalled,
killed and reaped as a ``subprocess.Popen`` is.

What a fork skips is the interpreter's own start-up: ``python -m riverbed`` itself is
run by the CLI tests, the packaging test and every supervisor (whose children are
spawned, not forked). The forkserver imports nothing but riverbed; it starts no thread
and opens no connection, so forking it is safe.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["ForkedRiverbed", "run"]

# The forkserver of this test process (one per xdist worker), made on first use.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["riverbed.main", "riverbed.cli", "tests.forked"])
_RUNNING: set[ForkedRiverbed] = set()


def _main(argv: list[str], env: dict[str, str], cwd: str, out: str, err: str) -> None:
    """In the forked child: become ``riverbed ARGV`` run from ``cwd`` with ``env``, its
    stdout appended to the file ``out`` and its stderr to ``err`` (the same or not)."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    # What the interpreter would have done with the environment's PYTHONPATH.
    for path in reversed(env.get("PYTHONPATH", "").split(os.pathsep)):
        if path and path not in sys.path:
            sys.path.insert(0, path)
    for target, path in ((1, out), (2, err)):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(fd, target)
        os.close(fd)
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
        if self.returncode is None:
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
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
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
