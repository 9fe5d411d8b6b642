package gguf

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/lathe-ml/lathe/internal/llama"
)

// hfConfig is what the converter needs from a transformers config.json.
type hfConfig struct {
	Architecture string // architectures[0]
	ModelType    string
	Arch         string // GGUF architecture: llama, qwen2, qwen3, gemma, gemma2, phi3, baichuan, chatglm

	VocabSize, Hidden, Intermediate, Layers, Heads, KVHeads, HeadDim int
	MaxPositions                                                     int
	RMSNormEps, RopeTheta                                            float64
	Llama3                                                           *llama3Scaling
	Tie                                                              bool
	BOS                                                              int // -1 if absent
	EOS                                                              []int

	// Family is the configuration as lathe's engine reads it, for the
	// families parsed by internal/llama (gemma, gemma2, phi3, baichuan,
	// chatglm); nil for the Llama/Qwen ones this file parses itself.
	Family *llama.Config
}

// llama3Scaling is rope_scaling {"rope_type": "llama3", ...}.
type llama3Scaling struct {
	Factor, LowFreqFactor, HighFreqFactor float64
	OriginalMaxPositions                  int
}

var hfArchs = map[string]struct{ modelType, arch string }{
	"LlamaForCausalLM":   {"llama", "llama"},
	"MistralForCausalLM": {"mistral", "llama"},
	"Qwen2ForCausalLM":   {"qwen2", "qwen2"},
	"Qwen3ForCausalLM":   {"qwen3", "qwen3"},
}

// transformers' default max_position_embeddings per model type, used when
// config.json omits it.
var defaultContext = map[string]int{"llama": 2048, "mistral": 4096 * 32, "qwen2": 32768, "qwen3": 32768,
	"gemma": 8192, "gemma2": 8192, "phi3": 4096, "baichuan": 4096, "chatglm": 2048}

