package data

import "strings"

// Span is a run of a sample's tokens that are all trained, or all not,
// decoded to text.
type Span struct {
	Text    string `json:"text"`
	Trained bool   `json:"trained"`
}

// Spans decodes a sample into its runs of trained and untrained text, as
// a preview shows it. The text is the decode of the whole sample (so
// decoders that treat the first token or word boundaries specially, like
// Metaspace, show what a full decode shows), cut where the decode of each
// run's prefix ends; where a prefix's decode is not a prefix of the whole
// (a multi-byte character split across runs), the run is decoded on its
// own instead.
func Spans(s Sample, decode func(ids []int) string) []Span {
	ids := make([]int, len(s.Tokens))
	for k, id := range s.Tokens {
		ids[k] = int(id)
	}
	full := decode(ids)
	out := []Span{}
	prev := 0 // bytes of full already used
	for i := 0; i < len(ids); {
		j := i
		for j < len(ids) && s.Mask[j] == s.Mask[i] {
			j++
		}
		var text string
		if j == len(ids) {
			text = full[prev:]
		} else if p := decode(ids[:j]); len(p) >= prev && strings.HasPrefix(full, p) {
			text = full[prev:len(p)]
		} else {
			text = decode(ids[i:j])
		}
		prev = min(prev+len(text), len(full))
		out = append(out, Span{Text: text, Trained: s.Mask[i]})
		i = j
	}
	return out
}
