#!/usr/bin/env bash
# Runs the cmocka unit test binaries given as arguments (ASan/UBSan builds) and prints one
# closing "N passed, N failed" line counting individual test cases.
set -u
pass=0
fail=0
out=$(mktemp)
for t in "$@"; do
	"$t" >"$out" 2>&1
	rc=$?
	cat "$out"
	ok=$(grep -c '^\[       OK \]' "$out")
	bad=$(grep -c '^\[  FAILED  \] test' "$out")
	pass=$((pass + ok))
	fail=$((fail + bad))
	if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
		# crashed or a sanitizer stopped it: count the binary as one failure
		echo "FAILED: $t (exit $rc)"
		fail=$((fail + 1))
	fi
done
rm -f "$out"
echo "unit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
