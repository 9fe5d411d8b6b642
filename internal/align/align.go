package align

import (
	"errors"
	"fmt"
	"math"
)

// Loss names accepted in DPOConfig.Loss (LLaMA Factory's pref_loss values).
const (
	LossSigmoid = "sigmoid"
	LossIPO     = "ipo"
	LossHinge   = "hinge"
	LossORPO    = "orpo"
	LossSimPO   = "simpo"
)

// Defaults applied when the corresponding DPOConfig field is zero; they are
// LLaMA Factory's defaults for pref_beta and simpo_gamma.
const (
	DefaultBeta       = 0.1
	DefaultSimPOGamma = 0.5
)

// ORPOLogProbCeiling is the largest average log-prob fed to ORPO's
// log(1 − exp(π)) term. An average log-prob of (or, through rounding, above)
// zero would make that term −Inf (or NaN) and the log-odds infinite; inside
// that term only, π is replaced by min(π, ORPOLogProbCeiling), so for
// π > ORPOLogProbCeiling the term is a constant (≈ −16.1) and contributes no
// gradient, as torch.clamp(π, max=ORPOLogProbCeiling) would. The other uses
// of π in ORPO (the log-prob difference, the SFT term) are not clamped.
const ORPOLogProbCeiling = -1e-7

// LogProb summarises one sequence under one model.
type LogProb struct {
	Sum   float64 // sum of log p over the response tokens
	Count int     // number of response tokens
}

// DPOConfig selects and parameterises the preference loss.
type DPOConfig struct {
	// Loss is one of "sigmoid" (the default when empty), "ipo", "hinge",
	// "orpo", "simpo".
	Loss string
	// Beta is the inverse temperature β; DefaultBeta when 0.
	Beta float64
	// LabelSmoothing is cDPO's ε, sigmoid only, in [0, 0.5):
	// loss = −(1−ε)·logσ(βh) − ε·logσ(−βh).
	LabelSmoothing float64
	// SimPOGamma is SimPO's target reward margin γ, simpo only;
	// DefaultSimPOGamma when 0.
	SimPOGamma float64
	// FTX weighs an added SFT term FTX·(−average log-prob of chosen)
	// (LLaMA Factory's pref_ftx); 0 turns it off. Not allowed with orpo,
	// whose loss already contains that term with weight one.
	FTX float64
}

func (c DPOConfig) loss() string {
	if c.Loss == "" {
		return LossSigmoid
	}
	return c.Loss
}

func (c DPOConfig) beta() float64 {
	if c.Beta == 0 {
		return DefaultBeta
	}
	return c.Beta
}

func (c DPOConfig) gamma() float64 {
	if c.SimPOGamma == 0 {
		return DefaultSimPOGamma
	}
	return c.SimPOGamma
}

// averaged reports whether the loss uses per-token average log-probs
// (LLaMA Factory divides by the valid length for ipo, orpo and simpo).
func (c DPOConfig) averaged() bool {
	switch c.loss() {
	case LossIPO, LossORPO, LossSimPO:
		return true
	}
	return false
}

// NeedsReference reports whether the loss uses the reference model's
// log-probs: sigmoid, ipo and hinge do; orpo and simpo do not. Unknown loss
// names report false (Validate rejects them).
func (c DPOConfig) NeedsReference() bool {
	switch c.loss() {
	case LossSigmoid, LossIPO, LossHinge:
		return true
	}
	return false
}

// Validate checks the configuration: a known loss name, finite
// non-negative beta, gamma and ftx, label smoothing in [0, 0.5) and only with
// sigmoid, and no ftx with orpo.
func (c DPOConfig) Validate() error {
	loss := c.loss()
	switch loss {
	case LossSigmoid, LossIPO, LossHinge, LossORPO, LossSimPO:
	default:
		return fmt.Errorf("align: unknown preference loss %q (want sigmoid, ipo, hinge, orpo or simpo)", c.Loss)
	}
	if !isFinite(c.Beta) || c.Beta < 0 {
		return fmt.Errorf("align: beta must be a finite number >= 0 (0 means %g), got %g", DefaultBeta, c.Beta)
	}
	if !isFinite(c.LabelSmoothing) || c.LabelSmoothing < 0 || c.LabelSmoothing >= 0.5 {
		return fmt.Errorf("align: label smoothing must be in [0, 0.5), got %g", c.LabelSmoothing)
	}
	if c.LabelSmoothing != 0 && loss != LossSigmoid {
		return fmt.Errorf("align: label smoothing is only valid for the sigmoid loss, not %s", loss)
	}
	if !isFinite(c.SimPOGamma) || c.SimPOGamma < 0 {
		return fmt.Errorf("align: simpo gamma must be a finite number >= 0 (0 means %g), got %g", DefaultSimPOGamma, c.SimPOGamma)
	}
	if !isFinite(c.FTX) || c.FTX < 0 {
		return fmt.Errorf("align: ftx must be a finite number >= 0, got %g", c.FTX)
	}
	if c.FTX != 0 && loss == LossORPO {
		return errors.New("align: ftx cannot be used with orpo: the orpo loss already contains the SFT term")
	}
	return nil
}

