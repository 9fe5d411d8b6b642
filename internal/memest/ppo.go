package memest

import (
	"fmt"
	"runtime"

	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/tensor"
)

// PPOInput describes a PPO stage (stages/ppo, driven by train.PPO): the
// policy trained with a value head, its reference, the reward model, and
// the rollouts generated each step.
type PPOInput struct {
	// Policy is the policy's training as for Training: Config, Method,
	// the LoRA fields, Merge, Baseline and Threads. BatchSize is the
	// rollouts per step (batch_size: the generation, scoring and
	// log-prob passes run on all of them at once; the optimisation's
	// mini-batches are smaller) and SeqLen the longest sequence, the
	// longest prompt plus max_new_tokens. ValueHead is implied; Pairs,
	// GradAccum, Recompute and Checkpoints do not apply (Freeze is not a
	// PPO method).
	Policy Input
	// PromptLen is the longest prompt (the prefill's rows).
	PromptLen int
	// RewardConfig is the reward model's config; with RewardLoRARank > 0
	// it is an adapter (LoRA rank and modules as Input's) on it.
	RewardConfig      llama.Config
	RewardLoRARank    int
	RewardLoRAModules []string
}

// The pieces PPO adds to the policy's training.
const (
	PieceReference = "reference model" // a frozen copy under full training (LoRA disables the adapters instead)
	PieceReward    = "reward model"
	PieceKVCache   = "kv cache"      // generation's keys and values, next-token logits
	PieceLogitsBuf = "logits buffer" // the materialised logits of the entropy metric and their host copy
)

// PPO estimates the peak memory of a PPO stage on the CPU backend: the
// policy's training (weights, gradients, AdamW moments, activations for a
// batch_size × SeqLen pass, which generation's prefill and every scoring
// pass reuse); under full training the reference model, a second copy of
// the starting model loaded as the policy is (its gradients included:
// trainstage loads it with the method applied) with activations of its
// own; the reward model with its value head (and adapters) and its own
// activations; generation's KV cache and logits; and the full logits of
// the batch the entropy metric materialises, kept on the backend and
// copied to the host. The host pieces, baseline and headroom are as
// Training's.
func PPO(in PPOInput) (Estimate, error) {
	p := in.Policy
	p.ValueHead, p.Pairs, p.GradAccum, p.Recompute, p.Checkpoints = true, false, 1, false, false
	if p.Method == Freeze {
		return Estimate{}, fmt.Errorf("memest: ppo trains with method full, lora or qlora, not %q", p.Method)
	}
	if in.PromptLen < 1 || in.PromptLen >= p.SeqLen {
		return Estimate{}, fmt.Errorf("memest: ppo prompt length %d: want 1 .. sequence length %d − 1", in.PromptLen, p.SeqLen)
	}
	if p.Threads == 0 {
		p.Threads = runtime.GOMAXPROCS(0)
	}
	pol, err := Training(p)
	if err != nil {
		return Estimate{}, err
	}
	c := p.Config
	n := p.BatchSize * p.SeqLen
	var e Estimate
	add := func(name string, bytes int64, backend bool) {
		e.Pieces = append(e.Pieces, Piece{Name: name, Bytes: bytes, Backend: backend})
		e.Total += bytes
	}
	s, err := layout(p)
	if err != nil {
		return Estimate{}, err
	}
	for _, pc := range pol.Pieces {
		switch pc.Name {
		case PieceHeadroom, PieceRuntime:
		case PieceKernel:
			// Materialising the logits is one more [n, V, H] product.
			add(pc.Name, kernelBytes(p, s, n, p.Threads, [3]int{n, c.VocabSize, c.Hidden}), pc.Backend)
		default:
			add(pc.Name, pc.Bytes, pc.Backend)
		}
	}
	if p.Method == Full {
		ref := p
		ref.ValueHead = false
		b, err := frozenModel(ref, n, true)
		if err != nil {
			return Estimate{}, err
		}
		add(PieceReference, b, true)
	}
	rw := Input{Config: in.RewardConfig, Method: Full, ValueHead: true, BatchSize: p.BatchSize, SeqLen: p.SeqLen}
	if in.RewardLoRARank > 0 {
		rw.Method, rw.LoRARank, rw.LoRAModules = LoRA, in.RewardLoRARank, in.RewardLoRAModules
	}
	b, err := frozenModel(rw, n, false)
	if err != nil {
		return Estimate{}, fmt.Errorf("reward model: %w", err)
	}
	add(PieceReward, b, true)
	// The KV cache of batch_size rows of SeqLen positions, the last
	// hidden state and next-token logits of each row, and the host copy
	// of the logits.
	kvd := int64(c.KVHeads * c.HeadDim)
	B, V := int64(p.BatchSize), int64(c.VocabSize)
	add(PieceKVCache, 4*(2*int64(c.Layers)*B*int64(p.SeqLen)*kvd+B*V+B*int64(c.Hidden))+4*B+4*B*V, true)
	// Logits [n, V] on the backend, kept with the activations, and the
	// host copy Logits returns.
	add(PieceLogitsBuf, 8*int64(n)*V, true)
	add(PieceRuntime, pol.Piece(PieceRuntime), false)
	add(PieceHeadroom, headroom(e.Total-pol.Piece(PieceRuntime)), false)
	return e, nil
}

