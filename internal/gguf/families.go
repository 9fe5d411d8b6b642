package gguf

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/lathe-ml/lathe/internal/llama"
)

// The model families internal/llama parses (families.go there) map to
// llama.cpp architectures of the same name. This file holds what differs
// per architecture: the names, the transforms on the way (Gemma's norm
// weights are stored as 1 + w, Baichuan's W_pack is split and its head
// normalised), the hyper-parameters, and the checks that refuse a model
// llama.cpp would read differently than lathe computes it.

// familyArchs maps a family's model_type to its llama.cpp architecture.
var familyArchs = map[string]string{
	"gemma": "gemma", "gemma2": "gemma2", "phi3": "phi3", "baichuan": "baichuan", "chatglm": "chatglm",
}

const supportedArchitectures = "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, " +
	"GemmaForCausalLM, Gemma2ForCausalLM, Phi3ForCausalLM, BaichuanForCausalLM or ChatGLMModel"

// familyArchitecture reports whether architectures[0] names a family.
func familyArchitecture(a string) bool {
	switch a {
	case "GemmaForCausalLM", "Gemma2ForCausalLM", "Phi3ForCausalLM", "BaichuanForCausalLM",
		"ChatGLMModel", "ChatGLMForConditionalGeneration":
		return true
	}
	return false
}

// familyConfig parses a family's config.json with internal/llama, as
// lathe's engine reads it.
func familyConfig(data []byte) (*hfConfig, error) {
	lc, err := llama.ParseConfig(data)
	if err != nil {
		return nil, err
	}
	arch, ok := familyArchs[lc.ModelType]
	if !ok {
		return nil, fmt.Errorf("model_type %q is not supported (want %s)", lc.ModelType, supportedArchitectures)
	}
	c := &hfConfig{
		Architecture: lc.Architecture, ModelType: lc.ModelType, Arch: arch, Family: &lc,
		VocabSize: lc.VocabSize, Hidden: lc.Hidden, Intermediate: lc.Intermediate, Layers: lc.Layers,
		Heads: lc.Heads, KVHeads: lc.KVHeads, HeadDim: lc.HeadDim, MaxPositions: lc.MaxPositions,
		RMSNormEps: lc.RMSNormEps, RopeTheta: lc.RopeTheta, Tie: lc.TieEmbeddings,
		BOS: lc.BOSTokenID, EOS: lc.EOSTokenIDs,
	}
	if c.MaxPositions == 0 {
		c.MaxPositions = defaultContext[lc.ModelType]
	}
	return c, nil
}

// names is the tensor name table of the configuration's architecture.
func (c *hfConfig) names() *nameTable { return namesOf(c.Arch) }

func namesOf(arch string) *nameTable {
	switch arch {
	case "gemma2":
		return gemma2Names
	case "phi3":
		return phi3Names
	case "baichuan":
		return baichuanNames
	case "chatglm":
		return chatglmNames
	}
	return llamaNames
}

// rotaryDim is the number of rotated dims of each head
// (rope.dimension_count).
func (c *hfConfig) rotaryDim() int {
	if c.Family != nil && c.Family.RotaryDim > 0 {
		return c.Family.RotaryDim
	}
	return c.HeadDim
}

