package tokenizer

import (
	"fmt"
	"sort"
	"strings"

	"github.com/lathe-ml/lathe/internal/tokenizer/sentencepiece"
)

// SentencePiece is a tokenizer made of a SentencePiece model file
// (tokenizer.model) and the Hugging Face files around it, encoding as the
// model's slow transformers tokenizer class does: LlamaTokenizer (legacy
// mode), BaichuanTokenizer and ChatGLM 2/3's ChatGLMTokenizer. It is
// immutable and safe for concurrent use.
//
// Text is split at the added and special tokens first (the
// tokenizer_config.json's bos/eos/unk/pad tokens, additional special tokens
// and added_tokens_decoder, special_tokens_map.json, added_tokens.json;
// leftmost-longest, raw text), and every piece of text between them is
// encoded by the SentencePiece model on its own, so each gets the model's
// dummy prefix as the slow tokenizers do. Decode decodes runs of model ids
// with SentencePiece's rules and writes added and control tokens as their
// text.
//
// ChatGLM (tokenizer_class ChatGLMTokenizer) appends [MASK], [gMASK],
// [sMASK], sop, eop, <|system|>, <|user|>, <|assistant|> and <|observation|>
// after the model's pieces, as tokenization_chatglm.py does. Like that
// tokenizer with its default encode_special_tokens=False they are not
// recognised in text (so "sop" inside a word stays text); chat templates
// reach them through SpecialTokenID and TokenToID, and Encode with
// addSpecialTokens puts [gMASK] sop first (build_inputs_with_special_tokens).
type SentencePiece struct {
	model     *sentencepiece.Model
	tokens    []AddedToken   // added tokens and family tokens, by id
	byStr     map[string]int // content -> index in tokens
	byID      map[int]int    // id -> index in tokens
	inText    *addedVocab    // the tokens recognised in text
	prefix    []int          // ids Encode(..., true) puts first
	suffix    []int          // and last
	vocabSize int
	chatGLM   bool
}

