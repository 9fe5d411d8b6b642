package gguf

import (
	"fmt"
	"strconv"
	"strings"
)

// A nameTable maps one architecture's Hugging Face tensor names to
// llama.cpp's, in the order the writer lays them out.
type nameTable struct {
	layerPrefix string // "model.layers." (ChatGLM: "transformer.encoder.layers.")
	globals     []globalName
	layers      []layerName
}

// globalName is a model-level tensor; rank orders it in the file.
type globalName struct {
	hf, gguf string
	rank     int
}

// layerName maps a per-layer module path to its llama.cpp name. A module
// with several llama.cpp names is one Hugging Face tensor split along its
// rows into them, in order (Baichuan's W_pack into q, k and v).
type layerName struct {
	hf   string
	gguf []string
}

func one(hf, gguf string) layerName { return layerName{hf, []string{gguf}} }

var llamaGlobals = []globalName{
	{"model.embed_tokens", "token_embd", 0},
	{"model.norm", "output_norm", 1 << 30},
	{"lm_head", "output", 1<<30 + 1},
}

var (
	// llama, mistral, qwen2, qwen3 and gemma: the Llama layout.
	llamaNames = &nameTable{layerPrefix: "model.layers.", globals: llamaGlobals, layers: []layerName{
		one("input_layernorm", "attn_norm"),
		one("self_attn.q_proj", "attn_q"),
		one("self_attn.k_proj", "attn_k"),
		one("self_attn.v_proj", "attn_v"),
		one("self_attn.o_proj", "attn_output"),
		one("self_attn.q_norm", "attn_q_norm"),
		one("self_attn.k_norm", "attn_k_norm"),
		one("post_attention_layernorm", "ffn_norm"),
		one("mlp.gate_proj", "ffn_gate"),
		one("mlp.up_proj", "ffn_up"),
		one("mlp.down_proj", "ffn_down"),
	}}
	// Gemma 2: four norms per layer; its post_attention_layernorm
	// normalises the attention output, pre_feedforward_layernorm is the
	// Llama post_attention_layernorm.
	gemma2Names = &nameTable{layerPrefix: "model.layers.", globals: llamaGlobals, layers: []layerName{
		one("input_layernorm", "attn_norm"),
		one("self_attn.q_proj", "attn_q"),
		one("self_attn.k_proj", "attn_k"),
		one("self_attn.v_proj", "attn_v"),
		one("self_attn.o_proj", "attn_output"),
		one("post_attention_layernorm", "post_attention_norm"),
		one("pre_feedforward_layernorm", "ffn_norm"),
		one("mlp.gate_proj", "ffn_gate"),
		one("mlp.up_proj", "ffn_up"),
		one("mlp.down_proj", "ffn_down"),
		one("post_feedforward_layernorm", "post_ffw_norm"),
	}}
	// Phi-3: fused qkv, and gate and up fused into llama.cpp's ffn_up.
	phi3Names = &nameTable{layerPrefix: "model.layers.", globals: llamaGlobals, layers: []layerName{
		one("input_layernorm", "attn_norm"),
		one("self_attn.qkv_proj", "attn_qkv"),
		one("self_attn.o_proj", "attn_output"),
		one("post_attention_layernorm", "ffn_norm"),
		one("mlp.gate_up_proj", "ffn_up"),
		one("mlp.down_proj", "ffn_down"),
	}}
	// Baichuan: W_pack is split into q, k and v.
	baichuanNames = &nameTable{layerPrefix: "model.layers.", globals: llamaGlobals, layers: []layerName{
		one("input_layernorm", "attn_norm"),
		{"self_attn.W_pack", []string{"attn_q", "attn_k", "attn_v"}},
		one("self_attn.o_proj", "attn_output"),
		one("post_attention_layernorm", "ffn_norm"),
		one("mlp.gate_proj", "ffn_gate"),
		one("mlp.up_proj", "ffn_up"),
		one("mlp.down_proj", "ffn_down"),
	}}
	// ChatGLM 3 / GLM-4 (THUDM's ChatGLMModel code).
	chatglmNames = &nameTable{layerPrefix: "transformer.encoder.layers.", globals: []globalName{
		{"transformer.embedding.word_embeddings", "token_embd", 0},
		{"transformer.encoder.final_layernorm", "output_norm", 1 << 30},
		{"transformer.output_layer", "output", 1<<30 + 1},
	}, layers: []layerName{
		one("input_layernorm", "attn_norm"),
		one("self_attention.query_key_value", "attn_qkv"),
		one("self_attention.dense", "attn_output"),
		one("post_attention_layernorm", "ffn_norm"),
		one("mlp.dense_h_to_4h", "ffn_up"),
		one("mlp.dense_4h_to_h", "ffn_down"),
	}}
)

// ropeFreqsName is llama.cpp's tensor of llama3 rope frequency factors.
const ropeFreqsName = "rope_freqs.weight"

