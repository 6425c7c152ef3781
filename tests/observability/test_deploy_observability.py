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
import yaml

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


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        message = "promtool is missing: apt-get install prometheus (make test and .ci/run do)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return promtool


def test_alert_rules_pass_promtool() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# What a platform team is paged for beyond the APIs: activities failing (a service or provider
# the workers call), workflow tasks failing (journeys stuck: after a deploy, a change without its
# patch) and provider webhooks refused as malformed or failing (events lost or held back)
FAILURES = {
    "CloseflowActivitiesFailing": (
        'temporal_activity_execution_failed{task_queue="cf-outreach",activity_type="send_touch"}',
        "0+60x30",  # one a second
        {"task_queue": "cf-outreach", "activity_type": "send_touch"},
        "activity send_touch on cf-outreach keeps failing",
    ),
    "CloseflowWorkflowTasksFailing": (
        'temporal_workflow_task_execution_failed{task_queue="cf-journeys",'
        'workflow_type="ProspectJourney",failure_reason="NonDeterminismError"}',
        "0+1x30",
        {"task_queue": "cf-journeys", "workflow_type": "ProspectJourney"},
        "ProspectJourney workflow tasks on cf-journeys are failing: its runs are stuck",
    ),
    "CloseflowWebhooksRejected": (
        'closeflow_webhooks_total{provider="mailgun",result="rejected"}',
        "0+30x30",
        {"provider": "mailgun", "result": "rejected"},
        "mailgun webhooks refused (rejected): their events are not recorded",
    ),
}


def test_failing_activities_workflow_tasks_and_rejected_webhooks_alert(tmp_path: Path) -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    by_name = {rule["alert"]: rule for rule in rules}
    missing = sorted(set(FAILURES) - set(by_name))
    assert not missing, f"no such alert in {RULES.name}: {missing}"
    cases = [
        {
            "interval": "1m",
            "input_series": [{"series": series, "values": values}],
            "alert_rule_test": [
                {
                    "eval_time": "30m",
                    "alertname": name,
                    "exp_alerts": [
                        {
                            "exp_labels": {**labels, **by_name[name]["labels"]},
                            "exp_annotations": {"summary": summary},
                        }
                    ],
                }
            ],
        }
        for name, (series, values, labels, summary) in FAILURES.items()
    ]
    _promtool_test(tmp_path, cases)


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


def _promtool_test(tmp_path: Path, cases: list[dict[str, object]]) -> None:
    spec = tmp_path / "alerts_test.yaml"
    spec.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "tests": cases}))
    result = subprocess.run(
        [_promtool(), "test", "rules", str(spec)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_task_queue_whose_workers_are_all_gone_alerts(tmp_path: Path) -> None:
    """The outreach workers all crash (or their Deployment is scaled to 0) while the other
    queues' workers run: their num_pollers series end, so a sum over what is there has no
    outreach series at all, and `< 1` could not fire; absent() only sees every worker gone."""
    journeys = 'temporal_num_pollers{task_queue="journeys",poller_type="workflow_task"}'
    outreach = 'temporal_num_pollers{task_queue="outreach",poller_type="activity_task"}'
    expected = {"task_queue": "outreach", "severity": "critical"}
    _promtool_test(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [
                    {"series": journeys, "values": "5x60"},
                    {"series": outreach, "values": "5x20 stale"},
                ],
                "alert_rule_test": [
                    {"eval_time": "15m", "alertname": "CloseflowTaskQueueWithoutPoller"},
                    {
                        "eval_time": "40m",
                        "alertname": "CloseflowTaskQueueWithoutPoller",
                        "exp_alerts": [
                            {
                                "exp_labels": expected,
                                "exp_annotations": {"summary": "task queue outreach has no poller"},
                            }
                        ],
                    },
                ],
            }
        ],
    )
