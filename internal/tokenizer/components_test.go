package tokenizer

import (
	"slices"
	"testing"
)

// TestSplitBehaviors follows the HF tokenizers split-behavior examples.
func TestSplitBehaviors(t *testing.T) {
	tests := []struct {
		in     string
		beh    splitBehavior
		invert bool
		want   []string
	}{
		{"How are you  doing?", behRemoved, false, []string{"How", "are", "you", "doing?"}},
		{"How are you  doing?", behIsolated, false, []string{"How", " ", "are", " ", "you", " ", " ", "doing?"}},
		{"How are you  doing?", behMergedWithPrevious, false, []string{"How ", "are ", "you ", " ", "doing?"}},
		{"How are you  doing?", behMergedWithNext, false, []string{"How", " are", " you", " ", " doing?"}},
		{"How are you  doing?", behContiguous, false, []string{"How", " ", "are", " ", "you", "  ", "doing?"}},
		{"How are you", behRemoved, true, []string{" ", " "}},
		{" lead", behMergedWithPrevious, false, []string{" ", "lead"}},
		{"", behIsolated, false, nil},
	}
	for _, tc := range tests {
		pat := &splitPattern{isLit: true, lit: " "}
		var got []string
		for _, p := range splitByMatches(piece{s: tc.in, first: true}, pat.find(tc.in, nil), tc.beh, tc.invert, nil) {
			got = append(got, p.s)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q beh=%d invert=%v: got %q, want %q", tc.in, tc.beh, tc.invert, got, tc.want)
		}
	}
}

func TestDecoders(t *testing.T) {
	tests := []struct {
		name string
		dec  decoder
		in   []string
		want []string
	}{
		{"bytefallback valid", byteFallbackDec{}, []string{"a", "<0xE2>", "<0x96>", "<0x81>", "b"}, []string{"a", "▁", "b"}},
		{"bytefallback invalid", byteFallbackDec{}, []string{"<0xE2>", "<0x96>", "x", "<0xZZ>"}, []string{"\uFFFD", "\uFFFD", "x", "<0xZZ>"}},
		{"strip", stripDec{content: ' ', start: 1, stop: 1}, []string{"  a  ", "b"}, []string{" a ", "b"}},
		{"strip more than present", stripDec{content: 'x', start: 3, stop: 0}, []string{"xa", "xxxxb"}, []string{"a", "xb"}},
		{"fuse", fuseDec{}, []string{"a", "b", "c"}, []string{"abc"}},
		{"metaspace", metaspaceDec{rep: "▁", scheme: prependAlways}, []string{"▁Hey", "▁you"}, []string{"Hey", " you"}},
		{"metaspace never", metaspaceDec{rep: "▁", scheme: prependNever}, []string{"▁Hey"}, []string{" Hey"}},
		{"bytelevel", byteLevelDec{}, []string{"Hello", "Ġworld", "<|x y|>"}, []string{"Hello world<|x y|>"}},
		// An incomplete UTF-8 sequence becomes one U+FFFD, as from_utf8_lossy does.
		{"bytelevel lossy", byteLevelDec{}, []string{"a", "\u00e2\u0138"}, []string{"a\uFFFD"}},
		{"bpe suffix", bpeDec{"</w>"}, []string{"hel", "lo</w>", "you</w>"}, []string{"hel", "lo ", "you"}},
	}
	for _, tc := range tests {
		if got := tc.dec.decodeChain(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
