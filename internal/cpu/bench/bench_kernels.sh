#!/bin/sh
# Benchmarks lathe's CPU Sgemm against OpenBLAS (through numpy) on the same
# shapes, side by side, in one run. Usage (from anywhere in the repo):
#   internal/cpu/bench/bench_kernels.sh [-run REGEXP] [-mintime 300ms]
# Needs Debian's python3-numpy (apt-get install python3-numpy).
# Both sides use 2 threads. Only the OpenBLAS run has OPENBLAS_CORETYPE and
# OPENBLAS_L2_SIZE unset, so OpenBLAS picks its best (AVX-512) kernel; lathe
# picks its own kernel from CPUID and ignores them.
set -eu
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
threads=${BENCH_THREADS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

go build -o "$tmp/sgemm-bench" ./internal/cpu/bench
GOMAXPROCS=$threads "$tmp/sgemm-bench" "$@" > "$tmp/lathe.tsv"

mintime=0.3
prev=""
for arg in "$@"; do
	if [ "$prev" = "-mintime" ]; then
		mintime=$(echo "$arg" | sed 's/ms$//; s/s$//')
		case "$arg" in *ms) mintime=$(awk "BEGIN{print $mintime/1000}") ;; esac
	fi
	prev=$arg
done

env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
	OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads \
	/usr/bin/python3 "$root/internal/cpu/bench/numpy_sgemm.py" "$tmp/lathe.tsv" "$mintime"
