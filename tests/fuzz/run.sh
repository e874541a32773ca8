#!/usr/bin/env bash
# tests/fuzz/run.sh OUT [HARNESS...]            (make fuzz, make fuzz-short)
#
# Runs each libFuzzer harness built in OUT/fuzz/ (default: all of them):
#   1. every input of tests/fuzz/regress/<harness>/ (each past crash, kept as a regression
#      test: a harness that crashes on one of them again fails), then
#   2. new fuzzing for a bound, from tests/fuzz/seeds/<harness>/ (when present) and a
#      working corpus in OUT/fuzz/corpus-<harness>/:
#        FUZZ_SECONDS  seconds per harness (default 60), or
#        FUZZ_RUNS     executions per harness (make fuzz FUZZ_RUNS=10000000), which wins.
# A crash leaves its input in OUT/fuzz/crash-<harness>-*: copy it into
# tests/fuzz/regress/<harness>/ with the fix. Prints one line per harness with its
# executions and exec/s, then "fuzz: N passed, N failed, N skipped".
set -u
OUT=${1:-build}
shift || true
cd "$(dirname "$0")/../.." || exit 1
SECONDS_EACH=${FUZZ_SECONDS:-60}
RUNS=${FUZZ_RUNS:-}

harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
	for src in tests/fuzz/fuzz_*.c; do
		harnesses+=("$(basename "$src" .c)")
	done
fi

pass=0
fail=0
skip=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# regress NAME: the kept crash inputs, each run once
regress() {
	local dir=tests/fuzz/regress/$1
	[ -d "$dir" ] || return 0
	local inputs=("$dir"/*)
	[ -e "${inputs[0]}" ] || return 0
	"$OUT/fuzz/$1" "${inputs[@]}" >"$log" 2>&1
}

# explore NAME: new fuzzing for the bound; the corpus grows across runs
explore() {
	local name=$1 corpus=$OUT/fuzz/corpus-$1 bound
	mkdir -p "$corpus"
	if [ -n "$RUNS" ]; then
		bound=(-runs="$RUNS")
	else
		bound=(-max_total_time="$SECONDS_EACH")
	fi
	local seeds=()
	[ -d "tests/fuzz/seeds/$name" ] && seeds=("tests/fuzz/seeds/$name")
	"$OUT/fuzz/$name" "${bound[@]}" -print_final_stats=1 -artifact_prefix="$OUT/fuzz/crash-$name-" \
		"$corpus" "${seeds[@]}" >"$log" 2>&1
}

for name in "${harnesses[@]}"; do
	if [ ! -x "$OUT/fuzz/$name" ]; then
		echo "FAIL $name: $OUT/fuzz/$name was not built"
		fail=$((fail + 1))
		continue
	fi
	if ! regress "$name"; then
		echo "FAIL $name: a kept crash input (tests/fuzz/regress/$name/) crashes again"
		tail -30 "$log"
		fail=$((fail + 1))
		continue
	fi
	if ! explore "$name"; then
		echo "FAIL $name: crash; input kept as $OUT/fuzz/crash-$name-*"
		tail -40 "$log"
		fail=$((fail + 1))
		continue
	fi
	execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$')
	rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$')
	echo "PASS $name: ${execs:-?} executions, ${rate:-?} exec/s, no crash"
	pass=$((pass + 1))
done
echo "fuzz: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
