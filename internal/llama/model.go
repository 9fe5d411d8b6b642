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

// Param is one named parameter tensor: a view into the model's parameter
// allocation (or, for weights held in 4 bits, an NF4 tensor) and, for a
// trainable parameter, the matching view of the gradient allocation.
type Param struct {
	Name  string
	Shape []int
	// W is the F32 weight; the zero Buffer when Q holds the weight, or H
	// alone (a frozen weight under Options.BF16).
	W tensor.Buffer
	// Grad is the gradient; the zero Buffer for a frozen parameter.
	Grad tensor.Buffer
	// Q is the NF4 weight of a frozen linear layer under QLoRA, else nil.
	Q *tensor.NF4Tensor
	// H is the bfloat16 working copy of a linear weight under
	// Options.BF16 (the products read it; W, when the weight trains, is
	// its float32 master), else the zero Buffer.
	H tensor.Buffer
	// NoDecay marks norms and biases (the HF Trainer's no-weight-decay
	// group).
	NoDecay bool
}

// Len returns the number of elements.
func (p *Param) Len() int { return tensor.Shape(p.Shape).Numel() }

// Trainable reports whether the parameter has a gradient.
func (p *Param) Trainable() bool { return !p.Grad.IsNil() }

type layerParams struct {
	ln1, q, k, v, o, qb, kb, vb, ob, qn, kn *Param
	ln2, gate, up, down, gateB, upB, downB  *Param
	aon, mon                                *Param // Gemma 2's output norms
	lin                                     [numLinear]linear
}

// Model is a Llama-family decoder on a Backend: parameters and gradients
// each in one allocation, activations allocated for the largest batch seen
// and reused.
type Model struct {
	Cfg    Config
	be     tensor.Backend
	Params []*Param
	byName map[string]*Param
	opts   Options

	paramMem, gradMem tensor.Buffer
	halfMem           tensor.Buffer // bfloat16 working copies (Options.BF16)
	halfHost          []uint16      // setHalf's host buffer for frozen bfloat16 weights
	embed, norm, head *Param
	vhead, vheadB     *Param
	layers            []layerParams
	invFreq           tensor.Buffer
	alibi             tensor.Buffer // ALiBi slopes [Heads] (Config.ALiBi), else the zero Buffer
	trainable         []*Param
	// stopLayer is the lowest layer Backward must reach: below it nothing
	// is trainable and the input gradient is not needed.
	stopLayer   int
	scratch     tensor.Buffer // frozen-norm dw sink, NF4 tile
	normSink    tensor.Buffer
	nf4Tile     tensor.Buffer
	adaptersOff bool
	fam         familyBuffers
	// lead is Cfg.fusedLead(): the linear whose LoRA A and dropout mask
	// each linear shares.
	lead [numLinear]int

	act       *activations
	recompute bool
	adam      *adamState
	lastFwd   *fwdState
}

// New allocates a model with zeroed parameters for cfg on be, every
// parameter trainable.
func New(cfg Config, be tensor.Backend) (*Model, error) { return NewWith(cfg, be, Options{}) }

