#!/bin/sh
# bench_train.sh — `make bench-train`: lathe's training step against PyTorch's
# at its best setup on this machine (../shared/bench/README.md: jemalloc, 1 torch
# thread + 2 OpenBLAS threads, OpenBLAS's own kernel choice), side by side in
# one run, on the tiny and stories15M shapes, full training and LoRA r8 on q,v.
# Each lathe figure comes from its own process so its peak RSS is its own.
# Shared machines drift by tens of percent from minute to minute, so each
# configuration alternates lathe and PyTorch ROUNDS times (default 3) and
# prints the medians, and their ratio.
#
#   TORCH_BENCH=path/to/torch_llama_train.py ROUNDS=3 ./internal/train/bench/bench_train.sh
set -eu
GO=${GO:-go}
PYTHON=${PYTHON:-/usr/bin/python3}
TORCH_BENCH=${TORCH_BENCH:-../shared/bench/torch_llama_train.py}
ROUNDS=${ROUNDS:-3}
JEMALLOC=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2

bin=$(mktemp -d)/train.test
trap 'rm -rf "$(dirname "$bin")"' EXIT
$GO test -c -o "$bin" ./internal/train

lathe() { # $1 benchmark pattern, $2 steps → "tokens/s peakRSS-MiB"
	"$bin" -test.run '^$' -test.bench "$1" -test.benchtime "$2x" | awk '
		/^Benchmark/ { for (i = 1; i < NF; i++) { if ($(i+1) == "tokens/s") t = $i; if ($(i+1) == "peakRSS-MiB") r = $i } }
		END { printf "%s %s\n", t, r }'
}
torch() { # $1 preset, $2 lora rank, $3 steps → "tokens/s peakRSS-MiB"
	if [ ! -f "$TORCH_BENCH" ]; then echo "- -"; return; fi
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE LD_PRELOAD=$JEMALLOC MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
		$PYTHON "$TORCH_BENCH" --preset "$1" --lora-rank "$2" --threads 1 --blas-threads 2 --steps "$3" --json |
		tail -1 | $PYTHON -c 'import json,sys; d=json.load(sys.stdin); print(d["tokens_per_s"], d["rss_mib"])'
}
median() { # the median of the arguments ("-" if there are none)
	printf '%s\n' "$@" | grep -v '^-$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2] + v[NR/2+1]) / 2 }'
}
printf "%-18s %12s %12s %7s %14s %14s   (medians of %s rounds)\n" config lathe_tok/s torch_tok/s ratio lathe_RSS_MiB torch_RSS_MiB "$ROUNDS"
# tiny steps take milliseconds: time 100 of them (1-2 s of lathe, 3-7 s of
# PyTorch) so one preemption does not swing the figure.
for row in "tiny full TrainShape/^tiny-full$ 0 100" "tiny lora TrainShape/^tiny-lora$ 8 100" \
	"stories15M full TrainShape/^stories15M-full$ 0 5" "stories15M lora TrainShape/^stories15M-lora$ 8 5"; do
	set -- $row
	lt="" lr="" tt="" tr=""
	i=0
	while [ "$i" -lt "$ROUNDS" ]; do
		l=$(lathe "$3" "$5")
		t=$(torch "$1" "$4" "$5")
		lt="$lt ${l% *}" lr="$lr ${l#* }" tt="$tt ${t% *}" tr="$tr ${t#* }"
		i=$((i + 1))
	done
	name="$1-$2"
	set -- $(median $lt) $(median $tt) $(median $lr) $(median $tr)
	ratio=$(awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "-" }')
	printf "%-18s %12.0f %12s %7s %14s %14s\n" "$name" "$1" "$2" "$ratio" "$3" "$4"
done
