package tensor

import (
	"math"
	"math/bits"
)

// ALiBiSlopes returns the standard ALiBi slopes of heads attention heads
// (Press et al., "Train Short, Test Long"), as Baichuan 2 13B
// (_get_interleave) and BLOOM (build_alibi_tensor) compute them: for a
// power of two n, head h (from 0) gets start^(h+1) with start =
// 2^(−8/n); otherwise, with p the largest power of two below heads, the
// first p heads get p's slopes and the remaining heads−p get every other
// slope of 2p's (the 1st, 3rd, 5th, ...). Slopes are computed in float64
// and rounded once to float32, as Baichuan's torch.Tensor(list) does.
// heads <= 0 gives nil.
func ALiBiSlopes(heads int) []float32 {
	if heads <= 0 {
		return nil
	}
	s64 := alibiSlopes64(heads)
	out := make([]float32, heads)
	for i, s := range s64 {
		out[i] = float32(s)
	}
	return out
}

// alibiSlopes64 is Baichuan's _get_interleave in float64, operation for
// operation.
func alibiSlopes64(n int) []float64 {
	if n&(n-1) == 0 {
		return alibiPow2(n)
	}
	p := 1 << (bits.Len(uint(n)) - 1) // 2^floor(log2 n)
	out := alibiPow2(p)
	extra := alibiSlopes64(2 * p)
	for i := 0; len(out) < n; i += 2 {
		out = append(out, extra[i])
	}
	return out
}

// alibiPow2 is _get_interleave_power_of_2(n): start·ratio^i with
// start = ratio = 2^(−2^−(log2 n − 3)).
func alibiPow2(n int) []float64 {
	start := math.Pow(2, -math.Pow(2, -(math.Log2(float64(n))-3)))
	out := make([]float64, n)
	for i := range out {
		out[i] = start * math.Pow(start, float64(i))
	}
	return out
}
