package train

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/tensor"
)

// Groups splits a model's trainable parameters into the decay group and
// the no-decay group (biases and norm weights), as the HF Trainer does.
func Groups(m *llama.Model) (decay, noDecay []*llama.Param) {
	for _, p := range m.Trainable() {
		if p.NoDecay {
			noDecay = append(noDecay, p)
		} else {
			decay = append(decay, p)
		}
	}
	return decay, noDecay
}

// AdamW is the optimizer: torch.optim.AdamW per parameter group, run by the
// backend's AdamW kernel on runs of parameters, with its first and second
// moments in two backend allocations laid out like the parameters.
type AdamW struct {
	Beta1, Beta2, Eps, WeightDecay float32
	// Step counts the updates applied (the bias correction's t).
	Step int

	be    tensor.Backend
	model *llama.Model
	runs  []adamRun
	m, v  tensor.Buffer
}

// adamRun is consecutive parameters of one group whose weights and
// gradients are adjacent in memory: one kernel call updates them all
// (AdamW is elementwise, so the bits are those of one call each; a small
// model's tensors are each too short to split over the workers).
type adamRun struct {
	w, grad tensor.Buffer
	off     int // into the moments
	noDecay bool
}

// adamRuns groups params (in order, their moments laid out from 0) into
// runs.
func adamRuns(params []*llama.Param) []adamRun {
	var runs []adamRun
	off := 0
	for _, p := range params {
		n := p.Len()
		if k := len(runs) - 1; k >= 0 {
			r := &runs[k]
			w, wok := tensor.Join(r.w, p.W)
			g, gok := tensor.Join(r.grad, p.Grad)
			if r.noDecay == p.NoDecay && wok && gok {
				r.w, r.grad = w, g
				off += n
				continue
			}
		}
		runs = append(runs, adamRun{w: p.W, grad: p.Grad, off: off, noDecay: p.NoDecay})
		off += n
	}
	return runs
}

// NewAdamW allocates zeroed moments for every trainable parameter of
// model.
func NewAdamW(model *llama.Model, beta1, beta2, eps, weightDecay float32) (*AdamW, error) {
	be := model.Backend()
	n := model.NumTrainable()
	if n == 0 {
		return nil, fmt.Errorf("train: the model has no trainable parameters")
	}
	mb, err := be.Alloc(tensor.F32, n)
	if err != nil {
		return nil, fmt.Errorf("train: adamw moments: %w", err)
	}
	vb, err := be.Alloc(tensor.F32, n)
	if err != nil {
		be.Free(mb)
		return nil, fmt.Errorf("train: adamw moments: %w", err)
	}
	return &AdamW{Beta1: beta1, Beta2: beta2, Eps: eps, WeightDecay: weightDecay,
		be: be, model: model, runs: adamRuns(model.Trainable()), m: mb, v: vb}, nil
}

// Free releases the moments.
func (o *AdamW) Free() {
	o.be.Free(o.m)
	o.be.Free(o.v)
}

// Update applies one step with learning rate lr to every parameter from
// its gradient; no-decay parameters get weight decay 0.
func (o *AdamW) Update(lr float32) error {
	o.Step++
	for _, r := range o.runs {
		h := tensor.AdamW{LR: lr, Beta1: o.Beta1, Beta2: o.Beta2, Eps: o.Eps, WeightDecay: o.WeightDecay, Step: o.Step}
		if r.noDecay {
			h.WeightDecay = 0
		}
		n := r.w.Len()
		o.be.AdamW(r.w, r.grad, o.m.View(r.off, n), o.v.View(r.off, n), n, h)
	}
	o.model.Updated() // bfloat16 working copies follow their masters
	if err := o.be.Sync(); err != nil {
		return fmt.Errorf("train: adamw: %w", err)
	}
	return nil
}

// save writes the step and both moments (little-endian F32) to w.
func (o *AdamW) save(w io.Writer) error {
	var hdr [16]byte
	binary.LittleEndian.PutUint64(hdr[:8], uint64(o.Step))
	binary.LittleEndian.PutUint64(hdr[8:], uint64(o.m.Len()))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	buf := make([]float32, o.m.Len())
	for _, b := range []tensor.Buffer{o.m, o.v} {
		if err := tensor.DownloadF32(o.be, buf, b); err != nil {
			return err
		}
		if err := binary.Write(w, binary.LittleEndian, buf); err != nil {
			return err
		}
	}
	return nil
}

// load reads what save wrote.
func (o *AdamW) load(r io.Reader) error {
	var hdr [16]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	step, n := binary.LittleEndian.Uint64(hdr[:8]), binary.LittleEndian.Uint64(hdr[8:])
	if n != uint64(o.m.Len()) || step > math.MaxInt32 {
		return fmt.Errorf("optimizer state holds %d moments at step %d, the model has %d parameters", n, step, o.m.Len())
	}
	buf := make([]float32, n)
	for _, b := range []tensor.Buffer{o.m, o.v} {
		if err := binary.Read(r, binary.LittleEndian, buf); err != nil {
			return err
		}
		if err := tensor.UploadF32(o.be, b, buf); err != nil {
			return err
		}
	}
	o.Step = int(step)
	return nil
}
