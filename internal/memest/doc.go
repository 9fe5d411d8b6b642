// Package memest estimates the peak memory of a training stage before it
// runs, from the model's config, the fine-tuning method (full, freeze,
// LoRA, QLoRA), the batch shape and activation recomputation, as a list
// of named pieces; and proposes changes that would fit a limit (Fitting)
// or the largest batch that does (AutoBatch). PPO estimates a PPO stage:
// the policy's training plus its reference (a copy under full training),
// the reward model, generation's KV cache and the materialised logits
// (FittingPPO proposes what would fit). Layout and Linears export the
// parameter layout the time model (internal/timeest) shares.
//
// The pieces the engine allocates through its backend (weights, NF4
// weights, gradients, AdamW moments, activations, the cross-entropy
// workspace, scratch) are computed to the byte from the same layout
// internal/llama and internal/train use; a test builds the models and
// compares. The rest of the process is modelled and calibrated against
// the peak resident set size of real training runs in subprocesses: the
// engine's Go slices, the CPU kernels' reusable scratch (packed copies of
// the LM head, Sgemm pack buffers), host copies made while loading,
// checkpointing and writing the model, the process's baseline, and the
// Go heap's overhead.
//
// The CPU backend's buffers are Go heap allocations. Under the default
// GOGC=100 the collector lets the heap grow to about twice its live size
// before collecting, so the garbage a long run makes (batches, metrics)
// can grow the resident size of a training process towards twice what
// it needs. The estimates assume the process runs under the Go memory
// limit MemoryLimit returns (runtime/debug.SetMemoryLimit), which bounds
// that growth at the cost of more frequent, cheap collections (the big
// buffers hold no pointers). The limit is per process: stages training in
// parallel in one process need the sum of their limits.
//
// It does not: model GPU memory beyond flagging the backend pieces (the
// CUDA backend has its own workspace), count file pages mapped while
// reading safetensors weights or dataset shards (resident while touched,
// but clean page cache the kernel reclaims under pressure), model the
// generation of evaluation samples, nor estimate time (internal/timeest
// does). PPO's estimate takes the longest prompt plus max_new_tokens for
// every rollout, an upper bound: rows that stop early make shorter
// batches; the frozen models' reserved but never-written backward
// scratch is not counted (its pages are never resident).
package memest
