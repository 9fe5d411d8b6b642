package train

import (
	"fmt"

	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/llama"
)

// Objective is what a run minimises: a loss over units (samples for
// language modelling, preference pairs for reward models and DPO) that the
// trainer shuffles and batches.
type Objective interface {
	// Len returns the number of units one epoch visits.
	Len() int
	// Count returns the weight of a micro-batch of units: the number of
	// trained tokens, or of pairs. Gradient accumulation weights
	// micro-batches by it. A count of 0 skips the micro-batch.
	Count(units []int) int
	// Step computes the micro-batch's mean loss over its Count. With grad
	// it adds (+=) the gradient of that mean to the model's gradients;
	// dropoutSeed (non-zero only when training) seeds adapter dropout.
	Step(units []int, grad bool, dropoutSeed uint64) (Outcome, error)
}

// Outcome is one micro-batch's result.
type Outcome struct {
	Loss  float64 // mean over Count
	Count int
	// Tokens counts the trained tokens (for throughput).
	Tokens int
	// Metrics are further per-micro-batch means (e.g. rewards/chosen),
	// averaged over a step or an evaluation weighted by Count.
	Metrics map[string]float64
}

// LM is the causal language-modelling objective: mean cross-entropy over
// the masked-in target tokens of rows batched by MakeBatch (pretraining,
// SFT with prompt masking).
type LM struct {
	Model     *llama.Model
	Samples   Samples
	MaxSeqLen int

	last  []int
	batch *llama.Batch
	count int
}

// Len implements Objective.
func (o *LM) Len() int { return o.Samples.Len() }

func (o *LM) build(units []int) (*llama.Batch, int) {
	if o.batch != nil && equalInts(units, o.last) {
		return o.batch, o.count
	}
	rows := make([]data.Sample, len(units))
	for i, j := range units {
		rows[i] = o.Samples.Sample(j)
	}
	o.batch, o.count = MakeBatch(rows, o.MaxSeqLen)
	o.last = append(o.last[:0], units...)
	return o.batch, o.count
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Count implements Objective: the trained target tokens.
func (o *LM) Count(units []int) int {
	_, n := o.build(units)
	return n
}

// fwdBwd is satisfied by models that compute the LM head once for the loss
// and its gradient.
type fwdBwd interface {
	ForwardBackward(b *llama.Batch) (float32, error)
}

// Step implements Objective.
func (o *LM) Step(units []int, grad bool, dropoutSeed uint64) (Outcome, error) {
	b, count := o.build(units)
	if count == 0 {
		return Outcome{}, nil
	}
	b.DropoutSeed = dropoutSeed
	defer func() { b.DropoutSeed = 0 }()
	var loss float32
	var err error
	switch {
	case !grad:
		loss, err = o.Model.Forward(b)
	default:
		if fb, ok := any(o.Model).(fwdBwd); ok {
			loss, err = fb.ForwardBackward(b)
		} else if loss, err = o.Model.Forward(b); err == nil {
			err = o.Model.Backward()
		}
	}
	if err != nil {
		return Outcome{}, fmt.Errorf("lm: %w", err)
	}
	return Outcome{Loss: float64(loss), Count: count, Tokens: count}, nil
}
