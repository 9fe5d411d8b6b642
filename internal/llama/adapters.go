package llama

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/lathe-ml/lathe/internal/lora"
	"github.com/lathe-ml/lathe/internal/safetensors"
	"github.com/lathe-ml/lathe/internal/tensor"
)

// Options selects what of a model trains and how it is held: the
// parameter-efficient methods (freeze, LoRA, QLoRA) and a value head.
type Options struct {
	// Trainable reports whether a base parameter (HF name) gets a
	// gradient; nil means every base parameter trains. Adapters and the
	// value head always train.
	Trainable func(name string) bool
	// NF4 reports which base weights are held as NF4 4-bit values
	// (QLoRA); they must be linear weights and frozen.
	NF4 func(name string) bool
	// LoRA adds low-rank adapters; nil for none.
	LoRA *LoRAOptions
	// ValueHead adds a scalar head on the final hidden state
	// (v_head.summary.weight [1,H], v_head.summary.bias [1]) for reward
	// models and PPO values.
	ValueHead bool
	// BF16 holds the linear layers' base weights (q, k, v, o, gate, up,
	// down and the families' fused projections) as bfloat16 working
	// copies that the matrix products read: mixed precision. A trainable
	// one keeps its float32 master weight, gradient and optimizer state
	// and its working copy is rounded from the master after every update
	// (Updated); a frozen one (LoRA's base) is held only in bfloat16,
	// half the memory. Embeddings, norms, biases, the LM head, adapters
	// and the value head stay float32, as does every reduction. NF4
	// weights are not affected.
	BF16 bool
	// BF16Activations holds the activations each layer keeps for its
	// backward pass as bfloat16, rounded where they are computed: the two
	// norm outputs, q/k/v (after RoPE; with q/k norms their outputs, q and
	// k themselves staying float32 for the norms' backward), the
	// attention output, gate/up and the gated MLP output: half their
	// memory, and products of bfloat16 operands on a GPU. A projection
	// sums its product, bias and adapter in float32 and rounds once. The
	// residual stream, the norm and softmax statistics, the final norm and
	// every gradient stay float32. compute_type = "bf16" sets it beside
	// BF16.
	BF16Activations bool
}

// LoRAOptions describes the adapters: on each listed linear module,
// y = x·Wᵀ + Scale·(drop(x)·Aᵀ)·Bᵀ with A [Rank,in] and B [out,Rank].
type LoRAOptions struct {
	// Modules are module paths such as "model.layers.0.self_attn.q_proj".
	Modules []string
	Rank    int
	Scale   float32
	// Dropout is the probability of zeroing an input element of the
	// adapter path in training batches (Batch.DropoutSeed != 0).
	Dropout float32
	// Seed seeds A's initialisation (PEFT's kaiming-uniform; B is zero so
	// the adapted model starts equal to the base).
	Seed uint64
}

// Value-head parameter names (TRL / LLaMA Factory's value_head.safetensors).
const (
	ValueHeadWeight = "v_head.summary.weight"
	ValueHeadBias   = "v_head.summary.bias"
)

// LoRA parameter name suffixes: module + ".lora_A.weight" etc.
const (
	LoRAASuffix = ".lora_A.weight"
	LoRABSuffix = ".lora_B.weight"
)

// The linear modules of a decoder layer, in the order of layerParams.lin.
const (
	linQ = iota
	linK
	linV
	linO
	linGate
	linUp
	linDown
	numLinear
)

var linearKinds = [numLinear]struct{ kind, path string }{
	{"q_proj", "self_attn.q_proj"}, {"k_proj", "self_attn.k_proj"}, {"v_proj", "self_attn.v_proj"},
	{"o_proj", "self_attn.o_proj"}, {"gate_proj", "mlp.gate_proj"}, {"up_proj", "mlp.up_proj"},
	{"down_proj", "mlp.down_proj"},
}

// LinearKinds returns the linear module kinds of a decoder layer
// (q_proj ... down_proj), the names LoRA targets use.
func LinearKinds() []string {
	out := make([]string, numLinear)
	for i, k := range linearKinds {
		out[i] = k.kind
	}
	return out
}

// LinearModules returns the module paths of the given kinds in every
// layer of a model with the given number of layers, layer by layer.
func LinearModules(kinds []string, layers int) []string {
	var out []string
	for l := range layers {
		for _, k := range linearKinds {
			if slices.Contains(kinds, k.kind) {
				out = append(out, fmt.Sprintf("model.layers.%d.%s", l, k.path))
			}
		}
	}
	return out
}

