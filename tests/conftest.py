"""Fixtures of every test: the output folder; the integration marker."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import pytest

from tests.helpers import OUTPUT


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """tests/output/<test name>/ for artifacts (logs, screenshots)."""
    d = OUTPUT / request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


# What starts another process in a unit test (the fast loop, `make test-fast`, leaves
# those out): read from each test's own source, so a new one is marked too.
STARTS_A_PROCESS = ("subprocess.", "_openssl(", "Popen(", "sys.executable")


def _starts_a_process(item: pytest.Item) -> bool:
    function = getattr(item, "function", None)
    try:
        source = inspect.getsource(function) if function is not None else ""
    except (OSError, TypeError):
        return False
    return any(s in source for s in STARTS_A_PROCESS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
        elif _starts_a_process(item):
            item.add_marker(pytest.mark.process)
        # With pytest-xdist (`make test`: --dist loadgroup) the tests of the secured
        # broker run in one process, which starts that broker once.
        if "secured" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("secured"))