// frozenModel is what a model that is only run forward holds: its
// weights, its gradients (of what trains under in's method: a full-method
// copy has them all, a frozen one only its adapters and value head), its
// scratch, and the forward activations for n tokens with the
// cross-entropy workspace and token buffers. allTrain is set when every
// base parameter has a gradient buffer.
func frozenModel(in Input, n int, allTrain bool) (int64, error) {
	if err := in.Config.Validate(); err != nil {
		return 0, fmt.Errorf("memest: %w", err)
	}
	s, err := layout(in)
	if err != nil {
		return 0, err
	}
	c := in.Config
	grads := s.trainable
	if !allTrain && in.Method == Full {
		// Loaded with Trainable false for every base parameter: only the
		// value head (and adapters, under LoRA) train.
		grads = 0
		if in.ValueHead {
			grads = int64(c.Hidden) + 1
		}
	}
	rope := tensor.RoPE{HeadDim: c.HeadDim, Theta: c.RopeTheta, Llama3: c.RopeScaling}
	b := 4*s.f32 + 2*s.bf16 + s.nf4Bytes + 4*grads
	b += 4 * int64(max(c.Hidden, c.HeadDim)+s.nf4Tile+rope.Dim()/2)
	// The backward pass's scratch is reserved but never written: its
	// pages are not resident.
	H, I := int64(c.Hidden), int64(c.Intermediate)
	qd, kvd, N := int64(c.Heads*c.HeadDim), int64(c.KVHeads*c.HeadDim), int64(n)
	act := activationBytes(in, s, n) - 4*(3*N*H+2*N*qd+2*N*kvd+3*N*I)
	b += act + 16*int64(n) + 4*int64(llama.CrossEntropyChunkRows(c.VocabSize))*int64(c.VocabSize)
	b += 8 * int64(n) // the host copies of losses and positions
	return b, nil
}

// FittingPPO returns changes to a PPO stage under which its estimate fits
// within limit bytes, each computed by PPO: adapters instead of full
// training (method "lora" with the default adapters, then "qlora"), the
// largest smaller batch_size that fits (a multiple of mini_batch_size,
// miniBatch now, or below it with mini_batch_size equal to it), and the
// most max_new_tokens that fit. It
// returns nothing when in already fits, when nothing does, or when in is
// invalid.
func FittingPPO(in PPOInput, miniBatch int, limit int64) []Option {
	in.Policy = resolve(in.Policy)
	fits := func(x PPOInput) (int64, bool) {
		e, err := PPO(x)
		return e.Total, err == nil && e.Total <= limit
	}
	if _, ok := fits(in); ok {
		return nil
	}
	if _, err := PPO(in); err != nil {
		return nil
	}
	var out []Option
	try := func(x PPOInput, desc string) bool {
		total, ok := fits(x)
		if ok {
			out = append(out, Option{Description: desc, Input: x.Policy, Total: total})
		}
		return ok
	}
	for _, m := range []Method{LoRA, QLoRA} {
		if in.Policy.Method == m || (m == LoRA && in.Policy.Method == QLoRA) {
			continue
		}
		x := in
		if x.Policy.Method == Full {
			x.Policy.LoRARank, x.Policy.LoRAModules, x.Policy.LoRADropout = defaultLoRARank, defaultLoRAModules, false
		}
		x.Policy.Method = m
		if try(x, fmt.Sprintf("method = %q", m)) {
			break
		}
	}
	for b := in.Policy.BatchSize - 1; b >= 1; b-- {
		// A multiple of mini_batch_size, or below it (then the batch is
		// one mini-batch).
		mb := min(max(miniBatch, 1), b)
		if b%mb != 0 {
			continue
		}
		x := in
		x.Policy.BatchSize = b
		if try(x, fmt.Sprintf("batch_size = %d, mini_batch_size = %d", b, mb)) {
			break
		}
	}
	// The most new tokens that fit.
	lo, hi := 0, in.Policy.SeqLen-in.PromptLen-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		x := in
		x.Policy.SeqLen = in.PromptLen + mid
		if _, ok := fits(x); ok {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	if lo > 0 {
		x := in
		x.Policy.SeqLen = in.PromptLen + lo
		try(x, fmt.Sprintf("max_new_tokens = %d", lo))
	}
	return out
}
