"""A checkpoint's capture in a forked child: the loop is held for the fork alone.

Pickling a learner in the worker holds the event loop for as long as the pickle takes
(~240 ms for a 13.7 MB ARF) and leaves every pickled object slower for good
(``app/learning/inline.py``). With ``RIVERBED_CHECKPOINT_CAPTURE=fork`` the worker
forks instead, as Redis' BGSAVE does: the child inherits the learners as they are at
the fork, copy-on-write, pickles them and writes the bytes to a pipe, then exits
(``os._exit``: no finaliser, flush or atexit of the parent's runs in it). The parent
reads the pipe in a thread and goes on meanwhile; its objects are never pickled.

The snapshot is the state at the fork, which is the state at the offsets the
checkpoint captured with it. A child that fails, or does not finish within
``CAPTURE_TIMEOUT_S``, fails the checkpoint loudly (and is killed and reaped): no child
outlives its checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import pickle
import signal
import struct
from dataclasses import dataclass
from typing import Any

from riverbed.exceptions import RiverbedError
from riverbed.learning.guard import suspect_blob

__all__ = ["CaptureFailed", "Captured", "fork_capture"]

CAPTURE_TIMEOUT_S = 120.0
# partition, pickle length, suspect (a non-finite float may be in it), sha256
_HEADER = struct.Struct(">iQ?32s")


@dataclass(frozen=True)
class Captured:
    """One learner's pickle, with what the parent would otherwise compute on the loop."""

    blob: bytes
    sha256: str
    suspect: bool


class CaptureFailed(RiverbedError):
    """The forked capture did not hand back every learner's pickle."""


def _child(learners: dict[int, Any], fd: int) -> None:
    code = 0
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            for p, learner in learners.items():
                blob = pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL)
                # The per-byte work too: hashing and scanning 13.7 MB (arf) held the
                # parent's loop ~25 ms.
                digest = hashlib.sha256(blob).digest()
                out.write(_HEADER.pack(p, len(blob), suspect_blob(blob), digest))
                out.write(blob)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _read_all(fd: int) -> dict[int, Captured]:
    """The child's records, read and split off the loop (in a thread)."""
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    data = b"".join(chunks)
    out: dict[int, Captured] = {}
    view, at = memoryview(data), 0
    while at + _HEADER.size <= len(data):
        p, n, suspect, digest = _HEADER.unpack_from(view, at)
        at += _HEADER.size
        out[p] = Captured(bytes(view[at : at + n]), digest.hex(), suspect)
        at += n
    return out


async def fork_capture(learners: dict[int, Any]) -> dict[int, Captured]:
    """Each learner's pickle, made in a forked child, by partition."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: pickle, write, exit
        os.close(r)
        _child(learners, w)
    os.close(w)
    loop = asyncio.get_running_loop()
    try:
        out = await asyncio.wait_for(loop.run_in_executor(None, _read_all, r), CAPTURE_TIMEOUT_S)
        _, status = await loop.run_in_executor(None, os.waitpid, pid, 0)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        raise
    finally:
        os.close(r)
    if status != 0:
        msg = f"the capture process exited with status {os.waitstatus_to_exitcode(status)}"
        raise CaptureFailed(msg)
    if set(out) != set(learners) or any(len(c.sha256) != 64 for c in out.values()):
        msg = f"the capture process handed back partitions {sorted(out)} of {sorted(learners)}"
        raise CaptureFailed(msg)
    return out
