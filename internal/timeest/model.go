package timeest

import (
	"fmt"
	"math"

	"github.com/lathe-ml/lathe/internal/memest"
)

// Objective is what a training step computes on top of the decoder.
type Objective int

// The objectives.
const (
	// LM is the causal language-modelling loss (pretrain, sft): the fused
	// cross-entropy computes the logits once for the loss and its
	// gradients (llama.Model.ForwardBackward).
	LM Objective = iota
	// Preference is the DPO family: per-token losses first
	// (llama.Model.TokenLosses), then a weighted backward pass that
	// computes the logits again (BackwardWeighted).
	Preference
	// Reward is the reward model's: the value head on the final hidden
	// state, no LM head.
	Reward
)

// Stage describes a training stage for the time model.
type Stage struct {
	// Input is the model, the method and the batch shape, as the memory
	// model reads them (memest.Input; SeqLen is max_seq_len, the cap on a
	// row's length).
	memest.Input
	Objective Objective
	// Reference is set for a preference loss that scores every pair with
	// the starting model once before training (DPO's sigmoid, ipo,
	// hinge; not orpo or simpo).
	Reference bool
	// Train and Validation are the datasets, nil when not known (Train
	// nil: the estimate is per step, for rows of SeqLen tokens).
	Train, Validation *Data
	// Epochs or MaxSteps bound the run; EvalSteps > 0 evaluates every so
	// many steps (and always at the end, when there is Validation).
	Epochs, MaxSteps, EvalSteps int
}

// Parts of a step, for the breakdown.
const (
	PartMatmul      = "matmul"
	PartAttention   = "attention"
	PartHead        = "lm head"
	PartElementwise = "elementwise"
	PartNF4         = "nf4 dequant"
	PartOptimizer   = "optimizer"
)

// Work is a kernel op and how many times a step calls it.
type Work struct {
	Op    Op
	Calls float64
	Part  string
}

// pass is what one pass over a micro-batch computes.
type pass int

const (
	trainPass pass = iota // forward and backward, as the objective trains
	evalPass              // forward only, as the objective evaluates
)

// model holds what the work lists need of a stage.
type model struct {
	st     Stage
	p      memest.Params
	lin    []memest.Linear
	embed  bool // the embedding trains (so layer 0 needs its input gradient)
	head   bool // the LM head trains
	stop   int  // the lowest layer the backward pass reaches
	layerT []bool
}

func newModel(st Stage) (*model, error) {
	p, err := memest.Layout(st.Input)
	if err != nil {
		return nil, err
	}
	m := &model{st: st, p: p, lin: memest.Linears(st.Input)}
	c := st.Config
	trains := func(name string) bool {
		switch st.Method {
		case memest.Full:
			return true
		case memest.Freeze:
			return st.Trainable(name)
		}
		return false
	}
	m.embed = trains("model.embed_tokens.weight")
	m.head = trains("lm_head.weight") || (c.TieEmbeddings && m.embed)
	m.layerT = make([]bool, c.Layers)
	for l := range c.Layers {
		pre := fmt.Sprintf("model.layers.%d.", l)
		t := trains(pre+"input_layernorm.weight") || trains(pre+"post_attention_layernorm.weight")
		for i, k := range m.lin {
			t = t || trains(pre+k.Path+".weight") || (p.Adapted != nil && p.Adapted[l][i])
		}
		for _, b := range []string{"self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias", "self_attn.o_proj.bias",
			"self_attn.q_norm.weight", "self_attn.k_norm.weight", "mlp.gate_proj.bias", "mlp.up_proj.bias", "mlp.down_proj.bias"} {
			t = t || trains(pre+b)
		}
		m.layerT[l] = t
	}
	m.stop = c.Layers
	if m.embed {
		m.stop = 0
	} else {
		for l := range c.Layers {
			if m.layerT[l] {
				m.stop = l
				break
			}
		}
	}
	return m, nil
}

