package timeest

import (
	"fmt"
	"math"
	"strings"
)

// Result is a training stage's time estimate.
type Result struct {
	// StepSeconds is one optimizer step (GradAccum micro-batches and the
	// update); Parts splits it by part (PartMatmul, ...).
	StepSeconds float64
	Parts       map[string]float64
	// StepFlops is the step's floating-point work (see Op.Flops).
	StepFlops float64
	// T is the expected padded length of a micro-batch's rows.
	T float64
	// Tokens is the trained tokens of a step (as the trainer's
	// tokens_per_second counts them: trained targets, or both sides of a
	// reward model's pairs).
	Tokens float64
	// Steps is the run's optimizer steps; 0 when unknown (the dataset is
	// not known and max_steps not given).
	Steps int
	// ExtraSeconds is the run's other passes: the reference scoring of a
	// preference loss and the evaluations.
	ExtraSeconds float64
	// TotalSeconds is the whole run (0 when Steps is unknown).
	TotalSeconds float64
}

// TokensPerSecond is the estimated training throughput.
func (r Result) TokensPerSecond() float64 {
	if r.StepSeconds <= 0 {
		return 0
	}
	return r.Tokens / r.StepSeconds
}

// String is the plan's phrase: "≈ 3 min (1,900 tok/s)", or per step when
// the run's length is unknown ("≈ 1.2 s per step (1,900 tok/s)").
func (r Result) String() string {
	rate := FormatCount(r.TokensPerSecond()) + " tok/s"
	if r.Steps == 0 {
		return fmt.Sprintf("≈ %s per step (%s)", FormatSeconds(r.StepSeconds), rate)
	}
	return fmt.Sprintf("≈ %s (%d steps, %s)", FormatSeconds(r.TotalSeconds), r.Steps, rate)
}

// FormatSeconds renders a duration coarsely: "< 0.1 s", "0.4 s", "12 s",
// "3 min", "1.5 h", "2.1 days".
func FormatSeconds(s float64) string {
	switch {
	case s < 0.05:
		return "< 0.1 s"
	case s < 10:
		return fmt.Sprintf("%.1f s", s)
	case s < 90:
		return fmt.Sprintf("%.0f s", s)
	case s < 90*60:
		return fmt.Sprintf("%.0f min", s/60)
	case s < 36*3600:
		return fmt.Sprintf("%.1f h", s/3600)
	default:
		return fmt.Sprintf("%.1f days", s/86400)
	}
}

