package tensor

import (
	"math"
	"testing"
)

// TestALiBiSlopesKnownValues checks ALiBiSlopes against the closed
// forms: 2^(−8k/n) for a power of two n; for 12 heads, 8's slopes then
// 16's odd ones; for 40 (Baichuan 2 13B), 32's then 64's odd ones.
func TestALiBiSlopesKnownValues(t *testing.T) {
	pow2 := func(n, k int) float32 { return float32(math.Exp2(-8 * float64(k) / float64(n))) }
	for _, tc := range []struct {
		n    int
		want func(h int) float32
	}{
		{8, func(h int) float32 { return pow2(8, h+1) }},
		{32, func(h int) float32 { return pow2(32, h+1) }},
		{12, func(h int) float32 {
			if h < 8 {
				return pow2(8, h+1)
			}
			return pow2(16, 2*(h-8)+1)
		}},
		{40, func(h int) float32 {
			if h < 32 {
				return pow2(32, h+1)
			}
			return pow2(64, 2*(h-32)+1)
		}},
	} {
		got := ALiBiSlopes(tc.n)
		if len(got) != tc.n {
			t.Fatalf("ALiBiSlopes(%d) has %d slopes", tc.n, len(got))
		}
		for h, s := range got {
			if w := tc.want(h); math.Abs(float64(s-w)) > 1e-7*float64(w) {
				t.Errorf("ALiBiSlopes(%d)[%d] = %v, want %v", tc.n, h, s, w)
			}
		}
	}
	if got := ALiBiSlopes(0); got != nil {
		t.Errorf("ALiBiSlopes(0) = %v, want nil", got)
	}
}
