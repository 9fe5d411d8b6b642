//go:build amd64 && !purego

package cpu

import "golang.org/x/sys/cpu"

// vecAVX512 says whether the row kernels of vecmath.go run on their
// AVX-512F assembly (a variable so tests can run both paths).
var vecAVX512 = cpu.X86.HasAVX512F

//go:noescape
func expSubRowAVX512(row *float32, n int, sub float32) (total float64, done int)

//go:noescape
func swigluFwdAVX512(out, gate, up *float32, n int)

//go:noescape
func swigluBwdAVX512(dgate, dup, dout, gate, up *float32, n int)

//go:noescape
func adamwAVX512(p, grad, m, v *float32, n int, a *adamwArgs)

//go:noescape
func scaleRowAVX512(x *float32, n int, k float32)

//go:noescape
func rowMaxAVX512(x *float32, n int) float32

// rowMaxVec is rowMaxGo on AVX-512; ok is false where that is not
// available (the caller runs rowMaxGo).
func rowMaxVec(row []float32) (mx float32, ok bool) {
	if !vecAVX512 || len(row) == 0 {
		return 0, false
	}
	return rowMaxAVX512(&row[0], len(row)), true
}

// expSubRowVec runs expSubRowGo on a prefix of row with AVX-512 and
// returns how many elements it finished (whole blocks, up to the first
// that needs expf's slow path) and their sum; the caller finishes the rest.
func expSubRowVec(row []float32, sub float32) (float64, int) {
	if !vecAVX512 || len(row) == 0 {
		return 0, 0
	}
	return expSubRowAVX512(&row[0], len(row), sub)
}

// swigluFwd is swigluFwdGo.
func swigluFwd(out, gate, up []float32) {
	n := len(gate)
	if !vecAVX512 || n == 0 {
		swigluFwdGo(out, gate, up)
		return
	}
	_, _ = out[n-1], up[n-1]
	swigluFwdAVX512(&out[0], &gate[0], &up[0], n)
}

// swigluBwd is swigluBwdGo.
func swigluBwd(dgate, dup, dout, gate, up []float32) {
	n := len(gate)
	if !vecAVX512 || n == 0 {
		swigluBwdGo(dgate, dup, dout, gate, up)
		return
	}
	_, _, _, _ = dgate[n-1], dup[n-1], dout[n-1], up[n-1]
	swigluBwdAVX512(&dgate[0], &dup[0], &dout[0], &gate[0], &up[0], n)
}

// adamw is adamwGo.
func adamw(p, g, m, v []float32, a *adamwArgs) {
	n := len(g)
	if !vecAVX512 || n == 0 {
		adamwGo(p, g, m, v, a)
		return
	}
	_, _, _ = p[n-1], m[n-1], v[n-1]
	adamwAVX512(&p[0], &g[0], &m[0], &v[0], n, a)
}

// scaleRow is scaleRowGo.
func scaleRow(x []float32, k float32) {
	if !vecAVX512 || len(x) == 0 {
		scaleRowGo(x, k)
		return
	}
	scaleRowAVX512(&x[0], len(x), k)
}

//go:noescape
func sumSquaresAVX512(x *float32, n int) float64

//go:noescape
func dot3AVX512(dout, w, x *float32, n int) float64

//go:noescape
func rmsScaleAVX512(out, x, w *float32, n int, r float32)

//go:noescape
func rmsDxAVX512(dx, dout, w, x *float32, n int, r, c float32)

//go:noescape
func colSum16AVX512(acc *float64, a, b, s *float32, rows, ld int)

//go:noescape
func ropeHeadsAVX512(out, x, c, s *float32, heads, hd, half int, sign float32)

// sumSquares is sumSquaresGo.
func sumSquares(x []float32) float64 {
	if !vecAVX512 || len(x) == 0 {
		return sumSquaresGo(x)
	}
	return sumSquaresAVX512(&x[0], len(x))
}

// dot3 is dot3Go.
func dot3(g, w, x []float32) float64 {
	n := len(x)
	if !vecAVX512 || n == 0 {
		return dot3Go(g, w, x)
	}
	_, _ = g[n-1], w[n-1]
	return dot3AVX512(&g[0], &w[0], &x[0], n)
}

