#!/usr/bin/env bash
# `make test` after its prerequisites (venv, Kafka jars, helm): every check CI runs, in three phases.
#   1. the mutation ratchet (scripts/mutation.py; it uses both cores when something changed);
#   2. two lanes side by side: lint then the unit tests (one core, CPU-bound), and the chart check,
#      the image check and the benchmark smoke (mostly waiting on helm, pip, Kafka and the
#      simulator's round trips). The smoke's figures are printed, never judged, so sharing the
#      machine cannot fail it; its checks are about results (nothing lost, nothing doubled);
#   3. the integration tests in two lanes, each its own pytest with its own broker: the fault tests
#      (FAULT_TESTS below: own clusters, kill -9, frozen brokers, rolling releases) spend most of
#      their time waiting for timeouts and restarts, so they run beside the rest. Measured
#      2026-12-03 on the 2-core machine (`.ci/run`, clean clone): 727 s and 766 s side by side,
#      against ~1,500 s one after the other; the whole of make test 1,155 s. A new test file goes
#      to the second lane unless listed.
# Every phase runs even when an earlier one failed, so one run reports every failure; the exit
# status is 1 if any failed. The second lane's output is printed after it finishes, in one piece.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
MAKE="${MAKE:-make}"
failed=()
phase() { printf '\n== test: %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

phase "mutation ratchet"
"$MAKE" --no-print-directory mutation || failed+=(mutation)

phase "lint + unit tests, beside chart-check + image-check + bench smoke"
lane_log="$(mktemp -t esw-test-lane.XXXXXX)"
(
  status=0
  "$MAKE" --no-print-directory chart-check || status=1
  "$MAKE" --no-print-directory image-check || status=1
  "$MAKE" --no-print-directory bench-smoke || status=1
  exit "$status"
) >"$lane_log" 2>&1 &
lane=$!
"$MAKE" --no-print-directory lint || failed+=(lint)
"$BIN/python" -m pytest -ra tests/unit || failed+=(unit)
wait "$lane" || failed+=("chart-check/image-check/bench-smoke")
phase "output of chart-check, image-check and bench smoke"
cat "$lane_log"
rm -f "$lane_log"

phase "integration tests: the fault tests beside the rest"
FAULT_TESTS=(test_cluster_faults test_resilience test_upgrade test_kafka_faults)
faults=() rest=()
for f in tests/integration/test_*.py; do
  name="$(basename "$f" .py)"
  if [[ " ${FAULT_TESTS[*]} " == *" $name "* ]]; then faults+=("$f"); else rest+=("$f"); fi
done
faults_log="$(mktemp -t esw-test-faults.XXXXXX)"
"$BIN/python" -m pytest -ra --durations=8 "${faults[@]}" >"$faults_log" 2>&1 &
faults_lane=$!
"$BIN/python" -m pytest -ra --durations=8 "${rest[@]}" || failed+=(integration)
wait "$faults_lane" || failed+=("integration (fault tests)")
phase "output of the fault tests"
cat "$faults_log"
rm -f "$faults_log"

if ((${#failed[@]})); then
  printf '\ntest: FAILED: %s\n' "${failed[*]}" >&2
  exit 1
fi
printf '\ntest: everything passed\n'
