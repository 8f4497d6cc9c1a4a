"""Rate-limited logging: a flood of one line becomes a few lines and a count.

A 35 s broker outage made aiokafka and Faust log 136,000 ERROR lines (14 MB), and a
stream of bad records logged one line each. :class:`RateLimit` is a
:class:`logging.Filter` for the worker's handlers: per message template (logger,
level and unformatted message), the first ``burst`` records of a ``window`` pass,
the rest are counted, and the next one that passes after the window says how many
were held back: ``... (3,399 more like this in the last 10 s)``. :meth:`flush`
reports counts whose window ended with no further record (the worker calls it on a
timer).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LIMIT", "RateLimit", "StartupNoise", "flush", "install"]


@dataclass
class _Window:
    start: float
    passed: int = 0
    held: int = 0
    example: logging.LogRecord | None = None


class RateLimit(logging.Filter):
    """Let ``burst`` records per message template and ``window`` seconds through.

    Examples
    --------
    >>> now = [0.0]
    >>> limit = RateLimit(burst=2, window=10.0, clock=lambda: now[0])
    >>> def rec(i):
    ...     return logging.LogRecord("x", logging.ERROR, "f", 1, "failed %d", (i,), None)
    >>> [limit.filter(rec(i)) for i in range(5)]
    [True, True, False, False, False]
    >>> now[0] = 11.0
    >>> r = rec(5)
    >>> limit.filter(r), r.getMessage()
    (True, 'failed 5 (... 3 more like this in the last 10 s)')

    """

    def __init__(
        self,
        burst: int = 3,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self.clock = clock
        self._windows: dict[tuple[str, int, str], _Window] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        w = self._windows.get(key)
        if w is None or now - w.start >= self.window:
            held = w.held if w is not None else 0
            self._windows[key] = _Window(now, passed=1)
            if held:
                record.msg = (
                    f"{record.msg} (... {held:,} more like this in the last {self.window:g} s)"
                )
            if len(self._windows) > 10_000:  # templates are few; bound it anyway
                self._windows = {k: v for k, v in self._windows.items() if v.held}
            return True
        if w.passed < self.burst:
            w.passed += 1
            return True
        w.held += 1
        w.example = record
        return False

    def flush(self) -> list[str]:
        """Lines for counts held back in windows that ended quietly (also logged)."""
        now = self.clock()
        lines = []
        for key, w in list(self._windows.items()):
            if w.held and now - w.start >= self.window and w.example is not None:
                line = (
                    f"... {w.held:,} more like this in the last {self.window:g} s: "
                    f"{w.example.getMessage()}"
                )
                lines.append(line)
                logging.getLogger(key[0]).log(key[1], "%s", line)
                del self._windows[key]
        return lines


LIMIT = RateLimit()  # the worker's: on the root logger's handlers, flushed on a timer


class StartupNoise(logging.Filter):
    """aiokafka's ERROR for a group coordinator not found yet, as the INFO it is.

    A broker that has not served a consumer group yet creates ``__consumer_offsets`` on
    the first FindCoordinator request and answers GroupCoordinatorNotAvailable until it
    has; aiokafka retries at once, and logs each answer as an ERROR. A fresh ``make
    run`` printed one at every start. Only that message is changed; a coordinator that
    stays unavailable is still reported (``/ready``, and aiokafka's other errors).

    Examples
    --------
    >>> error = "[Error 15] GroupCoordinatorNotAvailableError"
    >>> r = logging.LogRecord("aiokafka.consumer.group_coordinator", logging.ERROR, "f", 1,
    ...                       "Group Coordinator Request failed: %s", (error,), None)
    >>> StartupNoise().filter(r), r.levelname
    (True, 'INFO')
    >>> r.getMessage()  # doctest: +ELLIPSIS
    'Group Coordinator Request failed: [Error 15] ... (retried: the broker creates its ...)'

    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and record.name.startswith("aiokafka"):
            message = record.getMessage()
            if "GroupCoordinatorNotAvailable" in message and "Coordinator Request" in message:
                record.levelno, record.levelname = logging.INFO, "INFO"
                record.msg, record.args = (
                    f"{message} (retried: the broker creates its offsets topic for the "
                    "first consumer group it serves)",
                    None,
                )
        return True


NOISE = StartupNoise()


def install(logger: logging.Logger | None = None, limit: RateLimit = LIMIT) -> RateLimit:
    """Put ``limit`` (and :class:`StartupNoise`) on every handler of ``logger`` (the
    root logger)."""
    for handler in (logger or logging.getLogger()).handlers:
        if NOISE not in handler.filters:
            handler.addFilter(NOISE)
        if limit not in handler.filters:
            handler.addFilter(limit)
    return limit


async def flush() -> None:
    """Report the worker's held-back counts (a Faust timer)."""
    LIMIT.flush()


def setup_supervisor_logging(level: str) -> None:
    """The supervisor's log lines, in the format of Faust's (its children's) lines."""
    names = {"crit": "CRITICAL", "warn": "WARNING"}
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    )
    log = logging.getLogger("riverbed.supervisor")
    log.addHandler(handler)
    log.setLevel(names.get(level, level.upper()))
    log.propagate = False
