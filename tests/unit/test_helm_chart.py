"""The Helm chart, the Dockerfile and docker-compose.yml, checked on what they really produce.

The chart is rendered by the real `helm` binary (scripts/install-tools.sh puts it, and the
kubevalidate tool, in ${XDG_CACHE_HOME:-~/.cache}/email-status-worker/bin; $HELM and
$KUBEVALIDATE override). A missing binary fails these tests: it never skips them.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from worker.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "email-status-worker"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
SCENARIOS = ["defaults"] + [p.name for p in CI_VALUES]
CACHE_BIN = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "email-status-worker" / "bin"
KUBE_VERSION = os.environ.get("KUBE_VERSION", "1.34.0")
CONFIG_PATH = "/etc/email-status-worker/config.yaml"
# Keys of config.v1.json that hold a secret's *reference*; their stems must never appear bare.
SECRET_STEMS = ("api_key", "secret_key", "app_key", "previous_app_key", "path_token", "previous_path_token",
                "sasl_plain_password")


def _tool(env: str, name: str) -> str:
    path = os.environ.get(env) or str(CACHE_BIN / name)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"{name} not found at {path}: run `bash scripts/install-tools.sh` (or set ${env})", pytrace=False)
    return path


def helm() -> str:
    return _tool("HELM", "helm")


def kubevalidate() -> str:
    return _tool("KUBEVALIDATE", "kubevalidate")


@functools.cache
def _template(values: tuple[str, ...], sets: tuple[str, ...]) -> subprocess.CompletedProcess:
    cmd = [helm(), "template", "esw", str(CHART), "--namespace", "mail", "--kube-version", KUBE_VERSION,
           "--set", "image.repository=registry.example.com/mail/email-status-worker"]   # required: no image is published
    for v in values:
        cmd += ["-f", v]
    for s in sets:
        cmd += ["--set", s]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def render(scenario: str = "defaults", *sets: str) -> list[dict[str, Any]]:
    values = () if scenario == "defaults" else (str(CHART / "ci" / scenario),)
    proc = _template(values, sets)
    assert proc.returncode == 0, f"helm template {scenario} {sets} failed:\n{proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def render_error(scenario: str = "defaults", *sets: str) -> str:
    values = () if scenario == "defaults" else (str(CHART / "ci" / scenario),)
    proc = _template(values, sets)
    assert proc.returncode != 0, f"helm template accepted {scenario} {sets}"
    return proc.stderr


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def worker_container(docs: list[dict]) -> dict:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "worker")


def hook_pod(docs: list[dict]) -> dict:
    pods = [d for d in docs if d["kind"] == "Pod" and d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    assert len(pods) == 1, "expected one `helm test` hook pod"
    return pods[0]


def values_for(scenario: str) -> dict[str, Any]:
    """The values helm sees: values.yaml with the scenario file merged over it (Helm's rules)."""
    base = yaml.safe_load((CHART / "values.yaml").read_text())
    if scenario != "defaults":
        base = _coalesce(base, yaml.safe_load((CHART / "ci" / scenario).read_text()))
    return base


def _coalesce(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = _coalesce(base.get(k), v)
        return out
    return copy.deepcopy(over)


def rendered_config(docs: list[dict]) -> dict[str, Any]:
    return yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])


def config_schema() -> dict[str, Any]:
    return json.loads((ROOT / "schemas" / "config.v1.json").read_text())


