#!/usr/bin/env bash
# Installs the chart tool chain into the user cache, idempotently, and prints the bin dir:
#   helm         go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION (from the Go module proxy)
#   kubevalidate go build of tools/kubevalidate (strict decoding into k8s.io/api types)
# A second run is a fast no-op: helm is kept when `go version -m` shows the wanted module
# version, kubevalidate when the hash of its sources matches the stamp written beside it.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.19.0}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${XDG_CACHE_HOME:-$HOME/.cache}/email-status-worker/bin"
mkdir -p "$BIN"

command -v go >/dev/null || { echo "install-tools: 'go' is not on PATH (Go >= 1.24 needed)" >&2; exit 1; }

# The repository's VCS state must not matter for these builds.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"
export CGO_ENABLED=0

helm_version() {
  [ -x "$BIN/helm" ] || return 0
  go version -m "$BIN/helm" 2>/dev/null | awk '$1 == "mod" && $2 == "helm.sh/helm/v3" {print $3}'
}

if [ "$(helm_version)" != "$HELM_VERSION" ]; then
  echo "install-tools: building helm $HELM_VERSION (first time: a few minutes)" >&2
  GOBIN="$BIN" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  [ "$(helm_version)" = "$HELM_VERSION" ] || { echo "install-tools: helm build did not produce $HELM_VERSION" >&2; exit 1; }
fi

src="$ROOT/tools/kubevalidate"
stamp="$BIN/kubevalidate.stamp"
want="$(cd "$src" && cat go.mod go.sum $(ls *.go | sort) | sha256sum | cut -d' ' -f1) $(go env GOVERSION)"
if [ ! -x "$BIN/kubevalidate" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "install-tools: building kubevalidate" >&2
  (cd "$src" && go build -trimpath -o "$BIN/kubevalidate.tmp" . && mv "$BIN/kubevalidate.tmp" "$BIN/kubevalidate")
  printf '%s\n' "$want" > "$stamp"
fi

echo "$BIN"