// weightTrains reports whether linear i of layer l has its base weight
// trained.
func (m *model) weightTrains(l, i int) bool {
	switch m.st.Method {
	case memest.Full:
		return true
	case memest.Freeze:
		return m.st.Trainable(fmt.Sprintf("model.layers.%d.%s.weight", l, m.lin[i].Path))
	}
	return false
}

// microBatch lists the kernel calls of one pass over rows rows of T tokens.
func (m *model) microBatch(rows, T int, ps pass) []Work {
	st, c := m.st, m.st.Config
	n := rows * T
	r := st.LoRARank
	var w []Work
	add := func(part string, op Op, calls float64) {
		if calls > 0 {
			w = append(w, Work{Op: op, Calls: calls, Part: part})
		}
	}
	// The base product y = x·Wᵀ of linear i, and dx = dy·W: whole or, for
	// QLoRA, NF4 tile by tile.
	base := func(i int, backward bool) {
		k := m.lin[i]
		if st.Method != memest.QLoRA {
			if backward {
				add(PartMatmul, Gemm(false, false, n, k.In, k.Out), 1)
			} else {
				add(PartMatmul, Gemm(false, true, n, k.Out, k.In), 1)
			}
			return
		}
		tr := m.p.NF4TileRows[i]
		full, rest := k.Out/tr, k.Out%tr
		for _, t := range [][2]int{{tr, full}, {rest, 1}} {
			if t[0] == 0 || t[1] == 0 {
				continue
			}
			if backward {
				add(PartMatmul, Gemm(false, false, n, k.In, t[0]), float64(t[1]))
			} else {
				add(PartMatmul, Gemm(false, true, n, t[0], k.In), float64(t[1]))
			}
			add(PartNF4, Op{Kind: KindNF4, Values: t[0] * k.In}, float64(t[1]))
		}
	}
	adapted := func(l, i int) bool { return m.p.Adapted != nil && m.p.Adapted[l][i] }
	forwardLayer := func(l int) {
		for i, k := range m.lin {
			base(i, false)
			if adapted(l, i) {
				add(PartMatmul, Gemm(false, true, n, r, k.In), 1)  // u = x·Aᵀ
				add(PartMatmul, Gemm(false, true, n, k.Out, r), 1) // y += s·u·Bᵀ
			}
		}
		add(PartAttention, Op{Kind: KindAttnFwd, B: rows, T: T, Hq: c.Heads, Hkv: c.KVHeads, D: c.HeadDim}, 1)
		add(PartElementwise, m.elem(KindElemFwd, n), 1)
	}
	for l := range c.Layers {
		forwardLayer(l)
	}
	head := func(variant string) {
		add(PartHead, Op{Kind: KindXent, Rows: n, Hidden: c.Hidden, Vocab: c.VocabSize, Variant: variant}, 1)
	}
	switch {
	case st.Objective == Reward:
		add(PartHead, Gemm(false, true, n, 1, c.Hidden), 1) // v = h·wᵀ
	case ps == evalPass || st.Objective == Preference:
		head(XentLoss)
	}
	if ps == evalPass {
		return w
	}
	switch st.Objective {
	case LM, Preference:
		if m.head {
			head(XentDxDw)
		} else {
			head(XentDx)
		}
	case Reward:
		add(PartHead, Gemm(false, false, n, c.Hidden, 1), 1) // dh = dv·w
		add(PartHead, Gemm(true, false, 1, c.Hidden, n), 1)  // dw += dvᵀ·h
	}
	for l := c.Layers - 1; l >= m.stop; l-- {
		if st.Recompute && l+1 < c.Layers {
			forwardLayer(l)
		}
		needInput := l > m.stop || m.embed
		for i, k := range m.lin {
			// At the lowest layer nothing below needs q, k and v's input
			// gradient unless its input norm trains.
			dx := needInput || i > 2 || m.lnTrains(l)
			if dx {
				base(i, true)
			}
			if m.weightTrains(l, i) {
				add(PartMatmul, Gemm(true, false, k.Out, k.In, n), 1) // dW += dyᵀ·x
			}
			if adapted(l, i) {
				add(PartMatmul, Gemm(true, false, k.Out, r, n), 1)  // dB += s·dyᵀ·u
				add(PartMatmul, Gemm(false, false, n, r, k.Out), 1) // du = s·dy·B
				add(PartMatmul, Gemm(true, false, r, k.In, n), 1)   // dA += duᵀ·x
				if dx {
					add(PartMatmul, Gemm(false, false, n, k.In, r), 1) // dx += du·A
				}
			}
		}
		add(PartAttention, Op{Kind: KindAttnBwd, B: rows, T: T, Hq: c.Heads, Hkv: c.KVHeads, D: c.HeadDim}, 1)
		add(PartElementwise, m.elem(KindElemBwd, n), 1)
	}
	return w
}