def secret_refs(config: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(variables, files) the config names for secrets."""
    sections = [config["kafka"].get("security") or {}]
    for acct in config.get("accounts") or []:
        sections += [acct.get("credentials") or {}, acct.get("webhook") or {}]
    env = sorted({v for s in sections for k, v in s.items() if k.endswith("_env")})
    files = sorted({v for s in sections for k, v in s.items() if k.endswith("_file")})
    return env, files


# -- scenarios ------------------------------------------------------------------------------


def test_the_four_scenarios_exist():
    names = {p.name for p in CI_VALUES}
    assert {"minimal-values.yaml", "full-values.yaml", "secrets-as-files-values.yaml", "multi-account-values.yaml"} <= names


def test_multi_account_scenario_covers_all_five_providers():
    providers = {a["provider"] for a in rendered_config(render("multi-account-values.yaml"))["accounts"]}
    assert providers == set(config_schema()["properties"]["accounts"]["items"]["properties"]["provider"]["enum"])


def test_full_scenario_renders_every_optional_object():
    kinds = {d["kind"] for d in render("full-values.yaml")}
    assert {"Ingress", "ServiceMonitor", "NetworkPolicy", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds


def test_defaults_leave_optional_objects_out():
    kinds = {d["kind"] for d in render()}
    assert not kinds & {"Ingress", "ServiceMonitor", "NetworkPolicy", "HorizontalPodAutoscaler"}
    assert "PodDisruptionBudget" in kinds


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_kubevalidate_accepts_the_rendered_manifests(scenario):
    values = () if scenario == "defaults" else (str(CHART / "ci" / scenario),)
    manifest = _template(values, ()).stdout
    proc = subprocess.run([kubevalidate()], input=manifest, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_kubevalidate_rejects_unknown_fields_and_broken_references():
    manifest = _template((), ()).stdout
    assert "readOnlyRootFilesystem: true" in manifest
    typo = manifest.replace("readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true", 1)
    proc = subprocess.run([kubevalidate()], input=typo, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and 'unknown field "spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem"' in proc.stderr
    dangling = manifest.replace("targetPort: http", "targetPort: web")
    proc = subprocess.run([kubevalidate()], input=dangling, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and 'targetPort "web"' in proc.stderr


# -- probes, security, lifecycle --------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_probes(scenario):
    docs = render(scenario)
    c = worker_container(docs)
    port = rendered_config(docs).get("http", {}).get("port", 8080)
    assert c["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    startup = c["startupProbe"]
    assert startup["httpGet"]["port"] == "http" and startup["httpGet"]["path"] in ("/healthz", "/readyz")
    # Long restores: the startup budget must cover minutes, not the liveness probe's seconds.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    svc = one(docs, "Service")
    assert svc["spec"]["ports"][0]["targetPort"] == "http"


def test_container_port_follows_the_config():
    docs = render("defaults", "config.http.port=9090")
    assert worker_container(docs)["ports"][0]["containerPort"] == 9090
    assert one(docs, "Service")["spec"]["ports"][0]["targetPort"] == "http"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_security_contexts(scenario):
    docs = render(scenario)
    for spec, container in [
        (one(docs, "Deployment")["spec"]["template"]["spec"], worker_container(docs)),
        (hook_pod(docs)["spec"], hook_pod(docs)["spec"]["containers"][0]),
    ]:
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] != 0
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert spec["automountServiceAccountToken"] is False
    mounts = {m["mountPath"]: m for m in worker_container(docs)["volumeMounts"]}
    assert "/tmp" in mounts, "the read-only root needs a writable /tmp"
    assert mounts["/etc/email-status-worker"]["readOnly"] is True


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_termination_grace_period_exceeds_the_workers(scenario):
    docs = render(scenario)
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    grace = rendered_config(docs).get("shutdown", {}).get("grace_secs", 25)
    pause = 0
    pre_stop = worker_container(docs).get("lifecycle", {}).get("preStop")
    if pre_stop:
        assert pre_stop["exec"]["command"][0] == "sleep"
        pause = int(pre_stop["exec"]["command"][1])
    assert spec["terminationGracePeriodSeconds"] > grace + pause


def test_termination_grace_period_follows_the_config():
    spec = one(render("defaults", "config.shutdown.grace_secs=100"), "Deployment")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > 105
    assert "must be greater than" in render_error("defaults", "terminationGracePeriodSeconds=30")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rolling_update_hands_shards_over_one_pod_at_a_time(scenario):
    strategy = one(render(scenario), "Deployment")["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def test_worker_runs_the_documented_command():
    c = worker_container(render())
    assert c["args"] == ["run", "--config", CONFIG_PATH]
    assert "command" not in c, "the image's ENTRYPOINT (email-status-worker) must stay"


# -- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_config_round_trip(scenario, tmp_path):
    """values.config -> ConfigMap -> the worker's own parser, with what the pod would have."""
    docs = render(scenario)
    config = rendered_config(docs)
    assert config == values_for(scenario)["config"]
    jsonschema.Draft202012Validator(config_schema()).validate(config)

    dep_spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = worker_container(docs)
    # The ConfigMap is mounted where the container's --config points.
    cm_volume = next(v for v in dep_spec["volumes"] if "configMap" in v)
    assert cm_volume["configMap"]["name"] == one(docs, "ConfigMap")["metadata"]["name"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == cm_volume["name"])
    assert CONFIG_PATH == f"{mount['mountPath']}/config.yaml"

    # The environment: variables from secretKeyRefs, and every key of an envFrom Secret (assumed
    # to hold the variables the config names, as the chart's docs tell operators to do).
    env_names, files = secret_refs(config)
    env: dict[str, str] = {}
    for e in container.get("env", []):
        env[e["name"]] = e.get("value", f"secret-{e['name'].lower()}-0123456789abcdef")
    if any("secretRef" in e for e in container.get("envFrom", [])):
        for n in env_names:
            env.setdefault(n, f"secret-{n.lower()}-0123456789abcdef")
    if "KAFKA_BOOTSTRAP_SERVERS" in env:
        assert env["KAFKA_BOOTSTRAP_SERVERS"]

    # Files: map every secret volume's mount onto tmp_path, keeping the Secret's item layout.
    data = copy.deepcopy(config)
    moved = {}
    for m in container["volumeMounts"]:
        vol = next(v for v in dep_spec["volumes"] if v["name"] == m["name"])
        if "secret" in vol:
            local = tmp_path / m["name"]
            for item in vol["secret"].get("items", []):
                target = local / item["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(f"file-secret-{item['key']}-0123456789abcdef\n")
            moved[m["mountPath"].rstrip("/") + "/"] = (local, bool(vol["secret"].get("items")))

    def relocate(path: str) -> str:
        for prefix, (local, itemized) in moved.items():
            if path.startswith(prefix):
                target = local / path[len(prefix):]
                assert not itemized or target.exists(), f"{path}: no item of the mounted Secret has this path"
                if not itemized:  # every key is a file: pretend the Secret has this one
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text("file-secret-0123456789abcdef\n")
                return str(target)
        pytest.fail(f"{path}: the config names this file, but no Secret volume is mounted above it")

    sections = [data["kafka"].get("security") or {}]
    for acct in data.get("accounts") or []:
        sections += [acct.get("credentials") or {}, acct.get("webhook") or {}]
    for section in sections:
        for k, v in list(section.items()):
            if k.endswith("_file"):
                section[k] = relocate(v)
    parsed = parse_config(data, env)
    assert len(parsed.accounts) == len(config.get("accounts") or [])
    assert parsed.kafka.shards == config["kafka"].get("shards", 12)


def test_config_checksum_rolls_the_pods():
    def checksum(*sets):
        return one(render("minimal-values.yaml", *sets), "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum() == checksum()
    assert checksum() != checksum("config.logging.level=DEBUG")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_secrets_are_references_and_never_values(scenario):
    docs = render(scenario)
    values = values_for(scenario)
    assert not [d for d in docs if d["kind"] == "Secret"], "the chart must not create Secrets"
    container = worker_container(docs)
    env_names, files = secret_refs(rendered_config(docs))
    by_name = {e["name"]: e for e in container.get("env", [])}
    env_from = [e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e]
    for name in env_names:
        if name in by_name:
            e = by_name[name]
            assert "value" not in e, f"{name}: a secret must come from a Secret, not a literal"
            assert e["valueFrom"]["secretKeyRef"]["name"] in (values["existingSecret"], *[s.get("secretName") for s in values["secretEnv"]])
        else:
            assert env_from == [values["existingSecret"]], f"{name}: neither a secretKeyRef nor envFrom provides it"
    if files:
        spec = one(docs, "Deployment")["spec"]["template"]["spec"]
        secret_vols = [v for v in spec["volumes"] if "secret" in v]
        assert secret_vols and all(v["secret"]["secretName"] == (values["secretFiles"]["secretName"] or values["existingSecret"]) for v in secret_vols[:1])
        mounts = [m for m in container["volumeMounts"] if m["name"] in {v["name"] for v in secret_vols}]
        assert all(m["readOnly"] is True for m in mounts)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_secret_values_in_any_configmap(scenario):
    for cm in (d for d in render(scenario) if d["kind"] == "ConfigMap"):
        for text in cm.get("data", {}).values():
            def walk(node):
                if isinstance(node, dict):
                    for k, v in node.items():
                        assert k not in SECRET_STEMS, f"ConfigMap {cm['metadata']['name']}: inline secret {k}"
                        walk(v)
                elif isinstance(node, list):
                    for v in node:
                        walk(v)
            walk(yaml.safe_load(text))


def test_inline_secrets_are_refused():
    for stem in ("api_key", "secret_key"):
        err = render_error("minimal-values.yaml", f"config.accounts[0].credentials.{stem}=hunter2")
        assert f"'{stem}' not allowed" in err
    assert "'app_key' not allowed" in render_error("minimal-values.yaml", "config.accounts[0].webhook.app_key=hunter2")
    assert "'sasl_plain_password' not allowed" in render_error("minimal-values.yaml", "config.kafka.security.sasl_plain_password=x")


def test_a_secret_nothing_provides_is_refused():
    err = render_error("minimal-values.yaml", "existingSecret=")
    assert "SENDCLOUD_API_KEY" in err and "secretEnv" in err
    err = render_error("secrets-as-files-values.yaml", "secretFiles.mountPath=/elsewhere")
    assert "no volume is mounted above it" in err


# -- scaling ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_replicas_never_exceed_shards(scenario):
    docs = render(scenario)
    shards = rendered_config(docs)["kafka"].get("shards", 12)
    hpa = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    if hpa:
        assert hpa[0]["spec"]["maxReplicas"] <= shards
        assert "replicas" not in one(docs, "Deployment")["spec"], "the HPA owns the replica count"
        assert hpa[0]["spec"]["scaleTargetRef"]["name"] == one(docs, "Deployment")["metadata"]["name"]
    else:
        assert one(docs, "Deployment")["spec"]["replicas"] <= shards


def test_hpa_above_the_shard_count_fails_clearly():
    err = render_error("full-values.yaml", "autoscaling.maxReplicas=13")
    assert "autoscaling.maxReplicas (13) is greater than config.kafka.shards (12)" in err
    err = render_error("full-values.yaml", "config.kafka.shards=4", "autoscaling.maxReplicas=5")
    assert "config.kafka.shards (4)" in err
    hpa = one(render("full-values.yaml", "config.kafka.shards=4", "autoscaling.maxReplicas=4"), "HorizontalPodAutoscaler")
    assert hpa["spec"]["maxReplicas"] == 4


def test_pdb_selects_the_workers():
    docs = render()
    pdb = one(docs, "PodDisruptionBudget")
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert one(render("full-values.yaml"), "PodDisruptionBudget")["spec"] == {
        "minAvailable": 1, "unhealthyPodEvictionPolicy": "AlwaysAllow", "selector": pdb["spec"]["selector"]}


# -- optional objects -------------------------------------------------------------------------


def test_ingress_exposes_only_the_webhooks():
    docs = render("full-values.yaml")
    ingress = one(docs, "Ingress")
    paths = [p for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert [p["path"] for p in paths] == ["/webhooks"]
    assert all(p["backend"]["service"] == {"name": one(docs, "Service")["metadata"]["name"], "port": {"name": "http"}} for p in paths)
    assert ingress["spec"]["tls"][0]["secretName"] == "mail-status-tls"


def test_service_monitor_scrapes_metrics():
    docs = render("full-values.yaml")
    sm = one(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["endpoints"][0]["port"] == "http" and sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert sm["spec"]["selector"]["matchLabels"].items() <= one(docs, "Service")["metadata"]["labels"].items()
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_network_policy_allows_webhooks_dns_kafka_and_providers():
    docs = render("full-values.yaml")
    np = one(docs, "NetworkPolicy")
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert np["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    peers = np["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "esw", "app.kubernetes.io/component": "helm-test"}}} in peers
    egress_ports = {(p["port"], p["protocol"]) for rule in np["spec"]["egress"] for p in rule["ports"]}
    assert {(53, "UDP"), (53, "TCP"), (9093, "TCP"), (443, "TCP")} <= egress_ports


def test_helm_test_hook_checks_readyz_through_the_service():
    docs = render()
    pod = hook_pod(docs)
    script = " ".join(pod["spec"]["containers"][0]["command"])
    svc = one(docs, "Service")
    assert f"http://{svc['metadata']['name']}.mail.svc:{svc['spec']['ports'][0]['port']}/readyz" in script
    assert pod["spec"]["restartPolicy"] == "Never"
    # The Service and the PDB must not pick the test pod.
    assert not svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()


# -- values.schema.json ---------------------------------------------------------------------


def test_values_schema_config_is_the_worker_schema():
    values_schema = json.loads((CHART / "values.schema.json").read_text())
    expected = {k: v for k, v in config_schema().items() if k not in ("$schema", "$id")}
    assert values_schema["properties"]["config"] == expected
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "sync-values-schema.py"), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_values_schema_is_strict():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False

    loose = []

    def walk(node, path):
        if isinstance(node, dict):
            if "properties" in node and node.get("additionalProperties") is not False:
                loose.append(path)
            for k, v in node.items():
                walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}")

    walk(schema, "")
    # extraEnv entries are k8s EnvVar objects: only `name` is constrained.
    assert loose == ["/properties/extraEnv/items"], loose
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft202012Validator(schema).validate(values)
    for path in CI_VALUES:
        jsonschema.Draft202012Validator(schema).validate(values_for(path.name))


def test_every_value_is_described_in_the_schema():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"])
    assert set(schema["properties"]) - set(values) <= {"global"}


# -- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_shape():
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in re.sub(r"\\\n", " ", text).splitlines() if line.strip() and not line.lstrip().startswith("#")]
    froms = [line for line in lines if line.upper().startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage"
    assert any("pip install -r requirements.lock" in line for line in lines)
    assert any("pip install --no-deps ." in line for line in lines)
    runtime = lines[lines.index(froms[-1]):]
    user = [line.split(None, 1)[1] for line in runtime if line.startswith("USER ")]
    assert user and not user[-1].startswith(("root", "0")), "the runtime stage runs as non-root"
    assert [line for line in runtime if line.startswith("EXPOSE")] == ["EXPOSE 8080"]
    entry = next(line for line in runtime if line.startswith("ENTRYPOINT"))
    cmd = next(line for line in runtime if line.startswith("CMD"))
    assert json.loads(entry.split(None, 1)[1]) + json.loads(cmd.split(None, 1)[1]) == [
        "email-status-worker", "run", "--config", CONFIG_PATH]
    assert "PYTHONDONTWRITEBYTECODE=1" in " ".join(runtime)
    # The allow-list .dockerignore keeps every path the build stage copies.
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    copied = [p.rstrip("/") for line in lines if line.startswith("COPY ") and "--from" not in line for p in line.split()[1:-1]]
    assert ignore[0] == "*"
    for path in copied:
        assert f"!{path}" in ignore or f"!{path}/" in ignore, f".dockerignore drops {path}"


# -- docker-compose.yml -----------------------------------------------------------------------


def test_docker_compose_wiring():
    text = (ROOT / "docker-compose.yml").read_text()
    # Compose interpolates `$`: a literal one must be written `$$`.
    assert not re.search(r"(?<!\$)\$(?![${A-Za-z_])", text.replace("$$", "")), "unescaped $ in docker-compose.yml"
    compose = yaml.safe_load(text)
    services = compose["services"]
    assert {"kafka", "simulator", "worker"} <= set(services)

    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    kenv = kafka["environment"]
    assert "controller" in kenv["KAFKA_PROCESS_ROLES"] and "broker" in kenv["KAFKA_PROCESS_ROLES"], "KRaft"
    assert "PLAINTEXT://kafka:9092" in kenv["KAFKA_ADVERTISED_LISTENERS"]
    assert kenv["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1", "transactions on one broker"

    events = services["events"]["command"]
    assert "isolation.level=read_committed" in events, "the demo consumer reads like a real one"

    worker = services["worker"]
    assert worker["command"] == ["run", "--config", CONFIG_PATH]
    assert worker["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert worker["read_only"] is True and worker["cap_drop"] == ["ALL"]
    mounts = {c["target"]: c["source"] for c in worker["configs"]}
    config_text = compose["configs"][mounts[CONFIG_PATH]]["content"]
    config = yaml.safe_load(config_text)
    jsonschema.Draft202012Validator(config_schema()).validate(config)
    port = config.get("http", {}).get("port", 8080)
    assert f"127.0.0.1:{port}:{port}" in worker["ports"]

    # The simulator runs its built-in demo accounts; the worker's config and environment must be
    # exactly what the simulator says a worker needs for them (what `make demo` uses).
    from worker.simulator.demo import demo_worker_accounts, demo_worker_env

    sim = services["simulator"]
    sim_cmd = sim["command"]
    assert sim_cmd[0] == "simulate" and "--config" not in sim_cmd
    assert sim_cmd[sim_cmd.index("--host") + 1] == "0.0.0.0", "reachable from the worker's container"
    assert sim_cmd[sim_cmd.index("--webhook-target") + 1] == f"http://worker:{port}"
    sim_port = sim_cmd[sim_cmd.index("--port") + 1]
    assert config["accounts"] == demo_worker_accounts(f"http://simulator:{sim_port}")
    assert {n: a["provider"] for n, a in ((a["name"], a) for a in config["accounts"])} == {
        "engagelab-demo": "engagelab", "sendcloud-demo": "sendcloud", "aurora-demo": "aurora_sendcloud",
        "unisender-demo": "unisender", "tencent-demo": "tencent_ses"}
    worker_env = {k: str(v) for k, v in worker["environment"].items()}
    assert demo_worker_env().items() <= worker_env.items()

    # Every variable the config names is in the worker's environment, and the worker's own
    # parser accepts the config with that environment (the one compose gives the container).
    env_names, files = secret_refs(config)
    assert not files
    assert set(env_names) <= set(worker["environment"])
    env = {k: str(v) for k, v in worker["environment"].items()}
    parsed = parse_config(config, env)
    assert parsed.kafka.bootstrap_servers == "kafka:9092"
    assert len(parsed.accounts) == 5


def test_kafka_tls_files_are_mounted_read_only_from_their_secret():
    docs = render("defaults", "kafkaTls.enabled=true", "kafkaTls.secretName=kafka-client-tls")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "kafka-tls"]
    assert volume["secret"] == {"secretName": "kafka-client-tls", "defaultMode": 0o440}
    [mount] = [m for m in worker_container(docs)["volumeMounts"] if m["name"] == "kafka-tls"]
    assert mount == {"name": "kafka-tls", "mountPath": "/etc/email-status-worker/kafka-tls", "readOnly": True}
    assert not [v for v in one(render("defaults"), "Deployment")["spec"]["template"]["spec"]["volumes"]
                if v["name"] == "kafka-tls"]
    assert "kafkaTls.secretName is required" in render_error("defaults", "kafkaTls.enabled=true")