// checkLlamaCpp refuses what llama.cpp's reading of the architecture
// would compute differently from lathe's engine, and returns notes on
// what it reads differently in cases lathe does not refuse.
func (c *hfConfig) checkLlamaCpp() (notes []string, err error) {
	f := c.Family
	if f == nil {
		return nil, nil
	}
	fullHeads := func() error {
		if c.Heads*c.HeadDim != c.Hidden {
			return fmt.Errorf("%d heads of %d dims do not make hidden_size %d; llama.cpp's %s architecture assumes they do", c.Heads, c.HeadDim, c.Hidden, c.Arch)
		}
		return nil
	}
	switch c.Arch {
	case "gemma", "gemma2":
		if !c.Tie {
			return nil, fmt.Errorf("tie_word_embeddings is false, but llama.cpp's %s architecture always uses the token embeddings as the output matrix", c.Arch)
		}
		if c.Arch == "gemma" {
			break
		}
		if f.AttnSoftCap <= 0 || f.FinalSoftCap <= 0 {
			return nil, fmt.Errorf("attn_logit_softcapping %v, final_logit_softcapping %v: llama.cpp's gemma2 always soft-caps both (50 and 30 when the file does not say), so a model without them cannot be expressed", f.AttnSoftCap, f.FinalSoftCap)
		}
		if f.SlidingWindow <= 0 {
			return nil, fmt.Errorf("sliding_window is not set: llama.cpp's gemma2 always applies a sliding window (4096 when the file does not say) on even layers")
		}
		if want := gemma2QueryScale(c.Layers, c.Hidden, c.Heads, c.HeadDim); f.QueryScale != float64(want) {
			return nil, fmt.Errorf("query_pre_attn_scalar %v: llama.cpp's gemma2 scales the scores of a %d-layer model by 1/sqrt(%d)", f.QueryScale, c.Layers, want)
		}
	case "phi3":
		if err := fullHeads(); err != nil {
			return nil, err
		}
		if w := f.SlidingWindow; w > 0 && w < c.MaxPositions {
			notes = append(notes, fmt.Sprintf("llama.cpp currently ignores Phi-3's sliding window (llama.cpp pull 13676): beyond %d tokens it attends to every earlier token, not only the last %d", w, w))
		}
		if f.RopeExtFactors != nil {
			notes = append(notes, fmt.Sprintf("llama.cpp applies longrope's long factors to every sequence once its context size exceeds original_max_position_embeddings %d (lathe, as transformers, applies the short factors to sequences up to that length): run it with a context of at most %d tokens to get the model lathe trained", f.RopeOriginalMax, f.RopeOriginalMax))
		}
	case "baichuan":
		// llama.cpp tells Baichuan 2 7B (RoPE) from 13B (ALiBi, max bias
		// 8) by the layer count, and reads any other count with neither.
		if f.ALiBi && c.Layers != 40 {
			return nil, fmt.Errorf("a %d-layer Baichuan with ALiBi: llama.cpp's baichuan applies ALiBi only to 40-layer models (Baichuan 2 13B) and would read this one without position information", c.Layers)
		}
		if !f.ALiBi && c.Layers != 32 {
			return nil, fmt.Errorf("a %d-layer Baichuan with rotary embeddings: llama.cpp's baichuan applies RoPE only to 32-layer models (Baichuan 2 7B) and would read this one without position information", c.Layers)
		}
	case "chatglm":
		if err := fullHeads(); err != nil {
			return nil, err
		}
		if f.OBias || f.MLPBias {
			return nil, fmt.Errorf("add_bias_linear is true, but llama.cpp's chatglm has no biases on dense, dense_h_to_4h and dense_4h_to_h")
		}
	}
	return notes, nil
}

// gemma2QueryScale is the query_pre_attn_scalar llama.cpp's gemma2 uses:
// hidden/heads for a 46-layer model (Gemma 2 27B), else the head size.
func gemma2QueryScale(layers, hidden, heads, headDim int) int {
	if layers == 46 {
		return hidden / heads
	}
	return headDim
}

// biasAllowed reports whether llama.cpp's architecture reads a bias on
// module mod.
func biasAllowed(arch, mod string) bool {
	switch arch {
	case "llama", "qwen2", "qwen3":
		return true
	case "chatglm":
		return mod == "attn_qkv"
	}
	return false
}

// isNorm reports whether a llama.cpp module is an RMSNorm weight.
func isNorm(mod string) bool {
	return strings.HasSuffix(mod, "_norm") && mod != "attn_q_norm" && mod != "attn_k_norm"
}

// normOffset reports whether the architecture's norms scale by 1 + w in
// Hugging Face's code and by w in llama.cpp's (Gemma): the converter adds
// 1 to the stored weights.
func normOffset(arch string) bool { return arch == "gemma" || arch == "gemma2" }

