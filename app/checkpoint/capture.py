"""A checkpoint's capture in a forked child: the loop is held for the fork alone.

Pickling a learner in the worker holds the event loop for as long as the pickle takes
(~240 ms for a 13.7 MB ARF) and leaves every pickled object slower for good
(``app/learning/inline.py``). With ``RIVERBED_CHECKPOINT_CAPTURE=fork`` the worker
forks instead, as Redis' BGSAVE does: the child inherits the learners as they are at
the fork, copy-on-write, pickles them and writes the bytes to a pipe, then exits
(``os._exit``: no finaliser, flush or atexit of the parent's runs in it). The parent
reads the pipe in a thread and goes on meanwhile; its objects are never pickled.

The child does all the per-byte and per-object work: the pickle, its sha256, the
scan for non-finite floats and, when the scan finds one, the walk of the learner's
state that decides (``PartitionLearner.poisoned``). The walk reads every object's
``__dict__``; in the parent it held the loop 70 ms for an ARF and left the model
slower for good, in the child it touches a copy. The parent reads the pipe in one
capture thread, started with the worker, and splits the bytes into the snapshot's
records there.

The snapshot is the state at the fork, which is the state at the offsets the
checkpoint captured with it. A child that fails, or does not finish within
``CAPTURE_TIMEOUT_S``, fails the checkpoint loudly (and is killed and reaped): no child
outlives its checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import os
import pickle
import signal
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from riverbed.exceptions import RiverbedError
from riverbed.learning.guard import suspect_blob
from riverbed.lifetime import die_with_parent

__all__ = ["CaptureFailed", "CaptureThread", "Captured", "collapse_heap", "fork_capture"]

CAPTURE_TIMEOUT_S = 120.0
# partition, pickle length, poisoned (a non-finite float in the state), sha256
_HEADER = struct.Struct(">iQ?32s")
# The pipe's buffer: the child writes, and the reader reads, in pieces up to this size
# (Linux's default is 64 KiB; 1 MiB is the unprivileged maximum, pipe-max-size).
_PIPE_BYTES = 1 << 20
_MAX_FD = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536


@dataclass(frozen=True)
class Captured:
    """One learner's pickle, with what the parent would otherwise compute on the loop.

    ``poisoned``: the state at the fork holds a non-finite float (the scan found a
    candidate and the walk confirmed it). ``records``: what ``encode`` (given to
    :func:`fork_capture`) made of the pickle in the capture thread.
    """

    blob: bytes
    sha256: str
    poisoned: bool
    records: Any = None


class CaptureFailed(RiverbedError):
    """The forked capture did not hand back every learner's pickle."""


def _poisoned(learner: Any, blob: bytes) -> bool:
    # A learner says whether its state holds a non-finite float (a walk); anything
    # else pickled here (tests' objects) is judged by the scan alone.
    if not suspect_blob(blob):
        return False
    poisoned = getattr(learner, "poisoned", None)
    return bool(poisoned()) if poisoned is not None else True


def _child(learners: dict[int, Any], fd: int, parent: int) -> None:
    code = 0
    try:
        # The child inherited every descriptor of the worker: its HTTP port's listening
        # socket among them. A worker killed -9 mid-capture left the child holding the
        # port while it pickled, and the worker's restart died on "address already in
        # use" (a supervised slot restarted twice). The child needs its pipe alone, and
        # has no use once the worker is gone.
        os.closerange(3, fd)
        os.closerange(fd + 1, _MAX_FD)
        die_with_parent(signal.SIGKILL)
        if os.getppid() != parent:
            raise SystemExit(1)  # the worker died before the line above took effect
        # The child's collector would only copy pages the parent shares with it.
        gc.disable()
        # The worker's loop (and, on a small machine, the broker) come first: the
        # child's pickling competed with them for the cores, and every event handled
        # in the ~100 ms after a fork paid for it (hoeffding's p99 at half capacity:
        # 24 ms, against 12 without checkpoints). A niced child is slower, not starved.
        os.nice(19)
        with os.fdopen(fd, "wb", buffering=_PIPE_BYTES) as out:
            for p, learner in learners.items():
                blob = pickle.dumps(learner, protocol=pickle.HIGHEST_PROTOCOL)
                # The per-byte work too: hashing and scanning 13.7 MB (arf) held the
                # parent's loop ~25 ms.
                digest = hashlib.sha256(blob).digest()
                out.write(_HEADER.pack(p, len(blob), _poisoned(learner, blob), digest))
                out.write(blob)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _read_exact(fd: int, n: int) -> bytes:
    pieces = []
    while n > 0:
        piece = os.read(fd, min(n, _PIPE_BYTES))
        if not piece:
            break  # the child ended early: the caller sees a short record
        pieces.append(piece)
        n -= len(piece)
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