// Phi-3's longrope factors (llama.cpp's rope_factors_long/short).
const (
	ropeLongName  = "rope_factors_long.weight"
	ropeShortName = "rope_factors_short.weight"
)

// splitSuffix splits "x.weight" / "x.bias" into ("x", ".weight").
func splitSuffix(name string) (string, string, bool) {
	for _, s := range []string{".weight", ".bias"} {
		if base, ok := strings.CutSuffix(name, s); ok {
			return base, s, true
		}
	}
	return "", "", false
}

// ggufPart is one llama.cpp tensor a Hugging Face tensor becomes.
type ggufPart struct {
	name   string
	module string // llama.cpp module name ("attn_q", "token_embd", ...)
	rank   int
}

// layerOf parses "<prefix>N.rest" into N and rest.
func (nt *nameTable) layerOf(base, prefix string) (int, string, bool) {
	rest, ok := strings.CutPrefix(base, prefix)
	if !ok {
		return 0, "", false
	}
	num, mod, ok := strings.Cut(rest, ".")
	l, err := strconv.Atoi(num)
	if !ok || err != nil || l < 0 || strconv.Itoa(l) != num {
		return 0, "", false
	}
	return l, mod, true
}

// hfToGGUF maps a Hugging Face tensor name to the llama.cpp tensors it
// becomes (several for a split module), with ranks giving the file order,
// and its layer (-1 for model-level tensors). ok is false for names the
// table does not know.
func (nt *nameTable) hfToGGUF(name string) (parts []ggufPart, layer int, ok bool) {
	base, suf, ok := splitSuffix(name)
	if !ok {
		return nil, 0, false
	}
	for _, g := range nt.globals {
		if base == g.hf {
			return []ggufPart{{g.gguf + suf, g.gguf, g.rank}}, -1, true
		}
	}
	l, mod, ok := nt.layerOf(base, nt.layerPrefix)
	if !ok {
		return nil, 0, false
	}
	for i, ln := range nt.layers {
		if mod != ln.hf {
			continue
		}
		for j, g := range ln.gguf {
			r := 1 + 2*((l*len(nt.layers)+i)*4+j)
			if suf == ".bias" {
				r++
			}
			parts = append(parts, ggufPart{fmt.Sprintf("blk.%d.%s%s", l, g, suf), g, r})
		}
		return parts, l, true
	}
	return nil, 0, false
}

// ggufToHF is the inverse of hfToGGUF: the Hugging Face tensor a llama.cpp
// tensor belongs to, its layer (-1 for model-level tensors), its llama.cpp
// module name, and which of the Hugging Face tensor's n row blocks it is.
func (nt *nameTable) ggufToHF(name string) (hf string, layer int, module string, part, n int, ok bool) {
	base, suf, ok := splitSuffix(name)
	if !ok {
		return "", 0, "", 0, 0, false
	}
	for _, g := range nt.globals {
		if base == g.gguf {
			return g.hf + suf, -1, g.gguf, 0, 1, true
		}
	}
	l, mod, ok := nt.layerOf(base, "blk.")
	if !ok {
		return "", 0, "", 0, 0, false
	}
	for _, ln := range nt.layers {
		for j, g := range ln.gguf {
			if mod == g {
				return fmt.Sprintf("%s%d.%s%s", nt.layerPrefix, l, ln.hf, suf), l, mod, j, len(ln.gguf), true
			}
		}
	}
	return "", 0, "", 0, 0, false
}

// ggufName returns the llama.cpp name of module mod ("attn_q", ...) in
// layer l (-1: a model-level tensor) with suffix suf.
func ggufName(l int, mod, suf string) string {
	if l < 0 {
		return mod + suf
	}
	return fmt.Sprintf("blk.%d.%s%s", l, mod, suf)
}

// permuteRows applies llama.cpp's LlamaModel.permute to a [rows, cols]
// row-major matrix (cols = 1 for a bias) of nHead heads: within each head,
// rows [first half..., second half...] become interleaved pairs, i.e.
// reshape(nHead, 2, rows/nHead/2, cols).swapaxes(1, 2). With inverse it
// undoes that.
func permuteRows(v []float32, rows, cols, nHead int, inverse bool) ([]float32, error) {
	if nHead <= 0 || rows%(2*nHead) != 0 || len(v) != rows*cols {
		return nil, fmt.Errorf("cannot permute %d values as [%d, %d] for %d heads", len(v), rows, cols, nHead)
	}
	hd := rows / nHead
	half := hd / 2
	out := make([]float32, len(v))
	for h := range nHead {
		for j := range half {
			for s := range 2 {
				hfRow := h*hd + s*half + j // row in the Hugging Face layout
				ggRow := h*hd + 2*j + s    // row in the llama.cpp layout
				src, dst := hfRow, ggRow
				if inverse {
					src, dst = ggRow, hfRow
				}
				copy(out[dst*cols:(dst+1)*cols], v[src*cols:(src+1)*cols])
			}
		}
	}
	return out, nil
}