func loadHFConfig(dir string) (*hfConfig, error) {
	path := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := parseHFConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func parseHFConfig(data []byte) (*hfConfig, error) {
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	var err error
	fail := func(format string, a ...any) {
		if err == nil {
			err = fmt.Errorf(format, a...)
		}
	}
	num := func(m map[string]any, k string, def float64, required bool) float64 {
		v, ok := m[k]
		if !ok || v == nil {
			if required {
				fail("%s: missing", k)
			}
			return def
		}
		f, ok := v.(float64)
		if !ok {
			fail("%s: want a number, got %v", k, v)
			return def
		}
		return f
	}
	integer := func(k string, def int, required bool) int {
		f := num(raw, k, float64(def), required)
		if f != float64(int(f)) {
			fail("%s: want an integer, got %v", k, f)
		}
		return int(f)
	}
	c := &hfConfig{BOS: -1}
	if as, ok := raw["architectures"].([]any); ok && len(as) > 0 {
		c.Architecture, _ = as[0].(string)
	}
	c.ModelType, _ = raw["model_type"].(string)
	if c.Architecture == "" {
		for a, t := range hfArchs {
			if t.modelType == c.ModelType {
				c.Architecture = a
			}
		}
	}
	a, ok := hfArchs[c.Architecture]
	if !ok {
		if _, fam := familyArchs[c.ModelType]; fam || (c.ModelType == "" && familyArchitecture(c.Architecture)) {
			return familyConfig(data)
		}
		return nil, fmt.Errorf("architecture %q (model_type %q) is not supported (want %s)", c.Architecture, c.ModelType, supportedArchitectures)
	}
	if c.ModelType == "" {
		c.ModelType = a.modelType
	}
	c.Arch = a.arch
	c.VocabSize = integer("vocab_size", 0, true)
	c.Hidden = integer("hidden_size", 0, true)
	c.Intermediate = integer("intermediate_size", 0, true)
	c.Layers = integer("num_hidden_layers", 0, true)
	c.Heads = integer("num_attention_heads", 0, true)
	c.KVHeads = integer("num_key_value_heads", c.Heads, false)
	hd := 0
	if c.Heads > 0 {
		hd = c.Hidden / c.Heads
	}
	c.HeadDim = integer("head_dim", hd, false)
	c.MaxPositions = integer("max_position_embeddings", defaultContext[c.ModelType], false)
	c.RMSNormEps = num(raw, "rms_norm_eps", 1e-6, false)
	c.RopeTheta = num(raw, "rope_theta", 10000, false)
	if t, ok := raw["tie_word_embeddings"]; ok && t != nil {
		b, ok := t.(bool)
		if !ok {
			fail("tie_word_embeddings: want a boolean, got %v", t)
		}
		c.Tie = b
	}
	if rs, ok := raw["rope_scaling"]; ok && rs != nil {
		m, ok := rs.(map[string]any)
		if !ok {
			fail("rope_scaling: want an object or null, got %v", rs)
		} else {
			typ, _ := m["rope_type"].(string)
			if typ == "" {
				typ, _ = m["type"].(string)
			}
			switch typ {
			case "llama3":
				c.Llama3 = &llama3Scaling{
					Factor:               num(m, "factor", 8, false),
					LowFreqFactor:        num(m, "low_freq_factor", 1, false),
					HighFreqFactor:       num(m, "high_freq_factor", 4, false),
					OriginalMaxPositions: int(num(m, "original_max_position_embeddings", 8192, false)),
				}
				if s := c.Llama3; s.Factor <= 0 || s.LowFreqFactor <= 0 || s.HighFreqFactor <= s.LowFreqFactor || s.OriginalMaxPositions <= 0 {
					fail("rope_scaling: invalid llama3 parameters %+v", *s)
				}
			case "default", "":
			default:
				fail("rope_scaling: rope_type %q is not supported (only llama3)", typ)
			}
		}
	}
	if v, ok := raw["bos_token_id"].(float64); ok {
		c.BOS = int(v)
	}
	switch v := raw["eos_token_id"].(type) {
	case float64:
		c.EOS = []int{int(v)}
	case []any:
		for _, e := range v {
			if f, ok := e.(float64); ok {
				c.EOS = append(c.EOS, int(f))
			}
		}
	}
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"vocab_size", c.VocabSize}, {"hidden_size", c.Hidden}, {"intermediate_size", c.Intermediate},
		{"num_hidden_layers", c.Layers}, {"num_attention_heads", c.Heads}, {"num_key_value_heads", c.KVHeads},
		{"head_dim", c.HeadDim}, {"max_position_embeddings", c.MaxPositions}} {
		if f.v <= 0 || f.v > math32 {
			return nil, fmt.Errorf("%s is %d, want 1 to %d", f.name, f.v, math32)
		}
	}
	if c.Heads%c.KVHeads != 0 {
		return nil, fmt.Errorf("num_attention_heads %d is not a multiple of num_key_value_heads %d", c.Heads, c.KVHeads)
	}
	if c.HeadDim%2 != 0 {
		return nil, fmt.Errorf("head_dim %d is odd", c.HeadDim)
	}
	if !(c.RMSNormEps > 0) || !(c.RopeTheta > 0) {
		return nil, fmt.Errorf("rms_norm_eps %v and rope_theta %v must be positive", c.RMSNormEps, c.RopeTheta)
	}
	return c, nil
}

const math32 = 1<<32 - 1

// ropeFactors is llama.cpp's rope_freqs tensor for llama3 scaling
// (convert_hf_to_gguf.py, LlamaModel.generate_extra_tensors): per rotary
// frequency, the factor llama.cpp divides the frequency by.
func ropeFactors(s *llama3Scaling, theta float64, dim int) []float32 {
	out := make([]float32, dim/2)
	old := float64(s.OriginalMaxPositions)
	lowWave := old / s.LowFreqFactor
	highWave := old / s.HighFreqFactor
	for i := range out {
		// The converter computes the frequencies in float32.
		freq := float64(float32(1 / math.Pow(theta, float64(2*i)/float64(dim))))
		wave := 2 * math.Pi / freq
		switch {
		case wave < highWave:
			out[i] = 1
		case wave > lowWave:
			out[i] = float32(s.Factor)
		default:
			smooth := (old/wave - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
			out[i] = float32(1 / ((1-smooth)/s.Factor + smooth))
		}
	}
	return out
}
