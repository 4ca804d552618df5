#!/usr/bin/env bash
# Validates the Helm chart the way CI does, with the real helm binary and no cluster:
#   1. values.schema.json's `config` is schemas/config.v1.json (scripts/sync-values-schema.py --check)
#   2. helm lint --strict, with the default values and with every ci/*-values.yaml scenario
#   3. helm template for the defaults and every scenario, piped into kubevalidate, which decodes
#      each manifest strictly into the k8s.io/api types and checks cross-references
#   4. the chart must refuse bad values (HPA above the shard count, a grace period too short,
#      a secret variable nothing provides, an inline secret in config)
# Tools come from scripts/install-tools.sh (run it first; this script does not download).
# Exit status: non-zero on any failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${XDG_CACHE_HOME:-$HOME/.cache}/email-status-worker/bin"
HELM="${HELM:-$BIN/helm}"
KUBEVALIDATE="${KUBEVALIDATE:-$BIN/kubevalidate}"
# `go install`ed helm has no Kubernetes version linked in (it would assume v1.20); render for a
# current cluster instead. The chart needs >= 1.25.
KUBE_VERSION="${KUBE_VERSION:-1.34.0}"
CHART="$ROOT/helm/email-status-worker"
PYTHON="${PYTHON:-python3}"

for tool in "$HELM" "$KUBEVALIDATE"; do
  [ -x "$tool" ] || { echo "chart-check: $tool is missing: run scripts/install-tools.sh first" >&2; exit 1; }
done

failures=0
fail() { echo "chart-check: FAIL: $*" >&2; failures=$((failures + 1)); }
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

"$PYTHON" "$ROOT/scripts/sync-values-schema.py" --check || fail "values.schema.json is out of step with schemas/config.v1.json"

scenarios=("")
for f in "$CHART"/ci/*-values.yaml; do scenarios+=("$f"); done

for values in "${scenarios[@]}"; do
  name="$(basename "${values:-defaults}" .yaml)"
  args=(--kube-version "$KUBE_VERSION")
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
  if "$KUBEVALIDATE" "$out/$name.yaml" > "$out/$name.kv" 2>&1; then
    echo "chart-check: $name: lint OK, $(cat "$out/$name.kv" | sed 's/^kubevalidate: //')"
  else
    cat "$out/$name.kv" >&2; fail "kubevalidate ($name)"
  fi
done

# Values the chart must refuse, each with the words its message must contain.
refuse() {
  local what="$1" expect="$2"; shift 2
  if "$HELM" template esw "$CHART" --kube-version "$KUBE_VERSION" "$@" > "$out/refused" 2>&1; then
    fail "accepted: $what"
  elif ! grep -q -- "$expect" "$out/refused"; then
    cat "$out/refused" >&2; fail "refused $what, but without saying '$expect'"
  else
    echo "chart-check: refuses $what"
  fi
}
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
refuse "an unknown top-level value" "additional properties" --set replicas=3
refuse "an unknown config key" "additional properties" --set config.kafka.brokers=x:9092

if [ "$failures" -gt 0 ]; then
  echo "chart-check: $failures failure(s)" >&2
  exit 1
fi
echo "chart-check: OK (${#scenarios[@]} value sets, helm $("$HELM" version --template '{{.Version}}' 2>/dev/null), kube $KUBE_VERSION)"
