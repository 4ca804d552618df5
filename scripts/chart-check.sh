#!/usr/bin/env bash
# Validates the Helm chart the way CI does, with the real helm binary and no cluster:
#   1. values.schema.json's `config` is schemas/config.v1.json (scripts/sync-values-schema.py --check)
#   2. helm lint --strict, with the default values and with every ci/*-values.yaml scenario
#   3. helm template for the defaults and every scenario, piped into kubevalidate, which decodes
#      each manifest strictly into the k8s.io/api types and checks cross-references
#   4. the chart must refuse bad values (HPA above the shard count, a grace period too short,
#      a secret variable nothing provides, an inline secret in config)
#   5. the full scenario once more with the PrometheusRule and the Grafana dashboard ConfigMap on:
#      the PrometheusRule (a kind kubevalidate does not know) is kept away from kubevalidate, its
#      spec.groups checked by promtool against files/alerts.yaml and its runbook links against
#      prometheusRule.runbookBaseUrl; the rest goes through kubevalidate
# Tools come from scripts/install-tools.sh (run it first; this script does not download), promtool
# from Debian's prometheus package (.ci/run installs it).
# Exit status: non-zero on any failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${XDG_CACHE_HOME:-$HOME/.cache}/email-status-worker/bin"
HELM="${HELM:-$BIN/helm}"
KUBEVALIDATE="${KUBEVALIDATE:-$BIN/kubevalidate}"
PROMTOOL="${PROMTOOL:-promtool}"
# `go install`ed helm has no Kubernetes version linked in (it would assume v1.20); render for a
# current cluster instead. The chart needs >= 1.25.
KUBE_VERSION="${KUBE_VERSION:-1.34.0}"
CHART="$ROOT/helm/email-status-worker"
PYTHON="${PYTHON:-python3}"
# image.repository is required (no image is published): every render names one.
IMAGE="registry.example.com/mail/email-status-worker"

for tool in "$HELM" "$KUBEVALIDATE"; do
  [ -x "$tool" ] || { echo "chart-check: $tool is missing: run scripts/install-tools.sh first" >&2; exit 1; }
done
command -v "$PROMTOOL" >/dev/null || { echo "chart-check: promtool is missing: install Debian's prometheus package (.ci/run does)" >&2; exit 1; }

failures=0
fail() { echo "chart-check: FAIL: $*" >&2; failures=$((failures + 1)); }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

# Splits a rendered manifest into FILE.rules (its PrometheusRule documents) and FILE.rest.
split_rules() {
  awk -v rules="$1.rules" -v rest="$1.rest" '
    function flush() { if (doc != "") printf "%s", doc > (isrule ? rules : rest); doc = ""; isrule = 0 }
    /^---[[:space:]]*$/ { flush() }
    /^kind: PrometheusRule[[:space:]]*$/ { isrule = 1 }
    { doc = doc $0 "\n" }
    END { flush() }' "$1"
  touch "$1.rules" "$1.rest"
}

"$PYTHON" "$ROOT/scripts/sync-values-schema.py" --check || fail "values.schema.json is out of step with schemas/config.v1.json"

