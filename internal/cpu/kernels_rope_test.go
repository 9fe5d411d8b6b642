package cpu

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestRoPETableSameBits checks the cached cos/sin tables against computing
// the angles per call, across a change of invFreq and positions beyond the
// table (which must grow), and that out-of-range positions skip the table.
func TestRoPETableSameBits(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	const heads, hd, rot = 3, 8, 6
	var tab ropeTable
	for _, tc := range []struct {
		name    string
		invFreq []float32
		pos     []int32
		cached  bool
	}{
		{"first", []float32{1, 0.1, 0.01}, []int32{0, 1, 2, 3, 7}, true},
		{"beyond the table", []float32{1, 0.1, 0.01}, []int32{5, 300, 1000}, true},
		{"new invFreq", []float32{0.5, 0.05, 0.005}, []int32{3, 2, 1, 0, 999}, true},
		{"negative position", []float32{0.5, 0.05, 0.005}, []int32{1, -1}, false},
		{"too far", []float32{0.5, 0.05, 0.005}, []int32{maxRoPETable}, false},
	} {
		n := len(tc.pos)
		x := randF32(r, n*heads*hd, 1)
		for _, sign := range []float32{1, -1} {
			k := ropeK{out: make([]float32, len(x)), x: x, invFreq: tc.invFreq, pos: tc.pos,
				heads: heads, hd: hd, rotDim: rot, sign: sign}
			k.run(0, n)
			want := slices.Clone(k.out)
			k.cos, k.sin = tab.lookup(tc.invFreq, tc.pos)
			if (k.cos != nil) != tc.cached {
				t.Fatalf("%s: table used = %v, want %v", tc.name, k.cos != nil, tc.cached)
			}
			clear(k.out)
			k.run(0, n)
			if !bitsEqual(k.out, want) {
				t.Errorf("%s sign %v: table path differs from per-call angles", tc.name, sign)
			}
		}
	}
}
