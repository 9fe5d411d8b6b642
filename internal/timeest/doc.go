// Package timeest estimates how long a training stage takes before it
// runs: the time of one optimizer step, the trained tokens per second and
// the whole run, from a count of the kernel calls a step makes and a short
// calibration of those kernels on this machine.
//
// The step model (Step) lists every kernel call of one optimizer step of
// internal/llama's decoder as internal/train drives it, for the method
// (full, freeze, LoRA, QLoRA) and objective: the linear layers' products
// forward and backward, where a frozen weight needs no weight gradient and
// the backward pass stops at the lowest layer that trains; LoRA's
// low-rank products; QLoRA's tile-by-tile NF4 dequantisation; causal
// attention forward and backward; the fused LM-head cross-entropy (once
// for the language-modelling loss, twice for the DPO family) or a reward
// model's value head; a layer's elementwise kernels (norms, RoPE, the gated
// activation, residual adds); the forward pass again under activation
// recomputation; gradient accumulation; and the optimizer. Flops counts
// their floating-point work. A run adds the steps (max_steps, or epochs
// over the dataset's rows), the reference scoring of DPO's losses and the
// evaluations. The dataset's row lengths come from its shards' offset
// tables (ReadData, no tokens read); a micro-batch is padded to its
// longest row, whose expectation over random batches is computed exactly.
//
// The Calibrator times each distinct kernel call of the model on the
// backend at its own shape, or, for a large one, at a reduced shape whose
// time is scaled by its work (Op.Measured), and caches the timings in a
// small JSON file per machine and backend (CPU model and features,
// GOMAXPROCS, kernel selection, engine version) under the user cache
// directory, written atomically. A new model shape adds its kernels to the
// file; a file for another machine, of another format or malformed is
// ignored and rewritten.
//
// Each op is timed in two passes of a few dozen milliseconds, keeping its
// fastest batch of calls, with its operands rotated through copies that
// overflow the caches (as a step's kernels find them): the machine's
// speed when nothing else competes for it. BenchmarkEstimateVsMeasured
// (make bench-estimate) compares the estimate with real training.
//
// It does not: count the time to load the model, write checkpoints or the
// result, or read the data; count the hand-offs between one kernel and
// the next of a real step (helper threads waking, host work between
// kernels), which a small model's step of many short kernels feels (the
// tiny shape runs about 1.3× slower than estimated on two threads); model
// a machine shared with other work (stages running side by side, other
// processes) — the estimate is for the stage alone on the machine as it
// was when calibrated; count the masked-out
// tiles packed rows skip in attention (a packed dataset trains somewhat
// faster than estimated); model the extra kernels of some model families
// (post-norms, soft-capping, ALiBi); or estimate PPO, whose generation
// time depends on when rows stop.
package timeest
