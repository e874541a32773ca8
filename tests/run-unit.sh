#!/usr/bin/env bash
# Runs the cmocka unit tests given as arguments; prints one closing "N passed, N failed" line.
set -u
pass=0; fail=0
for t in "$@"; do
	if "$t"; then pass=$((pass + 1)); else echo "FAILED: $t"; fail=$((fail + 1)); fi
done
echo "unit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
