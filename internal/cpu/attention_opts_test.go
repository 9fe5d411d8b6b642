package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// optsCase is an attention shape with score options.
type optsCase struct {
	attnCase
	softCap float32
	window  int
	alibi   bool // slopes from tensor.ALiBiSlopes(Hq)
	qScale  float64
}

func (c optsCase) String() string {
	return fmt.Sprintf("%v_cap%v_win%d_alibi%v", c.attnCase, c.softCap, c.window, c.alibi)
}

func (c optsCase) opts() attnOpts {
	o := attnOpts{softCap: c.softCap, window: c.window}
	if c.alibi {
		o.alibi = tensor.ALiBiSlopes(c.Hq)
	}
	return o
}

// optsCases cover each option alone and together, windows shorter than,
// equal to, across and longer than a tile, with GQA, segment ids and T not a
// multiple of the tile.
var optsCases = []optsCase{
	{attnCase: attnCase{B: 2, T: 70, Hq: 4, Hkv: 2, D: 16}, softCap: 2, qScale: 3},
	{attnCase: attnCase{B: 1, T: 130, Hq: 2, Hkv: 1, D: 8, seg: "runs"}, softCap: 50, qScale: 4},
	{attnCase: attnCase{B: 2, T: 150, Hq: 4, Hkv: 2, D: 16}, window: 1},
	{attnCase: attnCase{B: 2, T: 150, Hq: 4, Hkv: 2, D: 16}, window: 5},
	{attnCase: attnCase{B: 1, T: 200, Hq: 2, Hkv: 2, D: 8}, window: 64},
	{attnCase: attnCase{B: 1, T: 200, Hq: 2, Hkv: 2, D: 8, seg: "runs"}, window: 20},
	{attnCase: attnCase{B: 2, T: 100, Hq: 6, Hkv: 3, D: 16}, alibi: true},
	{attnCase: attnCase{B: 1, T: 193, Hq: 8, Hkv: 2, D: 16, seg: "mixed"}, alibi: true, window: 100},
	{attnCase: attnCase{B: 2, T: 140, Hq: 4, Hkv: 1, D: 16, seg: "runs"}, softCap: 3, window: 33, alibi: true, qScale: 2},
}

func optsTestData(c optsCase, seed uint64) attnData {
	d := attnTestData(c.attnCase, seed)
	if c.qScale != 0 {
		for i := range d.q {
			d.q[i] *= float32(c.qScale)
		}
	}
	return d
}

// refAttentionOpts is refAttention with the score options, in float64:
// s = scale·q·k, soft-capped, plus slope·(j−i), over the causal keys of
// the query's segment within the window; lse per query as well.
func refAttentionOpts(c optsCase, d attnData) (out, lse, dq, dk, dv []float64) {
	B, T, Hq, Hkv, D := c.B, c.T, c.Hq, c.Hkv, c.D
	o := c.opts()
	out = make([]float64, B*T*Hq*D)
	lse = make([]float64, B*Hq*T)
	dq = make([]float64, B*T*Hq*D)
	dk = make([]float64, B*T*Hkv*D)
	dv = make([]float64, B*T*Hkv*D)
	scale, cp := float64(d.scale), float64(o.softCap)
	p := make([]float64, T)
	dt := make([]float64, T)
	dp := make([]float64, T)
	for b := 0; b < B; b++ {
		for h := 0; h < Hq; h++ {
			g := h / (Hq / Hkv)
			qr := func(t int) int { return ((b*T+t)*Hq + h) * D }
			kr := func(t int) int { return ((b*T+t)*Hkv + g) * D }
			for i := 0; i < T; i++ {
				mx := math.Inf(-1)
				for j := 0; j < T; j++ {
					p[j], dt[j] = math.Inf(-1), 1
					if j > i || (d.seg != nil && d.seg[b*T+j] != d.seg[b*T+i]) || (o.window > 0 && j <= i-o.window) {
						continue
					}
					var s float64
					for x := 0; x < D; x++ {
						s += float64(d.q[qr(i)+x]) * float64(d.k[kr(j)+x])
					}
					s *= scale
					if cp > 0 {
						th := math.Tanh(s / cp)
						s, dt[j] = cp*th, 1-th*th
					}
					if o.alibi != nil {
						s += float64(o.alibi[h]) * float64(j-i)
					}
					p[j] = s
					mx = math.Max(mx, s)
				}
				var sum float64
				for j := range p {
					p[j] = math.Exp(p[j] - mx)
					sum += p[j]
				}
				lse[(b*Hq+h)*T+i] = mx + math.Log(sum)
				for j := range p {
					p[j] /= sum
				}
				var pdp float64
				for j := 0; j < T; j++ {
					var s float64
					for x := 0; x < D; x++ {
						out[qr(i)+x] += p[j] * float64(d.v[kr(j)+x])
						s += float64(d.dout[qr(i)+x]) * float64(d.v[kr(j)+x])
					}
					dp[j] = s
					pdp += p[j] * s
				}
				for j := 0; j < T; j++ {
					ds := p[j] * (dp[j] - pdp) * dt[j]
					for x := 0; x < D; x++ {
						dq[qr(i)+x] += scale * ds * float64(d.k[kr(j)+x])
						dk[kr(j)+x] += scale * ds * float64(d.q[qr(i)+x])
						dv[kr(j)+x] += p[j] * float64(d.dout[qr(i)+x])
					}
				}
			}
		}
	}
	return out, lse, dq, dk, dv
}

