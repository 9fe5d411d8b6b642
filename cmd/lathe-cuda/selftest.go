package main

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/tensor"
)

// This file is the self-test: every kernel of a backend under test (the
// CUDA backend in lathe-cuda) against the CPU backend on the same random
// inputs, each output compared element by element within a stated
// tolerance. It has no build tag, so it is unit-tested here with the CPU
// backend on both sides and with deliberately broken backends.

// tol is an output's tolerance: element i passes when
// |got−want| <= Rel·|want_i| + Abs·max_j |want_j|. Exact compares bits.
type tol struct {
	Rel, Abs float64
	Exact    bool
}

func (t tol) String() string {
	if t.Exact {
		return "exact"
	}
	return fmt.Sprintf("%.0e rel + %.0e·max", t.Rel, t.Abs)
}

// The tolerances, by kind of kernel. Float32 kernels differ from the CPU
// by FMA contraction, CUDA's exp/tanh/sin/cos (a few ulp) and another
// summation tree; bf16 GEMMs additionally by cuBLAS's blocking.
var (
	tolExact = tol{Exact: true}
	tolElem  = tol{Rel: 1e-6, Abs: 1e-7} // add, mul, axpy, bias, adamw: at most an FMA's rounding
	tolMath  = tol{Rel: 1e-5, Abs: 1e-6} // exp, tanh, sin, cos, sqrt and short sums
	tolSum   = tol{Rel: 1e-5, Abs: 1e-5} // long float32/float64 reductions
	tolGemm  = tol{Rel: 1e-5, Abs: 1e-5} // f32 GEMM, pedantic
	tolGemmH = tol{Rel: 1e-4, Abs: 1e-4} // bf16/f16 inputs, f32 accumulation and output
	tolGemmB = tol{Rel: 8e-3, Abs: 1e-3} // bf16 output: one bf16 ulp
	tolAttn  = tol{Rel: 1e-4, Abs: 1e-4} // attention forward and backward
	tolXent  = tol{Rel: 1e-4, Abs: 1e-5} // cross-entropy losses and gradients
	tolStepG = tol{Rel: 1e-3, Abs: 1e-3} // a whole model's loss and gradients
	// tolStepB is a whole bf16 step (compute_type = "bf16"): both sides
	// round the activations to bfloat16 (8 significant bits), where a
	// last-bit difference before the rounding can round a value the other
	// way, and the device also rounds the gradient operand of its mixed
	// products, which the CPU keeps exact.
	tolStepB = tol{Rel: 2e-2, Abs: 2e-2}
)

// output is one named result of a case on one backend: float values, or
// raw bits for exact comparisons of non-float outputs.
type output struct {
	name string
	f    []float32
	bits []byte
	tol  tol
}

// env allocates, uploads and downloads on one backend for a case and
// frees everything at the end. The first error sticks.
type env struct {
	be   tensor.Backend
	bufs []tensor.Buffer
	err  error
	outs []output
}

func (e *env) check(err error) {
	if err != nil && e.err == nil {
		e.err = err
	}
}

func (e *env) alloc(dt tensor.DType, n int) tensor.Buffer {
	b, err := e.be.Alloc(dt, n)
	if err != nil {
		e.check(err)
		panic(err)
	}
	e.bufs = append(e.bufs, b)
	return b
}

func (e *env) f32(x []float32) tensor.Buffer {
	b := e.alloc(tensor.F32, len(x))
	e.check(tensor.UploadF32(e.be, b, x))
	return b
}

func (e *env) i32(x []int32) tensor.Buffer {
	b := e.alloc(tensor.I32, len(x))
	e.check(tensor.UploadI32(e.be, b, x))
	return b
}

func (e *env) u16(dt tensor.DType, x []uint16) tensor.Buffer {
	b := e.alloc(dt, len(x))
	e.check(tensor.UploadU16(e.be, b, x))
	return b
}

func (e *env) zeros(n int) tensor.Buffer { return e.alloc(tensor.F32, n) }

// out records an F32 buffer as an output.
func (e *env) out(name string, b tensor.Buffer, t tol) {
	v := make([]float32, b.Len())
	e.check(tensor.DownloadF32(e.be, v, b))
	e.outs = append(e.outs, output{name: name, f: v, tol: t})
}

// bf16 uploads x rounded to bfloat16 (a bfloat16 activation; the rounding
// is the backend's Convert, bit for bit the same on every backend).
func (e *env) bf16(x []float32) tensor.Buffer {
	b := e.alloc(tensor.BF16, len(x))
	e.be.Convert(b, e.f32(x), len(x))
	return b
}

// outBF16 records a BF16 buffer (a bfloat16 activation) as an output,
// widened exactly on the backend.
func (e *env) outBF16(name string, b tensor.Buffer, t tol) {
	f := e.zeros(b.Len())
	e.be.Convert(f, b, b.Len())
	e.out(name, f, t)
}

