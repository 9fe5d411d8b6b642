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