scenarios=("")
for f in "$CHART"/ci/*-values.yaml; do scenarios+=("$f"); done

for values in "${scenarios[@]}"; do
  name="$(basename "${values:-defaults}" .yaml)"
  args=(--kube-version "$KUBE_VERSION" --set "image.repository=$IMAGE")
  [ -n "$values" ] && args+=(-f "$values")
  if ! "$HELM" lint --strict "${args[@]}" "$CHART" > "$out/$name.lint" 2>&1; then
    cat "$out/$name.lint" >&2; fail "helm lint --strict ($name)"; continue
  fi
  # helm lint reports `fail` in templates only as [INFO] lines; treat them as the errors they are.
  if grep -q '\[INFO\] Fail:' "$out/$name.lint"; then
    grep '\[INFO\] Fail:' "$out/$name.lint" >&2; fail "helm lint ($name): a template called fail"
  fi
  if ! "$HELM" template esw "$CHART" --namespace mail "${args[@]}" > "$out/$name.yaml" 2> "$out/$name.err"; then
    cat "$out/$name.err" >&2; fail "helm template ($name)"; continue
  fi
  split_rules "$out/$name.yaml"
  if [ -s "$out/$name.yaml.rules" ]; then
    fail "$name renders a PrometheusRule, which kubevalidate cannot read: keep it off in ci/ scenarios (step 5 checks it)"
  fi
  if "$KUBEVALIDATE" "$out/$name.yaml.rest" > "$out/$name.kv" 2>&1; then
    echo "chart-check: $name: lint OK, $(cat "$out/$name.kv" | sed 's/^kubevalidate: //')"
  else
    cat "$out/$name.kv" >&2; fail "kubevalidate ($name)"
  fi
done

# The monitoring objects, on top of the full scenario (whose runbookBaseUrl is a wiki of its own).
rule_args=(--kube-version "$KUBE_VERSION" --set "image.repository=$IMAGE" -f "$CHART/ci/full-values.yaml"
           --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true)
runbook_base="https://runbooks.example.com/email-status-worker/runbook.md"
shipped="$CHART/files/alerts.yaml"
if ! "$HELM" lint --strict "${rule_args[@]}" "$CHART" > "$out/rule.lint" 2>&1 || grep -q '\[INFO\] Fail:' "$out/rule.lint"; then
  cat "$out/rule.lint" >&2; fail "helm lint --strict (full-values + monitoring)"
elif ! "$HELM" template esw "$CHART" --namespace mail "${rule_args[@]}" > "$out/rule.yaml" 2> "$out/rule.err"; then
  cat "$out/rule.err" >&2; fail "helm template (full-values + monitoring)"
else
  split_rules "$out/rule.yaml"
  # spec.groups, two spaces less indented, is a Prometheus rules file.
  awk 'in_spec { print substr($0, 3) } /^spec:/ { in_spec = 1 }' "$out/rule.yaml.rules" > "$out/rule.groups.yaml"
  alerts="$(grep -c '^ *- alert: ' "$shipped")"
  if [ "$(grep -c '^kind: PrometheusRule' "$out/rule.yaml.rules")" != 1 ]; then
    fail "full-values + monitoring: expected one PrometheusRule"
  elif ! grep -q '^  name: esw-email-status-worker-dashboard$' "$out/rule.yaml.rest"; then
    fail "full-values + monitoring: no dashboard ConfigMap"
  elif ! "$KUBEVALIDATE" "$out/rule.yaml.rest" > "$out/rule.kv" 2>&1; then
    cat "$out/rule.kv" >&2; fail "kubevalidate (full-values + monitoring, without the PrometheusRule)"
  elif ! "$PROMTOOL" check rules "$shipped" > "$out/shipped.check" 2>&1; then
    cat "$out/shipped.check" >&2; fail "promtool check rules $shipped"
  elif ! "$PROMTOOL" check rules "$out/rule.groups.yaml" > "$out/rule.check" 2>&1; then
    cat "$out/rule.check" >&2; fail "promtool check rules (the PrometheusRule's spec.groups)"
  elif [ "$(grep -o '[0-9]* rules found' "$out/rule.check")" != "$(grep -o '[0-9]* rules found' "$out/shipped.check")" ]; then
    fail "the PrometheusRule has other rules than files/alerts.yaml: $(grep -o '[0-9]* rules found' "$out/rule.check")"
  elif [ "$(grep -c "^ *runbook_url: $runbook_base#[a-z0-9-]*\$" "$out/rule.groups.yaml")" != "$alerts" ]; then
    grep 'runbook_url' "$out/rule.groups.yaml" >&2; fail "not every runbook_url points at prometheusRule.runbookBaseUrl"
  else
    echo "chart-check: full-values + monitoring: lint OK, PrometheusRule: promtool: $(grep -o '[0-9]* rules found' "$out/rule.check"), $alerts runbook links rebased, rest: $(sed 's/^kubevalidate: //' "$out/rule.kv")"
  fi
fi

# Values the chart must refuse, each with the words its message must contain.
refuse() {
  local what="$1" expect="$2"; shift 2
  if "$HELM" template esw "$CHART" --kube-version "$KUBE_VERSION" --set "image.repository=$IMAGE" "$@" > "$out/refused" 2>&1; then
    fail "accepted: $what"
  elif ! grep -q -- "$expect" "$out/refused"; then
    cat "$out/refused" >&2; fail "refused $what, but without saying '$expect'"
  else
    echo "chart-check: refuses $what"
  fi
}
refuse "no image.repository (no image is published)" "image.repository is required" \
  --set image.repository=
refuse "maxReplicas above the shard count" "greater than config.kafka.shards" \
  --set autoscaling.enabled=true --set autoscaling.maxReplicas=13
refuse "replicaCount above the shard count" "greater than config.kafka.shards" \
  --set replicaCount=4 --set config.kafka.shards=3
refuse "terminationGracePeriodSeconds within the grace period" "must be greater than" \
  --set terminationGracePeriodSeconds=25
refuse "a secret variable nothing provides" "SENDCLOUD_API_KEY" \
  -f "$CHART/ci/minimal-values.yaml" --set existingSecret=
refuse "an inline secret in config" "api_key" \
  -f "$CHART/ci/minimal-values.yaml" --set 'config.accounts[0].credentials.api_key=hunter2'
refuse "a secret variable given in plain text through extraEnv" "must not be written in the values" \
  -f "$CHART/ci/minimal-values.yaml" \
  --set 'extraEnv[0].name=SENDCLOUD_API_KEY' --set 'extraEnv[0].value=hunter2'
refuse "an unknown top-level value" "additional properties" --set replicas=3
refuse "an unknown config key" "additional properties" --set config.kafka.brokers=x:9092
refuse "a runbookBaseUrl that is not a URL" "runbookBaseUrl" --set prometheusRule.runbookBaseUrl=wiki/runbook
refuse "an HPA without its CPU target (it would have no metric)" "targetCPUUtilizationPercentage" \
  --set autoscaling.enabled=true --set autoscaling.targetCPUUtilizationPercentage=null
refuse "a PodDisruptionBudget of 0% unavailable" "no pod could ever be evicted" \
  --set-string podDisruptionBudget.maxUnavailable=0%
refuse "a PodDisruptionBudget of 100% available" "no pod could ever be evicted" \
  --set-string podDisruptionBudget.minAvailable=100%
refuse "a PodDisruptionBudget of 51% available of 2 replicas (rounded up: both)" "no pod could ever be evicted" \
  --set replicaCount=2 --set-string podDisruptionBudget.minAvailable=51%
refuse "a Kafka CA file under no mounted volume" "ca.crt, but no volume is mounted" \
  --set config.kafka.security.security_protocol=SSL \
  --set config.kafka.security.ssl_cafile=/etc/email-status-worker/kafka-tls/ca.crt
# ... and the same file accepted under the kafkaTls mount, with the key password beside it (the
# runbook's layout): rendering must succeed.
if ! "$HELM" template esw "$CHART" --kube-version "$KUBE_VERSION" --set "image.repository=$IMAGE" \
    --set kafkaTls.enabled=true --set kafkaTls.secretName=kafka-client-tls \
    --set config.kafka.security.security_protocol=SSL \
    --set config.kafka.security.ssl_cafile=/etc/email-status-worker/kafka-tls/ca.crt \
    --set config.kafka.security.ssl_certfile=/etc/email-status-worker/kafka-tls/tls.crt \
    --set config.kafka.security.ssl_keyfile=/etc/email-status-worker/kafka-tls/tls.key \
    --set config.kafka.security.ssl_key_password_file=/etc/email-status-worker/kafka-tls/key-password \
    > "$out/tls" 2>&1; then
  cat "$out/tls" >&2; fail "refused Kafka TLS files and key password under the kafkaTls mount"
else
  echo "chart-check: accepts Kafka TLS files and key password under the kafkaTls mount"
fi
# The image's own CA bundle needs no volume; nor does a disabled webhook section's variable.
if ! "$HELM" template esw "$CHART" --kube-version "$KUBE_VERSION" --set "image.repository=$IMAGE" \
    --set config.kafka.security.security_protocol=SSL \
    --set config.kafka.security.ssl_cafile=/etc/ssl/certs/ca-certificates.crt > "$out/cabundle" 2>&1; then
  cat "$out/cabundle" >&2; fail "refused the image's CA bundle as ssl_cafile"
else
  echo "chart-check: accepts the image's CA bundle as ssl_cafile"
fi
if ! "$HELM" template esw "$CHART" --kube-version "$KUBE_VERSION" --set "image.repository=$IMAGE" \
    -f "$CHART/ci/minimal-values.yaml" --set existingSecret= \
    --set 'secretEnv[0].name=SENDCLOUD_API_KEY' --set 'secretEnv[0].secretName=s' --set 'secretEnv[0].key=k' \
    --set 'config.accounts[0].webhook.enabled=false' > "$out/hookoff" 2>&1; then
  cat "$out/hookoff" >&2; fail "a disabled webhook section's variable (SENDCLOUD_APP_KEY) still demanded"
else
  echo "chart-check: a disabled webhook section needs nothing"
fi
if ! "$HELM" template esw "$CHART" --kube-version "$KUBE_VERSION" --set "image.repository=$IMAGE" \
    --set replicaCount=0 --set podDisruptionBudget.minAvailable=1 > "$out/zero" 2>&1 \
    || ! grep -q '^  replicas: 0$' "$out/zero"; then
  cat "$out/zero" >&2; fail "replicaCount 0 (the runbook's migrations scale the release to 0)"
else
  echo "chart-check: renders replicaCount 0"
fi

if [ "$failures" -gt 0 ]; then
  echo "chart-check: $failures failure(s)" >&2
  exit 1
fi
echo "chart-check: OK (${#scenarios[@]} value sets, helm $("$HELM" version --template '{{.Version}}' 2>/dev/null), kube $KUBE_VERSION)"