// outBits records a buffer's raw bytes, compared exactly.
func (e *env) outBits(name string, b tensor.Buffer) {
	v := make([]byte, b.Bytes())
	e.check(tensor.DownloadBytes(e.be, v, b))
	e.outs = append(e.outs, output{name: name, bits: v, tol: tolExact})
}

func (e *env) free() {
	for _, b := range e.bufs {
		e.be.Free(b)
	}
	e.bufs = nil
}

// testCase is one kernel configuration. run executes it on e.be; ref is
// true on the reference (CPU) side, for the few cases whose reference
// needs another route (bf16 GEMM: the CPU multiplies the rounded values in
// float32).
type testCase struct {
	name, shape string
	run         func(e *env, r *rand.Rand, ref bool)
	// half marks a case that gives the backend under test BF16 or F16
	// GEMM inputs (the CPU backend takes F32 only).
	half bool
}

// result is one compared output.
type result struct {
	kernel, shape, output string
	maxAbs, worst         float64 // max |got−want|; max |got−want| / allowed
	tol                   tol
	err                   string
}

func (r result) ok() bool { return r.err == "" && r.worst <= 1 }

// runCase runs c on both backends with the same seed and compares.
func runCase(c testCase, ref, dut tensor.Backend, seed uint64) []result {
	side := func(be tensor.Backend, isRef bool) (outs []output, err error) {
		e := &env{be: be}
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v", p)
			}
			e.free()
		}()
		c.run(e, rand.New(rand.NewPCG(seed, 0x5e1f7e57)), isRef)
		e.check(be.Sync())
		return e.outs, e.err
	}
	want, err := side(ref, true)
	if err != nil {
		return []result{{kernel: c.name, shape: c.shape, err: "reference: " + err.Error()}}
	}
	got, err := side(dut, false)
	if err != nil {
		return []result{{kernel: c.name, shape: c.shape, err: err.Error()}}
	}
	if len(got) != len(want) {
		return []result{{kernel: c.name, shape: c.shape, err: fmt.Sprintf("%d outputs, reference has %d", len(got), len(want))}}
	}
	var rs []result
	for i, w := range want {
		rs = append(rs, compare(c.name, c.shape, w, got[i]))
	}
	return rs
}

// compare measures got against want under want's tolerance.
func compare(kernel, shape string, want, got output) result {
	r := result{kernel: kernel, shape: shape, output: want.name, tol: want.tol}
	if want.bits != nil {
		if len(got.bits) != len(want.bits) {
			r.err = fmt.Sprintf("%d bytes, want %d", len(got.bits), len(want.bits))
			return r
		}
		for i := range want.bits {
			if got.bits[i] != want.bits[i] {
				r.worst = math.Inf(1)
				r.err = fmt.Sprintf("byte %d is %#x, want %#x", i, got.bits[i], want.bits[i])
				return r
			}
		}
		return r
	}
	if len(got.f) != len(want.f) {
		r.err = fmt.Sprintf("%d values, want %d", len(got.f), len(want.f))
		return r
	}
	scale := 0.0
	for _, v := range want.f {
		if a := math.Abs(float64(v)); a > scale && !math.IsInf(a, 0) {
			scale = a
		}
	}
	for i, wv := range want.f {
		w, g := float64(wv), float64(got.f[i])
		if want.tol.Exact {
			if math.Float32bits(wv) != math.Float32bits(got.f[i]) && !(w != w && g != g) {
				r.worst = math.Inf(1)
				r.err = fmt.Sprintf("element %d is %v, want %v (exact)", i, g, w)
				return r
			}
			continue
		}
		if w != w || g != g || math.IsInf(w, 0) || math.IsInf(g, 0) {
			if !(w != w && g != g) && w != g {
				r.worst = math.Inf(1)
				r.err = fmt.Sprintf("element %d is %v, want %v", i, g, w)
				return r
			}
			continue
		}
		d := math.Abs(g - w)
		r.maxAbs = max(r.maxAbs, d)
		allowed := want.tol.Rel*math.Abs(w) + want.tol.Abs*scale
		switch {
		case d == 0:
		case allowed == 0:
			r.worst = math.Inf(1)
		default:
			r.worst = max(r.worst, d/allowed)
		}
	}
	return r
}

// selftest runs every case, prints the table to w and reports whether all
// passed.
func selftest(w io.Writer, ref, dut tensor.Backend, cases []testCase, seed uint64) bool {
	fmt.Fprintf(w, "%-22s %-34s %-8s %11s %9s %-16s %s\n", "kernel", "shape", "output", "max|Δ|", "Δ/allowed", "tolerance", "result")
	pass, fail := 0, 0
	for _, c := range cases {
		for _, r := range runCase(c, ref, dut, seed) {
			status := "PASS"
			if !r.ok() {
				status = "FAIL"
				fail++
			} else {
				pass++
			}
			if r.err != "" {
				status += " " + r.err
			}
			fmt.Fprintf(w, "%-22s %-34s %-8s %11.3g %9.3g %-16s %s\n", r.kernel, r.shape, r.output, r.maxAbs, r.worst, r.tol, status)
		}
	}
	fmt.Fprintf(w, "%d passed, %d failed\n", pass, fail)
	return fail == 0
}

