"""The metric names that deploy/observability's alert rules and Grafana dashboard use."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2] / "deploy" / "observability"
RULES = ROOT / "alerts.yaml"
DASHBOARD = ROOT / "grafana-dashboard.json"
# a metric name in PromQL: ours and the Temporal SDK's
NAME = re.compile(r"\b((?:closeflow|temporal)_[a-zA-Z0-9_]+)")


def rule_expressions() -> Iterator[tuple[str, str]]:
    """(alert name, expression) of every rule."""
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule["alert"], rule["expr"]


def dashboard_expressions() -> Iterator[tuple[str, str]]:
    """(panel title, expression) of every panel target."""
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def metric_names(expr: str) -> set[str]:
    """The series names in a PromQL expression (a histogram's as `..._bucket`)."""
    return set(NAME.findall(expr))


def all_names() -> set[str]:
    exprs = [e for _, e in rule_expressions()] + [e for _, e in dashboard_expressions()]
    return set().union(*(metric_names(e) for e in exprs))


def sdk_metric_names() -> list[str]:
    return sorted(n for n in all_names() if n.startswith("temporal_"))
