"""The import rules of pyproject's ``[tool.importlinter]`` hold (as ``make lint`` checks)."""

from __future__ import annotations

from importlinter.cli import lint_imports

from tests.helpers import ROOT


def test_the_import_contracts_are_kept(monkeypatch: object) -> None:
    monkeypatch.chdir(ROOT)  # type: ignore[attr-defined]
    assert lint_imports(no_cache=True) == 0, "run `make lint` to see the broken contract"