// lnTrains reports whether layer l's input norm trains.
func (m *model) lnTrains(l int) bool {
	switch m.st.Method {
	case memest.Full:
		return true
	case memest.Freeze:
		return m.st.Trainable(fmt.Sprintf("model.layers.%d.input_layernorm.weight", l))
	}
	return false
}

func (m *model) elem(kind string, n int) Op {
	c := m.st.Config
	return Op{Kind: kind, Rows: n, Hidden: c.Hidden, Inter: c.Intermediate, Hq: c.Heads, Hkv: c.KVHeads, D: c.HeadDim}
}

// optimizer lists an optimizer step's calls: AdamW on each trainable
// tensor (at their mean size), and zeroing, norm and clipping of the
// gradients.
func (m *model) optimizer() []Work {
	p := m.p
	if p.Trainable == 0 {
		return nil
	}
	mean := int(max(1, p.Trainable/int64(max(p.TrainableTensors, 1))))
	return []Work{
		{Op: Op{Kind: KindAdamW, Values: mean}, Calls: float64(p.TrainableTensors), Part: PartOptimizer},
		{Op: Op{Kind: KindGrads, Values: int(p.Trainable)}, Calls: 1, Part: PartOptimizer},
	}
}

// rows is the rows a micro-batch of units units holds.
func (st Stage) rows(units int) int {
	if st.Objective == Preference || st.Objective == Reward {
		return 2 * units
	}
	return units
}

// Step lists the kernel calls of one optimizer step whose micro-batches
// of BatchSize units are padded to T tokens: GradAccum micro-batches and
// the optimizer.
func Step(st Stage, T int) ([]Work, error) {
	m, err := newModel(st)
	if err != nil {
		return nil, err
	}
	return m.step(st.BatchSize, T), nil
}

func (m *model) step(units, T int) []Work {
	ga := max(m.st.GradAccum, 1)
	var w []Work
	for _, x := range m.microBatch(m.st.rows(units), T, trainPass) {
		x.Calls *= float64(ga)
		w = append(w, x)
	}
	return append(w, m.optimizer()...)
}

// Flops sums the flops of a work list.
func Flops(w []Work) float64 {
	var f float64
	for _, x := range w {
		f += x.Calls * x.Op.Flops()
	}
	return f
}

// ops returns the distinct ops of work lists.
func ops(lists ...[]Work) []Op {
	seen := map[string]bool{}
	var out []Op
	for _, l := range lists {
		for _, x := range l {
			if k := x.Op.Key(); !seen[k] {
				seen[k] = true
				out = append(out, x.Op)
			}
		}
	}
	return out
}

// seconds sums a work list's time by part; ok is false when an op has
// no timing.
func seconds(w []Work, t Timings) (map[string]float64, float64, bool) {
	parts := map[string]float64{}
	var total float64
	for _, x := range w {
		s, ok := t[x.Op.Key()]
		if !ok {
			return nil, 0, false
		}
		parts[x.Part] += x.Calls * s
		total += x.Calls * s
	}
	return parts, total, true
}

// roundT rounds an expected length to a whole token count (at least 1).
func roundT(t float64) int { return max(1, int(math.Round(t))) }
