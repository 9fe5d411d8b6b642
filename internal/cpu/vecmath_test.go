package cpu

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// withVec runs fn with the AVX-512 row kernels on (if the CPU has them) and
// off, returning both results.
func withVec[T any](t *testing.T, fn func() T) (vec, portable T) {
	t.Helper()
	old := vecAVX512
	defer func() { vecAVX512 = old }()
	vecAVX512 = false
	portable = fn()
	vec = portable
	if old {
		vecAVX512 = true
		vec = fn()
	} else {
		t.Log("no AVX-512 on this CPU: only the portable path runs")
	}
	return vec, portable
}

// sameBits reports whether a and b hold the same float32 bits, counting
// any two NaNs as equal.
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) && !(a[i] != a[i] && b[i] != b[i]) {
			return false
		}
	}
	return true
}

// vecLengths covers empty, sub-vector, vector, block and multi-block rows
// with ragged tails.
var vecLengths = []int{0, 1, 5, 15, 16, 17, 31, 64, 100, 255, 256, 257, 300, 511, 512, 1000, 4099}

func TestExpSubRowMatchesPortable(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	type out struct {
		row []float32
		sum float64
	}
	cases := []struct {
		name string
		gen  func(n int) ([]float32, float32)
	}{
		{"logits", func(n int) ([]float32, float32) {
			x := randF32(r, n, 4)
			return x, rowMax(x)
		}},
		{"wide range", func(n int) ([]float32, float32) {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(r.Float64()*220 - 120)
			}
			return x, 3
		}},
		{"masked", func(n int) ([]float32, float32) {
			x := randF32(r, n, 1)
			for i := range x {
				if i%3 == 0 {
					x[i] = float32(math.Inf(-1))
				}
			}
			return x, 0.5
		}},
		{"slow path late", func(n int) ([]float32, float32) {
			// In range, then one element above expfMax in the last
			// block: the assembly stops at that block, Go finishes.
			x := randF32(r, n, 1)
			if n > 0 {
				x[n-1] = 88.5
			}
			return x, 0
		}},
		{"NaN and +Inf", func(n int) ([]float32, float32) {
			x := randF32(r, n, 1)
			if n > 20 {
				x[n/2] = float32(math.NaN())
				x[n/3] = float32(math.Inf(1))
			}
			return x, 0
		}},
	}
	for _, tc := range cases {
		for _, n := range vecLengths {
			x, sub := tc.gen(n)
			vec, port := withVec(t, func() out {
				row := slices.Clone(x)
				return out{row, expSubRow(row, sub)}
			})
			ref := slices.Clone(x)
			refSum := expSubRowGo(ref, sub)
			if !sameBits(vec.row, port.row) || !sameBits(port.row, ref) {
				t.Errorf("%s n=%d: exp values differ between the AVX-512 and portable paths", tc.name, n)
			}
			same := vec.sum == port.sum && port.sum == refSum
			if math.IsNaN(refSum) {
				same = math.IsNaN(vec.sum) && math.IsNaN(port.sum)
			}
			if !same {
				t.Errorf("%s n=%d: sums %v (vec) %v (portable) %v (reference)", tc.name, n, vec.sum, port.sum, refSum)
			}
		}
	}
}

// TestExpSubRowAccuracy documents the error of expSubRow against float64:
// each value within 3e-7 relative of e^(x-sub) for the float32 x-sub, the sum within 1e-6
// relative for a 32000-wide row.
func TestExpSubRowAccuracy(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	x := randF32(r, 32000, 3)
	sub := rowMax(x)
	row := slices.Clone(x)
	sum := expSubRow(row, sub)
	var want float64
	var worst float64
	for i, v := range x {
		e := math.Exp(float64(v - sub)) // the float32 argument expSubRow sees
		want += e
		if rel := math.Abs(float64(row[i])-e) / e; rel > worst {
			worst = rel
		}
	}
	if worst > 3e-7 {
		t.Errorf("exp relative error %.3g, want <= 3e-7", worst)
	}
	if rel := math.Abs(sum-want) / want; rel > 1e-6 {
		t.Errorf("sum relative error %.3g, want <= 1e-6", rel)
	}
}

