package gguf

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/safetensors"
)

// famCase is a tiny random model of one of internal/llama's families.
type famCase struct {
	name, modelType string
	base            llama.Config
	edit            func(c *llama.Config)
	config          map[string]any // merged into the saved config.json
	tok             string         // testdata tokenizer.json, or "spm" for a tokenizer.model
	noBOS           bool           // drop the tokenizer.json's post-processor (which adds a BOS)
	tokConfig       map[string]any
	// expectations
	arch      string
	rotary    int     // rope.dimension_count
	logitTol  float64 // F32 round trip, relative to the largest logit
	tensors   []string
	layerMods []string
}

func famCases() []famCase {
	shape := func(V, H, I, L, heads, kv, hd int) llama.Config {
		return llama.Config{VocabSize: V, Hidden: H, Intermediate: I, Layers: L, Heads: heads, KVHeads: kv, HeadDim: hd,
			MaxPositions: 128, RopeTheta: 10000, RMSNormEps: 1e-6}
	}
	llamaMods := []string{"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"}
	fusedMods := []string{"attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"}
	spmConfig := map[string]any{"add_bos_token": true, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
	return []famCase{
		{
			name: "gemma", modelType: "gemma", base: func() llama.Config {
				c := shape(320, 64, 96, 2, 4, 1, 32) // head_dim 32: 4·32 ≠ 64
				c.TieEmbeddings = true
				return c
			}(),
			tok: "tiny_gpt2.json", tokConfig: map[string]any{"eos_token": "<|endoftext|>"},
			arch: "gemma", rotary: 32, layerMods: llamaMods,
		},
		{
			name: "gemma2", modelType: "gemma2", base: func() llama.Config {
				c := shape(288, 64, 96, 3, 4, 2, 16)
				c.TieEmbeddings = true
				return c
			}(),
			edit: func(c *llama.Config) { c.SlidingWindow = 5 }, // applies within the test's 12 tokens
			tok:  "tiny_spm.json", tokConfig: spmConfig,
			arch: "gemma2", rotary: 16,
			layerMods: []string{"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "post_attention_norm", "ffn_norm",
				"ffn_gate", "ffn_up", "ffn_down", "post_ffw_norm"},
		},
		{
			name: "phi3 longrope", modelType: "phi3", base: func() llama.Config {
				c := shape(328, 64, 96, 2, 4, 2, 16)
				c.MaxPositions = 256
				return c
			}(),
			edit: func(c *llama.Config) { c.SlidingWindow = 8 },
			config: map[string]any{"original_max_position_embeddings": 64, "rope_scaling": map[string]any{"type": "longrope",
				"short_factor": []float64{1, 1.05, 1.1, 1.3, 1.7, 2.2, 3.1, 4.05},
				"long_factor":  []float64{1.2, 1.5, 2, 3, 5, 8, 13, 21}}},
			tok: "tiny_llama3.json", tokConfig: map[string]any{"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
			arch: "phi3", rotary: 16, layerMods: fusedMods,
		},
		{
			name: "phi3 partial rotary", modelType: "phi3", base: shape(328, 64, 96, 2, 4, 4, 16),
			config: map[string]any{"partial_rotary_factor": 0.5},
			tok:    "tiny_llama3.json", tokConfig: map[string]any{"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
			arch: "phi3", rotary: 8, layerMods: fusedMods,
		},
		{
			name: "baichuan 7b", modelType: "baichuan", base: shape(420, 32, 64, 32, 4, 4, 8),
			tok: "spm", tokConfig: map[string]any{"tokenizer_class": "BaichuanTokenizer", "add_bos_token": true,
				"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
			arch: "baichuan", rotary: 8, logitTol: 1e-5, layerMods: llamaMods,
		},
		{
			name: "baichuan 13b", modelType: "baichuan", base: func() llama.Config {
				c := shape(320, 48, 64, 40, 6, 6, 8) // 6 heads: ALiBi's non-power-of-two slopes
				c.ALiBi = true
				return c
			}(),
			tok: "tiny_gpt2.json", tokConfig: map[string]any{"eos_token": "<|endoftext|>"},
			arch: "baichuan", rotary: 8, logitTol: 1e-5, layerMods: llamaMods,
		},
		{
			name: "chatglm3", modelType: "chatglm", base: shape(420, 64, 96, 2, 4, 2, 16),
			tok: "spm", tokConfig: map[string]any{"tokenizer_class": "ChatGLMTokenizer"},
			arch: "chatglm", rotary: 8, layerMods: fusedMods,
		},
		{
			name: "glm4", modelType: "chatglm", base: func() llama.Config {
				c := shape(328, 64, 96, 2, 4, 1, 16)
				c.RopeTheta = 500000 // rope_ratio 50
				return c
			}(),
			tok: "tiny_llama3.json", tokConfig: map[string]any{"eos_token": "<|eot_id|>"}, noBOS: true,
			arch: "chatglm", rotary: 8, layerMods: fusedMods,
		},
	}
}

// makeFamilyDir saves a random model of the case, with random norms and
// biases, its tokenizer files, and returns the directory and the weights.
func makeFamilyDir(t *testing.T, fc famCase) (string, map[string][]float32) {
	t.Helper()
	cfg, err := llama.NewConfig(fc.modelType, fc.base)
	if err != nil {
		t.Fatal(err)
	}
	if fc.edit != nil {
		fc.edit(&cfg)
	}
	be := cpu.New()
	m, err := llama.New(cfg, be)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if err := m.InitRandom(uint64(len(fc.name)), 0.08); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), strings.ReplaceAll(fc.name, " ", "_"))
	if err := m.Save(dir, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	if fc.config != nil {
		editJSON(t, filepath.Join(dir, "config.json"), func(c map[string]any) {
			for k, v := range fc.config {
				c[k] = v
			}
		})
	}
	// Norms and biases away from their initial 1/0, so that a missed or
	// doubled transform shows.
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(len(fc.name)), 11))
	weights := map[string][]float32{}
	var ts []safetensors.Tensor
	for _, ti := range set.Tensors() {
		v, err := set.Float32(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(ti.Name, "norm.weight"):
			for i := range v {
				v[i] += float32(0.1 * rng.NormFloat64())
			}
		case strings.HasSuffix(ti.Name, ".bias"):
			for i := range v {
				v[i] = float32(0.05 * rng.NormFloat64())
			}
		}
		weights[ti.Name] = v
		st, err := safetensors.Float32Tensor(ti.Name, safetensors.F32, ti.Shape, v)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, st)
	}
	set.Close()
	if err := safetensors.WriteFile(filepath.Join(dir, safetensors.SingleFileName), ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	switch fc.tok {
	case "bytes":
		writeJSONFile(t, filepath.Join(dir, "tokenizer.json"), byteTokenizer())
	case "spm":
		b, err := os.ReadFile(filepath.Join("..", "tokenizer", "sentencepiece", "testdata", "bpe_identity_user.model"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "tokenizer.model"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	default:
		b, err := os.ReadFile(filepath.Join("testdata", fc.tok))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if fc.noBOS {
			editJSON(t, filepath.Join(dir, "tokenizer.json"), func(m map[string]any) { m["post_processor"] = nil })
		}
	}
	writeJSONFile(t, filepath.Join(dir, "tokenizer_config.json"), fc.tokConfig)
	return dir, weights
}

// byteTokenizer is a GPT-2-style byte-level BPE tokenizer.json with all
// 256 byte tokens (ids 0-255, in GPT-2's byte-to-character order), a few
// merges and <|endoftext|> (id 256), as llama.cpp's vocabulary loader
// needs every byte to have a token.
func byteTokenizer() map[string]any {
	// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the
	// others for 256, 257, ... in byte order.
	vocab := map[string]int{}
	n := 0
	for b := range 256 {
		if b >= '!' && b <= '~' || b >= 0xa1 && b <= 0xac || b >= 0xae {
			vocab[string(rune(b))] = b
			continue
		}
		vocab[string(rune(256+n))] = b
		n++
	}
	merges := [][2]string{{"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}, {"l", "a"}, {"la", "t"}}
	for i, m := range merges {
		vocab[m[0]+m[1]] = 257 + i
	}
	bl := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
	return map[string]any{
		"version": "1.0", "added_tokens": []any{map[string]any{"id": 256, "content": "<|endoftext|>", "special": true}},
		"pre_tokenizer": bl, "decoder": bl, "post_processor": bl,
		"model": map[string]any{"type": "BPE", "vocab": vocab, "merges": merges},
	}
}

// famLogits loads dir with the engine and returns the logits of a fixed
// sequence.
func famLogits(t *testing.T, dir string) []float32 {
	t.Helper()
	m, err := llama.Load(dir, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	ids := []int32{5, 17, 42, 100, 3, 250, 1, 77, 31, 8, 199, 64}
	out, err := m.Logits(&llama.Batch{B: 1, T: len(ids), Tokens: ids})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFamiliesRoundTrip: each family's model converts to its llama.cpp
// architecture (checked with gguf-parser-go and against the test's own
// reading of the converter's transforms) and ReadHF gives back a model
// of the family with the same logits: exactly in F32 (Baichuan within
// 1e-5: its head, stored normalised, is normalised again on load),
// within the quantisation bounds in F16 and Q8_0.
func TestFamiliesRoundTrip(t *testing.T) {
	for _, fc := range famCases() {
		t.Run(fc.name, func(t *testing.T) {
			dir, weights := makeFamilyDir(t, fc)
			want := famLogits(t, dir)
			scale := 0.0
			for _, v := range want {
				scale = max(scale, math.Abs(float64(v)))
			}
			for _, typ := range []Type{F32, F16, Q8_0} {
				tmp := t.TempDir()
				path := filepath.Join(tmp, "m.gguf")
				res, err := WriteFromHF(path, dir, WriteOptions{Type: typ, Name: "tiny"})
				if err != nil {
					t.Fatalf("%v: %v", typ, err)
				}
				if res.Arch != fc.arch {
					t.Errorf("arch %q, want %q", res.Arch, fc.arch)
				}
				// Phi-3 with a window and longrope: llama.cpp ignores the
				// window and picks the factors by its context size.
				if wantNotes := map[bool]int{true: 2}[fc.name == "phi3 longrope"]; len(res.Notes) != wantNotes {
					t.Errorf("notes %q, want %d", res.Notes, wantNotes)
				}
				if typ == F32 {
					checkFamilyParser(t, fc, path)
					checkFamilyTensors(t, fc, path, weights)
				}
				out := filepath.Join(tmp, "hf")
				if err := ReadHF(path, out); err != nil {
					t.Fatalf("%v: ReadHF: %v", typ, err)
				}
				// The rebuilt tokenizer.json encodes as the source (GLM-4's
				// chatglm-bpe included: the source adds no BOS, as ChatGLM
				// in llama.cpp).
				if typ == F32 && fc.tok != "spm" {
					checkTokenizer(t, modelSpec{tokConfig: fc.tokConfig}, dir, out)
				}
				lc, err := llama.LoadConfig(out)
				if err != nil {
					t.Fatal(err)
				}
				if lc.ModelType != fc.modelType {
					t.Errorf("ReadHF model_type %q, want %q", lc.ModelType, fc.modelType)
				}
				got := famLogits(t, out)
				diff := 0.0
				for i := range want {
					diff = max(diff, math.Abs(float64(got[i]-want[i])))
				}
				bound := map[Type]float64{F32: fc.logitTol, F16: logitBound[F16], Q8_0: logitBound[Q8_0]}[typ]
				t.Logf("%s %v: max |logit diff| %.3g (ratio %.3g)", fc.name, typ, diff, diff/scale)
				if diff > bound*scale {
					t.Errorf("%v: max logit difference %g exceeds %g·%g", typ, diff, bound, scale)
				}
			}
		})
	}
}

// checkFamilyParser checks the file's architecture, hyper-parameters and
// tensor names with gguf-parser-go.
func checkFamilyParser(t *testing.T, fc famCase, path string) {
	t.Helper()
	gf, err := parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatalf("gguf-parser-go: %v", err)
	}
	a, c := gf.Architecture(), fc.base
	if a.Architecture != fc.arch || a.BlockCount != uint64(c.Layers) || a.EmbeddingLength != uint64(c.Hidden) ||
		a.AttentionHeadCount != uint64(c.Heads) || a.AttentionHeadCountKV != uint64(c.KVHeads) ||
		a.RoPEDimensionCount != uint64(fc.rotary) || a.VocabularyLength != uint64(c.VocabSize) ||
		len(a.FeedForwardLength) == 0 || a.FeedForwardLength[0] != uint64(c.Intermediate) {
		t.Errorf("gguf-parser-go architecture: %+v", a)
	}
	kv := func(k string) parser.GGUFMetadataKV {
		v, ok := gf.Header.MetadataKV.Get(k)
		if !ok {
			t.Errorf("metadata %s missing", k)
		}
		return v
	}
	switch fc.arch {
	case "gemma", "gemma2":
		if a.AttentionKeyLength != uint32(c.HeadDim) || a.AttentionValueLength != uint32(c.HeadDim) {
			t.Errorf("key/value length %d/%d, want %d", a.AttentionKeyLength, a.AttentionValueLength, c.HeadDim)
		}
		if fc.arch == "gemma2" {
			if kv("gemma2.attn_logit_softcapping").ValueFloat32() != 50 || kv("gemma2.final_logit_softcapping").ValueFloat32() != 30 ||
				a.AttentionSlidingWindow != 5 || !slices.Equal(a.AttentionSlidingWindowLayers, []bool{true, false, true}) {
				t.Errorf("gemma2 soft caps / window: %v %v %d %v", kv("gemma2.attn_logit_softcapping").ValueFloat32(),
					kv("gemma2.final_logit_softcapping").ValueFloat32(), a.AttentionSlidingWindow, a.AttentionSlidingWindowLayers)
			}
		}
	case "phi3":
		if fc.config["rope_scaling"] != nil {
			// The window is written as the converter does; llama.cpp (and
			// gguf-parser-go after it) currently ignores it.
			if w := kv("phi3.attention.sliding_window").ValueUint32(); w != 8 || a.AttentionSlidingWindow != 0 ||
				kv("phi3.rope.scaling.original_context_length").ValueUint32() != 64 {
				t.Errorf("phi3 window %d (parser %d), original context %v", w, a.AttentionSlidingWindow, kv("phi3.rope.scaling.original_context_length"))
			}
			// 256/64 = 4: sqrt(1 + ln 4 / ln 64), as transformers and the converter compute it.
			if got, want := kv("phi3.rope.scaling.attn_factor").ValueFloat32(), float32(math.Sqrt(1+math.Log(4)/math.Log(64))); got != want {
				t.Errorf("attn_factor %v, want %v", got, want)
			}
		}
	case "chatglm":
		tk := gf.Tokenizer()
		if add, _ := gf.Header.MetadataKV.Get("tokenizer.ggml.add_bos_token"); add.ValueBool() {
			t.Error("chatglm: add_bos_token true")
		}
		if fc.tok == "spm" {
			if tk.Model != "llama" || tk.EOTTokenID != 406 { // <|user|>: the 7th of ChatGLM's tokens after the 400 pieces
				t.Errorf("chatglm3 tokenizer: %+v", tk)
			}
		} else if pre := kv("tokenizer.ggml.pre").ValueString(); tk.Model != "gpt2" || pre != "chatglm-bpe" {
			t.Errorf("glm4 tokenizer: model %s pre %s", tk.Model, pre)
		}
	}
	want := []string{"token_embd.weight", "output_norm.weight"}
	if !c.TieEmbeddings {
		want = append(want, "output.weight")
	}
	if fc.config["rope_scaling"] != nil {
		want = append(want, ropeLongName, ropeShortName)
	}
	for l := range c.Layers {
		for _, m := range fc.layerMods {
			want = append(want, fmt.Sprintf("blk.%d.%s.weight", l, m))
		}
		if fc.arch == "chatglm" {
			want = append(want, fmt.Sprintf("blk.%d.attn_qkv.bias", l))
		}
	}
	var got []string
	for _, ti := range gf.TensorInfos {
		got = append(got, ti.Name)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("tensors:\n got %v\nwant %v", got, want)
	}
}

// checkFamilyTensors checks the converter's transforms on the data, read
// as llama.cpp reads them: Gemma's norms hold 1 + w; Baichuan's W_pack is
// split into q, k (rows of each head interleaved: row 2i from i, 2i+1
// from i + d/2) and v, and its head's rows have unit norm; fused
// projections and ChatGLM's interleaved q/k rows are stored as they are.
func checkFamilyTensors(t *testing.T, fc famCase, path string, w map[string][]float32) {
	t.Helper()
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	get := func(name string) []float32 {
		v, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	same := func(what string, got, want []float32) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], want[i])
			}
		}
	}
	c := fc.base
	H := c.Hidden
	switch fc.arch {
	case "gemma", "gemma2":
		for _, n := range []struct{ gguf, hf string }{{"blk.1.attn_norm.weight", "model.layers.1.input_layernorm.weight"},
			{"output_norm.weight", "model.norm.weight"}} {
			src := w[n.hf]
			plus := make([]float32, len(src))
			for i := range src {
				plus[i] = src[i] + 1
			}
			same(n.gguf, get(n.gguf), plus)
		}
		same("blk.0.attn_q.weight", get("blk.0.attn_q.weight"), w["model.layers.0.self_attn.q_proj.weight"])
	case "baichuan":
		pack := w["model.layers.3.self_attn.W_pack.weight"]
		d := c.HeadDim
		for part, name := range []string{"attn_q", "attn_k", "attn_v"} {
			got := get("blk.3." + name + ".weight")
			for r := range H {
				src := r
				if name != "attn_v" {
					h, i := r/d, r%d
					src = h*d + i/2 + (i%2)*(d/2)
				}
				same(fmt.Sprintf("%s row %d", name, r), got[r*H:(r+1)*H], pack[(part*H+src)*H:(part*H+src+1)*H])
			}
		}
		head, out := w["lm_head.weight"], get("output.weight")
		for r := range c.VocabSize {
			n := 0.0
			for _, x := range head[r*H : (r+1)*H] {
				n += float64(x) * float64(x)
			}
			n = math.Sqrt(n)
			for i := range H {
				if want := float64(head[r*H+i]) / n; math.Abs(float64(out[r*H+i])-want) > 1e-7 {
					t.Fatalf("output row %d col %d = %v, want %v", r, i, out[r*H+i], want)
				}
			}
		}
	case "phi3":
		same("attn_qkv", get("blk.1.attn_qkv.weight"), w["model.layers.1.self_attn.qkv_proj.weight"])
		same("ffn_up", get("blk.1.ffn_up.weight"), w["model.layers.1.mlp.gate_up_proj.weight"])
		if rs, ok := fc.config["rope_scaling"].(map[string]any); ok {
			for name, k := range map[string]string{ropeLongName: "long_factor", ropeShortName: "short_factor"} {
				var want []float32
				for _, x := range rs[k].([]float64) {
					want = append(want, float32(x))
				}
				same(name, get(name), want)
			}
		}
	case "chatglm":
		p := "transformer.encoder.layers.1."
		same("attn_qkv", get("blk.1.attn_qkv.weight"), w[p+"self_attention.query_key_value.weight"])
		same("attn_qkv bias", get("blk.1.attn_qkv.bias"), w[p+"self_attention.query_key_value.bias"])
		same("ffn_up", get("blk.1.ffn_up.weight"), w[p+"mlp.dense_h_to_4h.weight"])
		same("output", get("output.weight"), w["transformer.output_layer.weight"])
	}
}

// TestFamiliesForeignPhi3: a Phi-3 file without lathe's keys (as
// llama.cpp's converter writes it) gives back the longrope scaling from
// the rope_factors tensors and the float32 rope.scaling keys.
func TestFamiliesForeignPhi3(t *testing.T) {
	fc := famCases()[2]
	dir, _ := makeFamilyDir(t, fc)
	want := famLogits(t, dir)
	tmp := t.TempDir()
	ours := filepath.Join(tmp, "ours.gguf")
	if _, err := WriteFromHF(ours, dir, WriteOptions{Type: F32, Name: "tiny"}); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(tmp, "foreign.gguf")
	rewrite(t, ours, foreign, func(kv *KV) bool { return !strings.HasPrefix(kv.Key, "lathe.") }, nil)
	out := filepath.Join(tmp, "hf")
	if err := ReadHF(foreign, out); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(out, "config.json"))
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	rs, _ := cfg["rope_scaling"].(map[string]any)
	if rs == nil || rs["type"] != "longrope" || cfg["original_max_position_embeddings"] != 64.0 || cfg["sliding_window"] != 8.0 {
		t.Errorf("config: %s", raw)
	}
	got := famLogits(t, out)
	for i := range want {
		if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*math.Max(1, math.Abs(float64(want[i]))) {
			t.Fatalf("logit %d: %v, want %v", i, got[i], want[i])
		}
	}
}

// TestFamiliesRefused: models llama.cpp would read differently than
// lathe computes them are refused with the reason.
func TestFamiliesRefused(t *testing.T) {
	cases := famCases()
	byName := func(n string) famCase {
		for _, c := range cases {
			if c.name == n {
				return c
			}
		}
		panic(n)
	}
	for _, tc := range []struct {
		name, from string
		edit       func(c *famCase)
		want       string
	}{
		{"baichuan layers", "baichuan 7b", func(c *famCase) { c.base.Layers = 2 }, "applies RoPE only to 32-layer models"},
		{"baichuan alibi layers", "baichuan 13b", func(c *famCase) { c.base.Layers = 32 }, "applies ALiBi only to 40-layer models"},
		{"gemma untied", "gemma", func(c *famCase) { c.base.TieEmbeddings = false }, "always uses the token embeddings"},
		{"gemma2 no soft cap", "gemma2", func(c *famCase) {
			c.edit = func(c *llama.Config) { c.SlidingWindow, c.AttnSoftCap = 5, 0 }
		}, "always soft-caps"},
		{"gemma2 no window", "gemma2", func(c *famCase) { c.config = map[string]any{"sliding_window": nil} }, "always applies a sliding window"},
		{"gemma2 query scale", "gemma2", func(c *famCase) {
			c.edit = func(c *llama.Config) { c.SlidingWindow, c.QueryScale = 5, 24 }
		}, "query_pre_attn_scalar 24"},
		{"chatglm dense bias", "chatglm3", func(c *famCase) { c.config = map[string]any{"add_bias_linear": true} }, "add_bias_linear"},
		{"chatglm head size", "chatglm3", func(c *famCase) { c.base.HeadDim = 32 }, "do not make hidden_size"},
		// The directory's name, phi3_partial_rotary, is general.name.
		{"phi3 name", "phi3 partial rotary", func(c *famCase) {}, `general.name "phi3_partial_rotary": llama.cpp treats a model named phi3/phi-3 as having Phi-3's <unk> token`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fc := byName(tc.from)
			tc.edit(&fc)
			dir, _ := makeFamilyDir(t, fc)
			_, err := WriteFromHF(filepath.Join(t.TempDir(), "m.gguf"), dir, WriteOptions{Type: F32})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}

// TestFamiliesWriteErrors: checkpoints that do not match their family's
// config are refused with the tensor named.
func TestFamiliesWriteErrors(t *testing.T) {
	cases := famCases()
	for _, tc := range []struct {
		name string
		fc   famCase
		edit func(t *testing.T, dir string)
		want string
	}{
		{"W_pack shape", cases[4], func(t *testing.T, dir string) {
			retensor(t, dir, "model.layers.0.self_attn.W_pack.weight", []int{64, 32})
		}, `tensor "model.layers.0.self_attn.W_pack.weight": shape [64 32], config.json implies [96 32]`},
		{"dense bias", cases[6], func(t *testing.T, dir string) {
			retensor(t, dir, "transformer.encoder.layers.0.self_attention.dense.bias", []int{64})
		}, `llama.cpp's chatglm architecture has no bias there`},
		{"foreign name", cases[3], func(t *testing.T, dir string) {
			retensor(t, dir, "model.layers.0.self_attn.q_proj.weight", []int{64, 64})
		}, `tensor "model.layers.0.self_attn.q_proj.weight" has no llama.cpp name for the phi3 architecture`},
		{"config field", cases[0], func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, "config.json"), func(m map[string]any) { m["hidden_activation"] = "relu" })
		}, `config.json: hidden_activation: "relu" is not supported`},
		{"config architecture", cases[6], func(t *testing.T, dir string) {
			editJSON(t, filepath.Join(dir, "config.json"), func(m map[string]any) { m["model_type"] = "gemma" })
		}, `model_type: "gemma" does not match architectures "ChatGLMModel"`},
		{"missing part", cases[1], func(t *testing.T, dir string) {
			rewriteSafetensors(t, dir, func(n string) bool { return n != "model.layers.2.post_feedforward_layernorm.weight" })
		}, `missing tensor "model.layers.2.post_feedforward_layernorm.weight"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := makeFamilyDir(t, tc.fc)
			tc.edit(t, dir)
			_, err := WriteFromHF(filepath.Join(t.TempDir(), "m.gguf"), dir, WriteOptions{Type: F32, Name: "tiny"})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// retensor adds or replaces tensor name in dir's model.safetensors with
// zeros of the given shape.
func retensor(t *testing.T, dir, name string, shape []int) {
	t.Helper()
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, ti := range set.Tensors() {
		if ti.Name == name {
			continue
		}
		v, err := set.Float32(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := safetensors.Float32Tensor(ti.Name, safetensors.F32, ti.Shape, v)
		ts = append(ts, st)
	}
	set.Close()
	n := 1
	for _, d := range shape {
		n *= d
	}
	st, _ := safetensors.Float32Tensor(name, safetensors.F32, shape, make([]float32, n))
	ts = append(ts, st)
	if err := safetensors.WriteFile(filepath.Join(dir, safetensors.SingleFileName), ts, nil); err != nil {
		t.Fatal(err)
	}
}

// TestFamiliesReadHFErrors: family files llama.cpp would read otherwise
// than their tensors say, or whose parts are incomplete, are refused.
func TestFamiliesReadHFErrors(t *testing.T) {
	cases := famCases()
	good := map[string]string{}
	for _, i := range []int{1, 2, 4, 6} {
		dir, _ := makeFamilyDir(t, cases[i])
		path := filepath.Join(t.TempDir(), "m.gguf")
		if _, err := WriteFromHF(path, dir, WriteOptions{Type: F32, Name: "tiny"}); err != nil {
			t.Fatal(err)
		}
		good[cases[i].modelType] = path
	}
	for _, tc := range []struct {
		name, from string
		kv         func(*KV) bool
		keep       func(string) bool
		want       string
	}{
		{"baichuan layers", "baichuan", func(kv *KV) bool {
			if kv.Key == "baichuan.block_count" {
				kv.Value = uint32(2)
			}
			return true
		}, func(n string) bool {
			var l int
			_, err := fmt.Sscanf(n, "blk.%d.", &l)
			return err != nil || l < 2
		}, "a 2-layer baichuan: llama.cpp applies RoPE to 32-layer and ALiBi to 40-layer ones only"},
		{"W_pack part", "baichuan", nil, func(n string) bool { return n != "blk.5.attn_k.weight" },
			"model.layers.5.self_attn.W_pack.weight: part 2 of 3 is missing"},
		{"chatglm rotary", "chatglm", func(kv *KV) bool {
			if kv.Key == "chatglm.rope.dimension_count" {
				kv.Value = uint32(16)
			}
			return true
		}, nil, "chatglm.rope.dimension_count: 16, but ChatGLM rotates half of each 16-dim head"},
		{"gemma2 pattern", "gemma2", func(kv *KV) bool {
			if kv.Key == "general.name" {
				*kv = KV{"gemma2.attention.sliding_window_pattern", uint32(3)}
			}
			return true
		}, nil, "sliding_window_pattern: want 2"},
		{"phi3 one factor tensor", "phi3", nil, func(n string) bool { return n != ropeLongName }, "must both be present"},
		{"phi3 no original context", "phi3", func(kv *KV) bool {
			return kv.Key != "phi3.rope.scaling.original_context_length"
		}, nil, "original_context_length: missing"},
		{"phi3 factors", "phi3", func(kv *KV) bool {
			if kv.Key == "lathe.rope_scaling.short_factor" {
				kv.Value = []float64{1, 2}
			}
			return true
		}, nil, "longrope short_factor has 2 factors"},
		{"gemma with output", "phi3", renameArch("phi3", "gemma"), nil, "an output.weight tensor: llama.cpp's gemma ties the output"},
		{"arch mismatch", "gemma2", renameArch("gemma2", "gemma"), nil,
			`tensor "blk.0.post_attention_norm.weight" has no Hugging Face name in the gemma architecture`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := filepath.Join(t.TempDir(), "bad.gguf")
			rewrite(t, good[tc.from], bad, tc.kv, tc.keep)
			err := ReadHF(bad, filepath.Join(t.TempDir(), "out"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// renameArch makes a file of architecture from claim to be of to.
func renameArch(from, to string) func(*KV) bool {
	return func(kv *KV) bool {
		if kv.Key == "general.architecture" {
			kv.Value = to
		}
		if rest, ok := strings.CutPrefix(kv.Key, from+"."); ok {
			kv.Key = to + "." + rest
		}
		return true
	}
}

// TestSpacePrefixRoundTrip: a SentencePiece-style tokenizer.json that does
// not prepend "▁" (Gemma's) gets add_space_prefix false, which llama.cpp
// would otherwise take as true, and ReadHF rebuilds a tokenizer that
// encodes and decodes as the source does.
func TestSpacePrefixRoundTrip(t *testing.T) {
	s := specNamed("mistral")
	dir, _ := makeModelDir(t, s)
	editJSON(t, filepath.Join(dir, "tokenizer.json"), func(m map[string]any) {
		m["normalizer"] = map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": spmSpace}
		dec := m["decoder"].(map[string]any)
		ds := dec["decoders"].([]any)
		dec["decoders"] = ds[:len(ds)-1] // no Strip
	})
	path := filepath.Join(t.TempDir(), "m.gguf")
	if _, err := WriteFromHF(path, dir, WriteOptions{Type: F32}); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := f.Metadata["tokenizer.ggml.add_space_prefix"]; !ok || v != false {
		t.Errorf("add_space_prefix %v (present %v), want false", v, ok)
	}
	f.Close()
	out := filepath.Join(t.TempDir(), "hf")
	if err := ReadHF(path, out); err != nil {
		t.Fatal(err)
	}
	checkTokenizer(t, s, dir, out)

	// The Prepend normalizer's tokenizer gets no key: llama.cpp's default.
	dir2, _ := makeModelDir(t, s)
	if _, err := WriteFromHF(path, dir2, WriteOptions{Type: F32}); err != nil {
		t.Fatal(err)
	}
	f, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if v, ok := f.Metadata["tokenizer.ggml.add_space_prefix"]; ok {
		t.Errorf("add_space_prefix %v written for a tokenizer that prepends", v)
	}
}