// NewWith allocates a model for cfg on be with the parameter-efficient
// options of o (frozen parameters, NF4 weights, LoRA adapters, a value
// head). Parameters are zero (NF4 weights hold zeros) until loaded or
// initialised.
func NewWith(cfg Config, be tensor.Backend, o Options) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := o.validate(cfg); err != nil {
		return nil, err
	}
	m := &Model{Cfg: cfg, be: be, byName: map[string]*Param{}, opts: o, lead: cfg.fusedLead()}
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
		if cfg.PostNorms {
			L.aon = add(p+"attn_output_norm.weight", true, H)
		}
		L.ln2 = add(p+"post_attention_layernorm.weight", true, H)
		L.gate = add(p+"mlp.gate_proj.weight", false, I, H)
		L.up = add(p+"mlp.up_proj.weight", false, I, H)
		L.down = add(p+"mlp.down_proj.weight", false, H, I)
		if cfg.PostNorms {
			L.mon = add(p+"mlp_output_norm.weight", true, H)
		}
		if cfg.MLPBias {
			L.gateB = add(p+"mlp.gate_proj.bias", true, I)
			L.upB = add(p+"mlp.up_proj.bias", true, I)
			L.downB = add(p+"mlp.down_proj.bias", true, H)
		}
		L.lin = [numLinear]linear{
			{w: L.q, b: L.qb, out: qd, in: H}, {w: L.k, b: L.kb, out: kvd, in: H},
			{w: L.v, b: L.vb, out: kvd, in: H}, {w: L.o, b: L.ob, out: H, in: qd},
			{w: L.gate, b: L.gateB, out: I, in: H}, {w: L.up, b: L.upB, out: I, in: H},
			{w: L.down, b: L.downB, out: H, in: I},
		}
		for i := range L.lin {
			L.lin[i].module = p + linearKinds[i].path
		}
	}
	m.norm = add("model.norm.weight", true, H)
	if cfg.TieEmbeddings {
		m.head = m.embed
	} else {
		m.head = add("lm_head.weight", false, cfg.VocabSize, H)
	}
	base := len(m.Params)
	if err := m.addAdapters(add); err != nil {
		return nil, err
	}
	if o.ValueHead {
		m.vhead = add(ValueHeadWeight, false, 1, H)
		m.vheadB = add(ValueHeadBias, true, 1)
	}
	// Which parameters train, which are held in NF4, and which (under BF16)
	// have a bfloat16 working copy.
	half := map[*Param]bool{}
	if o.BF16 {
		for l := range m.layers {
			for i := range m.layers[l].lin {
				half[m.layers[l].lin[i].w] = true
			}
		}
	}
	var trainable []*Param
	total, gtotal, htotal := 0, 0, 0
	for i, p := range m.Params {
		if i < base && o.NF4 != nil && o.NF4(p.Name) {
			q, err := tensor.AllocNF4(be, p.Len())
			if err != nil {
				m.Free()
				return nil, fmt.Errorf("llama: nf4 %s: %w", p.Name, err)
			}
			p.Q = &q
			continue
		}
		trains := i >= base || o.Trainable == nil || o.Trainable(p.Name)
		if half[p] {
			htotal += p.Len()
		}
		if trains {
			trainable = append(trainable, p)
			gtotal += p.Len()
		}
		if trains || !half[p] {
			total += p.Len()
		}
	}
	var err error
	if m.paramMem, err = be.Alloc(tensor.F32, total); err != nil {
		m.Free()
		return nil, fmt.Errorf("llama: parameters (%d floats): %w", total, err)
	}
	if htotal > 0 {
		if m.halfMem, err = be.Alloc(tensor.BF16, htotal); err != nil {
			m.Free()
			return nil, fmt.Errorf("llama: bfloat16 weights (%d values): %w", htotal, err)
		}
	}
	if gtotal > 0 {
		if m.gradMem, err = be.Alloc(tensor.F32, gtotal); err != nil {
			m.Free()
			return nil, fmt.Errorf("llama: gradients (%d floats): %w", gtotal, err)
		}
	}
	off := 0
	for _, p := range trainable {
		p.Grad = m.gradMem.View(off, p.Len())
		off += p.Len()
	}
	off, hoff := 0, 0
	for _, p := range m.Params {
		if half[p] && p.Q == nil {
			p.H = m.halfMem.View(hoff, p.Len())
			hoff += p.Len()
			if !p.Trainable() {
				continue
			}
		}
		if p.Q == nil {
			p.W = m.paramMem.View(off, p.Len())
			off += p.Len()
		}
	}
	m.trainable = trainable
	m.stopLayer = m.lowestTrainableLayer()
	if err := m.allocScratch(); err != nil {
		m.Free()
		return nil, err
	}
	if err := m.allocFamily(); err != nil {
		m.Free()
		return nil, err
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
	if cfg.ALiBi {
		slopes := tensor.ALiBiSlopes(cfg.Heads)
		if m.alibi, err = be.Alloc(tensor.F32, len(slopes)); err == nil {
			err = tensor.UploadF32(be, m.alibi, slopes)
		}
		if err != nil {
			m.Free()
			return nil, fmt.Errorf("llama: alibi slopes: %w", err)
		}
	}
	return m, nil
}