// linear is one projection of a layer: the base weight (F32 or NF4), an
// optional bias and an optional LoRA pair.
type linear struct {
	module  string
	w, b    *Param
	a, bl   *Param // LoRA A [r,in], B [out,r]
	out, in int
}

func (o *Options) validate(cfg Config) error {
	if o.LoRA != nil {
		l := o.LoRA
		if l.Rank < 1 {
			return fmt.Errorf("llama: lora rank %d: want >= 1", l.Rank)
		}
		if l.Dropout < 0 || l.Dropout >= 1 {
			return fmt.Errorf("llama: lora dropout %v: want [0,1)", l.Dropout)
		}
		if len(l.Modules) == 0 {
			return fmt.Errorf("llama: lora has no target modules")
		}
	}
	return nil
}

// addAdapters creates the LoRA parameters for the listed modules.
func (m *Model) addAdapters(add func(string, bool, ...int) *Param) error {
	lo := m.opts.LoRA
	if lo == nil {
		return nil
	}
	want, found := map[string]bool{}, map[string]bool{}
	for _, mod := range lo.Modules {
		want[mod] = true
	}
	lead := m.Cfg.fusedLead()
	for l := range m.layers {
		lin := &m.layers[l].lin
		for i := range lin {
			L := &lin[i]
			if want[L.module] != want[lin[lead[i]].module] {
				return fmt.Errorf("llama: lora target %s: the %s checkpoint fuses it with %s (module %s); adapt the whole module",
					L.module, m.Cfg.ModelType, lin[lead[i]].module, m.Cfg.linearFileModule(i))
			}
			if !want[L.module] {
				continue
			}
			found[L.module] = true
			if lead[i] == i {
				L.a = add(L.module+LoRAASuffix, false, lo.Rank, L.in)
			} else {
				L.a = lin[lead[i]].a // a fused module's adapter has one A
			}
			L.bl = add(L.module+LoRABSuffix, false, L.out, lo.Rank)
		}
	}
	if len(found) < len(want) {
		var left []string
		for k := range want {
			if !found[k] {
				left = append(left, k)
			}
		}
		slices.Sort(left)
		return fmt.Errorf("llama: lora target %q is not a linear module of this %d-layer model", left[0], m.Cfg.Layers)
	}
	return nil
}

// isAdapter reports whether p is a LoRA or value-head parameter (not part
// of the base model's files).
func (m *Model) isAdapter(p *Param) bool {
	return strings.HasSuffix(p.Name, LoRAASuffix) || strings.HasSuffix(p.Name, LoRABSuffix) ||
		p.Name == ValueHeadWeight || p.Name == ValueHeadBias
}

// initAdapters initialises the adapters as PEFT does (A ~ kaiming-uniform
// with a = √5, i.e. U(−1/√in, 1/√in); B = 0) and the value head as TRL's
// nn.Linear default (U(−1/√H, 1/√H), bias U(−1/√H, 1/√H)).
func (m *Model) initAdapters() error {
	seed := uint64(0)
	if m.opts.LoRA != nil {
		seed = m.opts.LoRA.Seed
	}
	rng := rand.New(rand.NewPCG(seed, 0x6c6f7261)) // "lora"
	uniform := func(p *Param, bound float64) error {
		v := make([]float32, p.Len())
		for i := range v {
			v[i] = float32((2*rng.Float64() - 1) * bound)
		}
		return m.setParam(p, v)
	}
	lead := m.Cfg.fusedLead()
	for l := range m.layers {
		for i := range m.layers[l].lin {
			L := &m.layers[l].lin[i]
			if L.a == nil {
				continue
			}
			if lead[i] == i { // a fused module's shared A once
				if err := uniform(L.a, 1/math.Sqrt(float64(L.in))); err != nil {
					return fmt.Errorf("llama: init %s: %w", L.a.Name, err)
				}
			}
			m.be.Zero(L.bl.W)
		}
	}
	if m.vhead != nil {
		b := 1 / math.Sqrt(float64(m.Cfg.Hidden))
		if err := uniform(m.vhead, b); err != nil {
			return err
		}
		if err := uniform(m.vheadB, b); err != nil {
			return err
		}
	}
	return nil
}

