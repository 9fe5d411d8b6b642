//go:build !amd64 || purego

package cpu

// vecAVX512 is false off amd64: the row kernels run their Go definitions.
var vecAVX512 = false

func expSubRowVec(row []float32, sub float32) (float64, int) { return 0, 0 }

func swigluFwd(out, gate, up []float32) { swigluFwdGo(out, gate, up) }

func swigluBwd(dgate, dup, dout, gate, up []float32) { swigluBwdGo(dgate, dup, dout, gate, up) }

func adamw(p, g, m, v []float32, a *adamwArgs) { adamwGo(p, g, m, v, a) }

func scaleRow(x []float32, k float32) { scaleRowGo(x, k) }

func rowMaxVec(row []float32) (float32, bool) { return 0, false }

func sumSquares(x []float32) float64 { return sumSquaresGo(x) }

func dot3(g, w, x []float32) float64 { return dot3Go(g, w, x) }

func rmsScale(out, x, w []float32, r float32) { rmsScaleGo(out, x, w, r) }

func rmsDx(dx, g, w, x []float32, r, c float32) { rmsDxGo(dx, g, w, x, r, c) }

func colSum(acc []float64, a, b, s []float32, rows, ld int) { colSumGo(acc, a, b, s, rows, ld) }

func ropeHeads(out, x, c, s []float32, heads, hd, half int, sign float32) {
	ropeHeadsGo(out, x, c, s, heads, hd, half, sign)
}

func addRow(out, a, b []float32) { addRowGo(out, a, b) }

func mulRow(out, a, b []float32) { mulRowGo(out, a, b) }

func expSubRowsVec(s []float32, ld, r0, rows, bk int, diag bool, sub []float32, sums []float64) int {
	return 0
}

func dsRow(dp, p []float32, d float32) { dsRowGo(dp, p, d) }
