package gguf

import (
	"fmt"
	"strconv"
	"strings"
)

// Per-layer tensor names: Hugging Face module path -> llama.cpp name, in
// the order the writer lays them out.
var layerNames = []struct{ hf, gguf string }{
	{"input_layernorm", "attn_norm"},
	{"self_attn.q_proj", "attn_q"},
	{"self_attn.k_proj", "attn_k"},
	{"self_attn.v_proj", "attn_v"},
	{"self_attn.o_proj", "attn_output"},
	{"self_attn.q_norm", "attn_q_norm"},
	{"self_attn.k_norm", "attn_k_norm"},
	{"post_attention_layernorm", "ffn_norm"},
	{"mlp.gate_proj", "ffn_gate"},
	{"mlp.up_proj", "ffn_up"},
	{"mlp.down_proj", "ffn_down"},
}

// Model-level tensors (rank orders them in the file).
var globalNames = []struct {
	hf, gguf string
	rank     int
}{
	{"model.embed_tokens", "token_embd", 0},
	{"model.norm", "output_norm", 1 << 30},
	{"lm_head", "output", 1<<30 + 1},
}

// ropeFreqsName is llama.cpp's tensor of llama3 rope frequency factors.
const ropeFreqsName = "rope_freqs.weight"

// splitSuffix splits "x.weight" / "x.bias" into ("x", ".weight").
func splitSuffix(name string) (string, string, bool) {
	for _, s := range []string{".weight", ".bias"} {
		if base, ok := strings.CutSuffix(name, s); ok {
			return base, s, true
		}
	}
	return "", "", false
}

// hfToGGUF maps a Hugging Face tensor name to its llama.cpp name and a
// rank giving the file order. ok is false for names it does not know.
func hfToGGUF(name string) (gname string, rank int, ok bool) {
	base, suf, ok := splitSuffix(name)
	if !ok {
		return "", 0, false
	}
	for _, g := range globalNames {
		if base == g.hf {
			return g.gguf + suf, g.rank, true
		}
	}
	rest, ok := strings.CutPrefix(base, "model.layers.")
	if !ok {
		return "", 0, false
	}
	num, mod, ok := strings.Cut(rest, ".")
	l, err := strconv.Atoi(num)
	if !ok || err != nil || l < 0 || strconv.Itoa(l) != num {
		return "", 0, false
	}
	for i, ln := range layerNames {
		if mod == ln.hf {
			r := 1 + l*2*len(layerNames) + 2*i
			if suf == ".bias" {
				r++
			}
			return fmt.Sprintf("blk.%d.%s%s", l, ln.gguf, suf), r, true
		}
	}
	return "", 0, false
}

// ggufToHF is the inverse of hfToGGUF; it also returns the layer (-1 for
// model-level tensors) and the llama.cpp module name ("attn_q", ...).
func ggufToHF(name string) (hf string, layer int, module string, ok bool) {
	base, suf, ok := splitSuffix(name)
	if !ok {
		return "", 0, "", false
	}
	for _, g := range globalNames {
		if base == g.gguf {
			return g.hf + suf, -1, g.gguf, true
		}
	}
	rest, ok := strings.CutPrefix(base, "blk.")
	if !ok {
		return "", 0, "", false
	}
	num, mod, ok := strings.Cut(rest, ".")
	l, err := strconv.Atoi(num)
	if !ok || err != nil || l < 0 || strconv.Itoa(l) != num {
		return "", 0, "", false
	}
	for _, ln := range layerNames {
		if mod == ln.gguf {
			return fmt.Sprintf("model.layers.%d.%s%s", l, ln.hf, suf), l, mod, true
		}
	}
	return "", 0, "", false
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
