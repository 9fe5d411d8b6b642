package sentencepiece

import "strings"

// encodeChar is SentencePiece's CHAR model: one piece per character (or per
// user-defined symbol), looked up as a whole.
func (m *Model) encodeChar(normalized string) []segment {
	var out []segment
	for pos := 0; pos < len(normalized); {
		l := m.prefixMatch(normalized[pos:])
		w := normalized[pos : pos+l]
		out = append(out, segment{piece: w, id: m.PieceToID(w)})
		pos += l
	}
	return out
}

// encodeWord is SentencePiece's WORD model: the normalized text is split
// before every U+2581 and each word is looked up as a whole.
func (m *Model) encodeWord(normalized string) []segment {
	var out []segment
	start := 0
	for pos := 0; pos < len(normalized); {
		l := min(oneCharLen(normalized[pos]), len(normalized)-pos)
		if pos > 0 && strings.HasPrefix(normalized[pos:], spaceSymbol) && l == len(spaceSymbol) {
			w := normalized[start:pos]
			out = append(out, segment{piece: w, id: m.PieceToID(w)})
			start = pos
		}
		pos += l
	}
	w := normalized[start:]
	return append(out, segment{piece: w, id: m.PieceToID(w)})
}

// prefixMatch is the length of the longest user-defined symbol at the start
// of s, or of its first character.
func (m *Model) prefixMatch(s string) int {
	if m.userDefs != nil {
		if l, _, ok := m.userDefs.longestPrefix(s); ok {
			return l
		}
	}
	return min(oneCharLen(s[0]), len(s))
}
