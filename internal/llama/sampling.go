package llama

import (
	"math"
	"math/rand/v2"
	"sort"
)

// sampler picks the next token from a row of logits.
type sampler struct {
	o   GenerateOptions
	rng *rand.Rand
	buf []float64
	idx []int
}

func newSampler(o GenerateOptions, vocab int) *sampler {
	return &sampler{o: o, rng: rand.New(rand.NewPCG(o.Seed, 0x73616d70)), buf: make([]float64, vocab), idx: make([]int, vocab)}
}

// pick applies the repetition penalty over history, then greedy argmax
// (lowest id among ties) at temperature 0, or temperature, top-k and
// top-p filtering and a draw.
func (s *sampler) pick(logits []float32, history []int32) int32 {
	z := s.buf[:len(logits)]
	for i, v := range logits {
		z[i] = float64(v)
	}
	if p := s.o.RepetitionPenalty; p > 0 && p != 1 {
		seen := map[int32]bool{}
		for _, t := range history {
			if seen[t] || int(t) >= len(z) || t < 0 {
				continue
			}
			seen[t] = true
			if z[t] > 0 {
				z[t] /= p
			} else {
				z[t] *= p
			}
		}
	}
	if s.o.Temperature <= 0 {
		best := 0
		for i, v := range z {
			if v > z[best] {
				best = i
			}
		}
		return int32(best)
	}
	return int32(sampleFiltered(z, s.o.Temperature, s.o.TopK, s.o.TopP, s.idx[:len(z)], s.rng.Float64()))
}

// sampleFiltered draws from softmax(z/temperature) restricted to the top k
// tokens (k > 0) and then to the smallest set whose probability reaches
// topP (0 < topP < 1), using the uniform number u. Candidates are ordered
// by probability, ties by id, so a draw is reproducible.
func sampleFiltered(z []float64, temperature float64, topK int, topP float64, idx []int, u float64) int {
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return z[idx[a]] > z[idx[b]] })
	n := len(idx)
	if topK > 0 && topK < n {
		n = topK
	}
	mx := z[idx[0]]
	probs := make([]float64, n)
	var sum float64
	for i := range n {
		probs[i] = math.Exp((z[idx[i]] - mx) / temperature)
		sum += probs[i]
	}
	for i := range probs {
		probs[i] /= sum
	}
	if topP > 0 && topP < 1 {
		// Keep tokens while the mass before them is below topP (the first
		// token always stays), as transformers' TopPLogitsWarper does.
		var cum float64
		keep := 0
		for keep < n && (keep == 0 || cum < topP) {
			cum += probs[keep]
			keep++
		}
		n = keep
		probs = probs[:n]
		sum = 0
		for _, p := range probs {
			sum += p
		}
		for i := range probs {
			probs[i] /= sum
		}
	}
	var cum float64
	for i, p := range probs {
		cum += p
		if u < cum {
			return idx[i]
		}
	}
	return idx[n-1]
}
