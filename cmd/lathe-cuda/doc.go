// Command lathe-cuda is lathe's CUDA worker: the training engine on an
// NVIDIA GPU through internal/cuda. It is built with -tags cuda (`make
// lathe-cuda`); built without the tag it only says so. gorgonia.org/cu ends
// the process at start-up when the CUDA driver finds no GPU, so lathe
// starts this binary only after NVML has found one.
//
// Subcommands:
//
//	lathe-cuda selftest [-device N] [-seed S] [-only NAME]
//	    runs every kernel of the CUDA backend and the CPU backend on the same
//	    random inputs (and one training step of a small Qwen2-shaped model,
//	    full and LoRA) and prints a table of the largest differences against
//	    the stated tolerances; it exits 1 if any output is out of tolerance.
//	lathe-cuda bench [-device N] [-method lora,full,lora-bf16,full-bf16] [-batch B] [-seq T] [-steps N] [-gemm bf16] [-json]
//	    times LoRA SFT and full fine-tuning steps (forward, backward, AdamW)
//	    of a Qwen2.5-0.5B-shaped model with random weights and prints
//	    tokens/s and MFU against the device's peak dense bf16 FLOP/s.
//	lathe-cuda stage exec [flags] ADDRESS PIPELINE
//	    the one-stage contract (internal/worker): what lathe run starts for
//	    each GPU stage, on the stage's devices (CUDA_VISIBLE_DEVICES).
//
// See internal/cuda's package comment for what the backend does and does
// not do.
package main
