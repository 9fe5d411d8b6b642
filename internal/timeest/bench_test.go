package timeest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/memest"
	"github.com/lathe-ml/lathe/internal/train"
)

// BenchmarkEstimateVsMeasured is `make bench-estimate`: it estimates the
// training throughput of the tiny and stories15M shapes (full training,
// LoRA r8 on q_proj and v_proj, QLoRA likewise; batch 8 of 128 or 256
// tokens, as internal/train's benchmarks) with a fresh calibration, then
// trains each for a few steps and prints estimated and measured tokens/s
// side by side with their ratio. It checks nothing: it is the honest
// comparison the estimate's claims rest on.
func BenchmarkEstimateVsMeasured(b *testing.B) {
	type run struct {
		shape  string
		method memest.Method
	}
	var runs []run
	for _, s := range []string{"tiny", "stories15M"} {
		for _, m := range []memest.Method{memest.Full, memest.LoRA, memest.QLoRA} {
			runs = append(runs, run{s, m})
		}
	}
	machine := ThisMachine("cpu", cpu.SgemmKernel(), "bench")
	var table strings.Builder
	fmt.Fprintf(&table, "%-18s %10s %10s %6s %10s %6s   %s\n", "shape/method", "estimated", "best step", "ratio", "mean", "ratio", "estimated step breakdown")
	for _, r := range runs {
		in := benchInput(b, r.shape, r.method)
		st := Stage{Input: in, Objective: LM, MaxSteps: 6, Train: fixedData(8, in.SeqLen)}
		ops, err := Ops(st)
		if err != nil {
			b.Fatal(err)
		}
		// A fresh calibration right before each training run: on a shared
		// machine, the two see the same conditions.
		cal := &Calibrator{Backend: cpu.New(), Machine: machine, Log: func(f string, a ...any) { fmt.Printf(f+"\n", a...) }}
		t, err := cal.Timings(ops, true)
		if err != nil {
			b.Fatal(err)
		}
		est, err := Estimate(st, t)
		if err != nil {
			b.Fatal(err)
		}
		best, mean := measureTraining(b, in, 6)
		e := est.TokensPerSecond()
		fmt.Fprintf(&table, "%-18s %10s %10s %6.2f %10s %6.2f   %s\n", r.shape+"/"+string(r.method), FormatCount(e),
			FormatCount(best), e/best, FormatCount(mean), e/mean, est.Breakdown())
	}
	fmt.Printf("training throughput, estimate vs measured in tokens/s (GOMAXPROCS=%d, %s kernels):\n%s", machine.Threads, machine.Kernels, table.String())
	for range b.N { // the work above is the benchmark's whole output
	}
}

// benchInput is a shape's training stage: batch 8 of 128 tokens (tiny) or
// 256 (stories15M), LoRA rank 8 on q_proj and v_proj.
func benchInput(t testing.TB, shape string, method memest.Method) memest.Input {
	c, err := llama.LoadConfig("testdata/" + shape + ".json")
	if err != nil {
		t.Fatal(err)
	}
	in := memest.Input{Config: c, Method: method, BatchSize: 8, SeqLen: 128, GradAccum: 1}
	if shape == "stories15M" {
		in.SeqLen = 256
	}
	if method == memest.LoRA || method == memest.QLoRA {
		in.LoRARank, in.LoRAModules = 8, []string{"q_proj", "v_proj"}
	}
	return in
}

// fixedData is n rows of T tokens, every target trained.
func fixedData(n, T int) *Data {
	d := &Data{Lengths: make([]int, n), Trained: float64(T-1) / float64(T)}
	for i := range d.Lengths {
		d.Lengths[i] = T
	}
	return d
}

// measureTraining trains in's model for steps optimizer steps on random
// rows and returns the trained tokens per second of the fastest step and
// over all steps but the first (which grows the kernels' scratch).
func measureTraining(t testing.TB, in memest.Input, steps int) (best, mean float64) {
	var o llama.Options
	switch in.Method {
	case memest.LoRA, memest.QLoRA:
		o.Trainable = func(string) bool { return false }
		o.LoRA = &llama.LoRAOptions{Modules: llama.LinearModules(in.LoRAModules, in.Config.Layers), Rank: in.LoRARank, Scale: 2, Seed: 1}
		if in.Method == memest.QLoRA {
			o.NF4 = func(name string) bool {
				return strings.HasPrefix(name, "model.layers.") && strings.HasSuffix(name, "_proj.weight")
			}
		}
	}
	m, err := llama.NewWith(in.Config, cpu.New(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if err := m.InitRandom(1, 0.02); err != nil {
		t.Fatal(err)
	}
	rows := make(train.SliceSamples, in.BatchSize*steps)
	x := uint32(7)
	for i := range rows {
		s := data.Sample{Tokens: make([]uint32, in.SeqLen), Mask: make([]bool, in.SeqLen)}
		for j := range s.Tokens {
			x = x*1664525 + 1013904223
			s.Tokens[j] = (x >> 8) % uint32(in.Config.VocabSize)
			s.Mask[j] = true
		}
		rows[i] = s
	}
	var times []time.Time
	tr := &train.Trainer{Model: m, Train: rows, Cfg: train.Config{BatchSize: in.BatchSize, MaxSeqLen: in.SeqLen, MaxSteps: steps, LR: 1e-4, Scheduler: "constant"}}
	tr.OnStep = func(int, int) { times = append(times, time.Now()) }
	res, err := tr.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var tokens int64
	for i, p := range res.History.Train[1:] {
		tokens += p.Tokens
		best = max(best, float64(p.Tokens)/times[i+1].Sub(times[i]).Seconds())
	}
	return best, float64(tokens) / times[len(times)-1].Sub(times[0]).Seconds()
}
