"""deploy/observability: the alert rules pass `promtool check rules`, and every expression of the
rules and the Grafana dashboard names only metrics closeflow exports (the workers' temporal_*
series are checked against a real worker's scrape in test_worker_process.py), all documented in
docs/operations.md."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from services.outreach.metrics import GAUGES as OUTREACH_GAUGES
from services.prospecting.metrics import GAUGES as PROSPECTING_GAUGES
from shared.metrics import exported_names
from tests.observability.dashboards import (
    RULES,
    dashboard_expressions,
    metric_names,
    rule_expressions,
)

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
EXPORTED = exported_names([*OUTREACH_GAUGES, *PROSPECTING_GAUGES])


def test_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        message = "promtool is missing: apt-get install prometheus (make test and .ci/run do)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("where", "expr"),
    [*rule_expressions(), *dashboard_expressions()],
    ids=[name for name, _ in [*rule_expressions(), *dashboard_expressions()]],
)
def test_each_expression_names_exported_metrics(where: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{where}: no closeflow_ or temporal_ metric in {expr!r}"
    ours = {n for n in names if n.startswith("closeflow_")}
    assert ours <= EXPORTED, f"{where}: not exported: {sorted(ours - EXPORTED)}"


def test_every_api_metric_is_documented() -> None:
    text = OPERATIONS.read_text()
    documented = {n for n in EXPORTED if f"`{n.removesuffix('_bucket')}" in text}
    bases = {n for n in EXPORTED if not n.endswith(("_sum", "_count"))}
    assert bases <= documented, f"add to docs/operations.md, Metrics: {sorted(bases - documented)}"
