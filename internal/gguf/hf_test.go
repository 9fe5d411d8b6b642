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
	"github.com/lathe-ml/lathe/internal/tensor"
	"github.com/lathe-ml/lathe/internal/tokenizer"
)

// modelSpec is a tiny model directory a test builds.
type modelSpec struct {
	name      string
	config    map[string]any
	tokenizer string         // fixture in testdata/
	tokConfig map[string]any // tokenizer_config.json, nil for none
	dtype     safetensors.DType
	sharded   bool
	// expectations
	arch, pre, tokModel string
	permuted            bool
}

func specs() []modelSpec {
	return []modelSpec{
		{
			name: "llama",
			config: map[string]any{
				"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama",
				"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 96,
				"num_hidden_layers": 2, "vocab_size": 328, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
				"rope_theta": 500000.0, "tie_word_embeddings": false, "attention_bias": true, "mlp_bias": false,
				"rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
					"high_freq_factor": 4.0, "original_max_position_embeddings": 64},
				"bos_token_id": 319, "eos_token_id": []int{320, 321}, "hidden_act": "silu",
			},
			tokenizer: "tiny_llama3.json",
			tokConfig: map[string]any{"add_bos_token": true, "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
				"chat_template": "{% for m in messages %}<|start|>{{ m['content'] }}<|eot_id|>{% endfor %}"},
			dtype: safetensors.F32, arch: "llama", pre: "llama-bpe", tokModel: "gpt2", permuted: true,
		},
		{
			name: "qwen2",
			config: map[string]any{
				"architectures": []string{"Qwen2ForCausalLM"}, "model_type": "qwen2",
				"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 80,
				"num_hidden_layers": 2, "vocab_size": 320, "max_position_embeddings": 512, "rms_norm_eps": 1e-6,
				"rope_theta": 1000000.0, "tie_word_embeddings": true, "eos_token_id": 0, "hidden_act": "silu",
			},
			tokenizer: "tiny_gpt2.json",
			tokConfig: map[string]any{"bos_token": nil, "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
				"chat_template": []map[string]string{{"name": "default", "template": "{{ messages[0]['content'] }}"},
					{"name": "tool_use", "template": "{{ tools }}"}}},
			dtype: safetensors.BF16, sharded: true, arch: "qwen2", pre: "gpt-2", tokModel: "gpt2",
		},
		{
			name: "qwen3",
			config: map[string]any{
				"architectures": []string{"Qwen3ForCausalLM"}, "model_type": "qwen3",
				"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "intermediate_size": 96,
				"num_hidden_layers": 2, "vocab_size": 328, "max_position_embeddings": 128, "rms_norm_eps": 1e-6,
				"rope_theta": 1000000.0, "tie_word_embeddings": false, "attention_bias": false,
				"bos_token_id": 319, "eos_token_id": 321, "hidden_act": "silu",
			},
			tokenizer: "tiny_llama3.json",
			tokConfig: map[string]any{"eos_token": "<|eot_id|>"}, // add_bos_token from the post-processor
			dtype:     safetensors.F16, arch: "qwen3", pre: "llama-bpe", tokModel: "gpt2",
		},
		{
			name: "mistral",
			config: map[string]any{
				"architectures": []string{"MistralForCausalLM"}, "model_type": "mistral",
				"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 128,
				"num_hidden_layers": 1, "vocab_size": 288, "max_position_embeddings": 1024, "rms_norm_eps": 1e-5,
				"rope_theta": 10000.0, "sliding_window": nil, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
			},
			tokenizer: "tiny_spm.json",
			tokConfig: map[string]any{"add_bos_token": true, "add_eos_token": false, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
			dtype:     safetensors.F32, arch: "llama", tokModel: "llama", permuted: true,
		},
	}
}

func (s modelSpec) int(k string) int {
	switch v := s.config[k].(type) {
	case int:
		return v
	}
	return 0
}

