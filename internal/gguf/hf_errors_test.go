package gguf

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/safetensors"
	"github.com/lathe-ml/lathe/internal/tokenizer"
)

// rewrite copies the GGUF file src to dst through edit, which may change
// or drop metadata (return false) and drop tensors.
func rewrite(t *testing.T, src, dst string, kv func(*KV) bool, keepTensor func(string) bool) {
	t.Helper()
	f, err := Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var kvs []KV
	for _, e := range f.KV {
		if kv == nil || kv(&e) {
			kvs = append(kvs, e)
		}
	}
	var ts []Tensor
	for _, ti := range f.Tensors {
		if keepTensor != nil && !keepTensor(ti.Name) {
			continue
		}
		ts = append(ts, Tensor{Name: ti.Name, Shape: ti.Shape, Type: ti.Type, Data: func() ([]byte, error) { return f.Bytes(ti.Name) }})
	}
	if err := WriteFile(dst, kvs, ts); err != nil {
		t.Fatal(err)
	}
}

func specNamed(name string) modelSpec {
	for _, s := range specs() {
		if s.name == name {
			return s
		}
	}
	panic(name)
}

// TestReadHFForeign reads files without lathe's own keys, as llama.cpp
// writes them: llama3 rope scaling recovered from rope_freqs, and a
// SentencePiece vocabulary without merges, whose merges come from the
// scores.
func TestReadHFForeign(t *testing.T) {
	s := specNamed("llama")
	s.config["rope_scaling"] = map[string]any{"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
		"high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
	dir, _ := makeModelDir(t, s)
	tmp := t.TempDir()
	ours := filepath.Join(tmp, "ours.gguf")
	if _, err := WriteFromHF(ours, dir, WriteOptions{Type: F32}); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(tmp, "foreign.gguf")
	rewrite(t, ours, foreign, func(kv *KV) bool { return !strings.HasPrefix(kv.Key, "lathe.") }, nil)
	out := filepath.Join(tmp, "hf")
	if err := ReadHF(foreign, out); err != nil {
		t.Fatal(err)
	}
	checkConfig(t, s, out)

	// Factors that match no Llama 3.x setting are refused.
	odd := filepath.Join(tmp, "odd.gguf")
	s2 := specNamed("llama") // original context 64
	dir2, _ := makeModelDir(t, s2)
	if _, err := WriteFromHF(ours, dir2, WriteOptions{Type: F32}); err != nil {
		t.Fatal(err)
	}
	rewrite(t, ours, odd, func(kv *KV) bool { return !strings.HasPrefix(kv.Key, "lathe.") }, nil)
	if err := ReadHF(odd, filepath.Join(tmp, "odd")); err == nil || !strings.Contains(err.Error(), "rope_freqs") {
		t.Errorf("unmatched rope_freqs: %v", err)
	} else {
		t.Log(err)
	}

	// SentencePiece without merges.
	m := specNamed("mistral")
	mdir, _ := makeModelDir(t, m)
	if _, err := WriteFromHF(ours, mdir, WriteOptions{Type: F32}); err != nil {
		t.Fatal(err)
	}
	nomerges := filepath.Join(tmp, "nomerges.gguf")
	rewrite(t, ours, nomerges, func(kv *KV) bool { return kv.Key != "tokenizer.ggml.merges" }, nil)
	mout := filepath.Join(tmp, "mhf")
	if err := ReadHF(nomerges, mout); err != nil {
		t.Fatal(err)
	}
	checkTokenizer(t, m, mdir, mout)
}

func TestWriteFromHFErrors(t *testing.T) {
	base := specNamed("qwen3")
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, dir string, s *modelSpec)
		opt  WriteOptions
		want string
	}{
		{"type", nil, WriteOptions{Type: Q4_K}, "cannot write Q4_K"},
		{"architecture", func(t *testing.T, dir string, s *modelSpec) {
			s.config["architectures"] = []string{"GPT2LMHeadModel"}
		}, WriteOptions{}, "not supported"},
		{"missing field", func(t *testing.T, dir string, s *modelSpec) { delete(s.config, "hidden_size") }, WriteOptions{}, "hidden_size: missing"},
		{"bad heads", func(t *testing.T, dir string, s *modelSpec) { s.config["num_key_value_heads"] = 3 }, WriteOptions{}, "not a multiple"},
		{"rope scaling type", func(t *testing.T, dir string, s *modelSpec) {
			s.config["rope_scaling"] = map[string]any{"rope_type": "yarn", "factor": 4.0}
		}, WriteOptions{}, "only llama3"},
		{"llama3 on qwen", func(t *testing.T, dir string, s *modelSpec) {
			s.config["rope_scaling"] = map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
		}, WriteOptions{}, "cannot be expressed"},
		{"shape", func(t *testing.T, dir string, s *modelSpec) { s.config["intermediate_size"] = 64 }, WriteOptions{}, "config.json implies"},
		{"layers", func(t *testing.T, dir string, s *modelSpec) { s.config["num_hidden_layers"] = 3 }, WriteOptions{}, "missing tensor \"model.layers.2."},
		{"extra layer", func(t *testing.T, dir string, s *modelSpec) { s.config["num_hidden_layers"] = 1 }, WriteOptions{}, "num_hidden_layers is 1"},
		{"untied without lm_head", func(t *testing.T, dir string, s *modelSpec) {}, WriteOptions{}, ""},
		{"no tokenizer", func(t *testing.T, dir string, s *modelSpec) {
			if err := os.Remove(filepath.Join(dir, "tokenizer.json")); err != nil {
				t.Fatal(err)
			}
		}, WriteOptions{}, "needs the vocabulary"},
		{"vocab too small", func(t *testing.T, dir string, s *modelSpec) {
			editJSON(t, filepath.Join(dir, "tokenizer.json"), func(m map[string]any) {
				m["added_tokens"] = append(m["added_tokens"].([]any), map[string]any{"id": 400, "content": "<x>", "special": true})
			})
		}, WriteOptions{}, "ids up to 400 but config.json vocab_size is 328"},
		{"unigram", func(t *testing.T, dir string, s *modelSpec) {
			editJSON(t, filepath.Join(dir, "tokenizer.json"), func(m map[string]any) { m["model"].(map[string]any)["type"] = "Unigram" })
		}, WriteOptions{}, "only BPE"},
		{"not byte-level nor spm", func(t *testing.T, dir string, s *modelSpec) {
			editJSON(t, filepath.Join(dir, "tokenizer.json"), func(m map[string]any) {
				m["pre_tokenizer"], m["decoder"], m["post_processor"] = nil, nil, nil
			})
		}, WriteOptions{}, "neither byte-level"},
		{"eos not in vocab", func(t *testing.T, dir string, s *modelSpec) {
			writeJSONFile(t, filepath.Join(dir, "tokenizer_config.json"), map[string]any{"eos_token": "<|nope|>"})
		}, WriteOptions{}, "not in the vocabulary"},
		{"bad merges", func(t *testing.T, dir string, s *modelSpec) {
			editJSON(t, filepath.Join(dir, "tokenizer.json"), func(m map[string]any) { m["model"].(map[string]any)["merges"] = []any{[]any{"a"}} })
		}, WriteOptions{}, "want 2 strings"},
		{"unknown tensor", func(t *testing.T, dir string, s *modelSpec) {
			addTensor(t, dir, "model.layers.0.mlp.experts.weight", []int{4})
		}, WriteOptions{}, "has no llama.cpp name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base
			s.config = map[string]any{}
			for k, v := range base.config {
				s.config[k] = v
			}
			dir, _ := makeModelDir(t, s)
			if tc.edit != nil {
				tc.edit(t, dir, &s)
				writeJSONFile(t, filepath.Join(dir, "config.json"), s.config)
			}
			want := tc.want
			if tc.name == "untied without lm_head" {
				// Drop lm_head.weight from an untied model.
				rewriteSafetensors(t, dir, func(n string) bool { return n != "lm_head.weight" })
				want = `missing tensor "lm_head.weight"`
			}
			dst := filepath.Join(t.TempDir(), "x.gguf")
			_, err := WriteFromHF(dst, dir, tc.opt)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("got %v, want an error containing %q", err, want)
			}
			t.Log(err)
			if _, err := os.Stat(dst); err == nil {
				t.Error("a failed conversion left a file")
			}
		})
	}
}

