package tokenizer

import (
	"runtime"
	"sync"
)

// Codec is what lathe's stages and commands use a tokenizer for. Both kinds
// of tokenizer lathe loads implement it: *Tokenizer (a Hugging Face
// tokenizer.json) and *SentencePiece (a SentencePiece tokenizer.model with
// the tokenizer_config.json around it). LoadDir and LoadPath pick one.
type Codec interface {
	// Encode tokenizes text. With addSpecialTokens the tokenizer's own
	// specials are added (BOS, or ChatGLM's [gMASK] sop); the added and
	// special tokens the tokenizer matches in text (such as "<|im_end|>")
	// are always recognised. Invalid UTF-8 is replaced by U+FFFD.
	Encode(text string, addSpecialTokens bool) []int
	// EncodeBatch encodes texts in parallel; out[i] is Encode(texts[i]).
	EncodeBatch(texts []string, addSpecialTokens bool) [][]int
	// Decode turns ids back into text; unknown ids are skipped and, with
	// skipSpecialTokens, special tokens are left out.
	Decode(ids []int, skipSpecialTokens bool) string
	// VocabSize is one more than the largest id.
	VocabSize() int
	// TokenToID looks a token up by its text (an added or special token,
	// or a vocabulary entry); ok is false when there is no such token.
	TokenToID(tok string) (int, bool)
	// IDToToken returns the token text of id.
	IDToToken(id int) (string, bool)
	// IsSpecial reports whether id is a special token (skipped by
	// Decode(..., true)).
	IsSpecial(id int) bool
	// AddedTokens returns the tokens added on top of the model's
	// vocabulary (specials included).
	AddedTokens() []AddedToken
	// SpecialTokenID maps the text of one special token, as a chat
	// template writes it in a segment of its own (BOS, EOS, <|im_end|>,
	// ChatGLM's [gMASK] and sop, Baichuan's <reserved_106>), straight to
	// its id, the way LLaMA Factory's {"token": ...} slots and
	// convert_tokens_to_ids do. ok is false when text is not such a token;
	// the caller then encodes it as text.
	SpecialTokenID(text string) (int, bool)
}

var (
	_ Codec = (*Tokenizer)(nil)
	_ Codec = (*SentencePiece)(nil)
)

// SpecialTokenID returns the id of an added token whose content is text
// (for these tokenizers Encode of that text alone gives the same id).
func (t *Tokenizer) SpecialTokenID(text string) (int, bool) {
	if i, ok := t.added.byStr[text]; ok {
		return t.added.tokens[i].ID, true
	}
	return 0, false
}

// encodeBatch runs encode over texts on GOMAXPROCS workers.
func encodeBatch(texts []string, encode func(string) []int) [][]int {
	out := make([][]int, len(texts))
	workers := min(runtime.GOMAXPROCS(0), len(texts))
	if workers <= 1 {
		for i, s := range texts {
			out[i] = encode(s)
		}
		return out
	}
	var next int
	var mu sync.Mutex
	var wg sync.WaitGroup
	take := func() int {
		mu.Lock()
		defer mu.Unlock()
		i := next
		next++
		return i
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := take()
				if i >= len(texts) {
					return
				}
				out[i] = encode(texts[i])
			}
		}()
	}
	wg.Wait()
	return out
}
