"""Issue 18, points 7 and 8: what the chart refuses or adds so that the values people copy cannot
expose the worker or trap its operator. Rendered by the real `helm`, as in test_helm_chart."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.unit.test_helm_chart import CHART, KUBE_VERSION, helm, one, render, render_error

# -- 7. exposure ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/metrics", "/webhook", "/webhooksx", "/status"])
def test_an_ingress_path_outside_webhooks_is_refused(path):
    err = render_error("full-values.yaml", f"ingress.hosts[0].paths[0].path={path}")
    assert "/webhooks" in err and "path" in err


@pytest.mark.parametrize("path", ["/webhooks", "/webhooks/", "/webhooks/sendcloud"])
def test_ingress_paths_under_webhooks_render(path):
    ingress = one(render("full-values.yaml", f"ingress.hosts[0].paths[0].path={path}"), "Ingress")
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["path"] == path


@pytest.mark.parametrize(("sets", "expected"), [
    ((), "1048576"),                                                   # the config's default
    (("config.http.max_body_bytes=4194304",), "4194304"),
    (("ingress.annotations.nginx\\.ingress\\.kubernetes\\.io/proxy-body-size=2m",), "2m"),   # the operator's
])
def test_an_nginx_ingress_takes_the_workers_body_limit(sets, expected):
    docs = render("defaults", "ingress.enabled=true", "ingress.className=nginx", *sets)
    assert one(docs, "Ingress")["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == expected


def test_another_ingress_class_gets_no_nginx_annotation():
    ingress = one(render("defaults", "ingress.enabled=true", "ingress.className=traefik"), "Ingress")
    assert "annotations" not in ingress["metadata"]


def render_notes(scenario: str, tmp_path: Path, *sets: str) -> str:
    """NOTES.txt as `helm install` prints it: `helm template` leaves NOTES out, so a copy of the
    chart renders the same text as a ConfigMap's value."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "_notes_test.tpl").write_text('{{- define "esw.notes-test" -}}\n' + notes + "\n{{- end }}\n")
    (chart / "templates" / "notes-test.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: {{ include "esw.notes-test" . | toJson }}\n')
    cmd = [helm(), "template", "esw", str(chart), "--namespace", "mail", "--kube-version", KUBE_VERSION,
           "--show-only", "templates/notes-test.yaml", "--set", "image.repository=registry.example.com/mail/email-status-worker"]
    if scenario != "defaults":
        cmd += ["-f", str(chart / "ci" / scenario)]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)["data"]["notes"]


def test_notes_warn_of_clear_text_webhook_urls_and_of_the_tencent_token_in_access_logs(tmp_path):
    plain = render_notes("multi-account-values.yaml", tmp_path / "a", "ingress.enabled=true")
    assert "WARNING: the Ingress has no tls" in plain and "http://email-status-worker.example.com/webhooks/" in plain
    assert "path token is part of its URL" in plain
    tls = render_notes("full-values.yaml", tmp_path / "b")
    assert "https://mail-status.example.com/webhooks/aurora_sendcloud/intl" in tls
    assert "WARNING" not in tls and "path token is part of" not in tls   # TLS, and no Tencent account
    assert "readiness = Kafka takes writes" in tls and "per shard: lag" not in tls


# -- 8. traps in the values people copy -----------------------------------------------------------


def test_min_available_and_max_unavailable_together_are_refused():
    err = render_error("full-values.yaml", "podDisruptionBudget.maxUnavailable=1")
    assert "not both" in err


@pytest.mark.parametrize(("sets", "fewest"), [
    (("replicaCount=1", "podDisruptionBudget.minAvailable=1"), 1),
    (("autoscaling.minReplicas=2", "podDisruptionBudget.minAvailable=2"), 2),
])
def test_a_budget_that_blocks_every_eviction_is_refused(sets, fewest):
    scenario = "full-values.yaml" if any(s.startswith("autoscaling") for s in sets) else "defaults"
    err = render_error(scenario, *sets)
    assert f"is not below the fewest replicas ({fewest})" in err
    assert "node drains" in render_error("defaults", "podDisruptionBudget.maxUnavailable=0")


def test_budgets_that_let_a_pod_go_render():
    assert one(render("full-values.yaml"), "PodDisruptionBudget")["spec"]["minAvailable"] == 1   # HPA min 2
    pdb = one(render("defaults", "replicaCount=3", "podDisruptionBudget.minAvailable=2"), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2


@pytest.mark.parametrize("value", ["0", "false", "False", "off", "no"])
def test_asyncio_debug_switched_off_by_a_value_is_refused(value):
    err = render_error("defaults", "extraEnv[0].name=PYTHONASYNCIODEBUG", f"extraEnv[0].value={value}")
    assert "turns asyncio debug mode ON" in err


def test_asyncio_debug_switched_on_on_purpose_renders():
    env = one(render("defaults", "extraEnv[0].name=PYTHONASYNCIODEBUG", "extraEnv[0].value=debug"),
              "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "PYTHONASYNCIODEBUG", "value": "debug"} in env


@pytest.mark.parametrize(("interval", "timeout", "ok"), [
    ("30s", "10s", True),
    ("15s", "15s", True),
    ("15s", "20s", False),
    ("1m", "59s", True),
    ("1m", "1m30s", False),
    ("1m30s", "1m", True),
    ("500ms", "1s", False),
    ("2h", "1h59m", True),
])
def test_a_scrape_timeout_longer_than_the_interval_is_refused(interval, timeout, ok):
    sets = ("serviceMonitor.enabled=true", f"serviceMonitor.interval={interval}", f"serviceMonitor.scrapeTimeout={timeout}")
    if ok:
        sm = one(render("defaults", *sets), "ServiceMonitor")
        assert sm["spec"]["endpoints"][0]["scrapeTimeout"] == timeout
    else:
        assert f"serviceMonitor.scrapeTimeout ({timeout}) is longer than serviceMonitor.interval ({interval})" in \
            render_error("defaults", *sets)


def test_an_optional_secret_the_config_needs_is_refused():
    err = render_error("full-values.yaml", "secretEnv[3].optional=true")
    assert "secretEnv AURORA_APP_KEY_PREVIOUS is optional: true, but config names it" in err
