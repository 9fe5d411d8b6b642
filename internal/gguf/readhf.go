package gguf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/safetensors"
)

// Typed metadata access. Integers of any width convert when they fit.

func (f *File) str(key string) (string, bool) {
	s, ok := f.Metadata[key].(string)
	return s, ok
}

func (f *File) uint(key string) (uint64, bool, error) {
	v, ok := f.Metadata[key]
	if !ok {
		return 0, false, nil
	}
	var n int64
	switch x := v.(type) {
	case uint8:
		n = int64(x)
	case uint16:
		n = int64(x)
	case uint32:
		n = int64(x)
	case uint64:
		if x > math.MaxInt64 {
			return 0, true, fmt.Errorf("metadata %s: %d is too large", key, x)
		}
		n = int64(x)
	case int8:
		n = int64(x)
	case int16:
		n = int64(x)
	case int32:
		n = int64(x)
	case int64:
		n = x
	default:
		return 0, true, fmt.Errorf("metadata %s: want an integer, got %T", key, v)
	}
	if n < 0 {
		return 0, true, fmt.Errorf("metadata %s: negative value %d", key, n)
	}
	return uint64(n), true, nil
}

func (f *File) float(key string) (float64, bool, error) {
	switch x := f.Metadata[key].(type) {
	case nil:
		return 0, false, nil
	case float32:
		// The shortest decimal that rounds to x: 1e-5 stored as float32
		// comes back as 1e-05, not 9.999999747378752e-06.
		v, _ := strconv.ParseFloat(strconv.FormatFloat(float64(x), 'g', -1, 32), 64)
		return v, true, nil
	case float64:
		return x, true, nil
	}
	if n, ok, err := f.uint(key); ok && err == nil {
		return float64(n), true, nil
	}
	return 0, true, fmt.Errorf("metadata %s: want a number, got %T", key, f.Metadata[key])
}

// ReadHF converts the GGUF file at path (architecture llama, qwen2 or
// qwen3) back to a Hugging Face model directory at outDir: config.json,
// model.safetensors (F32, Hugging Face names, llama.cpp's q/k row
// permutation undone, quantised weights dequantised) and, when the file
// carries a vocabulary, tokenizer.json and tokenizer_config.json rebuilt
// from the tokenizer.* metadata.
func ReadHF(path, outDir string) error {
	f, err := Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.readHF(outDir); err != nil {
		return fmt.Errorf("gguf: %s: %w", path, err)
	}
	return nil
}

