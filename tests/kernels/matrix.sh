#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# tests/kernels/matrix.sh [--no-host] [SERIES...]      (make test-kernels / test-kernel)
#
# Runs the same checks on the host's own kernel (natively) and on each Debian kernel
# series (default: 5.10 6.1 6.12, each booted with vm.sh), then prints a summary table:
# kernel release, each check's result and seconds. Exits 1 when any check failed.
# With SERIES arguments only those run; the host is included unless --no-host (also
# "host" may be named as a series).
#
# Why: the development machine runs a much newer kernel than the hosts hoptrace is for
# (Debian 11/12 and Amazon Linux run 5.10 and 6.1). BPF that loads and verifies here can
# fail on those, so every change is checked against the kernels users run.
#
# Checks, each run from the repository root as root (in the guest: as its init's child):
#   self-test          build/hoptrace --self-test
#   it:PATTERN         python3 tests/integration/run.py --agent build/hoptrace
#                        --build build -k PATTERN, for each PATTERN in KMATRIX_TESTS
# Each check gets a fresh VM (a check that crashes its kernel does not take the next one
# with it; a boot costs 4-6 s). Logs: build/kernels/logs/KERNEL--CHECK.log.
#
# Environment:
#   KMATRIX_TESTS      space-separated run.py -k patterns (default: DEFAULT_TESTS below)
#   KMATRIX_TIMEOUT    seconds per check (default 900)
#   KMATRIX_VM_ARGS    extra vm.sh options, e.g. "--smp 1 --mem 4096"
#   KMATRIX_BUILD      the build directory (default build)
#   KMATRIX_SLOWDOWN   how much slower the emulated kernels run: the tests' waits for
#                      something to happen are scaled by it (default 5)
# CI=true is set for every check: run.py then fails a test whose BPF cannot load instead
# of skipping it, which is the failure this matrix exists to show.
set -euo pipefail
# shellcheck source=tests/kernels/lib.sh
. "$(dirname "$0")/lib.sh"

# Integration tests that must pass on every kernel (run.py -k patterns), the scenarios of
# issue 10: a two-hop chain with and without traceparent, keep-alive (and nginx sendfile,
# pipelining, a client killed mid-request) under every capture backend the kernel runs,
# and HTTPS through OpenSSL (nginx, Python, a TLS hop in a chain).
# Also: injection where the kernel can (else off, with the reason), and HTTPS under load.
# And requests cut anywhere, under every backend (issue 15): at every byte (also over TLS),
# in pieces, in 1..1024 iovec segments, Go's read-ahead byte, Apache's one segment per
# header line. And log lines as span events (--capture-logs, issue 14).
DEFAULT_TESTS="test_backends test_two_hop test_keepalive test_pipelined test_client_dies
	test_tls.test_nginx_https test_tls.test_python_ssl test_tls.test_https_hop_in_two_hop_chain
	test_tls.test_https_load test_inject.test_inject_where
	test_splits.test_request_split test_splits.test_https test_splits.test_request_written
	test_splits.test_vectored
	test_splits.test_go_server test_splits.test_apache
	test_capture_logs"

KMATRIX_TESTS=${KMATRIX_TESTS-$DEFAULT_TESTS}
KMATRIX_TIMEOUT=${KMATRIX_TIMEOUT:-900}
KMATRIX_VM_ARGS=${KMATRIX_VM_ARGS:-}
BUILD=${KMATRIX_BUILD:-build}
LOGS="$CACHE_ROOT/logs"

CHECK_NAMES=()
CHECK_CMDS=()
declare -A RESULT=() SECONDS_OF=() RELEASE=()

add_check() {
	CHECK_NAMES+=("$1")
	CHECK_CMDS+=("$2")
}

define_checks() {
	local p
	add_check self-test "$BUILD/hoptrace --self-test"
	for p in $KMATRIX_TESTS; do
		add_check "it:$p" "python3 tests/integration/run.py --agent $BUILD/hoptrace --build $BUILD -k $p"
	done
}

# log_path KERNEL CHECK
log_path() {
	local c=${2//[^A-Za-z0-9_.-]/_}
	echo "$LOGS/$1--$c.log"
}

# run_check KERNEL INDEX: one check, natively or in a VM; records result and seconds.
run_check() {
	local kernel=$1 i=$2 name cmd log t0 t1 rc=0 result
	name=${CHECK_NAMES[$i]}
	cmd=${CHECK_CMDS[$i]}
	log=$(log_path "$kernel" "$name")
	t0=$(date +%s.%N)
	{
		echo "# kernel $kernel (${RELEASE[$kernel]}), check $name: $cmd"
		echo "# $(date -u +%FT%TZ)"
	} >"$log"
	if [ "$kernel" = host ]; then
		# shellcheck disable=SC2086
		(cd "$REPO_ROOT" && CI=true timeout -k 5 "$KMATRIX_TIMEOUT" sh -c "$cmd") >>"$log" 2>&1 || rc=$?
	else
		# shellcheck disable=SC2086
		(cd "$REPO_ROOT" && CI=true HOPTRACE_TEST_SLOWDOWN=${KMATRIX_SLOWDOWN:-5} \
			"$KERNELS_DIR/vm.sh" "$kernel" --timeout "$KMATRIX_TIMEOUT" \
			$KMATRIX_VM_ARGS -- sh -c "$cmd") >>"$log" 2>&1 || rc=$?
	fi
	t1=$(date +%s.%N)
	echo "# exit status $rc" >>"$log"
	case "$rc" in
	0) result=pass ;;
	124) result=timeout ;;
	125) result=error ;; # vm.sh: the guest died (panic) or could not run the command
	*) result=FAIL ;;
	esac
	# a -k pattern that matches no test would pass silently: a typo must not look green
	if [ "$result" = pass ] && grep -q '^integration: 0 passed, 0 failed, 0 skipped' "$log"; then
		echo "# matrix.sh: no test matched" >>"$log"
		result=FAIL
	fi
	# a kernel WARNING or BUG during the check: flag it, whatever the command said
	grep -q '^vm-init: the kernel reported a problem' "$log" && result="$result*"
	RESULT[$kernel,$i]=$result
	SECONDS_OF[$kernel,$i]=$(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }")
	log "$kernel: $name: $result (${SECONDS_OF[$kernel,$i]} s)"
}