Encode = Callable[[int, bytes, str], Any]  # (partition, pickle, sha256) -> records


def _read_all(fd: int, encode: Encode | None) -> dict[int, Captured]:
    """The child's records, read and encoded off the loop (in the capture thread).

    The thread closes the pipe: closed by the loop while the thread still read it (a
    capture that timed out), the descriptor's number could be reused meanwhile.
    """
    out: dict[int, Captured] = {}
    try:
        while len(header := _read_exact(fd, _HEADER.size)) == _HEADER.size:
            p, n, poisoned, digest = _HEADER.unpack(header)
            blob = _read_exact(fd, n)
            if len(blob) != n:
                break
            sha256 = digest.hex()
            records = encode(p, blob, sha256) if encode is not None and not poisoned else None
            out[p] = Captured(blob, sha256, poisoned, records)
    finally:
        os.close(fd)
    return out


def _widen(fd: int) -> None:
    """A 1 MiB pipe buffer where the system has one to give (Linux); a smaller buffer
    only means more reads."""
    try:
        import fcntl
    except ImportError:  # not POSIX: there is no fork either
        return
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setpipe is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, setpipe, _PIPE_BYTES)


# madvise(2) MADV_COLLAPSE (Linux 6.1): back a range with 2 MiB pages now.
_MADV_COLLAPSE = 25
_HUGE_PAGE = 2 << 20
# A mapping is collapsed only when this much of it is resident: collapsing a sparse one
# (a thread's stack, a malloc arena's reserve) would make all of it resident.
_DENSE = 0.9
_heap_collapsed = False


