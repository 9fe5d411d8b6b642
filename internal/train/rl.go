package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/ppo"
	"github.com/lathe-ml/lathe/internal/tensor"
)

// PPOConfig holds a PPO run's settings (TRL's PPOConfig names in comments).
type PPOConfig struct {
	Steps        int // PPO steps (one rollout batch each)
	BatchSize    int // rollouts per step (batch_size)
	MiniBatch    int // rows per optimisation mini-batch (mini_batch_size)
	PPOEpochs    int // passes over each rollout batch (ppo_epochs)
	MaxNewTokens int
	Temperature  float64 // sampling for rollouts (default 1)
	TopK         int
	TopP         float64
	StopTokens   []int32

	LR, WeightDecay, MaxGradNorm float64
	InitKL                       float64 // init_kl_coef (default 0.2)
	AdaptiveKL                   bool
	KLTarget, KLHorizon          float64 // target (6), horizon (10000)
	KLPenalty                    string  // kl | abs | mse
	Gamma, Lambda                float64 // 1, 0.95
	ClipRange, ClipRangeValue    float64 // 0.2, 0.2
	VFCoef                       float64 // 0.1
	ScoreNorm                    bool
	ScoreClip                    float64
	Seed                         uint64
}

func (c *PPOConfig) defaults() error {
	def := func(p *float64, v float64) {
		if *p == 0 {
			*p = v
		}
	}
	def(&c.Temperature, 1)
	def(&c.InitKL, 0.2)
	def(&c.KLTarget, 6)
	def(&c.KLHorizon, 10000)
	def(&c.Gamma, 1)
	def(&c.Lambda, 0.95)
	def(&c.ClipRange, 0.2)
	def(&c.ClipRangeValue, 0.2)
	def(&c.VFCoef, 0.1)
	if c.PPOEpochs <= 0 {
		c.PPOEpochs = 4
	}
	if c.MiniBatch <= 0 {
		c.MiniBatch = c.BatchSize
	}
	switch {
	case c.Steps <= 0 || c.BatchSize <= 0 || c.MaxNewTokens <= 0:
		return fmt.Errorf("ppo: steps %d, batch_size %d and max_new_tokens %d must be > 0", c.Steps, c.BatchSize, c.MaxNewTokens)
	case c.BatchSize%c.MiniBatch != 0:
		return fmt.Errorf("ppo: batch_size %d is not a multiple of mini_batch_size %d", c.BatchSize, c.MiniBatch)
	}
	return nil
}

// Scorer scores whole sequences (prompt + response token ids): the reward
// model, or in tests a known rule.
type Scorer interface {
	Score(seqs [][]int32) ([]float64, error)
}

// ValueScorer scores with a reward model's value head at each sequence's
// last token.
type ValueScorer struct{ Model *llama.Model }

// Score implements Scorer.
func (s ValueScorer) Score(seqs [][]int32) ([]float64, error) {
	T := 0
	for _, q := range seqs {
		T = max(T, len(q))
	}
	b := &llama.Batch{B: len(seqs), T: T, Tokens: make([]int32, len(seqs)*T)}
	for r, q := range seqs {
		copy(b.Tokens[r*T:], q)
	}
	v, err := s.Model.Values(b)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(seqs))
	for r, q := range seqs {
		out[r] = float64(v[r*T+len(q)-1])
	}
	return out, nil
}

// PPO trains Policy (which must have a value head; the value model shares
// its trunk, as TRL's AutoModelForCausalLMWithValueHead) on Prompts with
// rewards from Scorer. The reference policy is Reference, or, when that is
// nil, Policy with its LoRA adapters disabled (no second copy).
type PPO struct {
	Policy    *llama.Model
	Reference *llama.Model
	Scorer    Scorer
	Prompts   [][]int32
	Cfg       PPOConfig
	// OnStep receives each step's metrics.
	OnStep func(step, total int, metrics map[string]float64)
}

// PPOStep is one step's metrics (deterministic values only).
type PPOStep struct {
	Step    int                `json:"step"`
	Metrics map[string]float64 `json:"metrics"`
}

