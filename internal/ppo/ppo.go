// Package ppo holds the pieces of Proximal Policy Optimisation for
// language models as TRL's PPOTrainer computes them (the implementation
// LLaMA Factory's ppo stage uses): per-token rewards with a KL penalty
// against a reference policy, generalised advantage estimation, advantage
// whitening, the clipped policy and value losses with their gradients, the
// adaptive KL controller and running score normalisation. Everything is
// float64 math on the host over one response's or one batch's tokens; the
// model passes that produce log-probs and values, and the loop around
// them, live in internal/train.
//
// It does not do: the "full" KL penalty (over the whole vocabulary), or
// per-token score shaping other than the final-token reward.
package ppo

import (
	"fmt"
	"math"
)

// Rollout is one response's per-token data on response tokens t = 0..n-1:
// LogProbs[t] = log π_old(token t | prefix), RefLogProbs[t] under the
// reference policy, Values[t] = V_old(state before token t); Score is the
// reward model's scalar for the whole response.
type Rollout struct {
	LogProbs, RefLogProbs, Values []float64
	Score                         float64
}

// Rewards returns the per-token rewards r_t = −klCoef·kl_t, with Score added
// on the last token, and kl_t: logp − ref ("kl"), |logp − ref| ("abs") or
// ½(logp − ref)² ("mse").
func Rewards(r Rollout, klCoef float64, klPenalty string) (rewards, kl []float64, err error) {
	n := len(r.LogProbs)
	if n == 0 || len(r.RefLogProbs) != n {
		return nil, nil, fmt.Errorf("ppo: %d log-probs and %d reference log-probs", n, len(r.RefLogProbs))
	}
	rewards, kl = make([]float64, n), make([]float64, n)
	for t := range n {
		d := r.LogProbs[t] - r.RefLogProbs[t]
		switch klPenalty {
		case "kl", "":
			kl[t] = d
		case "abs":
			kl[t] = math.Abs(d)
		case "mse":
			kl[t] = 0.5 * d * d
		default:
			return nil, nil, fmt.Errorf("ppo: kl_penalty %q (want kl, abs or mse)", klPenalty)
		}
		rewards[t] = -klCoef * kl[t]
	}
	rewards[n-1] += r.Score
	return rewards, kl, nil
}

// GAE returns the advantages and returns (advantages + values) with
// discount gamma and GAE parameter lambda; the value after the last token
// is 0.
func GAE(rewards, values []float64, gamma, lambda float64) (advantages, returns []float64) {
	n := len(rewards)
	advantages, returns = make([]float64, n), make([]float64, n)
	last := 0.0
	for t := n - 1; t >= 0; t-- {
		next := 0.0
		if t+1 < n {
			next = values[t+1]
		}
		delta := rewards[t] + gamma*next - values[t]
		last = delta + gamma*lambda*last
		advantages[t] = last
	}
	for t := range n {
		returns[t] = advantages[t] + values[t]
	}
	return advantages, returns
}

// Whiten standardises xs: (x − mean)/sqrt(var + 1e-8) with the unbiased
// variance (torch.var's default), as TRL's masked_whiten.
func Whiten(xs []float64) []float64 {
	n := float64(len(xs))
	var mean float64
	for _, x := range xs {
		mean += x
	}
	mean /= n
	var v float64
	for _, x := range xs {
		v += (x - mean) * (x - mean)
	}
	if len(xs) > 1 {
		v /= n - 1
	}
	out := make([]float64, len(xs))
	s := 1 / math.Sqrt(v+1e-8)
	for i, x := range xs {
		out[i] = (x - mean) * s
	}
	return out
}

