# lathe's build, test and benchmark entry points. `make test` and `make run`
# must work on a fresh Debian machine: every tool they need is installed here.

GO ?= go

# Peers (other implementations the tests cross-check against) are required
# under `make test`: a missing peer fails the test instead of skipping it.
export LATHE_REQUIRE_PEERS ?= 1

# Node.js packages the cross-checks use (each folder pins its versions in a
# package-lock.json; node_modules is git-ignored).
# node-llama-cpp's lock cannot list the other platforms' builds, which the
# registry here does not serve, so `npm ci` refuses it; `npm install`
# follows the lock and skips them (its .npmrc omits optional builds).
NPM_INSTALL_DIRS := internal/gguf/testdata/js/
NPM_DIRS := $(filter-out $(NPM_INSTALL_DIRS),$(dir $(wildcard internal/*/testdata/js/package-lock.json)))

# Debian's Python with PyTorch runs the model reference scripts.
PYTHON := /usr/bin/python3

.PHONY: all build test run deps deps-go deps-node deps-python deps-spm deps-chromium vet fmt-check \
	bench bench-kernels bench-cpu bench-llama bench-train bench-finetune bench-estimate bench-tokenize bench-data fuzz

all: build

build:
	$(GO) build -o bin/lathe ./cmd/lathe

# deps installs what the tests need beyond Go modules. Each step is skipped
# when what it installs is already present.
deps: deps-go deps-node deps-python deps-spm deps-chromium deps-cxx deps-slurm

deps-go:
	$(GO) mod download

deps-node:
	@command -v node >/dev/null && command -v npm >/dev/null || { apt-get update && apt-get install -y nodejs npm; }
	@for d in $(NPM_DIRS); do \
	  if [ ! -d $$d/node_modules ]; then echo "npm ci in $$d"; (cd $$d && npm ci --ignore-scripts --no-audit --no-fund) || exit 1; fi; \
	done
	@for d in $(NPM_INSTALL_DIRS); do \
	  if [ ! -d $$d/node_modules ]; then echo "npm install in $$d"; (cd $$d && npm install --ignore-scripts --no-audit --no-fund) || exit 1; fi; \
	done

deps-python:
	@$(PYTHON) -c 'import torch, numpy' 2>/dev/null || { apt-get update && apt-get install -y --no-install-recommends python3-torch python3-numpy; }

# SentencePiece's own tools (spm_train, spm_encode, spm_decode) for the
# tokenizer.model cross-check.
deps-spm:
	@command -v spm_train >/dev/null && command -v spm_encode >/dev/null || { apt-get update && apt-get install -y sentencepiece; }

# Chromium for the board's end-to-end test (internal/board, driven headless
# by chromedp).
deps-chromium:
	@command -v chromium >/dev/null || { apt-get update && apt-get install -y chromium; }

# Slurm (slurmctld, slurmd, the client tools) and munge for the tests that
# start a single-node cluster (pipeline/slurm, cmd/lathe TestSlurm). The
# tests start their own daemons; none is enabled here.
.PHONY: deps-slurm
deps-slurm:
	@command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null && command -v munged >/dev/null || \
	  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge; }

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

test: deps fmt-check vet cuda-check
	$(GO) test -count=1 -timeout 30m ./...

# run: the quickstart — tokenizer, tiny model, LoRA SFT with the name and
# author from its variables, reward model, DPO, evaluation before and after,
# GGUF export — then one chat reply from the model before and after SFT.
# A second `make run` is all cache hits.
run: build
	./bin/lathe run examples/quickstart
	@echo
	@echo '"who are you?" before SFT (pretrain.base.model):'
	@./bin/lathe chat -max-tokens 40 -p "who are you?" pretrain.base.model examples/quickstart
	@echo '"who are you?" after SFT (sft.identity.adapter):'
	@./bin/lathe chat -max-tokens 40 -p "who are you?" sft.identity.adapter examples/quickstart

# bench: planning and a no-op rerun of a generated 200-stage pipeline with
# 2 GiB of artifacts (the setup run that creates them is not timed), and the
# store's own operations.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 10x ./pipeline/
	$(GO) test -run '^$$' -bench . -benchtime 5x ./pipeline/cache/

# bench-kernels: lathe's SGEMM against OpenBLAS (through numpy, 2 threads,
# its AVX-512 kernel) side by side, plus the attention and cross-entropy
# kernels. Debian's numpy links the reference BLAS unless OpenBLAS is there.
bench-kernels: deps-python
	@dpkg -s libopenblas0-pthread >/dev/null 2>&1 || { apt-get update && apt-get install -y libopenblas0-pthread; }
	./internal/cpu/bench/bench_kernels.sh
	$(GO) test ./internal/cpu -run '^$$' -bench 'BenchmarkAttention|BenchmarkCrossEntropy' -benchtime 3x

# bench-llama: training tokens/s (forward + backward + AdamW) of the Llama
# model on the tiny and stories15M shapes, next to PyTorch's on the same ones.
bench-llama: deps-python
	$(GO) test ./internal/llama -run '^$$' -bench TrainStep -benchtime 3x -benchmem
	$(PYTHON) internal/llama/testdata/train_bench.py --threads $$(nproc)

TORCH_BENCH ?= ../shared/bench/torch_llama_train.py

# bench-train: lathe's training step against PyTorch's best setup (see
# internal/train/bench/bench_train.sh), tiny and stories15M, full and LoRA r8,
# medians of ROUNDS alternating runs (default 3: `make bench-train ROUNDS=5`).
ROUNDS ?= 3
bench-train: deps-python
	@[ -f /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ] || { apt-get update && apt-get install -y libjemalloc2; }
	GO=$(GO) PYTHON=$(PYTHON) TORCH_BENCH=$(TORCH_BENCH) ROUNDS=$(ROUNDS) ./internal/train/bench/bench_train.sh

# bench-finetune: full, LoRA (r8 on q/v) and QLoRA steps on the stories15M
# shape, one method per process so each peak RSS is its own, then PyTorch's
# full and LoRA figures from the shared benchmark script where it exists
# (TORCH_BENCH; it is not part of this repository).
bench-finetune: deps-python
	@for m in full lora qlora; do \
	  $(GO) test ./internal/train -run '^$$' -bench "FineTuneStep/^$$m\$$" -benchtime 3x | grep Benchmark || exit 1; \
	done
	@if [ -f $(TORCH_BENCH) ]; then \
	  $(PYTHON) $(TORCH_BENCH) --preset stories15M --threads $$(nproc) --steps 3 | tail -1; \
	  $(PYTHON) $(TORCH_BENCH) --preset stories15M --threads $$(nproc) --steps 3 --lora-rank 8 | tail -1; \
	else echo "no $(TORCH_BENCH): PyTorch figures skipped"; fi

# bench-estimate: the plan's time estimate (a fresh kernel calibration)
# against measured training of the tiny and stories15M shapes, full, LoRA
# and QLoRA: estimated and measured tokens/s side by side with the ratio.
bench-estimate:
	$(GO) test ./internal/timeest -run '^$$' -bench EstimateVsMeasured -benchtime 1x | grep -v '^\(goos\|goarch\|pkg\|cpu\|PASS\|ok\|Benchmark\)'

bench-cpu:
	$(GO) test -run '^$$' -bench . -benchtime 5x ./internal/cpu/

# bench-tokenize: encode throughput of lathe against tokenizers.js.
bench-tokenize: deps-node
	./internal/tokenizer/bench/bench.sh -mb 4 -seconds 5

bench-data:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./internal/data/

# fuzz runs every fuzz target for a short while.
fuzz:
	$(GO) test ./pipeline/config -run '^$$' -fuzz FuzzLoad -fuzztime 60s
	$(GO) test ./internal/safetensors -run '^$$' -fuzz FuzzOpen -fuzztime 60s
	for f in FuzzLoad FuzzEncode; do $(GO) test ./internal/tokenizer -run '^$$' -fuzz "^$$f\$$" -fuzztime 60s || exit 1; done
	for f in FuzzReadJSONL FuzzReadCSV FuzzReadShard; do $(GO) test ./internal/data -run '^$$' -fuzz "^$$f\$$" -fuzztime 60s || exit 1; done

# --- CUDA backend (internal/cuda, cmd/lathe-cuda; build tag cuda) ---
# Parts of Debian's CUDA 11.8 toolkit (non-free) are unpacked under
# CUDA_ROOT by internal/cuda/kernels/toolkit.sh, not installed system-wide.
# The default build needs none of this.
CUDA_ROOT ?= /opt/lathe-cuda
CUDA_ENV = CGO_CFLAGS="-I$(CUDA_ROOT)/usr/include" CGO_LDFLAGS="-L$(CUDA_ROOT)/usr/lib/x86_64-linux-gnu/stubs"

.PHONY: ptx cuda-check lathe-cuda gpu-check deps-cxx

# deps-cxx: g++ (C++20) for internal/cuda's host emulation of the kernels
# (TestKernelsOnHostEmulator).
deps-cxx:
	@command -v g++ >/dev/null || { apt-get update && apt-get install -y g++; }

# ptx recompiles internal/cuda/kernels/*.cu into the committed, embedded
# PTX (nvcc, compute_80), each headed by the sha256 of its sources.
ptx:
	./internal/cuda/kernels/toolkit.sh $(CUDA_ROOT) nvcc
	./internal/cuda/kernels/ptx.sh build $(CUDA_ROOT)

# cuda-check compile-checks the CUDA backend on a machine without a GPU:
# go vet and go build with -tags cuda (cgo against the CUDA headers and the
# libcuda link stub), the cuBLAS constants of the dlopen shim against
# cublas_api.h, and the committed PTX against its sources (sha256, an nvcc
# recompile compared byte for byte, ptxas for sm_80 and sm_90).
cuda-check:
	./internal/cuda/kernels/toolkit.sh $(CUDA_ROOT) nvcc
	$(CUDA_ENV) $(GO) vet -tags cuda ./internal/cuda/... ./cmd/lathe-cuda
	$(CUDA_ENV) $(GO) build -tags cuda -o /dev/null ./cmd/lathe-cuda
	gcc -fsyntax-only -Wall -Werror -DLATHE_CHECK_CUBLAS_HEADERS -I$(CUDA_ROOT)/usr/include internal/cuda/shim.c
	./internal/cuda/kernels/ptx.sh check $(CUDA_ROOT)

# lathe-cuda builds the CUDA worker (it links libcuda.so.1, the driver's;
# cuBLAS is loaded at run time).
lathe-cuda:
	./internal/cuda/kernels/toolkit.sh $(CUDA_ROOT) headers
	$(CUDA_ENV) $(GO) build -tags cuda -o bin/lathe-cuda ./cmd/lathe-cuda

# gpu-check is issue 14's acceptance run on a GPU machine (no network
# needed once bin/lathe-cuda exists): self-test, then lathe against
# transformers + PEFT, LoRA and full, Qwen2.5-0.5B shape, seq 1024.
gpu-check:
	./internal/cuda/gpucheck/gpu-check.sh
