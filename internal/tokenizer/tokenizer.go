package tokenizer

import (
	"fmt"
	"os"
	"strings"
	"unicode/utf8"
)

// Tokenizer is a loaded (or trained) HF tokenizer. It is safe for
// concurrent use.
type Tokenizer struct {
	added     *addedVocab
	norm      normalizer
	pre       preTokenizer
	model     *bpe
	post      postProcessor
	dec       decoder
	raw       []byte // the tokenizer.json it was loaded from (nil when trained)
	vocabSize int
}

// Load reads a tokenizer.json file.
func Load(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	return t, nil
}

// Parse builds a tokenizer from the bytes of a tokenizer.json. Errors name
// the JSON path of the offending value, e.g. "model.merges[12]: ...".
func Parse(data []byte) (*Tokenizer, error) {
	root, err := parseObj(data, "")
	if err != nil {
		return nil, &pathError{Path: "$", Err: err.(*pathError).Err}
	}
	t := &Tokenizer{raw: data}
	mr, ok := root.m["model"]
	if !ok || isNull(mr) {
		return nil, perr("model", "missing required object")
	}
	mo, err := parseObj(mr, "model")
	if err != nil {
		return nil, err
	}
	typ, err := mo.str("type", "BPE", false)
	if err != nil {
		return nil, err
	}
	if typ != "BPE" {
		return nil, perr("model.type", "unsupported model %q (only BPE is implemented)", typ)
	}
	if t.model, err = parseBPE(mo); err != nil {
		return nil, err
	}
	addedRaw, err := root.array("added_tokens", false)
	if err != nil {
		return nil, err
	}
	toks := make([]AddedToken, 0, len(addedRaw))
	for i, r := range addedRaw {
		p := indexPath("added_tokens", i)
		o, err := parseObj(r, p)
		if err != nil {
			return nil, err
		}
		var at AddedToken
		if at.ID, err = o.integer("id", 0, true); err != nil {
			return nil, err
		}
		if at.ID < 0 || at.ID > 1<<26 {
			return nil, perr(o.sub("id"), "id %d out of range", at.ID)
		}
		if at.Content, err = o.str("content", "", true); err != nil {
			return nil, err
		}
		if at.Content == "" {
			return nil, perr(o.sub("content"), "empty added token")
		}
		if at.SingleWord, err = o.boolean("single_word", false); err != nil {
			return nil, err
		}
		if at.LStrip, err = o.boolean("lstrip", false); err != nil {
			return nil, err
		}
		if at.RStrip, err = o.boolean("rstrip", false); err != nil {
			return nil, err
		}
		if at.Normalized, err = o.boolean("normalized", !false); err != nil {
			return nil, err
		}
		if at.Special, err = o.boolean("special", false); err != nil {
			return nil, err
		}
		if at.Special && !o.has("normalized") {
			at.Normalized = false
		}
		toks = append(toks, at)
	}
	t.added = newAddedVocab(toks)
	if t.norm, err = parseNormalizer(root.m["normalizer"], "normalizer"); err != nil {
		return nil, err
	}
	if t.pre, err = parsePreTokenizer(root.m["pre_tokenizer"], "pre_tokenizer"); err != nil {
		return nil, err
	}
	if t.post, err = parsePostProcessor(root.m["post_processor"], "post_processor"); err != nil {
		return nil, err
	}
	if t.dec, err = parseDecoder(root.m["decoder"], "decoder"); err != nil {
		return nil, err
	}
	t.computeVocabSize()
	return t, nil
}

func (t *Tokenizer) computeVocabSize() {
	n := len(t.model.vocabR)
	for _, a := range t.added.tokens {
		if a.ID+1 > n {
			n = a.ID + 1
		}
	}
	t.vocabSize = n
}

// VocabSize is one more than the largest id (model vocab and added tokens).
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// AddedTokens returns the added tokens (specials included), in file order.
func (t *Tokenizer) AddedTokens() []AddedToken {
	return append([]AddedToken(nil), t.added.tokens...)
}

// TokenToID looks a token up among the added tokens, then the model vocab.
func (t *Tokenizer) TokenToID(tok string) (int, bool) {
	if i, ok := t.added.byStr[tok]; ok {
		return t.added.tokens[i].ID, true
	}
	id, ok := t.model.vocab[tok]
	return id, ok
}