// setParam uploads v as p's value, quantising NF4 weights through a
// temporary F32 buffer.
func (m *Model) setParam(p *Param, v []float32) error {
	if !p.H.IsNil() {
		return m.setHalf(p, v)
	}
	if p.Q == nil {
		return tensor.UploadF32(m.be, p.W, v)
	}
	tmp, err := m.be.Alloc(tensor.F32, len(v))
	if err != nil {
		return err
	}
	defer m.be.Free(tmp)
	if err := tensor.UploadF32(m.be, tmp, v); err != nil {
		return err
	}
	m.be.QuantizeNF4(*p.Q, tmp)
	return m.be.Sync()
}

// setHalf sets a weight held in bfloat16: the master (when it trains)
// takes v exactly, the working copy v rounded.
func (m *Model) setHalf(p *Param, v []float32) error {
	if p.W.IsNil() {
		// Rounded on the host, through one buffer reused for every weight
		// (loading leaves no float32 copies behind).
		if cap(m.halfHost) < len(v) {
			m.halfHost = make([]uint16, len(v))
		}
		h := m.halfHost[:len(v)]
		for i, x := range v {
			h[i] = tensor.BF16FromF32(x)
		}
		return tensor.UploadU16(m.be, p.H, h)
	}
	if err := tensor.UploadF32(m.be, p.W, v); err != nil {
		return err
	}
	m.be.Convert(p.H, p.W, len(v))
	return m.be.Sync()
}

// Updated rounds the bfloat16 working copy of every trainable weight from
// its float32 master (Options.BF16): an optimizer that changes the masters
// calls it after each step. Without BF16 it does nothing.
func (m *Model) Updated() {
	for _, p := range m.trainable {
		if !p.H.IsNil() {
			m.be.Convert(p.H, p.W, p.Len())
		}
	}
}

// paramValues downloads p's value (dequantised for NF4 weights, widened for
// weights held only in bfloat16, the master for the others).
func (m *Model) paramValues(p *Param) ([]float32, error) {
	v := make([]float32, p.Len())
	if p.W.IsNil() && !p.H.IsNil() {
		tmp, err := m.be.Alloc(tensor.F32, len(v))
		if err != nil {
			return nil, err
		}
		defer m.be.Free(tmp)
		m.be.Convert(tmp, p.H, len(v))
		return v, tensor.DownloadF32(m.be, v, tmp)
	}
	if p.Q == nil {
		return v, tensor.DownloadF32(m.be, v, p.W)
	}
	tmp, err := m.be.Alloc(tensor.F32, len(v))
	if err != nil {
		return nil, err
	}
	defer m.be.Free(tmp)
	m.be.DequantNF4(tmp, *p.Q, 0, p.Q.N)
	return v, tensor.DownloadF32(m.be, v, tmp)
}

// ParamValues returns the named parameter's values (NF4 weights
// dequantised).
func (m *Model) ParamValues(name string) ([]float32, error) {
	p := m.byName[name]
	if p == nil {
		return nil, fmt.Errorf("llama: no parameter %q", name)
	}
	return m.paramValues(p)
}

// SetParamValues sets the named parameter (quantising NF4 weights).
func (m *Model) SetParamValues(name string, v []float32) error {
	p := m.byName[name]
	if p == nil {
		return fmt.Errorf("llama: no parameter %q", name)
	}
	if len(v) != p.Len() {
		return fmt.Errorf("llama: %s has %d values, got %d", name, p.Len(), len(v))
	}
	return m.setParam(p, v)
}

// lowestTrainableLayer is the lowest layer holding a trainable parameter
// (0 when the embedding trains, Layers when no layer does).
func (m *Model) lowestTrainableLayer() int {
	if m.embed.Trainable() {
		return 0
	}
	for l := range m.layers {
		for _, p := range m.Params {
			if p.Trainable() && strings.HasPrefix(p.Name, fmt.Sprintf("model.layers.%d.", l)) {
				return l
			}
		}
	}
	return m.Cfg.Layers
}

// nf4TileElems bounds the F32 tile an NF4 matmul dequantises at a time.
const nf4TileElems = 1 << 15

