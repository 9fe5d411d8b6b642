package main

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/tensor"
)

// TestSelftestCPUAgainstCPU runs the whole self-test with the CPU backend
// on both sides: every output must match (the CPU backend is
// deterministic), which also checks that every case runs.
func TestSelftestCPUAgainstCPU(t *testing.T) {
	var picked []testCase
	for _, c := range cases() {
		// The CPU backend multiplies F32 and BF16 inputs into F32 (no F16,
		// no 16-bit output); beside a BF16 weight it keeps F32 activations
		// exact where the CUDA backend, as the mixed cases expect, rounds
		// them.
		if !c.half || strings.Contains(c.shape, "bf16→f32") && !strings.Contains(c.shape, "f32×bf16") {
			picked = append(picked, c)
		}
	}
	var out bytes.Buffer
	if !selftest(&out, cpu.New(), cpu.New(), picked, 1) {
		t.Fatalf("self-test of the CPU against itself failed:\n%s", out.String())
	}
	if !strings.Contains(out.String(), " 0 failed") {
		t.Errorf("no summary line:\n%s", out.String())
	}
	for _, k := range []string{"Gemm", "Attention", "AttentionDecode", "CrossEntropy", "QuantizeNF4+Dequant", "TrainStep LoRA r8", "TrainStep full bf16", "TrainStep LoRA r8 bf16", "GeGLUBackward"} {
		if !strings.Contains(out.String(), k+" ") {
			t.Errorf("table lacks %s", k)
		}
	}
}

// skewed is a CPU backend with one kernel made wrong, as a GPU kernel with
// a bug would be.
type skewed struct {
	*cpu.Backend
	kernel string
}

func (s skewed) SwiGLUForward(out, gate, up tensor.Buffer, n int) {
	s.Backend.SwiGLUForward(out, gate, up, n)
	if s.kernel == "swiglu" {
		s.Backend.Scale(out.View(n/2, 1), 1.001, 1) // one element 0.1% off
	}
}

func (s skewed) AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse, segIDs tensor.Buffer, a tensor.Attn) {
	s.Backend.AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse, segIDs, a)
	if s.kernel == "attn" {
		s.Backend.Fill(dk.View(0, 1), 0) // a lost tile corner
	}
}

func (s skewed) Convert(dst, src tensor.Buffer, n int) {
	s.Backend.Convert(dst, src, n)
	if s.kernel == "convert" && dst.DType() == tensor.F16 {
		s.Backend.Zero(dst.View(4, 1)) // NaN's bits lost
	}
}

func (s skewed) EmbeddingForward(out, table, ids tensor.Buffer, n, dim int) {
	if s.kernel == "panic" {
		panic("kernel exploded")
	}
	s.Backend.EmbeddingForward(out, table, ids, n, dim)
}

// TestSelftestCatchesBrokenKernels checks that the comparison fails for
// small wrong results, lost bits and panics, and names the kernel.
func TestSelftestCatchesBrokenKernels(t *testing.T) {
	for _, tc := range []struct{ kernel, only, want string }{
		{"swiglu", "SwiGLUForward", "SwiGLUForward"},
		{"attn", "Attention", "dk"},
		{"convert", "Convert", "f16"},
		{"panic", "EmbeddingForward", "kernel exploded"},
	} {
		var picked []testCase
		for _, c := range cases() {
			if c.name == tc.only {
				picked = append(picked, c)
			}
		}
		if len(picked) == 0 {
			t.Fatalf("no case %s", tc.only)
		}
		var out bytes.Buffer
		if selftest(&out, cpu.New(), skewed{cpu.New(), tc.kernel}, picked, 1) {
			t.Errorf("%s: broken kernel passed:\n%s", tc.kernel, out.String())
			continue
		}
		var failLine string
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.Contains(l, "FAIL") {
				failLine = l
				break
			}
		}
		if !strings.Contains(failLine, tc.want) {
			t.Errorf("%s: first FAIL line %q does not mention %q", tc.kernel, failLine, tc.want)
		}
	}
}

// TestCompare checks the tolerance arithmetic on small vectors.
func TestCompare(t *testing.T) {
	nan := float32(math.NaN())
	for _, tc := range []struct {
		name      string
		want, got []float32
		tol       tol
		ok        bool
	}{
		{"equal", []float32{1, -2, 3}, []float32{1, -2, 3}, tolElem, true},
		{"within rel", []float32{1000, 1}, []float32{1000.005, 1}, tol{Rel: 1e-5}, true},
		{"outside rel", []float32{1000, 1}, []float32{1000.02, 1}, tol{Rel: 1e-5}, false},
		{"abs by scale", []float32{1000, 0}, []float32{1000, 0.009}, tol{Abs: 1e-5}, true},
		{"abs by scale exceeded", []float32{1000, 0}, []float32{1000, 0.011}, tol{Abs: 1e-5}, false},
		{"nan both", []float32{nan}, []float32{nan}, tolElem, true},
		{"nan one side", []float32{1}, []float32{nan}, tolElem, false},
		{"inf mismatch", []float32{float32(math.Inf(1))}, []float32{1e38}, tolElem, false},
		{"exact differs by ulp", []float32{1}, []float32{math.Nextafter32(1, 2)}, tolExact, false},
		{"length", []float32{1, 2}, []float32{1}, tolElem, false},
	} {
		r := compare("k", "s", output{name: "o", f: tc.want, tol: tc.tol}, output{f: tc.got})
		if r.ok() != tc.ok {
			t.Errorf("%s: ok=%v (worst %v, err %q), want %v", tc.name, r.ok(), r.worst, r.err, tc.ok)
		}
	}
	r := compare("k", "s", output{name: "b", bits: []byte{1, 2}, tol: tolExact}, output{bits: []byte{1, 3}})
	if r.ok() || !strings.Contains(r.err, "byte 1") {
		t.Errorf("bits: %+v", r)
	}
}
