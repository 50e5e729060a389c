#!/usr/bin/env bash
# The soak's checker (tests/soak/checker.py) on made-up histories: a clean
# one has no violation, each kind of violation is reported as that kind, and
# the near misses are not (tests/soak/test_checker.py).
source "$(dirname "$0")/../lib/integration.sh"
out=$(python3 "$REPO/tests/soak/test_checker.py" 2>&1) && status=0 || status=$?
echo "$out" | tail -n 40
expect "the checker's tests pass" "$status" "0"
expect "every test ran" "$(echo "$out" | grep -c '^Ran [1-9][0-9]* tests')" "1"
finish
