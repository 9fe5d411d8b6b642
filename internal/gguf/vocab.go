package gguf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/lathe-ml/lathe/internal/tokenizer"
	"github.com/lathe-ml/lathe/internal/tokenizer/sentencepiece"
)

// llama.cpp token types (tokenizer.ggml.token_type).
const (
	tokNormal      int32 = 1
	tokUnknown     int32 = 2
	tokControl     int32 = 3
	tokUserDefined int32 = 4
	tokUnused      int32 = 5
	tokByte        int32 = 6
)

// The pre-tokenizer regexes llama.cpp knows by name (tokenizer.ggml.pre).
const (
	llama3Regex = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2Regex  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// spmSpace is SentencePiece's visible space, "▁".
const spmSpace = "\u2581"

var byteToken = regexp.MustCompile(`^<0x[0-9A-F]{2}>$`)

type hfAddedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	Special    bool   `json:"special"`
	SingleWord bool   `json:"single_word"`
	Lstrip     bool   `json:"lstrip"`
	Rstrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
}

// hfTokenizer is the part of tokenizer.json the converter reads.
type hfTokenizer struct {
	AddedTokens   []hfAddedToken  `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         struct {
		Type         string          `json:"type"`
		Vocab        map[string]int  `json:"vocab"`
		Merges       json.RawMessage `json:"merges"`
		ByteFallback bool            `json:"byte_fallback"`
		UnkToken     *string         `json:"unk_token"`
	} `json:"model"`
}

// components returns every JSON object with a "type" field inside raw
// (Sequence members included), outermost first.
func components(raw json.RawMessage) []map[string]any {
	var v any
	if len(raw) == 0 || json.Unmarshal(raw, &v) != nil {
		return nil
	}
	var out []map[string]any
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if _, ok := x["type"].(string); ok {
				out = append(out, x)
			}
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				walk(x[k])
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

func hasType(raw json.RawMessage, typ string) bool {
	for _, c := range components(raw) {
		if c["type"] == typ {
			return true
		}
	}
	return false
}

// parseMerges accepts both merge spellings: "a b" strings and [a, b] pairs.
func parseMerges(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s []string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var pairs [][]string
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, fmt.Errorf("model.merges: want strings or [a, b] pairs: %w", err)
	}
	out := make([]string, len(pairs))
	for i, p := range pairs {
		if len(p) != 2 {
			return nil, fmt.Errorf("model.merges[%d]: want 2 strings, got %d", i, len(p))
		}
		out[i] = p[0] + " " + p[1]
	}
	return out, nil
}

// preTokenizerName is the tokenizer.ggml.pre for a byte-level tokenizer.
func preTokenizerName(t *hfTokenizer) string {
	for _, c := range components(t.PreTokenizer) {
		if c["type"] != "Split" {
			continue
		}
		p, _ := c["pattern"].(map[string]any)
		switch p["Regex"] {
		case llama3Regex:
			return "llama-bpe"
		case qwen2Regex:
			return "qwen2"
		}
		return "default"
	}
	for _, c := range components(t.PreTokenizer) {
		if c["type"] == "ByteLevel" && c["use_regex"] != false {
			return "gpt-2"
		}
	}
	return "default"
}

// templateSpecials reports whether the post-processor's single-sequence
// template starts (bos) and ends (eos) with a special token.
func templateSpecials(raw json.RawMessage) (bos, eos bool) {
	for _, c := range components(raw) {
		if c["type"] != "TemplateProcessing" {
			continue
		}
		single, _ := c["single"].([]any)
		isSpecial := func(v any) bool {
			m, _ := v.(map[string]any)
			_, ok := m["SpecialToken"]
			return ok
		}
		if len(single) > 0 {
			return isSpecial(single[0]), isSpecial(single[len(single)-1])
		}
	}
	return false, false
}

// tokenizerKVs builds the tokenizer.* metadata from hfDir's tokenizer.json
// (or, when there is none, its SentencePiece tokenizer.model) and
// tokenizer_config.json for a model of vocabSize embedding rows.
func tokenizerKVs(hfDir string, cfg *hfConfig, chatTemplate string) ([]KV, error) {
	path := filepath.Join(hfDir, "tokenizer.json")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(hfDir, tokenizer.ModelFile)); err == nil {
			return spmTokenizerKVs(hfDir, cfg, chatTemplate)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w (llama.cpp needs the vocabulary: tokenizer.json or tokenizer.model)", err)
	}
	var t hfTokenizer
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	kvs, err := vocabKVs(&t, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var tc *tokenizer.Config
	tcPath := filepath.Join(hfDir, "tokenizer_config.json")
	if _, err := os.Stat(tcPath); err == nil {
		if tc, err = tokenizer.LoadConfig(tcPath); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	ids := map[string]int{}
	for tok, id := range t.Model.Vocab {
		ids[tok] = id
	}
	for _, a := range t.AddedTokens {
		ids[a.Content] = a.ID
	}
	addBOS, addEOS := templateSpecials(t.PostProcessor)
	return specialKVs(kvs, func(s string) (int, bool) { id, ok := ids[s]; return id, ok }, tc, tcPath, cfg, t.Model.UnkToken, addBOS, addEOS, chatTemplate)
}

// specialKVs appends the special token ids, add_bos/add_eos and the chat
// templates to kvs; lookup maps a token text to its id, tc (tcPath) is the
// tokenizer configuration (nil when absent), unk the unknown token and
// addBOS/addEOS the defaults when the configuration does not say.
func specialKVs(kvs []KV, lookupID func(string) (int, bool), tc *tokenizer.Config, tcPath string, cfg *hfConfig, unk *string, addBOS, addEOS bool, chatTemplate string) ([]KV, error) {
	lookup := func(what string, s *string) (uint32, bool, error) {
		if s == nil || *s == "" {
			return 0, false, nil
		}
		id, ok := lookupID(*s)
		if !ok {
			return 0, false, fmt.Errorf("%s: %s %q is not in the vocabulary", tcPath, what, *s)
		}
		return uint32(id), true, nil
	}
	special := func(key, what string, s *string, fallback int) error {
		id, ok, err := lookup(what, s)
		if err != nil {
			return err
		}
		if !ok && fallback >= 0 {
			id, ok = uint32(fallback), true
		}
		if ok {
			kvs = append(kvs, KV{"tokenizer.ggml." + key, id})
		}
		return nil
	}
	var bosTok, eosTok, padTok *string
	if tc != nil {
		bosTok, eosTok, padTok = tc.BOSToken, tc.EOSToken, tc.PadToken
	}
	eos := -1
	if len(cfg.EOS) > 0 {
		eos = cfg.EOS[0]
	}
	if err := special("bos_token_id", "bos_token", bosTok, cfg.BOS); err != nil {
		return nil, err
	}
	if err := special("eos_token_id", "eos_token", eosTok, eos); err != nil {
		return nil, err
	}
	if unk != nil {
		if err := special("unknown_token_id", "unk_token", unk, -1); err != nil {
			return nil, err
		}
	}
	if err := special("padding_token_id", "pad_token", padTok, -1); err != nil {
		return nil, err
	}
	if tc != nil && tc.AddBOSToken != nil {
		addBOS = *tc.AddBOSToken
	}
	if tc != nil && tc.AddEOSToken != nil {
		addEOS = *tc.AddEOSToken
	}
	kvs = append(kvs, KV{"tokenizer.ggml.add_bos_token", addBOS}, KV{"tokenizer.ggml.add_eos_token", addEOS})
	if chatTemplate == "" && tc != nil {
		chatTemplate = tc.ChatTemplate
	}
	if chatTemplate != "" {
		kvs = append(kvs, KV{"tokenizer.chat_template", chatTemplate})
	}
	if tc != nil {
		names := make([]string, 0, len(tc.ChatTemplates))
		for n := range tc.ChatTemplates {
			if n != "default" {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		for _, n := range names {
			kvs = append(kvs, KV{"tokenizer.chat_template." + n, tc.ChatTemplates[n]})
		}
	}
	return kvs, nil
}

// vocabKVs builds the model, pre, tokens, token types, scores and merges.
func vocabKVs(t *hfTokenizer, cfg *hfConfig) ([]KV, error) {
	if t.Model.Type != "" && t.Model.Type != "BPE" {
		return nil, fmt.Errorf("tokenizer model %q is not supported (only BPE)", t.Model.Type)
	}
	byteLevel := hasType(t.PreTokenizer, "ByteLevel") || hasType(t.Decoder, "ByteLevel")
	spm := !byteLevel && (t.Model.ByteFallback || hasType(t.PreTokenizer, "Metaspace") || hasType(t.Decoder, "Metaspace") ||
		strings.Contains(string(t.Normalizer), spmSpace) || strings.Contains(string(t.Normalizer), `\u2581`))
	if !byteLevel && !spm {
		return nil, errors.New("tokenizer is neither byte-level BPE (ByteLevel pre-tokenizer) nor SentencePiece-style BPE (byte_fallback or ▁ spaces)")
	}
	n := cfg.VocabSize
	maxID := -1
	for _, id := range t.Model.Vocab {
		maxID = max(maxID, id)
	}
	for _, a := range t.AddedTokens {
		maxID = max(maxID, a.ID)
	}
	if maxID+1 > n {
		return nil, fmt.Errorf("tokenizer has ids up to %d but config.json vocab_size is %d", maxID, n)
	}
	tokens := make([]string, n)
	types := make([]int32, n)
	set := make([]bool, n)
	for tok, id := range t.Model.Vocab {
		if id < 0 {
			return nil, fmt.Errorf("model.vocab: token %q has negative id %d", tok, id)
		}
		if set[id] && tokens[id] != tok {
			return nil, fmt.Errorf("model.vocab: id %d is both %q and %q", id, tokens[id], tok)
		}
		tokens[id], types[id], set[id] = tok, tokNormal, true
		if spm && byteToken.MatchString(tok) {
			types[id] = tokByte
		}
	}
	for _, a := range t.AddedTokens {
		if a.ID < 0 {
			return nil, fmt.Errorf("added_tokens: %q has negative id %d", a.Content, a.ID)
		}
		if set[a.ID] && tokens[a.ID] != a.Content {
			return nil, fmt.Errorf("added_tokens: id %d is %q in the vocabulary and %q as an added token", a.ID, tokens[a.ID], a.Content)
		}
		tokens[a.ID], set[a.ID] = a.Content, true
		if a.Special {
			types[a.ID] = tokControl
		} else {
			types[a.ID] = tokUserDefined
		}
	}
	if spm && t.Model.UnkToken != nil {
		if id, ok := t.Model.Vocab[*t.Model.UnkToken]; ok {
			types[id] = tokUnknown
		}
	}
	for i := range tokens {
		if !set[i] {
			tokens[i], types[i] = fmt.Sprintf("[PAD%d]", i), tokUnused
		}
	}
	merges, err := parseMerges(t.Model.Merges)
	if err != nil {
		return nil, err
	}
	kvs := []KV{}
	if byteLevel {
		kvs = append(kvs, KV{"tokenizer.ggml.model", "gpt2"}, KV{"tokenizer.ggml.pre", preTokenizerName(t)},
			KV{"tokenizer.ggml.tokens", tokens}, KV{"tokenizer.ggml.token_type", types})
	} else {
		// SentencePiece's scores: the tokenizer merges the adjacent pair
		// whose result scores highest, so the token made by merge r scores
		// -r; tokens no merge makes score 0.
		scores := make([]float32, n)
		rank := make(map[string]int, len(merges))
		for r, m := range merges {
			a, b, ok := strings.Cut(m, " ")
			if !ok {
				return nil, fmt.Errorf("model.merges[%d] %q is not two tokens", r, m)
			}
			if _, seen := rank[a+b]; !seen {
				rank[a+b] = r
			}
		}
		for i, tok := range tokens {
			if r, ok := rank[tok]; ok && types[i] == tokNormal {
				scores[i] = -float32(r)
			}
		}
		kvs = append(kvs, KV{"tokenizer.ggml.model", "llama"}, KV{"tokenizer.ggml.pre", "default"},
			KV{"tokenizer.ggml.tokens", tokens}, KV{"tokenizer.ggml.scores", scores}, KV{"tokenizer.ggml.token_type", types})
	}
	if len(merges) > 0 {
		kvs = append(kvs, KV{"tokenizer.ggml.merges", merges})
	}
	return kvs, nil
}

// spmTokenizerKVs builds the tokenizer.* metadata from hfDir's SentencePiece
// tokenizer.model (with tokenizer_config.json, special_tokens_map.json and
// added_tokens.json, read by tokenizer.LoadDir) as llama.cpp's converter
// does for SentencePiece vocabularies: model "llama", the pieces with their
// scores and types (SentencePiece's piece types are llama.cpp's token
// types), padded to vocab_size with [PADn] UNUSED entries; added tokens
// (added_tokens_decoder, added_tokens.json, ChatGLM's tokens after the
// pieces) become CONTROL when special, else USER_DEFINED, with score -1000
// (ChatGLM's 0, as llama.cpp's chatglm3 vocabulary); add_space_prefix is the
// model's add_dummy_prefix. Only BPE models: llama.cpp's "llama" tokenizer
// merges by score, which is not how a unigram model segments. The model's
// normalizer is not carried (llama.cpp applies none to this vocabulary).
func spmTokenizerKVs(hfDir string, cfg *hfConfig, chatTemplate string) ([]KV, error) {
	codec, tc, err := tokenizer.LoadDir(hfDir)
	if err != nil {
		return nil, err
	}
	sp, ok := codec.(*tokenizer.SentencePiece)
	if !ok {
		return nil, fmt.Errorf("tokenizer: %s: want a SentencePiece tokenizer.model", hfDir)
	}
	m := sp.Model()
	path := filepath.Join(hfDir, tokenizer.ModelFile)
	if mt := m.Proto().Trainer.ModelType; mt != sentencepiece.BPE {
		return nil, fmt.Errorf("%s: a %v SentencePiece model: llama.cpp's SentencePiece vocabulary (merges by score) reproduces only BPE models", path, mt)
	}
	n := cfg.VocabSize
	if sp.VocabSize() > n {
		return nil, fmt.Errorf("%s: tokenizer has ids up to %d but config.json vocab_size is %d", path, sp.VocabSize()-1, n)
	}
	tokens := make([]string, n)
	scores := make([]float32, n)
	types := make([]int32, n)
	for i := range tokens {
		tokens[i], scores[i], types[i] = fmt.Sprintf("[PAD%d]", i), -1000, tokUnused
	}
	for id := 0; id < m.VocabSize(); id++ {
		tokens[id], scores[id], types[id] = m.IDToPiece(id), m.Score(id), int32(m.Type(id))
	}
	for _, a := range sp.AddedTokens() {
		if _, listed := tc.AddedTokensDecoder[a.ID]; a.ID < m.VocabSize() && !listed {
			continue // a piece the configuration names as a special token keeps its type
		}
		tokens[a.ID], scores[a.ID], types[a.ID] = a.Content, -1000, tokUserDefined
		if a.Special {
			types[a.ID] = tokControl
		}
		if sp.IsChatGLM() && a.ID >= m.VocabSize() {
			scores[a.ID] = 0
		}
	}
	kvs := []KV{{"tokenizer.ggml.model", "llama"}, {"tokenizer.ggml.pre", "default"},
		{"tokenizer.ggml.tokens", tokens}, {"tokenizer.ggml.scores", scores}, {"tokenizer.ggml.token_type", types},
		{"tokenizer.ggml.add_space_prefix", m.Proto().Normalizer.AddDummyPrefix}}
	tcPath := filepath.Join(hfDir, tokenizer.ConfigFile)
	var unk *string
	if id := m.UnkID(); id >= 0 {
		s := m.IDToPiece(id)
		unk = &s
	}
	addBOS := (tc.AddBOSToken == nil || *tc.AddBOSToken) && tc.BOSToken != nil
	if sp.IsChatGLM() {
		addBOS = false // ChatGLM puts [gMASK] sop first, not a BOS
	}
	addEOS := tc.AddEOSToken != nil && *tc.AddEOSToken
	return specialKVs(kvs, codec.TokenToID, tc, tcPath, cfg, unk, addBOS, addEOS, chatTemplate)
}
