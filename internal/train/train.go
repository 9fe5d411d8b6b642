package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/tensor"
)

// Config holds a run's hyper-parameters and bookkeeping options.
type Config struct {
	// BatchSize is the number of rows per micro-batch; GradAccum the number
	// of micro-batches per optimizer step (default 1).
	BatchSize, GradAccum int
	// MaxSeqLen caps a batch's T (longer rows are truncated); 0: the
	// model's max_position_embeddings, or no cap when that is unset.
	MaxSeqLen int
	// Epochs is the number of passes over the data; MaxSteps, when > 0,
	// overrides it with a number of optimizer steps (cycling the data).
	Epochs, MaxSteps int

	LR          float64
	Scheduler   string // constant | linear | cosine
	WarmupSteps int
	WarmupRatio float64

	// AdamW; zero Beta1/Beta2/Eps mean 0.9 / 0.999 / 1e-8.
	Beta1, Beta2, Eps, WeightDecay float64
	// MaxGradNorm clips the global gradient norm; 0 disables clipping.
	MaxGradNorm float64
	// Seed seeds the shuffling.
	Seed uint64

	// EvalSteps: evaluate every EvalSteps optimizer steps (and at the end)
	// when a validation set is given; 0: only at the end.
	EvalSteps int
	// SaveSteps: checkpoint every SaveSteps steps into CheckpointDir (0:
	// only on cancellation); SaveTotalLimit keeps the newest that many
	// (0: all).
	SaveSteps, SaveTotalLimit int
	// LoggingSteps: call OnMetrics every LoggingSteps steps (default 1).
	LoggingSteps int
	// CheckpointDir holds checkpoints; "" disables them (and resuming).
	CheckpointDir string
}

// Point is one entry of the metric history: the step's mean training loss,
// learning rate and gradient norm (before clipping), and the objective's
// further metrics.
type Point struct {
	Step     int                `json:"step"`
	Loss     float64            `json:"loss"`
	LR       float64            `json:"lr"`
	GradNorm float64            `json:"grad_norm"`
	Tokens   int64              `json:"tokens"`
	Metrics  map[string]float64 `json:"metrics,omitempty"`
}

