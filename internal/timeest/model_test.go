package timeest

import (
	"math"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/memest"
)

// tinyStage is a step of the tiny shape (vocab 512, hidden 64, 4 layers of
// 4 heads of 16, intermediate 192, tied embeddings): batch 2 of 8 tokens.
func tinyStage(t *testing.T, method memest.Method) Stage {
	in := benchInput(t, "tiny", method)
	in.BatchSize, in.SeqLen = 2, 8
	return Stage{Input: in, Objective: LM}
}

// The tiny shape's per-layer sums and a step's sizes, for the expected
// counts below.
const (
	tB, tT, tN       = 2, 8, 16 // rows, tokens, rows·tokens
	tH, tI, tV, tL   = 64, 192, 512, 4
	tHeads, tD, tR   = 4, 16, 8
	attnSq           = 64       // q, k, v, o: 64×64
	mlp              = 192 * 64 // gate, up, down
	layerWeights     = 4*attnSq*64 + 3*mlp
	pairsPerLayer    = tB * tHeads * tT * (tT + 1) / 2
	attnFwdPerLayer  = 2 * 2 * tD * pairsPerLayer
	attnBwdPerLayer  = 5 * 2 * tD * pairsPerLayer
	headLogitsFlops  = 2 * tN * tH * tV
	loraModuleFwd    = 2 * tN * tR * (64 + 64) // x·Aᵀ and u·Bᵀ of a 64×64 module
	loraModuleBwd    = 2 * tN * tR * (64 + 64 + 64)
	loraModuleBwdDx  = 2 * tN * tR * 64
	lowestLayerNoQKV = 2 * tN * (attnSq*64 + 3*mlp) // o, gate, up, down
)

// TestStepFlops checks the step model's flops on the tiny shape against
// counts worked out by hand for each method and objective.
func TestStepFlops(t *testing.T) {
	attn := float64(tL * (attnFwdPerLayer + attnBwdPerLayer))
	fullGemm := float64(3 * 2 * tN * layerWeights * tL) // forward, dx, dW
	cases := []struct {
		name  string
		edit  func(*Stage)
		flops float64
	}{
		{"full", nil, fullGemm + attn + 3*headLogitsFlops},
		{"full, 3 micro-batches", func(s *Stage) { s.GradAccum = 3 }, 3 * (fullGemm + attn + 3*headLogitsFlops)},
		{"full, recomputation", func(s *Stage) { s.Recompute = true },
			fullGemm + attn + 3*headLogitsFlops + float64((tL-1)*(2*tN*layerWeights+attnFwdPerLayer))},
		{"lora q,v", func(s *Stage) { *s = tinyStage(t, memest.LoRA) },
			// Forward: base and adapters. Backward: dx of every module but
			// q, k, v in layer 0 (nothing below needs it), the adapters'
			// dB, du, dA (and dx above layer 0). The head's dx only.
			float64(tL*(2*tN*layerWeights+2*loraModuleFwd)) +
				float64(lowestLayerNoQKV+2*loraModuleBwd) +
				float64((tL-1)*(2*tN*layerWeights+2*(loraModuleBwd+loraModuleBwdDx))) +
				attn + 2*headLogitsFlops},
		{"freeze the last layer", func(s *Stage) {
			s.Method = memest.Freeze
			s.Trainable = func(name string) bool { return strings.HasPrefix(name, "model.layers.3.") }
		},
			// Forward of every layer; backward of layer 3 only, dx (its
			// input norm trains) and dW; the head's dx.
			float64(tL*(2*tN*layerWeights+attnFwdPerLayer)) + float64(2*2*tN*layerWeights+attnBwdPerLayer) + 2*headLogitsFlops},
		{"preference", func(s *Stage) { s.Objective = Preference },
			// Pairs: twice the rows; the head's logits twice.
			2 * (fullGemm + attn + 4*headLogitsFlops)},
		{"reward", func(s *Stage) { s.Objective = Reward },
			2 * (fullGemm + attn + 3*2*tN*tH)},
	}
	for _, c := range cases {
		st := tinyStage(t, memest.Full)
		if c.edit != nil {
			c.edit(&st)
		}
		w, err := Step(st, tT)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := Flops(w); got != c.flops {
			t.Errorf("%s: %.0f flops, want %.0f (off by %.0f)", c.name, got, c.flops, got-c.flops)
		}
	}
}

