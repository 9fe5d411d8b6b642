package memest

import (
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/tensor"
)

// Method is a fine-tuning method, as trainstage names them.
type Method string

// The methods.
const (
	Full   Method = "full"
	Freeze Method = "freeze"
	LoRA   Method = "lora"
	QLoRA  Method = "qlora"
)

// Input describes one training stage: the model, what trains and how, and
// the batch shape.
type Input struct {
	Config llama.Config
	Method Method
	// Trainable selects the base parameters (HF names) that train under
	// Freeze, as trainstage's freeze block does; it must be set for Freeze
	// and is ignored otherwise (Full trains every base parameter, LoRA and
	// QLoRA none).
	Trainable func(name string) bool
	// LoRARank, LoRAModules and LoRADropout describe the adapters of LoRA
	// and QLoRA (ignored for Full and Freeze). LoRAModules lists module
	// paths ("model.layers.3.self_attn.q_proj"), module kinds ("q_proj",
	// every layer) or "all" (every linear module of every layer).
	// LoRADropout is whether the adapters use dropout (dropout > 0).
	LoRARank    int
	LoRAModules []string
	LoRADropout bool
	// ValueHead adds the scalar head of reward models and PPO values.
	ValueHead bool
	// BF16 holds the linear weights as bfloat16 working copies
	// (compute_type = "bf16", llama.Options.BF16): 2 bytes each, on top of
	// the float32 master of a weight that trains, instead of it for one
	// that is frozen; and the activations entering the linear layers as
	// bfloat16 (llama.Options.BF16Activations).
	BF16 bool
	// BatchSize is rows per micro-batch; SeqLen is max_seq_len (the
	// trainer reserves activations for BatchSize·SeqLen tokens);
	// GradAccum is the number of micro-batches per step (0 means 1). It
	// does not change the memory: gradients accumulate in place.
	BatchSize, SeqLen, GradAccum int
	// Pairs is set for preference objectives (reward model, DPO and
	// relatives), whose micro-batches hold 2·BatchSize rows.
	Pairs bool
	// Recompute is activation recomputation (activation_recompute): only
	// each layer's input is kept.
	Recompute bool
	// Checkpoints is set when the run writes checkpoints (save_steps > 0):
	// writing one holds host copies of the trainable weights and of the
	// optimizer moments for a moment, on top of everything else.
	Checkpoints bool
	// Merge is set when a LoRA or QLoRA stage also writes the merged
	// model (merge = true); Full and Freeze always write the model.
	Merge bool
	// Baseline is the resident size of the process before the stage
	// allocates (binary, runtime, whatever else it holds); 0 means this
	// process's resident size now (ProcessRSS).
	Baseline int64
	// Threads is the number of threads the CPU kernels use (GOMAXPROCS);
	// 0 means this process's runtime.GOMAXPROCS(0). Some kernel scratch is
	// per thread.
	Threads int
}

// Piece is one part of an estimate.
type Piece struct {
	Name  string
	Bytes int64
	// Backend is set for allocations made through the tensor.Backend
	// (device memory on an accelerator, RAM on the CPU backend); host
	// pieces are always RAM.
	Backend bool
}

// The piece names, in the order Training lists them.
const (
	PieceWeights   = "weights"         // F32 parameters (base, adapters, value head) and bfloat16 copies
	PieceNF4       = "nf4 weights"     // QLoRA's frozen linear weights: codes and scales
	PieceGradients = "gradients"       // of the trainable parameters
	PieceScratch   = "scratch"         // frozen-norm gradient sink, NF4 tile, RoPE frequencies
	PieceOptimizer = "optimizer state" // AdamW's two moments, the grad-norm scalar
	// PieceActivations is the activations and backward scratch of
	// Reserve(rows·SeqLen) and the token id buffers.
	PieceActivations = "activations"
	PieceLogits      = "logits workspace" // the fused cross-entropy's 64·vocab chunk
	PieceHost        = "host buffers"     // the engine's Go slices: batches, losses, dropout mask
	PieceKernel      = "kernel scratch"   // the CPU kernels' reusable buffers
	PieceCheckpoint  = "checkpoint buffers"
	// PieceSave and PieceLoad are the host copies made while writing the
	// model at the end and while loading it, where they exceed what they
	// replace (the optimizer state; what training allocates later).
	PieceSave     = "save buffers"
	PieceLoad     = "load buffers"
	PieceRuntime  = "runtime"     // the process before the stage: Input.Baseline
	PieceHeadroom = "gc headroom" // Go heap fragmentation, metadata, garbage between collections
)