// NumParams returns the number of parameter elements (tied weights once),
// NF4 weights included.
func (m *Model) NumParams() int {
	n := 0
	for _, p := range m.Params {
		n += p.Len()
	}
	return n
}

// Trainable returns the parameters that have gradients, in the order of
// Params (their gradients are laid out in that order in GradBuffer).
func (m *Model) Trainable() []*Param { return m.trainable }

// NumTrainable returns the number of trainable parameter elements.
func (m *Model) NumTrainable() int { return m.gradMem.Len() }

// Param returns the named parameter (HF name) or nil.
func (m *Model) Param(name string) *Param { return m.byName[name] }

// ParamBuffer is the F32 parameter allocation (every parameter not held
// in NF4, in the order of Params).
func (m *Model) ParamBuffer() tensor.Buffer { return m.paramMem }

// GradBuffer is the gradient allocation: the trainable parameters'
// gradients in the order of Trainable (the zero Buffer when none train).
func (m *Model) GradBuffer() tensor.Buffer { return m.gradMem }

// Backend returns the backend the model lives on.
func (m *Model) Backend() tensor.Backend { return m.be }

// Free releases every allocation of the model.
func (m *Model) Free() {
	for _, b := range []tensor.Buffer{m.paramMem, m.gradMem, m.halfMem, m.invFreq, m.scratch, m.fam.mem, m.alibi} {
		if !b.IsNil() {
			m.be.Free(b)
		}
	}
	m.paramMem, m.gradMem, m.halfMem, m.invFreq, m.scratch = tensor.Buffer{}, tensor.Buffer{}, tensor.Buffer{}, tensor.Buffer{}, tensor.Buffer{}
	m.fam, m.alibi, m.halfHost = familyBuffers{}, tensor.Buffer{}, nil
	for _, p := range m.Params {
		if p.Q != nil {
			p.Q.Free(m.be)
			p.Q = nil
		}
	}
	m.freeActivations()
	if m.adam != nil {
		m.be.Free(m.adam.m)
		m.be.Free(m.adam.v)
		m.adam = nil
	}
}

// ZeroGrad sets every gradient to zero. Backward accumulates (+=) into
// the gradients, so call it before each optimizer step's first micro-batch.
func (m *Model) ZeroGrad() {
	if !m.gradMem.IsNil() {
		m.be.Zero(m.gradMem)
	}
}

// InitRandom initialises the parameters as transformers' _init_weights
// does: linear and embedding weights ~ N(0, std), norms 1, biases 0,
// from a PCG stream seeded with seed (deterministic).
func (m *Model) InitRandom(seed uint64, std float64) error {
	rng := rand.New(rand.NewPCG(seed, 0x6c6c616d61))
	for _, p := range m.Params {
		if m.isAdapter(p) {
			continue // initialised by initAdapters, as PEFT does
		}
		v := make([]float32, p.Len())
		switch {
		case strings.HasSuffix(p.Name, "norm.weight"):
			if m.Cfg.NormOffset {
				break // the norm scales by 1 + w: w starts at 0, as Gemma's does
			}
			for i := range v {
				v[i] = 1
			}
		case strings.HasSuffix(p.Name, ".bias"):
		default:
			for i := range v {
				v[i] = float32(rng.NormFloat64() * std)
			}
		}
		if err := m.setParam(p, v); err != nil {
			return fmt.Errorf("llama: init %s: %w", p.Name, err)
		}
	}
	return m.initAdapters()
}

// Load reads config.json and the safetensors weights (model.safetensors or
// a sharded index; F32, BF16, F16 or F64 on disk, converted to F32) from
// dir. Every parameter must be present; a stored lm_head.weight is ignored
// when the embeddings are tied, as are rotary_emb.inv_freq buffers; any
// other extra tensor is an error.
func Load(dir string, be tensor.Backend) (*Model, error) { return LoadWith(dir, be, Options{}) }

