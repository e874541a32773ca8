#!/usr/bin/env bash
# Runs the cmocka unit test binaries given as arguments (ASan/UBSan builds) and prints one
# closing "N passed, N failed, N skipped" line counting individual test cases. Each binary
# gets HOPTRACE_UNIT_TIMEOUT seconds (default 300; cmocka has no per-test timeout), and a
# binary that crashes, hangs or trips a sanitizer after its tests counts as one failure. In
# CI (CI=true) a skipped test fails the run.
set -u
TIMEOUT=${HOPTRACE_UNIT_TIMEOUT:-300}
pass=0
fail=0
skip=0
out=$(mktemp)

# count WORD: the N of cmocka's closing "[  WORD  ] N test(s)" lines (one per test group).
# Not the per-test lines: cmocka lists every failed and skipped test a second time there.
count() {
	grep -E "^\[ +$1 +\] [0-9]+ test" "$out" | awk '{ n += $4 } END { print n + 0 }'
}

for t in "$@"; do
	timeout -k 10 "$TIMEOUT" "$t" >"$out" 2>&1
	rc=$?
	cat "$out"
	ok=$(count PASSED)
	bad=$(count FAILED)
	skipped=$(count SKIPPED)
	pass=$((pass + ok))
	fail=$((fail + bad))
	skip=$((skip + skipped))
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		echo "FAILED: $t (no end after $TIMEOUT s: killed)"
		fail=$((fail + 1))
	elif [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
		# crashed or a sanitizer stopped it: count the binary as one failure
		echo "FAILED: $t (exit $rc)"
		fail=$((fail + 1))
	fi
done
rm -f "$out"
echo "unit: $pass passed, $fail failed, $skip skipped"
if [ "${CI:-}" = true ] && [ "$skip" -gt 0 ]; then
	echo "unit: CI=true: a skipped test is a failure"
	exit 1
fi
[ "$fail" -eq 0 ]