// rollout is one prompt's sampled response with its old log-probs,
// reference log-probs, values and score.
type rollout struct {
	seq         []int32 // prompt + response
	start       int     // index of the first response token in seq
	logp, ref   []float64
	values      []float64
	adv, ret    []float64
	score, rawS float64
}

// Run trains for Cfg.Steps steps and returns the metric history.
func (p *PPO) Run(ctx context.Context) ([]PPOStep, error) {
	c := &p.Cfg
	if err := c.defaults(); err != nil {
		return nil, err
	}
	m := p.Policy
	if m.Param(llama.ValueHeadWeight) == nil {
		return nil, errors.New("ppo: the policy needs a value head")
	}
	if p.Reference == nil && !m.HasAdapters() {
		return nil, errors.New("ppo: without LoRA adapters the reference policy must be a separate model")
	}
	if len(p.Prompts) == 0 {
		return nil, errors.New("ppo: no prompts")
	}
	opt, err := NewAdamW(m, 0.9, 0.999, 1e-8, float32(c.WeightDecay))
	if err != nil {
		return nil, err
	}
	defer opt.Free()
	be := m.Backend()
	norm, err := be.Alloc(tensor.F32, 1)
	if err != nil {
		return nil, err
	}
	defer be.Free(norm)
	grads := make([]tensor.Buffer, len(m.Trainable()))
	for i, q := range m.Trainable() {
		grads[i] = q.Grad
	}
	kl := ppo.AdaptiveKL{Value: c.InitKL, Target: c.KLTarget, Horizon: c.KLHorizon}
	var moments ppo.RunningMoments
	rng := rand.New(rand.NewPCG(c.Seed, 0x70706f)) // "ppo"
	order := rng.Perm(len(p.Prompts))
	pos := 0
	var hist []PPOStep
	for step := 1; step <= c.Steps; step++ {
		if err := ctx.Err(); err != nil {
			return hist, err
		}
		prompts := make([][]int32, c.BatchSize)
		for i := range prompts {
			if pos == len(order) {
				order, pos = rng.Perm(len(p.Prompts)), 0
			}
			prompts[i] = p.Prompts[order[pos]]
			pos++
		}
		rolls, met, err := p.collect(prompts, step, &kl, &moments)
		if err != nil {
			return hist, fmt.Errorf("ppo: step %d: %w", step, err)
		}
		// Optimise: ppo_epochs passes over shuffled mini-batches.
		var pgSum, vfSum, clipSum, vclipSum float64
		nb := 0
		for range c.PPOEpochs {
			perm := rng.Perm(len(rolls))
			for lo := 0; lo < len(perm); lo += c.MiniBatch {
				mb := make([]*rollout, 0, c.MiniBatch)
				for _, i := range perm[lo : lo+c.MiniBatch] {
					mb = append(mb, rolls[i])
				}
				pg, vf, cf, vcf, err := p.optimise(mb, opt, grads, norm)
				if err != nil {
					return hist, fmt.Errorf("ppo: step %d: %w", step, err)
				}
				pgSum, vfSum, clipSum, vclipSum = pgSum+pg, vfSum+vf, clipSum+cf, vclipSum+vcf
				nb++
			}
		}
		met["policy_loss"], met["value_loss"] = pgSum/float64(nb), vfSum/float64(nb)
		met["clip_fraction"], met["value_clip_fraction"] = clipSum/float64(nb), vclipSum/float64(nb)
		met["loss"] = met["policy_loss"] + c.VFCoef*met["value_loss"]
		if c.AdaptiveKL {
			kl.Update(met["kl"], c.BatchSize)
		}
		met["kl_coef"] = kl.Value
		hist = append(hist, PPOStep{Step: step, Metrics: met})
		if p.OnStep != nil {
			p.OnStep(step, c.Steps, met)
		}
	}
	return hist, nil
}

