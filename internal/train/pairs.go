package train

import (
	"fmt"

	"github.com/lathe-ml/lathe/internal/align"
	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/llama"
)

// pairBatch batches pair units as rows chosen₀, rejected₀, chosen₁, ...
// (samples 2k and 2k+1 of a preference dataset).
func pairBatch(s Samples, units []int, maxLen int) *llama.Batch {
	rows := make([]data.Sample, 0, 2*len(units))
	for _, k := range units {
		rows = append(rows, s.Sample(2*k), s.Sample(2*k+1))
	}
	b, _ := MakeBatch(rows, maxLen)
	return b
}

// rowLengths returns each row's token count within the batch's T.
func rowLengths(s Samples, units []int, T int) []int {
	out := make([]int, 0, 2*len(units))
	for _, k := range units {
		for _, j := range []int{2 * k, 2*k + 1} {
			out = append(out, min(len(s.Sample(j).Tokens), T))
		}
	}
	return out
}

// Reward is the reward-model objective: a scalar head on the last token's
// final hidden state scores both sides of a pair, and the loss is the
// Bradley–Terry −log σ(r_chosen − r_rejected), averaged over pairs. The
// model needs a value head (llama.Options.ValueHead).
type Reward struct {
	Model     *llama.Model
	Pairs     Samples // preference samples: 2k chosen, 2k+1 rejected
	MaxSeqLen int
}

// Len implements Objective: the number of pairs.
func (o *Reward) Len() int { return o.Pairs.Len() / 2 }

// Count implements Objective: pairs weigh equally.
func (o *Reward) Count(units []int) int { return len(units) }

// Step implements Objective.
func (o *Reward) Step(units []int, grad bool, dropoutSeed uint64) (Outcome, error) {
	b := pairBatch(o.Pairs, units, o.MaxSeqLen)
	b.DropoutSeed = dropoutSeed
	vals, err := o.Model.Values(b)
	if err != nil {
		return Outcome{}, fmt.Errorf("reward: %w", err)
	}
	lens := rowLengths(o.Pairs, units, b.T)
	chosen, rejected := make([]float64, len(units)), make([]float64, len(units))
	tokens := 0
	for i := range units {
		for side, dst := range [][]float64{chosen, rejected} {
			r := 2*i + side
			if lens[r] == 0 {
				return Outcome{}, fmt.Errorf("reward: pair %d: an empty sequence", units[i])
			}
			dst[i] = float64(vals[r*b.T+lens[r]-1])
			tokens += lens[r]
		}
	}
	res, err := align.PairwiseReward(chosen, rejected)
	if err != nil {
		return Outcome{}, fmt.Errorf("reward: %w", err)
	}
	if grad {
		dv := make([]float32, b.B*b.T)
		for i := range units {
			dv[2*i*b.T+lens[2*i]-1] = float32(res.DChosen[i])
			dv[(2*i+1)*b.T+lens[2*i+1]-1] = float32(res.DRejected[i])
		}
		if err := o.Model.BackwardValues(dv); err != nil {
			return Outcome{}, fmt.Errorf("reward: %w", err)
		}
	}
	var mc, mr float64
	for i := range units {
		mc += chosen[i]
		mr += rejected[i]
	}
	n := float64(len(units))
	return Outcome{Loss: res.Loss, Count: len(units), Tokens: tokens, Metrics: map[string]float64{
		"accuracy": res.Accuracy, "rewards/chosen": mc / n, "rewards/rejected": mr / n, "rewards/margin": (mc - mr) / n,
	}}, nil
}

// DPO is the direct-preference objective family (sigmoid, ipo, hinge,
// orpo, simpo; see internal/align) on the sums of the response tokens'
// log-probabilities. The reference policy is the starting model:
// ComputeReference scores every pair with it once, before training, so no
// second copy of the weights is held.
type DPO struct {
	Model     *llama.Model
	Pairs     Samples
	MaxSeqLen int
	Config    align.DPOConfig
	// BatchSize is the number of pairs per reference batch (default 4).
	BatchSize int

	ref []align.LogProb // per sample, when the loss uses a reference
}

