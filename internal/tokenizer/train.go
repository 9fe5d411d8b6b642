package tokenizer

import (
	"bytes"
	"container/heap"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"os"
	"sort"
)

// Train learns a byte-level BPE tokenizer (GPT-2 style: ByteLevel
// pre-tokenizer with the GPT-2 regex, no prefix space, ByteLevel decoder)
// from corpus. The vocabulary is the special tokens (ids 0..k-1, in the
// given order), the 256 byte symbols (in byte order), then one token per
// merge until vocabSize is reached or no pair occurs at least minFrequency
// times. Ties between equally frequent pairs go to the pair whose (left,
// right) ids are smallest, so training is deterministic.
func Train(corpus iter.Seq[string], vocabSize int, specialTokens []string, minFrequency int) (*Tokenizer, error) {
	if minFrequency < 1 {
		minFrequency = 1
	}
	base := len(specialTokens) + 256
	if vocabSize < base {
		return nil, fmt.Errorf("tokenizer train: vocabSize %d is smaller than the %d special tokens + 256 byte symbols", vocabSize, len(specialTokens))
	}
	seen := map[string]bool{}
	for _, s := range specialTokens {
		if s == "" || seen[s] {
			return nil, fmt.Errorf("tokenizer train: special token %q is empty or repeated", s)
		}
		seen[s] = true
	}
	pre := &byteLevelPre{useRegex: true}
	re, err := compileRegex(gpt2Pattern)
	if err != nil {
		return nil, fmt.Errorf("tokenizer train: %w", err)
	}
	pre.pat = &splitPattern{re: re, src: gpt2Pattern}
	attachFastMatcher(pre.pat)

	// Count pre-token words.
	wordFreq := map[string]int{}
	var pieces []piece
	for text := range corpus {
		pieces = pre.preTokenize(append(pieces[:0], piece{s: text, first: true}))
		materialize(pieces)
		for _, p := range pieces {
			wordFreq[p.s]++
		}
	}

	vocabR := make([]string, 0, vocabSize)
	vocab := make(map[string]int, vocabSize)
	for _, s := range specialTokens {
		vocab[s] = len(vocabR)
		vocabR = append(vocabR, s)
	}
	for b := 0; b < 256; b++ {
		s := string(byteToRune[b])
		if _, dup := vocab[s]; dup {
			return nil, fmt.Errorf("tokenizer train: special token %q collides with a byte symbol", s)
		}
		vocab[s] = len(vocabR)
		vocabR = append(vocabR, s)
	}

	// Words as symbol-id sequences, in a deterministic order.
	keys := make([]string, 0, len(wordFreq))
	for w := range wordFreq {
		keys = append(keys, w)
	}
	sort.Strings(keys)
	words := make([][]int, len(keys))
	freqs := make([]int, len(keys))
	for i, w := range keys {
		freqs[i] = wordFreq[w]
		for _, r := range w {
			words[i] = append(words[i], vocab[string(r)])
		}
	}

	counts := map[uint64]int{}
	where := map[uint64]map[int]struct{}{}
	addPairs := func(wi, sign int) {
		w := words[wi]
		for j := 0; j+1 < len(w); j++ {
			k := pairKey(w[j], w[j+1])
			counts[k] += sign * freqs[wi]
			if sign > 0 {
				set := where[k]
				if set == nil {
					set = map[int]struct{}{}
					where[k] = set
				}
				set[wi] = struct{}{}
			}
		}
	}
	for i := range words {
		addPairs(i, 1)
	}
	h := &pairHeap{}
	for k, c := range counts {
		*h = append(*h, pairEntry{count: c, key: k})
	}
	heap.Init(h)

	var merges [][2]string
	for len(vocabR) < vocabSize && h.Len() > 0 {
		top := heap.Pop(h).(pairEntry)
		cur := counts[top.key]
		if cur != top.count {
			if cur > 0 {
				heap.Push(h, pairEntry{count: cur, key: top.key})
			}
			continue
		}
		if cur < minFrequency {
			break
		}
		a, b := int(top.key>>32), int(uint32(top.key))
		newTok := vocabR[a] + vocabR[b]
		newID, ok := vocab[newTok]
		if !ok {
			newID = len(vocabR)
			vocab[newTok] = newID
			vocabR = append(vocabR, newTok)
		}
		merges = append(merges, [2]string{vocabR[a], vocabR[b]})
		affected := make([]int, 0, len(where[top.key]))
		for wi := range where[top.key] {
			affected = append(affected, wi)
		}
		sort.Ints(affected)
		grown := map[uint64]bool{}
		for _, wi := range affected {
			w := words[wi]
			addPairs(wi, -1)
			out := w[:0]
			for j := 0; j < len(w); j++ {
				if j+1 < len(w) && w[j] == a && w[j+1] == b {
					out = append(out, newID)
					j++
				} else {
					out = append(out, w[j])
				}
			}
			words[wi] = out
			addPairs(wi, 1)
			for j := 0; j+1 < len(out); j++ {
				if out[j] == newID || out[j+1] == newID {
					grown[pairKey(out[j], out[j+1])] = true
				}
			}
		}
		delete(where, top.key)
		delete(counts, top.key)
		// Queue the pairs the merge created; pairs whose count shrank are
		// corrected lazily when popped.
		created := make([]uint64, 0, len(grown))
		for k := range grown {
			created = append(created, k)
		}
		sort.Slice(created, func(i, j int) bool { return created[i] < created[j] })
		for _, k := range created {
			if c := counts[k]; c > 0 {
				heap.Push(h, pairEntry{count: c, key: k})
			}
		}
	}

	m := &bpe{vocab: vocab, vocabR: vocabR, unk: -1, merges: map[uint64]mergeInfo{}}
	for i, mg := range merges {
		if err := m.addMerge(mg[0], mg[1], i); err != nil {
			return nil, fmt.Errorf("tokenizer train: %w", err)
		}
	}
	m.finish()
	added := make([]AddedToken, len(specialTokens))
	for i, s := range specialTokens {
		added[i] = AddedToken{ID: i, Content: s, Special: true}
	}
	t := &Tokenizer{
		added: newAddedVocab(added),
		pre:   pre,
		model: m,
		post:  identityPost{},
		dec:   byteLevelDec{},
	}
	t.computeVocabSize()
	return t, nil
}

