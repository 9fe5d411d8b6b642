package llama

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// Config is a Llama-family model's shape, read from a Hugging Face
// config.json.
type Config struct {
	// ModelType is "llama", "mistral", "qwen2" or "qwen3".
	ModelType string
	// Architecture is architectures[0] (e.g. "LlamaForCausalLM").
	Architecture string

	VocabSize    int
	Hidden       int // hidden_size
	Intermediate int // intermediate_size
	Layers       int // num_hidden_layers
	Heads        int // num_attention_heads
	KVHeads      int // num_key_value_heads (default Heads)
	HeadDim      int // head_dim (default Hidden/Heads)
	MaxPositions int // max_position_embeddings (0 if absent)

	RopeTheta   float64
	RopeScaling *tensor.Llama3Scaling // rope_scaling llama3, or nil
	RMSNormEps  float64

	// QKVBias: q, k and v projections have biases (qwen2 always; llama and
	// qwen3 with attention_bias). OBias: o_proj has one (attention_bias,
	// not qwen2). MLPBias: gate/up/down have biases (llama mlp_bias).
	QKVBias, OBias, MLPBias bool
	// QKNorm: per-head RMSNorm of q and k before RoPE (qwen3).
	QKNorm bool
	// TieEmbeddings: the LM head is model.embed_tokens.weight.
	TieEmbeddings bool
	// SlidingWindow is the sliding_window of mistral, phi3 and gemma2 (0:
	// none): a query attends to the SlidingWindow latest keys, itself
	// included.
	SlidingWindow int

	BOSTokenID  int   // -1 if absent
	EOSTokenIDs []int // eos_token_id as a list (it may be an int or a list)

	// What the other families change (zero values: the Llama behaviour);
	// see families.go.

	// Activation is the MLP's gate activation: "silu" (SwiGLU) or
	// "gelu_tanh" (GeGLU, Gemma).
	Activation string
	// EmbedScale multiplies the embeddings by sqrt(Hidden) (Gemma).
	EmbedScale bool
	// NormOffset: every RMSNorm scales by 1 + weight (Gemma).
	NormOffset bool
	// RotaryDim is the number of leading dims of each head that RoPE
	// rotates (0: HeadDim): ChatGLM rotates half, Phi-3.5/4 use
	// partial_rotary_factor.
	RotaryDim int
	// RopeExtFactors are Phi-3's longrope short factors (one per rotary
	// frequency) and RopeAttnFactor its cos/sin scale (0: none);
	// RopeOriginalMax is the length beyond which the long factors would
	// apply, which lathe refuses.
	RopeExtFactors  []float64
	RopeLongFactors []float64
	RopeAttnFactor  float64
	RopeOriginalMax int
	// NormHead: the LM head's rows are L2-normalised in every forward pass
	// (Baichuan 2).
	NormHead bool
	// ALiBi: attention scores get per-head linear position biases instead
	// of rotary embeddings (Baichuan 2 13B).
	ALiBi bool
	// PostNorms: the attention and MLP outputs are RMS-normalised before
	// their residual additions (Gemma 2; extra weights
	// attn_output_norm and mlp_output_norm).
	PostNorms bool
	// AttnSoftCap and FinalSoftCap cap attention scores and logits with
	// cap·tanh(x/cap) (Gemma 2; 0: off).
	AttnSoftCap, FinalSoftCap float64
	// QueryScale, when set, makes the score scale QueryScale^-1/2 instead
	// of head_dim^-1/2 (Gemma 2's query_pre_attn_scalar).
	QueryScale float64
	// WindowEvenLayers: only layers 0, 2, 4, ... use SlidingWindow (Gemma
	// 2); otherwise every layer does.
	WindowEvenLayers bool

	// raw is the parsed config.json, written back by Save so fields lathe
	// does not interpret survive a round trip.
	raw map[string]any
}

