package main

import (
	"math"
	"testing"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/llama"
)

// TestQwenConfig checks the embedded benchmark config parses to the
// Qwen2.5-0.5B shape and its parameter count.
func TestQwenConfig(t *testing.T) {
	c, err := llama.ParseConfig(qwenConfig)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hidden != 896 || c.Layers != 24 || c.Heads != 14 || c.KVHeads != 2 || c.HeadDim != 64 || !c.QKVBias || !c.TieEmbeddings {
		t.Fatalf("config %+v is not Qwen2.5-0.5B's shape", c)
	}
	// 494,032,768 parameters (Qwen's model card: 0.49B).
	H, I, q, kv, V := 896, 4864, 896, 128, 151936
	n := V*H + c.Layers*(2*H+H*q+q+2*(H*kv+kv)+q*H+3*H*I) + H
	if n != 494032768 {
		t.Errorf("parameter count %d", n)
	}
}

// TestFlopsPerToken checks the FLOP accounting against a hand count.
func TestFlopsPerToken(t *testing.T) {
	c := llama.Config{Hidden: 4, Intermediate: 8, Layers: 2, Heads: 2, KVHeads: 1, HeadDim: 2, VocabSize: 10}
	// per layer: q 16 + k,v 2·8 + o 16 + mlp 96 = 144; linear = 288 + 40 = 328.
	fwd := 2*328.0 + 4*2*4*float64(3+1)/2
	if got := flopsPerToken(c, 3, "full"); got != 3*fwd {
		t.Errorf("full: %v, want %v", got, 3*fwd)
	}
	if got, want := flopsPerToken(c, 3, "lora"), fwd+2*328+2*(4*2*4*2.0); got != want {
		t.Errorf("lora: %v, want %v", got, want)
	}
}

func TestPeakBF16(t *testing.T) {
	for _, tc := range []struct {
		name              string
		major, minor, sms int
		clock             int
		want              float64
	}{
		{"NVIDIA H200", 9, 0, 132, 1980000, 989e12},
		{"NVIDIA A100-SXM4-80GB", 8, 0, 108, 1410000, 312e12},
		{"NVIDIA Mystery", 8, 0, 108, 1410000, 2048 * 108 * 1410e6},
		{"NVIDIA Hypothetical", 7, 5, 40, 1500000, 0},
	} {
		got, _ := peakBF16(tc.name, tc.major, tc.minor, tc.sms, tc.clock)
		if math.Abs(got-tc.want) > 1e-6*tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestBenchMethodCPU runs the benchmark's step loop on the CPU with a
// tiny model: both methods train (the loss is finite) and report
// throughput.
func TestBenchMethodCPU(t *testing.T) {
	c, err := llama.ParseConfig([]byte(stepConfig))
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{"lora", "full"} {
		r, err := benchMethod(cpu.New(), c, method, 1, 32, 1, 1)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if !(r.TokensPerSec > 0) || math.IsNaN(float64(r.Loss)) || r.Trainable == 0 {
			t.Errorf("%s: %+v", method, r)
		}
	}
	if _, err := benchMethod(cpu.New(), c, "qlora", 1, 32, 0, 1); err == nil {
		t.Error("unknown method accepted")
	}
}
