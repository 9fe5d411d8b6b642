package cpu

// This file holds the portable definitions of the RMSNorm, column-sum and
// RoPE row kernels. On amd64 each runs on AVX-512 assembly
// (rowkernels_amd64.s) that does the same float32 and float64 operations in
// the same order, so both give the same bits (rowkernels_test.go). Explicit
// conversions keep the Go compiler from fusing a product into an addition
// where the assembly rounds the product first.

// sumSquaresGo returns Σ x² in float64: element i goes to lane i mod 16,
// and the lanes are folded i+8, +4, +2, +1. (A float32 squared is exact in
// float64.)
func sumSquaresGo(x []float32) float64 {
	var acc [16]float64
	for i, v := range x {
		acc[i&15] += float64(v) * float64(v)
	}
	return foldLanes64(&acc)
}

// dot3Go returns Σ g·w·x in float64 (g·w exact, the triple product rounded
// once), summed in lanes like sumSquaresGo.
func dot3Go(g, w, x []float32) float64 {
	var acc [16]float64
	for i, v := range x {
		acc[i&15] += float64(float64(g[i]) * float64(w[i]) * float64(v))
	}
	return foldLanes64(&acc)
}

// foldLanes64 sums 16 float64 lanes: lane i plus lane i+8, then +4, +2, +1.
func foldLanes64(acc *[16]float64) float64 {
	var d [8]float64
	for i := range d {
		d[i] = acc[i] + acc[i+8]
	}
	for i := 0; i < 4; i++ {
		d[i] += d[i+4]
	}
	for i := 0; i < 2; i++ {
		d[i] += d[i+2]
	}
	return d[0] + d[1]
}

// rmsScaleGo sets out[j] = x[j]·r·w[j] (rounded after each product).
func rmsScaleGo(out, x, w []float32, r float32) {
	for j, v := range x {
		out[j] = float32(v*r) * w[j]
	}
}

// rmsDxGo sets dx[j] = r·(g[j]·w[j] − x[j]·c), RMSNorm's input gradient.
func rmsDxGo(dx, g, w, x []float32, r, c float32) {
	for j, v := range x {
		dx[j] = r * (float32(g[j]*w[j]) - float32(v*c))
	}
}

// colSumGo adds to acc[j] (j < len(acc)) the column sums over rows of a
// (row stride ld): Σ_i a[i,j] when b is nil, else Σ_i a[i,j]·b[i,j]·s[i]
// (s nil: 1), each term in float64, summed over rows in order.
func colSumGo(acc []float64, a, b, s []float32, rows, ld int) {
	w := len(acc)
	for i := 0; i < rows; i++ {
		ar := a[i*ld : i*ld+w]
		if b == nil {
			for j, v := range ar {
				acc[j] += float64(v)
			}
			continue
		}
		br := b[i*ld : i*ld+w]
		si := float64(1)
		if s != nil {
			si = float64(s[i])
		}
		for j, v := range ar {
			acc[j] += float64(float64(v) * float64(br[j]) * si)
		}
	}
}

// ropeHeadsGo rotates the first 2·half dims of each of heads rows of x
// (row stride hd) by the angles with cosines c and sines sign·s:
// out = (x1·c − x2·s, x2·c + x1·s) on the halves x1, x2. out may be x.
func ropeHeadsGo(out, x, c, s []float32, heads, hd, half int, sign float32) {
	c, s = c[:half], s[:half]
	for h := 0; h < heads; h++ {
		xr := x[h*hd : h*hd+2*half]
		or := out[h*hd : h*hd+2*half]
		for i := range half {
			x1, x2 := xr[i], xr[i+half]
			si := sign * s[i]
			or[i] = float32(x1*c[i]) - float32(x2*si)
			or[i+half] = float32(x2*c[i]) + float32(x1*si)
		}
	}
}

// addRowGo sets out[i] = a[i] + b[i]; out may alias a or b.
func addRowGo(out, a, b []float32) {
	a, b = a[:len(out)], b[:len(out)]
	for i := range out {
		out[i] = a[i] + b[i]
	}
}

// mulRowGo sets out[i] = a[i]·b[i]; out may alias a or b.
func mulRowGo(out, a, b []float32) {
	a, b = a[:len(out)], b[:len(out)]
	for i := range out {
		out[i] = a[i] * b[i]
	}
}