// LoadConfig reads dir/config.json (or the file itself if path is a file).
func LoadConfig(path string) (Config, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "config.json")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("llama: config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses and validates a transformers config.json of any
// family lathe knows (see families).
func ParseConfig(data []byte) (Config, error) {
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, fmt.Errorf("llama: config.json: %w", err)
	}
	c := Config{raw: raw, BOSTokenID: -1}
	f := &fields{raw: raw}
	if mt, ok := raw["model_type"].(string); ok {
		c.ModelType = mt
	}
	var fam *family
	if as, ok := raw["architectures"].([]any); ok && len(as) > 0 {
		a, _ := as[0].(string)
		c.Architecture = a
		fam = familyOfArch(a)
		switch {
		case fam == nil:
			f.fail("architectures", "%q is not supported (want one of %s)", a, strings.Join(knownArchitectures(), ", "))
		case c.ModelType == "":
			c.ModelType = fam.modelType
		case c.ModelType != fam.modelType:
			f.fail("model_type", "%q does not match architectures %q", c.ModelType, a)
		}
	}
	if fam == nil && f.err == nil {
		switch fam = familyOf(c.ModelType); {
		case c.ModelType == "":
			f.fail("model_type", "missing (and no architectures)")
		case fam == nil:
			f.fail("model_type", "%q is not supported (want one of %s)", c.ModelType, strings.Join(knownModelTypes(), ", "))
		default:
			c.Architecture = fam.archs[0]
		}
	}
	if fam != nil {
		fam.parse(f, &c)
	}
	if v, ok := raw["bos_token_id"].(float64); ok {
		c.BOSTokenID = int(v)
	}
	switch v := raw["eos_token_id"].(type) {
	case float64:
		c.EOSTokenIDs = []int{int(v)}
	case []any:
		for _, e := range v {
			if x, ok := e.(float64); ok {
				c.EOSTokenIDs = append(c.EOSTokenIDs, int(x))
			}
		}
	}
	if f.err != nil {
		return Config{}, f.err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// fields reads typed values from a parsed config.json, keeping the first
// error (which names the field).
type fields struct {
	raw map[string]any
	err error
}

func (f *fields) fail(field string, format string, a ...any) {
	if f.err == nil {
		f.err = fmt.Errorf("llama: config.json: %s: %s", field, fmt.Sprintf(format, a...))
	}
}

func (f *fields) has(field string) bool { v, ok := f.raw[field]; return ok && v != nil }

func (f *fields) int(field string, def int, required bool) int {
	v, ok := f.raw[field]
	if !ok || v == nil {
		if required {
			f.fail(field, "missing")
		}
		return def
	}
	x, ok := v.(float64)
	if !ok || x != float64(int(x)) {
		f.fail(field, "want an integer, got %v", v)
		return def
	}
	return int(x)
}

func (f *fields) float(field string, def float64) float64 {
	v, ok := f.raw[field]
	if !ok || v == nil {
		return def
	}
	x, ok := v.(float64)
	if !ok {
		f.fail(field, "want a number, got %v", v)
		return def
	}
	return x
}

func (f *fields) bool(field string, def bool) bool {
	v, ok := f.raw[field]
	if !ok || v == nil {
		return def
	}
	b, ok := v.(bool)
	if !ok {
		f.fail(field, "want a boolean, got %v", v)
		return def
	}
	return b
}

func (f *fields) str(field, def string) string {
	v, ok := f.raw[field]
	if !ok || v == nil {
		return def
	}
	x, ok := v.(string)
	if !ok {
		f.fail(field, "want a string, got %v", v)
		return def
	}
	return x
}

func (f *fields) floats(field string) []float64 {
	v, ok := f.raw[field].([]any)
	if !ok {
		f.fail(field, "want a list of numbers")
		return nil
	}
	out := make([]float64, len(v))
	for i, e := range v {
		x, ok := e.(float64)
		if !ok {
			f.fail(field, "element %d is %v, not a number", i, e)
			return nil
		}
		out[i] = x
	}
	return out
}

// parseLlama reads the Llama family's fields (llama, mistral, qwen2,
// qwen3, and the Llama-shaped parts of gemma and phi3).
func parseLlama(f *fields, c *Config) {
	c.VocabSize = f.int("vocab_size", 0, true)
	c.Hidden = f.int("hidden_size", 0, true)
	c.Intermediate = f.int("intermediate_size", 0, true)
	c.Layers = f.int("num_hidden_layers", 0, true)
	c.Heads = f.int("num_attention_heads", 0, true)
	c.KVHeads = f.int("num_key_value_heads", c.Heads, false)
	hd := 0
	if c.Heads > 0 {
		hd = c.Hidden / c.Heads
	}
	c.HeadDim = f.int("head_dim", hd, false)
	c.MaxPositions = f.int("max_position_embeddings", 0, false)
	c.RopeTheta = f.float("rope_theta", 10000)
	c.RMSNormEps = f.float("rms_norm_eps", 1e-6)
	c.TieEmbeddings = f.bool("tie_word_embeddings", false)
	c.Activation = "silu"
	attnBias := f.bool("attention_bias", false)
	switch c.ModelType {
	case "llama":
		c.QKVBias, c.OBias = attnBias, attnBias
		c.MLPBias = f.bool("mlp_bias", false)
	case "mistral":
		c.SlidingWindow = f.int("sliding_window", 0, false)
	case "qwen2":
		c.QKVBias = true
		if f.bool("use_sliding_window", false) {
			f.fail("use_sliding_window", "true is not supported")
		}
	case "qwen3":
		c.QKVBias, c.OBias = attnBias, attnBias
		c.QKNorm = true
		if f.bool("use_sliding_window", false) {
			f.fail("use_sliding_window", "true is not supported")
		}
	}
	if c.ModelType != "gemma" {
		if act := f.str("hidden_act", "silu"); act != "silu" {
			f.fail("hidden_act", "%v is not supported (only silu)", act)
		}
	}
	rs, ok := f.raw["rope_scaling"]
	if !ok || rs == nil {
		return
	}
	m, ok := rs.(map[string]any)
	if !ok {
		f.fail("rope_scaling", "want an object or null, got %v", rs)
		return
	}
	sub := &fields{raw: m}
	typ := sub.str("rope_type", "")
	if typ == "" {
		typ = sub.str("type", "")
	}
	num := func(k string) float64 {
		x, ok := m[k].(float64)
		if !ok {
			f.fail("rope_scaling."+k, "missing or not a number")
		}
		return x
	}
	switch {
	case typ == "llama3":
		c.RopeScaling = &tensor.Llama3Scaling{
			Factor:               num("factor"),
			LowFreqFactor:        num("low_freq_factor"),
			HighFreqFactor:       num("high_freq_factor"),
			OriginalMaxPositions: int(num("original_max_position_embeddings")),
		}
	case typ == "default":
	case (typ == "longrope" || typ == "su") && c.ModelType == "phi3":
		parseLongRoPE(f, sub, c)
	default:
		f.fail("rope_scaling.rope_type", "%q is not supported (llama3, and longrope for phi3)", typ)
	}
	if sub.err != nil && f.err == nil {
		f.err = fmt.Errorf("rope_scaling: %w", sub.err)
	}
}

// Validate checks the shape fields for consistency.
func (c Config) Validate() error {
	pos := func(field string, v int) error {
		if v <= 0 {
			return fmt.Errorf("llama: config: %s is %d, want > 0", field, v)
		}
		return nil
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"vocab_size", c.VocabSize}, {"hidden_size", c.Hidden}, {"intermediate_size", c.Intermediate},
		{"num_hidden_layers", c.Layers}, {"num_attention_heads", c.Heads}, {"num_key_value_heads", c.KVHeads},
		{"head_dim", c.HeadDim}} {
		if err := pos(f.name, f.v); err != nil {
			return err
		}
	}
	if c.Heads%c.KVHeads != 0 {
		return fmt.Errorf("llama: config: num_attention_heads %d is not a multiple of num_key_value_heads %d", c.Heads, c.KVHeads)
	}
	if c.HeadDim%2 != 0 {
		return fmt.Errorf("llama: config: head_dim %d must be even for RoPE", c.HeadDim)
	}
	if !(c.RMSNormEps > 0) {
		return fmt.Errorf("llama: config: rms_norm_eps %v, want > 0", c.RMSNormEps)
	}
	if c.SlidingWindow < 0 {
		return fmt.Errorf("llama: config: sliding_window %d, want > 0 or null", c.SlidingWindow)
	}
	if _, err := c.rope().InvFreq(); err != nil {
		return fmt.Errorf("llama: config: rope_theta/rope_scaling: %w", err)
	}
	return nil
}

func (c Config) rope() tensor.RoPE {
	return tensor.RoPE{HeadDim: c.HeadDim, RotaryDim: c.RotaryDim, Theta: c.RopeTheta, Llama3: c.RopeScaling, ExtFactors: c.RopeExtFactors}
}

// rotaryDim is the number of rotated dims of each head.
func (c Config) rotaryDim() int { return c.rope().Dim() }

// JSON returns the config as transformers' config.json: the fields lathe
// knows, from c (so edits to c are written), over every other field of the
// config.json ParseConfig read, if any (so they survive a round trip).
// torchDType, if not empty, sets "torch_dtype" (e.g. "float32").
func (c Config) JSON(torchDType string) ([]byte, error) {
	m := map[string]any{}
	for k, v := range c.raw {
		m[k] = v
	}
	m["architectures"] = []string{c.Architecture}
	m["model_type"] = c.ModelType
	if fam := familyOf(c.ModelType); fam != nil {
		fam.write(c, m)
	}
	if c.BOSTokenID >= 0 {
		m["bos_token_id"] = c.BOSTokenID
	}
	if len(c.EOSTokenIDs) == 1 {
		m["eos_token_id"] = c.EOSTokenIDs[0]
	} else if len(c.EOSTokenIDs) > 1 {
		m["eos_token_id"] = c.EOSTokenIDs
	}
	if torchDType != "" {
		m["torch_dtype"] = torchDType
	}
	return json.MarshalIndent(m, "", "  ")
}

// writeLlama sets the Llama family's fields of a config.json.
func writeLlama(c Config, m map[string]any) {
	m["vocab_size"] = c.VocabSize
	m["hidden_size"] = c.Hidden
	m["intermediate_size"] = c.Intermediate
	m["num_hidden_layers"] = c.Layers
	m["num_attention_heads"] = c.Heads
	m["num_key_value_heads"] = c.KVHeads
	m["head_dim"] = c.HeadDim
	m["hidden_act"] = "silu"
	m["rope_theta"] = c.RopeTheta
	m["rms_norm_eps"] = c.RMSNormEps
	m["tie_word_embeddings"] = c.TieEmbeddings
	if c.MaxPositions > 0 {
		m["max_position_embeddings"] = c.MaxPositions
	}
	if s := c.RopeScaling; s != nil {
		m["rope_scaling"] = map[string]any{"rope_type": "llama3", "factor": s.Factor,
			"low_freq_factor": s.LowFreqFactor, "high_freq_factor": s.HighFreqFactor,
			"original_max_position_embeddings": s.OriginalMaxPositions}
	}
	switch c.ModelType {
	case "llama":
		m["attention_bias"] = c.QKVBias
		m["mlp_bias"] = c.MLPBias
	case "qwen3":
		m["attention_bias"] = c.QKVBias
	case "mistral":
		if c.SlidingWindow > 0 {
			m["sliding_window"] = c.SlidingWindow
		} else {
			m["sliding_window"] = nil
		}
	}
	if _, ok := m["rope_scaling"]; ok && c.RopeScaling == nil && c.RopeExtFactors == nil {
		m["rope_scaling"] = nil
	}
}
