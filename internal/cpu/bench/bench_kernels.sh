#!/bin/sh
# Benchmarks lathe's CPU Sgemm against OpenBLAS (through numpy) on the same
# shapes, side by side, in one run; shapes are interleaved (lathe, then
# OpenBLAS, per shape) and the best of ROUNDS rounds is kept for each.
#
# Usage (from anywhere in the repo):
#   internal/cpu/bench/bench_kernels.sh [ROUNDS [REGEXP]]
# Environment: BENCH_THREADS (default 2), BENCH_MINTIME seconds per shape
# and side in a round (default 0.3).
# Needs Debian's python3-numpy with OpenBLAS
# (apt-get install python3-numpy libopenblas0-pthread).
# Only the OpenBLAS side has OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset,
# so OpenBLAS picks its best kernel for the CPU; lathe picks its own kernel
# from CPUID and ignores them.
set -eu
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
threads=${BENCH_THREADS:-2}
mintime=${BENCH_MINTIME:-0.3}
rounds=${1:-3}
filter=${2:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

go build -o "$tmp/sgemm-bench" ./internal/cpu/bench
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
	OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" \
	/usr/bin/python3 "$root/internal/cpu/bench/numpy_sgemm.py" "$tmp/sgemm-bench" "$mintime" "$rounds" "$filter"