def _dense_anonymous(smaps: str) -> list[tuple[int, int]]:
    r"""The 2 MiB-aligned parts of the private, writable, anonymous mappings (and the
    malloc heap) that are at least ``_DENSE`` resident, from ``/proc/<pid>/smaps``.

    Examples
    --------
    >>> smaps = (
    ...     "7f0000000000-7f0000600000 rw-p 00000000 00:00 0\n"
    ...     "Size:               6144 kB\n"
    ...     "Rss:                6000 kB\n"
    ...     "7f0000600000-7f0000e00000 rw-p 00000000 00:00 0\n"
    ...     "Size:               8192 kB\n"
    ...     "Rss:                  64 kB\n"
    ...     "7f1000000000-7f1000400000 r--p 00000000 08:01 42   /usr/lib/libc.so.6\n"
    ...     "Size:               4096 kB\n"
    ...     "Rss:                4096 kB\n"
    ... )
    >>> [(hex(lo), hi - lo) for lo, hi in _dense_anonymous(smaps)]
    [('0x7f0000000000', 6291456)]

    """
    ranges: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    size = 0
    for line in smaps.splitlines():
        head = line.split(maxsplit=5)
        if not head:
            continue
        if "-" in head[0] and len(head) >= 5:  # a mapping's first line
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            perms, path = head[1], (head[5].strip() if len(head) > 5 else "")
            anonymous = path in ("", "[heap]")
            current = (lo, hi) if perms[1] == "w" and perms[3] == "p" and anonymous else None
        elif current is not None and head[0] == "Size:":
            size = int(head[1])
        elif current is not None and head[0] == "Rss:":
            if size and int(head[1]) >= _DENSE * size:
                lo = (current[0] + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
                hi = current[1] & ~(_HUGE_PAGE - 1)
                if hi > lo:
                    ranges.append((lo, hi))
            current = None
    return ranges


def collapse_heap() -> int:
    """Back the process's resident anonymous memory with 2 MiB pages where the kernel
    can (``madvise(MADV_COLLAPSE)``, Linux 6.1+); return the bytes it collapsed.

    A fork copies one page-table entry for each resident 4 KiB page of private memory,
    and one for each 2 MiB page. Most of a worker's ~120 MB of anonymous memory is the
    heap its imports made (River's scipy and scikit-learn alone ~80 MB), read but not
    written afterwards. With it collapsed, the fork of a ``hoeffding`` worker held the
    loop 3.7-4.1 ms at the median instead of 4.3-5.2 (docs/performance.md); resident
    memory stayed the same. A 2 MiB page the worker writes after a fork is split back
    (Linux copies only the 4 KiB written, since 5.8). Where the call is refused (an
    older kernel, no transparent huge pages, a seccomp filter) nothing changes.
    """
    try:
        with open(f"/proc/{os.getpid()}/smaps", encoding="ascii", errors="replace") as f:
            ranges = _dense_anonymous(f.read())
        import ctypes

        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):  # no /proc, no libc madvise: not Linux
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    done = 0
    for lo, hi in ranges:
        if madvise(lo, hi - lo, _MADV_COLLAPSE) == 0:
            done += hi - lo
    return done


class CaptureThread:
    """The one thread that reads captures, started with the worker.

    asyncio's default executor starts its threads on first use: a worker's first
    forked capture held the loop 7-11 ms for it. The first one of a process also
    collapses the heap into huge pages (:func:`collapse_heap`), off the loop, while the
    worker starts.
    """

    def __init__(self) -> None:
        global _heap_collapsed  # noqa: PLW0603 - once a process
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="riverbed-capture")
        self.executor.submit(int).result()  # the thread is up before the first capture
        # What the last fork held the loop (seconds): Checkpointer's auto compares it
        # with what pickling and copying inline would.
        self.fork_seconds: float | None = None
        if not _heap_collapsed:
            _heap_collapsed = True
            self.executor.submit(collapse_heap)  # a no-op where refused

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


async def fork_capture(
    learners: dict[int, Any],
    *,
    thread: CaptureThread | None = None,
    encode: Encode | None = None,
) -> dict[int, Captured]:
    """Each learner's pickle, made in a forked child, by partition.

    ``encode(partition, pickle, sha256)``, when given, runs in the capture thread on
    each pickle that is not poisoned; its result is the ``records`` of that ``Captured``.
    """
    r, w = os.pipe()
    _widen(w)
    t0 = time.perf_counter()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: pickle, write, exit
        _child(learners, w, parent)
    if thread is not None:
        thread.fork_seconds = time.perf_counter() - t0
    os.close(w)
    loop = asyncio.get_running_loop()
    executor = thread.executor if thread is not None else None
    try:
        out = await asyncio.wait_for(
            loop.run_in_executor(executor, _read_all, r, encode), CAPTURE_TIMEOUT_S
        )
        _, status = await loop.run_in_executor(executor, os.waitpid, pid, 0)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        raise
    if status != 0:
        msg = f"the capture process exited with status {os.waitstatus_to_exitcode(status)}"
        raise CaptureFailed(msg)
    if set(out) != set(learners) or any(len(c.sha256) != 64 for c in out.values()):
        msg = f"the capture process handed back partitions {sorted(out)} of {sorted(learners)}"
        raise CaptureFailed(msg)
    return out
