"""The Grafana dashboard (deploy/grafana/dashboards/riverbed.json) as the tests read it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tests.helpers import ROOT

DASHBOARD = ROOT / "deploy/grafana/dashboards/riverbed.json"
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")
LABEL_VALUES = re.compile(r"^label_values\((?P<match>.+),\s*(?P<label>\w+)\)$")


@dataclass(frozen=True)
class Target:
    """One query of a panel; ``repeat``: the variable its row is repeated by, if any."""

    panel: str
    expr: str
    repeat: str | None


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def variables(dash: dict[str, Any]) -> list[dict[str, Any]]:
    return list(dash.get("templating", {}).get("list", []))


def variable_query(var: dict[str, Any]) -> str:
    query = var["query"]
    return str(query["query"] if isinstance(query, dict) else query)


def targets(dash: dict[str, Any]) -> list[Target]:
    """Every query of every panel, rows' nested panels included, in dashboard order.

    A row holds the panels after it up to the next row (or its ``panels`` if collapsed).
    """
    out: list[Target] = []
    repeat: str | None = None
    for panel in dash["panels"]:
        if panel["type"] == "row":
            repeat = panel.get("repeat")
            inner = panel.get("panels", [])
        else:
            inner = [panel]
        for p in inner:
            out.extend(Target(p["title"], t["expr"], repeat) for t in p.get("targets", []))
    return out


def substitute(expr: str, values: dict[str, str]) -> str:
    """``$name`` / ``${name}`` replaced as Grafana does in a regex matcher."""
    return VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)], expr)
