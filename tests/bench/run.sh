#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# make bench: run the benchmark suite against the build in $1 (default build).
# Extra arguments go to bench.py (--help lists them); results land in $1/bench/.
set -e
out=${1:-build}
[ $# -gt 0 ] && shift
exec python3 "$(dirname "$0")/bench.py" --build "$out" "$@"