// Estimate is the peak memory of a training stage, by piece. Total is the
// sum of the pieces: the expected peak resident set size of the process
// when it runs under the Go memory limit MemoryLimit returns.
type Estimate struct {
	Pieces []Piece
	Total  int64
}

// Piece returns the bytes of the named piece (0 if absent).
func (e Estimate) Piece(name string) int64 {
	for _, p := range e.Pieces {
		if p.Name == name {
			return p.Bytes
		}
	}
	return 0
}

// BackendBytes returns the sum of the backend pieces.
func (e Estimate) BackendBytes() int64 {
	var n int64
	for _, p := range e.Pieces {
		if p.Backend {
			n += p.Bytes
		}
	}
	return n
}

// String is a readable breakdown: one line per non-empty piece and the
// total, in GiB, MiB or KiB.
func (e Estimate) String() string {
	var b strings.Builder
	w := len("total")
	for _, p := range e.Pieces {
		w = max(w, len(p.Name))
	}
	for _, p := range e.Pieces {
		if p.Bytes == 0 {
			continue
		}
		fmt.Fprintf(&b, "  %-*s  %10s\n", w, p.Name, FormatBytes(p.Bytes))
	}
	fmt.Fprintf(&b, "  %-*s  %10s\n", w, "total", FormatBytes(e.Total))
	return b.String()
}

