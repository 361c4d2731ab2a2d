#!/usr/bin/env bash
# Run a pytest selection N times in one session (pytest-repeat), to show a test that kills, races
# or mixes failures is not flaky. Not part of CI: the suite runs each test once.
#
#   scripts/repeat-tests.sh N PYTHON PYTEST-ARGS...
#   scripts/repeat-tests.sh 20 .venv-vllm/bin/python -m vllm tests/integration/test_vllm.py -k every_block
#
# Module fixtures (models, Ray) are built once; each repetition runs the test body in full.
# Prints the pytest summary and "K/N passed" per test.
set -uo pipefail
n=$1; py=$2; shift 2
log=$(mktemp /tmp/georay-repeat.XXXXXX)
"$py" -m pytest -p no:cacheprovider -q -rA --count "$n" "$@" >"$log" 2>&1
rc=$?
tail -1 "$log"
grep -E "^(PASSED|FAILED|ERROR) " "$log" | sed -E 's/\[[0-9]+-[0-9]+\]//; s/ - .*//' | sort | uniq -c
echo "log: $log"
exit $rc
