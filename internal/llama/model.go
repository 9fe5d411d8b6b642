package llama

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/lathe-ml/lathe/internal/safetensors"
	"github.com/lathe-ml/lathe/internal/tensor"
)

// Param is one named parameter tensor: a view into the model's single
// parameter allocation, and the matching view of the gradient allocation.
type Param struct {
	Name  string
	Shape []int
	W     tensor.Buffer
	Grad  tensor.Buffer
	// NoDecay marks norms and biases (the HF Trainer's no-weight-decay
	// group).
	NoDecay bool
}

// Len returns the number of elements.
func (p *Param) Len() int { return p.W.Len() }

type layerParams struct {
	ln1, q, k, v, o, qb, kb, vb, ob, qn, kn *Param
	ln2, gate, up, down, gateB, upB, downB  *Param
}

// Model is a Llama-family decoder on a Backend: parameters and gradients
// each in one allocation, activations allocated for the largest batch seen
// and reused.
type Model struct {
	Cfg    Config
	be     tensor.Backend
	Params []*Param
	byName map[string]*Param

	paramMem, gradMem tensor.Buffer
	embed, norm, head *Param
	layers            []layerParams
	invFreq           tensor.Buffer

	act       *activations
	recompute bool
	adam      *adamState
	lastFwd   *fwdState
}

// New allocates a model with zeroed parameters for cfg on be.
func New(cfg Config, be tensor.Backend) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Model{Cfg: cfg, be: be, byName: map[string]*Param{}}
	H, D, I := cfg.Hidden, cfg.HeadDim, cfg.Intermediate
	qd, kvd := cfg.Heads*D, cfg.KVHeads*D
	add := func(name string, noDecay bool, shape ...int) *Param {
		p := &Param{Name: name, Shape: shape, NoDecay: noDecay}
		m.Params = append(m.Params, p)
		m.byName[name] = p
		return p
	}
	m.embed = add("model.embed_tokens.weight", false, cfg.VocabSize, H)
	m.layers = make([]layerParams, cfg.Layers)
	for l := range m.layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		L := &m.layers[l]
		L.ln1 = add(p+"input_layernorm.weight", true, H)
		L.q = add(p+"self_attn.q_proj.weight", false, qd, H)
		L.k = add(p+"self_attn.k_proj.weight", false, kvd, H)
		L.v = add(p+"self_attn.v_proj.weight", false, kvd, H)
		if cfg.QKVBias {
			L.qb = add(p+"self_attn.q_proj.bias", true, qd)
			L.kb = add(p+"self_attn.k_proj.bias", true, kvd)
			L.vb = add(p+"self_attn.v_proj.bias", true, kvd)
		}
		L.o = add(p+"self_attn.o_proj.weight", false, H, qd)
		if cfg.OBias {
			L.ob = add(p+"self_attn.o_proj.bias", true, H)
		}
		if cfg.QKNorm {
			L.qn = add(p+"self_attn.q_norm.weight", true, D)
			L.kn = add(p+"self_attn.k_norm.weight", true, D)
		}
		L.ln2 = add(p+"post_attention_layernorm.weight", true, H)
		L.gate = add(p+"mlp.gate_proj.weight", false, I, H)
		L.up = add(p+"mlp.up_proj.weight", false, I, H)
		L.down = add(p+"mlp.down_proj.weight", false, H, I)
		if cfg.MLPBias {
			L.gateB = add(p+"mlp.gate_proj.bias", true, I)
			L.upB = add(p+"mlp.up_proj.bias", true, I)
			L.downB = add(p+"mlp.down_proj.bias", true, H)
		}
	}
	m.norm = add("model.norm.weight", true, H)
	if cfg.TieEmbeddings {
		m.head = m.embed
	} else {
		m.head = add("lm_head.weight", false, cfg.VocabSize, H)
	}
	total := 0
	for _, p := range m.Params {
		total += tensor.Shape(p.Shape).Numel()
	}
	var err error
	if m.paramMem, err = be.Alloc(tensor.F32, total); err != nil {
		return nil, fmt.Errorf("llama: parameters (%d floats): %w", total, err)
	}
	if m.gradMem, err = be.Alloc(tensor.F32, total); err != nil {
		be.Free(m.paramMem)
		return nil, fmt.Errorf("llama: gradients (%d floats): %w", total, err)
	}
	off := 0
	for _, p := range m.Params {
		n := tensor.Shape(p.Shape).Numel()
		p.W, p.Grad = m.paramMem.View(off, n), m.gradMem.View(off, n)
		off += n
	}
	inv, err := cfg.rope().InvFreq()
	if err != nil {
		m.Free()
		return nil, fmt.Errorf("llama: rope: %w", err)
	}
	if m.invFreq, err = be.Alloc(tensor.F32, len(inv)); err == nil {
		err = tensor.UploadF32(be, m.invFreq, inv)
	}
	if err != nil {
		m.Free()
		return nil, fmt.Errorf("llama: rope frequencies: %w", err)
	}
	return m, nil
}