func TestSwiGLUMatchesPortable(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	special := []float32{0, float32(math.Copysign(0, -1)), 87, 87.5, 88, 88.5, 100, -87, -88, -88.5, -100, 1e30, -1e30,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())}
	for _, n := range vecLengths {
		gate, up, dout := randF32(r, n, 3), randF32(r, n, 1), randF32(r, n, 1)
		for i := 0; i < n && i < len(special); i++ {
			gate[(i*7)%n] = special[i]
		}
		type out struct{ fwd, dgate, dup []float32 }
		vec, port := withVec(t, func() out {
			o := out{make([]float32, n), make([]float32, n), make([]float32, n)}
			swigluFwd(o.fwd, gate, up)
			swigluBwd(o.dgate, o.dup, dout, gate, up)
			return o
		})
		if !sameBits(vec.fwd, port.fwd) || !sameBits(vec.dgate, port.dgate) || !sameBits(vec.dup, port.dup) {
			t.Errorf("n=%d: SwiGLU differs between the AVX-512 and portable paths", n)
		}
		// Aliased outputs (dgate = gate, dup = up) give the same values.
		g2, u2 := slices.Clone(gate), slices.Clone(up)
		swigluBwd(g2, u2, dout, g2, u2)
		if !sameBits(g2, vec.dgate) || !sameBits(u2, vec.dup) {
			t.Errorf("n=%d: aliased SwiGLU backward differs", n)
		}
	}
}

// TestSigmoidfAccuracy documents sigmoidf's error against float64: within
// 4e-7 relative wherever the result is a normal float32.
func TestSigmoidfAccuracy(t *testing.T) {
	var worst float64
	for g := float32(-87); g <= 90; g += 0.0071 {
		got := float64(sigmoidf(g))
		want := 1 / (1 + math.Exp(-float64(g)))
		if rel := math.Abs(got-want) / want; rel > worst {
			worst = rel
		}
	}
	if worst > 4e-7 {
		t.Errorf("sigmoidf relative error %.3g, want <= 4e-7", worst)
	}
	for _, tc := range []struct{ g, want float32 }{
		{0, 0.5}, {100, 1}, {float32(math.Inf(1)), 1}, {float32(math.Inf(-1)), float32(1 / (1 + math.Exp(88)))},
	} {
		if got := sigmoidf(tc.g); got != tc.want {
			t.Errorf("sigmoidf(%v) = %v, want %v", tc.g, got, tc.want)
		}
	}
	if got := sigmoidf(float32(math.NaN())); got == got {
		t.Errorf("sigmoidf(NaN) = %v, want NaN", got)
	}
}

func TestAdamWMatchesPortable(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	args := &adamwArgs{decay: 1 - 1e-3*0.1, b1: 0.9, b1c: 1 - float32(0.9), b2: 0.999, b2c: 1 - float32(0.999),
		step: 1e-3 / 0.1, bc2s: float32(math.Sqrt(1 - 0.999)), eps: 1e-8}
	for _, n := range vecLengths {
		p, g, m := randF32(r, n, 1), randF32(r, n, 0.1), randF32(r, n, 0.01)
		v := randF32(r, n, 0.001)
		for i := range v {
			v[i] *= v[i]
		}
		type out struct{ p, m, v []float32 }
		vec, port := withVec(t, func() out {
			o := out{slices.Clone(p), slices.Clone(m), slices.Clone(v)}
			adamw(o.p, g, o.m, o.v, args)
			return o
		})
		if !sameBits(vec.p, port.p) || !sameBits(vec.m, port.m) || !sameBits(vec.v, port.v) {
			t.Errorf("n=%d: AdamW differs between the AVX-512 and portable paths", n)
		}
	}
}

func TestScaleRowMatchesPortable(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, n := range vecLengths {
		x := randF32(r, n, 1)
		vec, port := withVec(t, func() []float32 {
			y := slices.Clone(x)
			scaleRow(y, 0.37)
			return y
		})
		if !sameBits(vec, port) {
			t.Errorf("n=%d: scaleRow differs between the AVX-512 and portable paths", n)
		}
		for i, v := range x {
			if port[i] != v*0.37 {
				t.Fatalf("n=%d: scaleRow[%d] = %v, want %v", n, i, port[i], v*0.37)
			}
		}
	}
}