func (s modelSpec) headDim() int {
	if d := s.int("head_dim"); d > 0 {
		return d
	}
	return s.int("hidden_size") / s.int("num_attention_heads")
}

// hfTensors lists the spec's Hugging Face tensors and shapes.
func (s modelSpec) hfTensors() map[string][]int {
	H, I, V, D := s.int("hidden_size"), s.int("intermediate_size"), s.int("vocab_size"), s.headDim()
	q, kv := s.int("num_attention_heads")*D, s.int("num_key_value_heads")*D
	out := map[string][]int{"model.embed_tokens.weight": {V, H}, "model.norm.weight": {H}}
	if s.config["tie_word_embeddings"] != true {
		out["lm_head.weight"] = []int{V, H}
	}
	qkvBias := s.name == "qwen2" || s.config["attention_bias"] == true
	for l := range s.int("num_hidden_layers") {
		p := fmt.Sprintf("model.layers.%d.", l)
		out[p+"input_layernorm.weight"] = []int{H}
		out[p+"post_attention_layernorm.weight"] = []int{H}
		out[p+"self_attn.q_proj.weight"] = []int{q, H}
		out[p+"self_attn.k_proj.weight"] = []int{kv, H}
		out[p+"self_attn.v_proj.weight"] = []int{kv, H}
		out[p+"self_attn.o_proj.weight"] = []int{H, q}
		if qkvBias {
			out[p+"self_attn.q_proj.bias"] = []int{q}
			out[p+"self_attn.k_proj.bias"] = []int{kv}
			out[p+"self_attn.v_proj.bias"] = []int{kv}
		}
		if s.config["attention_bias"] == true {
			out[p+"self_attn.o_proj.bias"] = []int{H}
		}
		if s.name == "qwen3" {
			out[p+"self_attn.q_norm.weight"] = []int{D}
			out[p+"self_attn.k_norm.weight"] = []int{D}
		}
		out[p+"mlp.gate_proj.weight"] = []int{I, H}
		out[p+"mlp.up_proj.weight"] = []int{I, H}
		out[p+"mlp.down_proj.weight"] = []int{H, I}
	}
	return out
}

// ggufNames is the test's own table of expected llama.cpp names.
var ggufNames = map[string]string{
	"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
	"self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
	"self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
	"self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
	"self_attn.v_proj.bias": "attn_v.bias", "self_attn.o_proj.bias": "attn_output.bias",
	"self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
	"mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
	"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight",
}

func expectedGGUFName(hf string) string {
	if g, ok := ggufNames[hf]; ok {
		return g
	}
	var l int
	var rest string
	if _, err := fmt.Sscanf(hf, "model.layers.%d.%s", &l, &rest); err != nil {
		panic(hf)
	}
	return fmt.Sprintf("blk.%d.%s", l, ggufNames[rest])
}

// makeModelDir writes the spec's config.json, random weights, tokenizer
// files, and returns the directory and the weights (as stored, in float32).
func makeModelDir(t *testing.T, s modelSpec) (string, map[string][]float32) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), s.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeJSONFile(t, filepath.Join(dir, "config.json"), s.config)
	if s.tokConfig != nil {
		writeJSONFile(t, filepath.Join(dir, "tokenizer_config.json"), s.tokConfig)
	}
	tok, err := os.ReadFile(filepath.Join("testdata", s.tokenizer))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), tok, 0o644); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(len(s.name)), 7))
	shapes := s.hfTensors()
	names := make([]string, 0, len(shapes))
	for n := range shapes {
		names = append(names, n)
	}
	slices.Sort(names)
	var ts []safetensors.Tensor
	weights := map[string][]float32{}
	for _, n := range names {
		shape := shapes[n]
		v := make([]float32, tensor.Shape(shape).Numel())
		for i := range v {
			switch {
			case strings.HasSuffix(n, "norm.weight"):
				v[i] = float32(1 + 0.1*rng.NormFloat64())
			case strings.HasSuffix(n, ".bias"):
				v[i] = float32(0.05 * rng.NormFloat64())
			default:
				v[i] = float32(0.08 * rng.NormFloat64())
			}
		}
		st, err := safetensors.Float32Tensor(n, s.dtype, shape, v)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, st)
		weights[n], _ = safetensors.DecodeFloat32(s.dtype, st.Data)
	}
	if s.sharded {
		if _, err := safetensors.WriteSharded(dir, ts, map[string]string{"format": "pt"}, 60_000); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, safetensors.IndexFileName)); err != nil {
			t.Fatalf("not sharded: %v", err)
		}
	} else if err := safetensors.WriteFile(filepath.Join(dir, safetensors.SingleFileName), ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	return dir, weights
}

func writeJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

var allTypes = []Type{F32, F16, BF16, Q8_0, Q4_0}

// expectedType is the type a tensor of HF shape gets when asking for typ.
func expectedType(shape []int, typ Type) Type {
	if len(shape) == 1 {
		return F32
	}
	if shape[1]%typ.BlockSize() != 0 {
		return F16
	}
	return typ
}

func TestWriteFromHF(t *testing.T) {
	for _, s := range specs() {
		dir, weights := makeModelDir(t, s)
		for _, typ := range allTypes {
			t.Run(s.name+"/"+typ.String(), func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "m.gguf")
				res, err := WriteFromHF(out, dir, WriteOptions{Type: typ, Name: "tiny " + s.name})
				if err != nil {
					t.Fatal(err)
				}
				checkWithParser(t, s, out, typ, res)
				checkWithReader(t, s, out, typ, weights)
			})
		}
	}
}

// checkWithParser checks the file with gguf-parser-go.
func checkWithParser(t *testing.T, s modelSpec, path string, typ Type, res *WriteResult) {
	gf, err := parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatalf("gguf-parser-go: %v", err)
	}
	a := gf.Architecture()
	H, D := s.int("hidden_size"), s.headDim()
	if a.Architecture != s.arch || a.EmbeddingLength != uint64(H) || a.BlockCount != uint64(s.int("num_hidden_layers")) ||
		a.AttentionHeadCount != uint64(s.int("num_attention_heads")) || a.AttentionHeadCountKV != uint64(s.int("num_key_value_heads")) ||
		len(a.FeedForwardLength) == 0 || a.FeedForwardLength[0] != uint64(s.int("intermediate_size")) ||
		a.VocabularyLength != uint64(s.int("vocab_size")) || a.MaximumContextLength != uint64(s.int("max_position_embeddings")) ||
		a.RoPEDimensionCount != uint64(D) {
		t.Errorf("gguf-parser-go architecture: %+v", a)
	}
	if want := float32(s.config["rms_norm_eps"].(float64)); a.AttentionLayerNormRMSEpsilon != want {
		t.Errorf("rms eps %v, want %v", a.AttentionLayerNormRMSEpsilon, want)
	}
	if want := float32(s.config["rope_theta"].(float64)); a.RoPEFrequencyBase != want {
		t.Errorf("rope base %v, want %v", a.RoPEFrequencyBase, want)
	}
	if D != H/s.int("num_attention_heads") && (a.AttentionKeyLength != uint32(D) || a.AttentionValueLength != uint32(D)) {
		t.Errorf("key/value length %d/%d, want %d", a.AttentionKeyLength, a.AttentionValueLength, D)
	}
	if ft, ok := gf.Header.MetadataKV.Get("general.file_type"); !ok || ft.ValueUint32() != fileType(typ) {
		t.Errorf("general.file_type %+v, want %d", ft, fileType(typ))
	}
	// Tensors: names, types and GGUF-order shapes.
	want := map[string][]int{}
	for hf, shape := range s.hfTensors() {
		want[expectedGGUFName(hf)] = shape
	}
	if s.config["rope_scaling"] != nil {
		want[ropeFreqsName] = []int{D / 2}
	}
	if len(gf.TensorInfos) != len(want) || res.Tensors != len(want) {
		t.Errorf("%d tensors (result says %d), want %d", len(gf.TensorInfos), res.Tensors, len(want))
	}
	var fallbacks []string
	for name, shape := range want {
		ti, ok := gf.TensorInfos.Get(name)
		if !ok {
			t.Errorf("tensor %s missing", name)
			continue
		}
		wt := expectedType(shape, typ)
		if uint32(ti.Type) != uint32(wt) {
			t.Errorf("tensor %s: type %v, want %v", name, ti.Type, wt)
		}
		if wt != typ && len(shape) == 2 {
			fallbacks = append(fallbacks, name)
		}
		ne := slices.Clone(shape)
		slices.Reverse(ne)
		if len(ti.Dimensions) != len(ne) {
			t.Errorf("tensor %s: dims %v, want %v", name, ti.Dimensions, ne)
			continue
		}
		for i := range ne {
			if ti.Dimensions[i] != uint64(ne[i]) {
				t.Errorf("tensor %s: dims %v, want %v", name, ti.Dimensions, ne)
			}
		}
	}
	var got []string
	for _, f := range res.Fallbacks {
		got = append(got, f.Tensor)
		if f.Type != F16 || f.Reason == "" {
			t.Errorf("fallback %+v", f)
		}
	}
	slices.Sort(got)
	slices.Sort(fallbacks)
	if !slices.Equal(got, fallbacks) {
		t.Errorf("fallbacks %v, want %v", got, fallbacks)
	}
	// Tokenizer.
	tk := gf.Tokenizer()
	if tk.Model != s.tokModel || tk.TokensLength != uint64(s.int("vocab_size")) {
		t.Errorf("gguf-parser-go tokenizer: %+v", tk)
	}
	var tj hfTokenizer
	raw, _ := os.ReadFile(filepath.Join("testdata", s.tokenizer))
	if err := json.Unmarshal(raw, &tj); err != nil {
		t.Fatal(err)
	}
	merges, _ := parseMerges(tj.Model.Merges)
	if tk.MergesLength != uint64(len(merges)) {
		t.Errorf("merges %d, want %d", tk.MergesLength, len(merges))
	}
	// bos/eos: tokenizer_config.json's tokens where it names them, else
	// config.json's ids (qwen2 has no bos).
	ids := map[string][2]int64{"llama": {319, 321}, "qwen2": {-1, 0}, "qwen3": {319, 321}, "mistral": {1, 2}}[s.name]
	wantBOS, wantEOS := ids[0], ids[1]
	if tk.BOSTokenID != wantBOS || tk.EOSTokenID != wantEOS {
		t.Errorf("bos/eos %d/%d, want %d/%d", tk.BOSTokenID, tk.EOSTokenID, wantBOS, wantEOS)
	}
	if s.name == "qwen2" && tk.PaddingTokenID != 0 {
		t.Errorf("padding id %d, want 0", tk.PaddingTokenID)
	}
	if s.tokModel == "llama" && tk.UnknownTokenID != 0 {
		t.Errorf("unknown id %d, want 0", tk.UnknownTokenID)
	}
	if gm := gf.Metadata(); gm.Name != "tiny "+s.name || gm.Architecture != s.arch || gm.Alignment != 32 {
		t.Errorf("gguf-parser-go metadata: name %q arch %q alignment %d", gm.Name, gm.Architecture, gm.Alignment)
	}
}