// NumParams returns the number of parameter elements (tied weights once).
func (m *Model) NumParams() int { return m.paramMem.Len() }

// Param returns the named parameter (HF name) or nil.
func (m *Model) Param(name string) *Param { return m.byName[name] }

// ParamBuffer and GradBuffer are the whole parameter and gradient
// allocations (one buffer each, same layout), e.g. for a global norm.
func (m *Model) ParamBuffer() tensor.Buffer { return m.paramMem }

// GradBuffer: see ParamBuffer.
func (m *Model) GradBuffer() tensor.Buffer { return m.gradMem }

// Backend returns the backend the model lives on.
func (m *Model) Backend() tensor.Backend { return m.be }

// Free releases every allocation of the model.
func (m *Model) Free() {
	for _, b := range []tensor.Buffer{m.paramMem, m.gradMem, m.invFreq} {
		if !b.IsNil() {
			m.be.Free(b)
		}
	}
	m.paramMem, m.gradMem, m.invFreq = tensor.Buffer{}, tensor.Buffer{}, tensor.Buffer{}
	m.freeActivations()
	if m.adam != nil {
		m.be.Free(m.adam.m)
		m.be.Free(m.adam.v)
		m.adam = nil
	}
}

// ZeroGrad sets every gradient to zero. Backward accumulates (+=) into
// the gradients, so call it before each optimizer step's first micro-batch.
func (m *Model) ZeroGrad() { m.be.Zero(m.gradMem) }

// InitRandom initialises the parameters as transformers' _init_weights
// does: linear and embedding weights ~ N(0, std), norms 1, biases 0,
// from a PCG stream seeded with seed (deterministic).
func (m *Model) InitRandom(seed uint64, std float64) error {
	rng := rand.New(rand.NewPCG(seed, 0x6c6c616d61))
	for _, p := range m.Params {
		v := make([]float32, p.Len())
		switch {
		case strings.HasSuffix(p.Name, "norm.weight"):
			for i := range v {
				v[i] = 1
			}
		case strings.HasSuffix(p.Name, ".bias"):
		default:
			for i := range v {
				v[i] = float32(rng.NormFloat64() * std)
			}
		}
		if err := tensor.UploadF32(m.be, p.W, v); err != nil {
			return fmt.Errorf("llama: init %s: %w", p.Name, err)
		}
	}
	return nil
}

// Load reads config.json and the safetensors weights (model.safetensors or
// a sharded index; F32, BF16, F16 or F64 on disk, converted to F32) from
// dir. Every parameter must be present; a stored lm_head.weight is ignored
// when the embeddings are tied, as are rotary_emb.inv_freq buffers; any
// other extra tensor is an error.
func Load(dir string, be tensor.Backend) (*Model, error) {
	cfg, err := LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	m, err := New(cfg, be)
	if err != nil {
		return nil, err
	}
	if err := m.LoadWeights(dir); err != nil {
		m.Free()
		return nil, err
	}
	return m, nil
}