// LoadWith is Load with NewWith's options: the base weights come from dir
// (quantised to NF4 as they are read where o asks), adapters start as
// PEFT initialises them.
func LoadWith(dir string, be tensor.Backend, o Options) (*Model, error) {
	cfg, err := LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	m, err := NewWith(cfg, be, o)
	if err != nil {
		return nil, err
	}
	if err := m.LoadWeights(dir); err != nil {
		m.Free()
		return nil, err
	}
	if err := m.initAdapters(); err != nil {
		m.Free()
		return nil, err
	}
	return m, nil
}

// LoadWeights reads the parameters from the safetensors weights in dir,
// named and laid out as the model's family stores them (see fileLayout).
func (m *Model) LoadWeights(dir string) error {
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("llama: load %s: %w", dir, err)
	}
	defer set.Close()
	layout := m.fileLayout()
	known := map[string]bool{}
	for _, ft := range layout {
		known[ft.name] = true
	}
	headName, _ := m.FileName("lm_head.weight")
	for _, ti := range set.Tensors() {
		if known[ti.Name] || strings.HasSuffix(ti.Name, "inv_freq") || (ti.Name == headName && m.Cfg.TieEmbeddings) {
			continue
		}
		return fmt.Errorf("llama: load %s: unexpected tensor %q for %s config", dir, ti.Name, m.Cfg.ModelType)
	}
	for _, ft := range layout {
		ti, ok := set.Tensor(ft.name)
		if !ok {
			return fmt.Errorf("llama: load %s: missing tensor %q", dir, ft.name)
		}
		if want := ft.shape(); !tensor.Shape(ti.Shape).Equal(want) {
			return fmt.Errorf("llama: load %s: tensor %q has shape %v, config implies %v", dir, ft.name, ti.Shape, want)
		}
		v, err := set.Float32(ft.name)
		if err != nil {
			return fmt.Errorf("llama: load %s: %w", dir, err)
		}
		parts, err := m.splitFile(ft, v)
		if err != nil {
			return fmt.Errorf("llama: load %s: %w", dir, err)
		}
		for i, p := range ft.parts {
			if err := m.setParam(p, parts[i]); err != nil {
				return fmt.Errorf("llama: load %s: %s: %w", dir, ft.name, err)
			}
		}
	}
	return nil
}

// Save writes dir/config.json and dir/model.safetensors with the base
// parameters in dtype dt (F32, BF16 or F16; rounding to nearest even); NF4
// weights are written dequantised, adapters and the value head are not
// written (see Merged, SaveTensors).
func (m *Model) Save(dir string, dt safetensors.DType) error {
	return m.save(dir, dt, m.paramValues)
}

func (m *Model) save(dir string, dt safetensors.DType, values func(*Param) ([]float32, error)) error {
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
	for _, ft := range m.fileLayout() {
		parts := make([][]float32, len(ft.parts))
		for i, p := range ft.parts {
			v, err := values(p)
			if err != nil {
				w.Abort()
				return fmt.Errorf("llama: save %s: %w", p.Name, err)
			}
			parts[i] = v
		}
		if err := w.AddFloat32(ft.name, dt, ft.shape(), m.joinFile(ft, parts)); err != nil {
			w.Abort()
			return fmt.Errorf("llama: save %s: %w", ft.name, err)
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
		n := m.NumTrainable()
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
		for _, p := range m.trainable {
			h := tensor.AdamW{LR: c.LR, Beta1: c.Beta1, Beta2: c.Beta2, Eps: c.Eps, WeightDecay: c.WeightDecay, Step: m.adam.step}
			if p.NoDecay {
				h.WeightDecay = 0
			}
			n := p.Len()
			m.be.AdamW(p.W, p.Grad, m.adam.m.View(off, n), m.adam.v.View(off, n), n, h)
			off += n
		}
	} else {
		off := 0
		for _, p := range m.trainable {
			n := p.Len()
			m.be.AdamW(p.W, p.Grad, m.adam.m.View(off, n), m.adam.v.View(off, n), n,
				tensor.AdamW{LR: c.LR, Beta1: c.Beta1, Beta2: c.Beta2, Eps: c.Eps, WeightDecay: c.WeightDecay, Step: m.adam.step})
			off += n
		}
	}
	m.Updated()
	return m.be.Sync()
}
