package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/lathe-ml/lathe/internal/tokenizer/sentencepiece"
)

// The files a tokenizer directory is read from.
const (
	JSONFile          = "tokenizer.json"
	ModelFile         = "tokenizer.model"
	ConfigFile        = "tokenizer_config.json"
	SpecialTokensFile = "special_tokens_map.json"
	AddedTokensFile   = "added_tokens.json"
)

// ErrNoTokenizer is wrapped by LoadDir's error for a directory that holds
// neither tokenizer.json nor tokenizer.model.
var ErrNoTokenizer = errors.New("no tokenizer.json or tokenizer.model")

// File returns the tokenizer file LoadDir reads in dir: tokenizer.json when
// present, else tokenizer.model.
func File(dir string) (string, error) {
	for _, name := range []string{JSONFile, ModelFile} {
		p := filepath.Join(dir, name)
		st, err := os.Stat(p)
		if err == nil && st.Mode().IsRegular() {
			return p, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("tokenizer: %w", err)
		}
	}
	return "", fmt.Errorf("tokenizer: %s: %w (lathe reads Hugging Face fast tokenizers and SentencePiece models)", dir, ErrNoTokenizer)
}

// LoadDir loads the tokenizer of a model or tokenizer directory:
// tokenizer.json when present, else tokenizer.model, with the
// tokenizer_config.json beside it. For tokenizer.json the Config is nil when
// there is no tokenizer_config.json. For tokenizer.model the Config is never
// nil: it is the effective configuration the SentencePiece tokenizer was
// built with (tokenizer_config.json, the special tokens of
// special_tokens_map.json it does not set, and the defaults of the slow
// tokenizer class for those neither sets: <s>, </s> and <unk> when the model
// has them; ChatGLM has no BOS).
func LoadDir(dir string) (Codec, *Config, error) {
	f, err := File(dir)
	if err != nil {
		return nil, nil, err
	}
	return LoadPath(f)
}

// LoadPath loads a tokenizer from a directory (as LoadDir) or a file: a
// tokenizer.json (any file whose content is a JSON object) or a
// SentencePiece model, with the tokenizer_config.json, special_tokens_map.json
// and added_tokens.json of the file's directory.
func LoadPath(path string) (Codec, *Config, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("tokenizer: %w", err)
	}
	if st.IsDir() {
		return LoadDir(path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("tokenizer: %w", err)
	}
	dir := filepath.Dir(path)
	cfg, err := loadOptionalConfig(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, nil, err
	}
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		tok, err := Parse(b)
		if err != nil {
			return nil, nil, fmt.Errorf("tokenizer: %s: %w", path, err)
		}
		return tok, cfg, nil
	}
	sp, cfg, err := loadSentencePiece(path, b, cfg)
	if err != nil {
		return nil, nil, err
	}
	return sp, cfg, nil
}

func loadOptionalConfig(p string) (*Config, error) {
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("tokenizer config: %w", err)
	}
	return LoadConfig(p)
}

// loadSentencePiece builds the SentencePiece tokenizer of the model file at
// path (content b) and the files beside it.
func loadSentencePiece(path string, b []byte, cfg *Config) (*SentencePiece, *Config, error) {
	if isTiktoken(b) {
		return nil, nil, fmt.Errorf("tokenizer: %s is a tiktoken vocabulary (base64 tokens and ranks, as GLM-4's tokenizer.model), not a SentencePiece model; lathe reads such models through a tokenizer.json (GLM-4's -hf repositories, e.g. THUDM/glm-4-9b-chat-hf, ship one)", path)
	}
	mp, err := sentencepiece.ParseModelProto(b)
	if err == nil {
		err = mp.CheckComplete()
	}
	var m *sentencepiece.Model
	if err == nil {
		m, err = sentencepiece.NewModel(mp)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	eff := &Config{keys: map[string]bool{}}
	if cfg != nil {
		c := *cfg
		eff = &c
	}
	stm, err := loadOptionalConfig(filepath.Join(dir, SpecialTokensFile))
	if err != nil {
		return nil, nil, err
	}
	fill := func(key string, dst **string, fromMap *string, def string) {
		switch {
		case eff.Has(key):
		case fromMap != nil || stm.Has(key):
			*dst = fromMap
		case def != "":
			if _, ok := m.Lookup(def); ok {
				d := def
				*dst = &d
			}
		}
	}
	var mBOS, mEOS, mUnk, mPad *string
	if stm != nil {
		mBOS, mEOS, mUnk, mPad = stm.BOSToken, stm.EOSToken, stm.UnkToken, stm.PadToken
		for _, s := range stm.AdditionalSpecialTokens {
			if !contains(eff.AdditionalSpecialTokens, s) {
				eff.AdditionalSpecialTokens = append(eff.AdditionalSpecialTokens, s)
			}
		}
	}
	p := m.Proto().Trainer
	if IsChatGLM(eff) {
		// ChatGLMTokenizer's properties: eos </s>, unk and pad <unk>, no bos.
		fill("eos_token", &eff.EOSToken, mEOS, "</s>")
		fill("unk_token", &eff.UnkToken, mUnk, "<unk>")
		fill("pad_token", &eff.PadToken, mPad, "<unk>")
	} else {
		fill("bos_token", &eff.BOSToken, mBOS, p.BOSPiece)
		fill("eos_token", &eff.EOSToken, mEOS, p.EOSPiece)
		fill("unk_token", &eff.UnkToken, mUnk, p.UnkPiece)
		fill("pad_token", &eff.PadToken, mPad, "")
	}
	var addedJSON map[string]int
	ap := filepath.Join(dir, AddedTokensFile)
	if ab, err := os.ReadFile(ap); err == nil {
		if err := json.Unmarshal(ab, &addedJSON); err != nil {
			return nil, nil, fmt.Errorf("tokenizer: %s: want an object of token: id: %w", ap, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("tokenizer: %w", err)
	}
	sp, err := NewSentencePiece(m, eff, addedJSON)
	if err != nil {
		return nil, nil, fmt.Errorf("tokenizer: %s: %w", dir, err)
	}
	return sp, eff, nil
}

// isTiktoken reports whether b looks like a tiktoken BPE file: text lines
// of a base64 token, a space and a rank.
func isTiktoken(b []byte) bool {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	tok, rank, ok := bytes.Cut(bytes.TrimRight(line, "\r"), []byte(" "))
	if !ok || len(tok) == 0 || len(rank) == 0 {
		return false
	}
	for _, c := range tok {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	for _, c := range rank {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}