// LoadWeights reads the parameters from the safetensors weights in dir.
func (m *Model) LoadWeights(dir string) error {
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("llama: load %s: %w", dir, err)
	}
	defer set.Close()
	for _, ti := range set.Tensors() {
		if m.byName[ti.Name] != nil || strings.HasSuffix(ti.Name, "rotary_emb.inv_freq") ||
			(ti.Name == "lm_head.weight" && m.Cfg.TieEmbeddings) {
			continue
		}
		return fmt.Errorf("llama: load %s: unexpected tensor %q for %s config", dir, ti.Name, m.Cfg.ModelType)
	}
	for _, p := range m.Params {
		ti, ok := set.Tensor(p.Name)
		if !ok {
			return fmt.Errorf("llama: load %s: missing tensor %q", dir, p.Name)
		}
		if !tensor.Shape(ti.Shape).Equal(p.Shape) {
			return fmt.Errorf("llama: load %s: tensor %q has shape %v, config implies %v", dir, p.Name, ti.Shape, p.Shape)
		}
		v, err := set.Float32(p.Name)
		if err != nil {
			return fmt.Errorf("llama: load %s: %w", dir, err)
		}
		if err := tensor.UploadF32(m.be, p.W, v); err != nil {
			return fmt.Errorf("llama: load %s: %s: %w", dir, p.Name, err)
		}
	}
	return nil
}

// Save writes dir/config.json and dir/model.safetensors with the parameters
// in dtype dt (F32, BF16 or F16; rounding to nearest even).
func (m *Model) Save(dir string, dt safetensors.DType) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("llama: save: %w", err)
	}
	torchDType := map[safetensors.DType]string{safetensors.F32: "float32", safetensors.BF16: "bfloat16", safetensors.F16: "float16"}[dt]
	if torchDType == "" {
		return fmt.Errorf("llama: save: dtype %s (want F32, BF16 or F16)", dt)
	}
	cj, err := m.Cfg.JSON(torchDType)
	if err != nil {
		return fmt.Errorf("llama: save config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), append(cj, '\n'), 0o644); err != nil {
		return fmt.Errorf("llama: save config: %w", err)
	}
	w, err := safetensors.Create(filepath.Join(dir, safetensors.SingleFileName))
	if err != nil {
		return fmt.Errorf("llama: save weights: %w", err)
	}
	w.SetMetadata(map[string]string{"format": "pt"})
	for _, p := range m.Params {
		v := make([]float32, p.Len())
		if err := tensor.DownloadF32(m.be, v, p.W); err != nil {
			w.Abort()
			return fmt.Errorf("llama: save %s: %w", p.Name, err)
		}
		if err := w.AddFloat32(p.Name, dt, p.Shape, v); err != nil {
			w.Abort()
			return fmt.Errorf("llama: save %s: %w", p.Name, err)
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("llama: save weights: %w", err)
	}
	return nil
}

// AdamWConfig is one optimizer step's hyper-parameters.
type AdamWConfig struct {
	LR, Beta1, Beta2, Eps, WeightDecay float32
	// NoDecayNormsBias exempts norms and biases from weight decay, as the
	// HF Trainer does.
	NoDecayNormsBias bool
}

type adamState struct {
	m, v tensor.Buffer
	step int
}

// AdamW applies one AdamW step to every parameter from its gradient; the
// moment buffers are allocated on the first call.
func (m *Model) AdamW(c AdamWConfig) error {
	if m.adam == nil {
		n := m.paramMem.Len()
		mb, err := m.be.Alloc(tensor.F32, n)
		if err != nil {
			return fmt.Errorf("llama: adamw moments: %w", err)
		}
		vb, err := m.be.Alloc(tensor.F32, n)
		if err != nil {
			m.be.Free(mb)
			return fmt.Errorf("llama: adamw moments: %w", err)
		}
		m.adam = &adamState{m: mb, v: vb}
	}
	m.adam.step++
	if c.NoDecayNormsBias {
		off := 0
		for _, p := range m.Params {
			h := tensor.AdamW{LR: c.LR, Beta1: c.Beta1, Beta2: c.Beta2, Eps: c.Eps, WeightDecay: c.WeightDecay, Step: m.adam.step}
			if p.NoDecay {
				h.WeightDecay = 0
			}
			n := p.Len()
			m.be.AdamW(p.W, p.Grad, m.adam.m.View(off, n), m.adam.v.View(off, n), n, h)
			off += n
		}
	} else {
		m.be.AdamW(m.paramMem, m.gradMem, m.adam.m, m.adam.v, m.paramMem.Len(),
			tensor.AdamW{LR: c.LR, Beta1: c.Beta1, Beta2: c.Beta2, Eps: c.Eps, WeightDecay: c.WeightDecay, Step: m.adam.step})
	}
	return m.be.Sync()
}