func runAttentionOpts(c optsCase, d attnData) attnResult {
	nq, nkv := c.B*c.T*c.Hq*c.D, c.B*c.T*c.Hkv*c.D
	r := attnResult{out: make([]float32, nq), lse: make([]float32, c.B*c.Hq*c.T),
		dq: make([]float32, nq), dk: make([]float32, nkv), dv: make([]float32, nkv)}
	for _, x := range [][]float32{r.out, r.lse, r.dq, r.dk, r.dv} {
		for i := range x {
			x[i] = float32(math.NaN())
		}
	}
	o := c.opts()
	attentionForward(r.out, r.lse, d.q, d.k, d.v, d.seg, c.B, c.T, c.Hq, c.Hkv, c.D, d.scale, o)
	attentionBackward(r.dq, r.dk, r.dv, d.dout, d.q, d.k, d.v, r.out, r.lse, d.seg, c.B, c.T, c.Hq, c.Hkv, c.D, d.scale, o)
	return r
}

// optsClose is attnClose with the limit's scale at least 0.1: with a
// one-key window the reference dq is exactly 0 and ours is the rounding
// noise of dP − rowD, two float32 dot products of size ~|dO|·|v| (~1e-6).
func optsClose(t *testing.T, name string, got []float32, want []float64, tol float64) {
	t.Helper()
	scale := 0.1
	for _, w := range want {
		scale = math.Max(scale, math.Abs(w))
	}
	for i := range want {
		if g := float64(got[i]); math.IsNaN(g) || math.Abs(g-want[i]) > tol*scale {
			t.Fatalf("%s[%d] = %v, want %v (limit %.3g)", name, i, g, want[i], tol*scale)
		}
	}
}

func TestAttentionOptionsAgainstReference(t *testing.T) {
	for i, c := range optsCases {
		t.Run(c.String(), func(t *testing.T) {
			d := optsTestData(c, uint64(200+i))
			defer func() { attnBackwardMode = 0 }()
			attnBackwardMode = 1
			got := runAttentionOpts(c, d)
			out, lse, dq, dk, dv := refAttentionOpts(c, d)
			optsClose(t, "out", got.out, out, 2e-5)
			optsClose(t, "lse", got.lse, lse, 2e-6)
			optsClose(t, "dq", got.dq, dq, 1e-4)
			optsClose(t, "dk", got.dk, dk, 1e-4)
			optsClose(t, "dv", got.dv, dv, 1e-4)
			attnBackwardMode = 2
			split := runAttentionOpts(c, d)
			if !bitsEqual(split.dq, got.dq) || !bitsEqual(split.dk, got.dk) || !bitsEqual(split.dv, got.dv) {
				t.Errorf("two-pass backward differs from one-pass")
			}
		})
	}
}

