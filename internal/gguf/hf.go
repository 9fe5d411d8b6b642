package gguf

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/lathe-ml/lathe/internal/safetensors"
)

// WriteOptions configures WriteFromHF.
type WriteOptions struct {
	// Type is the type of the weight matrices (F32, F16, BF16, Q8_0 or
	// Q4_0). Norm weights, biases and other 1-D tensors are always F32.
	Type Type
	// Name is general.name; empty means the base name of the model
	// directory.
	Name string
	// ChatTemplate, if set, replaces tokenizer_config.json's default
	// chat template.
	ChatTemplate string
}

// Fallback records a matrix written in another type than asked for.
type Fallback struct {
	Tensor string // GGUF name
	Type   Type   // the type written
	Reason string
}

// WriteResult describes a file WriteFromHF wrote.
type WriteResult struct {
	Arch      string // general.architecture
	Tensors   int
	Size      int64 // bytes
	Fallbacks []Fallback
	// Notes are differences in how llama.cpp reads the model that lathe
	// does not refuse (e.g. Phi-3's sliding window, which llama.cpp
	// currently ignores).
	Notes []string
}

// plannedTensor is one tensor of the output and where it comes from.
type plannedTensor struct {
	hf, gguf string
	rank     int
	hfShape  []int // the output tensor's shape, Hugging Face order
	typ      Type
	// rows is the block of the Hugging Face tensor's rows this tensor
	// holds ([0, 0): all of them; Baichuan's W_pack is split).
	rows [2]int
	// permute is the number of heads to permute the q/k rows over (0:
	// none); addOne stores 1 + w (Gemma's norms); normalise stores the
	// rows at unit L2 norm (Baichuan 2's head).
	permute           int
	addOne, normalise bool
}

// values reads the planned tensor's data from set and applies its
// transforms.
func (p plannedTensor) values(set *safetensors.Set) ([]float32, error) {
	v, err := set.Float32(p.hf)
	if err != nil {
		return nil, err
	}
	cols := 1
	if len(p.hfShape) == 2 {
		cols = p.hfShape[1]
	}
	if p.rows[1] > 0 {
		v = slices.Clone(v[p.rows[0]*cols : p.rows[1]*cols])
	}
	if p.permute > 0 {
		if v, err = permuteRows(v, p.hfShape[0], cols, p.permute, false); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", p.hf, err)
		}
	}
	if p.addOne {
		for i := range v {
			v[i]++
		}
	}
	if p.normalise {
		normaliseRows(v, p.hfShape[0])
	}
	return v, nil
}

// WriteFromHF converts the Hugging Face model directory hfDir (config.json,
// model.safetensors or a sharded index, tokenizer.json or a SentencePiece
// tokenizer.model, and optionally tokenizer_config.json) to a GGUF file at
// dst, written atomically. It returns what it wrote, including the
// matrices that could not take the asked-for type (a row length that is
// not a multiple of 32 falls back to F16).
func WriteFromHF(dst, hfDir string, opt WriteOptions) (*WriteResult, error) {
	if !opt.Type.writable() {
		return nil, fmt.Errorf("gguf: cannot write %s weights (want F32, F16, BF16, Q8_0 or Q4_0)", opt.Type)
	}
	cfg, err := loadHFConfig(hfDir)
	if err != nil {
		return nil, fmt.Errorf("gguf: config: %w", err)
	}
	if cfg.Llama3 != nil && cfg.Arch != "llama" {
		return nil, fmt.Errorf("gguf: %s: llama3 rope_scaling on a %s model cannot be expressed for llama.cpp", hfDir, cfg.ModelType)
	}
	notes, err := cfg.checkLlamaCpp()
	if err != nil {
		return nil, fmt.Errorf("gguf: %s: %s (%s) cannot be written for llama.cpp: %w", hfDir, cfg.Architecture, cfg.Arch, err)
	}
	set, err := safetensors.OpenDir(hfDir)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	defer set.Close()
	plan, res, err := planTensors(cfg, set, opt.Type)
	if err != nil {
		return nil, fmt.Errorf("gguf: %s: %w", hfDir, err)
	}
	res.Notes = notes
	kvs, err := modelKVs(cfg, opt, hfDir)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	tkvs, err := tokenizerKVs(hfDir, cfg, opt.ChatTemplate)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	if tkvs, err = cfg.adjustTokenizerKVs(tkvs, hfDir); err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	kvs = append(kvs, tkvs...)
	if err := checkNameQuirks(kvs); err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}

	var tensors []Tensor
	if cfg.Llama3 != nil {
		f := ropeFactors(cfg.Llama3, cfg.RopeTheta, cfg.HeadDim)
		tensors = append(tensors, Tensor{Name: ropeFreqsName, Shape: []uint64{uint64(len(f))}, Type: F32,
			Data: func() ([]byte, error) { return EncodeFloat32(F32, f) }})
	}
	tensors = append(tensors, cfg.familyTensors()...)
	for _, p := range plan {
		ne := make([]uint64, len(p.hfShape))
		for i, d := range p.hfShape {
			ne[len(ne)-1-i] = uint64(d)
		}
		tensors = append(tensors, Tensor{Name: p.gguf, Shape: ne, Type: p.typ, Data: func() ([]byte, error) {
			v, err := p.values(set)
			if err != nil {
				return nil, err
			}
			return EncodeFloat32(p.typ, v)
		}})
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	if err := WriteFile(dst, kvs, tensors); err != nil {
		return nil, err
	}
	st, err := os.Stat(dst)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	res.Arch, res.Tensors, res.Size = cfg.Arch, len(tensors), st.Size()
	return res, nil
}