// IDToToken returns the token string of id.
func (t *Tokenizer) IDToToken(id int) (string, bool) {
	if i, ok := t.added.byID[id]; ok {
		return t.added.tokens[i].Content, true
	}
	if id >= 0 && id < len(t.model.vocabR) && t.model.vocabR[id] != "" {
		return t.model.vocabR[id], true
	}
	return "", false
}

// IsSpecial reports whether id is an added token marked special.
func (t *Tokenizer) IsSpecial(id int) bool { return t.added.special[id] }

// chunk is a piece of input: an added token (tok >= 0) or text.
type chunk struct {
	s     string
	tok   int // added-token id, or -1
	first bool
}

// splitAdded implements HF extract_and_normalize: split off non-normalized
// added tokens on the raw text, normalize the rest, split off normalized
// added tokens.
func (t *Tokenizer) splitAdded(text string) []chunk {
	var out []chunk
	emit := func(s string, first bool) {
		if s == "" {
			return
		}
		if t.norm != nil {
			s = t.norm.normalize(s)
		}
		ms := t.added.findMatches(t.added.normed, s)
		prev := 0
		for _, m := range ms {
			if m.start > prev {
				out = append(out, chunk{s: s[prev:m.start], tok: -1, first: first && prev == 0})
			}
			out = append(out, chunk{tok: t.added.tokens[m.tok].ID})
			prev = m.end
		}
		if prev < len(s) {
			out = append(out, chunk{s: s[prev:], tok: -1, first: first && prev == 0})
		}
	}
	ms := t.added.findMatches(t.added.raw, text)
	prev := 0
	for _, m := range ms {
		emit(text[prev:m.start], prev == 0)
		out = append(out, chunk{tok: t.added.tokens[m.tok].ID})
		prev = m.end
	}
	emit(text[prev:], prev == 0)
	return out
}

// encodeRaw tokenizes text without post-processing.
func (t *Tokenizer) encodeRaw(text string) []int {
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	ids := make([]int, 0, len(text)/3+4)
	var pieces []piece
	for _, c := range t.splitAdded(text) {
		if c.tok >= 0 {
			ids = append(ids, c.tok)
			continue
		}
		pieces = append(pieces[:0], piece{s: c.s, first: c.first})
		if t.pre != nil {
			pieces = t.pre.preTokenize(pieces)
		}
		for _, p := range pieces {
			ids = t.model.tokenize(p.s, p.bl, ids)
		}
	}
	return ids
}

// Encode tokenizes text. With addSpecialTokens the post-processor adds its
// special tokens (e.g. BOS); added tokens written in the text (like
// "<|im_end|>") are always recognised. Invalid UTF-8 is replaced by U+FFFD.
func (t *Tokenizer) Encode(text string, addSpecialTokens bool) []int {
	ids := t.encodeRaw(text)
	if addSpecialTokens && t.post != nil {
		return t.post.process(ids, nil, false)
	}
	return ids
}

// EncodePair tokenizes a sequence pair (e.g. for a template with A and B).
func (t *Tokenizer) EncodePair(a, b string, addSpecialTokens bool) []int {
	ia, ib := t.encodeRaw(a), t.encodeRaw(b)
	if addSpecialTokens && t.post != nil {
		return t.post.process(ia, ib, true)
	}
	return append(ia, ib...)
}

// EncodeBatch encodes texts in parallel; out[i] is Encode(texts[i]).
func (t *Tokenizer) EncodeBatch(texts []string, addSpecialTokens bool) [][]int {
	return encodeBatch(texts, func(s string) []int { return t.Encode(s, addSpecialTokens) })
}

// Decode turns ids back into text. Unknown ids are skipped; with
// skipSpecialTokens, added tokens marked special are left out.
func (t *Tokenizer) Decode(ids []int, skipSpecialTokens bool) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if skipSpecialTokens && t.added.special[id] {
			continue
		}
		if s, ok := t.IDToToken(id); ok {
			toks = append(toks, s)
		}
	}
	if t.dec == nil {
		return strings.Join(toks, " ")
	}
	return strings.Join(t.dec.decodeChain(toks), "")
}
