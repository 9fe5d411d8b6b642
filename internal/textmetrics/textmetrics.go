package textmetrics

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Scores are the four similarity scores LLaMA Factory's sft predict reports
// (predict_bleu-4, predict_rouge-1, predict_rouge-2, predict_rouge-l), in
// percent: 0 to 100.
type Scores struct {
	BLEU4, Rouge1, Rouge2, RougeL float64
}

// Sentence scores one prediction against its reference the way LLaMA
// Factory's ComputeSimilarity scores one sample: ROUGE F-scores on the
// words of Tokens, BLEU-4 on characters, each times 100 and rounded to 4
// decimal places (Python's round(x, 4)). ROUGE is 0 when either text is
// empty or all whitespace; BLEU-4 does not look at that.
func Sentence(prediction, reference string) Scores {
	r := rougeScores(strings.Join(segment(prediction), " "), strings.Join(segment(reference), " "))
	return Scores{
		BLEU4:  percent(bleu4(prediction, reference)),
		Rouge1: percent(r.r1),
		Rouge2: percent(r.r2),
		RougeL: percent(r.rl),
	}
}

// Corpus returns the mean of the per-sample Sentence scores, summed the way
// numpy.mean sums a float64 array, so that the result is the number LLaMA
// Factory writes for the same texts (up to the tokenisation difference the
// package comment describes). The two slices must have the same, non-zero
// length.
func Corpus(predictions, references []string) (Scores, error) {
	if len(predictions) != len(references) {
		return Scores{}, fmt.Errorf("textmetrics: %d predictions but %d references", len(predictions), len(references))
	}
	if len(predictions) == 0 {
		return Scores{}, errors.New("textmetrics: no samples to score")
	}
	n := len(predictions)
	bleu := make([]float64, n)
	r1 := make([]float64, n)
	r2 := make([]float64, n)
	rl := make([]float64, n)
	for i := range predictions {
		s := Sentence(predictions[i], references[i])
		bleu[i], r1[i], r2[i], rl[i] = s.BLEU4, s.Rouge1, s.Rouge2, s.RougeL
	}
	return Scores{
		BLEU4:  npMean(bleu),
		Rouge1: npMean(r1),
		Rouge2: npMean(r2),
		RougeL: npMean(rl),
	}, nil
}

// percent is LLaMA Factory's round(x * 100, 4).
func percent(x float64) float64 { return pyRound(x*100, 4) }

// pyRound is Python's round(x, ndigits) for finite x: the decimal value with
// ndigits places nearest to x's exact binary value, ties to even, read back
// as the nearest float64. strconv does both steps with correct rounding.
func pyRound(x float64, ndigits int) float64 {
	v, err := strconv.ParseFloat(strconv.FormatFloat(x, 'f', ndigits, 64), 64)
	if err != nil {
		// FormatFloat's 'f' output always parses; a failure is a bug here.
		panic(fmt.Sprintf("textmetrics: reparse of %v: %v", x, err))
	}
	return v
}

// npBufSize is numpy's default ufunc buffer size: np.add.reduce hands a
// contiguous float64 array to its inner loop in chunks of this many
// elements and adds the chunk sums one after another.
const npBufSize = 8192

// npMean is float(np.mean(xs)) for a 1-D float64 array: 0.0 plus the
// pairwise sum of each 8192-element chunk, in order, divided by the count.
func npMean(xs []float64) float64 {
	sum := 0.0
	for start := 0; start < len(xs); start += npBufSize {
		sum += pairwiseSum(xs[start:min(start+npBufSize, len(xs))])
	}
	return sum / float64(len(xs))
}

// pairwiseSum is numpy's DOUBLE_pairwise_sum: a plain loop below 8 items,
// eight interleaved accumulators up to 128 items, and above that a split
// at half the length rounded down to a multiple of 8.
func pairwiseSum(a []float64) float64 {
	n := len(a)
	switch {
	case n < 8:
		res := 0.0
		for _, x := range a {
			res += x
		}
		return res
	case n <= 128:
		var r [8]float64
		copy(r[:], a[:8])
		i := 8
		for ; i < n-n%8; i += 8 {
			for j := range 8 {
				r[j] += a[i+j]
			}
		}
		res := ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
		for ; i < n; i++ {
			res += a[i]
		}
		return res
	default:
		n2 := n / 2
		n2 -= n2 % 8
		return pairwiseSum(a[:n2]) + pairwiseSum(a[n2:])
	}
}