type pairEntry struct {
	count int
	key   uint64
}

type pairHeap []pairEntry

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	if h[i].count != h[j].count {
		return h[i].count > h[j].count
	}
	return h[i].key < h[j].key
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(pairEntry)) }
func (h *pairHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// WriteJSON writes the tokenizer in HF's tokenizer.json schema. A loaded
// tokenizer writes back the exact bytes it was loaded from; a trained one
// writes a fresh file (byte-level BPE with its special tokens).
func (t *Tokenizer) WriteJSON(w io.Writer) error {
	if t.raw != nil {
		_, err := w.Write(t.raw)
		return err
	}
	var b bytes.Buffer
	b.WriteString("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": ")
	added, err := json.Marshal(t.added.tokens)
	if err != nil {
		return err
	}
	b.Write(added)
	b.WriteString(",\n  \"normalizer\": null,\n")
	b.WriteString(`  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},` + "\n")
	b.WriteString(`  "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},` + "\n")
	b.WriteString(`  "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},` + "\n")
	b.WriteString(`  "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,` + "\n    \"vocab\": {")
	for id, tok := range t.model.vocabR {
		if id > 0 {
			b.WriteString(", ")
		}
		k, _ := json.Marshal(tok)
		b.Write(k)
		b.WriteString(": ")
		b.WriteString(itoa(id))
	}
	b.WriteString("},\n    \"merges\": [")
	for i, mg := range t.model.mergeList {
		if i > 0 {
			b.WriteString(", ")
		}
		p, _ := json.Marshal(mg[:])
		b.Write(p)
	}
	b.WriteString("]\n  }\n}\n")
	_, err = w.Write(b.Bytes())
	return err
}

// Save writes WriteJSON's output to path.
func (t *Tokenizer) Save(path string) error {
	var b bytes.Buffer
	if err := t.WriteJSON(&b); err != nil {
		return fmt.Errorf("tokenizer save: %w", err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("tokenizer save: %w", err)
	}
	return nil
}