// TestAttentionOptionsChangeResults guards the reference test against
// options that do nothing: each case must differ from plain attention.
func TestAttentionOptionsChangeResults(t *testing.T) {
	for i, c := range optsCases {
		d := optsTestData(c, uint64(200+i))
		plain := optsCase{attnCase: c.attnCase}
		a, b := runAttentionOpts(c, d), runAttentionOpts(plain, d)
		if bitsEqual(a.out, b.out) || bitsEqual(a.dq, b.dq) || bitsEqual(a.dk, b.dk) {
			t.Errorf("%v: same results as without options", c)
		}
	}
}

// TestAttentionWindowSpecialCases: a window of one key returns each
// query's own value and gradients only to itself; a window as long as the
// sequence is plain causal attention, bit for bit.
func TestAttentionWindowSpecialCases(t *testing.T) {
	c := optsCase{attnCase: attnCase{B: 2, T: 150, Hq: 4, Hkv: 2, D: 8, seg: "runs"}, window: 1}
	d := optsTestData(c, 5)
	got := runAttentionOpts(c, d)
	for b := 0; b < c.B; b++ {
		for ti := 0; ti < c.T; ti++ {
			for h := 0; h < c.Hq; h++ {
				g := h / (c.Hq / c.Hkv)
				for x := 0; x < c.D; x++ {
					o := got.out[((b*c.T+ti)*c.Hq+h)*c.D+x]
					if v := d.v[((b*c.T+ti)*c.Hkv+g)*c.D+x]; math.Abs(float64(o-v)) > 1e-6 {
						t.Fatalf("window 1: out[b=%d,t=%d,h=%d,%d] = %v, want v = %v", b, ti, h, x, o, v)
					}
				}
			}
		}
	}
	for i, x := range got.dq {
		if math.Abs(float64(x)) > 1e-5 { // 0 up to the rounding of dO·v − dO·out
			t.Fatalf("window 1: dq[%d] = %v, want 0 (softmax over one key)", i, x)
		}
	}
	for _, w := range []int{150, 151, 1000} {
		c.window = w
		a := runAttentionOpts(c, d)
		b := runAttentionOpts(optsCase{attnCase: c.attnCase}, d)
		for _, pair := range [][2][]float32{{a.out, b.out}, {a.lse, b.lse}, {a.dq, b.dq}, {a.dk, b.dk}, {a.dv, b.dv}} {
			if !bitsEqual(pair[0], pair[1]) {
				t.Fatalf("window %d >= T=%d differs from no window", w, c.T)
			}
		}
	}
}

// TestAttentionOptionsFiniteDifference checks the backward against central
// differences of the float32 forward with every option on.
func TestAttentionOptionsFiniteDifference(t *testing.T) {
	c := optsCase{attnCase: attnCase{B: 2, T: 70, Hq: 4, Hkv: 2, D: 8, seg: "runs"}, softCap: 1.5, window: 9, alibi: true, qScale: 2}
	d := optsTestData(c, 43)
	got := runAttentionOpts(c, d)
	out := make([]float32, len(got.out))
	lse := make([]float32, len(got.lse))
	o := c.opts()
	loss := func() float64 {
		attentionForward(out, lse, d.q, d.k, d.v, d.seg, c.B, c.T, c.Hq, c.Hkv, c.D, d.scale, o)
		var s float64
		for i := range out {
			s += float64(out[i]) * float64(d.dout[i])
		}
		return s
	}
	checkFiniteDifference(t, loss, 4, 16, 2e-3, 2e-2, fdOperand{"q", d.q, got.dq}, fdOperand{"k", d.k, got.dk}, fdOperand{"v", d.v, got.dv})
}

func TestAttentionOptionsDeterministicAcrossProcs(t *testing.T) {
	old := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(old)
	for i, c := range []optsCase{optsCases[5], optsCases[8]} {
		d := optsTestData(c, uint64(300+i))
		var first attnResult
		for n, p := range procs {
			runtime.GOMAXPROCS(p)
			got := runAttentionOpts(c, d)
			if n == 0 {
				first = got
				continue
			}
			for _, pair := range [][2][]float32{{first.out, got.out}, {first.lse, got.lse}, {first.dq, got.dq}, {first.dk, got.dk}, {first.dv, got.dv}} {
				if !bitsEqual(pair[0], pair[1]) {
					t.Fatalf("%v: GOMAXPROCS=%d differs from GOMAXPROCS=%d", c, p, procs[0])
				}
			}
		}
	}
}

