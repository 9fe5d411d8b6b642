package cpu

import "math"

// This file holds the portable definitions of the vectorised row kernels:
// softmax's exp-and-sum, the SwiGLU activation and the AdamW update. Each
// is written so that a 16-lane SIMD version (vecmath_amd64.s, AVX-512) can
// do the very same float32 operations in the very same order: the assembly
// paths return the same bits as these functions, which are also the
// fallback on CPUs without AVX-512 and off amd64 (vecmath_test.go checks
// both against each other and against float64 math).

// expBlock is the summation block of expSubRow: the exps of one block are
// summed in 16 float32 lanes (element i into lane i mod 16, in order), the
// lanes folded in float64 in a fixed tree, and the block sums added in
// float64 in row order. A float32 lane then holds at most 16 terms, so the
// sum stays accurate for vocabulary-sized rows.
const expBlock = 256

// expConsts holds expfCore's constants as float32, in the order the
// assembly reads them (it broadcasts from this table, so both paths use the
// same values).
var expConsts = [...]float32{
	expfLog2e, expfMagic, expfLn2Hi, expfLn2Lo,
	expfC5, expfC4, expfC3, expfC2, expfC1, expfC0,
	1, expfMin, expfMax,
}

// expSubRowGo replaces every x in row by expf(x - sub) and returns their
// sum, summed as expBlock describes.
func expSubRowGo(row []float32, sub float32) float64 {
	var total float64
	for len(row) > 0 {
		blk := row[:min(len(row), expBlock)]
		row = row[len(blk):]
		var acc [16]float32
		for i, x := range blk {
			x -= sub
			var e float32
			if x >= expfMin && x <= expfMax {
				e = expfCore(x)
			} else {
				e = expf(x) // 0, the top of the range, +Inf or NaN
			}
			blk[i] = e
			acc[i&15] += e
		}
		total += foldLanes(&acc)
	}
	return total
}

// foldLanes sums 16 float32 lanes in float64 in the tree order of the
// assembly: lane i plus lane i+8, then +4, +2, +1.
func foldLanes(acc *[16]float32) float64 {
	var d [8]float64
	for i := range d {
		d[i] = float64(acc[i]) + float64(acc[i+8])
	}
	for i := 0; i < 4; i++ {
		d[i] += d[i+4]
	}
	for i := 0; i < 2; i++ {
		d[i] += d[i+2]
	}
	return d[0] + d[1]
}

// rowMaxGo returns the largest element of row, ignoring NaNs (-Inf for an
// empty or all-NaN row). Element i goes to lane i mod 16, each lane keeps
// its running maximum (replaced only by a strictly greater value, as
// VMAXPS does), and the lanes are folded i+8, +4, +2, +1 the same way, so
// the AVX-512 version returns the same bits, down to the sign of a zero.
func rowMaxGo(row []float32) float32 {
	var acc [16]float32
	for i := range acc {
		acc[i] = float32(math.Inf(-1))
	}
	for i, x := range row {
		if x > acc[i&15] {
			acc[i&15] = x
		}
	}
	for w := 8; w >= 1; w /= 2 {
		for i := 0; i < w; i++ {
			if acc[i+w] > acc[i] {
				acc[i] = acc[i+w]
			}
		}
	}
	return acc[0]
}

// sigmoidf is the logistic function in float32 from expf's arithmetic, with
// its argument clamped to expfCore's range: below -88 it returns
// 1/(1+e^88) (about 6e-39) instead of a smaller denormal, above 87.3 it
// returns 1. NaN stays NaN.
func sigmoidf(g float32) float32 {
	t := expfCore(min(max(-g, expfMin), expfMax)) // NaN propagates
	return 1 / (1 + t)
}

// swigluFwdGo sets out[i] = gate[i]·σ(gate[i])·up[i].
func swigluFwdGo(out, gate, up []float32) {
	up = up[:len(gate)]
	out = out[:len(gate)]
	for i, g := range gate {
		out[i] = g * sigmoidf(g) * up[i]
	}
}

// swigluBwdGo sets dgate and dup from dout for out = silu(gate)·up. dgate
// and dup may alias gate or up: each element is read before it is written.
func swigluBwdGo(dgate, dup, dout, gate, up []float32) {
	n := len(gate)
	up, dout, dgate, dup = up[:n], dout[:n], dgate[:n], dup[:n]
	for i := 0; i < n; i++ {
		g := gate[i]
		s := sigmoidf(g)
		u, d := up[i], dout[i]
		dgate[i] = d * u * s * (1 + float32(g*(1-s)))
		dup[i] = d * g * s
	}
}

// adamwArgs are the per-call constants of the AdamW update, laid out for
// the assembly (which reads them by offset).
type adamwArgs struct {
	decay, b1, b1c, b2, b2c, step, bc2s, eps float32 // b1c = 1-b1, b2c = 1-b2
}

// adamwGo applies one AdamW update to p, m, v from g, in the operation
// order of torch.optim.AdamW's single-tensor path.
func adamwGo(p, g, m, v []float32, a *adamwArgs) {
	n := len(g)
	p, m, v = p[:n], m[:n], v[:n]
	for i, gi := range g {
		pi := p[i] * a.decay
		// The conversions keep each product rounded (no FMA), as in the
		// assembly.
		mi := float32(a.b1*m[i]) + float32(a.b1c*gi)
		vi := float32(a.b2*v[i]) + float32(a.b2c*gi*gi)
		m[i], v[i] = mi, vi
		denom := float32(math.Sqrt(float64(vi)))/a.bc2s + a.eps
		p[i] = pi - a.step*mi/denom
	}
}

// scaleRowGo sets x[i] *= k.
func scaleRowGo(x []float32, k float32) {
	for i := range x {
		x[i] *= k
	}
}

// expSubRows runs expSubRow on rows 0..rows-1 of a tile (row r at
// s[r·ld:], sub[r] subtracted, sums[r] set to its sum unless sums is nil):
// each row is bk long, or min(r+1, bk) on the causal diagonal (diag). Rows
// must be at most expBlock long. On AVX-512 one call runs the whole tile;
// rows that need expf's slow path go through expSubRow.
func expSubRows(s []float32, ld, rows, bk int, diag bool, sub []float32, sums []float64) {
	for r := 0; r < rows; {
		r += expSubRowsVec(s, ld, r, rows, bk, diag, sub, sums)
		if r == rows {
			return
		}
		n := bk
		if diag {
			n = min(r+1, bk)
		}
		t := expSubRow(s[r*ld:r*ld+n], sub[r])
		if sums != nil {
			sums[r] = t
		}
		r++
	}
}

// dsRowGo sets dp[i] = p[i]·(dp[i] − d): a row of attention's dS.
func dsRowGo(dp, p []float32, d float32) {
	p = p[:len(dp)]
	for i, x := range dp {
		dp[i] = p[i] * (x - d)
	}
}