// checkWithReader checks metadata values and tensor data with this
// package's reader.
func checkWithReader(t *testing.T, s modelSpec, path string, typ Type, weights map[string][]float32) {
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.KV[0].Key != "general.architecture" {
		t.Errorf("first key %q", f.KV[0].Key)
	}
	if s.tokModel == "gpt2" {
		if pre, _ := f.str("tokenizer.ggml.pre"); pre != s.pre {
			t.Errorf("pre %q, want %q", pre, s.pre)
		}
	}
	tokens := f.Metadata["tokenizer.ggml.tokens"].([]string)
	types := f.Metadata["tokenizer.ggml.token_type"].([]int32)
	typeOf := func(tok string) int32 {
		i := slices.Index(tokens, tok)
		if i < 0 {
			t.Fatalf("token %q missing", tok)
		}
		return types[i]
	}
	switch s.tokenizer {
	case "tiny_llama3.json":
		for tok, want := range map[string]int32{"<|begin_of_text|>": 3, "<|eot_id|>": 3, " lathe": 4, "[PAD327]": 5, "Ġt": 1, "a": 1} {
			if got := typeOf(tok); got != want {
				t.Errorf("token %q type %d, want %d", tok, got, want)
			}
		}
		if b := f.Metadata["tokenizer.ggml.add_bos_token"]; b != true {
			t.Errorf("add_bos_token %v", b)
		}
	case "tiny_gpt2.json":
		if typeOf("<|endoftext|>") != 3 || f.Metadata["tokenizer.ggml.add_bos_token"] != false {
			t.Errorf("gpt2 special token type / add_bos wrong")
		}
		if got, _ := f.str("tokenizer.chat_template.tool_use"); got != "{{ tools }}" {
			t.Errorf("named chat template %q", got)
		}
	case "tiny_spm.json":
		scores := f.Metadata["tokenizer.ggml.scores"].([]float32)
		for tok, want := range map[string]int32{"<unk>": 2, "<s>": 3, "</s>": 3, "<0x41>": 6, spmSpace + "hello": 1, "[PAD287]": 5} {
			if got := typeOf(tok); got != want {
				t.Errorf("token %q type %d, want %d", tok, got, want)
			}
		}
		for tok, want := range map[string]float32{spmSpace + "hello": -5, "he": 0, "ll": -1, "h": 0, spmSpace + "world": -10} {
			if got := scores[slices.Index(tokens, tok)]; got != want {
				t.Errorf("score of %q = %v, want %v", tok, got, want)
			}
		}
	}
	if ct, ok := s.tokConfig["chat_template"].(string); ok {
		if got, _ := f.str("tokenizer.chat_template"); got != ct {
			t.Errorf("chat template %q", got)
		}
	}
	// Tensor data: llama-architecture q/k rows are permuted, the rest is
	// stored as is (up to the type's rounding).
	q := weights["model.layers.0.self_attn.q_proj.weight"]
	gq, err := f.Float32("blk.0.attn_q.weight")
	if err != nil {
		t.Fatal(err)
	}
	H, D := s.int("hidden_size"), s.headDim()
	tol := map[Type]float64{F32: 0, F16: 3e-4, BF16: 2e-3, Q8_0: 3e-3, Q4_0: 0.06}[typ]
	for _, c := range []struct{ hfRow, ggRow int }{{0, 0}, {1, 2}, {D / 2, 1}, {D + D/2 + 3, D + 7}} {
		if s.arch != "llama" {
			c.ggRow = c.hfRow
		}
		for col := range H {
			a, b := q[c.hfRow*H+col], gq[c.ggRow*H+col]
			if math.Abs(float64(a-b)) > tol+1e-7 {
				t.Fatalf("q row %d col %d: source %v, gguf row %d has %v", c.hfRow, col, a, c.ggRow, b)
			}
		}
	}
	if s.config["rope_scaling"] != nil {
		rf, err := f.Float32(ropeFreqsName)
		if err != nil {
			t.Fatal(err)
		}
		// head dim 16, theta 5e5, original context 64: wavelengths
		// 2π·5e5^(i/8) are 6.3 (< 16: factor 1), 32.4 (smooth), then
		// > 64 (factor 8).
		wave := 2 * math.Pi / float64(float32(math.Pow(500000, -2.0/16)))
		smooth := (64/wave - 1) / (4 - 1)
		want := []float64{1, 1 / ((1-smooth)/8 + smooth), 8, 8, 8, 8, 8, 8}
		for i := range want {
			if math.Abs(float64(rf[i])-want[i]) > 1e-5 {
				t.Errorf("rope_freqs %v, want %v", rf, want)
				break
			}
		}
	}
}