// Random inputs.
func randn(r *rand.Rand, n int, std float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * std)
	}
	return v
}

func randIDs(r *rand.Rand, n, hi int) []int32 {
	v := make([]int32, n)
	for i := range v {
		v[i] = int32(r.IntN(hi))
	}
	return v
}

// cases returns the self-test's kernel configurations: odd sizes (tails
// of every tiling), aliasing where the contract allows it, and every
// option of attention and the cross-entropy.
func cases() []testCase {
	var cs []testCase
	const n = 100003
	elem := func(name string, f func(e *env, r *rand.Rand)) {
		cs = append(cs, testCase{name: name, shape: fmt.Sprintf("n=%d", n), run: func(e *env, r *rand.Rand, _ bool) { f(e, r) }})
	}
	elem("Fill", func(e *env, r *rand.Rand) {
		x := e.f32(randn(r, n, 1))
		e.be.Fill(x, -2.5)
		e.out("x", x, tolExact)
	})
	elem("Zero", func(e *env, r *rand.Rand) {
		x := e.f32(randn(r, n, 1))
		e.be.Zero(x.View(7, n-20))
		e.out("x", x, tolExact)
	})
	elem("Copy", func(e *env, r *rand.Rand) {
		x, y := e.f32(randn(r, n, 1)), e.zeros(n)
		e.be.Copy(y.View(3, n-3), x.View(0, n-3))
		e.out("y", y, tolExact)
	})
	elem("Add", func(e *env, r *rand.Rand) {
		a, b := e.f32(randn(r, n, 1)), e.f32(randn(r, n, 1))
		e.be.Add(a, a, b, n)
		e.out("a", a, tolElem)
	})
	elem("Mul", func(e *env, r *rand.Rand) {
		a, b := e.f32(randn(r, n, 1)), e.f32(randn(r, n, 1))
		e.be.Mul(b, a, b, n)
		e.out("b", b, tolElem)
	})
	elem("Axpy", func(e *env, r *rand.Rand) {
		y, x := e.f32(randn(r, n, 1)), e.f32(randn(r, n, 1))
		e.be.Axpy(y, x, 0.37, n)
		e.out("y", y, tolElem)
	})
	elem("Scale", func(e *env, r *rand.Rand) {
		x := e.f32(randn(r, n, 1))
		e.be.Scale(x, -1.7, n)
		e.out("x", x, tolElem)
	})
	elem("SwiGLUForward", func(e *env, r *rand.Rand) {
		g, u, o := e.f32(randn(r, n, 3)), e.f32(randn(r, n, 1)), e.zeros(n)
		e.be.SwiGLUForward(o, g, u, n)
		e.out("out", o, tolMath)
	})
	elem("SwiGLUBackward", func(e *env, r *rand.Rand) {
		g, u, d := e.f32(randn(r, n, 3)), e.f32(randn(r, n, 1)), e.f32(randn(r, n, 1))
		e.be.SwiGLUBackward(g, u, d, g, u, n) // in place, as the contract allows
		e.out("dgate", g, tolMath)
		e.out("dup", u, tolMath)
	})
	elem("GeGLUForward", func(e *env, r *rand.Rand) {
		g, u, o := e.f32(randn(r, n, 3)), e.f32(randn(r, n, 1)), e.zeros(n)
		e.be.GeGLUForward(o, g, u, n)
		e.out("out", o, tolMath)
	})
	elem("SwiGLU/GeGLU bf16", func(e *env, r *rand.Rand) {
		g, u, o := e.bf16(randn(r, n, 3)), e.bf16(randn(r, n, 1)), e.alloc(tensor.BF16, n)
		d, dg, du := e.f32(randn(r, n, 1)), e.zeros(n), e.zeros(n)
		e.be.SwiGLUForward(o, g, u, n)
		e.outBF16("swiglu out", o, tolGemmB)
		e.be.SwiGLUBackward(dg, du, d, g, u, n)
		e.out("swiglu dgate", dg, tolMath)
		e.out("swiglu dup", du, tolMath)
		e.be.GeGLUForward(o, g, u, n)
		e.outBF16("geglu out", o, tolGemmB)
		e.be.GeGLUBackward(dg, du, d, g, u, n)
		e.out("geglu dgate", dg, tolMath)
		e.out("geglu dup", du, tolMath)
	})
	elem("GeGLUBackward", func(e *env, r *rand.Rand) {
		g, u, d := e.f32(randn(r, n, 3)), e.f32(randn(r, n, 1)), e.f32(randn(r, n, 1))
		dg, du := e.zeros(n), e.zeros(n)
		e.be.GeGLUBackward(dg, du, d, g, u, n)
		e.out("dgate", dg, tolMath)
		e.out("dup", du, tolMath)
	})
	elem("AdamW", func(e *env, r *rand.Rand) {
		p, g := e.f32(randn(r, n, 1)), e.f32(randn(r, n, 1))
		m, v := e.f32(randn(r, n, 0.1)), e.f32(randn(r, n, 0.01))
		e.be.Mul(v, v, v, n) // v >= 0
		h := tensor.AdamW{LR: 1e-3, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, Step: 3}
		e.be.AdamW(p, g, m, v, n, h)
		e.out("param", p, tolElem)
		e.out("m", m, tolElem)
		e.out("v", v, tolElem)
	})

	cs = append(cs,
		testCase{name: "AddBias", shape: "rows=37 cols=129", run: func(e *env, r *rand.Rand, _ bool) {
			x, b := e.f32(randn(r, 37*129, 1)), e.f32(randn(r, 129, 1))
			e.be.AddBias(x, b, 37, 129)
			e.out("x", x, tolElem)
		}},
		testCase{name: "BiasGrad", shape: "rows=1000 cols=300 (+=)", run: func(e *env, r *rand.Rand, _ bool) {
			d, db := e.f32(randn(r, 1000*300, 1)), e.f32(randn(r, 300, 1))
			e.be.BiasGrad(db, d, 1000, 300)
			e.out("dbias", db, tolSum)
		}},
		testCase{name: "EmbeddingForward", shape: "vocab=1000 dim=96 n=517", run: func(e *env, r *rand.Rand, _ bool) {
			tab, ids, o := e.f32(randn(r, 1000*96, 1)), e.i32(randIDs(r, 517, 1000)), e.zeros(517*96)
			e.be.EmbeddingForward(o, tab, ids, 517, 96)
			e.out("out", o, tolExact)
		}},
		testCase{name: "EmbeddingBackward", shape: "vocab=50 dim=96 n=2000 (+=)", run: func(e *env, r *rand.Rand, _ bool) {
			dt, d, ids := e.f32(randn(r, 50*96, 1)), e.f32(randn(r, 2000*96, 1)), e.i32(randIDs(r, 2000, 50))
			e.be.EmbeddingBackward(dt, d, ids, 2000, 96)
			e.out("dtable", dt, tolElem)
		}},
	)
	for _, sh := range []struct{ n, dim int }{{300, 896}, {7, 4096}, {65, 48}} {
		shape := fmt.Sprintf("n=%d dim=%d", sh.n, sh.dim)
		cs = append(cs, testCase{name: "RMSNormForward", shape: shape, run: func(e *env, r *rand.Rand, _ bool) {
			x, w := e.f32(randn(r, sh.n*sh.dim, 2)), e.f32(randn(r, sh.dim, 1))
			o, rs := e.zeros(sh.n*sh.dim), e.zeros(sh.n)
			e.be.RMSNormForward(o, rs, x, w, sh.n, sh.dim, 1e-6)
			e.out("out", o, tolMath)
			e.out("rstd", rs, tolMath)
		}}, testCase{name: "RMSNormForward", shape: shape + " bf16 out", run: func(e *env, r *rand.Rand, _ bool) {
			x, w := e.f32(randn(r, sh.n*sh.dim, 2)), e.f32(randn(r, sh.dim, 1))
			o, rs := e.alloc(tensor.BF16, sh.n*sh.dim), e.zeros(sh.n)
			e.be.RMSNormForward(o, rs, x, w, sh.n, sh.dim, 1e-6)
			e.outBF16("out", o, tolGemmB)
			e.out("rstd", rs, tolMath)
		}}, testCase{name: "RMSNormBackward", shape: shape + " dx=dout", run: func(e *env, r *rand.Rand, _ bool) {
			x, w, d := e.f32(randn(r, sh.n*sh.dim, 2)), e.f32(randn(r, sh.dim, 1)), e.f32(randn(r, sh.n*sh.dim, 1))
			o, rs, dw := e.zeros(sh.n*sh.dim), e.zeros(sh.n), e.f32(randn(r, sh.dim, 1))
			e.be.RMSNormForward(o, rs, x, w, sh.n, sh.dim, 1e-6)
			e.be.RMSNormBackward(d, dw, d, x, w, rs, sh.n, sh.dim)
			e.out("dx", d, tolSum)
			e.out("dw", dw, tolSum)
		}})
	}
	for _, sh := range []struct{ n, heads, hd, rot int }{{200, 7, 64, 64}, {100, 3, 96, 32}} {
		shape := fmt.Sprintf("n=%d heads=%d hd=%d rot=%d", sh.n, sh.heads, sh.hd, sh.rot)
		ropeCase := func(fwd bool) func(e *env, r *rand.Rand, _ bool) {
			return func(e *env, r *rand.Rand, _ bool) {
				size := sh.n * sh.heads * sh.hd
				x, o := e.f32(randn(r, size, 1)), e.zeros(size)
				pos := randIDs(r, sh.n, 5000)
				inv, err := tensor.RoPE{HeadDim: sh.hd, RotaryDim: sh.rot, Theta: 1e6}.InvFreq()
				e.check(err)
				p, f := e.i32(pos), e.f32(inv)
				if fwd {
					e.be.RoPEForward(o, x, p, f, sh.n, sh.heads, sh.hd, sh.rot)
					e.out("out", o, tolMath)
					h := e.bf16(randn(r, size, 1)) // a bfloat16 activation, rotated in place
					e.be.RoPEForward(h, h, p, f, sh.n, sh.heads, sh.hd, sh.rot)
					e.outBF16("out bf16 in place", h, tolGemmB)
					return
				}
				e.be.RoPEBackward(x, x, p, f, sh.n, sh.heads, sh.hd, sh.rot) // in place
				e.out("dx", x, tolMath)
			}
		}
		cs = append(cs, testCase{name: "RoPEForward", shape: shape, run: ropeCase(true)}, testCase{name: "RoPEBackward", shape: shape + " in place", run: ropeCase(false)})
	}
	cs = append(cs, gemmCases()...)
	cs = append(cs, attentionCases()...)
	cs = append(cs, xentCases()...)
	cs = append(cs,
		testCase{name: "GlobalNorm+Clip", shape: "3 grads of 70001, 5, 20000", run: func(e *env, r *rand.Rand, _ bool) {
			gs := []tensor.Buffer{e.f32(randn(r, 70001, 1)), e.f32(randn(r, 5, 1)), e.f32(randn(r, 20000, 3))}
			norm := e.zeros(1)
			e.be.GlobalNorm(norm, gs)
			e.out("norm", norm, tolSum)
			e.be.ClipByNorm(gs, norm, 1)
			for i, g := range gs {
				e.out(fmt.Sprintf("grad%d", i), g, tolSum)
			}
		}},
		testCase{name: "Convert", shape: "f32<->bf16/f16, specials", run: func(e *env, r *rand.Rand, _ bool) {
			v := randn(r, 4099, 100)
			specials := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)),
				float32(math.NaN()), 65504, 65520, 1e-8, 6e-8, -3e-5, 3.4e38, 1.17e-38, 1.0000001}
			copy(v, specials)
			x := e.f32(v)
			bf, hf := e.alloc(tensor.BF16, len(v)), e.alloc(tensor.F16, len(v))
			e.be.Convert(bf, x, len(v))
			e.be.Convert(hf, x, len(v))
			e.outBits("bf16", bf)
			e.outBits("f16", hf)
			back := e.zeros(2 * len(v))
			e.be.Convert(back.View(0, len(v)), bf, len(v))
			e.be.Convert(back.View(len(v), len(v)), hf, len(v))
			e.outBits("f32", back)
		}},
		testCase{name: "QuantizeNF4+Dequant", shape: "N=64·600", run: func(e *env, r *rand.Rand, _ bool) {
			const N = 64 * 600
			x := e.f32(randn(r, N, 0.05))
			q, err := tensor.AllocNF4(e.be, N)
			e.check(err)
			e.bufs = append(e.bufs, q.Codes, q.Absmax, q.Scale2, q.Offset)
			e.be.QuantizeNF4(q, x)
			e.outBits("codes", q.Codes)
			e.outBits("absmax", q.Absmax)
			e.out("scale2", q.Scale2, tolExact)
			e.out("offset", q.Offset, tolExact)
			o := e.zeros(64 * 100)
			e.be.DequantNF4(o, q, 64*250, 64*100)
			e.out("dequant", o, tolExact)
		}},
	)
	cs = append(cs, stepCases()...)
	return cs
}

