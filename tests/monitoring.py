"""The Grafana dashboard shipped with the chart, read as data by the unit and integration tests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parent.parent / "helm" / "email-status-worker" / "files" / "dashboard.json"

# Grafana's variable syntaxes: ${name}, ${name:format}, [[name]] (deprecated) and $name.
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")
_DURATION = re.compile(r"(?:\d+(?:ms|s|m|h|d|w|y))+")
_TIME_VARIABLES = ("__interval", "__rate_interval", "__range")


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that is not a row, those of collapsed rows included, in dashboard order."""
    out = []
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def dashboard_queries(dashboard: dict[str, Any], interval: str = "1m", provider: str = ".*",
                      account: str = ".*") -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target, with Grafana's variables replaced so that a plain
    Prometheus can evaluate it: the interval and range variables by `interval`, `$provider` and
    `$account` by the given regexes. A variable this does not know is a ValueError, never left in."""
    if not _DURATION.fullmatch(interval):
        raise ValueError(f"interval {interval!r} is not a Prometheus duration")
    values = dict.fromkeys(_TIME_VARIABLES, interval)
    # The dashboard writes these variables inside double-quoted label matchers.
    values["provider"] = _quoted(provider)
    values["account"] = _quoted(account)

    def substitute(match: re.Match) -> str:
        name = next(g for g in match.groups() if g is not None)
        if name not in values:
            raise ValueError(f"variable {match.group(0)} has no substitute")
        return values[name]

    out = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            try:
                expr = _VARIABLE.sub(substitute, target["expr"])
            except ValueError as exc:
                raise ValueError(f"panel {panel['title']!r}, target {target.get('refId')}: {exc}") from None
            out.append((panel["title"], expr))
    return out


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
