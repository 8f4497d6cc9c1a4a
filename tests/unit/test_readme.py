"""The README stays true: every setting, catalog model and make target it must show."""

from __future__ import annotations

from riverbed.config import SPECS
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    for spec in SPECS:
        assert f"`{spec.env}`" in README, spec.env


def test_every_catalog_model_is_documented() -> None:
    from riverbed import models

    for name in models.available():
        assert f"`{name}`" in README, name


def test_the_two_commands() -> None:
    assert "make run" in README and "make test" in README