// TestStepCalls checks what the flops do not show: QLoRA's dequantised
// tiles, the optimizer's calls, the kernels of frozen layers.
func TestStepCalls(t *testing.T) {
	count := func(w []Work, kind string) (calls float64) {
		for _, x := range w {
			if x.Op.Kind == kind {
				calls += x.Calls
			}
		}
		return calls
	}
	st := tinyStage(t, memest.QLoRA)
	w, err := Step(st, tT)
	if err != nil {
		t.Fatal(err)
	}
	// Every linear holds one 64-row tile: dequantised for the forward
	// pass and for its dx (all but q, k, v of layer 0).
	if got, want := count(w, KindNF4), float64(tL*7+(tL-1)*7+4); got != want {
		t.Errorf("qlora: %v nf4 dequantisations, want %v", got, want)
	}
	// AdamW on each adapter matrix (A and B of q and v in 4 layers).
	if got := count(w, KindAdamW); got != 16 {
		t.Errorf("qlora: %v adamw calls, want 16", got)
	}
	st = tinyStage(t, memest.Freeze)
	st.Trainable = func(name string) bool { return strings.HasPrefix(name, "model.layers.3.") }
	if w, err = Step(st, tT); err != nil {
		t.Fatal(err)
	}
	if got := count(w, KindAttnBwd); got != 1 {
		t.Errorf("freeze: %v attention backward passes, want 1", got)
	}
	if got := count(w, KindElemBwd); got != 1 {
		t.Errorf("freeze: %v elementwise backward passes, want 1", got)
	}
	if got := count(w, KindAdamW); got != 9 { // 7 weights, 2 norms
		t.Errorf("freeze: %v adamw calls, want 9", got)
	}
	st.Trainable = func(string) bool { return false }
	if _, err := Step(st, tT); err == nil || !strings.Contains(err.Error(), "nothing trains") {
		t.Errorf("freeze with nothing trainable: %v", err)
	}
}

// fakeTimings times an op by its flops at 1 GFLOP/s plus a microsecond.
func fakeTimings(ops []Op) Timings {
	t := Timings{}
	for _, o := range ops {
		t[o.Key()] = 1e-6 + o.Flops()/1e9
	}
	return t
}