// logitBound is the loose bound on the largest logit difference (relative
// to the largest source logit) per type.
var logitBound = map[Type]float64{F32: 0, F16: 0.005, BF16: 0.02, Q8_0: 0.05, Q4_0: 0.5}

func TestReadHFRoundTrip(t *testing.T) {
	be := cpu.New()
	ids := []int32{5, 17, 42, 100, 3, 250, 1, 77, 31, 8, 199, 64}
	for _, s := range specs() {
		dir, weights := makeModelDir(t, s)
		src, err := llama.Load(dir, be)
		if err != nil {
			t.Fatal(err)
		}
		want, err := src.Logits(&llama.Batch{B: 1, T: len(ids), Tokens: ids})
		src.Free()
		if err != nil {
			t.Fatal(err)
		}
		scale := 0.0
		for _, v := range want {
			scale = max(scale, math.Abs(float64(v)))
		}
		for _, typ := range allTypes {
			t.Run(s.name+"/"+typ.String(), func(t *testing.T) {
				tmp := t.TempDir()
				path := filepath.Join(tmp, "m.gguf")
				if _, err := WriteFromHF(path, dir, WriteOptions{Type: typ}); err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(tmp, "hf")
				if err := ReadHF(path, out); err != nil {
					t.Fatal(err)
				}
				checkWeights(t, s, out, typ, weights)
				checkConfig(t, s, out)
				if typ == F32 {
					checkTokenizer(t, s, dir, out)
				}
				m, err := llama.Load(out, be)
				if err != nil {
					t.Fatal(err)
				}
				got, err := m.Logits(&llama.Batch{B: 1, T: len(ids), Tokens: ids})
				m.Free()
				if err != nil {
					t.Fatal(err)
				}
				diff := 0.0
				for i := range want {
					diff = max(diff, math.Abs(float64(got[i]-want[i])))
				}
				t.Logf("%s %s: max |logit diff| %.3g (max |logit| %.3g, ratio %.3g)", s.name, typ, diff, scale, diff/scale)
				if diff > logitBound[typ]*scale {
					t.Errorf("max logit difference %g exceeds %g·%g", diff, logitBound[typ], scale)
				}
			})
		}
	}
}