// FormatBytes renders n bytes with a binary unit and one decimal (e.g.
// "5.1 GiB", "312.0 MiB").
func FormatBytes(n int64) string {
	switch f := float64(n); {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", f/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", f/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", f/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// shape is a model's parameter layout under an Input: what NewWith
// allocates.
type shape struct {
	f32, nf4Bytes, trainable int64    // floats, bytes, floats
	bf16                     int64    // values of the bfloat16 working copies
	largestBF16              int      // values of the largest of them
	largestFrozenBF16        int      // values of the largest frozen one
	trainableTensors         int      // tensors of the trainable floats
	baseValues               int64    // values of the base model (NF4 included)
	nf4Tile                  int      // floats of the dequantisation tile
	largest                  int      // values of the largest F32 parameter
	largestNF4               int      // values of the largest NF4 tensor
	adapted                  [][]bool // per layer and linear kind: has an adapter
	adaptedKinds             []int    // linear kinds adapted in some layer
	maxAdaptedIn             int      // largest input width of an adapted module
}

// linearKind is one linear module of a decoder layer, in llama's order.
type linearKind struct {
	kind, path string
	out, in    int
}

func linearKinds(c llama.Config) []linearKind {
	H, I := c.Hidden, c.Intermediate
	qd, kvd := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	dims := map[string][2]int{"q_proj": {qd, H}, "k_proj": {kvd, H}, "v_proj": {kvd, H}, "o_proj": {H, qd},
		"gate_proj": {I, H}, "up_proj": {I, H}, "down_proj": {H, I}}
	var out []linearKind
	for _, k := range llama.LinearKinds() {
		path := strings.TrimPrefix(llama.LinearModules([]string{k}, 1)[0], "model.layers.0.")
		d := dims[k]
		out = append(out, linearKind{kind: k, path: path, out: d[0], in: d[1]})
	}
	return out
}

// adapters resolves LoRAModules into, per layer, the set of adapted kinds
// (indexes into linearKinds).
func adapters(c llama.Config, kinds []linearKind, modules []string) ([][]bool, error) {
	if len(modules) == 0 {
		return nil, fmt.Errorf("memest: lora has no target modules")
	}
	on := make([][]bool, c.Layers)
	for l := range on {
		on[l] = make([]bool, len(kinds))
	}
	byPath := map[string][2]int{}
	for l := range c.Layers {
		for i, k := range kinds {
			byPath[fmt.Sprintf("model.layers.%d.%s", l, k.path)] = [2]int{l, i}
		}
	}
	for _, m := range modules {
		if m == "all" {
			for l := range on {
				for i := range on[l] {
					on[l][i] = true
				}
			}
			continue
		}
		if i := slices.IndexFunc(kinds, func(k linearKind) bool { return k.kind == m }); i >= 0 {
			for l := range on {
				on[l][i] = true
			}
			continue
		}
		li, ok := byPath[m]
		if !ok {
			return nil, fmt.Errorf("memest: lora target %q is neither a linear module kind (%s), \"all\", nor a linear module of this %d-layer model",
				m, strings.Join(llama.LinearKinds(), ", "), c.Layers)
		}
		on[li[0]][li[1]] = true
	}
	return on, nil
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// nf4TileRows mirrors llama's: rows of a dequantised tile of about 2^15
// values, rows·in a multiple of the NF4 block.
func nf4TileRows(out, in int) int {
	g := tensor.NF4BlockSize / gcd(in, tensor.NF4BlockSize)
	tr := max((1<<15)/in/g*g, g)
	return min(tr, out)
}

// nf4Bytes is the size of an n-value NF4 tensor: codes, int8 absmax per
// block, an F32 scale per group of blocks, one F32 offset.
func nf4Bytes(n int) int64 {
	blocks, groups := tensor.NF4Sizes(n)
	return int64(n/2) + int64(blocks) + 4*int64(groups) + 4
}

// layout computes the parameters NewWith allocates for in.
func layout(in Input) (shape, error) {
	c := in.Config
	var s shape
	trainsBase := func(name string) bool {
		switch in.Method {
		case Full:
			return true
		case Freeze:
			return in.Trainable(name)
		}
		return false
	}
	add := func(name string, n int, nf4 bool) {
		s.baseValues += int64(n)
		if nf4 {
			s.nf4Bytes += nf4Bytes(n)
			s.largestNF4 = max(s.largestNF4, n)
			return
		}
		s.largest = max(s.largest, n)
		if trainsBase(name) {
			s.trainable += int64(n)
			s.trainableTensors++
		}
		s.f32 += int64(n)
	}
	// addLinear adds a linear weight: NF4 under QLoRA, with a bfloat16
	// working copy under BF16 (and no float32 copy when frozen).
	addLinear := func(name string, n int, nf4 bool) {
		if !in.BF16 || nf4 {
			add(name, n, nf4)
			return
		}
		s.bf16 += int64(n)
		s.largestBF16 = max(s.largestBF16, n)
		if trainsBase(name) {
			add(name, n, false)
			return
		}
		s.baseValues += int64(n)
		s.largest = max(s.largest, n)
		s.largestFrozenBF16 = max(s.largestFrozenBF16, n)
	}
	H, I, D := c.Hidden, c.Intermediate, c.HeadDim
	qd, kvd := c.Heads*D, c.KVHeads*D
	kinds := linearKinds(c)
	var adapted [][]bool
	if in.Method == LoRA || in.Method == QLoRA {
		if in.LoRARank < 1 {
			return s, fmt.Errorf("memest: lora rank %d: want >= 1", in.LoRARank)
		}
		var err error
		if adapted, err = adapters(c, kinds, in.LoRAModules); err != nil {
			return s, err
		}
	}
	add("model.embed_tokens.weight", c.VocabSize*H, false)
	for l := range c.Layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", H, false)
		add(p+"post_attention_layernorm.weight", H, false)
		for _, k := range kinds {
			nf4 := in.Method == QLoRA
			if nf4 {
				n := k.out * k.in
				g := tensor.NF4BlockSize / gcd(k.in, tensor.NF4BlockSize)
				tr := nf4TileRows(k.out, k.in)
				if n%tensor.NF4BlockSize != 0 || (k.out > tr && tr%g != 0) {
					return s, fmt.Errorf("memest: %s%s.weight [%d,%d] cannot be held in NF4 (size not a multiple of %d)", p, k.path, k.out, k.in, tensor.NF4BlockSize)
				}
				s.nf4Tile = max(s.nf4Tile, tr*k.in)
			}
			addLinear(p+k.path+".weight", k.out*k.in, nf4)
		}
		if c.QKVBias {
			add(p+"self_attn.q_proj.bias", qd, false)
			add(p+"self_attn.k_proj.bias", kvd, false)
			add(p+"self_attn.v_proj.bias", kvd, false)
		}
		if c.OBias {
			add(p+"self_attn.o_proj.bias", H, false)
		}
		if c.QKNorm {
			add(p+"self_attn.q_norm.weight", D, false)
			add(p+"self_attn.k_norm.weight", D, false)
		}
		if c.MLPBias {
			add(p+"mlp.gate_proj.bias", I, false)
			add(p+"mlp.up_proj.bias", I, false)
			add(p+"mlp.down_proj.bias", H, false)
		}
	}
	add("model.norm.weight", H, false)
	if !c.TieEmbeddings {
		add("lm_head.weight", c.VocabSize*H, false)
	}
	// Adapters and the value head always train.
	s.adapted = adapted
	extra := int64(0)
	for l := range adapted {
		for i, on := range adapted[l] {
			if on {
				extra += int64(in.LoRARank) * int64(kinds[i].in+kinds[i].out)
				s.trainableTensors += 2
				if !slices.Contains(s.adaptedKinds, i) {
					s.adaptedKinds = append(s.adaptedKinds, i)
				}
				s.maxAdaptedIn = max(s.maxAdaptedIn, kinds[i].in)
			}
		}
	}
	if in.ValueHead {
		extra += int64(H) + 1
		s.trainableTensors += 2
	}
	s.f32 += extra
	s.trainable += extra
	return s, nil
}

// check validates the Input.
func check(in Input) error {
	if err := in.Config.Validate(); err != nil {
		return fmt.Errorf("memest: %w", err)
	}
	switch in.Method {
	case Full, LoRA, QLoRA:
	case Freeze:
		if in.Trainable == nil {
			return fmt.Errorf("memest: method %q needs Trainable (which base parameters train)", in.Method)
		}
	default:
		return fmt.Errorf("memest: method %q is not one of full, freeze, lora, qlora", in.Method)
	}
	switch {
	case in.BatchSize < 1:
		return fmt.Errorf("memest: batch size %d: want >= 1", in.BatchSize)
	case in.SeqLen < 1:
		return fmt.Errorf("memest: sequence length %d: want >= 1 (max_seq_len, or the model's max_position_embeddings)", in.SeqLen)
	case in.GradAccum < 0:
		return fmt.Errorf("memest: gradient accumulation %d: want >= 1", in.GradAccum)
	case in.Threads < 0:
		return fmt.Errorf("memest: threads %d: want >= 0", in.Threads)
	}
	return nil
}

// Rows returns the rows of a micro-batch: BatchSize, doubled for
// preference pairs.
func (in Input) Rows() int {
	if in.Pairs {
		return 2 * in.BatchSize
	}
	return in.BatchSize
}

// activationBytes mirrors llama's Reserve: the F32 activation buffer for
// n tokens, without the cross-entropy workspace, and under BF16 the
// bfloat16 one.
func activationBytes(in Input, s shape, n int) int64 {
	c := in.Config
	H, I := int64(c.Hidden), int64(c.Intermediate)
	qd, kvd := int64(c.Heads*c.HeadDim), int64(c.KVHeads*c.HeadDim)
	N := int64(n)
	r := int64(in.LoRARank)
	// Under BF16 the activations entering the linear layers (ln1, att,
	// ln2, sw), the q/k/v and gate/up projections (q and k after their
	// norms where the model has q/k norms, which read float32 q and k) are
	// bfloat16: 2 bytes; everything else 4.
	lin := N*H + N*qd + N*H + N*I + N*kvd + 2*N*I // ln1, att, ln2, sw, v, gate, up
	lin += N*qd + N*kvd                           // q, k (or their normed copies)
	layer := N*H + N + N*int64(c.Heads)           // x, rstd1, lse
	if c.QKNorm {
		layer += N*qd + N*kvd + N*int64(c.Heads) + N*int64(c.KVHeads) // float32 q, k; rstdq, rstdk
	}
	layer += N*H + N                            // xmid, rstd2
	layer += int64(len(s.adaptedKinds)) * N * r // LoRA x·Aᵀ
	if !in.BF16 {
		layer += lin
	}
	layers := int64(c.Layers)
	if in.Recompute {
		layers = 1
	}
	half := layers * lin
	var total int64
	if in.Recompute {
		total = layer + int64(c.Layers-1)*N*H
	} else {
		total = int64(c.Layers) * layer
	}
	total += 2*N*H + 2*N                      // xf, lnf, rstdf, losses
	total += 3*N*H + 2*N*qd + 2*N*kvd + 3*N*I // backward scratch
	total += 3 * N                            // vals, dvals, rowW
	if in.Method == LoRA || in.Method == QLoRA {
		total += N * r
		if in.LoRADropout {
			total += 2 * N * max(H, qd, I)
		}
	}
	if in.BF16 {
		total += N * max(qd, I) // a projection's float32 output before rounding
		return 4*total + 2*half
	}
	return 4 * total
}

// Training estimates the peak memory of a training stage on the CPU
// backend: loading the model, training it, and writing it out at the end.
//
// The backend pieces are exactly what llama.NewWith, Model.Reserve and
// train.NewAdamW allocate. The host pieces model the rest of the process:
// the engine's Go slices, the CPU kernels' scratch, the host copies made
// while loading, checkpointing and saving (counted where they exceed what
// they coexist with), the process's baseline and the Go heap's overhead.
// The total holds for a process running under the Go memory limit that
// MemoryLimit returns; without one, the garbage collector lets the heap
// grow towards twice its live size over a long run (GOGC=100).
func Training(in Input) (Estimate, error) {
	if err := check(in); err != nil {
		return Estimate{}, err
	}
	s, err := layout(in)
	if err != nil {
		return Estimate{}, err
	}
	if s.trainable == 0 {
		return Estimate{}, fmt.Errorf("memest: nothing trains (method %q with no trainable parameters)", in.Method)
	}
	c := in.Config
	n := in.Rows() * in.SeqLen
	threads := in.Threads
	if threads == 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	baseline := in.Baseline
	if baseline == 0 {
		baseline = ProcessRSS()
	}
	rope := tensor.RoPE{HeadDim: c.HeadDim, Theta: c.RopeTheta, Llama3: c.RopeScaling}
	var e Estimate
	add := func(name string, bytes int64, backend bool) {
		e.Pieces = append(e.Pieces, Piece{Name: name, Bytes: bytes, Backend: backend})
		e.Total += bytes
	}
	// Held from model creation to the end.
	add(PieceWeights, 4*s.f32+2*s.bf16, true)
	add(PieceNF4, s.nf4Bytes, true)
	add(PieceGradients, 4*s.trainable, true)
	// Frozen-norm gradient sink, NF4 tile, RoPE inverse frequencies.
	add(PieceScratch, 4*int64(max(c.Hidden, c.HeadDim)+s.nf4Tile+rope.Dim()/2), true)
	// Held from the first step to the end.
	// Activations and backward scratch (F32) and the four I32 token
	// buffers (ids, targets, positions, segments).
	act := activationBytes(in, s, n) + 16*int64(n)
	logits := 4 * int64(llama.CrossEntropyChunkRows(c.VocabSize)) * int64(c.VocabSize)
	host := hostBytes(in, s, n)
	kernel := kernelBytes(in, s, n, threads)
	// During training only: AdamW's two moments and the trainer's
	// grad-norm scalar (freed before the model is written), and a
	// checkpoint's host copies.
	opt := 8*s.trainable + 4
	var ckpt int64
	if in.Checkpoints {
		ckpt = checkpointBytes(s)
	}
	add(PieceOptimizer, opt, true)
	add(PieceActivations, act, true)
	add(PieceLogits, logits, true)
	add(PieceHost, host, false)
	add(PieceKernel, kernel, false)
	add(PieceCheckpoint, ckpt, false)
	// Writing the model replaces the optimizer and checkpoint with the
	// writer's copy of the weights; loading came before all of the above
	// but the weights, gradients and scratch.
	train := opt + ckpt
	save := saveBytes(in, s)
	add(PieceSave, max(0, save-train), false)
	load := loadBytes(s)
	add(PieceLoad, max(0, load-(act+logits+host+kernel+max(train, save))), false)
	add(PieceRuntime, baseline, false)
	add(PieceHeadroom, headroom(e.Total-baseline), false)
	return e, nil
}

// hostBytes are the engine's Go slices: the per-token loss and position
// copies the model keeps, a micro-batch's token, target, position and
// segment ids (and the per-token weights of preference objectives), and
// the host copy of the LoRA dropout mask.
func hostBytes(in Input, s shape, n int) int64 {
	b := 8*int64(n) + 16*int64(n)
	if in.Pairs {
		b += 4 * int64(n)
	}
	if (in.Method == LoRA || in.Method == QLoRA) && in.LoRADropout {
		b += 4 * int64(n) * int64(s.maxAdaptedIn)
	}
	// The buffer frozen bfloat16 weights are rounded through on loading.
	b += 2 * int64(s.largestFrozenBF16)
	return b
}

// checkpointBytes is what writing a checkpoint holds at once on top of
// training: the optimizer's host copy of a moment and the encoding
// buffer binary.Write makes of it (the weights' copies are garbage by
// then and collected under the memory limit).
func checkpointBytes(s shape) int64 { return 8 * s.trainable }

// saveBytes is what writing the model at the end holds: the writer keeps
// every base weight's F32 bytes until it closes the file, and one
// tensor's host copies are live (its values; for a LoRA merge also the
// merged copy, and for an NF4 weight the F32 buffer it is dequantised
// into). Adapter-only outputs are small next to the optimizer state freed
// before them.
func saveBytes(in Input, s shape) int64 {
	if (in.Method == LoRA || in.Method == QLoRA) && !in.Merge {
		return 0
	}
	base := 4 * s.baseValues
	if in.Method == LoRA || in.Method == QLoRA {
		return base + max(8*int64(s.largest), 12*int64(s.largestNF4))
	}
	return base + 4*int64(s.largest)
}

// loadBytes is the largest host copy made while loading or initialising
// one parameter: its F32 values, and for an NF4 weight also the F32
// backend buffer it is quantised from.
func loadBytes(s shape) int64 { return max(4*int64(s.largest), 8*int64(s.largestNF4)) }

// headroom is the Go heap's overhead on top of its live bytes under the
// memory limit: span fragmentation and runtime metadata (a few percent of
// the heap) and room for the garbage a step makes between collections.
func headroom(heap int64) int64 { return 2<<20 + min(heap/16, 256<<20+heap/64) }

// ProcessRSS returns the resident set size of this process (VmRSS from
// /proc/self/status on Linux; elsewhere the memory the Go runtime has
// mapped, which leaves out the binary).
func ProcessRSS() int64 {
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				f := strings.Fields(v)
				if len(f) == 2 && f[1] == "kB" {
					if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
						return kb << 10
					}
				}
			}
		}
	}
	return goMemory()
}