// PolicyLoss is the clipped surrogate: ratio = exp(logp − oldLogp),
// loss = mean max(−A·ratio, −A·clip(ratio, 1−cliprange, 1+cliprange)). It
// returns the loss, its gradient with respect to each logp, the fraction of
// tokens where the clipped term is the larger, and ½·mean((logp − old)²).
func PolicyLoss(logp, oldLogp, adv []float64, cliprange float64) (loss float64, dLogp []float64, clipFrac, approxKL float64) {
	n := float64(len(logp))
	dLogp = make([]float64, len(logp))
	for t := range logp {
		d := logp[t] - oldLogp[t]
		ratio := math.Exp(d)
		pg1 := -adv[t] * ratio
		cr := math.Max(1-cliprange, math.Min(1+cliprange, ratio))
		pg2 := -adv[t] * cr
		if pg2 > pg1 {
			loss += pg2
			clipFrac++
			// The clipped ratio carries gradient only inside the range.
			if ratio > 1-cliprange && ratio < 1+cliprange {
				dLogp[t] = -adv[t] * ratio / n
			}
		} else {
			loss += pg1
			dLogp[t] = -adv[t] * ratio / n
		}
		approxKL += 0.5 * d * d
	}
	return loss / n, dLogp, clipFrac / n, approxKL / n
}

// ValueLoss is the clipped value loss: with vclip = clip(v, oldV ± cliprange),
// loss = ½·mean max((v − R)², (vclip − R)²). It returns the loss, its
// gradient with respect to each v and the fraction where the clipped term
// is the larger.
func ValueLoss(v, oldV, returns []float64, cliprangeValue float64) (loss float64, dV []float64, clipFrac float64) {
	n := float64(len(v))
	dV = make([]float64, len(v))
	for t := range v {
		lo, hi := oldV[t]-cliprangeValue, oldV[t]+cliprangeValue
		vc := math.Max(lo, math.Min(hi, v[t]))
		l1 := (v[t] - returns[t]) * (v[t] - returns[t])
		l2 := (vc - returns[t]) * (vc - returns[t])
		if l2 > l1 {
			loss += l2
			clipFrac++
			if v[t] > lo && v[t] < hi {
				dV[t] = (vc - returns[t]) / n
			}
		} else {
			loss += l1
			dV[t] = (v[t] - returns[t]) / n
		}
	}
	return 0.5 * loss / n, dV, clipFrac / n
}

// AdaptiveKL is TRL's adaptive KL controller (Ziegler et al. 2019).
type AdaptiveKL struct {
	Value, Target, Horizon float64
}

// Update moves the coefficient towards the target KL after nSteps samples.
func (c *AdaptiveKL) Update(currentKL float64, nSteps int) {
	e := math.Max(-0.2, math.Min(0.2, currentKL/c.Target-1))
	c.Value *= 1 + e*float64(nSteps)/c.Horizon
}

// RunningMoments tracks the mean and variance of every score seen
// (parallel-variance updates, as TRL's RunningMoments).
type RunningMoments struct {
	Mean, Var, Count float64
}

// Update adds a batch and returns its mean and (unbiased) standard
// deviation.
func (m *RunningMoments) Update(xs []float64) (batchMean, batchStd float64) {
	n := float64(len(xs))
	for _, x := range xs {
		batchMean += x
	}
	batchMean /= n
	var batchVar float64
	for _, x := range xs {
		batchVar += (x - batchMean) * (x - batchMean)
	}
	batchVar /= n // biased, as TRL uses for the running update
	delta := batchMean - m.Mean
	total := m.Count + n
	newSum := m.Var*m.Count + batchVar*n + delta*delta*m.Count*n/total
	m.Mean += delta * n / total
	m.Var = newSum / total
	m.Count = total
	if n > 1 {
		batchStd = math.Sqrt(batchVar * n / (n - 1))
	}
	return batchMean, batchStd
}

// NormalizeScores updates m with scores and returns (s − mean)/std over the
// running moments (std of the running variance, unbiased as TRL's), then
// clipped to ±clip when clip > 0.
func NormalizeScores(m *RunningMoments, scores []float64, clip float64) []float64 {
	m.Update(scores)
	std := math.Sqrt(m.Var * m.Count / math.Max(m.Count-1, 1))
	out := make([]float64, len(scores))
	for i, s := range scores {
		out[i] = (s - m.Mean) / (std + 1e-8)
		if clip > 0 {
			out[i] = math.Max(-clip, math.Min(clip, out[i]))
		}
	}
	return out
}
