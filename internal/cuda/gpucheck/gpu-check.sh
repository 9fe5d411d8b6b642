#!/bin/sh
# gpu-check.sh (make gpu-check): issue 14's acceptance run, for a machine
# with an NVIDIA GPU and no network that has PyTorch, transformers and PEFT:
#
#   1. the worker binary: bin/lathe-cuda (or $LATHE_CUDA); if it is missing
#      and Go is there, `make lathe-cuda` builds it (that needs the CUDA
#      headers under $CUDA_ROOT, or network to fetch them);
#   2. cuBLAS: found by soname, else in the Python packages (the
#      nvidia-cublas wheel PyTorch uses, or torch/lib) and passed as
#      $LATHE_CUBLAS;
#   3. lathe-cuda selftest: every kernel and a training step against the
#      CPU backend, with the tolerances it prints;
#   4. lathe-cuda bench and hf_bench.py: LoRA and full fine-tuning steps of
#      a Qwen2.5-0.5B-shaped model, seq 1024, on the same GPU;
#   5. report.py: tokens/s, the ratio, MFU, and whether the goals are met;
#   6. lathe run end to end: a pipeline whose pretrain stage asks for a GPU
#      (resources { gpus = 1 }), run by bin/lathe (built here if Go is
#      there), which starts the worker on the device; its loss is printed
#      beside the same training's on the CPU.
#
# Everything goes to stdout and to $OUT (or /tmp/lathe-gpu-check). The exit
# status is 0 only when the self-test passed and both benchmarks ran; unmet
# speed goals are reported, not turned into a failure.
# Knobs: BATCH (8), SEQ (1024), STEPS (5), WARMUP (2), GEMM (bf16), ATTN (sdpa).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
cd "$root"
out=${OUT:-/tmp/lathe-gpu-check}
mkdir -p "$out"
bin=${LATHE_CUDA:-bin/lathe-cuda}
BATCH=${BATCH:-8} SEQ=${SEQ:-1024} STEPS=${STEPS:-5} WARMUP=${WARMUP:-2} GEMM=${GEMM:-bf16} ATTN=${ATTN:-sdpa}
PY=${PYTHON:-python3}
status=0

echo "== gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

if [ ! -x "$bin" ]; then
	if command -v go >/dev/null || [ -x /usr/local/go/bin/go ]; then
		echo "== building $bin"
		PATH=$PATH:/usr/local/go/bin make lathe-cuda || { echo "gpu-check: cannot build lathe-cuda"; exit 1; }
	else
		echo "gpu-check: no $bin and no Go toolchain: run make lathe-cuda on a machine with Go and copy bin/lathe-cuda here"
		exit 1
	fi
fi

if [ -z "${LATHE_CUBLAS:-}" ] && ! ldconfig -p 2>/dev/null | grep -qE 'libcublas\.so\.1[123] '; then
	lib=$("$PY" - <<'PYEOF'
import glob, os, site
dirs = []
try:
    dirs += site.getsitepackages()
except Exception:
    pass
dirs.append(site.getusersitepackages())
found = []
for d in dirs:
    for pat in ("nvidia/cublas/lib/libcublas.so.1*", "torch/lib/libcublas.so.1*"):
        found += [p for p in glob.glob(os.path.join(d, pat)) if os.path.basename(p).startswith("libcublas.so.")]
print(sorted(found)[-1] if found else "")
PYEOF
)
	if [ -n "$lib" ]; then
		export LATHE_CUBLAS="$lib"
		export LD_LIBRARY_PATH="$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
		echo "== cuBLAS from the Python packages: $lib"
	else
		echo "gpu-check: no libcublas.so.1[123] on the library path or in the Python packages; set LATHE_CUBLAS"
	fi
fi

echo "== lathe-cuda selftest"
"$bin" selftest | tee "$out/selftest.txt"
st=$(tail -1 "$out/selftest.txt")
case $st in *" 0 failed"*) ;; *) echo "gpu-check: SELFTEST FAILED"; status=1 ;; esac

echo "== lathe-cuda bench (batch $BATCH, seq $SEQ, $STEPS steps after $WARMUP, GEMM $GEMM)"
if ! "$bin" bench -json -method lora,full,lora-bf16,full-bf16 -batch "$BATCH" -seq "$SEQ" -steps "$STEPS" -warmup "$WARMUP" -gemm "$GEMM" >"$out/lathe.jsonl"; then
	echo "gpu-check: lathe bench failed"
	status=1
fi
cat "$out/lathe.jsonl"

echo "== transformers + PEFT (attention $ATTN)"
if ! "$PY" "$here/hf_bench.py" --config cmd/lathe-cuda/qwen2.5-0.5b.json --batch "$BATCH" --seq "$SEQ" \
	--steps "$STEPS" --warmup "$WARMUP" --attn "$ATTN" >"$out/hf.jsonl"; then
	echo "gpu-check: hf bench failed"
	status=1
fi
cat "$out/hf.jsonl"

echo "== report"
"$PY" "$here/report.py" "$out/lathe.jsonl" "$out/hf.jsonl" | tee "$out/report.txt"
echo "== lathe run with a GPU stage (bin/lathe starts $bin)"
lathe=${LATHE:-bin/lathe}
if [ ! -x "$lathe" ] && { command -v go >/dev/null || [ -x /usr/local/go/bin/go ]; }; then
	PATH=$PATH:/usr/local/go/bin go build -o "$lathe" ./cmd/lathe
fi
if [ -x "$lathe" ]; then
	e2e="$out/e2e"
	rm -rf "$e2e" && mkdir -p "$e2e"
	cat >"$e2e/pipeline.hcl" <<EOF
variable "gpus" {
  type    = number
  default = 1
}
stage "tokenize" "corpus" {
  train {
    vocab_size     = 512
    special_tokens = ["<|endoftext|>"]
  }
  dataset {
    path   = "$root/examples/pretrain-tiny/corpus.jsonl"
    format = "text"
  }
  cutoff_len = 256
}
stage "pretrain" "tiny" {
  config {
    hidden_size             = 128
    num_hidden_layers       = 4
    num_attention_heads     = 4
    intermediate_size       = 384
    max_position_embeddings = 256
  }
  data       = tokenize.corpus.dataset
  tokenizer  = tokenize.corpus.tokenizer
  batch_size = 8
  max_steps  = 20
  resources { gpus = var.gpus }
}
EOF
	case $bin in /*) worker=$bin ;; *) worker=$root/$bin ;; esac
	if LATHE_CUDA_WORKER="$worker" "$lathe" run -ci "$e2e" >"$out/e2e-gpu.txt" 2>&1 &&
		"$lathe" run -ci -var gpus=0 "$e2e" >"$out/e2e-cpu.txt" 2>&1; then
		echo "GPU: $(grep -o 'trained 20 steps.*' "$out/e2e-gpu.txt")"
		echo "CPU: $(grep -o 'trained 20 steps.*' "$out/e2e-cpu.txt")"
	else
		echo "gpu-check: lathe run with a GPU stage failed:"
		tail -n 20 "$out/e2e-gpu.txt" "$out/e2e-cpu.txt"
		status=1
	fi
else
	echo "gpu-check: no $lathe and no Go toolchain: skipping lathe run"
fi

echo "gpu-check: exit $status (results in $out)"
exit $status