// chatGLMTokens are the tokens tokenization_chatglm.py (ChatGLM 2/3)
// numbers after the SentencePiece vocabulary, in order.
var chatGLMTokens = []string{"[MASK]", "[gMASK]", "[sMASK]", "sop", "eop", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"}

// IsChatGLM reports whether a tokenizer_config.json names ChatGLM's
// SentencePiece tokenizer class.
func IsChatGLM(cfg *Config) bool {
	return cfg != nil && cfg.TokenizerClass == "ChatGLMTokenizer"
}

// NewSentencePiece builds a tokenizer from a loaded model, the effective
// tokenizer_config.json (nil when there is none; LoadDir merges
// special_tokens_map.json into it and fills the class defaults) and the
// entries of added_tokens.json (nil when absent). Tokens the configuration
// names that resolve to no id are ignored, as they have no id to give.
func NewSentencePiece(m *sentencepiece.Model, cfg *Config, addedJSON map[string]int) (*SentencePiece, error) {
	s := &SentencePiece{model: m, byStr: map[string]int{}, byID: map[int]int{}, chatGLM: IsChatGLM(cfg)}
	n := m.VocabSize()
	add := func(at AddedToken, where string) error {
		if at.ID < 0 || at.ID > 1<<26 {
			return fmt.Errorf("%s: id %d out of range", where, at.ID)
		}
		if i, ok := s.byID[at.ID]; ok {
			if s.tokens[i].Content != at.Content {
				return fmt.Errorf("%s: id %d is both %q and %q", where, at.ID, s.tokens[i].Content, at.Content)
			}
			s.tokens[i].Special = s.tokens[i].Special || at.Special
			return nil
		}
		if i, ok := s.byStr[at.Content]; ok {
			if s.tokens[i].ID != at.ID {
				return fmt.Errorf("%s: %q has id %d and id %d", where, at.Content, s.tokens[i].ID, at.ID)
			}
			return nil
		}
		if at.ID < n && m.IDToPiece(at.ID) != at.Content && m.Type(at.ID) != sentencepiece.Unused {
			return fmt.Errorf("%s: id %d is %q, but the model's piece %d is %q", where, at.ID, at.Content, at.ID, m.IDToPiece(at.ID))
		}
		s.byStr[at.Content] = len(s.tokens)
		s.byID[at.ID] = len(s.tokens)
		s.tokens = append(s.tokens, at)
		return nil
	}
	// The model's own id for a token text: a piece, or an entry added
	// above.
	resolve := func(text string) (int, bool) {
		if i, ok := s.byStr[text]; ok {
			return s.tokens[i].ID, true
		}
		return m.Lookup(text)
	}
	if cfg != nil {
		ids := make([]int, 0, len(cfg.AddedTokensDecoder))
		for id := range cfg.AddedTokensDecoder {
			ids = append(ids, id)
		}
		sort.Ints(ids)
		for _, id := range ids {
			if err := add(cfg.AddedTokensDecoder[id], fmt.Sprintf("added_tokens_decoder[%d]", id)); err != nil {
				return nil, err
			}
		}
	}
	names := make([]string, 0, len(addedJSON))
	for k := range addedJSON {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if k == "" {
			return nil, fmt.Errorf("added_tokens.json: empty token")
		}
		if err := add(AddedToken{ID: addedJSON[k], Content: k}, fmt.Sprintf("added_tokens.json[%q]", k)); err != nil {
			return nil, err
		}
	}
	if s.chatGLM {
		for i, tok := range chatGLMTokens {
			if _, ok := s.byStr[tok]; ok {
				continue
			}
			if err := add(AddedToken{ID: n + i, Content: tok, Special: true}, "ChatGLM special token "+tok); err != nil {
				return nil, err
			}
		}
	}
	// Special tokens named by the configuration are special added tokens
	// recognised in text, as the slow tokenizers' no-split list makes them.
	var specials []string
	if cfg != nil {
		for _, p := range []*string{cfg.BOSToken, cfg.EOSToken, cfg.UnkToken, cfg.PadToken} {
			if p != nil && *p != "" {
				specials = append(specials, *p)
			}
		}
		specials = append(specials, cfg.AdditionalSpecialTokens...)
	}
	for _, text := range specials {
		id, ok := resolve(text)
		if !ok {
			continue
		}
		if err := add(AddedToken{ID: id, Content: text, Special: true}, "special token "+text); err != nil {
			return nil, err
		}
		s.tokens[s.byID[id]].Special = true
	}
	var textToks []AddedToken
	for _, t := range s.tokens {
		if s.chatGLM && isChatGLMToken(t.Content) && t.ID >= n {
			continue
		}
		t.Normalized = false // split on the raw text, before the model normalizes
		textToks = append(textToks, t)
	}
	s.inText = newAddedVocab(textToks)
	s.vocabSize = n
	for _, t := range s.tokens {
		s.vocabSize = max(s.vocabSize, t.ID+1)
	}
	switch {
	case s.chatGLM:
		s.prefix = []int{s.tokens[s.byStr["[gMASK]"]].ID, s.tokens[s.byStr["sop"]].ID}
	default:
		addBOS := true // LlamaTokenizer's and BaichuanTokenizer's default
		if cfg != nil && cfg.AddBOSToken != nil {
			addBOS = *cfg.AddBOSToken
		}
		if addBOS && cfg != nil && cfg.BOSToken != nil {
			if id, ok := resolve(*cfg.BOSToken); ok {
				s.prefix = []int{id}
			}
		}
		if cfg != nil && cfg.AddEOSToken != nil && *cfg.AddEOSToken && cfg.EOSToken != nil {
			if id, ok := resolve(*cfg.EOSToken); ok {
				s.suffix = []int{id}
			}
		}
	}
	return s, nil
}

func isChatGLMToken(s string) bool {
	for _, t := range chatGLMTokens {
		if s == t {
			return true
		}
	}
	return false
}

// Model returns the SentencePiece model.
func (s *SentencePiece) Model() *sentencepiece.Model { return s.model }

// IsChatGLM reports whether the tokenizer numbers ChatGLM's special tokens
// after the model's pieces.
func (s *SentencePiece) IsChatGLM() bool { return s.chatGLM }

// VocabSize is one more than the largest id (model pieces and added tokens).
func (s *SentencePiece) VocabSize() int { return s.vocabSize }

// AddedTokens returns the added tokens (configuration entries, the special
// tokens it names, ChatGLM's tokens), in the order they were added.
func (s *SentencePiece) AddedTokens() []AddedToken {
	return append([]AddedToken(nil), s.tokens...)
}

// TokenToID looks tok up among the added tokens, then the model's pieces.
func (s *SentencePiece) TokenToID(tok string) (int, bool) {
	if i, ok := s.byStr[tok]; ok {
		return s.tokens[i].ID, true
	}
	return s.model.Lookup(tok)
}

// IDToToken returns the added token or piece of id.
func (s *SentencePiece) IDToToken(id int) (string, bool) {
	if i, ok := s.byID[id]; ok {
		return s.tokens[i].Content, true
	}
	if id >= 0 && id < s.model.VocabSize() {
		return s.model.IDToPiece(id), true
	}
	return "", false
}

// IsSpecial reports whether id is a special added token or a CONTROL piece
// of the model (BOS, EOS, ...).
func (s *SentencePiece) IsSpecial(id int) bool {
	if i, ok := s.byID[id]; ok && s.tokens[i].Special {
		return true
	}
	return id >= 0 && id < s.model.VocabSize() && s.model.Type(id) == sentencepiece.Control
}

// SpecialTokenID maps the text of an added token, one of ChatGLM's tokens,
// or a CONTROL or USER_DEFINED piece of the model to its id.
func (s *SentencePiece) SpecialTokenID(text string) (int, bool) {
	if i, ok := s.byStr[text]; ok {
		return s.tokens[i].ID, true
	}
	if id, ok := s.model.Lookup(text); ok {
		if t := s.model.Type(id); t == sentencepiece.Control || t == sentencepiece.UserDefined {
			return id, true
		}
	}
	return 0, false
}

// Encode splits text at the added tokens and encodes the rest with the
// model; with addSpecialTokens it adds BOS (add_bos_token, true unless the
// configuration says false), EOS (add_eos_token) or ChatGLM's [gMASK] sop.
// Invalid UTF-8 is handled by the model (each bad byte is U+FFFD, as
// SentencePiece does).
func (s *SentencePiece) Encode(text string, addSpecialTokens bool) []int {
	var ids []int
	if addSpecialTokens {
		ids = append(ids, s.prefix...)
	}
	prev := 0
	for _, m := range s.inText.findMatches(s.inText.raw, text) {
		if m.start > prev {
			ids = append(ids, s.model.Encode(text[prev:m.start])...)
		}
		ids = append(ids, s.inText.tokens[m.tok].ID)
		prev = m.end
	}
	if prev < len(text) {
		ids = append(ids, s.model.Encode(text[prev:])...)
	}
	if ids == nil {
		ids = []int{}
	}
	if addSpecialTokens {
		ids = append(ids, s.suffix...)
	}
	return ids
}

// EncodeBatch encodes texts in parallel; out[i] is Encode(texts[i]).
func (s *SentencePiece) EncodeBatch(texts []string, addSpecialTokens bool) [][]int {
	return encodeBatch(texts, func(t string) []int { return s.Encode(t, addSpecialTokens) })
}

// Decode decodes runs of model ids as SentencePiece does and writes added
// tokens and CONTROL pieces as their text (left out with
// skipSpecialTokens when special). Ids out of range are skipped.
func (s *SentencePiece) Decode(ids []int, skipSpecialTokens bool) string {
	var sb strings.Builder
	var run []int
	flush := func() {
		if len(run) > 0 {
			sb.WriteString(s.model.Decode(run))
			run = run[:0]
		}
	}
	n := s.model.VocabSize()
	for _, id := range ids {
		if i, ok := s.byID[id]; ok {
			if skipSpecialTokens && s.tokens[i].Special {
				continue
			}
			flush()
			sb.WriteString(s.tokens[i].Content)
			continue
		}
		if id < 0 || id >= n {
			continue
		}
		if s.model.Type(id) == sentencepiece.Control {
			if !skipSpecialTokens {
				flush()
				sb.WriteString(s.model.IDToPiece(id))
			}
			continue
		}
		run = append(run, id)
	}
	flush()
	return sb.String()
}