// checkWeights compares the round-tripped F32 weights with the source:
// exact for F32 and for 1-D tensors, exactly the rounded value for F16 and
// BF16, within the per-block bound for Q8_0 and Q4_0.
func checkWeights(t *testing.T, s modelSpec, out string, typ Type, weights map[string][]float32) {
	set, err := safetensors.OpenDir(out)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	shapes := s.hfTensors()
	if len(set.Tensors()) != len(shapes) {
		t.Errorf("%d tensors, want %d", len(set.Tensors()), len(shapes))
	}
	for name, shape := range shapes {
		ti, ok := set.Tensor(name)
		if !ok || ti.DType != safetensors.F32 || !slices.Equal(ti.Shape, shape) {
			t.Errorf("tensor %s: %+v, want F32 %v", name, ti, shape)
			continue
		}
		got, _ := set.Float32(name)
		src := weights[name]
		tt := expectedType(shape, typ)
		for b := 0; b < len(src); b += 32 {
			blk := src[b:min(b+32, len(src))]
			amax := 0.0
			for _, v := range blk {
				amax = max(amax, math.Abs(float64(v)))
			}
			for i, v := range blk {
				g := got[b+i]
				var ok bool
				switch tt {
				case F32:
					ok = g == v
				case F16:
					ok = g == tensor.F32FromF16(tensor.F16FromF32(v))
				case BF16:
					ok = g == tensor.F32FromBF16(tensor.BF16FromF32(v))
				case Q8_0: // d/2 plus the f16 scale's rounding
					ok = math.Abs(float64(g-v)) <= amax/127*(0.5+127.0/2048)+1e-7
				case Q4_0: // |d| when clamped, plus the f16 scale's rounding
					ok = math.Abs(float64(g-v)) <= amax/8*(1+8.0/2048)+1e-7
				}
				if !ok {
					t.Fatalf("tensor %s (%v) elem %d: source %v, round trip %v", name, tt, b+i, v, g)
				}
			}
		}
	}
}

