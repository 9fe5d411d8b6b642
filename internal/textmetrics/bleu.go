package textmetrics

import "math"

// bleu4 is nltk's
//
//	sentence_bleu([list(reference)], list(hypothesis),
//	              smoothing_function=SmoothingFunction().method3)
//
// on Unicode code points, as a fraction in [0, 1]. Step by step (nltk
// 3.8, nltk/translate/bleu_score.py, corpus_bleu with one sentence):
//
//   - modified precision for n = 1..4: numerator = hypothesis n-gram counts
//     clipped by the reference's counts, denominator = max(1, number of
//     hypothesis n-grams); a side shorter than n has no n-grams, so a
//     hypothesis shorter than 4 characters has 0/1 at the orders it lacks;
//   - if the unigram numerator is 0 (empty hypothesis, or no character in
//     common) the score is 0;
//   - method3: the k-th order (k = 1, 2, ...) whose numerator is 0 gets
//     precision 1 / (2^k * denominator);
//   - score = BP * exp(fsum(0.25 * log(p_n))), with BP = 1 when the
//     hypothesis is longer than the reference, else exp(1 - r/c).
func bleu4(hypothesis, reference string) float64 {
	hyp, ref := []rune(hypothesis), []rune(reference)
	var num, den [4]int
	for n := 1; n <= 4; n++ {
		num[n-1], den[n-1] = modifiedPrecision(hyp, ref, n)
	}
	if num[0] == 0 {
		return 0
	}
	var terms [4]float64
	k := 1
	for i := range 4 {
		var p float64
		if num[i] == 0 {
			p = 1 / float64((1<<k)*den[i])
			k++
		} else {
			p = float64(num[i]) / float64(den[i])
		}
		terms[i] = 0.25 * math.Log(p)
	}
	return brevityPenalty(len(ref), len(hyp)) * math.Exp(fsum(terms[:]))
}

// modifiedPrecision is nltk's modified_precision for a single reference:
// the clipped n-gram matches and max(1, number of hypothesis n-grams).
func modifiedPrecision(hyp, ref []rune, n int) (num, den int) {
	hc, rc := ngramCounts(hyp, n), ngramCounts(ref, n)
	total := 0
	for g, c := range hc {
		num += min(c, rc[g])
		total += c
	}
	return num, max(1, total)
}

func ngramCounts(rs []rune, n int) map[string]int {
	counts := make(map[string]int)
	for i := 0; i+n <= len(rs); i++ {
		counts[string(rs[i:i+n])]++
	}
	return counts
}

// brevityPenalty is nltk's brevity_penalty(closest_ref_len, hyp_len).
func brevityPenalty(refLen, hypLen int) float64 {
	switch {
	case hypLen > refLen:
		return 1
	case hypLen == 0:
		return 0
	default:
		return math.Exp(1 - float64(refLen)/float64(hypLen))
	}
}

// fsum is Python's math.fsum: the correctly rounded sum of xs (Shewchuk's
// algorithm with Python's final half-even correction), for finite xs.
func fsum(xs []float64) float64 {
	var partials []float64
	for _, x := range xs {
		i := 0
		for _, y := range partials {
			if math.Abs(x) < math.Abs(y) {
				x, y = y, x
			}
			hi := x + y
			lo := y - (hi - x)
			if lo != 0 {
				partials[i] = lo
				i++
			}
			x = hi
		}
		partials = partials[:i]
		if x != 0 {
			partials = append(partials, x)
		}
	}
	n := len(partials)
	if n == 0 {
		return 0
	}
	n--
	hi := partials[n]
	var lo float64
	for n > 0 {
		x := hi
		n--
		y := partials[n]
		hi = x + y
		yr := hi - x
		lo = y - yr
		if lo != 0 {
			break
		}
	}
	if n > 0 && (lo < 0 && partials[n-1] < 0 || lo > 0 && partials[n-1] > 0) {
		y := lo * 2
		x := hi + y
		yr := x - hi
		if y == yr {
			hi = x
		}
	}
	return hi
}