// nf4TileRows is the number of weight rows per dequantised tile: about
// nf4TileElems values, rows·in a multiple of the NF4 block.
func nf4TileRows(out, in int) int {
	g := tensor.NF4BlockSize / gcd(in, tensor.NF4BlockSize)
	tr := max(nf4TileElems/in/g*g, g)
	return min(tr, out)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// allocScratch allocates the sink for frozen norms' weight gradients and
// the NF4 dequantisation tile.
func (m *Model) allocScratch() error {
	c := m.Cfg
	sink := max(c.Hidden, c.HeadDim)
	tile := 0
	for l := range m.layers {
		for _, L := range m.layers[l].lin {
			if L.w.Q != nil {
				g := tensor.NF4BlockSize / gcd(L.in, tensor.NF4BlockSize)
				if L.out*L.in%tensor.NF4BlockSize != 0 || (L.out > nf4TileRows(L.out, L.in) && nf4TileRows(L.out, L.in)%g != 0) {
					return fmt.Errorf("llama: %s [%d,%d] cannot be held in NF4 (size not a multiple of %d)", L.w.Name, L.out, L.in, tensor.NF4BlockSize)
				}
				tile = max(tile, nf4TileRows(L.out, L.in)*L.in)
			}
		}
	}
	var err error
	if m.scratch, err = m.be.Alloc(tensor.F32, sink+tile); err != nil {
		return fmt.Errorf("llama: scratch: %w", err)
	}
	m.normSink = m.scratch.View(0, sink)
	if tile > 0 {
		m.nf4Tile = m.scratch.View(sink, tile)
	}
	return nil
}

// SetAdaptersEnabled turns the LoRA adapters on (the default) or off; off,
// the model computes the base model (e.g. a DPO or PPO reference policy
// without a second copy of the weights).
func (m *Model) SetAdaptersEnabled(on bool) { m.adaptersOff = !on }

// HasAdapters reports whether the model carries LoRA adapters.
func (m *Model) HasAdapters() bool { return m.opts.LoRA != nil }

// NF4Bytes returns the bytes held by NF4 weights (codes, scales) and the
// number of values they hold.
func (m *Model) NF4Bytes() (bytes, values int) {
	for _, p := range m.Params {
		if q := p.Q; q != nil {
			for _, b := range []tensor.Buffer{q.Codes, q.Absmax, q.Scale2, q.Offset} {
				bytes += b.Bytes()
			}
			values += q.N
		}
	}
	return bytes, values
}

// TrainableTensors downloads the trainable parameters (name → values).
func (m *Model) TrainableTensors() (map[string][]float32, error) {
	out := make(map[string][]float32, len(m.trainable))
	for _, p := range m.trainable {
		v, err := m.paramValues(p)
		if err != nil {
			return nil, fmt.Errorf("llama: %s: %w", p.Name, err)
		}
		out[p.Name] = v
	}
	return out, nil
}

// SaveTrainable writes the trainable parameters to a safetensors file
// (F32), e.g. a checkpoint's weights.
func (m *Model) SaveTrainable(path string) error {
	w, err := safetensors.Create(path)
	if err != nil {
		return fmt.Errorf("llama: save trainable: %w", err)
	}
	for _, p := range m.trainable {
		v, err := m.paramValues(p)
		if err == nil {
			err = w.AddFloat32(p.Name, safetensors.F32, p.Shape, v)
		}
		if err != nil {
			w.Abort()
			return fmt.Errorf("llama: save trainable %s: %w", p.Name, err)
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("llama: save trainable: %w", err)
	}
	return nil
}

// LoadTensors sets the named parameters from a safetensors file; every
// tensor in the file must name a parameter of the same shape. With
// requireTrainable, the file must hold exactly the trainable parameters
// (a checkpoint of this model).
func (m *Model) LoadTensors(path string, requireTrainable bool) error {
	f, err := safetensors.Open(path)
	if err != nil {
		return fmt.Errorf("llama: load %s: %w", path, err)
	}
	defer f.Close()
	seen := map[string]bool{}
	for _, ti := range f.Tensors() {
		p := m.byName[ti.Name]
		if p == nil {
			return fmt.Errorf("llama: load %s: tensor %q is not a parameter of this model", path, ti.Name)
		}
		if !tensor.Shape(ti.Shape).Equal(p.Shape) {
			return fmt.Errorf("llama: load %s: tensor %q has shape %v, the model %v", path, ti.Name, ti.Shape, p.Shape)
		}
		v, err := f.Float32(ti.Name)
		if err == nil {
			err = m.setParam(p, v)
		}
		if err != nil {
			return fmt.Errorf("llama: load %s: %s: %w", path, ti.Name, err)
		}
		seen[ti.Name] = true
	}
	if requireTrainable {
		for _, p := range m.trainable {
			if !seen[p.Name] {
				return fmt.Errorf("llama: load %s: missing trainable parameter %q", path, p.Name)
			}
		}
		if len(seen) != len(m.trainable) {
			return fmt.Errorf("llama: load %s: holds %d tensors, the model trains %d", path, len(seen), len(m.trainable))
		}
	}
	return nil
}

// mergedValues returns linear L's effective weight W + Scale·B·A (W
// dequantised when held in NF4), accumulated in float64.
func (m *Model) mergedValues(L *linear) ([]float32, error) {
	w, err := m.paramValues(L.w)
	if err != nil || L.a == nil || m.adaptersOff {
		return w, err
	}
	a, err := m.paramValues(L.a)
	if err != nil {
		return nil, err
	}
	b, err := m.paramValues(L.bl)
	if err != nil {
		return nil, err
	}
	lo := m.opts.LoRA
	return lora.Merge(w, L.out, L.in, a, b, lo.Rank, float64(lo.Scale)), nil
}

// MergeAdapters folds every LoRA pair into its base weight
// (W += Scale·B·A, accumulated in float64) and zeroes B, so the model
// computes the same function with the adapters off. NF4 weights are
// requantised after merging (lossy); SaveMerged writes an exact F32 merge
// instead.
func (m *Model) MergeAdapters() error {
	for l := range m.layers {
		for i := range m.layers[l].lin {
			L := &m.layers[l].lin[i]
			if L.a == nil {
				continue
			}
			w, err := m.mergedValues(L)
			if err != nil {
				return err
			}
			if err := m.setParam(L.w, w); err != nil {
				return err
			}
			m.be.Zero(L.bl.W)
		}
	}
	return m.be.Sync()
}

// SaveMerged writes the model as Save does, with every LoRA pair folded
// into its base weight (NF4 bases dequantised first): a plain Hugging Face
// model computing what the adapted model computes.
func (m *Model) SaveMerged(dir string, dt safetensors.DType) error {
	merged := map[*Param]*linear{}
	for l := range m.layers {
		for i := range m.layers[l].lin {
			if L := &m.layers[l].lin[i]; L.a != nil {
				merged[L.w] = L
			}
		}
	}
	return m.save(dir, dt, func(p *Param) ([]float32, error) {
		if L := merged[p]; L != nil {
			return m.mergedValues(L)
		}
		return m.paramValues(p)
	})
}

// MemoryUse is what a model holds on its backend, in bytes, by purpose.
type MemoryUse struct {
	Params      int64 // F32 parameters (base, adapters, value head) and bfloat16 working copies
	NF4         int64 // NF4 weights (codes and scales)
	Grads       int64 // gradients of the trainable parameters
	Activations int64 // activations and backward scratch for the reserved tokens, token buffers
	Logits      int64 // the [n,V] logits buffer Logits allocates (0 until called)
	Scratch     int64 // frozen-norm sink, NF4 dequantisation tile, RoPE frequencies
}

// Total is the sum of the pieces.
func (u MemoryUse) Total() int64 {
	return u.Params + u.NF4 + u.Grads + u.Activations + u.Logits + u.Scratch
}

// MemoryUse reports the model's current backend allocations (activations
// as last reserved; see Reserve). Optimizer state is the trainer's.
func (m *Model) MemoryUse() MemoryUse {
	b := func(x tensor.Buffer) int64 {
		if x.IsNil() {
			return 0
		}
		return int64(x.Bytes())
	}
	nf4, _ := m.NF4Bytes()
	u := MemoryUse{Params: b(m.paramMem) + b(m.halfMem), NF4: int64(nf4), Grads: b(m.gradMem), Scratch: b(m.scratch) + b(m.invFreq)}
	if a := m.act; a != nil {
		u.Activations = b(a.mem) + b(a.hmem) + b(a.imem)
		u.Logits = b(a.logits)
	}
	return u
}

// AdapterTensors returns the LoRA matrices as the model family's PEFT
// adapter holds them, keyed by in-model name ("<module>.lora_A.weight"
// [r,in], "<module>.lora_B.weight" [out,r]) with the family's module
// names: a fused module (Baichuan's W_pack, Phi-3's qkv_proj, ...) has
// one A and its parts' B stacked, as PEFT adapts the fused layer.
func (m *Model) AdapterTensors() (map[string]lora.Tensor, error) {
	out := map[string]lora.Tensor{}
	for _, ft := range m.adapterLayout() {
		parts := make([][]float32, len(ft.parts))
		for i, p := range ft.parts {
			v, err := m.paramValues(p)
			if err != nil {
				return nil, fmt.Errorf("llama: %s: %w", p.Name, err)
			}
			parts[i] = v
		}
		out[ft.name] = lora.Tensor{Shape: ft.shape(), Data: m.joinFile(ft, parts)}
	}
	return out, nil
}

// SetAdapterTensors sets the LoRA matrices from a PEFT adapter's tensors
// (AdapterTensors' naming and layout). Every adapter matrix of the model
// must be given, and nothing else.
func (m *Model) SetAdapterTensors(tensors map[string]lora.Tensor) error {
	seen := 0
	for _, ft := range m.adapterLayout() {
		t, ok := tensors[ft.name]
		if !ok {
			return fmt.Errorf("llama: adapter: missing tensor %s", ft.name)
		}
		if want := ft.shape(); !tensor.Shape(t.Shape).Equal(want) {
			return fmt.Errorf("llama: adapter: tensor %s has shape %v, the model needs %v", ft.name, t.Shape, want)
		}
		parts, err := m.splitFile(ft, t.Data)
		if err != nil {
			return fmt.Errorf("llama: adapter: %w", err)
		}
		for i, p := range ft.parts {
			if err := m.setParam(p, parts[i]); err != nil {
				return fmt.Errorf("llama: adapter: %s: %w", ft.name, err)
			}
		}
		seen++
	}
	if seen != len(tensors) {
		for name := range tensors {
			if !slices.ContainsFunc(m.adapterLayout(), func(ft fileTensor) bool { return ft.name == name }) {
				return fmt.Errorf("llama: adapter: tensor %s is not an adapter of this model's modules", name)
			}
		}
	}
	return nil
}

// AdapterModulesOf maps the in-model names of a PEFT adapter's tensors
// (the family's module names) to the engine's module paths they adapt.
func AdapterModulesOf(cfg Config, names []string) ([]string, error) {
	byFile := map[string][]string{}
	for l := range cfg.Layers {
		for _, k := range linearKinds {
			mod := fmt.Sprintf("model.layers.%d.%s", l, k.path)
			file := mod + LoRAASuffix
			if fam := familyOf(cfg.ModelType); fam != nil && fam.fileName != nil {
				file = fam.fileName(cfg, file)
			}
			file = strings.TrimSuffix(file, LoRAASuffix)
			byFile[file] = append(byFile[file], mod)
		}
	}
	var out []string
	for _, n := range names {
		mod, ok := strings.CutSuffix(n, LoRAASuffix)
		if !ok {
			continue
		}
		mods, known := byFile[mod]
		if !known {
			return nil, fmt.Errorf("llama: adapter module %s is not a linear module of this %s model", mod, cfg.ModelType)
		}
		out = append(out, mods...)
	}
	slices.Sort(out)
	return out, nil
}

// LoadAdapted loads the model in dir (LoadWith) with a PEFT adapter applied,
// unmerged: o.LoRA's Modules, Rank and Scale come from the adapter (its
// Dropout and Seed are kept when o.LoRA is set).
func LoadAdapted(dir string, be tensor.Backend, o Options, c lora.Config, tensors map[string]lora.Tensor) (*Model, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		names = append(names, n)
	}
	mods, err := AdapterModulesOf(cfg, names)
	if err != nil {
		return nil, err
	}
	lo := LoRAOptions{}
	if o.LoRA != nil {
		lo = *o.LoRA
	}
	lo.Modules, lo.Rank, lo.Scale = mods, c.Rank, float32(c.Scale())
	o.LoRA = &lo
	m, err := LoadWith(dir, be, o)
	if err != nil {
		return nil, err
	}
	if err := m.SetAdapterTensors(tensors); err != nil {
		m.Free()
		return nil, err
	}
	return m, nil
}

// LoadValueHead sets the value head from dir/value_head.safetensors (the
// file reward-model and ppo stages write; see lora.LoadValueHead). The
// model must have been made with Options.ValueHead.
func (m *Model) LoadValueHead(dir string) error {
	if m.vhead == nil {
		return errors.New("llama: the model has no value head")
	}
	w, b, err := lora.LoadValueHead(dir)
	if err != nil {
		return err
	}
	if err := m.setParam(m.vhead, w); err != nil {
		return fmt.Errorf("llama: value head from %s: %w", dir, err)
	}
	return m.setParam(m.vheadB, []float32{b})
}