func TestAttentionOptionsDoNotAllocate(t *testing.T) {
	c := optsCases[8]
	d := optsTestData(c, 9)
	r := runAttentionOpts(c, d)
	o := c.opts()
	defer func() { attnBackwardMode = 0 }()
	for _, k := range []struct {
		name string
		fn   func()
	}{
		{"forward", func() {
			attentionForward(r.out, r.lse, d.q, d.k, d.v, d.seg, c.B, c.T, c.Hq, c.Hkv, c.D, d.scale, o)
		}},
		{"backward", func() {
			attnBackwardMode = 1
			attentionBackward(r.dq, r.dk, r.dv, d.dout, d.q, d.k, d.v, r.out, r.lse, d.seg, c.B, c.T, c.Hq, c.Hkv, c.D, d.scale, o)
		}},
		{"backward two-pass", func() {
			attnBackwardMode = 2
			attentionBackward(r.dq, r.dk, r.dv, d.dout, d.q, d.k, d.v, r.out, r.lse, d.seg, c.B, c.T, c.Hq, c.Hkv, c.D, d.scale, o)
		}},
	} {
		if _, own := ownAllocsPerRun(t, 5, k.fn); own != 0 {
			t.Errorf("%s: %v allocations per call outside Sgemm", k.name, own)
		}
	}
}

// TestAttentionOptionsBackend runs the options through tensor.Attn and the
// Backend methods: the same bits as the slice-level kernels.
func TestAttentionOptionsBackend(t *testing.T) {
	c := optsCases[8]
	d := optsTestData(c, 11)
	want := runAttentionOpts(c, d)
	be := New()
	a := tensor.Attn{B: c.B, T: c.T, Hq: c.Hq, Hkv: c.Hkv, D: c.D, Scale: d.scale,
		SoftCap: c.softCap, Window: c.window, ALiBi: upload(t, be, tensor.ALiBiSlopes(c.Hq))}
	nq, nk := c.B*c.T*c.Hq*c.D, c.B*c.T*c.Hkv*c.D
	qb, kb, vb, gb, sb := upload(t, be, d.q), upload(t, be, d.k), upload(t, be, d.v), upload(t, be, d.dout), uploadI32(t, be, d.seg)
	ob, lb := upload(t, be, make([]float32, nq)), upload(t, be, make([]float32, c.B*c.Hq*c.T))
	dq, dk, dv := upload(t, be, make([]float32, nq)), upload(t, be, make([]float32, nk)), upload(t, be, make([]float32, nk))
	be.AttentionForward(ob, lb, qb, kb, vb, sb, a)
	be.AttentionBackward(dq, dk, dv, gb, qb, kb, vb, ob, lb, sb, a)
	for _, p := range []struct {
		name string
		got  tensor.Buffer
		want []float32
	}{{"out", ob, want.out}, {"lse", lb, want.lse}, {"dq", dq, want.dq}, {"dk", dk, want.dk}, {"dv", dv, want.dv}} {
		if !bitsEqual(download(t, be, p.got), p.want) {
			t.Errorf("Backend %s differs from the slice-level kernel", p.name)
		}
	}
}

