// Package suggest finds the likely intended spelling of a misspelt name among
// the valid ones, for "did you mean" hints in diagnostics and CLI errors.
// It measures edit distance over runes and knows nothing about what the
// names are.
package suggest

import "unicode/utf8"

// Closest returns the candidate nearest to name by edit distance, if it is
// close enough to be a likely misspelling (at most 2 edits, 3 for
// candidates longer than 6 runes), or "". Ties go to the earlier candidate.
func Closest(name string, candidates []string) string {
	best, bestDist := "", -1
	for _, c := range candidates {
		d := Distance(name, c)
		limit := 2
		if utf8.RuneCountInString(c) > 6 {
			limit = 3
		}
		if d <= limit && (bestDist < 0 || d < bestDist) {
			best, bestDist = c, d
		}
	}
	return best
}

// Distance is the edit distance between a and b, counted in runes:
// insertions, deletions, substitutions and transpositions of two adjacent
// runes ("chatlm" is one edit from "chatml"; optimal string alignment).
func Distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
