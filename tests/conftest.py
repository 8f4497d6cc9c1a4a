"""Fixtures of every test: the output folder; the integration marker."""

from __future__ import annotations

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
        # With pytest-xdist (`make test`: --dist loadgroup) the tests of the secured
        # broker run in one process, which starts that broker once.
        if "secured" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("secured"))