// TestAttentionDecodeOptionsMatchForward: decoding with the options gives
// what the full forward with the same options gives at the query's
// position, rows at different lengths, cache slots past a row's length NaN.
func TestAttentionDecodeOptionsMatchForward(t *testing.T) {
	for _, tc := range []struct {
		name    string
		softCap float32
		window  int
		alibi   bool
	}{
		{"softcap", 1.5, 0, false},
		{"window", 0, 4, false},
		{"alibi", 0, 0, true},
		{"all", 2, 7, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const B, T, MaxT, Hq, Hkv, D = 3, 20, 24, 4, 2, 8
			be := New()
			var slopes tensor.Buffer
			if tc.alibi {
				slopes = upload(t, be, tensor.ALiBiSlopes(Hq))
			}
			a := tensor.Attn{B: B, T: T, Hq: Hq, Hkv: Hkv, D: D, Scale: 0.9,
				SoftCap: tc.softCap, Window: tc.window, ALiBi: slopes}
			dd := tensor.AttnDecode{B: B, MaxT: MaxT, Hq: Hq, Hkv: Hkv, D: D, Scale: a.Scale,
				SoftCap: tc.softCap, Window: tc.window, ALiBi: slopes}
			r := rand.New(rand.NewPCG(22, 1))
			nq, nk := B*T*Hq*D, B*T*Hkv*D
			q, k, v := randF32(r, nq, 1.5), randF32(r, nk, 1.5), randF32(r, nk, 1)
			full := upload(t, be, make([]float32, nq))
			be.AttentionForward(full, upload(t, be, make([]float32, B*Hq*T)), upload(t, be, q), upload(t, be, k), upload(t, be, v), tensor.Buffer{}, a)
			fwd := download(t, be, full)
			kvd, qd := Hkv*D, Hq*D
			for step := range T {
				lens := make([]int32, B)
				kc := make([]float32, B*MaxT*kvd)
				vc := make([]float32, B*MaxT*kvd)
				for i := range kc {
					kc[i], vc[i] = float32(math.NaN()), float32(math.NaN())
				}
				qs := make([]float32, B*qd)
				var want []float32
				for b := range B {
					n := 1 + (step+5*b)%T
					lens[b] = int32(n)
					copy(kc[b*MaxT*kvd:], k[b*T*kvd:(b*T+n)*kvd])
					copy(vc[b*MaxT*kvd:], v[b*T*kvd:(b*T+n)*kvd])
					at := (b*T + n - 1) * qd
					copy(qs[b*qd:], q[at:at+qd])
					want = append(want, fwd[at:at+qd]...)
				}
				out := upload(t, be, make([]float32, B*qd))
				be.AttentionDecode(out, upload(t, be, qs), upload(t, be, kc), upload(t, be, vc), uploadI32(t, be, lens), dd)
				if err := closeTo(download(t, be, out), to64(want), 1e-5, 1e-4); err != nil {
					t.Fatalf("step %d lens %v: %v", step, lens, err)
				}
			}
		})
	}
}

func TestAttentionOptionsPanicOnBadArgs(t *testing.T) {
	x := make([]float32, 2*3*4*8)
	lse := make([]float32, 2*4*3)
	be := New()
	xb, lb := upload(t, be, x), upload(t, be, lse)
	good := tensor.Attn{B: 2, T: 3, Hq: 4, Hkv: 4, D: 8, Scale: 1}
	dec := tensor.AttnDecode{B: 2, MaxT: 3, Hq: 4, Hkv: 4, D: 8, Scale: 1}
	lens := uploadI32(t, be, []int32{1, 3})
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"negative softcap", func() {
			attentionForward(x, lse, x, x, x, nil, 2, 3, 4, 4, 8, 1, attnOpts{softCap: -1})
		}},
		{"NaN softcap", func() {
			attentionForward(x, lse, x, x, x, nil, 2, 3, 4, 4, 8, 1, attnOpts{softCap: float32(math.NaN())})
		}},
		{"Inf softcap", func() {
			attentionBackward(x, x, x, x, x, x, x, x, lse, nil, 2, 3, 4, 4, 8, 1, attnOpts{softCap: float32(math.Inf(1))})
		}},
		{"negative window", func() {
			attentionBackward(x, x, x, x, x, x, x, x, lse, nil, 2, 3, 4, 4, 8, 1, attnOpts{window: -2})
		}},
		{"short alibi", func() {
			attentionForward(x, lse, x, x, x, nil, 2, 3, 4, 4, 8, 1, attnOpts{alibi: make([]float32, 3)})
		}},
		{"Backend short ALiBi", func() {
			a := good
			a.ALiBi = upload(t, be, make([]float32, 3))
			be.AttentionForward(xb, lb, xb, xb, xb, tensor.Buffer{}, a)
		}},
		{"Backend I32 ALiBi", func() {
			a := good
			a.ALiBi = uploadI32(t, be, make([]int32, 4))
			be.AttentionBackward(xb, xb, xb, xb, xb, xb, xb, xb, lb, tensor.Buffer{}, a)
		}},
		{"Backend negative window", func() {
			a := good
			a.Window = -1
			be.AttentionForward(xb, lb, xb, xb, xb, tensor.Buffer{}, a)
		}},
		{"Decode negative softcap", func() {
			d := dec
			d.SoftCap = -3
			be.AttentionDecode(xb, xb, xb, xb, lens, d)
		}},
		{"Decode negative window", func() {
			d := dec
			d.Window = -3
			be.AttentionDecode(xb, xb, xb, xb, lens, d)
		}},
		{"Decode short ALiBi", func() {
			d := dec
			d.ALiBi = upload(t, be, make([]float32, 2))
			be.AttentionDecode(xb, xb, xb, xb, lens, d)
		}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", tc.name)
				}
			}()
			tc.fn()
		}()
	}
}