// Len implements Objective: the number of pairs.
func (o *DPO) Len() int { return o.Pairs.Len() / 2 }

// Count implements Objective: pairs weigh equally.
func (o *DPO) Count(units []int) int { return len(units) }

// logProbs runs the policy on the pairs' rows and returns each row's
// response log-prob sum and count, and the batch (with the losses kept
// for a weighted backward pass).
func (o *DPO) logProbs(units []int, dropoutSeed uint64) ([]align.LogProb, *llama.Batch, error) {
	b := pairBatch(o.Pairs, units, o.MaxSeqLen)
	b.DropoutSeed = dropoutSeed
	losses, err := o.Model.TokenLosses(b)
	if err != nil {
		return nil, nil, err
	}
	out := make([]align.LogProb, b.B)
	for r := range out {
		var sum float64
		n := 0
		for t := range b.T {
			if b.Targets[r*b.T+t] >= 0 {
				sum -= float64(losses[r*b.T+t])
				n++
			}
		}
		out[r] = align.LogProb{Sum: sum, Count: n}
	}
	return out, b, nil
}

// ComputeReference scores every pair with the model as it is now (the
// reference policy), when the loss needs a reference. Call it before
// training starts (and before a resumed run loads its checkpoint).
func (o *DPO) ComputeReference() error {
	if err := o.Config.Validate(); err != nil {
		return err
	}
	if !o.Config.NeedsReference() {
		return nil
	}
	bs := o.BatchSize
	if bs <= 0 {
		bs = 4
	}
	o.ref = make([]align.LogProb, 0, o.Pairs.Len())
	for i := 0; i < o.Len(); i += bs {
		var units []int
		for k := i; k < min(i+bs, o.Len()); k++ {
			units = append(units, k)
		}
		lp, _, err := o.logProbs(units, 0)
		if err != nil {
			return fmt.Errorf("dpo: reference: %w", err)
		}
		o.ref = append(o.ref, lp...)
	}
	return nil
}

// Step implements Objective.
func (o *DPO) Step(units []int, grad bool, dropoutSeed uint64) (Outcome, error) {
	if o.Config.NeedsReference() && len(o.ref) != o.Pairs.Len() {
		return Outcome{}, fmt.Errorf("dpo: reference log-probs not computed (call ComputeReference)")
	}
	lp, b, err := o.logProbs(units, dropoutSeed)
	if err != nil {
		return Outcome{}, fmt.Errorf("dpo: %w", err)
	}
	pairs := make([]align.Pair, len(units))
	tokens := 0
	for i, k := range units {
		p := align.Pair{Chosen: lp[2*i], Rejected: lp[2*i+1]}
		if o.ref != nil {
			p.RefChosen, p.RefRejected = o.ref[2*k], o.ref[2*k+1]
		}
		pairs[i] = p
		tokens += p.Chosen.Count + p.Rejected.Count
	}
	res, met, err := align.DPO(o.Config, pairs)
	if err != nil {
		return Outcome{}, fmt.Errorf("dpo: %w", err)
	}
	if grad {
		// loss_t = −log p_t, so dL/dloss_t = −dL/dSum for the row's
		// response tokens.
		w := make([]float32, b.B*b.T)
		for i := range units {
			for side, d := range []float64{res[i].DChosen, res[i].DRejected} {
				r := 2*i + side
				for t := range b.T {
					if b.Targets[r*b.T+t] >= 0 {
						w[r*b.T+t] = float32(-d)
					}
				}
			}
		}
		if err := o.Model.BackwardWeighted(w); err != nil {
			return Outcome{}, fmt.Errorf("dpo: %w", err)
		}
	}
	return Outcome{Loss: met.Loss, Count: len(units), Tokens: tokens, Metrics: map[string]float64{
		"rewards/chosen": met.RewardsChosen, "rewards/rejected": met.RewardsRejected,
		"rewards/accuracies": met.Accuracy, "rewards/margins": met.Margin,
		"logps/chosen": met.LogpsChosen, "logps/rejected": met.LogpsRejected,
	}}, nil
}
