package sentencepiece

import "container/heap"

type bpeSymbol struct {
	prev, next int
	freeze     bool
	start, end int // byte range in the normalized text; empty once merged away
}

type bpePair struct {
	left, right int
	score       float32
	size        int
}

// bpeAgenda is a max-heap on score, then the leftmost pair.
type bpeAgenda []bpePair

func (a bpeAgenda) Len() int { return len(a) }
func (a bpeAgenda) Less(i, j int) bool {
	if a[i].score != a[j].score {
		return a[i].score > a[j].score
	}
	return a[i].left < a[j].left
}
func (a bpeAgenda) Swap(i, j int) { a[i], a[j] = a[j], a[i] }
func (a *bpeAgenda) Push(x any)   { *a = append(*a, x.(bpePair)) }
func (a *bpeAgenda) Pop() any {
	old := *a
	x := old[len(old)-1]
	*a = old[:len(old)-1]
	return x
}

// encodeBPE is SentencePiece's BPE encoder: start from characters (a
// user-defined symbol is one frozen symbol), repeatedly merge the adjacent
// pair whose concatenation is the highest-scoring piece, then split UNUSED
// pieces back into the pieces they were merged from.
func (m *Model) encodeBPE(normalized string) []segment {
	var symbols []bpeSymbol
	for pos := 0; pos < len(normalized); {
		l := m.prefixMatch(normalized[pos:])
		freeze := false
		if m.userDefs != nil {
			_, _, freeze = m.userDefs.longestPrefix(normalized[pos:])
		}
		idx := len(symbols)
		symbols = append(symbols, bpeSymbol{prev: idx - 1, next: idx + 1, freeze: freeze, start: pos, end: pos + l})
		pos += l
	}
	if len(symbols) == 0 {
		return nil
	}
	symbols[len(symbols)-1].next = -1

	piece := func(i int) string { return normalized[symbols[i].start:symbols[i].end] }
	revMerge := map[string][2]string{}
	agenda := &bpeAgenda{}
	addPair := func(left, right int) {
		if left == -1 || right == -1 || symbols[left].freeze || symbols[right].freeze {
			return
		}
		merged := normalized[symbols[left].start:symbols[right].end]
		id, ok := m.pieces[merged]
		if !ok {
			return
		}
		heap.Push(agenda, bpePair{left: left, right: right, score: m.proto.Pieces[id].Score, size: len(merged)})
		if m.proto.Pieces[id].Type == Unused {
			revMerge[merged] = [2]string{piece(left), piece(right)}
		}
	}
	for i := 1; i < len(symbols); i++ {
		addPair(i-1, i)
	}
	for agenda.Len() > 0 {
		top := heap.Pop(agenda).(bpePair)
		l, r := &symbols[top.left], &symbols[top.right]
		if l.start == l.end || r.start == r.end || (l.end-l.start)+(r.end-r.start) != top.size {
			continue
		}
		l.end = r.end
		l.next = r.next
		if r.next >= 0 {
			symbols[r.next].prev = top.left
		}
		r.start = r.end
		addPair(l.prev, top.left)
		addPair(top.left, l.next)
	}

	var out []segment
	var resegment func(w string, depth int)
	resegment = func(w string, depth int) {
		id := m.PieceToID(w)
		if m.proto.Pieces[id].Type != Unused || depth > len(normalized) {
			out = append(out, segment{piece: w, id: id})
			return
		}
		p, ok := revMerge[w]
		if !ok {
			out = append(out, segment{piece: w, id: id})
			return
		}
		resegment(p[0], depth+1)
		resegment(p[1], depth+1)
	}
	for i := 0; i != -1; i = symbols[i].next {
		resegment(piece(i), 0)
	}
	return out
}