// TestEstimateRun checks the run's arithmetic: steps from epochs or
// max_steps, the expected padded length, tokens per step, the extra
// passes, and the per-step form when the data is unknown.
func TestEstimateRun(t *testing.T) {
	st := tinyStage(t, memest.Full)
	st.BatchSize, st.GradAccum, st.Epochs = 4, 2, 3
	st.Train = &Data{Lengths: []int{8, 8, 8, 8, 8, 8, 8, 8, 8, 8}, Trained: 0.875}
	ops, err := Ops(st)
	if err != nil {
		t.Fatal(err)
	}
	tm := fakeTimings(ops)
	r, err := Estimate(st, tm)
	if err != nil {
		t.Fatal(err)
	}
	// 10 rows in batches of 4: 3 micro-batches an epoch (of 3.3 rows on
	// average: 3), 9 in 3 epochs, 5 steps of 2.
	if r.Steps != 5 || math.Abs(r.T-8) > 1e-9 || r.Tokens != 3*2*7 {
		t.Errorf("steps %d, T %v, tokens %v; want 5, 8, 42", r.Steps, r.T, r.Tokens)
	}
	three := st
	three.BatchSize = 3
	w, _ := Step(three, 8)
	_, step, _ := seconds(w, tm)
	if math.Abs(r.StepSeconds-step) > 1e-12 || r.ExtraSeconds != 0 || math.Abs(r.TotalSeconds-5*step) > 1e-12 {
		t.Errorf("step %v (want %v), extra %v, total %v", r.StepSeconds, step, r.ExtraSeconds, r.TotalSeconds)
	}
	if !strings.Contains(r.String(), "(5 steps, ") {
		t.Errorf("String %q", r.String())
	}
	// max_steps wins; a validation set adds its forward passes: every 2
	// steps and at the end of 7 (4 evaluations), 2 batches of 2.5 rows
	// (3) each.
	st.MaxSteps, st.EvalSteps = 7, 2
	st.Validation = &Data{Lengths: []int{8, 8, 8, 8, 8}, Trained: 0.875}
	ops, _ = Ops(st)
	tm = fakeTimings(ops)
	if r, err = Estimate(st, tm); err != nil {
		t.Fatal(err)
	}
	m, _ := newModel(st)
	_, eval, _ := seconds(m.microBatch(3, 8, evalPass), tm)
	if r.Steps != 7 || math.Abs(r.ExtraSeconds-4*2*eval) > 1e-12 {
		t.Errorf("steps %d, extra %v; want 7, %v", r.Steps, r.ExtraSeconds, 8*eval)
	}
	// Unknown data: rows of SeqLen, per step.
	st.Train, st.Validation, st.MaxSteps = nil, nil, 0
	ops, _ = Ops(st)
	if r, err = Estimate(st, fakeTimings(ops)); err != nil {
		t.Fatal(err)
	}
	if r.Steps != 0 || r.TotalSeconds != 0 || r.Tokens != 4*2*7 || !strings.Contains(r.String(), "per step") {
		t.Errorf("unknown data: %+v %q", r, r.String())
	}
	// A timing missing: an error, not a guess.
	delete(tm, ops[0].Key())
	if _, err := Estimate(st, tm); err == nil {
		t.Error("missing timing accepted")
	}
}

// TestEstimateReference checks DPO's reference pass: one forward pass over
// the pairs, with the head's losses only.
func TestEstimateReference(t *testing.T) {
	st := tinyStage(t, memest.Full)
	st.Objective, st.MaxSteps = Preference, 1
	st.Train = &Data{Lengths: []int{8, 8, 8, 8, 8, 8}, Pairs: true, Trained: 1}
	ops, _ := Ops(st)
	tm := fakeTimings(ops)
	without, err := Estimate(st, tm)
	if err != nil {
		t.Fatal(err)
	}
	st.Reference = true
	ops, _ = Ops(st)
	tm = fakeTimings(ops)
	with, err := Estimate(st, tm)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := newModel(st)
	_, batch, _ := seconds(m.microBatch(4, 8, evalPass), tm)
	// 3 pairs in batches of 2: 2 batches of 4 rows.
	if without.ExtraSeconds != 0 || math.Abs(with.ExtraSeconds-2*batch) > 1e-12 {
		t.Errorf("reference pass %v, want %v (without: %v)", with.ExtraSeconds, 2*batch, without.ExtraSeconds)
	}
}

// TestBatchShape checks the expected longest row of a batch against every
// batch enumerated.
func TestBatchShape(t *testing.T) {
	lengths := []int{3, 9, 4, 12, 7, 7, 1, 15}
	for _, cap := range []int{0, 10} {
		for b := 1; b <= len(lengths); b++ {
			d := &Data{Lengths: lengths, Trained: 1}
			s := d.shape(b, cap)
			var sum, sum2 float64
			var n int
			var walk func(start int, picked []int)
			walk = func(start int, picked []int) {
				if len(picked) == b {
					m := 0
					for _, i := range picked {
						l := lengths[i]
						if cap > 0 {
							l = min(l, cap)
						}
						m = max(m, l)
					}
					sum += float64(m)
					sum2 += float64(m * m)
					n++
					return
				}
				for i := start; i < len(lengths); i++ {
					walk(i+1, append(picked, i))
				}
			}
			walk(0, nil)
			if math.Abs(s.T-sum/float64(n)) > 1e-9 || math.Abs(s.T2-sum2/float64(n)) > 1e-9 {
				t.Errorf("cap %d, batch %d: E[T] %v, E[T²] %v; enumerated %v, %v", cap, b, s.T, s.T2, sum/float64(n), sum2/float64(n))
			}
		}
	}
	// Pairs: a unit is as long as its longer side and holds both.
	d := &Data{Lengths: []int{3, 5, 8, 2}, Pairs: true, Trained: 0.5}
	s := d.shape(1, 0)
	if d.Units() != 2 || s.T != 6.5 || s.tokens != 9 || s.trainedTokens != 4.5 {
		t.Errorf("pairs: %d units, %+v", d.Units(), s)
	}
}