// seqBatch batches sequences right-padded, with targets on the response
// tokens only.
func seqBatch(rolls []*rollout) *llama.Batch {
	T := 0
	for _, r := range rolls {
		T = max(T, len(r.seq))
	}
	b := &llama.Batch{B: len(rolls), T: T, Tokens: make([]int32, len(rolls)*T), Targets: make([]int32, len(rolls)*T)}
	for i := range b.Targets {
		b.Targets[i] = -1
	}
	for r, ro := range rolls {
		copy(b.Tokens[r*T:], ro.seq)
		for t := ro.start; t < len(ro.seq); t++ {
			b.Targets[r*T+t-1] = ro.seq[t]
		}
	}
	return b
}

// responseLogProbs reads each row's response log-probs from per-position
// losses.
func responseLogProbs(rolls []*rollout, losses []float32, T int) [][]float64 {
	out := make([][]float64, len(rolls))
	for r, ro := range rolls {
		for t := ro.start; t < len(ro.seq); t++ {
			out[r] = append(out[r], -float64(losses[r*T+t-1]))
		}
	}
	return out
}

// collect samples responses, scores them and computes old log-probs,
// reference log-probs, values, rewards and whitened advantages.
func (p *PPO) collect(prompts [][]int32, step int, kl *ppo.AdaptiveKL, moments *ppo.RunningMoments) ([]*rollout, map[string]float64, error) {
	c, m := &p.Cfg, p.Policy
	resp, _, err := m.Generate(prompts, llama.GenerateOptions{MaxNewTokens: c.MaxNewTokens, Temperature: c.Temperature,
		TopK: c.TopK, TopP: c.TopP, StopTokens: c.StopTokens, Seed: c.Seed ^ uint64(step)*0x9e3779b97f4a7c15}, nil)
	if err != nil {
		return nil, nil, err
	}
	rolls := make([]*rollout, len(prompts))
	seqs := make([][]int32, len(prompts))
	var lenSum float64
	for i, pr := range prompts {
		seq := append(append([]int32(nil), pr...), resp[i]...)
		rolls[i] = &rollout{seq: seq, start: len(pr)}
		seqs[i] = seq
		lenSum += float64(len(resp[i]))
	}
	scores, err := p.Scorer.Score(seqs)
	if err != nil {
		return nil, nil, fmt.Errorf("score: %w", err)
	}
	raw := append([]float64(nil), scores...)
	if c.ScoreNorm {
		scores = ppo.NormalizeScores(moments, scores, c.ScoreClip)
	} else if c.ScoreClip > 0 {
		for i := range scores {
			scores[i] = math.Max(-c.ScoreClip, math.Min(c.ScoreClip, scores[i]))
		}
	}
	b := seqBatch(rolls)
	losses, err := m.TokenLosses(b)
	if err != nil {
		return nil, nil, err
	}
	logp := responseLogProbs(rolls, losses, b.T)
	entropy, err := p.entropy(b, rolls)
	if err != nil {
		return nil, nil, err
	}
	vals, err := m.Values(b)
	if err != nil {
		return nil, nil, err
	}
	ref := p.Reference
	if ref == nil {
		m.SetAdaptersEnabled(false)
		ref = m
	}
	rl, err := ref.TokenLosses(b)
	m.SetAdaptersEnabled(true)
	if err != nil {
		return nil, nil, err
	}
	refLogp := responseLogProbs(rolls, rl, b.T)
	var allAdv []float64
	var klSum, scoreSum float64
	for r, ro := range rolls {
		ro.logp, ro.ref, ro.score, ro.rawS = logp[r], refLogp[r], scores[r], raw[r]
		for t := ro.start; t < len(ro.seq); t++ {
			ro.values = append(ro.values, float64(vals[r*b.T+t-1]))
		}
		rew, kls, err := ppo.Rewards(ppo.Rollout{LogProbs: ro.logp, RefLogProbs: ro.ref, Values: ro.values, Score: ro.score}, kl.Value, c.KLPenalty)
		if err != nil {
			return nil, nil, err
		}
		for _, x := range kls {
			klSum += x
		}
		ro.adv, ro.ret = ppo.GAE(rew, ro.values, c.Gamma, c.Lambda)
		allAdv = append(allAdv, ro.adv...)
		scoreSum += raw[r]
	}
	w := ppo.Whiten(allAdv)
	k := 0
	for _, ro := range rolls {
		copy(ro.adv, w[k:k+len(ro.adv)])
		k += len(ro.adv)
	}
	n := float64(len(rolls))
	return rolls, map[string]float64{"reward": scoreSum / n, "kl": klSum / n, "entropy": entropy,
		"response_length": lenSum / n}, nil
}

