package llama

import (
	"errors"
	"fmt"
	"math"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// Batch is one step's input: B rows of T tokens.
type Batch struct {
	B, T int
	// Tokens [B*T] are the input ids.
	Tokens []int32
	// Targets [B*T] are PRE-SHIFTED: Targets[b*T+t] is the token position t
	// must predict; negative entries (e.g. -100) are ignored. Nil is
	// allowed for Logits.
	Targets []int32
	// Positions [B*T] are the RoPE positions; nil means 0..T-1 per row.
	Positions []int32
	// Segments [B*T]: packed rows; a token attends only to earlier tokens
	// with the same id. Nil means one segment per row.
	Segments []int32
	// DropoutSeed, when not 0, turns LoRA dropout on for this batch with
	// masks drawn from it (a training micro-batch); 0 means no dropout
	// (evaluation, reference log-probs).
	DropoutSeed uint64
}

// CrossEntropyChunkRows is the number of rows the fused cross-entropy
// computes logits for at a time for a vocabulary of V: 512 while their
// workspace stays within 16M floats (64 MiB, vocabularies up to 32768),
// else 64 (large vocabularies). Larger chunks stream the LM head from
// memory fewer times (stories15M's step: about 6% faster at 256 rows than
// at 64, and again at 512 than at 256, for 31 MiB more peak RSS). It
// depends only on V, never on the batch or the thread count, because the
// dW summation order depends on it.
func CrossEntropyChunkRows(V int) int {
	if 512*V <= 16<<20 {
		return 512
	}
	return 64
}

type layerActs struct {
	x            tensor.Buffer // [n,H] layer input (residual stream)
	ln1, rstd1   tensor.Buffer // [n,H], [n]
	q, k, v      tensor.Buffer // projections [n,Hq*D], [n,Hkv*D]
	qn, kn       tensor.Buffer // after q/k norm (qwen3), else unused
	rstdq, rstdk tensor.Buffer // [n*Hq], [n*Hkv]
	qr, kr       tensor.Buffer // after RoPE: q, k (or qn, kn) rotated in place
	att, lse     tensor.Buffer // [n,Hq*D], [B*Hq*T]
	xmid         tensor.Buffer // [n,H] residual after attention
	ln2, rstd2   tensor.Buffer
	gate, up, sw tensor.Buffer            // [n,I]
	ao, mo       tensor.Buffer            // Gemma 2: attention and MLP outputs before their norms [n,H]
	rstdAO       tensor.Buffer            // [n]
	rstdMO       tensor.Buffer            // [n]
	lu           [numLinear]tensor.Buffer // LoRA x·Aᵀ [n,r] per adapted module
}

type activations struct {
	maxN       int
	mem, imem  tensor.Buffer
	hmem       tensor.Buffer // BF16 activations (Options.BF16Activations)
	ids, tgt   tensor.Buffer // I32 [maxN]
	pos, seg   tensor.Buffer
	layers     []layerActs
	xf         tensor.Buffer // [n,H] final residual
	lnf, rstdf tensor.Buffer
	losses     tensor.Buffer // [n]
	ceWS       tensor.Buffer // [CrossEntropyChunkRows(V)*V]
	// backward scratch
	dres, dtmp, dln tensor.Buffer // [n,H]
	dq, datt        tensor.Buffer // [n,Hq*D]
	dk, dv          tensor.Buffer // [n,Hkv*D]
	dgate, dup, dsw tensor.Buffer // [n,I]
	lin32           tensor.Buffer // a projection's float32 output before it is rounded to a bfloat16 activation [n,max(Hq*D,I)]
	logits          tensor.Buffer // [n,V], allocated by Logits only
	du              tensor.Buffer // LoRA backward [n,r]
	xd, mask        tensor.Buffer // LoRA dropout [n,maxIn] (only with dropout)
	vals, dvals     tensor.Buffer // value head [n]
	rowW            tensor.Buffer // per-token loss weights [n]
	maskHost        []float32
	lossHost        []float32
	st              fwdState
	posHost         []int32
}

type fwdState struct {
	B, T, n  int
	count    int
	hasSeg   bool
	grads    bool
	dropSeed uint64
}

func (m *Model) freeActivations() {
	if a := m.act; a != nil {
		m.be.Free(a.mem)
		m.be.Free(a.hmem)
		m.be.Free(a.imem)
		if !a.logits.IsNil() {
			m.be.Free(a.logits)
		}
		m.act = nil
	}
	m.lastFwd = nil
}

// SetRecompute turns per-layer activation recomputation on or off. On,
// only each layer's input is kept from Forward and Backward re-runs a
// layer's forward before its backward: about 1/3 more compute for
// activation memory of one layer instead of all. Results are bit-identical
// either way. Changing it drops the activations (the next step
// reallocates them).
func (m *Model) SetRecompute(on bool) {
	if on != m.recompute {
		m.freeActivations()
		m.recompute = on
	}
}

// Reserve allocates activations for batches of up to n = B·T tokens. Forward
// calls it when a batch is larger than any before; calling it up front
// keeps every step free of allocation.
func (m *Model) Reserve(n int) error {
	if m.act != nil && m.act.maxN >= n {
		return nil
	}
	m.freeActivations()
	c := m.Cfg
	H, I, V := c.Hidden, c.Intermediate, c.VocabSize
	qd, kvd := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	a := &activations{maxN: n}
	var off, hoff int
	var mem, hmem tensor.Buffer
	take := func(k int) tensor.Buffer {
		off += k
		if mem.IsNil() {
			return tensor.Buffer{}
		}
		return mem.View(off-k, k)
	}
	// takeAct is take for an activation a layer keeps for its backward
	// pass (see Options.BF16Activations): bfloat16 under that option.
	takeAct := take
	if m.opts.BF16Activations {
		takeAct = func(k int) tensor.Buffer {
			hoff += k
			if hmem.IsNil() {
				return tensor.Buffer{}
			}
			return hmem.View(hoff-k, k)
		}
	}
	layout := func() {
		off, hoff = 0, 0
		a.layers = make([]layerActs, c.Layers)
		for l := range a.layers {
			L := &a.layers[l]
			if m.recompute && l > 0 {
				// Only the layer input is kept per layer; the rest is
				// layer 0's storage, refilled in Backward.
				*L = a.layers[0]
				L.x = take(n * H)
				continue
			}
			L.x, L.ln1, L.rstd1 = take(n*H), takeAct(n*H), take(n)
			if c.QKNorm {
				// q and k enter their norms, whose inputs are float32.
				L.q, L.k, L.v = take(n*qd), take(n*kvd), takeAct(n*kvd)
				L.qn, L.kn = takeAct(n*qd), takeAct(n*kvd)
				L.rstdq, L.rstdk = take(n*c.Heads), take(n*c.KVHeads)
			} else {
				L.q, L.k, L.v = takeAct(n*qd), takeAct(n*kvd), takeAct(n*kvd)
			}
			// RoPE runs in place: its backward needs only the positions,
			// so the pre-RoPE q/k (or q/k-norm outputs) are not kept.
			L.qr, L.kr = L.q, L.k
			if c.QKNorm {
				L.qr, L.kr = L.qn, L.kn
			}
			L.att, L.lse = takeAct(n*qd), take(n*c.Heads)
			L.xmid, L.ln2, L.rstd2 = take(n*H), takeAct(n*H), take(n)
			L.gate, L.up, L.sw = takeAct(n*I), takeAct(n*I), takeAct(n*I)
			if c.PostNorms {
				L.ao, L.mo, L.rstdAO, L.rstdMO = take(n*H), take(n*H), take(n), take(n)
			}
			for i := range numLinear {
				if m.adapted(i) {
					L.lu[i] = take(n * m.opts.LoRA.Rank)
				}
			}
		}
		a.xf, a.lnf, a.rstdf, a.losses = take(n*H), take(n*H), take(n), take(n)
		a.ceWS = take(CrossEntropyChunkRows(V) * V)
		a.dres, a.dtmp, a.dln = take(n*H), take(n*H), take(n*H)
		a.dq, a.datt, a.dk, a.dv = take(n*qd), take(n*qd), take(n*kvd), take(n*kvd)
		a.dgate, a.dup, a.dsw = take(n*I), take(n*I), take(n*I)
		a.vals, a.dvals, a.rowW = take(n), take(n), take(n)
		if m.opts.BF16Activations {
			a.lin32 = take(n * max(qd, I))
		}
		if lo := m.opts.LoRA; lo != nil {
			a.du = take(n * lo.Rank)
			if lo.Dropout > 0 {
				maxIn := max(H, qd, I)
				a.xd, a.mask = take(n*maxIn), take(n*maxIn)
			}
		}
	}
	layout()
	var err error
	if mem, err = m.be.Alloc(tensor.F32, off); err != nil {
		return fmt.Errorf("llama: activations for %d tokens (%d floats): %w", n, off, err)
	}
	if hoff > 0 {
		if hmem, err = m.be.Alloc(tensor.BF16, hoff); err != nil {
			m.be.Free(mem)
			return fmt.Errorf("llama: bfloat16 activations for %d tokens (%d values): %w", n, hoff, err)
		}
	}
	layout()
	a.mem, a.hmem = mem, hmem
	if a.imem, err = m.be.Alloc(tensor.I32, 4*n); err != nil {
		m.be.Free(mem)
		m.be.Free(hmem)
		return fmt.Errorf("llama: token buffers: %w", err)
	}
	a.ids, a.tgt, a.pos, a.seg = a.imem.View(0, n), a.imem.View(n, n), a.imem.View(2*n, n), a.imem.View(3*n, n)
	a.lossHost = make([]float32, n)
	a.posHost = make([]int32, n)
	m.act = a
	return nil
}

func (m *Model) checkBatch(b *Batch, needTargets bool) error {
	n := b.B * b.T
	if b.B <= 0 || b.T <= 0 {
		return fmt.Errorf("llama: batch shape [%d,%d]", b.B, b.T)
	}
	if len(b.Tokens) != n {
		return fmt.Errorf("llama: batch has %d tokens, want B·T = %d", len(b.Tokens), n)
	}
	if needTargets && len(b.Targets) != n {
		return fmt.Errorf("llama: batch has %d targets, want B·T = %d", len(b.Targets), n)
	}
	if b.Positions != nil && len(b.Positions) != n {
		return fmt.Errorf("llama: batch has %d positions, want %d", len(b.Positions), n)
	}
	if b.Segments != nil && len(b.Segments) != n {
		return fmt.Errorf("llama: batch has %d segment ids, want %d", len(b.Segments), n)
	}
	V := int32(m.Cfg.VocabSize)
	for i, t := range b.Tokens {
		if t < 0 || t >= V {
			return fmt.Errorf("llama: token %d at index %d outside vocabulary [0,%d)", t, i, V)
		}
	}
	for i, t := range b.Targets {
		if t >= V {
			return fmt.Errorf("llama: target %d at index %d outside vocabulary [0,%d)", t, i, V)
		}
	}
	for i, p := range b.Positions {
		if p < 0 {
			return fmt.Errorf("llama: negative position %d at index %d", p, i)
		}
	}
	if lim := m.Cfg.RopeOriginalMax; lim > 0 && m.Cfg.RopeExtFactors != nil && b.T > lim {
		return fmt.Errorf("llama: sequence length %d exceeds original_max_position_embeddings %d, beyond which longrope switches to its long factors, which lathe does not apply", b.T, lim)
	}
	return nil
}

// upload validates b, reserves activations and uploads the integer inputs.
func (m *Model) upload(b *Batch, needTargets bool) (*fwdState, error) {
	if err := m.checkBatch(b, needTargets); err != nil {
		return nil, err
	}
	n := b.B * b.T
	if err := m.Reserve(n); err != nil {
		return nil, err
	}
	a := m.act
	st := &a.st // kept in the activations so a step allocates nothing
	*st = fwdState{B: b.B, T: b.T, n: n, hasSeg: b.Segments != nil}
	if lo := m.opts.LoRA; lo != nil && lo.Dropout > 0 && !m.adaptersOff {
		st.dropSeed = b.DropoutSeed
	}
	pos := b.Positions
	if pos == nil {
		pos = a.posHost[:n]
		for i := range pos {
			pos[i] = int32(i % b.T)
		}
	}
	var err error
	up := func(dst tensor.Buffer, src []int32) {
		if err == nil {
			err = tensor.UploadI32(m.be, dst.View(0, n), src)
		}
	}
	up(a.ids, b.Tokens)
	up(a.pos, pos)
	if b.Targets != nil {
		up(a.tgt, b.Targets)
		for _, t := range b.Targets {
			if t >= 0 {
				st.count++
			}
		}
	}
	if b.Segments != nil {
		up(a.seg, b.Segments)
	}
	if err != nil {
		return nil, fmt.Errorf("llama: upload batch: %w", err)
	}
	return st, nil
}

// forward runs the decoder up to the final norm (a.lnf).
func (m *Model) forward(st *fwdState) {
	c, a, be := m.Cfg, m.act, m.be
	n, H := st.n, c.Hidden
	eps := float32(c.RMSNormEps)
	m.refreshFamily()
	ids := a.ids.View(0, n)
	x0 := a.layers[0].x.View(0, n*H)
	be.EmbeddingForward(x0, m.embed.W, ids, n, H)
	if c.EmbedScale {
		be.Scale(x0, m.embedScale(), n*H)
	}
	for l := range a.layers {
		next := a.xf
		if l+1 < len(a.layers) {
			next = a.layers[l+1].x
		}
		m.layerForward(st, l, next)
	}
	be.RMSNormForward(a.lnf, a.rstdf, a.xf, m.nw(m.norm), n, H, eps)
}

// attnShape is the attention kernels' description of layer l's attention
// for a batch of B rows of T tokens.
func (m *Model) attnShape(B, T, l int) tensor.Attn {
	c := m.Cfg
	return tensor.Attn{B: B, T: T, Hq: c.Heads, Hkv: c.KVHeads, D: c.HeadDim, Scale: m.attnScale(),
		SoftCap: float32(c.AttnSoftCap), Window: m.window(l), ALiBi: m.alibi}
}

// window is layer l's sliding attention window (0: none).
func (m *Model) window(l int) int {
	if c := m.Cfg; c.SlidingWindow > 0 && (!c.WindowEvenLayers || l%2 == 0) {
		return c.SlidingWindow
	}
	return 0
}

// attnScale is the score scale: 1/sqrt(head_dim) (or
// query_pre_attn_scalar), times the square of longrope's cos/sin factor
// (which scales both q and k).
func (m *Model) attnScale() float32 {
	s := 1 / math.Sqrt(float64(m.Cfg.HeadDim))
	if q := m.Cfg.QueryScale; q > 0 {
		s = 1 / math.Sqrt(q)
	}
	if f := m.Cfg.RopeAttnFactor; f != 0 {
		s *= f * f
	}
	return float32(s)
}

// layerForward runs decoder layer l from its input a.layers[l].x, writing
// its activations and its output to next.
func (m *Model) layerForward(st *fwdState, l int, next tensor.Buffer) {
	a := m.act
	L := &a.layers[l]
	m.layerCompute(st, l, L, L.x, next, a.pos.View(0, st.n), nil, nil)
}

// layerCompute runs decoder layer l on x (st.n rows) into out, keeping its
// activations in L. Without a KV cache (kc nil) attention is the training
// kernel over the batch; with one, each row's new key and value are
// written at position pos[r] of the cache and its query attends to it.
func (m *Model) layerCompute(st *fwdState, l int, L *layerActs, x, out, posBuf tensor.Buffer, kc *kvCache, pos []int32) {
	c, a, be := m.Cfg, m.act, m.be
	n, H, I, D := st.n, c.Hidden, c.Intermediate, c.HeadDim
	eps := float32(c.RMSNormEps)
	P := &m.layers[l]
	rot := c.rotaryDim()
	// attention block
	be.RMSNormForward(L.ln1, L.rstd1, x, m.nw(P.ln1), n, H, eps)
	m.linear(st, l, linQ, L.q, L.ln1)
	m.linear(st, l, linK, L.k, L.ln1)
	m.linear(st, l, linV, L.v, L.ln1)
	qin, kin := L.q, L.k
	if c.QKNorm {
		be.RMSNormForward(L.qn, L.rstdq, L.q, m.nw(P.qn), n*c.Heads, D, eps)
		be.RMSNormForward(L.kn, L.rstdk, L.k, m.nw(P.kn), n*c.KVHeads, D, eps)
		qin, kin = L.qn, L.kn
	}
	if !c.ALiBi {
		be.RoPEForward(L.qr, qin, posBuf, m.invFreq, n, c.Heads, D, rot)
		be.RoPEForward(L.kr, kin, posBuf, m.invFreq, n, c.KVHeads, D, rot)
	}
	if kc == nil {
		seg := tensor.Buffer{}
		if st.hasSeg {
			seg = a.seg.View(0, n)
		}
		be.AttentionForward(L.att, L.lse, L.qr, L.kr, L.v, seg, m.attnShape(st.B, st.T, l))
	} else {
		kvd := c.KVHeads * D
		for r := range n {
			at := (r*kc.maxT + int(pos[r])) * kvd
			be.Convert(kc.k[l].View(at, kvd), L.kr.View(r*kvd, kvd), kvd) // the cache is float32
			be.Convert(kc.v[l].View(at, kvd), L.v.View(r*kvd, kvd), kvd)
		}
		be.AttentionDecode(L.att, L.qr, kc.k[l], kc.v[l], kc.lens,
			tensor.AttnDecode{B: n, MaxT: kc.maxT, Hq: c.Heads, Hkv: c.KVHeads, D: D, Scale: m.attnScale(),
				SoftCap: float32(c.AttnSoftCap), Window: m.window(l), ALiBi: m.alibi})
	}
	if c.PostNorms {
		m.linear(st, l, linO, L.ao, L.att)
		be.RMSNormForward(L.xmid, L.rstdAO, L.ao, m.nw(P.aon), n, H, eps)
	} else {
		m.linear(st, l, linO, L.xmid, L.att)
	}
	be.Add(L.xmid, L.xmid, x, n*H)
	// MLP block
	be.RMSNormForward(L.ln2, L.rstd2, L.xmid, m.nw(P.ln2), n, H, eps)
	m.linear(st, l, linGate, L.gate, L.ln2)
	m.linear(st, l, linUp, L.up, L.ln2)
	m.gatedForward(L.sw, L.gate, L.up, n*I)
	if c.PostNorms {
		m.linear(st, l, linDown, L.mo, L.sw)
		be.RMSNormForward(out, L.rstdMO, L.mo, m.nw(P.mon), n, H, eps)
	} else {
		m.linear(st, l, linDown, out, L.sw)
	}
	be.Add(out, out, L.xmid, n*H)
}

// Forward runs the model on b and returns the mean cross-entropy over the
// non-ignored targets (0 if every target is ignored). Activations are kept
// for Backward.
func (m *Model) Forward(b *Batch) (float32, error) {
	st, err := m.upload(b, true)
	if err != nil {
		return 0, err
	}
	m.forward(st)
	a, c := m.act, m.Cfg
	m.be.CrossEntropy(a.losses, tensor.Buffer{}, tensor.Buffer{}, a.lnf, m.headW(), a.tgt,
		a.ceWS, tensor.CrossEntropy{N: st.n, C: c.Hidden, V: c.VocabSize, ChunkRows: CrossEntropyChunkRows(c.VocabSize), SoftCap: float32(c.FinalSoftCap)})
	loss, err := m.meanLoss(st)
	if err != nil {
		return 0, err
	}
	m.lastFwd = st
	return loss, nil
}

// Backward accumulates (+=) into every parameter's gradient the gradient
// of the loss the last Forward returned. It recomputes the LM-head logits;
// a training loop that wants both should call ForwardBackward.
func (m *Model) Backward() error {
	st := m.lastFwd
	if st == nil {
		return errors.New("llama: Backward without a preceding Forward")
	}
	m.lastFwd = nil
	if st.count == 0 {
		return nil
	}
	m.lossAndGrad(st)
	return m.backward(st)
}

// ForwardBackward is Forward followed by Backward with the LM head's
// logits computed once: the fused cross-entropy yields the loss and its
// gradient in one pass. Gradients are accumulated (+=).
func (m *Model) ForwardBackward(b *Batch) (float32, error) {
	st, err := m.upload(b, true)
	if err != nil {
		return 0, err
	}
	m.lastFwd = nil
	m.forward(st)
	if st.count == 0 {
		return 0, m.be.Sync()
	}
	m.lossAndGrad(st)
	loss, err := m.meanLoss(st)
	if err != nil {
		return 0, err
	}
	return loss, m.backward(st)
}

// lossAndGrad runs the fused LM head + cross-entropy with gradients: the
// per-token losses, dln = dL/d(final norm output), and the head's weight
// gradient accumulated.
func (m *Model) lossAndGrad(st *fwdState) {
	a, c := m.act, m.Cfg
	m.be.CrossEntropy(a.losses, a.dln, m.headGradTarget(), a.lnf, m.headW(), a.tgt, a.ceWS,
		tensor.CrossEntropy{N: st.n, C: c.Hidden, V: c.VocabSize, GradScale: 1 / float32(st.count), ChunkRows: CrossEntropyChunkRows(c.VocabSize), SoftCap: float32(c.FinalSoftCap)})
	m.finishHeadGrad()
}

// gradOrSink returns p's gradient, or a scratch sink for a frozen norm
// weight (whose backward kernel computes it alongside the input gradient).
func (m *Model) gradOrSink(p *Param) tensor.Buffer {
	if p.Trainable() {
		return p.Grad
	}
	return m.normSink.View(0, p.Len())
}

// meanLoss downloads the per-token losses and averages them over the
// counted targets in a fixed order.
func (m *Model) meanLoss(st *fwdState) (float32, error) {
	a := m.act
	if err := m.be.Sync(); err != nil {
		return 0, fmt.Errorf("llama: forward: %w", err)
	}
	losses := a.lossHost[:st.n]
	if err := tensor.DownloadF32(m.be, losses, a.losses.View(0, st.n)); err != nil {
		return 0, fmt.Errorf("llama: forward: %w", err)
	}
	if st.count == 0 {
		return 0, nil
	}
	var sum float64
	for _, l := range losses {
		sum += float64(l)
	}
	return float32(sum / float64(st.count)), nil
}

// backward runs the decoder's backward pass from dln (set by lossAndGrad).
func (m *Model) backward(st *fwdState) error {
	c, a, be := m.Cfg, m.act, m.be
	n, H, I, D := st.n, c.Hidden, c.Intermediate, c.HeadDim
	seg := tensor.Buffer{}
	if st.hasSeg {
		seg = a.seg.View(0, n)
	}
	pos := a.pos.View(0, n)
	rot := c.rotaryDim()

	be.RMSNormBackward(a.dres, m.gradOrSink(m.norm), a.dln, a.xf, m.nw(m.norm), a.rstdf, n, H)

	for l := len(a.layers) - 1; l >= m.stopLayer; l-- {
		L, P := &a.layers[l], &m.layers[l]
		// Below the lowest trainable layer nothing needs this layer's
		// input gradient.
		needInput := l > m.stopLayer || m.embed.Trainable()
		if m.recompute && l+1 < len(a.layers) {
			// Refill the shared activations with layer l's; the output
			// (identical to the stored input of layer l+1) goes to dtmp,
			// which is free here.
			m.layerForward(st, l, a.dtmp)
		}
		// MLP block: dres is dL/d(layer output).
		dy := a.dres
		if c.PostNorms {
			be.RMSNormBackward(a.dtmp, m.gradOrSink(P.mon), a.dres, L.mo, m.nw(P.mon), L.rstdMO, n, H)
			dy = a.dtmp
		}
		m.linearBackward(st, l, linDown, a.dsw, dy, L.sw, false)
		m.gatedBackward(a.dgate, a.dup, a.dsw, L.gate, L.up, n*I)
		m.linearBackward(st, l, linGate, a.dln, a.dgate, L.ln2, false)
		m.linearBackward(st, l, linUp, a.dln, a.dup, L.ln2, true)
		be.RMSNormBackward(a.dtmp, m.gradOrSink(P.ln2), a.dln, L.xmid, m.nw(P.ln2), L.rstd2, n, H)
		be.Add(a.dres, a.dres, a.dtmp, n*H) // now dL/d xmid
		// attention block
		dy = a.dres
		if c.PostNorms {
			be.RMSNormBackward(a.dtmp, m.gradOrSink(P.aon), a.dres, L.ao, m.nw(P.aon), L.rstdAO, n, H)
			dy = a.dtmp
		}
		m.linearBackward(st, l, linO, a.datt, dy, L.att, false)
		be.AttentionBackward(a.dq, a.dk, a.dv, a.datt, L.qr, L.kr, L.v, L.att, L.lse, seg, m.attnShape(st.B, st.T, l))
		if !c.ALiBi {
			be.RoPEBackward(a.dq, a.dq, pos, m.invFreq, n, c.Heads, D, rot)
			be.RoPEBackward(a.dk, a.dk, pos, m.invFreq, n, c.KVHeads, D, rot)
		}
		if c.QKNorm {
			be.RMSNormBackward(a.dq, m.gradOrSink(P.qn), a.dq, L.q, m.nw(P.qn), L.rstdq, n*c.Heads, D)
			be.RMSNormBackward(a.dk, m.gradOrSink(P.kn), a.dk, L.k, m.nw(P.kn), L.rstdk, n*c.KVHeads, D)
		}
		dln := a.dln
		if !needInput && !P.ln1.Trainable() {
			dln = tensor.Buffer{}
		}
		m.linearBackward(st, l, linQ, dln, a.dq, L.ln1, false)
		m.linearBackward(st, l, linK, dln, a.dk, L.ln1, true)
		m.linearBackward(st, l, linV, dln, a.dv, L.ln1, true)
		if dln.IsNil() {
			continue
		}
		be.RMSNormBackward(a.dtmp, m.gradOrSink(P.ln1), a.dln, L.x, m.nw(P.ln1), L.rstd1, n, H)
		be.Add(a.dres, a.dres, a.dtmp, n*H) // now dL/d x_l
	}
	if m.embed.Trainable() {
		if c.EmbedScale {
			be.Scale(a.dres, m.embedScale(), n*H)
		}
		be.EmbeddingBackward(m.embed.Grad, a.dres, a.ids.View(0, n), n, H)
	}
	if err := be.Sync(); err != nil {
		return fmt.Errorf("llama: backward: %w", err)
	}
	return nil
}

// Logits runs the model on b (targets not needed) and returns the logits
// [B·T·V], materialising them on the backend (meant for tests, evaluation
// of small models and generation).
func (m *Model) Logits(b *Batch) ([]float32, error) {
	st, err := m.upload(b, false)
	if err != nil {
		return nil, err
	}
	m.forward(st)
	a, c := m.act, m.Cfg
	if a.logits.IsNil() || a.logits.Len() < st.n*c.VocabSize {
		if !a.logits.IsNil() {
			m.be.Free(a.logits)
		}
		if a.logits, err = m.be.Alloc(tensor.F32, a.maxN*c.VocabSize); err != nil {
			a.logits = tensor.Buffer{}
			return nil, fmt.Errorf("llama: logits buffer: %w", err)
		}
	}
	lg := a.logits.View(0, st.n*c.VocabSize)
	tensor.MatMul(m.be, lg, a.lnf, m.headW(), st.n, c.VocabSize, c.Hidden, false, true, 0)
	out := make([]float32, lg.Len())
	if err := tensor.DownloadF32(m.be, out, lg); err != nil {
		return nil, fmt.Errorf("llama: logits: %w", err)
	}
	m.capLogits(out)
	m.lastFwd = nil
	return out, nil
}

// TokenLosses runs the model on b and returns the per-position
// cross-entropy (−log p of each target; 0 where the target is ignored),
// B·T values valid until the next call. Activations are kept for
// BackwardWeighted.
func (m *Model) TokenLosses(b *Batch) ([]float32, error) {
	if _, err := m.Forward(b); err != nil {
		return nil, err
	}
	return m.act.lossHost[:b.B*b.T], nil
}

// BackwardWeighted accumulates into the gradients the gradient of
// Σ_t weights[t]·loss_t over the last TokenLosses (or Forward) batch: a
// loss that is any function of per-sequence log-prob sums (DPO, ORPO,
// SimPO) passes its derivative with respect to each sequence's sum,
// negated, as the weight of that sequence's tokens.
func (m *Model) BackwardWeighted(weights []float32) error {
	st := m.lastFwd
	if st == nil {
		return errors.New("llama: BackwardWeighted without a preceding TokenLosses")
	}
	if len(weights) != st.n {
		return fmt.Errorf("llama: %d weights for %d positions", len(weights), st.n)
	}
	m.lastFwd = nil
	a, c := m.act, m.Cfg
	if err := tensor.UploadF32(m.be, a.rowW.View(0, st.n), weights); err != nil {
		return fmt.Errorf("llama: weights: %w", err)
	}
	m.be.CrossEntropy(a.losses, a.dln, m.headGradTarget(), a.lnf, m.headW(), a.tgt, a.ceWS,
		tensor.CrossEntropy{N: st.n, C: c.Hidden, V: c.VocabSize, GradScale: 1, ChunkRows: CrossEntropyChunkRows(c.VocabSize), RowScale: a.rowW.View(0, st.n), SoftCap: float32(c.FinalSoftCap)})
	m.finishHeadGrad()
	return m.backward(st)
}

// Values runs the model on b (targets not needed) and returns the value
// head's output at every position, v = h·wᵀ + bias on the final hidden
// state h (B·T values, valid until the next call). The model must have
// been made with Options.ValueHead. Activations are kept for
// BackwardValues.
func (m *Model) Values(b *Batch) ([]float32, error) {
	if m.vhead == nil {
		return nil, errors.New("llama: the model has no value head")
	}
	st, err := m.upload(b, false)
	if err != nil {
		return nil, err
	}
	m.forward(st)
	a := m.act
	v := a.vals.View(0, st.n)
	tensor.MatMul(m.be, v, a.lnf, m.vhead.W, st.n, 1, m.Cfg.Hidden, false, true, 0)
	m.be.AddBias(v, m.vheadB.W, st.n, 1)
	out := a.lossHost[:st.n]
	if err := tensor.DownloadF32(m.be, out, v); err != nil {
		return nil, fmt.Errorf("llama: values: %w", err)
	}
	m.lastFwd = st
	return out, nil
}

// BackwardValues accumulates into the gradients the gradient of
// Σ_t dv[t]·v_t for the values of the last Values call (dv holds dL/dv).
func (m *Model) BackwardValues(dv []float32) error {
	st := m.lastFwd
	if st == nil || m.vhead == nil {
		return errors.New("llama: BackwardValues without a preceding Values")
	}
	if len(dv) != st.n {
		return fmt.Errorf("llama: %d value gradients for %d positions", len(dv), st.n)
	}
	m.lastFwd = nil
	a, be, H := m.act, m.be, m.Cfg.Hidden
	d := a.dvals.View(0, st.n)
	if err := tensor.UploadF32(be, d, dv); err != nil {
		return fmt.Errorf("llama: value gradients: %w", err)
	}
	tensor.MatMul(be, a.dln, d, m.vhead.W, st.n, H, 1, false, false, 0) // dh = dv·w
	tensor.MatMul(be, m.vhead.Grad, d, a.lnf, 1, H, st.n, true, false, 1)
	be.BiasGrad(m.vheadB.Grad, d, st.n, 1)
	return m.backward(st)
}