func TestRowMaxMatchesPortable(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	negZero := float32(math.Copysign(0, -1))
	for _, n := range vecLengths {
		for _, fill := range []string{"random", "with specials", "zeros", "all NaN"} {
			x := randF32(r, n, 5)
			for i := range x {
				switch fill {
				case "with specials":
					switch i % 7 {
					case 1:
						x[i] = nan
					case 3:
						x[i] = -inf
					}
				case "zeros":
					x[i] = 0
					if r.IntN(2) == 0 {
						x[i] = negZero
					}
				case "all NaN":
					x[i] = nan
				}
			}
			vec, port := withVec(t, func() []float32 { return []float32{rowMax(x)} })
			if !sameBits(vec, port) {
				t.Errorf("%s n=%d: rowMax %v (AVX-512) != %v (portable)", fill, n, vec[0], port[0])
			}
			want := float32(math.Inf(-1))
			for _, v := range x {
				if v > want {
					want = v
				}
			}
			if port[0] != want {
				t.Errorf("%s n=%d: rowMax = %v, want %v", fill, n, port[0], want)
			}
		}
	}
}

// TestExpSubRowsMatchesRows: the tile version gives, row by row, the bits
// of expSubRow on the row (and its sum), on and off the diagonal, with rows
// that need the slow path (overflow, NaN) in the middle.
func TestExpSubRowsMatchesRows(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	const ld = 70
	for _, bk := range []int{1, 15, 16, 17, 64} {
		for _, rows := range []int{1, 5, 64} {
			for _, diag := range []bool{false, true} {
				s := make([]float32, rows*ld)
				for i := range s {
					s[i] = float32(r.NormFloat64() * 4)
				}
				sub := make([]float32, rows)
				for i := range sub {
					sub[i] = float32(r.NormFloat64())
				}
				if rows > 3 {
					s[2*ld] = 200                 // row 2 overflows: slow path
					s[3*ld] = float32(math.NaN()) // row 3 is NaN
					sub[1] = float32(math.Inf(1)) // row 1 becomes zeros
				}
				want, wantSums := append([]float32(nil), s...), make([]float64, rows)
				for i := range rows {
					n := bk
					if diag {
						n = min(i+1, bk)
					}
					wantSums[i] = expSubRow(want[i*ld:i*ld+n], sub[i])
				}
				for _, vec := range []bool{false, true} {
					if vec && !vecAVX512 {
						continue
					}
					old := vecAVX512
					vecAVX512 = vec
					got, sums := append([]float32(nil), s...), make([]float64, rows)
					expSubRows(got, ld, rows, bk, diag, sub, sums)
					vecAVX512 = old
					if !sameBits(got, want) {
						t.Fatalf("bk=%d rows=%d diag=%v vec=%v: tile differs from rows", bk, rows, diag, vec)
					}
					for i := range sums {
						if math.Float64bits(sums[i]) != math.Float64bits(wantSums[i]) && !(math.IsNaN(sums[i]) && math.IsNaN(wantSums[i])) {
							t.Fatalf("bk=%d rows=%d diag=%v vec=%v: sum of row %d = %v, want %v", bk, rows, diag, vec, i, sums[i], wantSums[i])
						}
					}
				}
			}
		}
	}
}

// TestDSRowMatchesPortable: the attention dS row gives the same bits on
// AVX-512 and in Go.
func TestDSRowMatchesPortable(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, n := range vecLengths {
		dp, p := make([]float32, n), make([]float32, n)
		for i := range dp {
			dp[i], p[i] = float32(r.NormFloat64()), float32(r.Float64())
		}
		got, port := withVec(t, func() []float32 {
			out := append([]float32(nil), dp...)
			dsRow(out, p, 0.3)
			return out
		})
		if !sameBits(got, port) {
			t.Fatalf("n=%d: differs from portable", n)
		}
	}
}