// rmsScale is rmsScaleGo.
func rmsScale(out, x, w []float32, r float32) {
	n := len(x)
	if !vecAVX512 || n == 0 {
		rmsScaleGo(out, x, w, r)
		return
	}
	_, _ = out[n-1], w[n-1]
	rmsScaleAVX512(&out[0], &x[0], &w[0], n, r)
}

// rmsDx is rmsDxGo.
func rmsDx(dx, g, w, x []float32, r, c float32) {
	n := len(x)
	if !vecAVX512 || n == 0 {
		rmsDxGo(dx, g, w, x, r, c)
		return
	}
	_, _, _ = dx[n-1], g[n-1], w[n-1]
	rmsDxAVX512(&dx[0], &g[0], &w[0], &x[0], n, r, c)
}

// colSum is colSumGo, 16 columns at a time on AVX-512.
func colSum(acc []float64, a, b, s []float32, rows, ld int) {
	j := 0
	if vecAVX512 && rows > 0 {
		last := (rows - 1) * ld
		_ = a[last+len(acc)-1]
		var bp, sp *float32
		if b != nil {
			_ = b[last+len(acc)-1]
			if s != nil {
				_ = s[rows-1]
				sp = &s[0]
			}
		}
		for ; j+16 <= len(acc); j += 16 {
			if b != nil {
				bp = &b[j]
			}
			colSum16AVX512(&acc[j], &a[j], bp, sp, rows, ld)
		}
	}
	if j < len(acc) {
		var bj []float32
		if b != nil {
			bj = b[j:]
		}
		colSumGo(acc[j:], a[j:], bj, s, rows, ld)
	}
}

// ropeHeads is ropeHeadsGo.
func ropeHeads(out, x, c, s []float32, heads, hd, half int, sign float32) {
	if !vecAVX512 || heads == 0 || half == 0 {
		ropeHeadsGo(out, x, c, s, heads, hd, half, sign)
		return
	}
	last := (heads-1)*hd + 2*half - 1
	_, _, _, _ = out[last], x[last], c[half-1], s[half-1]
	ropeHeadsAVX512(&out[0], &x[0], &c[0], &s[0], heads, hd, half, sign)
}

//go:noescape
func addRowAVX512(out, a, b *float32, n int)

//go:noescape
func mulRowAVX512(out, a, b *float32, n int)

// addRow is addRowGo.
func addRow(out, a, b []float32) {
	n := len(out)
	if !vecAVX512 || n == 0 {
		addRowGo(out, a, b)
		return
	}
	_, _ = a[n-1], b[n-1]
	addRowAVX512(&out[0], &a[0], &b[0], n)
}

// mulRow is mulRowGo.
func mulRow(out, a, b []float32) {
	n := len(out)
	if !vecAVX512 || n == 0 {
		mulRowGo(out, a, b)
		return
	}
	_, _ = a[n-1], b[n-1]
	mulRowAVX512(&out[0], &a[0], &b[0], n)
}

//go:noescape
func expSubRowsAVX512(s *float32, ld, rows, first, bk int, diag bool, sub *float32, sums *float64) (done int)

//go:noescape
func dsRowAVX512(dp, p *float32, n int, d float32)

// expSubRowsVec runs expSubRowsAVX512 on rows from r0 and returns how many
// it finished (0 without AVX-512).
func expSubRowsVec(s []float32, ld, r0, rows, bk int, diag bool, sub []float32, sums []float64) int {
	if !vecAVX512 || r0 >= rows {
		return 0
	}
	_ = s[(rows-1)*ld+bk-1]
	_ = sub[rows-1]
	var sp *float64
	if sums != nil {
		_ = sums[rows-1]
		sp = &sums[r0]
	}
	return expSubRowsAVX512(&s[r0*ld], ld, rows-r0, r0, bk, diag, &sub[r0], sp)
}

// dsRow is dsRowGo.
func dsRow(dp, p []float32, d float32) {
	n := len(dp)
	if !vecAVX512 || n == 0 {
		dsRowGo(dp, p, d)
		return
	}
	_ = p[n-1]
	dsRowAVX512(&dp[0], &p[0], n, d)
}