func editJSON(t *testing.T, path string, f func(map[string]any)) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	writeJSONFile(t, path, m)
}

func rewriteSafetensors(t *testing.T, dir string, keep func(string) bool) {
	t.Helper()
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, ti := range set.Tensors() {
		if !keep(ti.Name) {
			continue
		}
		b, err := set.Bytes(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, safetensors.Tensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: b})
	}
	set.Close()
	if err := safetensors.WriteFile(filepath.Join(dir, safetensors.SingleFileName), ts, nil); err != nil {
		t.Fatal(err)
	}
}

func addTensor(t *testing.T, dir, name string, shape []int) {
	t.Helper()
	n := 1
	for _, d := range shape {
		n *= d
	}
	extra, err := safetensors.Float32Tensor(name, safetensors.F32, shape, make([]float32, n))
	if err != nil {
		t.Fatal(err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ts := []safetensors.Tensor{extra}
	for _, ti := range set.Tensors() {
		b, _ := set.Bytes(ti.Name)
		ts = append(ts, safetensors.Tensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: b})
	}
	set.Close()
	if err := safetensors.WriteFile(filepath.Join(dir, safetensors.SingleFileName), ts, nil); err != nil {
		t.Fatal(err)
	}
}

func TestReadHFErrors(t *testing.T) {
	s := specNamed("qwen3")
	dir, _ := makeModelDir(t, s)
	tmp := t.TempDir()
	good := filepath.Join(tmp, "good.gguf")
	if _, err := WriteFromHF(good, dir, WriteOptions{Type: Q8_0}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		kv   func(*KV) bool
		keep func(string) bool
		want string
	}{
		{"architecture", func(kv *KV) bool {
			if kv.Key == "general.architecture" {
				kv.Value = "gptneox"
			}
			return true
		}, nil, `"gptneox" is not supported`},
		{"no block count", func(kv *KV) bool { return kv.Key != "qwen3.block_count" }, nil, "block_count: missing"},
		{"wrong key type", func(kv *KV) bool {
			if kv.Key == "qwen3.embedding_length" {
				kv.Value = "64"
			}
			return true
		}, nil, "want an integer"},
		{"no eps", func(kv *KV) bool { return kv.Key != "qwen3.attention.layer_norm_rms_epsilon" }, nil, "layer_norm_rms_epsilon"},
		{"rope scaling", func(kv *KV) bool {
			if kv.Key == "general.name" {
				*kv = KV{"qwen3.rope.scaling.type", "yarn"}
			}
			return true
		}, nil, `rope scaling "yarn" is not supported`},
		{"no embeddings", nil, func(n string) bool { return n != "token_embd.weight" }, "token_embd.weight"},
		{"tokenizer model", func(kv *KV) bool {
			if kv.Key == "tokenizer.ggml.model" {
				kv.Value = "bert"
			}
			return true
		}, nil, `"bert" is not supported`},
		{"token types", func(kv *KV) bool {
			if kv.Key == "tokenizer.ggml.token_type" {
				kv.Value = []int32{1}
			}
			return true
		}, nil, "token_type"},
		{"gpt2 without merges", func(kv *KV) bool { return kv.Key != "tokenizer.ggml.merges" }, nil, "merges: missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := filepath.Join(t.TempDir(), "bad.gguf")
			rewrite(t, good, bad, tc.kv, tc.keep)
			err := ReadHF(bad, filepath.Join(t.TempDir(), "out"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			t.Log(err)
		})
	}
	// Extra keys and a named tensor ReadHF does not know.
	bad := filepath.Join(tmp, "extra.gguf")
	f, err := Open(good)
	if err != nil {
		t.Fatal(err)
	}
	var ts []Tensor
	for _, ti := range f.Tensors {
		ts = append(ts, Tensor{Name: ti.Name, Shape: ti.Shape, Type: ti.Type, Data: func() ([]byte, error) { return f.Bytes(ti.Name) }})
	}
	ts = append(ts, Tensor{Name: "blk.0.ffn_gate_exps.weight", Shape: []uint64{4}, Type: F32, Data: func() ([]byte, error) { return make([]byte, 16), nil }})
	if err := WriteFile(bad, f.KV, ts); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := ReadHF(bad, filepath.Join(tmp, "x")); err == nil || !strings.Contains(err.Error(), "no Hugging Face name") {
		t.Errorf("unknown tensor: %v", err)
	}
	if err := ReadHF(filepath.Join(tmp, "missing.gguf"), filepath.Join(tmp, "y")); err == nil {
		t.Error("missing file: no error")
	}
}

// TestChatTemplateOverride checks WriteOptions.ChatTemplate and that a
// directory without tokenizer_config.json converts (ids from config.json).
func TestChatTemplateOverride(t *testing.T) {
	s := specNamed("mistral")
	s.tokConfig = nil
	dir, _ := makeModelDir(t, s)
	path := filepath.Join(t.TempDir(), "m.gguf")
	if _, err := WriteFromHF(path, dir, WriteOptions{Type: Q4_0, ChatTemplate: "{{ x }}"}); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got, _ := f.str("tokenizer.chat_template"); got != "{{ x }}" {
		t.Errorf("chat template %q", got)
	}
	if name, _ := f.str("general.name"); name != "mistral" {
		t.Errorf("general.name %q, want the directory name", name)
	}
	for key, want := range map[string]uint64{"tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.unknown_token_id": 0} {
		if got, ok, _ := f.uint(key); !ok || got != want {
			t.Errorf("%s = %d (%v), want %d", key, got, ok, want)
		}
	}
	// add_bos_token comes from the post-processor's template.
	if f.Metadata["tokenizer.ggml.add_bos_token"] != true || f.Metadata["tokenizer.ggml.add_eos_token"] != false {
		t.Errorf("add_bos/add_eos %v/%v", f.Metadata["tokenizer.ggml.add_bos_token"], f.Metadata["tokenizer.ggml.add_eos_token"])
	}
	out := filepath.Join(t.TempDir(), "hf")
	if err := ReadHF(path, out); err != nil {
		t.Fatal(err)
	}
	tc, err := tokenizer.LoadConfig(filepath.Join(out, "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if tc.ChatTemplate != "{{ x }}" || tc.AddBOSToken == nil || !*tc.AddBOSToken {
		t.Errorf("rebuilt tokenizer_config: %+v", tc)
	}
	rf, _ := f.Float32("token_embd.weight")
	if slices.ContainsFunc(rf, func(v float32) bool { return math.IsNaN(float64(v)) }) {
		t.Error("NaN in dequantised embeddings")
	}
}