// EvalPoint is one evaluation's mean validation loss and metrics.
type EvalPoint struct {
	Step    int                `json:"step"`
	Loss    float64            `json:"eval_loss"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// History is the deterministic record of a run, carried through
// checkpoints so that a resumed run reports the whole curve.
type History struct {
	Train []Point     `json:"train"`
	Eval  []EvalPoint `json:"eval"`
}

// Result summarises a finished run.
type Result struct {
	Steps       int
	Tokens      int64 // trained target tokens
	ResumedFrom int   // step of the checkpoint resumed from (0: fresh)
	History     History
}

// Trainer runs the loop for one model.
type Trainer struct {
	Model *llama.Model
	// Objective is the training loss; nil means the language-modelling
	// loss over Train.
	Objective Objective
	// EvalObjective is the validation loss; nil means the
	// language-modelling loss over Eval (no evaluation when Eval is nil
	// too).
	EvalObjective Objective
	Train         Samples
	// Eval is the validation set (nil: no evaluation).
	Eval Samples
	Cfg  Config
	// OnMetrics receives metrics (loss, lr, grad_norm, tokens_per_second,
	// elapsed_seconds every LoggingSteps; eval_loss after evaluations).
	OnMetrics func(step int, values map[string]float64)
	// OnStep is called after every completed optimizer step (before any
	// checkpoint of that step) with the step and total steps.
	OnStep func(step, total int)
	// Logf receives log lines (nil: dropped).
	Logf func(format string, args ...any)

	opt       *AdamW
	cur       *cursor
	step      int
	total     int
	tokens    int64
	hist      History
	lastCkpt  string
	gradNorm  tensor.Buffer
	maxSeqLen int
}

func (t *Trainer) logf(format string, args ...any) {
	if t.Logf != nil {
		t.Logf(format, args...)
	}
}

func (t *Trainer) defaults() error {
	c := &t.Cfg
	if c.GradAccum <= 0 {
		c.GradAccum = 1
	}
	if c.Beta1 == 0 {
		c.Beta1 = 0.9
	}
	if c.Beta2 == 0 {
		c.Beta2 = 0.999
	}
	if c.Eps == 0 {
		c.Eps = 1e-8
	}
	if c.LoggingSteps <= 0 {
		c.LoggingSteps = 1
	}
	switch {
	case c.BatchSize <= 0:
		return fmt.Errorf("train: batch_size %d: want > 0", c.BatchSize)
	case c.MaxSteps <= 0 && c.Epochs <= 0:
		return errors.New("train: set epochs or max_steps")
	case c.MaxGradNorm < 0 || c.WeightDecay < 0:
		return fmt.Errorf("train: max_grad_norm %v / weight_decay %v: want >= 0", c.MaxGradNorm, c.WeightDecay)
	case c.EvalSteps < 0 || c.SaveSteps < 0 || c.SaveTotalLimit < 0:
		return errors.New("train: eval_steps, save_steps and save_total_limit must be >= 0")
	}
	t.maxSeqLen = c.MaxSeqLen
	if mp := t.Model.Cfg.MaxPositions; mp > 0 {
		if t.maxSeqLen > mp {
			return fmt.Errorf("train: max_seq_len %d exceeds the model's max_position_embeddings %d", t.maxSeqLen, mp)
		}
		if t.maxSeqLen <= 0 {
			t.maxSeqLen = mp
		}
	}
	if t.Objective == nil && t.Train != nil {
		t.Objective = &LM{Model: t.Model, Samples: t.Train, MaxSeqLen: t.maxSeqLen}
	}
	if t.EvalObjective == nil && t.Eval != nil {
		t.EvalObjective = &LM{Model: t.Model, Samples: t.Eval, MaxSeqLen: t.maxSeqLen}
	}
	if t.Objective == nil || t.Objective.Len() == 0 {
		return errors.New("train: no training samples")
	}
	return nil
}

// MaxSeqLen returns the sequence cap the run uses (after defaults).
func (t *Trainer) MaxSeqLen() int { return t.maxSeqLen }

// TotalSteps returns the number of optimizer steps the run makes: MaxSteps,
// or ceil(micro-batches per epoch · Epochs / GradAccum).
func (t *Trainer) TotalSteps() int {
	c := t.Cfg
	if c.MaxSteps > 0 {
		return c.MaxSteps
	}
	n := 0
	if t.Objective != nil {
		n = t.Objective.Len()
	} else if t.Train != nil {
		n = t.Train.Len()
	}
	micro := (n + c.BatchSize - 1) / c.BatchSize
	ga := max(c.GradAccum, 1)
	return (micro*c.Epochs + ga - 1) / ga
}

func (t *Trainer) schedule() Schedule {
	return Schedule{Kind: t.Cfg.Scheduler, LR: t.Cfg.LR, WarmupSteps: t.Cfg.WarmupSteps, WarmupRatio: t.Cfg.WarmupRatio, TotalSteps: t.total}
}

// Run trains until the last step, resuming from the newest checkpoint in
// CheckpointDir if there is one. On cancellation it writes a checkpoint
// and returns ctx.Err().
func (t *Trainer) Run(ctx context.Context) (*Result, error) {
	if err := t.defaults(); err != nil {
		return nil, err
	}
	t.total = t.TotalSteps()
	sched := t.schedule()
	if err := sched.Validate(); err != nil {
		return nil, err
	}
	be := t.Model.Backend()
	var err error
	if t.opt, err = NewAdamW(t.Model, float32(t.Cfg.Beta1), float32(t.Cfg.Beta2), float32(t.Cfg.Eps), float32(t.Cfg.WeightDecay)); err != nil {
		return nil, err
	}
	defer t.opt.Free()
	if t.gradNorm, err = be.Alloc(tensor.F32, 1); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	defer be.Free(t.gradNorm)
	epochs := t.Cfg.Epochs
	if t.Cfg.MaxSteps > 0 {
		epochs = 0
	}
	t.cur = newCursor(t.Objective.Len(), t.Cfg.BatchSize, epochs, t.Cfg.Seed)
	res := &Result{}
	if t.Cfg.CheckpointDir != "" {
		step, dir, err := t.resume()
		if err != nil {
			return nil, err
		}
		if step > 0 {
			res.ResumedFrom = step
			t.lastCkpt = dir
			t.logf("resumed from %s (step %d of %d)", dir, step, t.total)
		}
	}
	if t.maxSeqLen > 0 {
		if err := t.Model.Reserve(t.Cfg.BatchSize * t.maxSeqLen); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
	}
	grads := make([]tensor.Buffer, len(t.Model.Trainable()))
	for i, p := range t.Model.Trainable() {
		grads[i] = p.Grad
	}
	start := time.Now()
	startTokens := t.tokens
	for t.step < t.total {
		if err := ctx.Err(); err != nil {
			return nil, t.interrupted(err)
		}
		loss, count, tokens, metrics, ok, err := t.accumulate()
		if err != nil {
			return nil, err
		}
		if !ok {
			break // epochs exhausted (only when the total rounds up)
		}
		step := t.step + 1
		if count == 0 {
			return nil, fmt.Errorf("train: step %d: nothing to train on in the batch (every target is masked)", step)
		}
		be.GlobalNorm(t.gradNorm, grads)
		norm := make([]float32, 1)
		if err := tensor.DownloadF32(be, norm, t.gradNorm); err != nil {
			return nil, fmt.Errorf("train: grad norm: %w", err)
		}
		if !finite(loss) || !finite(float64(norm[0])) {
			return nil, t.diverged(step, loss, float64(norm[0]))
		}
		if t.Cfg.MaxGradNorm > 0 {
			be.ClipByNorm(grads, t.gradNorm, float32(t.Cfg.MaxGradNorm))
		}
		lr := sched.At(t.step)
		if err := t.opt.Update(float32(lr)); err != nil {
			return nil, err
		}
		t.step = step
		t.tokens += int64(tokens)
		t.hist.Train = append(t.hist.Train, Point{Step: step, Loss: loss, LR: lr, GradNorm: float64(norm[0]), Tokens: int64(tokens), Metrics: metrics})
		if t.OnStep != nil {
			t.OnStep(step, t.total)
		}
		if t.OnMetrics != nil && (step%t.Cfg.LoggingSteps == 0 || step == t.total) {
			el := time.Since(start).Seconds()
			vals := map[string]float64{"loss": loss, "lr": lr, "grad_norm": float64(norm[0]),
				"tokens_per_second": float64(t.tokens-startTokens) / max(el, 1e-9), "elapsed_seconds": el, "epoch": float64(t.cur.epoch)}
			for k, v := range metrics {
				vals[k] = v
			}
			t.OnMetrics(step, vals)
		}
		last := step == t.total
		if t.EvalObjective != nil && t.EvalObjective.Len() > 0 && (last || (t.Cfg.EvalSteps > 0 && step%t.Cfg.EvalSteps == 0)) {
			el, em, err := t.EvaluateMetrics()
			if err != nil {
				return nil, err
			}
			t.hist.Eval = append(t.hist.Eval, EvalPoint{Step: step, Loss: el, Metrics: em})
			t.logf("step %d: eval_loss %.4f", step, el)
			if t.OnMetrics != nil {
				vals := map[string]float64{"eval_loss": el}
				for k, v := range em {
					vals["eval_"+k] = v
				}
				t.OnMetrics(step, vals)
			}
		}
		if t.Cfg.CheckpointDir != "" && t.Cfg.SaveSteps > 0 && step%t.Cfg.SaveSteps == 0 && !last {
			if err := t.checkpoint(); err != nil {
				return nil, err
			}
		}
	}
	res.Steps, res.Tokens, res.History = t.step, t.tokens, t.hist
	return res, nil
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func (t *Trainer) diverged(step int, loss, norm float64) error {
	last := t.lastCkpt
	if last == "" {
		last = "none"
	}
	return fmt.Errorf("train: diverged at step %d (loss %v, grad_norm %v); last good checkpoint: %s", step, loss, norm, last)
}

func (t *Trainer) interrupted(cause error) error {
	if t.Cfg.CheckpointDir == "" || t.step == 0 || t.lastCkptStep() == t.step {
		return cause
	}
	if err := t.checkpoint(); err != nil {
		return fmt.Errorf("%w (and the checkpoint failed: %v)", cause, err)
	}
	t.logf("interrupted: saved %s", t.lastCkpt)
	return cause
}

// dropoutSeed is micro-batch k of step's adapter-dropout seed: derived
// from the run's seed and position only, so a resumed run draws the same
// masks.
func (t *Trainer) dropoutSeed(step, k int) uint64 {
	x := t.Cfg.Seed ^ uint64(step)<<20 ^ uint64(k) ^ 0x9e3779b97f4a7c15
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	return x | 1
}

// accumulate runs GradAccum micro-batches into the zeroed gradients and
// leaves them holding the gradient of the mean loss over all their
// counted units (tokens or pairs). It returns that loss, the count, the
// trained tokens and the count-weighted mean metrics; ok is false when the
// data ran out before the first micro-batch.
func (t *Trainer) accumulate() (loss float64, total, tokens int, metrics map[string]float64, ok bool, err error) {
	m := t.Model
	be := m.Backend()
	m.ZeroGrad()
	var lossSum float64
	sums := map[string]float64{}
	prev := 0
	grads := m.GradBuffer()
	for k := 0; k < t.Cfg.GradAccum; k++ {
		idx := t.cur.next()
		if idx == nil {
			if k == 0 {
				return 0, 0, 0, nil, false, nil
			}
			break
		}
		count := t.Objective.Count(idx)
		if count == 0 {
			continue
		}
		// Keep grads = (sum of per-unit gradients so far) / count of the
		// micro-batch being added, so the objective's 1/count scaling adds in.
		if prev > 0 {
			be.Scale(grads, float32(prev)/float32(count), grads.Len())
		}
		out, err := t.Objective.Step(idx, true, t.dropoutSeed(t.step+1, k))
		if err != nil {
			return 0, 0, 0, nil, false, fmt.Errorf("train: step %d: %w", t.step+1, err)
		}
		lossSum += out.Loss * float64(count)
		for name, v := range out.Metrics {
			sums[name] += v * float64(count)
		}
		total += count
		tokens += out.Tokens
		prev = count
	}
	if total > 0 && prev != total {
		be.Scale(grads, float32(prev)/float32(total), grads.Len())
	}
	if err := be.Sync(); err != nil {
		return 0, 0, 0, nil, false, fmt.Errorf("train: %w", err)
	}
	if total == 0 {
		return 0, 0, 0, nil, true, nil
	}
	return lossSum / float64(total), total, tokens, means(sums, total), true, nil
}

func means(sums map[string]float64, total int) map[string]float64 {
	if len(sums) == 0 {
		return nil
	}
	out := make(map[string]float64, len(sums))
	for k, v := range sums {
		out[k] = v / float64(total)
	}
	return out
}

// Evaluate returns the mean validation loss over every counted unit, in
// order, in batches of BatchSize.
func (t *Trainer) Evaluate() (float64, error) {
	l, _, err := t.EvaluateMetrics()
	return l, err
}

// EvaluateMetrics is Evaluate with the objective's metrics.
func (t *Trainer) EvaluateMetrics() (float64, map[string]float64, error) {
	o := t.EvalObjective
	if o == nil && t.Eval != nil {
		o = &LM{Model: t.Model, Samples: t.Eval, MaxSeqLen: t.maxSeqLen}
		t.EvalObjective = o
	}
	if o == nil {
		return 0, nil, errors.New("train: no validation set")
	}
	var sum float64
	sums := map[string]float64{}
	total := 0
	bs := max(t.Cfg.BatchSize, 1)
	for i := 0; i < o.Len(); i += bs {
		idx := make([]int, 0, bs)
		for j := i; j < min(i+bs, o.Len()); j++ {
			idx = append(idx, j)
		}
		if o.Count(idx) == 0 {
			continue
		}
		out, err := o.Step(idx, false, 0)
		if err != nil {
			return 0, nil, fmt.Errorf("train: eval: %w", err)
		}
		sum += out.Loss * float64(out.Count)
		for name, v := range out.Metrics {
			sums[name] += v * float64(out.Count)
		}
		total += out.Count
	}
	if total == 0 {
		return 0, nil, errors.New("train: eval: the validation set has nothing to evaluate (every target is masked)")
	}
	return sum / float64(total), means(sums, total), nil
}