// permuted reports whether llama.cpp reads module mod's rows in its
// interleaved rotary order (LlamaModel.permute), returning the heads to
// permute over.
func (c *hfConfig) permuted(mod string) int {
	if c.Arch != "llama" && c.Arch != "baichuan" {
		return 0
	}
	switch mod {
	case "attn_q":
		return c.Heads
	case "attn_k":
		return c.KVHeads
	}
	return 0
}

// normalisedHead: Baichuan 2 normalises its head's rows in every forward
// pass; llama.cpp multiplies by the stored matrix, so the converter stores
// the normalised rows.
func normalisedHead(arch, mod string) bool { return arch == "baichuan" && mod == "output" }

// normaliseRows scales each of the rows of v ([rows, len(v)/rows]) to unit
// L2 norm, as torch.nn.functional.normalize (a zero row stays zero).
func normaliseRows(v []float32, rows int) {
	cols := len(v) / rows
	for r := range rows {
		row := v[r*cols : (r+1)*cols]
		s := 0.0
		for _, x := range row {
			s += float64(x) * float64(x)
		}
		n := max(math.Sqrt(s), 1e-12)
		for i, x := range row {
			row[i] = float32(float64(x) / n)
		}
	}
}

// familyKVs are the architecture's hyper-parameters beyond the common
// ones, and lathe.* keys that let ReadHF rebuild the exact config.
func (c *hfConfig) familyKVs() []KV {
	f, a := c.Family, c.Arch
	if f == nil {
		return nil
	}
	var kvs []KV
	switch a {
	case "gemma2":
		kvs = append(kvs, KV{a + ".attn_logit_softcapping", float32(f.AttnSoftCap)},
			KV{a + ".final_logit_softcapping", float32(f.FinalSoftCap)},
			KV{a + ".attention.sliding_window", uint32(f.SlidingWindow)})
	case "phi3":
		kvs = append(kvs, KV{a + ".attention.sliding_window", uint32(f.SlidingWindow)})
		if f.RopeExtFactors != nil {
			kvs = append(kvs,
				KV{a + ".rope.scaling.attn_factor", float32(f.RopeAttnFactor)},
				KV{a + ".rope.scaling.original_context_length", uint32(f.RopeOriginalMax)},
				KV{"lathe.rope_scaling.type", "longrope"},
				KV{"lathe.rope_scaling.short_factor", slices.Clone(f.RopeExtFactors)},
				KV{"lathe.rope_scaling.long_factor", slices.Clone(f.RopeLongFactors)},
				KV{"lathe.rope_scaling.attention_factor", f.RopeAttnFactor},
			)
		}
	}
	return kvs
}

// familyTensors are tensors llama.cpp reads that the checkpoint does not
// hold: Phi-3's longrope factors.
func (c *hfConfig) familyTensors() []Tensor {
	f := c.Family
	if f == nil || f.RopeExtFactors == nil {
		return nil
	}
	vec := func(name string, x []float64) Tensor {
		v := make([]float32, len(x))
		for i := range x {
			v[i] = float32(x[i])
		}
		return Tensor{Name: name, Shape: []uint64{uint64(len(v))}, Type: F32,
			Data: func() ([]byte, error) { return EncodeFloat32(F32, v) }}
	}
	return []Tensor{vec(ropeLongName, f.RopeLongFactors), vec(ropeShortName, f.RopeExtFactors)}
}

// setKV replaces key's value in kvs, or appends it.
func setKV(kvs []KV, key string, v any) []KV {
	for i := range kvs {
		if kvs[i].Key == key {
			kvs[i].Value = v
			return kvs
		}
	}
	return append(kvs, KV{key, v})
}

