"""A process's lifetime tied to its parent's (Linux's ``PR_SET_PDEATHSIG``).

Used by a supervised worker (it stops when its supervisor dies, even by kill -9) and by
a forked checkpoint capture (it has no use once the worker that forked it is gone).
The supervisor (``app/supervisor/process.py``) puts its pid in each child's environment
(:data:`SUPERVISOR_ENV`); the child's side, :func:`die_with_supervisor` and
:func:`supervisor_gone`, is here, so that a worker needs nothing of the supervisor.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from collections.abc import Mapping

__all__ = ["SUPERVISOR_ENV", "die_with_parent", "die_with_supervisor", "supervisor_gone"]

logger = logging.getLogger("riverbed")

PR_SET_PDEATHSIG = 1  # linux/prctl.h
# The supervisor's pid, in its children's environment (die_with_supervisor reads it).
# Not RIVERBED_-prefixed: settings refuse unknown names.
SUPERVISOR_ENV = "_RIVERBED_SUPERVISOR_PID"


def die_with_parent(signum: int = signal.SIGTERM) -> bool:
    """Be sent ``signum`` when the parent process (the thread that forked this one)
    dies; False where the platform has no such thing or the call failed.

    The parent may have died before the call took effect: callers compare
    ``os.getppid()`` with the parent they expect afterwards.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
        logger.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        return False
    return True


def die_with_supervisor(environ: Mapping[str, str] | None = None) -> None:
    """In a supervised worker: be sent SIGTERM when the supervisor dies, even by kill -9
    (Linux's PR_SET_PDEATHSIG), and exit at once if it is already gone.

    A kill -9 of the supervisor left its children running under PID 1, consuming and
    holding their ports, and a new supervisor's children then crash-looped on them.
    """
    env = os.environ if environ is None else environ
    parent = env.get(SUPERVISOR_ENV)
    if not parent:
        return
    die_with_parent(signal.SIGTERM)
    if supervisor_gone(env):  # it died before the line above took effect
        logging.getLogger("riverbed.supervisor").error(
            "the supervisor (pid %s) is gone; this worker stops", parent
        )
        raise SystemExit(1)


def supervisor_gone(environ: Mapping[str, str] | None = None) -> bool:
    """In a supervised worker: whether its supervisor has died (it was re-parented).
    Where ``PR_SET_PDEATHSIG`` does not exist, the worker looks every second.

    >>> supervisor_gone({}), supervisor_gone({SUPERVISOR_ENV: str(os.getppid())})
    (False, False)
    >>> supervisor_gone({SUPERVISOR_ENV: "1"})  # re-parented: init, or a subreaper
    True
    """
    env = os.environ if environ is None else environ
    parent = env.get(SUPERVISOR_ENV)
    return parent is not None and parent != "" and os.getppid() != int(parent)