func (f *File) readHF(outDir string) error {
	arch, _ := f.str("general.architecture")
	hfArch := map[string]string{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[arch]
	_, family := familyArchs[arch]
	if hfArch == "" && !family {
		return fmt.Errorf("general.architecture %q is not supported (want llama, qwen2, qwen3, gemma, gemma2, phi3, baichuan or chatglm)", arch)
	}
	var err error
	need := func(key string) int {
		v, ok, e := f.uint(arch + "." + key)
		if e == nil && !ok {
			e = fmt.Errorf("metadata %s.%s: missing", arch, key)
		}
		if e == nil && (v == 0 || v > math32) {
			e = fmt.Errorf("metadata %s.%s: %d is out of range", arch, key, v)
		}
		if err == nil {
			err = e
		}
		return int(v)
	}
	optional := func(key string, def int) int {
		if _, ok := f.Metadata[arch+"."+key]; !ok {
			return def
		}
		return need(key)
	}
	hidden := need("embedding_length")
	layers := need("block_count")
	inter := need("feed_forward_length")
	heads := need("attention.head_count")
	kvHeads := optional("attention.head_count_kv", heads)
	ctx := optional("context_length", 2048)
	if err != nil {
		return err
	}
	headDim := optional("attention.key_length", hidden/heads)
	if headDim <= 0 || headDim%2 != 0 {
		return fmt.Errorf("head size %d (from %s.attention.key_length or embedding_length/head_count) must be even and positive", headDim, arch)
	}
	if vl := optional("attention.value_length", headDim); vl != headDim {
		return fmt.Errorf("attention.value_length %d differs from key_length %d", vl, headDim)
	}
	ropeDim := optional("rope.dimension_count", headDim)
	if err != nil {
		return err
	}
	if rd := ropeDim; rd != headDim && !family {
		return fmt.Errorf("rope.dimension_count %d differs from the head size %d (partial rotary is not supported)", rd, headDim)
	}
	emb, ok := f.Tensor("token_embd.weight")
	if !ok || len(emb.Shape) != 2 {
		return fmt.Errorf("token_embd.weight: missing or not a matrix")
	}
	vocab := optional("vocab_size", int(emb.Shape[1]))
	eps, ok, e := f.float(arch + ".attention.layer_norm_rms_epsilon")
	if e != nil || !ok {
		return fmt.Errorf("metadata %s.attention.layer_norm_rms_epsilon: missing or not a number", arch)
	}
	theta, ok, e := f.float(arch + ".rope.freq_base")
	if e != nil {
		return e
	}
	if !ok {
		theta = 10000
	}
	if err != nil {
		return err
	}
	if st, ok := f.str(arch + ".rope.scaling.type"); ok && st != "none" {
		return fmt.Errorf("rope scaling %q is not supported", st)
	}
	var rs *llama3Scaling
	if !family { // Phi-3's longrope is rebuilt by familyConfigJSON
		if rs, err = f.ropeScaling(theta, headDim); err != nil {
			return err
		}
	}
	_, hasOutput := f.Tensor("output.weight")
	var cfgJSON []byte
	if family {
		base := llama.Config{VocabSize: vocab, Hidden: hidden, Intermediate: inter, Layers: layers, Heads: heads, KVHeads: kvHeads,
			HeadDim: headDim, MaxPositions: ctx, RopeTheta: theta, RMSNormEps: eps, TieEmbeddings: !hasOutput}
		if cfgJSON, err = f.familyConfigJSON(arch, base, ropeDim); err != nil {
			return err
		}
	}
	_, qBias := f.Tensor("blk.0.attn_q.bias")
	_, oBias := f.Tensor("blk.0.attn_output.bias")
	_, mlpBias := f.Tensor("blk.0.ffn_gate.bias")
	cfg := map[string]any{
		"architectures":           []string{hfArch},
		"model_type":              arch,
		"vocab_size":              vocab,
		"hidden_size":             hidden,
		"intermediate_size":       inter,
		"num_hidden_layers":       layers,
		"num_attention_heads":     heads,
		"num_key_value_heads":     kvHeads,
		"head_dim":                headDim,
		"hidden_act":              "silu",
		"max_position_embeddings": ctx,
		"rms_norm_eps":            eps,
		"rope_theta":              theta,
		"rope_scaling":            nil,
		"tie_word_embeddings":     !hasOutput,
		"torch_dtype":             "float32",
	}
	if rs != nil {
		cfg["rope_scaling"] = map[string]any{"rope_type": "llama3", "factor": rs.Factor, "low_freq_factor": rs.LowFreqFactor,
			"high_freq_factor": rs.HighFreqFactor, "original_max_position_embeddings": rs.OriginalMaxPositions}
	}
	switch arch {
	case "llama":
		if qBias != oBias {
			return fmt.Errorf("attn_q and attn_output biases must be both present or both absent for llama's attention_bias")
		}
		cfg["attention_bias"], cfg["mlp_bias"] = qBias, mlpBias
	case "qwen3":
		cfg["attention_bias"] = qBias
	}
	if v, ok, _ := f.uint("tokenizer.ggml.bos_token_id"); ok {
		cfg["bos_token_id"] = v
	}
	if v, ok, _ := f.uint("tokenizer.ggml.eos_token_id"); ok {
		cfg["eos_token_id"] = v
	}

	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	w, err := safetensors.Create(filepath.Join(outDir, safetensors.SingleFileName))
	if err != nil {
		return err
	}
	w.SetMetadata(map[string]string{"format": "pt"})
	outs, err := f.hfTensors(arch, layers)
	if err != nil {
		w.Abort()
		return err
	}
	for _, o := range outs {
		v, shape, err := f.hfValues(o, arch, heads, kvHeads)
		if err != nil {
			w.Abort()
			return err
		}
		if err := w.AddFloat32(o.name, safetensors.F32, shape, v); err != nil {
			w.Abort()
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	if family {
		err = os.WriteFile(filepath.Join(outDir, "config.json"), cfgJSON, 0o644)
	} else {
		err = writeJSON(filepath.Join(outDir, "config.json"), cfg)
	}
	if err != nil {
		return err
	}
	return f.writeTokenizer(outDir, ctx)
}

// hfOutput is one Hugging Face tensor ReadHF writes: the llama.cpp
// tensors holding its row blocks, in order.
type hfOutput struct {
	name  string
	parts []string
	mods  []string
}

// hfTensors groups the file's tensors into the Hugging Face tensors they
// make, in the order their first part appears.
func (f *File) hfTensors(arch string, layers int) ([]*hfOutput, error) {
	nt := namesOf(arch)
	var outs []*hfOutput
	byName := map[string]*hfOutput{}
	for _, t := range f.Tensors {
		switch t.Name {
		case ropeFreqsName, ropeLongName, ropeShortName:
			continue // rebuilt into config.json
		}
		hf, layer, mod, part, n, ok := nt.ggufToHF(t.Name)
		if !ok {
			return nil, fmt.Errorf("tensor %q has no Hugging Face name in the %s architecture", t.Name, arch)
		}
		if layer >= layers {
			return nil, fmt.Errorf("tensor %q: layer %d, but block_count is %d", t.Name, layer, layers)
		}
		o := byName[hf]
		if o == nil {
			o = &hfOutput{name: hf, parts: make([]string, n), mods: make([]string, n)}
			byName[hf] = o
			outs = append(outs, o)
		}
		o.parts[part], o.mods[part] = t.Name, mod
	}
	for _, o := range outs {
		for i, p := range o.parts {
			if p == "" {
				return nil, fmt.Errorf("%s: part %d of %d is missing (%s needs all of them)", o.name, i+1, len(o.parts), o.name)
			}
		}
	}
	return outs, nil
}

// hfValues reads an output's parts, undoes the converter's transforms
// (q/k row permutation, Gemma's 1 + w norms) and stacks the rows.
func (f *File) hfValues(o *hfOutput, arch string, heads, kvHeads int) ([]float32, []int, error) {
	var out []float32
	var shape []int
	for i, name := range o.parts {
		t, _ := f.Tensor(name)
		v, err := f.Float32(name)
		if err != nil {
			return nil, nil, err
		}
		s := make([]int, len(t.Shape))
		for j, d := range t.Shape {
			s[len(s)-1-j] = int(d)
		}
		cols := 1
		if len(s) == 2 {
			cols = s[1]
		}
		bias := strings.HasSuffix(name, ".bias")
		mod := o.mods[i]
		if arch == "llama" || arch == "baichuan" {
			n := map[string]int{"attn_q": heads, "attn_k": kvHeads}[mod]
			if n > 0 {
				if v, err = permuteRows(v, s[0], cols, n, true); err != nil {
					return nil, nil, fmt.Errorf("tensor %q: %w", name, err)
				}
			}
		}
		if normOffset(arch) && isNorm(mod) && !bias {
			for j := range v {
				v[j]--
			}
		}
		switch {
		case shape == nil:
			shape = s
		case len(s) != len(shape) || (len(s) == 2 && s[1] != shape[1]):
			return nil, nil, fmt.Errorf("tensor %q: shape %v does not stack with %v into %s", name, s, shape, o.name)
		default:
			shape[0] += s[0]
		}
		out = append(out, v...)
	}
	return out, shape, nil
}

// ropeScaling recovers rope_scaling: from lathe.rope_scaling.* when this
// package wrote the file, else by matching a rope_freqs tensor against the
// Llama 3.x settings (low 1, high 4, original context 8192).
func (f *File) ropeScaling(theta float64, headDim int) (*llama3Scaling, error) {
	if typ, ok := f.str("lathe.rope_scaling.type"); ok {
		if typ != "llama3" {
			return nil, fmt.Errorf("lathe.rope_scaling.type %q is not supported", typ)
		}
		s := &llama3Scaling{}
		var err error
		get := func(k string) float64 {
			v, ok, e := f.float("lathe.rope_scaling." + k)
			if e == nil && !ok {
				e = fmt.Errorf("metadata lathe.rope_scaling.%s: missing", k)
			}
			if err == nil {
				err = e
			}
			return v
		}
		s.Factor, s.LowFreqFactor, s.HighFreqFactor = get("factor"), get("low_freq_factor"), get("high_freq_factor")
		s.OriginalMaxPositions = int(get("original_max_position_embeddings"))
		return s, err
	}
	if _, ok := f.Tensor(ropeFreqsName); !ok {
		return nil, nil
	}
	got, err := f.Float32(ropeFreqsName)
	if err != nil {
		return nil, err
	}
	if len(got) != headDim/2 {
		return nil, fmt.Errorf("%s has %d factors, want %d", ropeFreqsName, len(got), headDim/2)
	}
	factor := float32(0)
	for _, g := range got {
		factor = max(factor, g)
	}
	s := &llama3Scaling{Factor: float64(factor), LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 8192}
	// Round the factor as a config.json would spell it (8, 32).
	s.Factor, _ = strconv.ParseFloat(strconv.FormatFloat(s.Factor, 'g', -1, 32), 64)
	want := ropeFactors(s, theta, headDim)
	for i := range want {
		if math.Abs(float64(want[i]-got[i])) > 1e-4*float64(want[i]) {
			return nil, fmt.Errorf("%s does not match llama3 rope scaling with factor %v, low 1, high 4, original context 8192; cannot rebuild rope_scaling", ropeFreqsName, s.Factor)
		}
	}
	return s, nil
}

// lenOf is the length of a metadata array value, or -1 for a scalar.
func lenOf(v any) int {
	if r := reflect.ValueOf(v); r.Kind() == reflect.Slice {
		return r.Len()
	}
	return -1
}

func writeJSON(path string, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// stringsKV returns a []string metadata array.
func (f *File) stringsKV(key string) ([]string, error) {
	v, ok := f.Metadata[key]
	if !ok {
		return nil, nil
	}
	s, ok := v.([]string)
	if !ok {
		return nil, fmt.Errorf("metadata %s: want an array of strings, got %T", key, v)
	}
	return s, nil
}

// writeTokenizer rebuilds tokenizer.json and tokenizer_config.json from the
// tokenizer.* metadata; it writes nothing when the file has no vocabulary.
func (f *File) writeTokenizer(outDir string, ctx int) error {
	tokens, err := f.stringsKV("tokenizer.ggml.tokens")
	if err != nil || tokens == nil {
		return err
	}
	model, _ := f.str("tokenizer.ggml.model")
	if model != "gpt2" && model != "llama" {
		return fmt.Errorf("tokenizer.ggml.model %q is not supported (want gpt2 or llama)", model)
	}
	types := make([]int32, len(tokens))
	for i := range types {
		types[i] = tokNormal
	}
	if v, ok := f.Metadata["tokenizer.ggml.token_type"]; ok {
		tt, ok := v.([]int32)
		if !ok || len(tt) != len(tokens) {
			return fmt.Errorf("metadata tokenizer.ggml.token_type: want %d int32s (one per token), got %T of length %d", len(tokens), v, lenOf(v))
		}
		types = tt
	}
	merges, err := f.stringsKV("tokenizer.ggml.merges")
	if err != nil {
		return err
	}
	var scores []float32
	if v, ok := f.Metadata["tokenizer.ggml.scores"]; ok {
		s, ok := v.([]float32)
		if !ok || len(s) != len(tokens) {
			return fmt.Errorf("metadata tokenizer.ggml.scores: want %d float32s (one per token), got %T", len(tokens), v)
		}
		scores = s
	}

	vocab := make(map[string]int, len(tokens))
	var added []hfAddedToken
	hasBytes := false
	for id, tok := range tokens {
		if types[id] == tokUnused && strings.HasPrefix(tok, "[PAD") && tok == fmt.Sprintf("[PAD%d]", id) {
			continue // padding rows the converter added
		}
		if _, dup := vocab[tok]; dup {
			return fmt.Errorf("token %q appears twice in tokenizer.ggml.tokens", tok)
		}
		vocab[tok] = id
		switch types[id] {
		case tokControl, tokUnknown:
			added = append(added, hfAddedToken{ID: id, Content: tok, Special: true})
		case tokUserDefined:
			added = append(added, hfAddedToken{ID: id, Content: tok, Normalized: true})
		case tokByte:
			hasBytes = true
		}
	}
	if merges == nil {
		if model == "gpt2" {
			return fmt.Errorf("metadata tokenizer.ggml.merges: missing for a gpt2 tokenizer")
		}
		merges = mergesFromScores(tokens, types, scores)
	}
	tokenOf := func(key string) (string, bool) {
		id, ok, err := f.uint("tokenizer.ggml." + key)
		if err != nil || !ok || id >= uint64(len(tokens)) {
			return "", false
		}
		return tokens[id], true
	}
	boolOf := func(key string, def bool) bool {
		if b, ok := f.Metadata["tokenizer.ggml."+key].(bool); ok {
			return b
		}
		return def
	}
	bos, hasBOS := tokenOf("bos_token_id")
	eos, hasEOS := tokenOf("eos_token_id")
	addBOS := boolOf("add_bos_token", model == "llama") && hasBOS
	addEOS := boolOf("add_eos_token", false) && hasEOS

	var post any
	if addBOS || addEOS {
		post = templateProcessing(bos, eos, vocab, addBOS, addEOS)
	}
	mergesJSON := make([][2]string, len(merges))
	for i, m := range merges {
		a, b, ok := strings.Cut(m, " ")
		if !ok {
			return fmt.Errorf("tokenizer.ggml.merges[%d] %q is not two tokens", i, m)
		}
		mergesJSON[i] = [2]string{a, b}
	}
	bpe := map[string]any{
		"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil, "end_of_word_suffix": nil,
		"fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": mergesJSON,
	}
	tj := map[string]any{"version": "1.0", "truncation": nil, "padding": nil, "added_tokens": added, "normalizer": nil}
	if model == "gpt2" {
		pre, _ := f.str("tokenizer.ggml.pre")
		byteLevel := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
		split := func(re string) any {
			bl := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
			return map[string]any{"type": "Sequence", "pretokenizers": []any{
				map[string]any{"type": "Split", "pattern": map[string]any{"Regex": re}, "behavior": "Isolated", "invert": false}, bl}}
		}
		switch pre {
		case "llama-bpe":
			tj["pre_tokenizer"] = split(llama3Regex)
			bpe["ignore_merges"] = true // as llama.cpp does for llama-bpe
		case "chatglm-bpe": // GLM-4: llama3's pattern, merges not ignored
			tj["pre_tokenizer"] = split(llama3Regex)
		case "qwen2":
			tj["pre_tokenizer"] = split(qwen2Regex)
		default:
			tj["pre_tokenizer"] = byteLevel
		}
		tj["decoder"] = byteLevel
		if post == nil {
			post = map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true}
		}
	} else {
		// llama.cpp prepends a space unless add_space_prefix is false
		// (Gemma's vocabulary), and then strips it when decoding.
		prefix := boolOf("add_space_prefix", true)
		replace := map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": spmSpace}
		decoders := []any{
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": spmSpace}, "content": " "},
			map[string]any{"type": "ByteFallback"}, map[string]any{"type": "Fuse"}}
		if prefix {
			tj["normalizer"] = map[string]any{"type": "Sequence", "normalizers": []any{
				map[string]any{"type": "Prepend", "prepend": spmSpace}, replace}}
			decoders = append(decoders, map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0})
		} else {
			tj["normalizer"] = replace
		}
		tj["pre_tokenizer"] = nil
		tj["decoder"] = map[string]any{"type": "Sequence", "decoders": decoders}
		if unk, ok := tokenOf("unknown_token_id"); ok {
			bpe["unk_token"] = unk
		}
		bpe["fuse_unk"], bpe["byte_fallback"] = true, hasBytes
	}
	tj["post_processor"] = post
	tj["model"] = bpe
	if err := writeJSON(filepath.Join(outDir, "tokenizer.json"), tj); err != nil {
		return err
	}

	tc := map[string]any{
		"add_bos_token": addBOS, "add_eos_token": addEOS, "clean_up_tokenization_spaces": false,
		"model_max_length": ctx, "tokenizer_class": "PreTrainedTokenizerFast",
	}
	for key, name := range map[string]string{"bos_token_id": "bos_token", "eos_token_id": "eos_token", "unknown_token_id": "unk_token", "padding_token_id": "pad_token"} {
		if tok, ok := tokenOf(key); ok {
			tc[name] = tok
		}
	}
	decoder := map[string]any{}
	for _, a := range added {
		decoder[strconv.Itoa(a.ID)] = map[string]any{"content": a.Content, "lstrip": false, "rstrip": false,
			"normalized": a.Normalized, "single_word": false, "special": a.Special}
	}
	tc["added_tokens_decoder"] = decoder
	var named []map[string]string
	for _, kv := range f.KV {
		if n, ok := strings.CutPrefix(kv.Key, "tokenizer.chat_template."); ok {
			if s, ok := kv.Value.(string); ok {
				named = append(named, map[string]string{"name": n, "template": s})
			}
		}
	}
	if def, ok := f.str("tokenizer.chat_template"); ok {
		if named == nil {
			tc["chat_template"] = def
		} else {
			named = append([]map[string]string{{"name": "default", "template": def}}, named...)
		}
	}
	if named != nil {
		tc["chat_template"] = named
	}
	return writeJSON(filepath.Join(outDir, "tokenizer_config.json"), tc)
}

func templateProcessing(bos, eos string, vocab map[string]int, addBOS, addEOS bool) any {
	special := func(tok string, typeID int) any {
		return map[string]any{"SpecialToken": map[string]any{"id": tok, "type_id": typeID}}
	}
	seq := func(id string, typeID int) any {
		return map[string]any{"Sequence": map[string]any{"id": id, "type_id": typeID}}
	}
	var single, pair []any
	specials := map[string]any{}
	add := func(tok string) {
		specials[tok] = map[string]any{"id": tok, "ids": []int{vocab[tok]}, "tokens": []string{tok}}
	}
	for i, s := range []string{"A", "B"} {
		var part []any
		if addBOS {
			part = append(part, special(bos, i))
			add(bos)
		}
		part = append(part, seq(s, i))
		if addEOS {
			part = append(part, special(eos, i))
			add(eos)
		}
		if i == 0 {
			single = part
		}
		pair = append(pair, part...)
	}
	return map[string]any{"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials}
}

// mergesFromScores rebuilds BPE merges for a SentencePiece vocabulary that
// carries none, as transformers' SentencePieceExtractor does: every split
// of a token into two vocabulary tokens is a merge, ordered by the merged
// token's score (highest first), then by the pieces' ids.
func mergesFromScores(tokens []string, types []int32, scores []float32) []string {
	ids := map[string]int{}
	for i, t := range tokens {
		if types[i] == tokNormal || types[i] == tokUserDefined || types[i] == tokByte {
			ids[t] = i
		}
	}
	type merge struct {
		l, r  string
		score float32
		li    int
		ri    int
		id    int
	}
	var ms []merge
	for id, t := range tokens {
		if types[id] != tokNormal {
			continue
		}
		for k := 1; k < len(t); k++ {
			l, r := t[:k], t[k:]
			li, lok := ids[l]
			ri, rok := ids[r]
			if lok && rok {
				s := float32(0)
				if scores != nil {
					s = scores[id]
				}
				ms = append(ms, merge{l, r, s, li, ri, id})
			}
		}
	}
	slices.SortFunc(ms, func(a, b merge) int {
		switch {
		case a.score != b.score:
			if a.score > b.score {
				return -1
			}
			return 1
		case a.id != b.id:
			return a.id - b.id
		case a.li != b.li:
			return a.li - b.li
		}
		return a.ri - b.ri
	})
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.l + " " + m.r
	}
	return out
}