// planTensors maps, checks and orders the checkpoint's tensors.
func planTensors(cfg *hfConfig, set *safetensors.Set, typ Type) ([]plannedTensor, *WriteResult, error) {
	res := &WriteResult{}
	nt := cfg.names()
	var plan []plannedTensor
	for _, ti := range set.Tensors() {
		if strings.HasSuffix(ti.Name, ".inv_freq") {
			continue // rotary buffers some checkpoints carry
		}
		parts, layer, ok := nt.hfToGGUF(ti.Name)
		if ok && len(parts) == 1 && parts[0].module == "output" && cfg.Tie {
			continue // a stored copy of the tied head
		}
		if !ok {
			return nil, nil, fmt.Errorf("tensor %q has no llama.cpp name for the %s architecture", ti.Name, cfg.Arch)
		}
		switch ti.DType {
		case safetensors.F32, safetensors.F16, safetensors.BF16, safetensors.F64:
		default:
			return nil, nil, fmt.Errorf("tensor %q: dtype %s (want F32, BF16, F16 or F64)", ti.Name, ti.DType)
		}
		if len(ti.Shape) < 1 || len(ti.Shape) > 2 {
			return nil, nil, fmt.Errorf("tensor %q: shape %v, want 1 or 2 dimensions", ti.Name, ti.Shape)
		}
		if layer >= cfg.Layers {
			return nil, nil, fmt.Errorf("tensor %q: layer %d, but num_hidden_layers is %d", ti.Name, layer, cfg.Layers)
		}
		bias := strings.HasSuffix(ti.Name, ".bias")
		mod := parts[0].module
		if (mod == "attn_q_norm" || mod == "attn_k_norm") && cfg.Arch != "qwen3" {
			return nil, nil, fmt.Errorf("tensor %q: q/k norms exist only in qwen3 models, not %s", ti.Name, cfg.ModelType)
		}
		if bias && !biasAllowed(cfg.Arch, mod) {
			return nil, nil, fmt.Errorf("tensor %q: llama.cpp's %s architecture has no bias there", ti.Name, cfg.Arch)
		}
		// The expected shape, and each part's block of rows.
		var want []int
		blocks := make([][2]int, len(parts))
		for i, pt := range parts {
			w := expectedShape(cfg, pt.module, bias)
			if w == nil {
				break
			}
			if want == nil {
				want = slices.Clone(w)
				blocks[i] = [2]int{0, w[0]}
				continue
			}
			blocks[i] = [2]int{want[0], want[0] + w[0]}
			want[0] += w[0]
		}
		if want != nil && !slices.Equal(want, ti.Shape) {
			return nil, nil, fmt.Errorf("tensor %q: shape %v, config.json implies %v", ti.Name, ti.Shape, want)
		}
		for i, pt := range parts {
			p := plannedTensor{hf: ti.Name, gguf: pt.name, rank: pt.rank, hfShape: slices.Clone(ti.Shape), typ: typ}
			if len(parts) > 1 {
				p.rows = blocks[i]
				p.hfShape[0] = blocks[i][1] - blocks[i][0]
			}
			p.permute = cfg.permuted(pt.module)
			p.addOne = normOffset(cfg.Arch) && isNorm(pt.module) && !bias
			p.normalise = normalisedHead(cfg.Arch, pt.module)
			if len(ti.Shape) == 1 {
				p.typ = F32 // norms, biases: as llama.cpp, always F32
			} else if bs := typ.BlockSize(); ti.Shape[1]%bs != 0 {
				p.typ = F16
				res.Fallbacks = append(res.Fallbacks, Fallback{Tensor: pt.name, Type: F16,
					Reason: fmt.Sprintf("row length %d is not a multiple of the %s block size %d", ti.Shape[1], typ, bs)})
			}
			plan = append(plan, p)
		}
	}
	have := map[string]bool{}
	for _, p := range plan {
		have[p.gguf] = true
	}
	required := []string{"token_embd.weight", "output_norm.weight"}
	if !cfg.Tie {
		required = append(required, "output.weight")
	}
	for l := range cfg.Layers {
		for _, ln := range nt.layers {
			for _, m := range ln.gguf {
				if (m == "attn_q_norm" || m == "attn_k_norm") && cfg.Arch != "qwen3" {
					continue
				}
				required = append(required, ggufName(l, m, ".weight"))
			}
		}
	}
	for _, r := range required {
		if !have[r] {
			hf, _, _, _, _, _ := nt.ggufToHF(r)
			return nil, nil, fmt.Errorf("missing tensor %q", hf)
		}
	}
	sort.SliceStable(plan, func(i, j int) bool { return plan[i].rank < plan[j].rank })
	return plan, res, nil
}