func getKV(kvs []KV, key string) (any, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// adjustTokenizerKVs applies what llama.cpp's converter sets per
// architecture on top of the vocabulary: ChatGLM prompts start with
// [gMASK] and sop, not a BOS; GLM-4's byte-level vocabulary (the llama3
// pre-tokenizer) is llama.cpp's chatglm-bpe; <|user|> ends an assistant
// turn (end-of-turn token). And, for every architecture, a
// SentencePiece-style tokenizer.json that does not prepend a space gets
// add_space_prefix false (llama.cpp's default is true).
func (c *hfConfig) adjustTokenizerKVs(kvs []KV, hfDir string) ([]KV, error) {
	model, _ := getKV(kvs, "tokenizer.ggml.model")
	if model == "llama" {
		if _, ok := getKV(kvs, "tokenizer.ggml.add_space_prefix"); !ok {
			prefix, err := jsonPrependsSpace(filepath.Join(hfDir, "tokenizer.json"))
			if err != nil {
				return nil, err
			}
			if !prefix {
				kvs = append(kvs, KV{"tokenizer.ggml.add_space_prefix", false})
			}
		}
	}
	if c.Arch != "chatglm" {
		return kvs, nil
	}
	kvs = setKV(kvs, "tokenizer.ggml.add_bos_token", false)
	if pre, _ := getKV(kvs, "tokenizer.ggml.pre"); model == "gpt2" && pre == "llama-bpe" {
		kvs = setKV(kvs, "tokenizer.ggml.pre", "chatglm-bpe")
	}
	if toks, ok := getKV(kvs, "tokenizer.ggml.tokens"); ok {
		if id := slices.Index(toks.([]string), "<|user|>"); id >= 0 {
			kvs = setKV(kvs, "tokenizer.ggml.eot_token_id", uint32(id))
		}
	}
	return kvs, nil
}

// jsonPrependsSpace reports whether a SentencePiece-style tokenizer.json
// puts "▁" before the text: a Prepend normalizer, or a Metaspace
// pre-tokenizer that adds a prefix space.
func jsonPrependsSpace(path string) (bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("tokenizer: %w", err)
	}
	var t struct {
		Normalizer   json.RawMessage `json:"normalizer"`
		PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	}
	if err := json.Unmarshal(data, &t); err != nil {
		return false, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	found := false
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			switch x["type"] {
			case "Prepend":
				if x["prepend"] == spmSpace {
					found = true
				}
			case "Metaspace":
				scheme, _ := x["prepend_scheme"].(string)
				add, hasAdd := x["add_prefix_space"].(bool)
				if (scheme != "" && scheme != "never") || (scheme == "" && (add || !hasAdd)) {
					found = true
				}
			}
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	for _, raw := range []json.RawMessage{t.Normalizer, t.PreTokenizer} {
		var v any
		if len(raw) > 0 && json.Unmarshal(raw, &v) == nil {
			walk(v)
		}
	}
	return found, nil
}

// familyConfigJSON rebuilds a family's config.json from a GGUF file's
// hyper-parameters (read by readHF into base) and arch-specific keys, as
// llama.cpp reads them.
func (f *File) familyConfigJSON(arch string, base llama.Config, ropeDim int) ([]byte, error) {
	key := func(k string) string { return arch + "." + k }
	floatOr := func(k string, def float64) (float64, error) {
		v, ok, err := f.float(key(k))
		if err != nil || !ok {
			return def, err
		}
		return v, nil
	}
	uintOr := func(k string, def int) (int, error) {
		v, ok, err := f.uint(key(k))
		if err != nil || !ok {
			return def, err
		}
		if v > math32 {
			return 0, fmt.Errorf("metadata %s: %d is out of range", key(k), v)
		}
		return int(v), nil
	}
	headDim := base.HeadDim
	switch arch {
	case "baichuan":
		switch base.Layers {
		case 32:
		case 40:
			base.ALiBi = true
		default:
			return nil, fmt.Errorf("a %d-layer baichuan: llama.cpp applies RoPE to 32-layer and ALiBi to 40-layer ones only, and reads this one without position information", base.Layers)
		}
		if ropeDim != headDim {
			return nil, fmt.Errorf("%s: %d differs from the head size %d", key("rope.dimension_count"), ropeDim, headDim)
		}
		if !base.ALiBi && base.RopeTheta != 10000 {
			return nil, fmt.Errorf("%s: %v, but Baichuan's rotary base is fixed at 10000", key("rope.freq_base"), base.RopeTheta)
		}
	case "chatglm":
		if ropeDim != headDim/2 {
			return nil, fmt.Errorf("%s: %d, but ChatGLM rotates half of each %d-dim head", key("rope.dimension_count"), ropeDim, headDim)
		}
	case "phi3":
		if ropeDim > headDim || ropeDim%2 != 0 {
			return nil, fmt.Errorf("%s: %d, want an even number up to the head size %d", key("rope.dimension_count"), ropeDim, headDim)
		}
		if ropeDim != headDim {
			base.RotaryDim = ropeDim
		}
	default:
		if ropeDim != headDim {
			return nil, fmt.Errorf("%s: %d differs from the head size %d (partial rotary is not supported for %s)", key("rope.dimension_count"), ropeDim, headDim, arch)
		}
	}
	if normOffset(arch) && !base.TieEmbeddings {
		return nil, fmt.Errorf("an output.weight tensor: llama.cpp's %s ties the output to the token embeddings", arch)
	}
	c, err := llama.NewConfig(arch, base)
	if err != nil {
		return nil, err
	}
	var extra map[string]any
	switch arch {
	case "gemma2":
		if c.AttnSoftCap, err = floatOr("attn_logit_softcapping", 50); err != nil {
			return nil, err
		}
		if c.FinalSoftCap, err = floatOr("final_logit_softcapping", 30); err != nil {
			return nil, err
		}
		if c.SlidingWindow, err = uintOr("attention.sliding_window", 4096); err != nil {
			return nil, err
		}
		if p, err := uintOr("attention.sliding_window_pattern", 2); err != nil || p != 2 {
			return nil, fmt.Errorf("%s: want 2 (Gemma 2's even layers), got %d (%v)", key("attention.sliding_window_pattern"), p, err)
		}
		c.QueryScale = float64(gemma2QueryScale(c.Layers, c.Hidden, c.Heads, c.HeadDim))
		if !(c.AttnSoftCap > 0) || !(c.FinalSoftCap > 0) || c.SlidingWindow <= 0 {
			return nil, fmt.Errorf("gemma2 soft caps %v/%v and sliding window %d must be positive", c.AttnSoftCap, c.FinalSoftCap, c.SlidingWindow)
		}
	case "chatglm":
		_, c.QKVBias = f.Tensor("blk.0.attn_qkv.bias")
	case "phi3":
		if c.SlidingWindow, err = uintOr("attention.sliding_window", 0); err != nil {
			return nil, err
		}
		if extra, err = f.longRoPE(arch, c); err != nil {
			return nil, err
		}
	}
	if v, ok, _ := f.uint("tokenizer.ggml.bos_token_id"); ok {
		c.BOSTokenID = int(v)
	}
	if v, ok, _ := f.uint("tokenizer.ggml.eos_token_id"); ok {
		c.EOSTokenIDs = []int{int(v)}
	}
	js, err := c.JSON("float32")
	if err != nil {
		return nil, err
	}
	if extra != nil {
		var m map[string]any
		if err := json.Unmarshal(js, &m); err != nil {
			return nil, err
		}
		for k, v := range extra {
			m[k] = v
		}
		if js, err = json.MarshalIndent(m, "", "  "); err != nil {
			return nil, err
		}
	}
	// The engine must read back what the file says.
	got, err := llama.ParseConfig(js)
	if err != nil {
		return nil, fmt.Errorf("rebuilt config.json: %w", err)
	}
	if rd := cmp.Or(got.RotaryDim, got.HeadDim); rd != ropeDim {
		return nil, fmt.Errorf("rebuilt config.json: %d rotary dims, the file says %d", rd, ropeDim)
	}
	return append(js, '\n'), nil
}

// longRoPE rebuilds Phi-3's rope_scaling and
// original_max_position_embeddings: from lathe.rope_scaling.* when this
// package wrote the file (exact), else from the rope_factors tensors and
// rope.scaling.* keys llama.cpp reads (float32). nil when the file has no
// factors.
func (f *File) longRoPE(arch string, c llama.Config) (map[string]any, error) {
	_, hasLong := f.Tensor(ropeLongName)
	_, hasShort := f.Tensor(ropeShortName)
	if !hasLong && !hasShort {
		return nil, nil
	}
	if !hasLong || !hasShort {
		return nil, fmt.Errorf("%s and %s must both be present", ropeLongName, ropeShortName)
	}
	orig, ok, err := f.uint(arch + ".rope.scaling.original_context_length")
	if err == nil && !ok {
		err = fmt.Errorf("metadata %s.rope.scaling.original_context_length: missing with longrope factors", arch)
	}
	if err != nil {
		return nil, err
	}
	rs := map[string]any{"type": "longrope"}
	if typ, ok := f.str("lathe.rope_scaling.type"); ok {
		if typ != "longrope" {
			return nil, fmt.Errorf("lathe.rope_scaling.type %q on a %s file", typ, arch)
		}
		for _, k := range []string{"short_factor", "long_factor"} {
			v, ok := f.Metadata["lathe.rope_scaling."+k].([]float64)
			if !ok {
				return nil, fmt.Errorf("metadata lathe.rope_scaling.%s: want float64s, got %T", k, f.Metadata["lathe.rope_scaling."+k])
			}
			rs[k] = v
		}
		af, ok, err := f.float("lathe.rope_scaling.attention_factor")
		if err != nil || !ok {
			return nil, fmt.Errorf("metadata lathe.rope_scaling.attention_factor: missing or not a number")
		}
		rs["attention_factor"] = af
	} else {
		for k, name := range map[string]string{"short_factor": ropeShortName, "long_factor": ropeLongName} {
			v, err := f.Float32(name)
			if err != nil {
				return nil, err
			}
			x := make([]float64, len(v))
			for i := range v {
				x[i] = float64(v[i])
			}
			rs[k] = x
		}
		if af, ok, err := f.float(arch + ".rope.scaling.attn_factor"); err != nil {
			return nil, err
		} else if ok {
			rs["attention_factor"] = af
		}
	}
	for _, k := range []string{"short_factor", "long_factor"} {
		if n := len(rs[k].([]float64)); n != c.HeadDim/2 && (c.RotaryDim == 0 || n != c.RotaryDim/2) {
			return nil, fmt.Errorf("longrope %s has %d factors, want half the rotary dims", k, n)
		}
	}
	return map[string]any{"rope_scaling": rs, "original_max_position_embeddings": orig}, nil
}

// checkNameQuirks refuses a general.name that makes llama.cpp's
// vocabulary loader look up tokens the vocabulary lacks: a name
// containing "phi3" or "phi-3" (any case) makes it set attributes on
// <unk>, <s>, </s> and <|endoftext|> by text, and a missing one aborts
// the load.
func checkNameQuirks(kvs []KV) error {
	nv, _ := getKV(kvs, "general.name")
	name, _ := nv.(string)
	lower := strings.ToLower(name)
	if !strings.Contains(lower, "phi3") && !strings.Contains(lower, "phi-3") {
		return nil
	}
	tv, _ := getKV(kvs, "tokenizer.ggml.tokens")
	tokens, _ := tv.([]string)
	for _, tok := range []string{"<unk>", "<s>", "</s>", "<|endoftext|>"} {
		if !slices.Contains(tokens, tok) {
			return fmt.Errorf("general.name %q: llama.cpp treats a model named phi3/phi-3 as having Phi-3's %s token, which this vocabulary lacks, and fails to load it; choose another name", name, tok)
		}
	}
	return nil
}
