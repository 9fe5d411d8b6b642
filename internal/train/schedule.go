package train

import (
	"fmt"
	"math"
)

// Scheduler names accepted by Schedule.
const (
	Constant = "constant"
	Linear   = "linear"
	Cosine   = "cosine"
)

// Schedules lists the accepted scheduler names.
var Schedules = []string{Constant, Linear, Cosine}

// Schedule is a learning-rate schedule with linear warmup, following the
// transformers get_*_schedule_with_warmup functions: for optimizer step s
// (0-based) and W warmup steps, the factor is s/W while s < W, then
// constant 1, linear (N-s)/(N-W) or cosine 0.5·(1+cos(π·(s-W)/(N-W))),
// never below 0, where N is TotalSteps.
type Schedule struct {
	Kind        string
	LR          float64
	WarmupSteps int
	// WarmupRatio is used when WarmupSteps is 0: W = ceil(ratio·N).
	WarmupRatio float64
	TotalSteps  int
}

// Validate checks the schedule's fields.
func (s Schedule) Validate() error {
	switch s.Kind {
	case Constant, Linear, Cosine:
	default:
		return fmt.Errorf("train: lr_scheduler %q: want constant, linear or cosine", s.Kind)
	}
	if s.LR < 0 || math.IsNaN(s.LR) || math.IsInf(s.LR, 0) {
		return fmt.Errorf("train: learning rate %v: want a finite number >= 0", s.LR)
	}
	if s.WarmupSteps < 0 || s.WarmupRatio < 0 || s.WarmupRatio > 1 {
		return fmt.Errorf("train: warmup_steps %d / warmup_ratio %v: want steps >= 0 and 0 <= ratio <= 1", s.WarmupSteps, s.WarmupRatio)
	}
	return nil
}

// Warmup returns the number of warmup steps.
func (s Schedule) Warmup() int {
	if s.WarmupSteps > 0 {
		return s.WarmupSteps
	}
	return int(math.Ceil(s.WarmupRatio * float64(s.TotalSteps)))
}

// At returns the learning rate of optimizer step s (0-based).
func (s Schedule) At(step int) float64 {
	w := s.Warmup()
	if step < w {
		return s.LR * float64(step) / float64(max(1, w))
	}
	var f float64
	switch s.Kind {
	case Linear:
		f = float64(s.TotalSteps-step) / float64(max(1, s.TotalSteps-w))
	case Cosine:
		p := float64(step-w) / float64(max(1, s.TotalSteps-w))
		f = 0.5 * (1 + math.Cos(math.Pi*p))
	default:
		f = 1
	}
	return s.LR * max(0, f)
}