// gemmCases covers the four transpositions, leading dimensions wider than
// the rows, alpha/beta, strided batches, and bf16/f16 inputs.
func gemmCases() []testCase {
	var cs []testCase
	type gshape struct {
		ta, tb         bool
		m, n, k, batch int
		alpha, beta    float32
		pad            int
		in, out        tensor.DType
		name           string
		mixed          bool // A stays F32 (activations beside a bf16 weight B)
	}
	shapes := []gshape{
		{false, false, 67, 45, 129, 1, 1, 0, 0, tensor.F32, tensor.F32, "NN", false},
		{false, true, 67, 45, 129, 1, 0.7, 0.3, 3, tensor.F32, tensor.F32, "NT ld+3 beta", false},
		{true, false, 33, 70, 64, 1, 1, 1, 1, tensor.F32, tensor.F32, "TN beta=1", false},
		{true, true, 17, 19, 300, 1, -1, 0, 0, tensor.F32, tensor.F32, "TT", false},
		{false, true, 31, 40, 64, 3, 1, 0.5, 2, tensor.F32, tensor.F32, "NT batch=3", false},
		{false, true, 96, 80, 128, 1, 1, 0, 0, tensor.BF16, tensor.F32, "NT bf16→f32", false},
		{true, false, 64, 48, 96, 2, 1, 1, 0, tensor.BF16, tensor.F32, "TN bf16→f32 batch=2", false},
		{false, false, 40, 72, 64, 1, 1, 0, 0, tensor.BF16, tensor.BF16, "NN bf16→bf16", false},
		{false, true, 50, 30, 80, 1, 1, 0, 0, tensor.F16, tensor.F32, "NT f16→f32", false},
		{false, true, 96, 80, 128, 1, 1, 0, 0, tensor.BF16, tensor.F32, "NT f32×bf16→f32 (weight)", true},
		{false, false, 64, 72, 80, 1, 1, 1, 0, tensor.BF16, tensor.F32, "NN f32×bf16→f32 beta=1", true},
	}
	for _, s := range shapes {
		shape := fmt.Sprintf("%s M=%d N=%d K=%d", s.name, s.m, s.n, s.k)
		cs = append(cs, testCase{name: "Gemm", shape: shape, half: s.in != tensor.F32, run: func(e *env, r *rand.Rand, ref bool) {
			ar, ac := s.m, s.k
			if s.ta {
				ar, ac = s.k, s.m
			}
			br, bc := s.k, s.n
			if s.tb {
				br, bc = s.n, s.k
			}
			lda, ldb, ldc := ac+s.pad, bc+s.pad, s.n+s.pad
			sa, sb, sc := ar*lda+5, br*ldb+7, s.m*ldc+3
			batch := s.batch
			av, bv, cv := randn(r, batch*sa, 1), randn(r, batch*sb, 1), randn(r, batch*sc, 1)
			round := func(v []float32, dt tensor.DType) []uint16 {
				h := make([]uint16, len(v))
				for i, x := range v {
					if dt == tensor.BF16 {
						h[i] = tensor.BF16FromF32(x)
						v[i] = tensor.F32FromBF16(h[i])
					} else {
						h[i] = tensor.F16FromF32(x)
						v[i] = tensor.F32FromF16(h[i])
					}
				}
				return h
			}
			t := tolGemm
			var ah, bh, ch []uint16
			rawA := slices.Clone(av) // a mixed case hands A to the device unrounded
			if s.in != tensor.F32 {
				ah, bh = round(av, s.in), round(bv, s.in)
				t = tolGemmH
			}
			if s.out != tensor.F32 {
				ch = round(cv, s.out)
				t = tolGemmB
			}
			g := tensor.Gemm{TransA: s.ta, TransB: s.tb, M: s.m, N: s.n, K: s.k, Alpha: s.alpha, Beta: s.beta,
				LDA: lda, LDB: ldb, LDC: ldc, StrideA: sa, StrideB: sb, StrideC: sc, Batch: batch}
			if ref || s.in == tensor.F32 {
				// The CPU multiplies F32 (the rounded values for a bf16/f16
				// case), then rounds a 16-bit output.
				g.A, g.B, g.C = e.f32(av), e.f32(bv), e.f32(cv)
				e.be.Gemm(g)
				if s.out != tensor.F32 {
					c := make([]float32, len(cv))
					e.check(tensor.DownloadF32(e.be, c, g.C))
					round(c, s.out)
					e.check(tensor.UploadF32(e.be, g.C, c))
				}
				e.out("C", g.C, t)
				return
			}
			g.A, g.B = e.u16(s.in, ah), e.u16(s.in, bh)
			if s.mixed {
				g.A = e.f32(rawA) // the backend rounds it to bf16 itself
			}
			if s.out == tensor.F32 {
				g.C = e.f32(cv)
			} else {
				g.C = e.u16(s.out, ch)
			}
			e.be.Gemm(g)
			if s.out == tensor.F32 {
				e.out("C", g.C, t)
				return
			}
			c32 := e.zeros(len(cv))
			e.be.Convert(c32, g.C, len(cv))
			e.out("C", c32, t)
		}})
	}
	return cs
}

