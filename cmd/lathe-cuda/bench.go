package main

import (
	_ "embed"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/tensor"
)

// This file is the benchmark's backend-independent part: the model, the
// step, the FLOP count and the peak table. It has no build tag so it is
// tested on the CPU with a tiny model.

// qwenConfig is Qwen2.5-0.5B's config.json (the Hugging Face hub's, with
// use_cache off); internal/cuda/gpucheck/hf_bench.py builds the
// transformers model from the same file.
//
//go:embed qwen2.5-0.5b.json
var qwenConfig []byte

// loraTargets are the adapted modules of the LoRA benchmark (every linear
// layer, as PEFT's "all-linear"), rank 16, alpha 32.
var loraTargets = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

const (
	loraRank  = 16
	loraAlpha = 32
)

// benchOptions returns the engine options of a method: "full" trains
// everything, "lora" freezes the base and adapts loraTargets; a "-bf16"
// suffix holds the linear weights and the layers' activations in bfloat16
// (compute_type = "bf16").
func benchOptions(cfg llama.Config, method string) (llama.Options, error) {
	base, bf16 := strings.CutSuffix(method, "-bf16")
	switch base {
	case "full":
		return llama.Options{BF16: bf16, BF16Activations: bf16}, nil
	case "lora":
		return llama.Options{Trainable: func(string) bool { return false }, BF16: bf16, BF16Activations: bf16,
			LoRA: &llama.LoRAOptions{Modules: llama.LinearModules(loraTargets, cfg.Layers), Rank: loraRank,
				Scale: float32(loraAlpha) / loraRank, Seed: 1}}, nil
	}
	return llama.Options{}, fmt.Errorf("unknown method %q (want lora or full, optionally with -bf16)", method)
}

// benchResult is one method's measurement.
type benchResult struct {
	Method        string  `json:"method"`
	Batch         int     `json:"batch"`
	Seq           int     `json:"seq"`
	Steps         int     `json:"steps"`
	StepSeconds   float64 `json:"step_s"`
	TokensPerSec  float64 `json:"tokens_per_s"`
	FlopsPerToken float64 `json:"flops_per_token"`
	Trainable     int     `json:"trainable_params"`
	Loss          float32 `json:"last_loss"`
}

// benchMethod builds the model on be with random weights and times steps
// optimizer steps (zero grads, forward+backward, AdamW) after warm warm-up
// steps on a fixed random batch of B rows of T tokens.
func benchMethod(be tensor.Backend, cfg llama.Config, method string, B, T, warm, steps int) (benchResult, error) {
	res := benchResult{Method: method, Batch: B, Seq: T, Steps: steps, FlopsPerToken: flopsPerToken(cfg, T, method)}
	opts, err := benchOptions(cfg, method)
	if err != nil {
		return res, err
	}
	m, err := llama.NewWith(cfg, be, opts)
	if err != nil {
		return res, err
	}
	defer m.Free()
	if err := m.InitRandom(1, 0.02); err != nil {
		return res, err
	}
	res.Trainable = m.NumTrainable()
	r := rand.New(rand.NewPCG(1, 2))
	b := &llama.Batch{B: B, T: T, Tokens: make([]int32, B*T), Targets: make([]int32, B*T)}
	for i := range b.Tokens {
		b.Tokens[i] = int32(r.IntN(cfg.VocabSize))
	}
	for i := range b.Targets {
		b.Targets[i] = -100
		if (i+1)%T != 0 {
			b.Targets[i] = b.Tokens[i+1]
		}
	}
	adam := llama.AdamWConfig{LR: 1e-5, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, NoDecayNormsBias: true}
	step := func() error {
		m.ZeroGrad()
		loss, err := m.ForwardBackward(b)
		if err != nil {
			return err
		}
		res.Loss = loss
		if err := m.AdamW(adam); err != nil {
			return err
		}
		return be.Sync()
	}
	for range warm {
		if err := step(); err != nil {
			return res, err
		}
	}
	start := time.Now()
	for range steps {
		if err := step(); err != nil {
			return res, err
		}
	}
	el := time.Since(start).Seconds()
	res.StepSeconds = el / float64(steps)
	res.TokensPerSec = float64(B*T*steps) / el
	return res, nil
}

// flopsPerToken is the model FLOPs of one training token at sequence
// length T, the usual accounting (matmuls and attention scores only,
// 2 FLOPs per multiply-add, causal attention over (T+1)/2 keys on
// average):
//
//	forward  F = 2·(linear weights incl. the LM head) + 4·layers·(Hq·D)·(T+1)/2
//	full     3F (backward: input and weight gradients)
//	lora     2F + attention's backward share (input gradients only; the
//	         adapters' own FLOPs, under 1% at rank 16, are left out)
func flopsPerToken(c llama.Config, T int, method string) float64 {
	H, I, q, kv := float64(c.Hidden), float64(c.Intermediate), float64(c.Heads*c.HeadDim), float64(c.KVHeads*c.HeadDim)
	perLayer := H*q + 2*H*kv + q*H + 3*H*I
	linear := float64(c.Layers)*perLayer + float64(c.VocabSize)*H
	attn := 4 * float64(c.Layers) * q * float64(T+1) / 2
	fwd := 2*linear + attn
	if strings.HasPrefix(method, "lora") {
		// Backward: input gradients of every linear (as the forward) and
		// attention's backward (twice its forward).
		return fwd + 2*linear + 2*attn
	}
	return 3 * fwd
}

// peakBF16 returns the device's peak dense bf16 tensor-core FLOP/s with
// float32 accumulation: a table of data-center parts by name, else SMs ×
// clock × the per-SM rate of its architecture, and where the figure came
// from.
func peakBF16(name string, major, minor, sms, clockKHz int) (float64, string) {
	table := []struct {
		match  string
		tflops float64
	}{
		{"H200", 989}, {"H100 SXM", 989}, {"H100 80GB HBM3", 989}, {"H100 NVL", 835}, {"H100 PCIe", 756}, {"H100", 756},
		{"H800", 989}, {"GH200", 989}, {"B200", 2250}, {"A100", 312}, {"A800", 312}, {"A30", 165},
		{"L40S", 362}, {"L40", 181}, {"L4", 121}, {"A10G", 70}, {"A10", 125}, {"A40", 150}, {"A6000", 155},
	}
	for _, t := range table {
		if strings.Contains(name, t.match) {
			return t.tflops * 1e12, "table (" + t.match + ")"
		}
	}
	// Dense bf16 multiply-adds per SM per clock, ×2 FLOPs.
	perSM := 0.0
	switch {
	case major == 8 && minor == 0:
		perSM = 2048
	case major == 8:
		perSM = 1024 // GA10x/AD10x with float32 accumulation (GeForce parts may run at half that)
	case major == 9:
		perSM = 4096
	case major >= 10:
		perSM = 8192
	}
	if perSM == 0 || sms <= 0 || clockKHz <= 0 {
		return 0, "unknown"
	}
	return perSM * float64(sms) * float64(clockKHz) * 1e3, fmt.Sprintf("sm_%d%d rate × %d SMs × %d MHz", major, minor, sms, clockKHz/1000)
}