// goMemory is the memory the Go runtime holds from the OS and counts
// against its memory limit: everything it mapped less what it released.
func goMemory() int64 {
	ss := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(ss)
	var v [2]int64
	for i, s := range ss {
		if s.Value.Kind() == metrics.KindUint64 {
			v[i] = int64(s.Value.Uint64())
		}
	}
	return v[0] - v[1]
}

// MemoryLimit returns the Go memory limit (runtime/debug.SetMemoryLimit)
// under which a training process stays within e.Total: the memory the Go
// runtime holds now plus what the stage will add. Call it in the process
// that trains, when the baseline e was computed with is current (right
// before the stage allocates). Without a limit the collector lets a long
// run's garbage grow the heap towards twice its live size, since the
// engine's buffers are themselves Go heap.
func MemoryLimit(e Estimate) int64 {
	return goMemory() + e.Total - e.Piece(PieceRuntime)
}

// gemmBlocking is the cache blocking of one of the CPU backend's Sgemm
// micro-kernels (internal/cpu's gemmKernel).
type gemmBlocking struct{ mr, nr, kc, mc, nc int }

var gemmKernels = map[string]gemmBlocking{
	"avx512": {12, 32, 256, 192, 3072},
	"avx2":   {6, 16, 256, 96, 2048},
	"go":     {4, 4, 256, 128, 1024},
}

