package llama

import (
	"errors"
	"fmt"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// This file is generation: a prefill of the prompts through the training
// forward pass (keys and values copied into a KV cache), then one token per
// row per step through a decode pass that reads the cache. LoRA adapters
// apply as in training (unmerged); dropout never does.

// GenerateOptions are one generation's settings.
type GenerateOptions struct {
	// MaxNewTokens bounds each row's new tokens (> 0).
	MaxNewTokens int
	// Temperature 0 is greedy decoding; otherwise logits are divided by it
	// before TopK, then TopP, filtering (Hugging Face's order).
	Temperature float64
	TopK        int
	TopP        float64
	// RepetitionPenalty (> 1 penalises; 0 or 1 is off) divides positive and
	// multiplies negative logits of tokens already in the row (prompt and
	// output), as transformers does.
	RepetitionPenalty float64
	// StopTokens end a row when generated (the token is kept in the
	// output).
	StopTokens []int32
	// Seed seeds sampling (a PCG stream per call).
	Seed uint64
}

// Finish reasons.
const (
	FinishStop   = "stop"
	FinishLength = "length"
)

// kvCache holds every layer's keys (after RoPE) and values for B rows of
// up to maxT positions: [B, maxT, Hkv, D] each.
type kvCache struct {
	mem    tensor.Buffer
	k, v   []tensor.Buffer
	lens   tensor.Buffer // I32 [B]
	maxT   int
	logits tensor.Buffer // [B, V]
	last   tensor.Buffer // [B, H] final hidden of each row's last token
}

// Generate continues each prompt (token ids) until a stop token, or
// MaxNewTokens, or onToken returns false for that row. onToken (may be
// nil) sees each new token as it is chosen. It returns each row's new
// tokens and its finish reason ("stop" or "length"). Rows of different
// lengths are generated together; under greedy decoding each row's output
// is the same as generating it alone (sampled rows share one random
// stream, so a sampled row depends on its batch). Results are
// deterministic for a seed and any thread count. Prompt plus new tokens
// beyond max_position_embeddings (or a sliding window) is an error, not a
// truncation. Stop strings are the caller's job (internal/infer). Top-k
// keeps exactly k tokens, ties broken by the lower id (Hugging Face keeps
// every token tied with the k-th).
func (m *Model) Generate(prompts [][]int32, o GenerateOptions, onToken func(row int, tok int32) bool) ([][]int32, []string, error) {
	B := len(prompts)
	if B == 0 {
		return nil, nil, nil
	}
	if o.MaxNewTokens <= 0 {
		return nil, nil, errors.New("llama: generate: MaxNewTokens must be > 0")
	}
	longest := 0
	for i, p := range prompts {
		if len(p) == 0 {
			return nil, nil, fmt.Errorf("llama: generate: prompt %d is empty", i)
		}
		longest = max(longest, len(p))
	}
	maxT := longest + o.MaxNewTokens
	if mp := m.Cfg.MaxPositions; mp > 0 && maxT > mp {
		return nil, nil, fmt.Errorf("llama: generate: %d prompt + %d new tokens exceed max_position_embeddings %d", longest, o.MaxNewTokens, mp)
	}
	if lim := m.Cfg.RopeOriginalMax; lim > 0 && m.Cfg.RopeExtFactors != nil && maxT > lim {
		return nil, nil, fmt.Errorf("llama: generate: %d positions exceed original_max_position_embeddings %d, beyond which longrope's long factors apply, which lathe does not", maxT, lim)
	}
	if m.recompute {
		// Prefill must keep every layer's keys and values.
		m.SetRecompute(false)
		defer m.SetRecompute(true)
	}
	cache, err := m.newCache(B, maxT)
	if err != nil {
		return nil, nil, err
	}
	defer m.freeCache(cache)
	smp := newSampler(o, m.Cfg.VocabSize)
	history := make([][]int32, B)
	for i, p := range prompts {
		history[i] = append([]int32(nil), p...)
	}
	out := make([][]int32, B)
	finish := make([]string, B)
	done := make([]bool, B)
	logits := make([]float32, B*m.Cfg.VocabSize)

	if err := m.prefill(prompts, longest, cache); err != nil {
		return nil, nil, err
	}
	stop := map[int32]bool{}
	for _, t := range o.StopTokens {
		stop[t] = true
	}
	next := make([]int32, B)
	lens := make([]int32, B)
	for i, p := range prompts {
		lens[i] = int32(len(p))
	}
	for step := 0; ; step++ {
		err := tensor.DownloadF32(m.be, logits, cache.logits.View(0, B*m.Cfg.VocabSize))
		m.capLogits(logits)
		if err != nil {
			return nil, nil, fmt.Errorf("llama: generate: %w", err)
		}
		active := false
		for r := range B {
			if done[r] {
				continue
			}
			tok := smp.pick(logits[r*m.Cfg.VocabSize:(r+1)*m.Cfg.VocabSize], history[r])
			out[r] = append(out[r], tok)
			history[r] = append(history[r], tok)
			next[r] = tok
			keep := onToken == nil || onToken(r, tok)
			switch {
			case stop[tok] || !keep:
				done[r], finish[r] = true, FinishStop
			case len(out[r]) >= o.MaxNewTokens:
				done[r], finish[r] = true, FinishLength
			default:
				active = true
			}
		}
		if !active {
			break
		}
		// Finished rows keep decoding a dummy token (their outputs are
		// ignored) so the batch shape stays fixed; their cache entries are
		// never read by the other rows.
		for r := range B {
			if done[r] {
				next[r] = 0
				if int(lens[r]) >= maxT {
					lens[r] = int32(maxT - 1)
				}
			}
			lens[r]++
		}
		if err := m.decodeStep(next, lens, cache); err != nil {
			return nil, nil, err
		}
	}
	return out, finish, nil
}

func (m *Model) newCache(B, maxT int) (*kvCache, error) {
	c := m.Cfg
	kvd := c.KVHeads * c.HeadDim
	per := B * maxT * kvd
	total := 2*c.Layers*per + B*c.VocabSize + B*c.Hidden
	mem, err := m.be.Alloc(tensor.F32, total)
	if err != nil {
		return nil, fmt.Errorf("llama: generate: KV cache (%d floats): %w", total, err)
	}
	kc := &kvCache{mem: mem, maxT: maxT}
	off := 0
	for range c.Layers {
		kc.k = append(kc.k, mem.View(off, per))
		kc.v = append(kc.v, mem.View(off+per, per))
		off += 2 * per
	}
	kc.logits = mem.View(off, B*c.VocabSize)
	kc.last = mem.View(off+B*c.VocabSize, B*c.Hidden)
	if kc.lens, err = m.be.Alloc(tensor.I32, B); err != nil {
		m.be.Free(mem)
		return nil, err
	}
	return kc, nil
}

func (m *Model) freeCache(kc *kvCache) {
	m.be.Free(kc.mem)
	m.be.Free(kc.lens)
}

// prefill runs the prompts (right-padded to T) through the forward pass,
// copies each layer's keys and values into the cache and leaves each
// row's next-token logits in cache.logits.
func (m *Model) prefill(prompts [][]int32, T int, kc *kvCache) error {
	B := len(prompts)
	b := &Batch{B: B, T: T, Tokens: make([]int32, B*T)}
	for r, p := range prompts {
		copy(b.Tokens[r*T:], p)
	}
	st, err := m.upload(b, false)
	if err != nil {
		return fmt.Errorf("llama: generate: %w", err)
	}
	m.forward(st)
	m.lastFwd = nil
	c, a := m.Cfg, m.act
	kvd := c.KVHeads * c.HeadDim
	for l := range a.layers {
		L := &a.layers[l]
		for r, p := range prompts {
			n := len(p) * kvd
			m.be.Convert(kc.k[l].View(r*kc.maxT*kvd, n), L.kr.View(r*T*kvd, n), n) // the cache is float32
			m.be.Convert(kc.v[l].View(r*kc.maxT*kvd, n), L.v.View(r*T*kvd, n), n)
		}
	}
	for r, p := range prompts {
		m.be.Copy(kc.last.View(r*c.Hidden, c.Hidden), a.lnf.View((r*T+len(p)-1)*c.Hidden, c.Hidden))
	}
	tensor.MatMul(m.be, kc.logits.View(0, B*c.VocabSize), kc.last.View(0, B*c.Hidden), m.headW(), B, c.VocabSize, c.Hidden, false, true, 0)
	return m.be.Sync()
}

// decodeStep runs one new token per row (tokens at positions lens−1),
// appends their keys and values to the cache and leaves the next logits.
func (m *Model) decodeStep(tokens, lens []int32, kc *kvCache) error {
	B := len(tokens)
	c, a, be := m.Cfg, m.act, m.be
	H := c.Hidden
	eps := float32(c.RMSNormEps)
	pos := make([]int32, B)
	for r := range B {
		pos[r] = lens[r] - 1
	}
	if err := tensor.UploadI32(be, a.ids.View(0, B), tokens); err != nil {
		return err
	}
	if err := tensor.UploadI32(be, a.pos.View(0, B), pos); err != nil {
		return err
	}
	if err := tensor.UploadI32(be, kc.lens, lens); err != nil {
		return err
	}
	st := &fwdState{B: B, T: 1, n: B}
	x, y := a.layers[0].x.View(0, B*H), a.xf.View(0, B*H)
	be.EmbeddingForward(x, m.embed.W, a.ids.View(0, B), B, H)
	if c.EmbedScale {
		be.Scale(x, m.embedScale(), B*H)
	}
	posB := a.pos.View(0, B)
	for l := range m.layers {
		// layer 0's activations are scratch here
		m.layerCompute(st, l, &a.layers[0], x, y, posB, kc, pos)
		x, y = y, x
	}
	be.RMSNormForward(kc.last, a.rstdf, x, m.nw(m.norm), B, H, eps)
	tensor.MatMul(be, kc.logits.View(0, B*c.VocabSize), kc.last, m.headW(), B, c.VocabSize, H, false, true, 0)
	return be.Sync()
}
