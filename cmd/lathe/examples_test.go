package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runLathe runs the CLI in-process and returns its exit code and output.
func runLathe(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, environ: os.Environ()}
	code := runCLI(context.Background(), env, args)
	return code, out.String(), errb.String()
}

// TestSelfCognitionExample runs examples/self-cognition with a name and an
// author of the test's own: after LoRA SFT the tiny model answers "who
// are you?" with them (greedy decoding), and the base model does not.
func TestSelfCognitionExample(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model for about half a minute")
	}
	example, _ := filepath.Abs(filepath.Join("..", "..", "examples", "self-cognition"))
	cache := t.TempDir()
	vars := []string{"-cache", cache, "-var", "name=Nova", "-var", "author=Orbit Labs"}
	if code, _, errs := runLathe(t, append(append([]string{"run", "-ci"}, vars...), example)...); code != 0 {
		t.Fatalf("lathe run: exit %d\n%s", code, errs)
	}
	ask := func(model string) string {
		code, out, errs := runLathe(t, append(append([]string{"chat", "-p", "who are you?"}, vars...), model, example)...)
		if code != 0 {
			t.Fatalf("lathe chat %s: exit %d\n%s", model, code, errs)
		}
		return strings.TrimSpace(out)
	}
	after := ask("sft.identity.adapter")
	before := ask("pretrain.base.model")
	t.Logf("before SFT: %q", before)
	t.Logf("after SFT:  %q", after)
	if !strings.Contains(after, "Nova") {
		t.Errorf("after SFT the model does not give its name: %q", after)
	}
	if strings.Contains(before, "Nova") {
		t.Errorf("the base model already says the name: %q", before)
	}
}

// TestQuickstartReproducible runs the quickstart and reruns some of its
// stages with -verify: each must reproduce its outputs byte for byte.
func TestQuickstartReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("trains the quickstart's models, about a minute")
	}
	example, _ := filepath.Abs(filepath.Join("..", "..", "examples", "quickstart"))
	cache := t.TempDir()
	if code, _, errs := runLathe(t, "run", "-ci", "-cache", cache, example); code != 0 {
		t.Fatalf("lathe run: exit %d\n%s", code, errs)
	}
	for _, st := range []string{"tokenize.corpus", "pretrain.base", "dpo.polite", `evaluate.identity["after"]`, "export.gguf"} {
		code, out, errs := runLathe(t, "run", "-ci", "-cache", cache, "-verify", st, example)
		if code != 0 || !strings.Contains(out+errs, "reproducible") {
			t.Errorf("-verify %s: exit %d\n%s%s", st, code, out, errs)
		}
	}
}

// TestModelFamiliesExample runs examples/model-families: a tiny model of
// each family is pretrained, LoRA-tuned on all its modules and exported
// merged; the adapter targets and the exported checkpoint use the
// family's own module and tensor names.
func TestModelFamiliesExample(t *testing.T) {
	if testing.Short() {
		t.Skip("trains four tiny models")
	}
	example, _ := filepath.Abs(filepath.Join("..", "..", "examples", "model-families"))
	cache := t.TempDir()
	if code, _, errs := runLathe(t, "validate", example); code != 0 {
		t.Fatalf("lathe validate: exit %d\n%s", code, errs)
	}
	if code, _, errs := runLathe(t, "run", "-ci", "-cache", cache, example); code != 0 {
		t.Fatalf("lathe run: exit %d\n%s", code, errs)
	}
	want := map[string]struct{ target, tensor string }{
		"baichuan": {"W_pack", "model.layers.0.self_attn.W_pack.weight"},
		"chatglm":  {"query_key_value", "transformer.encoder.layers.0.self_attention.query_key_value.weight"},
		"gemma":    {"q_proj", "model.layers.0.self_attn.q_proj.weight"},
		"gemma2":   {"q_proj", "model.layers.0.pre_feedforward_layernorm.weight"},
		"phi3":     {"qkv_proj", "model.layers.0.self_attn.qkv_proj.weight"},
	}
	for fam, w := range want {
		adir, mdir := t.TempDir(), t.TempDir()
		code, _, errs := runLathe(t, "artifacts", "get", "-cache", cache, `sft.lora["`+fam+`"].adapter`, adir, example)
		if code != 0 {
			t.Fatalf("artifacts get %s adapter: exit %d\n%s", fam, code, errs)
		}
		cfg, err := os.ReadFile(filepath.Join(adir, "adapter_config.json"))
		if err != nil || !strings.Contains(string(cfg), `"`+w.target+`"`) {
			t.Errorf("%s adapter targets: %v\n%s", fam, err, cfg)
		}
		code, _, errs = runLathe(t, "artifacts", "get", "-cache", cache, `export.merged["`+fam+`"].model`, mdir, example)
		if code != 0 {
			t.Fatalf("artifacts get %s model: exit %d\n%s", fam, code, errs)
		}
		st, err := os.ReadFile(filepath.Join(mdir, "model.safetensors"))
		if err != nil || !bytes.Contains(st, []byte(`"`+w.tensor+`"`)) {
			t.Errorf("%s export lacks tensor %s (%v)", fam, w.tensor, err)
		}
	}
}
