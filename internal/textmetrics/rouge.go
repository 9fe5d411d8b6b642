package textmetrics

import "strings"

// rougeF holds the three F-scores rouge_chinese reports, as fractions in
// [0, 1] (not yet in percent).
type rougeF struct{ r1, r2, rl float64 }

// rougeScores is LLaMA Factory's ROUGE step for one sample, given the
// space-joined segmenter output of the prediction and the label:
//
//	if len(hyp.split()) == 0 or len(ref.split()) == 0: all zero
//	else: Rouge().get_scores(hyp, ref)[0][m]["f"] for m in rouge-1, rouge-2, rouge-l
func rougeScores(hyp, ref string) rougeF {
	if len(pyFields(hyp)) == 0 || len(pyFields(ref)) == 0 {
		return rougeF{}
	}
	hw, rw := rougeWords(hyp), rougeWords(ref)
	return rougeF{
		r1: rougeN(hw, rw, 1),
		r2: rougeN(hw, rw, 2),
		rl: rougeL(hw, rw),
	}
}

// rougeN is rouge_chinese's rouge_n with its default exclusive=True: the
// n-grams of each side are collected into a set (duplicates count once,
// there is no clipping by counts), overlap is the size of the intersection,
// precision and recall are 0 when their denominator is, and
// F = 2 * ((P*R) / (P + R + 1e-8)).
func rougeN(hyp, ref []string, n int) float64 {
	hs, rs := ngramSet(hyp, n), ngramSet(ref, n)
	overlap := 0
	for g := range hs {
		if _, ok := rs[g]; ok {
			overlap++
		}
	}
	return fScore(overlap, len(hs), len(rs))
}

// ngramSet returns the distinct n-grams of words. Words never contain a
// space (they come from splitting on one), so joining with a space is an
// unambiguous key, also for the empty-string word.
func ngramSet(words []string, n int) map[string]struct{} {
	set := make(map[string]struct{})
	for i := 0; i+n <= len(words); i++ {
		set[strings.Join(words[i:i+n], " ")] = struct{}{}
	}
	return set
}

// rougeL is rouge_chinese's rouge_l_summary_level. Despite the name, since
// rouge_chinese 1.0.3 it takes one longest common subsequence between all
// reference words and all hypothesis words (no union-LCS over sentences):
// R = lcs/len(ref), P = lcs/len(hyp), F = 2 * ((P*R) / (P + R + 1e-8)).
// Both sides are non-empty here (rougeScores returns early otherwise).
func rougeL(hyp, ref []string) float64 {
	return fScore(lcsLen(ref, hyp), len(hyp), len(ref))
}

// fScore is f_r_p_rouge_n's arithmetic, in Python's evaluation order.
func fScore(overlap, hypCount, refCount int) float64 {
	var p, r float64
	if hypCount != 0 {
		p = float64(overlap) / float64(hypCount)
	}
	if refCount != 0 {
		r = float64(overlap) / float64(refCount)
	}
	return 2.0 * (float64(p*r) / (p + r + 1e-8))
}

// lcsLen is the length of the longest common subsequence of x and y: the
// usual dynamic programme, kept to two rows, over word ids so that each
// cell compares two integers rather than two strings.
func lcsLen(x, y []string) int {
	ids := make(map[string]int32, len(x))
	xi := make([]int32, len(x))
	for i, w := range x {
		id, ok := ids[w]
		if !ok {
			id = int32(len(ids))
			ids[w] = id
		}
		xi[i] = id
	}
	yi := make([]int32, len(y))
	for j, w := range y {
		id, ok := ids[w]
		if !ok {
			id = -1 // not in x: never matches
		}
		yi[j] = id
	}
	prev := make([]int32, len(y)+1)
	cur := make([]int32, len(y)+1)
	for _, a := range xi {
		for j, b := range yi {
			switch {
			case a == b:
				cur[j+1] = prev[j] + 1
			case prev[j+1] >= cur[j]:
				cur[j+1] = prev[j+1]
			default:
				cur[j+1] = cur[j]
			}
		}
		prev, cur = cur, prev
	}
	return int(prev[len(y)])
}
