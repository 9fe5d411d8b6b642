package llama

import (
	"fmt"
	"math"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// This file holds the family switches that need buffers of their own:
// Gemma's RMSNorm scale 1 + w, Baichuan 2's normalised LM head, and the
// gated MLP activation (SwiGLU or GeGLU).

// familyBuffers are derived from the parameters before every forward
// pass (refreshFamily).
type familyBuffers struct {
	mem tensor.Buffer
	// norms holds 1 + w for every RMSNorm weight (Config.NormOffset).
	norms map[*Param]tensor.Buffer
	// head is the row-normalised LM head [V,H], headRstd its rows'
	// 1/‖w‖·sqrt(H) and headG the constant 1/sqrt(H) the normalisation
	// scales by; headGrad collects dL/d(normalised head) for a trainable
	// head, and headSink the unused weight gradient (Config.NormHead).
	head, headRstd, headG, headGrad, headSink tensor.Buffer
}

// headNormEps is the normalisation's epsilon (F.normalize clamps the
// norm at 1e-12; any real row is far above either).
const headNormEps = 1e-30

func (m *Model) allocFamily() error {
	c := m.Cfg
	var norms []*Param
	if c.NormOffset {
		for _, p := range m.Params {
			if p.NoDecay && !m.isAdapter(p) && len(p.Shape) == 1 && isNormName(p.Name) {
				norms = append(norms, p)
			}
		}
	}
	total := 0
	for _, p := range norms {
		total += p.Len()
	}
	V, H := c.VocabSize, c.Hidden
	if c.NormHead {
		total += V*H + V + H + H
		if m.head.Trainable() {
			total += V * H
		}
	}
	if total == 0 {
		return nil
	}
	mem, err := m.be.Alloc(tensor.F32, total)
	if err != nil {
		return fmt.Errorf("llama: family buffers (%d floats): %w", total, err)
	}
	fb := &m.fam
	fb.mem = mem
	off := 0
	take := func(n int) tensor.Buffer { off += n; return mem.View(off-n, n) }
	if len(norms) > 0 {
		fb.norms = map[*Param]tensor.Buffer{}
		for _, p := range norms {
			fb.norms[p] = take(p.Len())
		}
	}
	if c.NormHead {
		fb.head, fb.headRstd, fb.headG, fb.headSink = take(V*H), take(V), take(H), take(H)
		m.be.Fill(fb.headG, float32(1/math.Sqrt(float64(H))))
		if m.head.Trainable() {
			fb.headGrad = take(V * H)
		}
	}
	return nil
}

func isNormName(name string) bool {
	for _, s := range []string{"layernorm.weight", "norm.weight", "q_norm.weight", "k_norm.weight"} {
		if len(name) >= len(s) && name[len(name)-len(s):] == s {
			return true
		}
	}
	return false
}

// refreshFamily recomputes the derived weights from the current
// parameters; forward calls it first.
func (m *Model) refreshFamily() {
	fb, be := &m.fam, m.be
	for p, eff := range fb.norms {
		be.Fill(eff, 1)
		be.Add(eff, eff, p.W, p.Len())
	}
	if m.Cfg.NormHead {
		be.RMSNormForward(fb.head, fb.headRstd, m.head.W, fb.headG, m.Cfg.VocabSize, m.Cfg.Hidden, headNormEps)
	}
}

// nw is the weight an RMSNorm multiplies by: p's values, or 1 + p.
func (m *Model) nw(p *Param) tensor.Buffer {
	if eff, ok := m.fam.norms[p]; ok {
		return eff
	}
	return p.W
}

// headW is the LM head the logits are computed with.
func (m *Model) headW() tensor.Buffer {
	if m.Cfg.NormHead {
		return m.fam.head
	}
	return m.head.W
}

// headGradTarget is where the cross-entropy accumulates the head's
// gradient: the head's own gradient, the normalised head's (zeroed here,
// then carried to the head by finishHeadGrad), or nothing for a frozen
// head.
func (m *Model) headGradTarget() tensor.Buffer {
	if !m.Cfg.NormHead || !m.head.Trainable() {
		return m.head.Grad
	}
	m.be.Zero(m.fam.headGrad)
	return m.fam.headGrad
}

// finishHeadGrad back-propagates the normalised head's gradient through
// the row normalisation into the head's gradient (+=).
func (m *Model) finishHeadGrad() {
	if !m.Cfg.NormHead || !m.head.Trainable() {
		return
	}
	fb, c := &m.fam, m.Cfg
	m.be.RMSNormBackward(fb.headGrad, fb.headSink, fb.headGrad, m.head.W, fb.headG, fb.headRstd, c.VocabSize, c.Hidden)
	m.be.Add(m.head.Grad, m.head.Grad, fb.headGrad, c.VocabSize*c.Hidden)
}

// capLogits applies Gemma 2's final soft cap, cap·tanh(x/cap), to
// materialised logits (the fused cross-entropy applies it itself).
func (m *Model) capLogits(v []float32) {
	c := m.Cfg.FinalSoftCap
	if c == 0 {
		return
	}
	for i, x := range v {
		v[i] = float32(c * math.Tanh(float64(x)/c))
	}
}

// embedScale is Gemma's embedding multiplier, sqrt(hidden) rounded to
// float32 as transformers does.
func (m *Model) embedScale() float32 { return float32(math.Sqrt(float64(m.Cfg.Hidden))) }

// gatedForward is the MLP's act(gate)·up.
func (m *Model) gatedForward(out, gate, up tensor.Buffer, n int) {
	if m.Cfg.Activation == "gelu_tanh" {
		m.be.GeGLUForward(out, gate, up, n)
		return
	}
	m.be.SwiGLUForward(out, gate, up, n)
}

// gatedBackward is gatedForward's backward (dgate, dup overwritten).
func (m *Model) gatedBackward(dgate, dup, dout, gate, up tensor.Buffer, n int) {
	if m.Cfg.Activation == "gelu_tanh" {
		m.be.GeGLUBackward(dgate, dup, dout, gate, up, n)
		return
	}
	m.be.SwiGLUBackward(dgate, dup, dout, gate, up, n)
}