// Pair is one preference example: the policy's log-probs of the chosen and
// rejected responses and, for losses that need it, the reference model's.
// RefChosen and RefRejected are ignored when !NeedsReference.
type Pair struct {
	Chosen, Rejected       LogProb
	RefChosen, RefRejected LogProb
}

// PairResult is one pair's share of a DPO batch.
type PairResult struct {
	// Loss is this pair's loss (the batch loss is the mean of these).
	Loss float64
	// DChosen and DRejected are the gradients of the batch's MEAN loss with
	// respect to Chosen.Sum and Rejected.Sum (already divided by the number
	// of pairs).
	DChosen, DRejected float64
	// ChosenReward and RejectedReward are the implicit rewards LLaMA Factory
	// logs: β·(π − ref) for the reference losses, β·π for orpo and simpo,
	// with π summed or averaged as the loss uses it.
	ChosenReward, RejectedReward float64
}

// Metrics are batch means, named after LLaMA Factory's logged metrics.
type Metrics struct {
	Loss            float64 // mean loss (the value DPO's gradients differentiate)
	RewardsChosen   float64 // rewards/chosen
	RewardsRejected float64 // rewards/rejected
	Accuracy        float64 // rewards/accuracies: fraction with chosen reward > rejected reward
	Margin          float64 // rewards/margins: mean of chosen reward − rejected reward
	LogpsChosen     float64 // logps/chosen: mean policy log-prob of chosen (summed or averaged as the loss uses it)
	LogpsRejected   float64 // logps/rejected
}

// side resolves one LogProb to the value the loss uses (sum or average) and
// the derivative of that value with respect to Sum.
func side(lp LogProb, avg bool, i int, what string) (v, dv float64, err error) {
	if !isFinite(lp.Sum) {
		return 0, 0, fmt.Errorf("align: pair %d: %s log-prob sum is %g, want a finite number", i, what, lp.Sum)
	}
	if lp.Count < 0 {
		return 0, 0, fmt.Errorf("align: pair %d: %s token count is %d, want >= 0", i, what, lp.Count)
	}
	if !avg {
		return lp.Sum, 1, nil
	}
	if lp.Count == 0 {
		return 0, 0, fmt.Errorf("align: pair %d: %s has 0 tokens; cannot average its log-prob", i, what)
	}
	n := float64(lp.Count)
	return lp.Sum / n, 1 / n, nil
}

// DPO computes each pair's loss, gradient and rewards, and the batch
// metrics. The batch loss is the mean over pairs and every returned gradient
// is of that mean. It returns an error for an invalid config, an empty
// batch, a non-finite log-prob, a negative token count, or a zero token count
// where an average is needed (naming the pair index).
func DPO(c DPOConfig, pairs []Pair) ([]PairResult, Metrics, error) {
	if err := c.Validate(); err != nil {
		return nil, Metrics{}, err
	}
	if len(pairs) == 0 {
		return nil, Metrics{}, errors.New("align: dpo: no pairs")
	}
	loss, beta, avg := c.loss(), c.beta(), c.averaged()
	n := float64(len(pairs))
	res := make([]PairResult, len(pairs))
	var m Metrics
	for i, p := range pairs {
		pc, dpc, err := side(p.Chosen, avg, i, "chosen")
		if err != nil {
			return nil, Metrics{}, err
		}
		pr, dpr, err := side(p.Rejected, avg, i, "rejected")
		if err != nil {
			return nil, Metrics{}, err
		}
		var rc, rr float64
		if c.NeedsReference() {
			if rc, _, err = side(p.RefChosen, avg, i, "reference chosen"); err != nil {
				return nil, Metrics{}, err
			}
			if rr, _, err = side(p.RefRejected, avg, i, "reference rejected"); err != nil {
				return nil, Metrics{}, err
			}
		}

		// l is the pair loss; gc, gr its derivatives w.r.t. pc, pr.
		var l, gc, gr float64
		switch loss {
		case LossSigmoid:
			h := (pc - pr) - (rc - rr)
			x := beta * h
			ls := c.LabelSmoothing
			l = -(1-ls)*logSigmoid(x) - ls*logSigmoid(-x)
			dx := -(1-ls)*sigmoid(-x) + ls*sigmoid(x)
			gc, gr = beta*dx, -beta*dx
		case LossHinge:
			h := (pc - pr) - (rc - rr)
			z := 1 - beta*h
			if z > 0 {
				l, gc, gr = z, -beta, beta
			}
		case LossIPO:
			h := (pc - pr) - (rc - rr)
			d := h - 1/(2*beta)
			l = d * d
			gc, gr = 2*d, -2*d
		case LossSimPO:
			x := beta * ((pc - pr) - c.gamma()/beta)
			l = -logSigmoid(x)
			dx := -sigmoid(-x)
			gc, gr = beta*dx, -beta*dx
		case LossORPO:
			lc, dlc := log1mexpClamped(pc)
			lr, dlr := log1mexpClamped(pr)
			logOdds := (pc - pr) - (lc - lr)
			l = -pc + beta*(-logSigmoid(logOdds))
			dlo := -beta * sigmoid(-logOdds)
			gc = -1 + dlo*(1-dlc)
			gr = dlo * (-1 + dlr)
		}
		dChosen, dRejected := gc*dpc, gr*dpr
		if c.FTX > 0 {
			// -FTX * average chosen log-prob; the average needs the count
			// even where the loss itself uses sums.
			a, da, err := side(p.Chosen, true, i, "chosen (for ftx)")
			if err != nil {
				return nil, Metrics{}, err
			}
			l += c.FTX * -a
			dChosen += -c.FTX * da
		}

		var cr, rj float64
		if c.NeedsReference() {
			cr, rj = beta*(pc-rc), beta*(pr-rr)
		} else {
			cr, rj = beta*pc, beta*pr
		}
		res[i] = PairResult{
			Loss:           l,
			DChosen:        dChosen / n,
			DRejected:      dRejected / n,
			ChosenReward:   cr,
			RejectedReward: rj,
		}
		m.Loss += l
		m.RewardsChosen += cr
		m.RewardsRejected += rj
		if cr > rj {
			m.Accuracy++
		}
		m.Margin += cr - rj
		m.LogpsChosen += pc
		m.LogpsRejected += pr
	}
	m.Loss /= n
	m.RewardsChosen /= n
	m.RewardsRejected /= n
	m.Accuracy /= n
	m.Margin /= n
	m.LogpsChosen /= n
	m.LogpsRejected /= n
	return res, m, nil
}

