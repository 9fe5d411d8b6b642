package tokenizer

import (
	"container/heap"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"
)

// bpe is the HF "BPE" model.
type bpe struct {
	vocab     map[string]int
	vocabR    []string // id -> token ("" for holes)
	merges    map[uint64]mergeInfo
	mergeList [][2]string // in rank order, for saving

	unk          int // -1 when none
	unkToken     string
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
	contPrefix   string
	eowSuffix    string
	dropout      float64
	byteTokens   [256]int     // ids of <0xXX> tokens (-1 if missing)
	cache        *wordCache   // plain words
	cacheBL      *wordCache   // raw-byte words of byte-level pieces
	charIDs      map[rune]int // single-char tokens, fast path
}

type mergeInfo struct {
	rank int32
	id   int32
}

func pairKey(a, b int) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// parseBPE reads the "model" object.
func parseBPE(o jobj) (*bpe, error) {
	m := &bpe{unk: -1}
	vr, ok := o.m["vocab"]
	if !ok || isNull(vr) {
		return nil, perr(o.sub("vocab"), "missing required object")
	}
	if err := json.Unmarshal(vr, &m.vocab); err != nil {
		// Find the offending entry for a precise path.
		var raw map[string]json.RawMessage
		if err2 := json.Unmarshal(vr, &raw); err2 != nil {
			return nil, perr(o.sub("vocab"), "expected an object of token -> id: %s", shortErr(err2))
		}
		keys := make([]string, 0, len(raw))
		for k := range raw {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			var id int
			if json.Unmarshal(raw[k], &id) != nil {
				return nil, perr(o.sub("vocab")+"["+quoteKey(k)+"]", "expected an integer id, got %s", truncate(string(raw[k]), 40))
			}
		}
		return nil, perr(o.sub("vocab"), "%s", shortErr(err))
	}
	maxID := -1
	for tok, id := range m.vocab {
		// Ids are dense in practice; bound the holes so a corrupt file
		// cannot make us allocate gigabytes.
		if id < 0 || id >= len(m.vocab)+maxVocabHoles {
			return nil, perr(o.sub("vocab")+"["+quoteKey(tok)+"]", "id %d out of range (vocab has %d entries)", id, len(m.vocab))
		}
		if id > maxID {
			maxID = id
		}
	}
	m.vocabR = make([]string, maxID+1)
	for tok, id := range m.vocab {
		m.vocabR[id] = tok
	}
	var err error
	if m.contPrefix, err = o.str("continuing_subword_prefix", "", false); err != nil {
		return nil, err
	}
	if m.eowSuffix, err = o.str("end_of_word_suffix", "", false); err != nil {
		return nil, err
	}
	if m.fuseUnk, err = o.boolean("fuse_unk", false); err != nil {
		return nil, err
	}
	if m.byteFallback, err = o.boolean("byte_fallback", false); err != nil {
		return nil, err
	}
	if m.ignoreMerges, err = o.boolean("ignore_merges", false); err != nil {
		return nil, err
	}
	if m.dropout, err = o.float("dropout", 0); err != nil {
		return nil, err
	}
	if m.dropout < 0 || m.dropout > 1 {
		return nil, perr(o.sub("dropout"), "must be in [0, 1], got %v", m.dropout)
	}
	if m.unkToken, err = o.str("unk_token", "", false); err != nil {
		return nil, err
	}
	if o.has("unk_token") {
		id, ok := m.vocab[m.unkToken]
		if !ok {
			return nil, perr(o.sub("unk_token"), "token %q is not in model.vocab", m.unkToken)
		}
		m.unk = id
	}
	merges, err := o.array("merges", false)
	if err != nil {
		return nil, err
	}
	m.merges = make(map[uint64]mergeInfo, len(merges))
	m.mergeList = make([][2]string, 0, len(merges))
	mpath := o.sub("merges")
	for i, raw := range merges {
		a, b, err := parseMerge(raw)
		if err != nil {
			return nil, perr(indexPath(mpath, i), "%v", err)
		}
		if err := m.addMerge(a, b, i); err != nil {
			return nil, perr(indexPath(mpath, i), "%v", err)
		}
	}
	m.finish()
	return m, nil
}

const maxVocabHoles = 1 << 16

func quoteKey(k string) string { return fmt.Sprintf("%q", k) }

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func parseMerge(raw json.RawMessage) (string, string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		i := strings.IndexByte(s, ' ')
		if i < 0 || strings.Count(s, " ") != 1 {
			return "", "", fmt.Errorf("expected \"a b\" (two tokens separated by one space), got %q", truncate(s, 60))
		}
		return s[:i], s[i+1:], nil
	}
	var p []string
	if err := json.Unmarshal(raw, &p); err != nil || len(p) != 2 {
		return "", "", fmt.Errorf("expected \"a b\" or [\"a\", \"b\"], got %s", truncate(string(raw), 60))
	}
	return p[0], p[1], nil
}

