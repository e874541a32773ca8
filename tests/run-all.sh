#!/usr/bin/env bash
# The whole test suite (what `./build.sh test` and CI run): unit tests under ASan/UBSan,
# the BPF load test (verifier regression), integration tests against real processes, and
# the kernel matrix on Debian 12's kernel (6.1, under qemu: the README's own platform;
# `make test-kernels` runs every kernel). Ends with one "N passed, N failed, N skipped"
# line over all suites; in CI (CI=true) a skip fails the run.
set -u
OUT=${1:-build}
cd "$(dirname "$0")/.."
pass=0
fail=0
skip=0
log=$(mktemp)

suite() {
	local name=$1
	shift
	echo "=== $name"
	"$@" 2>&1 | tee "$log"
	local rc=${PIPESTATUS[0]}
	local line
	line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
	if [ -n "$line" ]; then
		pass=$((pass + $(echo "$line" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+')))
		fail=$((fail + $(echo "$line" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+')))
		skip=$((skip + $(echo "$line" | grep -oE '[0-9]+ skipped' | grep -oE '[0-9]+' || echo 0)))
	fi
	if [ "$rc" -ne 0 ]; then
		echo "=== $name: FAILED (exit $rc)"
		[ -z "$line" ] && fail=$((fail + 1))
	elif [ -z "$line" ]; then
		pass=$((pass + 1))
	fi
}

suite unit tests/run-unit.sh "$OUT"/san/tests/test_*
suite bpf-load "$OUT"/san/hoptrace --self-test
suite integration python3 tests/integration/run.py --agent "$OUT"/san/hoptrace --build "$OUT"
suite kernel-6.1 env KMATRIX_BUILD="$OUT" tests/kernels/matrix.sh --no-host 6.1
rm -f "$log"
echo "all: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ] && { [ "${CI:-}" != true ] || [ "$skip" -eq 0 ]; }