// FormatCount renders a rate with thousands separators ("1,900"), or with
// two significant digits below 10.
func FormatCount(x float64) string {
	if x < 10 {
		return fmt.Sprintf("%.2g", x)
	}
	s := fmt.Sprintf("%.0f", x)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// plan is the work of a stage's run: a step, and the other passes.
type plan struct {
	step  []Work
	extra []Work // over the whole run
	res   Result
}

// runPlan lists the work of st's run.
func runPlan(st Stage) (*plan, error) {
	if st.BatchSize < 1 || st.SeqLen < 1 {
		return nil, fmt.Errorf("timeest: batch size %d and sequence length %d must be >= 1", st.BatchSize, st.SeqLen)
	}
	m, err := newModel(st)
	if err != nil {
		return nil, err
	}
	p := &plan{}
	ga := max(st.GradAccum, 1)
	// A micro-batch's units: BatchSize, or on average fewer where an
	// epoch ends in a short batch.
	batch := st.BatchSize
	var tShape batchShape
	if st.Train != nil && st.Train.Units() > 0 {
		batch = meanBatch(st.Train.Units(), st.BatchSize)
		tShape = st.Train.shape(batch, st.SeqLen)
	} else {
		// Unknown data: full rows.
		L := float64(st.SeqLen)
		tShape = batchShape{T: L, T2: L * L, tokens: L, trainedTokens: L - 1}
		if st.Objective != LM {
			tShape.tokens, tShape.trainedTokens = 2*L, 2*(L-1)
		}
		if st.Objective == Reward {
			tShape.trainedTokens = 2 * L
		}
	}
	T := roundT(tShape.T)
	p.step = scaleAttention(m.step(batch, T), tShape)
	p.res.T = tShape.T
	p.res.Tokens = float64(batch*ga) * tShape.trainedTokens
	p.res.StepFlops = Flops(p.step)
	switch {
	case st.MaxSteps > 0:
		p.res.Steps = st.MaxSteps
	case st.Train != nil && st.Train.Units() > 0 && st.Epochs > 0:
		micro := (st.Train.Units() + st.BatchSize - 1) / st.BatchSize
		p.res.Steps = (micro*st.Epochs + ga - 1) / ga
	}
	// A pass over a whole dataset, forward only, in batches of
	// BatchSize units.
	over := func(d *Data, times int) {
		if d == nil || d.Units() == 0 || times == 0 {
			return
		}
		b := meanBatch(d.Units(), st.BatchSize)
		s := d.shape(b, st.SeqLen)
		batches := (d.Units() + st.BatchSize - 1) / st.BatchSize
		for _, w := range scaleAttention(m.microBatch(st.rows(b), roundT(s.T), evalPass), s) {
			w.Calls *= float64(batches * times)
			p.extra = append(p.extra, w)
		}
	}
	if st.Objective == Preference && st.Reference {
		over(st.Train, 1)
	}
	if steps := p.res.Steps; st.Validation != nil && steps > 0 {
		evals := 1
		if st.EvalSteps > 0 {
			evals = steps / st.EvalSteps
			if steps%st.EvalSteps != 0 {
				evals++
			}
		}
		over(st.Validation, evals)
	}
	return p, nil
}

// meanBatch is the mean units of the batches of size b an epoch of n
// units is cut into (the last one short), rounded.
func meanBatch(n, b int) int {
	batches := (n + b - 1) / b
	return max(1, int(math.Round(float64(n)/float64(batches))))
}

// scaleAttention weights the attention ops of a list made at the mean
// padded length by E[T²]/E[T]²: batches longer than the mean cost more
// than shorter ones save.
func scaleAttention(w []Work, s batchShape) []Work {
	if s.T <= 0 || s.T2 <= s.T*s.T {
		return w
	}
	f := s.T2 / (s.T * s.T)
	for i := range w {
		if w[i].Op.Kind == KindAttnFwd || w[i].Op.Kind == KindAttnBwd {
			w[i].Calls *= f
		}
	}
	return w
}

// Ops returns the kernel ops an estimate of st needs timings for.
func Ops(st Stage) ([]Op, error) {
	p, err := runPlan(st)
	if err != nil {
		return nil, err
	}
	return ops(p.step, p.extra), nil
}

// Estimate computes st's time from kernel timings (Calibrator.Timings of
// Ops(st)).
func Estimate(st Stage, t Timings) (Result, error) {
	p, err := runPlan(st)
	if err != nil {
		return Result{}, err
	}
	r := p.res
	var ok bool
	if r.Parts, r.StepSeconds, ok = seconds(p.step, t); !ok {
		return Result{}, fmt.Errorf("timeest: kernel timings missing (calibrate first)")
	}
	if _, r.ExtraSeconds, ok = seconds(p.extra, t); !ok {
		return Result{}, fmt.Errorf("timeest: kernel timings missing (calibrate first)")
	}
	if r.Steps > 0 {
		r.TotalSeconds = float64(r.Steps)*r.StepSeconds + r.ExtraSeconds
	}
	if math.IsNaN(r.TotalSeconds) || math.IsInf(r.TotalSeconds, 0) {
		return Result{}, fmt.Errorf("timeest: no finite estimate")
	}
	return r, nil
}

// Breakdown renders a step's parts, largest first, e.g. "matmul 61%,
// lm head 20%, attention 9%, …".
func (r Result) Breakdown() string {
	type kv struct {
		k string
		v float64
	}
	var ps []kv
	for k, v := range r.Parts {
		ps = append(ps, kv{k, v})
	}
	for i := range ps {
		for j := i + 1; j < len(ps); j++ {
			if ps[j].v > ps[i].v || (ps[j].v == ps[i].v && ps[j].k < ps[i].k) {
				ps[i], ps[j] = ps[j], ps[i]
			}
		}
	}
	var out []string
	for _, p := range ps {
		if r.StepSeconds > 0 {
			out = append(out, fmt.Sprintf("%s %.0f%%", p.k, 100*p.v/r.StepSeconds))
		}
	}
	return strings.Join(out, ", ")
}