func (m *bpe) addMerge(a, b string, rank int) error {
	ia, ok := m.vocab[a]
	if !ok {
		return fmt.Errorf("token %q is not in model.vocab", a)
	}
	ib, ok := m.vocab[b]
	if !ok {
		return fmt.Errorf("token %q is not in model.vocab", b)
	}
	bb := b
	if m.contPrefix != "" && strings.HasPrefix(b, m.contPrefix) {
		bb = b[len(m.contPrefix):]
	}
	merged := a + bb
	id, ok := m.vocab[merged]
	if !ok {
		return fmt.Errorf("merged token %q is not in model.vocab", merged)
	}
	k := pairKey(ia, ib)
	// Like HF (a map built from the list), a repeated pair keeps the last rank.
	m.merges[k] = mergeInfo{rank: int32(rank), id: int32(id)}
	m.mergeList = append(m.mergeList, [2]string{a, b})
	return nil
}

func (m *bpe) finish() {
	for b := 0; b < 256; b++ {
		id, ok := m.vocab[fmt.Sprintf("<0x%02X>", b)]
		if !ok {
			id = -1
		}
		m.byteTokens[b] = id
	}
	m.charIDs = make(map[rune]int)
	for tok, id := range m.vocab {
		if utf8.RuneCountInString(tok) == 1 {
			r, _ := utf8.DecodeRuneInString(tok)
			if r != utf8.RuneError || tok == "\uFFFD" {
				m.charIDs[r] = id
			}
		}
	}
	m.cache = newWordCache(1 << 16)
	m.cacheBL = newWordCache(1 << 16)
	m.cacheBL = newWordCache(1 << 16)
}

// tokenize appends the ids of one pre-token word to out. With bl, word
// holds raw bytes whose byte-level mapping is applied here (on cache miss).
func (m *bpe) tokenize(word string, bl bool, out []int) []int {
	if word == "" {
		return out
	}
	cache := m.cache
	if bl {
		cache = m.cacheBL
	}
	cacheable := len(word) <= maxCachedWord
	if cacheable {
		if ids, ok := cache.get(word); ok {
			return append(out, ids...)
		}
	}
	w := word
	if bl {
		w = byteLevelString(word)
	}
	var ids []int
	if id, ok := m.vocab[w]; ok && m.ignoreMerges {
		ids = []int{id}
	} else {
		ids = m.mergeWord(w)
	}
	if cacheable {
		cache.put(word, ids)
	}
	return append(out, ids...)
}

const maxCachedWord = 256

type symbol struct {
	id         int
	prev, next int // indices; -1 at ends
	size       int // 0 once merged away
}

// mergeWord runs the BPE merges on one word (HF Word::merge_all semantics).
func (m *bpe) mergeWord(word string) []int {
	syms := make([]symbol, 0, len(word))
	var unkRun bool
	nchars := utf8.RuneCountInString(word)
	ci := 0
	for i, r := range word {
		rl := utf8.RuneLen(r)
		var tok string
		isFirst, isLast := ci == 0, ci == nchars-1
		ci++
		id, ok := -1, false
		if m.contPrefix == "" && m.eowSuffix == "" {
			id, ok = m.charIDs[r]
			if !ok {
				tok = word[i : i+rl]
			}
		} else {
			tok = word[i : i+rl]
			if !isFirst && m.contPrefix != "" {
				tok = m.contPrefix + tok
			}
			if isLast && m.eowSuffix != "" {
				tok += m.eowSuffix
			}
			id, ok = m.vocab[tok]
		}
		if ok {
			unkRun = false
			syms = append(syms, symbol{id: id, size: 1})
			continue
		}
		if m.byteFallback {
			raw := word[i : i+rl]
			all := true
			for j := 0; j < len(raw); j++ {
				all = all && m.byteTokens[raw[j]] >= 0
			}
			if all {
				unkRun = false
				for j := 0; j < len(raw); j++ {
					syms = append(syms, symbol{id: m.byteTokens[raw[j]], size: 1})
				}
				continue
			}
		}
		if m.unk >= 0 {
			if m.fuseUnk && unkRun {
				continue
			}
			unkRun = true
			syms = append(syms, symbol{id: m.unk, size: 1})
		}
		// No unk token: the character is dropped (HF errors; we stay total).
	}
	for i := range syms {
		syms[i].prev = i - 1
		syms[i].next = i + 1
	}
	if len(syms) > 0 {
		syms[len(syms)-1].next = -1
	}
	if len(syms) > 1 {
		if len(syms) <= 24 {
			m.mergeSmall(syms)
		} else {
			m.mergeHeap(syms)
		}
	}
	ids := make([]int, 0, len(syms))
	for i := 0; i >= 0 && i < len(syms); i = syms[i].next {
		ids = append(ids, syms[i].id)
	}
	return ids
}

