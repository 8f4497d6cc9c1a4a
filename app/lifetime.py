"""A process's lifetime tied to its parent's (Linux's ``PR_SET_PDEATHSIG``).

Used by a supervised worker (it stops when its supervisor dies, even by kill -9) and by
a forked checkpoint capture (it has no use once the worker that forked it is gone).
"""

from __future__ import annotations

import ctypes
import logging
import signal
import sys

__all__ = ["die_with_parent"]

logger = logging.getLogger("riverbed")

PR_SET_PDEATHSIG = 1  # linux/prctl.h


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
