package sentencepiece

// unkPenalty is subtracted from the lowest piece score to score an unknown
// character (SentencePiece's kUnkPenalty).
const unkPenalty float32 = 10.0

// oneCharLen is SentencePiece's UTF-8 lead-byte length table.
func oneCharLen(b byte) int {
	return [16]int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4}[b>>4]
}

// encodeUnigram is the Viterbi search of SentencePiece's optimized unigram
// encoder. The arithmetic follows the C++ types: piece candidates are summed
// in double precision (the user-defined score is a double expression) and
// compared with the float32 stored best score; unknown candidates are summed
// in float32.
func (m *Model) encodeUnigram(normalized string) []segment {
	type best struct {
		id       int
		score    float32
		startsAt int
	}
	size := len(normalized)
	unkScore := m.minScore - unkPenalty
	ends := make([]best, size+1)
	for i := range ends {
		ends[i] = best{id: -1, startsAt: -1}
	}
	ends[0].startsAt = 0 // score 0; never read as a target
	pieces := m.proto.Pieces
	for start := 0; start < size; {
		till := ends[start].score
		hasSingle := false
		mblen := min(oneCharLen(normalized[start]), size-start)
		m.trie.prefixes(normalized[start:], func(id, length int) {
			if pieces[id].Type == Unused {
				return
			}
			var score float64
			if pieces[id].Type == UserDefined {
				score = float64(float32(length)*m.maxScore) - 0.1
			} else {
				score = float64(pieces[id].Score)
			}
			cand := score + float64(till)
			t := &ends[start+length]
			if t.startsAt == -1 || cand > float64(t.score) {
				t.score = float32(cand)
				t.startsAt = start
				t.id = id
			}
			if length == mblen {
				hasSingle = true
			}
		})
		if !hasSingle {
			t := &ends[start+mblen]
			cand := unkScore + till
			if t.startsAt == -1 || cand > t.score {
				t.score = cand
				t.startsAt = start
				t.id = m.unkID
			}
		}
		start += mblen
	}
	var out []segment
	for end := size; end > 0; {
		n := ends[end]
		if n.startsAt < 0 || n.startsAt >= end {
			// Unreachable for valid UTF-8 input (every character gets a node);
			// guard against looping on anything else.
			out = append(out, segment{piece: normalized[:end], id: m.unkID})
			break
		}
		out = append(out, segment{piece: normalized[n.startsAt:end], id: n.id})
		end = n.startsAt
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}