// mergeSmall: repeatedly merge the lowest-rank adjacent pair (leftmost on
// ties). Quadratic, fast for short words.
func (m *bpe) mergeSmall(syms []symbol) {
	for {
		best := int32(-1)
		bestPos := -1
		var bestID int32
		for i := 0; i >= 0; i = syms[i].next {
			j := syms[i].next
			if j < 0 {
				break
			}
			if mi, ok := m.merges[pairKey(syms[i].id, syms[j].id)]; ok && (best < 0 || mi.rank < best) {
				best, bestPos, bestID = mi.rank, i, mi.id
			}
		}
		if bestPos < 0 {
			return
		}
		j := syms[bestPos].next
		syms[bestPos].id = int(bestID)
		syms[bestPos].size += syms[j].size
		syms[bestPos].next = syms[j].next
		if syms[j].next >= 0 {
			syms[syms[j].next].prev = bestPos
		}
		syms[j].size = 0
	}
}

type mergeCand struct {
	rank int32
	pos  int
	id   int32
	// right is the id of the right symbol at push time (staleness check)
	right int
	left  int
}

type candHeap []mergeCand

func (h candHeap) Len() int { return len(h) }
func (h candHeap) Less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].pos < h[j].pos
}
func (h candHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *candHeap) Push(x any)   { *h = append(*h, x.(mergeCand)) }
func (h *candHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (m *bpe) mergeHeap(syms []symbol) {
	h := make(candHeap, 0, len(syms))
	push := func(i int) {
		j := syms[i].next
		if j < 0 {
			return
		}
		if mi, ok := m.merges[pairKey(syms[i].id, syms[j].id)]; ok {
			h = append(h, mergeCand{rank: mi.rank, pos: i, id: mi.id, left: syms[i].id, right: syms[j].id})
		}
	}
	for i := 0; i < len(syms)-1; i++ {
		push(i)
	}
	heap.Init(&h)
	for h.Len() > 0 {
		c := heap.Pop(&h).(mergeCand)
		i := c.pos
		if syms[i].size == 0 || syms[i].id != c.left {
			continue
		}
		j := syms[i].next
		if j < 0 || syms[j].id != c.right {
			continue
		}
		syms[i].id = int(c.id)
		syms[i].size += syms[j].size
		syms[i].next = syms[j].next
		if syms[j].next >= 0 {
			syms[syms[j].next].prev = i
		}
		syms[j].size = 0
		if p := syms[i].prev; p >= 0 {
			if mi, ok := m.merges[pairKey(syms[p].id, syms[i].id)]; ok {
				heap.Push(&h, mergeCand{rank: mi.rank, pos: p, id: mi.id, left: syms[p].id, right: syms[i].id})
			}
		}
		if j2 := syms[i].next; j2 >= 0 {
			if mi, ok := m.merges[pairKey(syms[i].id, syms[j2].id)]; ok {
				heap.Push(&h, mergeCand{rank: mi.rank, pos: i, id: mi.id, left: syms[i].id, right: syms[j2].id})
			}
		}
	}
}

// ---- cache ----

const cacheShards = 64

// wordCache is a sharded, bounded map from word to ids. When a shard is
// full it is cleared (bounded memory, no LRU bookkeeping on the hot path).
type wordCache struct {
	seed   maphash.Seed
	per    int
	shards [cacheShards]struct {
		mu sync.RWMutex
		m  map[string][]int
	}
}

func newWordCache(capacity int) *wordCache {
	c := &wordCache{seed: maphash.MakeSeed(), per: capacity / cacheShards}
	for i := range c.shards {
		c.shards[i].m = make(map[string][]int)
	}
	return c
}

func (c *wordCache) shard(w string) int {
	return int(maphash.String(c.seed, w) % cacheShards)
}

func (c *wordCache) get(w string) ([]int, bool) {
	s := &c.shards[c.shard(w)]
	s.mu.RLock()
	ids, ok := s.m[w]
	s.mu.RUnlock()
	return ids, ok
}

func (c *wordCache) put(w string, ids []int) {
	s := &c.shards[c.shard(w)]
	s.mu.Lock()
	if len(s.m) >= c.per {
		s.m = make(map[string][]int, c.per)
	}
	s.m[w] = ids
	s.mu.Unlock()
}