// BenchmarkAttentionOptions runs BenchmarkAttention's shape with Gemma 2's
// options (soft-cap 50, window 128) and with ALiBi, to show their cost
// next to BenchmarkAttention's plain path.
func BenchmarkAttentionOptions(b *testing.B) {
	base := attnCase{B: 8, T: 256, Hq: 6, Hkv: 6, D: 48}
	for _, c := range []optsCase{
		{attnCase: base, softCap: 50, window: 128},
		{attnCase: base, alibi: true},
	} {
		d := optsTestData(c, 1)
		r := runAttentionOpts(c, d)
		o := c.opts()
		name := fmt.Sprintf("cap%v_win%d_alibi%v", c.softCap, c.window, c.alibi)
		b.Run(name+"/forward", func(b *testing.B) {
			for b.Loop() {
				attentionForward(r.out, r.lse, d.q, d.k, d.v, nil, c.B, c.T, c.Hq, c.Hkv, c.D, d.scale, o)
			}
		})
		b.Run(name+"/backward", func(b *testing.B) {
			for b.Loop() {
				attentionBackward(r.dq, r.dk, r.dv, d.dout, d.q, d.k, d.v, r.out, r.lse, nil, c.B, c.T, c.Hq, c.Hkv, c.D, d.scale, o)
			}
		})
	}
}

// TestAttentionStridedSameBits: the strided block products (head dims up
// to 64, AVX-512) and the packed Sgemm ones give the same bits, forward and
// both backward strategies, for the plain cases and every score option.
func TestAttentionStridedSameBits(t *testing.T) {
	if !stridedGemmEnabled {
		t.Skip("no strided kernels on this machine (AVX-512)")
	}
	cases := append([]optsCase(nil), optsCases...)
	for _, c := range attnCases {
		cases = append(cases, optsCase{attnCase: c})
	}
	cases = append(cases, optsCase{attnCase: attnCase{B: 1, T: 90, Hq: 3, Hkv: 1, D: 48, seg: "runs"}},
		optsCase{attnCase: attnCase{B: 1, T: 70, Hq: 2, Hkv: 2, D: 33}, softCap: 5})
	defer func(old int) { attnBackwardMode = old }(attnBackwardMode)
	for i, c := range cases {
		d := optsTestData(c, uint64(50+i))
		for _, mode := range []int{1, 2} {
			attnBackwardMode = mode
			stridedGemmEnabled = false
			want := runAttentionOpts(c, d)
			stridedGemmEnabled = true
			got := runAttentionOpts(c, d)
			for _, x := range []struct {
				name      string
				got, want []float32
			}{{"out", got.out, want.out}, {"lse", got.lse, want.lse}, {"dq", got.dq, want.dq}, {"dk", got.dk, want.dk}, {"dv", got.dv, want.dv}} {
				if !bitsEqual(x.got, x.want) {
					t.Errorf("%v backward mode %d: %s differs between the strided and packed paths", c, mode, x.name)
				}
			}
		}
	}
}