# prepare KERNEL: the release, fetching the Debian kernel first; false if it cannot be had.
prepare() {
	local kernel=$1 flog
	if [ "$kernel" = host ]; then
		RELEASE[host]=$(uname -r)
		return 0
	fi
	flog=$(log_path "$kernel" fetch)
	if ! "$KERNELS_DIR/fetch.sh" "$kernel" >"$flog" 2>&1; then
		cat "$flog" >&2
		RELEASE[$kernel]="(fetch failed)"
		return 1
	fi
	RELEASE[$kernel]=$(cat "$(series_dir "$kernel")/release")
}

print_table() {
	local kernel i w=10 cw line cell
	for kernel in "$@"; do
		[ "${#RELEASE[$kernel]}" -gt "$w" ] && w=${#RELEASE[$kernel]}
	done
	echo
	line=$(printf '%-6s  %-*s' kernel "$w" release)
	for i in "${!CHECK_NAMES[@]}"; do
		cw=${#CHECK_NAMES[$i]}
		[ "$cw" -lt 16 ] && cw=16
		line+=$(printf '  %-*s' "$cw" "${CHECK_NAMES[$i]}")
	done
	echo "$line"
	for kernel in "$@"; do
		line=$(printf '%-6s  %-*s' "$kernel" "$w" "${RELEASE[$kernel]}")
		for i in "${!CHECK_NAMES[@]}"; do
			cw=${#CHECK_NAMES[$i]}
			[ "$cw" -lt 16 ] && cw=16
			cell=$(printf '%-8s %5s s' "${RESULT[$kernel,$i]:-skipped}" "${SECONDS_OF[$kernel,$i]:--}")
			line+=$(printf '  %-*s' "$cw" "$cell")
		done
		echo "${line%"${line##*[! ]}"}"
	done
	echo
}

# report_failures KERNEL...: where the logs are, and the end of each failing one.
report_failures() {
	local kernel i log failed=0 flagged=0 npass=0 nfail=0
	for kernel in "$@"; do
		for i in "${!CHECK_NAMES[@]}"; do
			case "${RESULT[$kernel,$i]:-skipped}" in
			pass) npass=$((npass + 1)) && continue ;;
			*\*) flagged=1 ;; # a kernel WARNING: a failure too (panic_on_warn hosts)
			esac
			nfail=$((nfail + 1))
			failed=1
			log=$(log_path "$kernel" "${CHECK_NAMES[$i]}")
			echo "--- $kernel ${CHECK_NAMES[$i]}: ${RESULT[$kernel,$i]:-skipped}, last lines of $log"
			[ -f "$log" ] && tail -n 15 "$log"
		done
	done
	[ "$flagged" = 1 ] && echo "* the kernel logged a WARNING or BUG during the check (see its log)"
	echo "logs: $LOGS"
	# the line tests/run-all.sh counts
	echo "kernel matrix: $npass passed, $nfail failed, 0 skipped"
	return "$failed"
}

main() {
	local host=1 kernels=() kernel i
	while [ $# -gt 0 ]; do
		case "$1" in
		--no-host) host=0 ;;
		-h | --help) awk 'NR >= 3 && /^set -euo/ { exit } NR >= 3' "$0" | sed 's/^# \{0,1\}//' && exit 0 ;;
		host) host=1 ;;
		*) check_series "$1" && kernels+=("$1") ;;
		esac
		shift
	done
	[ ${#kernels[@]} -gt 0 ] || read -r -a kernels <<<"$ALL_SERIES"
	[ "$host" = 1 ] && kernels=(host "${kernels[@]}")
	[ -x "$REPO_ROOT/$BUILD/hoptrace" ] || die "$BUILD/hoptrace is missing: build it first (make all)"
	[ "$(id -u)" = 0 ] || die "run as root (the checks load BPF programs)"
	mkdir -p "$LOGS"
	define_checks
	for kernel in "${kernels[@]}"; do
		prepare "$kernel" || continue
		for i in "${!CHECK_NAMES[@]}"; do
			run_check "$kernel" "$i"
		done
	done
	print_table "${kernels[@]}"
	report_failures "${kernels[@]}"
}

main "$@"