// entropy is the mean entropy of the policy's next-token distribution over
// the response positions (a metric; no gradient).
func (p *PPO) entropy(b *llama.Batch, rolls []*rollout) (float64, error) {
	lg, err := p.Policy.Logits(b)
	if err != nil {
		return 0, err
	}
	V := p.Policy.Cfg.VocabSize
	var sum float64
	n := 0
	for r, ro := range rolls {
		for t := ro.start; t < len(ro.seq); t++ {
			row := lg[(r*b.T+t-1)*V : (r*b.T+t)*V]
			mx := math.Inf(-1)
			for _, v := range row {
				mx = math.Max(mx, float64(v))
			}
			var z, ez float64
			for _, v := range row {
				e := math.Exp(float64(v) - mx)
				z += e
				ez += e * (float64(v) - mx)
			}
			sum += math.Log(z) - ez/z
			n++
		}
	}
	if n == 0 {
		return 0, nil
	}
	return sum / float64(n), nil
}

// optimise runs one mini-batch's forward, the clipped losses, backward and
// an AdamW step; it returns the policy loss, value loss and clip fractions.
func (p *PPO) optimise(mb []*rollout, opt *AdamW, grads []tensor.Buffer, norm tensor.Buffer) (pg, vf, cf, vcf float64, err error) {
	c, m := &p.Cfg, p.Policy
	be := m.Backend()
	b := seqBatch(mb)
	m.ZeroGrad()
	losses, err := m.TokenLosses(b)
	if err != nil {
		return
	}
	newLogp := responseLogProbs(mb, losses, b.T)
	var flatNew, flatOld, flatAdv []float64
	for r, ro := range mb {
		flatNew = append(flatNew, newLogp[r]...)
		flatOld = append(flatOld, ro.logp...)
		flatAdv = append(flatAdv, ro.adv...)
	}
	pg, dLogp, cf, _ := ppo.PolicyLoss(flatNew, flatOld, flatAdv, c.ClipRange)
	w := make([]float32, b.B*b.T)
	k := 0
	for r, ro := range mb {
		for t := ro.start; t < len(ro.seq); t++ {
			w[r*b.T+t-1] = float32(-dLogp[k]) // loss_t = −logp_t
			k++
		}
	}
	if err = m.BackwardWeighted(w); err != nil {
		return
	}
	vals, err := m.Values(b)
	if err != nil {
		return
	}
	var flatV, flatOldV, flatRet []float64
	for r, ro := range mb {
		for t := ro.start; t < len(ro.seq); t++ {
			flatV = append(flatV, float64(vals[r*b.T+t-1]))
		}
		flatOldV = append(flatOldV, ro.values...)
		flatRet = append(flatRet, ro.ret...)
	}
	vf, dV, vcf := ppo.ValueLoss(flatV, flatOldV, flatRet, c.ClipRangeValue)
	dv := make([]float32, b.B*b.T)
	k = 0
	for r, ro := range mb {
		for t := ro.start; t < len(ro.seq); t++ {
			dv[r*b.T+t-1] = float32(c.VFCoef * dV[k])
			k++
		}
	}
	if err = m.BackwardValues(dv); err != nil {
		return
	}
	if c.MaxGradNorm > 0 {
		be.GlobalNorm(norm, grads)
		be.ClipByNorm(grads, norm, float32(c.MaxGradNorm))
	}
	err = opt.Update(float32(c.LR))
	return
}
