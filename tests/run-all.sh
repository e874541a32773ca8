#!/usr/bin/env bash
# The whole test suite (what `./build.sh test` and CI run): unit tests under ASan/UBSan, a
# short pass of every fuzz harness,
# the BPF load test (verifier regression), integration tests against real processes, and
# the kernel matrix on Debian 12's kernel (6.1, under qemu: the README's own platform;
# `make test-kernels` runs every kernel). Ends with one "N passed, N failed, N skipped"
# line over all suites; in CI (CI=true) a skip fails the run.
set -u
OUT=${1:-build}
cd "$(dirname "$0")/.." || exit 1
pass=0
fail=0
skip=0
log=$(mktemp)

# num WORD LINE: N of "N WORD" in a suite's summary line, 0 when absent
num() {
	local n
	n=$(echo "$2" | grep -oE "[0-9]+ $1" | grep -oE '[0-9]+')
	echo "${n:-0}"
}

suite() {
	local name=$1
	shift
	echo "=== $name"
	"$@" 2>&1 | tee "$log"
	local rc=${PIPESTATUS[0]}
	local line
	line=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
	if [ -n "$line" ]; then
		pass=$((pass + $(num passed "$line")))
		fail=$((fail + $(num failed "$line")))
		skip=$((skip + $(num skipped "$line")))
	fi
	if [ "$rc" -ne 0 ]; then
		echo "=== $name: FAILED (exit $rc)"
		# a failure its summary does not count (none printed, killed, a sanitizer report
		# after it) is one; in CI, skips that failed the suite are counted as skips
		local counted
		counted=$(num failed "$line")
		[ "${CI:-}" = true ] && counted=$((counted + $(num skipped "$line")))
		[ "$counted" -eq 0 ] && fail=$((fail + 1))
	elif [ -z "$line" ]; then
		pass=$((pass + 1))
	fi
}

suite unit tests/run-unit.sh "$OUT"/san/tests/test_*
# every libFuzzer harness: its kept crash inputs, then a short exploration (make fuzz: longer)
suite fuzz env FUZZ_SECONDS="${FUZZ_SHORT_SECONDS:-5}" FUZZ_RUNS= tests/fuzz/run.sh "$OUT"
# the other suites time out per test (unit: per binary, kernel: per check); this is one
suite bpf-load timeout -k 10 600 "$OUT"/san/hoptrace --self-test
suite integration python3 tests/integration/run.py --agent "$OUT"/san/hoptrace --build "$OUT"
suite kernel-6.1 env KMATRIX_BUILD="$OUT" tests/kernels/matrix.sh --no-host 6.1
rm -f "$log"
echo "all: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ] && { [ "${CI:-}" != true ] || [ "$skip" -eq 0 ]; }
