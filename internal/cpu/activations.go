package cpu

// This file holds the float32 tanh and the tanh-approximated GELU that the
// GeGLU kernel, attention's score soft-capping and the cross-entropy's
// logit soft-capping run on. They are portable Go (no SIMD path); every
// product is rounded on its own (the float32 conversions forbid fusing
// into an FMA), so results do not depend on GOAMD64.

// tanhf is tanh in float32 to about 2 ulp: Cephes' tanhf (an odd
// polynomial below 0.625, 1 − 2/(e^{2|x|}+1) above, ±1 beyond 9, where
// tanh rounds to ±1). NaN stays NaN.
func tanhf(x float32) float32 {
	z := x
	if z < 0 {
		z = -z
	}
	switch {
	case z >= 9:
		if x < 0 {
			return -1
		}
		return 1
	case z >= 0.625:
		e := expfCore(z + z)
		t := 1 - 2/(e+1)
		if x < 0 {
			return -t
		}
		return t
	case x == 0:
		return x // keeps the sign of a zero
	}
	s := float32(x * x)
	p := float32(-5.70498872745e-3*s) + 2.06390887954e-2
	p = float32(p*s) - 5.37397155531e-2
	p = float32(p*s) + 1.33314422036e-1
	p = float32(p*s) - 3.33332819422e-1
	return float32(float32(p*s)*x) + x // NaN propagates
}

// softCapRow sets row[c] = softCap·tanh(row[c]/softCap), with the
// division done as a multiplication by 1/softCap (at most an ulp apart in
// tanh's argument), and, if d is not nil, d[c] = 1 − tanh² (the
// derivative, for the backward). The polynomial range of tanhf is inlined:
// with caps like Gemma 2's (50 for attention, 30 for the logits) most
// arguments fall in it.
func softCapRow(row, d []float32, softCap float32) {
	inv := 1 / softCap
	if d != nil {
		d = d[:len(row)]
	}
	for c, z := range row {
		u := z * inv
		var t float32
		if u > -0.625 && u < 0.625 && u != 0 {
			s := float32(u * u)
			p := float32(-5.70498872745e-3*s) + 2.06390887954e-2
			p = float32(p*s) - 5.37397155531e-2
			p = float32(p*s) + 1.33314422036e-1
			p = float32(p*s) - 3.33332819422e-1
			t = float32(float32(p*s)*u) + u
		} else {
			t = tanhf(u)
		}
		row[c] = softCap * t
		if d != nil {
			d[c] = 1 - t*t
		}
	}
}

// The constants of gelu's tanh approximation: gelu(x) = x/2·(1 +
// tanh(√(2/π)·(x + 0.044715·x³))).
const (
	geluSqrt2OverPi = 0.7978845608028654
	geluKappa       = 0.044715
)

// geluTanh returns gelu(x) with the tanh approximation, σ = (1 + tanh y)/2
// and σc = 1 − σ, for y = √(2/π)·(x + 0.044715·x³). It computes σ = σ(2y)
// = 1/(1+t), σc = t·σ with t = e^(−2y): the identity 1 + tanh y = 2σ(2y)
// gives x/2·(1 + tanh y) = x·σ(2y) without the cancellation of 1 + tanh y
// for negative x (and of 1 − σ for positive x). 2y is clamped to expf's
// range, as sigmoidf does.
func geluTanh(x float32) (gelu, sig, sigc float32) {
	x3 := float32(float32(x*x) * x)
	y := float32(geluSqrt2OverPi * float32(x+float32(geluKappa*x3)))
	t := expfCore(min(max(-(y+y), expfMin), expfMax)) // NaN propagates
	sig = 1 / (1 + t)
	sigc = t * sig
	return x * sig, sig, sigc
}

// geluTanhGrad returns gelu(x) and its derivative
// σ + 2x·σ(1−σ)·√(2/π)(1 + 3·0.044715·x²), which is PyTorch's gelu
// backward, 1/2(1 + tanh y) + x/2(1 − tanh² y)·y', with 1 + tanh y = 2σ
// and 1 − tanh² y = 4σ(1−σ).
func geluTanhGrad(x float32) (gelu, grad float32) {
	gelu, s, sc := geluTanh(x)
	dy := float32(geluSqrt2OverPi * float32(1+float32(3*geluKappa*float32(x*x))))
	grad = s + float32(float32(2*x)*float32(s*sc))*dy
	return gelu, grad
}

// gegluFwd sets out[i] = gelu(gate[i])·up[i].
func gegluFwd(out, gate, up []float32) {
	up = up[:len(gate)]
	out = out[:len(gate)]
	for i, g := range gate {
		gl, _, _ := geluTanh(g)
		out[i] = gl * up[i]
	}
}

// gegluBwd sets dgate and dup from dout for out = gelu(gate)·up. dgate and
// dup may alias gate or up: each element is read before it is written.
func gegluBwd(dgate, dup, dout, gate, up []float32) {
	n := len(gate)
	up, dout, dgate, dup = up[:n], dout[:n], dgate[:n], dup[:n]
	for i := 0; i < n; i++ {
		g, u, d := gate[i], up[i], dout[i]
		gl, gr := geluTanhGrad(g)
		dgate[i] = float32(d*u) * gr
		dup[i] = d * gl
	}
}