// expectedShape is the Hugging Face-order shape config implies for
// llama.cpp module mod (its bias when bias is set), or nil if it does not
// say.
func expectedShape(c *hfConfig, mod string, bias bool) []int {
	H, I, V := c.Hidden, c.Intermediate, c.VocabSize
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	pick := func(w []int) []int {
		if bias {
			return w[:1]
		}
		return w
	}
	switch mod {
	case "token_embd", "output":
		return pick([]int{V, H})
	case "attn_q":
		return pick([]int{q, H})
	case "attn_k", "attn_v":
		return pick([]int{kv, H})
	case "attn_qkv":
		return pick([]int{q + 2*kv, H})
	case "attn_output":
		return pick([]int{H, q})
	case "attn_q_norm", "attn_k_norm":
		return []int{c.HeadDim}
	case "ffn_gate":
		return pick([]int{I, H})
	case "ffn_up":
		if c.Arch == "phi3" || c.Arch == "chatglm" {
			return pick([]int{2 * I, H}) // gate and up, fused
		}
		return pick([]int{I, H})
	case "ffn_down":
		return pick([]int{H, I})
	}
	if isNorm(mod) {
		return []int{H}
	}
	return nil
}

// modelKVs is the general.* and <arch>.* metadata.
func modelKVs(c *hfConfig, opt WriteOptions, hfDir string) ([]KV, error) {
	name := opt.Name
	if name == "" {
		abs, err := filepath.Abs(hfDir)
		if err != nil {
			return nil, err
		}
		name = filepath.Base(abs)
	}
	a := c.Arch
	kvs := []KV{
		{"general.architecture", a},
		{"general.name", name},
		{"general.alignment", uint32(DefaultAlignment)},
		{"general.file_type", fileType(opt.Type)},
		{"general.quantization_version", uint32(2)},
		{a + ".vocab_size", uint32(c.VocabSize)},
		{a + ".context_length", uint32(c.MaxPositions)},
		{a + ".embedding_length", uint32(c.Hidden)},
		{a + ".block_count", uint32(c.Layers)},
		{a + ".feed_forward_length", uint32(c.Intermediate)},
		{a + ".attention.head_count", uint32(c.Heads)},
		{a + ".attention.head_count_kv", uint32(c.KVHeads)},
		{a + ".attention.layer_norm_rms_epsilon", float32(c.RMSNormEps)},
		{a + ".rope.freq_base", float32(c.RopeTheta)},
		{a + ".rope.dimension_count", uint32(c.rotaryDim())},
	}
	if c.HeadDim != c.Hidden/c.Heads || normOffset(a) {
		kvs = append(kvs, KV{a + ".attention.key_length", uint32(c.HeadDim)}, KV{a + ".attention.value_length", uint32(c.HeadDim)})
	}
	kvs = append(kvs, c.familyKVs()...)
	if s := c.Llama3; s != nil {
		// llama.cpp reads the scaling from the rope_freqs tensor; these
		// keys let ReadHF give back the exact rope_scaling.
		kvs = append(kvs,
			KV{"lathe.rope_scaling.type", "llama3"},
			KV{"lathe.rope_scaling.factor", s.Factor},
			KV{"lathe.rope_scaling.low_freq_factor", s.LowFreqFactor},
			KV{"lathe.rope_scaling.high_freq_factor", s.HighFreqFactor},
			KV{"lathe.rope_scaling.original_max_position_embeddings", uint32(s.OriginalMaxPositions)},
		)
	}
	return kvs, nil
}