// RewardResult is the pairwise reward-model loss of a batch.
type RewardResult struct {
	Loss     float64 // mean over pairs of −logσ(chosen − rejected)
	Accuracy float64 // fraction of pairs with chosen > rejected
	// DChosen[i] and DRejected[i] are the gradients of the mean loss with
	// respect to chosen[i] and rejected[i].
	DChosen, DRejected []float64
}

// PairwiseReward computes the Bradley–Terry loss of a reward model (LLaMA
// Factory's PairwiseTrainer): loss = mean(−logσ(chosen − rejected)), with
// the scalar scores of the value head, and its gradients. chosen and
// rejected must have the same non-zero length and finite values.
func PairwiseReward(chosen, rejected []float64) (RewardResult, error) {
	if len(chosen) != len(rejected) {
		return RewardResult{}, fmt.Errorf("align: pairwise reward: %d chosen scores but %d rejected", len(chosen), len(rejected))
	}
	if len(chosen) == 0 {
		return RewardResult{}, errors.New("align: pairwise reward: no pairs")
	}
	n := float64(len(chosen))
	r := RewardResult{DChosen: make([]float64, len(chosen)), DRejected: make([]float64, len(chosen))}
	for i := range chosen {
		c, j := chosen[i], rejected[i]
		if !isFinite(c) || !isFinite(j) {
			return RewardResult{}, fmt.Errorf("align: pairwise reward: pair %d: scores %g and %g, want finite numbers", i, c, j)
		}
		x := c - j
		r.Loss += -logSigmoid(x)
		g := -sigmoid(-x) / n
		r.DChosen[i], r.DRejected[i] = g, -g
		if c > j {
			r.Accuracy++
		}
	}
	r.Loss /= n
	r.Accuracy /= n
	return r, nil
}

func isFinite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// logSigmoid is log σ(x), computed without overflow or cancellation.
func logSigmoid(x float64) float64 {
	if x >= 0 {
		return -math.Log1p(math.Exp(-x))
	}
	return x - math.Log1p(math.Exp(x))
}

// sigmoid is σ(x) = 1/(1+exp(−x)), computed without overflow.
func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// log1mexpClamped returns log(1 − exp(a')) with a' = min(a, ORPOLogProbCeiling)
// and its derivative with respect to a (zero where a is clamped). It is
// evaluated as log(−expm1(a')), which equals LLaMA Factory's
// log1p(−exp(a')) but keeps full relative precision as a' approaches zero.
func log1mexpClamped(a float64) (v, dv float64) {
	if a > ORPOLogProbCeiling {
		return math.Log(-math.Expm1(ORPOLogProbCeiling)), 0
	}
	em := -math.Expm1(a) // 1 − exp(a) > 0
	return math.Log(em), -math.Exp(a) / em
}