// TestMeasuredShape checks the reduced shapes large ops are timed at.
func TestMeasuredShape(t *testing.T) {
	cases := []struct {
		op, want Op
	}{
		// Small: as is.
		{Gemm(false, true, 1024, 288, 288), Gemm(false, true, 1024, 288, 288)},
		// Large: the largest dimension halved until within 10⁹ flops.
		{Gemm(false, true, 4096, 11008, 4096), Gemm(false, true, 512, 688, 1024)},
		// The cross-entropy: fewer rows (whole 64-row chunks), then a
		// smaller vocabulary, not below 8192.
		{Op{Kind: KindXent, Rows: 2048, Hidden: 288, Vocab: 32000, Variant: XentDxDw}, Op{Kind: KindXent, Rows: 64, Hidden: 288, Vocab: 16000, Variant: XentDxDw}},
		{Op{Kind: KindXent, Rows: 4096, Hidden: 4096, Vocab: 128256, Variant: XentDx}, Op{Kind: KindXent, Rows: 64, Hidden: 4096, Vocab: 16032, Variant: XentDx}},
		{Op{Kind: KindXent, Rows: 100, Hidden: 64, Vocab: 512, Variant: XentLoss}, Op{Kind: KindXent, Rows: 100, Hidden: 64, Vocab: 512, Variant: XentLoss}},
		// Attention: fewer rows, then shorter ones, not below 256.
		{Op{Kind: KindAttnBwd, B: 8, T: 4096, Hq: 32, Hkv: 8, D: 128}, Op{Kind: KindAttnBwd, B: 1, T: 256, Hq: 32, Hkv: 8, D: 128}},
		{Op{Kind: KindElemFwd, Rows: 4096, Hidden: 64, Inter: 192, Hq: 4, Hkv: 4, D: 16}, Op{Kind: KindElemFwd, Rows: 512, Hidden: 64, Inter: 192, Hq: 4, Hkv: 4, D: 16}},
		{Op{Kind: KindNF4, Values: 3 << 20}, Op{Kind: KindNF4, Values: 786432}},
		{Op{Kind: KindAdamW, Values: 1000}, Op{Kind: KindAdamW, Values: 1000}},
	}
	for _, c := range cases {
		if got := c.op.Measured(); got != c.want {
			t.Errorf("%s measured at %s, want %s", c.op, got, c.want)
		}
	}
}

// TestOpCheck rejects shapes no kernel runs.
func TestOpCheck(t *testing.T) {
	for _, o := range []Op{
		Gemm(false, false, 0, 2, 2),
		{Kind: KindAttnFwd, B: 1, T: 8, Hq: 6, Hkv: 4, D: 16},
		{Kind: KindXent, Rows: 4, Hidden: 8, Vocab: 16, Variant: "both"},
		{Kind: KindNF4, Values: 100},
		{Kind: "fft", Values: 8},
	} {
		if err := o.check(); err == nil {
			t.Errorf("%s accepted", o.Key())
		}
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		s    float64
		want string
	}{{0.01, "< 0.1 s"}, {0.42, "0.4 s"}, {12, "12 s"}, {200, "3 min"}, {5400, "1.5 h"}, {3 * 86400, "3.0 days"}} {
		if got := FormatSeconds(c.s); got != c.want {
			t.Errorf("FormatSeconds(%v) = %q, want %q", c.s, got, c.want)
		}
	}
	for _, c := range []struct {
		x    float64
		want string
	}{{1.234, "1.2"}, {12.4, "12"}, {1900, "1,900"}, {1234567, "1,234,567"}} {
		if got := FormatCount(c.x); got != c.want {
			t.Errorf("FormatCount(%v) = %q, want %q", c.x, got, c.want)
		}
	}
}
