"""The alert rules shipped in helm/email-status-worker/files/alerts.yaml, checked with the real
promtool (Debian's `prometheus` package; .ci/run installs it) and the real helm.

A missing promtool or helm fails these tests: it never skips them.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.unit.test_docs_truth import anchors as github_anchors
from tests.unit.test_helm_chart import CHART, KUBE_VERSION, helm
from worker import metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = CHART / "files" / "alerts.yaml"
DASHBOARD = CHART / "files" / "dashboard.json"
TESTS = ROOT / "tests" / "prometheus" / "alerts_test.yaml"
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_BASE = "https://github.com/email-status-worker/email-status-worker/blob/main/docs/runbook.md"

ALERTS = {
    "EswWebhooksSilent", "EswWebhooksMissing", "EswWebhooksRejected", "EswPollThrottled", "EswPollStale",
    "EswPollFatalConfig", "EswDeadLetters", "EswRawLagGrowing", "EswShardsUnowned", "EswShardRestoreStuck",
    "EswTransactionFailures", "EswNotReady", "EswKafkaUnreachable", "EswSentFeedFailing",
}
# What tests/integration/test_prometheus.py rewrites to shorten the windows: keep to these forms.
RANGE = re.compile(r"\[\d+[smhdw]\]")
DURATION = re.compile(r"^\d+[smh]$")


def promtool() -> str:
    path = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not path:
        pytest.fail("promtool not found: install Debian's `prometheus` package (.ci/run does: "
                    "apt-get install --no-install-recommends prometheus) or set $PROMTOOL", pytrace=False)
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120)


@functools.cache
def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def alert(name: str) -> dict:
    return next(r for r in rules() if r["alert"] == name)


@functools.cache
def unit_tests() -> dict:
    return yaml.safe_load(TESTS.read_text())


def registered_series_names() -> set[str]:
    """The series names the worker's registry exports: a counter as `_total`, a histogram as
    `_bucket`, `_sum` and `_count`, a gauge under its own name."""
    names: set[str] = set()
    for collector in set(metrics.REGISTRY._collector_to_names):  # noqa: SLF001
        name, kind = collector._name, collector._type  # noqa: SLF001
        if kind == "counter":
            names.add(f"{name}_total")
        elif kind in ("histogram", "summary"):
            names |= {f"{name}_sum", f"{name}_count"} | ({f"{name}_bucket"} if kind == "histogram" else set())
        else:
            names.add(name)
    return names


# -- promtool ---------------------------------------------------------------------------------


def test_promtool_accepts_the_rules_file():
    proc = run_promtool("check", "rules", str(RULES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in proc.stdout, proc.stdout


def test_promtool_unit_tests_pass():
    proc = run_promtool("test", "rules", str(TESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_the_unit_tests_load_the_shipped_file():
    assert [(TESTS.parent / f).resolve() for f in unit_tests()["rule_files"]] == [RULES.resolve()]


@pytest.mark.parametrize(("old", "new"), [
    # webhooks enabled no longer required: the poll-only account would fire
    ("(max by (provider, account) (esw_account_webhooks_enabled) == 1)",
     "(max by (provider, account) (esw_account_webhooks_enabled) >= 0)"),
    # one throttle episode would be enough
    ("increase(esw_throttles_total[15m])) > 0\n        for: 1h", "increase(esw_throttles_total[15m])) > 0\n        for: 5m"),
    # the first burst of a new dead-letter series would be missed
    ("unless on (provider, account, reason)", "and on (provider, account, reason)"),
])
def test_the_unit_tests_catch_a_broken_rule(tmp_path, old, new):
    text = RULES.read_text()
    assert text.count(old) == 1, old
    (tmp_path / "alerts.yaml").write_text(text.replace(old, new))
    suite = dict(unit_tests(), rule_files=["alerts.yaml"])
    (tmp_path / "alerts_test.yaml").write_text(yaml.safe_dump(suite))
    assert run_promtool("check", "rules", str(tmp_path / "alerts.yaml")).returncode == 0
    proc = run_promtool("test", "rules", str(tmp_path / "alerts_test.yaml"))
    assert proc.returncode != 0, f"promtool test rules passed with {new!r}"


# -- the rules file ---------------------------------------------------------------------------


def test_the_alerts_are_the_documented_ones():
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names))
    assert set(names) == ALERTS


def test_every_alert_fires_in_a_unit_test_and_stays_quiet_in_another():
    cases = [case for group in unit_tests()["tests"] for case in group["alert_rule_test"]]
    # promtool expects nothing of a misspelled alert name, and passes: none may be misspelled
    assert {case["alertname"] for case in cases} <= ALERTS
    fired = {case["alertname"] for case in cases if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert fired == ALERTS, f"never fired: {sorted(ALERTS - fired)}"
    assert quiet == ALERTS, f"never asserted quiet: {sorted(ALERTS - quiet)}"
    for case in cases:
        for expected in case.get("exp_alerts") or []:
            assert expected["exp_labels"]["severity"] == alert(case["alertname"])["labels"]["severity"]
            assert set(expected["exp_annotations"]) == {"summary", "description", "runbook_url"}, case


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_every_alert_has_severity_annotations_and_a_duration(name):
    rule = alert(name)
    assert rule["labels"]["severity"] in ("warning", "critical")
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert all(v.strip() for v in annotations.values())
    assert DURATION.match(rule["for"]), rule["for"]
    # every label the alert is aggregated by is named in its text
    by = {label.strip() for group in re.findall(r"\bby \(([^)]*)\)", rule["expr"]) for label in group.split(",")}
    for label in by:
        assert f"$labels.{label}" in annotations["summary"] + annotations["description"], (name, label)


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_rules_aggregate_over_replicas_and_use_plain_ranges(name):
    expr = alert(name)["expr"]
    assert re.search(r"\b(sum|max|min|count)\b", expr), "a per-replica metric must be aggregated over pods"
    for group in re.findall(r"\b(?:by|without|on) \(([^)]*)\)", expr):
        assert not {"pod", "instance"} & {label.strip() for label in group.split(",")}, expr
    for window in re.findall(r"\[[^\]]*\]", expr):
        assert RANGE.fullmatch(window), f"{name}: {window} is not a plain range (no subqueries)"


def test_webhooks_silent_has_its_agreed_shape():
    rule = alert("EswWebhooksSilent")
    assert " ".join(rule["expr"].split()) == (
        '(sum by (provider, account) (increase(esw_events_emitted_total{source="poll"}[30m])) > 0) '
        'unless on (provider, account) '
        '(sum by (provider, account) (increase(esw_webhook_requests_total{status="200"}[30m])) > 0) '
        'and on (provider, account) '
        '(max by (provider, account) (esw_account_webhooks_enabled) == 1)')
    assert rule["for"] == "15m"


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_runbook_url_is_a_section_of_the_runbook(name):
    url = alert(name)["annotations"]["runbook_url"]
    base, _, anchor = url.partition("#")
    assert base == RUNBOOK_BASE
    assert anchor == name.lower()
    assert anchor in github_anchors(RUNBOOK.read_text()), f"docs/runbook.md has no heading for #{anchor}"


def test_github_anchors_follow_githubs_rules():
    text = "# Runbook\n## Kafka with TLS and SASL\n```sh\n# not a heading\n```\n## Re-polling a date range\n## Runbook\n"
    assert github_anchors(text) == {"runbook", "kafka-with-tls-and-sasl", "re-polling-a-date-range", "runbook-1"}


def test_every_metric_in_the_rules_is_registered():
    used = {name for rule in rules() for name in re.findall(r"\besw_[a-z0-9_]+", rule["expr"])}
    assert {"esw_shards_configured", "esw_account_webhooks_enabled", "esw_webhook_requests_total"} <= used
    missing = used - registered_series_names()
    assert not missing, f"not registered in worker.metrics.REGISTRY: {sorted(missing)}"


def test_registered_series_names_follow_the_exposition_format():
    names = registered_series_names()
    assert {"esw_errors_total", "esw_ready", "esw_transaction_latency_seconds_bucket",
            "esw_transaction_latency_seconds_count"} <= names
    assert not {"esw_errors", "esw_ready_total", "esw_transaction_latency_seconds"} & names


# -- the chart --------------------------------------------------------------------------------


def template(*sets: str) -> list[dict]:
    cmd = [helm(), "template", "esw", str(CHART), "--namespace", "mail", "--kube-version", KUBE_VERSION,
           "--set", "image.repository=registry.example.com/mail/email-status-worker"]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def only(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def test_prometheus_rule_and_dashboard_are_off_by_default():
    docs = template()
    assert not only(docs, "PrometheusRule")
    assert [d["metadata"]["name"] for d in only(docs, "ConfigMap")] == ["esw-email-status-worker"]


def test_prometheus_rule_renders_the_rules_file():
    docs = template("prometheusRule.enabled=true", "prometheusRule.labels.release=kube-prometheus-stack")
    [rule] = only(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "mail"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["spec"] == {"groups": yaml.safe_load(RULES.read_text())["groups"]}


def test_prometheus_rule_points_the_runbook_links_at_runbook_base_url():
    docs = template("prometheusRule.enabled=true", "prometheusRule.namespace=monitoring",
                    "prometheusRule.runbookBaseUrl=https://wiki.example.com/ops/esw")
    [rule] = only(docs, "PrometheusRule")
    assert rule["metadata"]["namespace"] == "monitoring"
    shipped = yaml.safe_load(RULES.read_text())["groups"]
    for group in shipped:
        for r in group["rules"]:
            r["annotations"]["runbook_url"] = f"https://wiki.example.com/ops/esw#{r['alert'].lower()}"
    assert rule["spec"]["groups"] == shipped


def test_dashboard_configmap_holds_the_dashboard_byte_for_byte():
    docs = template("grafanaDashboard.enabled=true", "grafanaDashboard.annotations.grafana_folder=Mail")
    [dashboard] = [d for d in only(docs, "ConfigMap") if d["metadata"]["name"] == "esw-email-status-worker-dashboard"]
    assert dashboard["metadata"]["namespace"] == "mail"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Mail"}
    assert dashboard["data"] == {"email-status-worker.json": DASHBOARD.read_bytes().decode("utf-8")}


def test_dashboard_configmap_takes_the_sidecars_label_and_namespace():
    docs = template("grafanaDashboard.enabled=true", "grafanaDashboard.namespace=monitoring",
                    "grafanaDashboard.labels.grafana_dashboard=null", "grafanaDashboard.labels.dashboards=esw")
    [dashboard] = [d for d in only(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["dashboards"] == "esw"
    assert "grafana_dashboard" not in dashboard["metadata"]["labels"]