// attentionCases covers head dims of each kernel instantiation (48, 64,
// 128, 256), GQA and MQA, segment ids, and the score options, forward,
// backward and decode.
func attentionCases() []testCase {
	var cs []testCase
	type ashape struct {
		B, T, Hq, Hkv, D int
		seg              bool
		softCap          float32
		window           int
		alibi            bool
	}
	shapes := []ashape{
		{2, 100, 4, 2, 64, false, 0, 0, false},
		{2, 77, 4, 4, 48, true, 0, 0, false},
		{1, 70, 8, 1, 128, true, 0, 0, false},
		{1, 40, 2, 1, 256, false, 0, 0, false},
		{2, 90, 4, 2, 64, true, 30, 17, true},
	}
	for _, s := range shapes {
		shape := fmt.Sprintf("B%d T%d Hq%d Hkv%d D%d", s.B, s.T, s.Hq, s.Hkv, s.D)
		if s.seg {
			shape += " seg"
		}
		if s.softCap > 0 || s.window > 0 || s.alibi {
			shape += " cap/win/alibi"
		}
		cs = append(cs, testCase{name: "Attention", shape: shape, run: func(e *env, r *rand.Rand, _ bool) {
			nq, nk := s.B*s.T*s.Hq*s.D, s.B*s.T*s.Hkv*s.D
			q, k, v := e.f32(randn(r, nq, 1)), e.f32(randn(r, nk, 1)), e.f32(randn(r, nk, 1))
			dout := e.f32(randn(r, nq, 1))
			var seg tensor.Buffer
			if s.seg {
				ids := make([]int32, s.B*s.T)
				for b := 0; b < s.B; b++ {
					id := int32(0)
					for t := 0; t < s.T; t++ {
						if t > 0 && r.IntN(25) == 0 {
							id++
						}
						ids[b*s.T+t] = id
					}
				}
				seg = e.i32(ids)
			}
			a := tensor.Attn{B: s.B, T: s.T, Hq: s.Hq, Hkv: s.Hkv, D: s.D, Scale: float32(1 / math.Sqrt(float64(s.D))),
				SoftCap: s.softCap, Window: s.window}
			if s.alibi {
				a.ALiBi = e.f32(tensor.ALiBiSlopes(s.Hq))
			}
			out, lse := e.zeros(nq), e.zeros(s.B*s.Hq*s.T)
			e.be.AttentionForward(out, lse, q, k, v, seg, a)
			e.out("out", out, tolAttn)
			e.out("lse", lse, tolAttn)
			dq, dk, dv := e.zeros(nq), e.zeros(nk), e.zeros(nk)
			e.be.AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse, seg, a)
			e.out("dq", dq, tolAttn)
			e.out("dk", dk, tolAttn)
			e.out("dv", dv, tolAttn)
			// Bfloat16 activations (mixed precision): q, k, v rounded, the
			// forward rounds out, the backward reads them all; a value of
			// out rounding the other way on one side moves its row's drow
			// by a bfloat16 ulp.
			qh, kh, vh, outH := e.bf16(randn(r, nq, 1)), e.bf16(randn(r, nk, 1)), e.bf16(randn(r, nk, 1)), e.alloc(tensor.BF16, nq)
			e.be.AttentionForward(outH, lse, qh, kh, vh, seg, a)
			e.outBF16("out bf16", outH, tolGemmB)
			e.out("lse bf16", lse, tolAttn)
			e.be.AttentionBackward(dq, dk, dv, dout, qh, kh, vh, outH, lse, seg, a)
			e.out("dq (bf16 out)", dq, tolGemmB)
			e.out("dk (bf16 out)", dk, tolGemmB)
			e.out("dv (bf16 out)", dv, tolGemmB)
		}})
	}
	for _, opts := range []bool{false, true} {
		shape := "B3 MaxT50 Hq4 Hkv2 D64 lens 1,37,50"
		if opts {
			shape += " cap/win/alibi"
		}
		cs = append(cs, testCase{name: "AttentionDecode", shape: shape, run: func(e *env, r *rand.Rand, _ bool) {
			const B, MaxT, Hq, Hkv, D = 3, 50, 4, 2, 64
			q := e.f32(randn(r, B*Hq*D, 1))
			kc, vc := e.f32(randn(r, B*MaxT*Hkv*D, 1)), e.f32(randn(r, B*MaxT*Hkv*D, 1))
			lens := e.i32([]int32{1, 37, 50})
			a := tensor.AttnDecode{B: B, MaxT: MaxT, Hq: Hq, Hkv: Hkv, D: D, Scale: 0.125}
			if opts {
				a.SoftCap, a.Window, a.ALiBi = 20, 9, e.f32(tensor.ALiBiSlopes(Hq))
			}
			out := e.zeros(B * Hq * D)
			e.be.AttentionDecode(out, q, kc, vc, lens, a)
			e.out("out", out, tolAttn)
			outH := e.alloc(tensor.BF16, B*Hq*D)
			e.be.AttentionDecode(outH, e.bf16(randn(r, B*Hq*D, 1)), kc, vc, lens, a)
			e.outBF16("out bf16", outH, tolGemmB)
		}})
	}
	return cs
}