// gemmBlockingNow is the blocking of the Sgemm micro-kernel in use.
func gemmBlockingNow() gemmBlocking {
	if g, ok := gemmKernels[cpu.SgemmKernel()]; ok {
		return g
	}
	return gemmKernels["avx512"]
}

// Constants of the CPU backend's kernels that size their scratch.
const (
	gemmPackBudget = 1 << 21 // floats of a packed op(B) block
	gemmMinFlops   = 1 << 21 // flops per Sgemm worker
	xentPackBudget = 1 << 25 // largest head the cross-entropy packs once
	attnBlock      = 64      // attention tile
)

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// gemmScratch returns the floats of the packed-B block shared by an Sgemm
// call's workers and of each worker's packed-A block for an m×n×k
// product on threads threads.
func gemmScratch(g gemmBlocking, threads, m, n, k int) (b, a int64) {
	if m <= 0 || n <= 0 || k <= 0 {
		return 0, 0
	}
	kc := ceilDiv(k, ceilDiv(k, g.kc))
	workers := min(threads, max(2*m*n*k/gemmMinFlops, 1))
	mTiles := ceilDiv(m, g.mr)
	blocks := workers * max(ceilDiv(mTiles, workers*(g.mc/g.mr)), min(4, mTiles/(2*workers)), 1)
	mc := ceilDiv(mTiles, blocks) * g.mr
	nAll := ceilDiv(n, g.nr) * g.nr
	nc := min(g.nc, nAll)
	if k*nAll <= gemmPackBudget {
		nc = nAll
	}
	kSpan := min(k, max(kc, gemmPackBudget/nc/kc*kc))
	return int64(kSpan) * int64(nc), int64(kc) * int64(mc)
}

