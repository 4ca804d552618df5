#!/usr/bin/env bash
# Re-pin the Dockerfile's base image to the current digest of its tag (the multi-platform index,
# so amd64 and arm64 builds both resolve it). Needs `docker buildx` or `crane` and a registry.
#   scripts/bump-base-image.sh            # the tag in the Dockerfile (python:3.11-slim-bookworm)
#   scripts/bump-base-image.sh python:3.11-slim-trixie
# Then: docker build ., make test, commit the Dockerfile with the old and new digests in the message.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FILE="$ROOT/Dockerfile"
current="$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$FILE")"
tag="${1:-${current%@*}}"
if command -v crane >/dev/null; then
  digest="$(crane digest "$tag")"
elif docker buildx version >/dev/null 2>&1; then
  digest="$(docker buildx imagetools inspect "$tag" --format '{{json .Manifest}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])')"
else
  echo "bump-base-image: needs crane or docker buildx" >&2; exit 1
fi
[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "bump-base-image: unexpected digest '$digest'" >&2; exit 1; }
sed -i "s|^ARG PYTHON_IMAGE=.*|ARG PYTHON_IMAGE=$tag@$digest|" "$FILE"
echo "bump-base-image: $current -> $tag@$digest"
