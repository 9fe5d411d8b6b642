package tokenizer

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
)

// Config is what lathe uses from a tokenizer_config.json. Special tokens
// are nil when absent or null.
type Config struct {
	BOSToken *string
	EOSToken *string
	PadToken *string
	UnkToken *string
	// AddBOSToken / AddEOSToken are nil when the file does not say.
	AddBOSToken *bool
	AddEOSToken *bool
	// ChatTemplate is the default template ("" when none); ChatTemplates
	// holds every named template (the default one under "default").
	ChatTemplate  string
	ChatTemplates map[string]string
	// ModelMaxLength is 0 when absent; huge sentinel values (HF writes
	// 1e30 for "unlimited") are clamped to math.MaxInt64.
	ModelMaxLength           int64
	CleanUpTokenizationSpace bool
	TokenizerClass           string
	// AddedTokensDecoder maps ids to the added tokens the file lists.
	AddedTokensDecoder map[int]AddedToken
	// AdditionalSpecialTokens are the additional_special_tokens' texts.
	AdditionalSpecialTokens []string

	keys map[string]bool // the top-level keys the file has
}

// Has reports whether the file has the top-level key (even when its value
// is null).
func (c *Config) Has(key string) bool { return c != nil && c.keys[key] }

// LoadConfig reads a tokenizer_config.json file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer config: %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses tokenizer_config.json bytes; errors name the JSON path.
func ParseConfig(data []byte) (*Config, error) {
	root, err := parseObj(data, "")
	if err != nil {
		return nil, &pathError{Path: "$", Err: err.(*pathError).Err}
	}
	c := &Config{keys: make(map[string]bool, len(root.m))}
	for k := range root.m {
		c.keys[k] = true
	}
	for _, f := range []struct {
		key string
		dst **string
	}{{"bos_token", &c.BOSToken}, {"eos_token", &c.EOSToken}, {"pad_token", &c.PadToken}, {"unk_token", &c.UnkToken}} {
		s, ok, err := tokenField(root, f.key)
		if err != nil {
			return nil, err
		}
		if ok {
			*f.dst = &s
		}
	}
	for _, f := range []struct {
		key string
		dst **bool
	}{{"add_bos_token", &c.AddBOSToken}, {"add_eos_token", &c.AddEOSToken}} {
		if root.has(f.key) {
			b, err := root.boolean(f.key, false)
			if err != nil {
				return nil, err
			}
			*f.dst = &b
		}
	}
	if root.has("additional_special_tokens") && !isNull(root.m["additional_special_tokens"]) {
		items, err := root.array("additional_special_tokens", true)
		if err != nil {
			return nil, err
		}
		for i, it := range items {
			p := indexPath("additional_special_tokens", i)
			s, ok, err := tokenField(jobj{m: map[string]json.RawMessage{p: it}}, p)
			if err != nil {
				return nil, err
			}
			if ok && s != "" {
				c.AdditionalSpecialTokens = append(c.AdditionalSpecialTokens, s)
			}
		}
	}
	if c.CleanUpTokenizationSpace, err = root.boolean("clean_up_tokenization_spaces", false); err != nil {
		return nil, err
	}
	if c.TokenizerClass, err = root.str("tokenizer_class", "", false); err != nil {
		return nil, err
	}
	if root.has("model_max_length") {
		f, err := root.float("model_max_length", 0)
		if err != nil {
			return nil, err
		}
		if f < 0 || math.IsNaN(f) {
			return nil, perr("model_max_length", "must be >= 0, got %v", f)
		}
		if f >= math.MaxInt64 {
			c.ModelMaxLength = math.MaxInt64
		} else {
			c.ModelMaxLength = int64(f)
		}
	}
	if root.has("chat_template") {
		raw := root.m["chat_template"]
		var s string
		if json.Unmarshal(raw, &s) == nil {
			c.ChatTemplate = s
			c.ChatTemplates = map[string]string{"default": s}
		} else {
			items, err := root.array("chat_template", true)
			if err != nil {
				return nil, perr("chat_template", "expected a string or a list of {name, template}")
			}
			c.ChatTemplates = map[string]string{}
			for i, it := range items {
				o, err := parseObj(it, indexPath("chat_template", i))
				if err != nil {
					return nil, err
				}
				name, err := o.str("name", "", true)
				if err != nil {
					return nil, err
				}
				tmpl, err := o.str("template", "", true)
				if err != nil {
					return nil, err
				}
				c.ChatTemplates[name] = tmpl
			}
			c.ChatTemplate = c.ChatTemplates["default"]
		}
	}
	if root.has("added_tokens_decoder") {
		o, err := parseObj(root.m["added_tokens_decoder"], "added_tokens_decoder")
		if err != nil {
			return nil, err
		}
		c.AddedTokensDecoder = map[int]AddedToken{}
		keys := make([]string, 0, len(o.m))
		for k := range o.m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := o.sub(k)
			var id int
			if _, err := fmt.Sscanf(k, "%d", &id); err != nil || itoa(id) != k || id < 0 {
				return nil, perr(p, "key must be a non-negative integer id")
			}
			to, err := parseObj(o.m[k], p)
			if err != nil {
				return nil, err
			}
			at := AddedToken{ID: id}
			if at.Content, err = to.str("content", "", true); err != nil {
				return nil, err
			}
			for _, b := range []struct {
				key string
				dst *bool
			}{{"single_word", &at.SingleWord}, {"lstrip", &at.LStrip}, {"rstrip", &at.RStrip}, {"normalized", &at.Normalized}, {"special", &at.Special}} {
				if *b.dst, err = to.boolean(b.key, false); err != nil {
					return nil, err
				}
			}
			c.AddedTokensDecoder[id] = at
		}
	}
	return c, nil
}

// tokenField reads a special token given as a string or an AddedToken
// object ({"content": ...}).
func tokenField(root jobj, key string) (string, bool, error) {
	if !root.has(key) {
		return "", false, nil
	}
	raw := root.m[key]
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true, nil
	}
	o, err := parseObj(raw, key)
	if err != nil {
		return "", false, perr(key, "expected a string or an object with \"content\"")
	}
	s, err = o.str("content", "", true)
	if err != nil {
		return "", false, err
	}
	return s, true, nil
}