func checkConfig(t *testing.T, s modelSpec, out string) {
	raw, err := os.ReadFile(filepath.Join(out, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	wantArch := s.config["architectures"].([]string)[0]
	if wantArch == "MistralForCausalLM" {
		wantArch = "LlamaForCausalLM" // llama.cpp's llama architecture
	}
	if a := got["architectures"].([]any); a[0] != wantArch {
		t.Errorf("architectures %v, want %s", a, wantArch)
	}
	for _, k := range []string{"hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size",
		"num_hidden_layers", "vocab_size", "max_position_embeddings", "rms_norm_eps", "rope_theta", "tie_word_embeddings", "rope_scaling"} {
		w, _ := json.Marshal(s.config[k])
		g, _ := json.Marshal(got[k])
		if k == "tie_word_embeddings" && s.config[k] == nil {
			w = []byte("false")
		}
		var wv, gv any
		json.Unmarshal(w, &wv)
		json.Unmarshal(g, &gv)
		if fmt.Sprint(wv) != fmt.Sprint(gv) {
			t.Errorf("config %s = %s, want %s", k, g, w)
		}
	}
	if got["head_dim"] != float64(s.headDim()) {
		t.Errorf("head_dim %v, want %d", got["head_dim"], s.headDim())
	}
}

// checkTokenizer encodes and decodes text with the source tokenizer and
// the one ReadHF rebuilt, and compares tokenizer_config.json fields.
func checkTokenizer(t *testing.T, s modelSpec, srcDir, out string) {
	a, err := tokenizer.Load(filepath.Join(srcDir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := tokenizer.Load(filepath.Join(out, "tokenizer.json"))
	if err != nil {
		t.Fatalf("rebuilt tokenizer.json: %v", err)
	}
	texts := []string{
		"hello world", " Hello, World! 123 4567", "the lathe turns\n\nwood  and metal\t",
		"<|begin_of_text|>hi<|eot_id|> lathe", "<s> hello</s>", "naïve café — 日本語 🙂", "", "abab   ab!",
	}
	for _, txt := range texts {
		for _, special := range []bool{false, true} {
			x, y := a.Encode(txt, special), b.Encode(txt, special)
			if !slices.Equal(x, y) {
				t.Errorf("Encode(%q, %v): source %v, rebuilt %v", txt, special, x, y)
				continue
			}
			if da, db := a.Decode(x, false), b.Decode(y, false); da != db {
				t.Errorf("Decode(%v): source %q, rebuilt %q", x, da, db)
			}
		}
	}
	if a.VocabSize() != b.VocabSize() {
		t.Errorf("vocab size %d, rebuilt %d", a.VocabSize(), b.VocabSize())
	}
	tc, err := tokenizer.LoadConfig(filepath.Join(out, "tokenizer_config.json"))
	if err != nil {
		t.Fatalf("rebuilt tokenizer_config.json: %v", err)
	}
	str := func(p *string) any {
		if p == nil {
			return nil
		}
		return *p
	}
	if s.tokConfig["eos_token"] != str(tc.EOSToken) || (s.tokConfig["bos_token"] != nil && s.tokConfig["bos_token"] != str(tc.BOSToken)) {
		t.Errorf("bos/eos %v/%v, want %v/%v", str(tc.BOSToken), str(tc.EOSToken), s.tokConfig["bos_token"], s.tokConfig["eos_token"])
	}
	src, err := tokenizer.LoadConfig(filepath.Join(srcDir, "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if src.ChatTemplate != tc.ChatTemplate || len(src.ChatTemplates) != len(tc.ChatTemplates) {
		t.Errorf("chat templates %v, want %v", tc.ChatTemplates, src.ChatTemplates)
	}
}
