package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

func randRow(r *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * scale)
	}
	return x
}

// TestRMSRowKernelsMatchPortable: sum of squares, the triple dot product,
// the scaling and the input gradient give the same bits on AVX-512 and in
// Go, for every length class, with dx aliasing dout.
func TestRMSRowKernelsMatchPortable(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range vecLengths {
		x, g, w := randRow(r, n, 3), randRow(r, n, 1), randRow(r, n, 1)
		ss, ssGo := withVec(t, func() float64 { return sumSquares(x) })
		if math.Float64bits(ss) != math.Float64bits(ssGo) {
			t.Errorf("n=%d: sumSquares %v, portable %v", n, ss, ssGo)
		}
		var want float64
		for _, v := range x {
			want += float64(v) * float64(v)
		}
		if math.Abs(ss-want) > 1e-12*want {
			t.Errorf("n=%d: sumSquares %v, serial sum %v", n, ss, want)
		}
		d, dGo := withVec(t, func() float64 { return dot3(g, w, x) })
		if math.Float64bits(d) != math.Float64bits(dGo) {
			t.Errorf("n=%d: dot3 %v, portable %v", n, d, dGo)
		}
		out, outGo := withVec(t, func() []float32 {
			o := make([]float32, n)
			rmsScale(o, x, w, 0.37)
			return o
		})
		if !sameBits(out, outGo) {
			t.Errorf("n=%d: rmsScale differs from portable", n)
		}
		dx, dxGo := withVec(t, func() []float32 {
			o := append([]float32(nil), g...) // dx aliases dout
			rmsDx(o, o, w, x, 0.37, -1.25)
			return o
		})
		if !sameBits(dx, dxGo) {
			t.Errorf("n=%d: rmsDx differs from portable", n)
		}
	}
}

// TestColSumMatchesPortable: the column sums (plain, product, scaled
// product) give the same bits on AVX-512 and in Go for widths around the
// 16-column groups, and the same as a serial float64 loop.
func TestColSumMatchesPortable(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, cols := range []int{1, 15, 16, 17, 33, 64, 70} {
		for _, rows := range []int{0, 1, 7, 130} {
			ld := cols + 3
			a, b, s := randRow(r, max(rows*ld, 1), 1), randRow(r, max(rows*ld, 1), 1), randRow(r, max(rows, 1), 1)
			for mode := range 3 {
				var bm, sm []float32
				if mode > 0 {
					bm = b
				}
				if mode > 1 {
					sm = s
				}
				got, port := withVec(t, func() []float64 {
					acc := make([]float64, cols)
					acc[0] = 0.5 // accumulates onto what is there
					colSum(acc, a, bm, sm, rows, ld)
					return acc
				})
				for j := range got {
					want := 0.0
					if j == 0 {
						want = 0.5
					}
					for i := 0; i < rows; i++ {
						term := float64(a[i*ld+j])
						if bm != nil {
							term *= float64(bm[i*ld+j])
							if sm != nil {
								term *= float64(sm[i])
							}
						}
						want += term
					}
					if math.Float64bits(got[j]) != math.Float64bits(port[j]) || math.Float64bits(got[j]) != math.Float64bits(want) {
						t.Fatalf("cols=%d rows=%d mode=%d: acc[%d] = %v, portable %v, serial %v", cols, rows, mode, j, got[j], port[j], want)
					}
				}
			}
		}
	}
}

// TestRoPEHeadsMatchPortable: the rotation gives the same bits on AVX-512
// and in Go for half widths around a vector, partial rotary dims (dims
// past 2·half untouched), both signs and in place.
func TestRoPEHeadsMatchPortable(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, half := range []int{1, 8, 15, 16, 17, 24, 32, 64} {
		for _, extra := range []int{0, 6} {
			hd, heads := 2*half+extra, 3
			x, c, s := randRow(r, heads*hd, 1), randRow(r, half, 1), randRow(r, half, 1)
			for _, sign := range []float32{1, -1} {
				for _, inPlace := range []bool{false, true} {
					got, port := withVec(t, func() []float32 {
						out := make([]float32, len(x))
						for i := range out {
							out[i] = 7
						}
						if inPlace {
							copy(out, x)
						}
						src := x
						if inPlace {
							src = out
						}
						ropeHeads(out, src, c, s, heads, hd, half, sign)
						return out
					})
					if !sameBits(got, port) {
						t.Fatalf("half=%d hd=%d sign=%v inPlace=%v: differs from portable", half, hd, sign, inPlace)
					}
					for h := 0; h < heads; h++ {
						for i := 2 * half; i < hd; i++ {
							want := float32(7)
							if inPlace {
								want = x[h*hd+i]
							}
							if got[h*hd+i] != want {
								t.Fatalf("half=%d hd=%d: dim %d of head %d changed", half, hd, i, h)
							}
						}
					}
				}
			}
		}
	}
}

// TestAddMulRowMatchPortable: the elementwise sum and product give the
// same bits on AVX-512 and in Go, for every length class, in place.
func TestAddMulRowMatchPortable(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, n := range vecLengths {
		a, b := randRow(r, n, 1), randRow(r, n, 1)
		for _, fn := range []func(out, a, b []float32){addRow, mulRow} {
			got, port := withVec(t, func() []float32 {
				out := append([]float32(nil), a...)
				fn(out, out, b)
				return out
			})
			if !sameBits(got, port) {
				t.Fatalf("n=%d: differs from portable", n)
			}
			for i := range got {
				if want := a[i] + b[i]; got[i] != want && got[i] != a[i]*b[i] {
					t.Fatalf("n=%d: out[%d] = %v, neither sum nor product", n, i, got[i])
				}
			}
		}
	}
}