// xentCases covers chunking with a short last chunk, ignored targets, a
// frozen head, per-row scales and soft-capping.
func xentCases() []testCase {
	var cs []testCase
	for _, o := range []struct {
		name             string
		rowScale, frozen bool
		softCap          float32
	}{{"", false, false, 0}, {" rowScale frozen-head", true, true, 0}, {" softcap=30", false, false, 30}} {
		const N, C, V, chunk = 70, 64, 1000, 16
		cs = append(cs, testCase{name: "CrossEntropy", shape: fmt.Sprintf("N%d C%d V%d chunk%d%s", N, C, V, chunk, o.name), run: func(e *env, r *rand.Rand, _ bool) {
			x, w := e.f32(randn(r, N*C, 1)), e.f32(randn(r, V*C, 0.3))
			tg := randIDs(r, N, V)
			for i := range tg {
				if i%7 == 3 || (i >= 32 && i < 48) { // a whole chunk ignored too
					tg[i] = -100
				}
			}
			targets := e.i32(tg)
			losses, dx, ws := e.zeros(N), e.zeros(N*C), e.zeros(chunk*V)
			var dw tensor.Buffer
			if !o.frozen {
				dw = e.f32(randn(r, V*C, 1))
			}
			c := tensor.CrossEntropy{N: N, C: C, V: V, GradScale: 1.0 / 50, ChunkRows: chunk, SoftCap: o.softCap}
			if o.rowScale {
				c.RowScale = e.f32(randn(r, N, 1))
			}
			e.be.CrossEntropy(losses, dx, dw, x, w, targets, ws, c)
			e.out("losses", losses, tolXent)
			e.out("dx", dx, tolXent)
			if !o.frozen {
				e.out("dw", dw, tolXent)
			}
		}})
	}
	return cs
}