// kernelBytes models the CPU kernels' scratch, which they keep for reuse:
// the fused cross-entropy's two packed copies of the LM head (when it is
// small enough to pack and a batch spans several chunks); the pack
// buffers of Sgemm calls, whose states are recycled and only grow (the
// attention workers run block products of their own, so up to one state
// per thread exists, and a state grows to the largest product it ever
// served: measured, about half of them end up with the largest packed-B
// block); the attention tiles per thread; and the NF4 quantiser's absmax
// buffer.
func kernelBytes(in Input, s shape, n, threads int, extra ...[3]int) int64 {
	c := in.Config
	g := gemmBlockingNow()
	V, H, D := c.VocabSize, c.Hidden, c.HeadDim
	var floats int64
	ceRows := llama.CrossEntropyChunkRows(V)
	packed := V*H <= xentPackBudget && n > ceRows
	if packed {
		floats += int64(ceilDiv(V, g.nr)*g.nr*H) + int64(ceilDiv(H, g.nr)*g.nr*V)
	}
	// The products of a step: [m, n, k].
	var prods [][3]int
	rows := min(ceRows, n)
	if !packed {
		prods = append(prods, [3]int{rows, V, H}, [3]int{rows, H, V})
	}
	if in.Method == Full || (in.Method == Freeze && (in.Trainable("lm_head.weight") ||
		(c.TieEmbeddings && in.Trainable("model.embed_tokens.weight")))) {
		prods = append(prods, [3]int{V, H, rows})
	}
	prods = append(prods, [3]int{attnBlock, attnBlock, D}, [3]int{attnBlock, D, attnBlock}, [3]int{D, attnBlock, attnBlock})
	prods = append(prods, extra...)
	if in.ValueHead {
		prods = append(prods, [3]int{n, 1, H}, [3]int{1, H, n})
	}
	r := in.LoRARank
	kinds := linearKinds(c)
	for l := range c.Layers {
		for i, k := range kinds {
			if in.Method == QLoRA {
				tr := nf4TileRows(k.out, k.in)
				prods = append(prods, [3]int{n, tr, k.in}, [3]int{n, k.in, tr})
			} else {
				prods = append(prods, [3]int{n, k.out, k.in}, [3]int{n, k.in, k.out})
			}
			name := fmt.Sprintf("model.layers.%d.%s.weight", l, k.path)
			if in.Method == Full || (in.Method == Freeze && in.Trainable(name)) {
				prods = append(prods, [3]int{k.out, k.in, n})
			}
			if s.adapted != nil && s.adapted[l][i] {
				prods = append(prods, [3]int{n, r, k.in}, [3]int{n, k.out, r}, [3]int{k.out, r, n},
					[3]int{n, r, k.out}, [3]int{r, k.in, n}, [3]int{n, k.in, r})
			}
		}
	}
	var maxB, maxA int64
	for _, p := range prods {
		b, a := gemmScratch(g, threads, p[0], p[1], p[2])
		maxB, maxA = max(maxB, b), max(maxA, a)
	}
	T := int64(in.SeqLen)
	attn := int64(2*attnBlock*attnBlock+attnBlock*D+2*attnBlock) + T
	blocks, _ := tensor.NF4Sizes(s.largestNF4)
	P := int64(threads)
	floats += (P/2+1)*maxB + P*maxA + P*int64(g.mr*g.nr) + P*attn + int64(blocks)
	// A bfloat16 weight is widened to float32 for its products (scratch
	// slot B); so is a bfloat16 activation (slot A as the left operand,
	// and the attention kernels' output; slot B as the right operand of a
	// weight gradient; attention's q, k and v in three more).
	if in.BF16 {
		act := int64(n) * int64(max(c.Hidden, c.Heads*c.HeadDim, c.Intermediate))
		floats += act + max(int64(s.largestBF16), act)
		floats += int64(n) * int64(c.Heads+2*c.KVHeads) * int64(c.HeadDim)
	}
	return 4 * floats
}
