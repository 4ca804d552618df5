#!/usr/bin/env bash
# Re-pin the runtime and test dependencies from pyproject.toml into the two lock files.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/runtime"
"$tmp/runtime/bin/pip" install -q --upgrade pip
"$tmp/runtime/bin/pip" install -q .
{ echo "# Runtime dependencies, pinned (make lock)."; "$tmp/runtime/bin/pip" freeze --exclude email-status-worker; } > requirements.lock
"$tmp/runtime/bin/pip" install -q ".[test]"
{ echo "# Test dependencies on top of requirements.lock, pinned (make lock).";
  "$tmp/runtime/bin/pip" freeze --exclude email-status-worker | grep -v -x -F -f <(tail -n +2 requirements.lock); } > requirements-test.lock
# sha256 of every file PyPI has for each pin: installs run with --require-hashes.
"$tmp/runtime/bin/python" scripts/hash-lock.py requirements.lock requirements-test.lock
echo "pinned $(grep -c "==" requirements.lock) runtime and $(grep -c "==" requirements-test.lock) test packages"