// stepConfig is a small Qwen2-shaped model (GQA, q/k/v biases, tied
// embeddings) for the whole-step comparison.
const stepConfig = `{"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 512,
 "hidden_size": 128, "intermediate_size": 352, "num_hidden_layers": 2, "num_attention_heads": 4,
 "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": true}`

// stepCases run one training step (forward, backward, AdamW) of the small
// model, full and LoRA, on packed rows with segment ids, and compare the
// loss, every gradient and the updated parameters.
func stepCases() []testCase {
	var cs []testCase
	for _, v := range []struct{ lora, bf16 bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		lora := v.lora
		name := "TrainStep full"
		if lora {
			name = "TrainStep LoRA r8"
		}
		tolG := tolStepG
		if v.bf16 {
			// compute_type = "bf16": bfloat16 weights and activations on
			// both sides; the CUDA backend also rounds the float32 operand
			// of a mixed product (the gradient beside a bfloat16
			// activation or weight) where the CPU keeps it exact, so the
			// step agrees to bfloat16's precision.
			name += " bf16"
			tolG = tolStepB
		}
		cs = append(cs, testCase{name: name, shape: "qwen2 H128 L2 B2 T64 packed", run: func(e *env, r *rand.Rand, _ bool) {
			cfg, err := llama.ParseConfig([]byte(stepConfig))
			if err != nil {
				panic(err)
			}
			var opts llama.Options
			if lora {
				opts = llama.Options{Trainable: func(string) bool { return false },
					LoRA: &llama.LoRAOptions{Modules: llama.LinearModules([]string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}, cfg.Layers),
						Rank: 8, Scale: 2, Seed: 3}}
			}
			opts.BF16, opts.BF16Activations = v.bf16, v.bf16
			m, err := llama.NewWith(cfg, e.be, opts)
			if err != nil {
				panic(err)
			}
			defer m.Free()
			e.check(m.InitRandom(7, 0.05))
			const B, T = 2, 64
			b := &llama.Batch{B: B, T: T, Tokens: randIDs(r, B*T, cfg.VocabSize), Targets: randIDs(r, B*T, cfg.VocabSize),
				Segments: make([]int32, B*T)}
			for i := range b.Segments {
				b.Segments[i] = int32(i % T / 40) // two packed sequences per row
				if i%T == 39 || i%T == T-1 {
					b.Targets[i] = -100
				}
			}
			if lora {
				// B starts at zero; a step with nonzero B exercises every
				// adapter gradient.
				m.ZeroGrad()
				_, err := m.ForwardBackward(b)
				e.check(err)
				e.check(m.AdamW(llama.AdamWConfig{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}))
			}
			m.ZeroGrad()
			loss, err := m.ForwardBackward(b)
			e.check(err)
			lb := e.f32([]float32{loss})
			e.out("loss", lb, tolG)
			e.out("grads", m.GradBuffer(), tolG)
			norm := e.zeros(1)
			e.be.GlobalNorm(norm, []tensor.Buffer{m.GradBuffer()})
			e.out("gradnorm", norm, tolG)
		}})
	}
	return cs
}

// selftestMain runs the self-test of dut against a new CPU backend.
func selftestMain(w io.Writer, dut tensor.Backend, seed uint64, only string) bool {
	var picked []testCase
	for _, c := range cases() {
		if only == "" || strings.Contains(strings.ToLower(c.name), strings.ToLower(only)) {
			picked = append(picked, c)
		}
	}
	return selftest(w, cpu.New(), dut, picked, seed)
}
