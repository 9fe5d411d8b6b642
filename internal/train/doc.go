// Package train is lathe's training loop for causal language models built
// on internal/llama: AdamW with the HF Trainer's no-decay group (biases and
// norm weights get weight_decay 0), learning-rate schedules (constant,
// linear, cosine, each with linear warmup given in steps or as a ratio of
// the total), global-norm gradient clipping, gradient accumulation
// (token-weighted: accumulating k micro-batches gives the gradient of the
// mean loss over all their trained tokens), epochs or max_steps, seeded
// shuffling (math/rand/v2 PCG), batching of tokenized shard samples
// (internal/data) into [B,T] batches with pre-shifted targets, periodic
// evaluation on a validation set, metrics through a callback, and a loss
// curve rendered as PNG with the standard library.
//
// Checkpoints are directories checkpoint-<step> written atomically (a
// temporary directory renamed into place) holding the F32 weights
// (safetensors), the AdamW moments, the step, the shuffling RNG state and
// the data position, and the metric history; at most SaveTotalLimit are
// kept. A run started with a checkpoint directory that holds one resumes
// from the newest, and the result is bit-identical to an uninterrupted run
// (the CPU backend's reductions run in a fixed order). On context
// cancellation the loop writes a checkpoint and returns ctx.Err(); a NaN or
// infinite loss or gradient norm stops it with an error naming the step and
// the last good checkpoint.
//
// It does not do: mixed precision, distributed or multi-device training,
// LoRA or frozen parameters (the whole model is trained), preference or RL
// losses, or scheduling of anything but the learning rate. Metrics sent to
// the callback include wall-clock figures (tokens/s, elapsed); the history
// kept for the report holds only deterministic values.
package train
