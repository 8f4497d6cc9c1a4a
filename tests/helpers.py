"""Shared test helpers: the project root, the output folder, waiting for a condition."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "tests" / "output"

T = TypeVar("T")


def wait_for(condition: Callable[[], T], *, timeout: float, what: str, every: float = 0.1) -> T:
    """Poll ``condition`` until it returns a truthy value; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: T = condition()
    while not last:
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
        time.sleep(every)  # poll interval of the condition wait, not a fixed delay
        last = condition()
    return last
