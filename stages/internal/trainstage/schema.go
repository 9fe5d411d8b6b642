// Package trainstage holds what lathe's training stage kinds (pretrain,
// sft, reward-model, dpo) share: the HCL arguments of the training loop and
// of the fine-tuning methods (full, freeze, LoRA, QLoRA) with their
// validation, loading the starting model with the method applied, and
// writing model, adapter and report artifacts in the Hugging Face / PEFT
// layouts.
//
// It does not define a stage kind itself, and it knows nothing of the
// losses: each kind builds its train.Objective.
package trainstage

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/gocty"

	"github.com/lathe-ml/lathe/internal/train"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// Optional is an optional attribute with a default.
func Optional(name string, t cty.Type, def cty.Value) hcldec.Spec {
	return &hcldec.DefaultSpec{Primary: &hcldec.AttrSpec{Name: name, Type: t}, Default: &hcldec.LiteralSpec{Value: def}}
}

// MinNum checks a number against a lower bound.
func MinNum(attr string, lo float64, exclusive bool) func(cty.Value) hcl.Diagnostics {
	return func(v cty.Value) hcl.Diagnostics {
		if v.IsNull() || !v.IsKnown() {
			return nil
		}
		f, _ := v.AsBigFloat().Float64()
		if f < lo || (exclusive && f == lo) {
			op := ">="
			if exclusive {
				op = ">"
			}
			return stage.Error("Invalid "+attr, fmt.Sprintf("%s must be %s %v, got %v.", attr, op, lo, f))
		}
		return nil
	}
}

// MinInt checks a whole number against a lower bound.
func MinInt(attr string, lo int64) func(cty.Value) hcl.Diagnostics {
	return func(v cty.Value) hcl.Diagnostics {
		if d := MinNum(attr, float64(lo), false)(v); d != nil {
			return d
		}
		if v.IsNull() || !v.IsKnown() {
			return nil
		}
		if !v.AsBigFloat().IsInt() {
			return stage.Error("Invalid "+attr, attr+" must be a whole number.")
		}
		return nil
	}
}

// Enum checks a string against its valid values.
func Enum(attr string, valid []string) func(cty.Value) hcl.Diagnostics {
	return func(v cty.Value) hcl.Diagnostics {
		if v.IsNull() || !v.IsKnown() {
			return nil
		}
		for _, s := range valid {
			if v.AsString() == s {
				return nil
			}
		}
		return stage.Error("Invalid "+attr, fmt.Sprintf("%s must be one of %q, got %q.", attr, valid, v.AsString()))
	}
}

// Ratio checks a number is within [0, 1].
func Ratio(attr string) func(cty.Value) hcl.Diagnostics {
	return func(v cty.Value) hcl.Diagnostics {
		if d := MinNum(attr, 0, false)(v); d != nil {
			return d
		}
		if !v.IsNull() && v.IsKnown() {
			if f, _ := v.AsBigFloat().Float64(); f > 1 {
				return stage.Error("Invalid "+attr, fmt.Sprintf("%s must be between 0 and 1, got %v.", attr, f))
			}
		}
		return nil
	}
}

// Int is an optional whole-number attribute with a lower bound (null when
// absent).
func Int(name string, lo int64) hcldec.Spec {
	return stage.Validated(&hcldec.AttrSpec{Name: name, Type: cty.Number}, MinInt(name, lo))
}

// IntDefault is a whole-number attribute with a default and a lower bound.
func IntDefault(name string, def, lo int64) hcldec.Spec {
	return stage.Validated(Optional(name, cty.Number, cty.NumberIntVal(def)), MinInt(name, lo))
}

// Num converts a cty number (zero when null).
func Num[T int | uint64 | float64](v cty.Value) T {
	var x T
	if v.IsNull() {
		return x
	}
	_ = gocty.FromCtyValue(v, &x)
	return x
}

// ArtifactPath is an artifact argument's directory ("" when null).
func ArtifactPath(v cty.Value) string {
	if v.IsNull() {
		return ""
	}
	a, _ := stage.ArtifactOf(v)
	return a.Path
}

// Artifact is a required or optional artifact-typed argument of the given
// kinds.
func Artifact(name string, required bool, kinds ...string) hcldec.Spec {
	return stage.Validated(&hcldec.AttrSpec{Name: name, Type: cty.DynamicPseudoType, Required: required}, stage.RequireArtifact(name, kinds...))
}

// LoopNonSemantic are the loop arguments that do not enter the cache key:
// they change when and what is logged or checkpointed, never the result.
var LoopNonSemantic = []string{"logging_steps", "save_steps", "save_total_limit"}

// AddLoop adds the training-loop arguments to spec, with the kind's
// default learning rate and batch size.
func AddLoop(spec hcldec.ObjectSpec, defaultLR float64, defaultBatch int64) {
	for name, s := range map[string]hcldec.Spec{
		"learning_rate":         stage.Validated(Optional("learning_rate", cty.Number, cty.NumberFloatVal(defaultLR)), MinNum("learning_rate", 0, false)),
		"lr_scheduler":          stage.Validated(Optional("lr_scheduler", cty.String, cty.StringVal(train.Cosine)), Enum("lr_scheduler", train.Schedules)),
		"warmup_steps":          IntDefault("warmup_steps", 0, 0),
		"warmup_ratio":          stage.Validated(Optional("warmup_ratio", cty.Number, cty.Zero), Ratio("warmup_ratio")),
		"epochs":                Int("epochs", 1),
		"max_steps":             Int("max_steps", 1),
		"batch_size":            stage.Validated(Optional("batch_size", cty.DynamicPseudoType, cty.NumberIntVal(defaultBatch)), checkBatchSize),
		"gradient_accumulation": IntDefault("gradient_accumulation", 1, 1),
		"max_seq_len":           Int("max_seq_len", 1),
		"max_grad_norm":         stage.Validated(Optional("max_grad_norm", cty.Number, cty.NumberFloatVal(1)), MinNum("max_grad_norm", 0, false)),
		"weight_decay":          stage.Validated(Optional("weight_decay", cty.Number, cty.Zero), MinNum("weight_decay", 0, false)),
		"adam_beta1":            stage.Validated(Optional("adam_beta1", cty.Number, cty.NumberFloatVal(0.9)), Ratio("adam_beta1")),
		"adam_beta2":            stage.Validated(Optional("adam_beta2", cty.Number, cty.NumberFloatVal(0.999)), Ratio("adam_beta2")),
		"adam_epsilon":          stage.Validated(Optional("adam_epsilon", cty.Number, cty.NumberFloatVal(1e-8)), MinNum("adam_epsilon", 0, true)),
		"seed":                  IntDefault("seed", 42, 0),
		"eval_steps":            IntDefault("eval_steps", 0, 0),
		"save_steps":            IntDefault("save_steps", 500, 0),
		"save_total_limit":      IntDefault("save_total_limit", 2, 0),
		"logging_steps":         IntDefault("logging_steps", 10, 1),
		"activation_recompute":  Optional("activation_recompute", cty.Bool, cty.False),
	} {
		spec[name] = s
	}
}

// checkBatchSize accepts a whole number >= 1 or "auto" (see Resolver).
func checkBatchSize(v cty.Value) hcl.Diagnostics {
	if v.IsNull() || !v.IsKnown() {
		return nil
	}
	switch {
	case v.Type() == cty.Number:
		return MinInt("batch_size", 1)(v)
	case v.Type() == cty.String && v.AsString() == AutoBatch:
		return nil
	case v.Type() == cty.String:
		return stage.Error("Invalid batch_size", fmt.Sprintf("batch_size must be a whole number >= 1 or %q (the largest batch that fits the memory available), got %q.", AutoBatch, v.AsString()))
	}
	return stage.Error("Invalid batch_size", fmt.Sprintf("batch_size must be a whole number >= 1 or %q, not %s.", AutoBatch, v.Type().FriendlyName()))
}

// CheckLoop reports the loop-argument combinations the schema cannot
// express.
func CheckLoop(args cty.Value) hcl.Diagnostics {
	if !args.GetAttr("epochs").IsNull() && !args.GetAttr("max_steps").IsNull() {
		return stage.Error("Conflicting arguments", "Give epochs or max_steps, not both.")
	}
	return nil
}

// LoopConfig builds the trainer configuration from the loop arguments;
// without epochs or max_steps it trains defaultEpochs epochs.
func LoopConfig(args cty.Value, checkpointDir string, defaultEpochs int) train.Config {
	cfg := train.Config{
		BatchSize:      Num[int](args.GetAttr("batch_size")),
		GradAccum:      Num[int](args.GetAttr("gradient_accumulation")),
		MaxSeqLen:      Num[int](args.GetAttr("max_seq_len")),
		Epochs:         Num[int](args.GetAttr("epochs")),
		MaxSteps:       Num[int](args.GetAttr("max_steps")),
		LR:             Num[float64](args.GetAttr("learning_rate")),
		Scheduler:      args.GetAttr("lr_scheduler").AsString(),
		WarmupSteps:    Num[int](args.GetAttr("warmup_steps")),
		WarmupRatio:    Num[float64](args.GetAttr("warmup_ratio")),
		Beta1:          Num[float64](args.GetAttr("adam_beta1")),
		Beta2:          Num[float64](args.GetAttr("adam_beta2")),
		Eps:            Num[float64](args.GetAttr("adam_epsilon")),
		WeightDecay:    Num[float64](args.GetAttr("weight_decay")),
		MaxGradNorm:    Num[float64](args.GetAttr("max_grad_norm")),
		Seed:           Num[uint64](args.GetAttr("seed")),
		EvalSteps:      Num[int](args.GetAttr("eval_steps")),
		SaveSteps:      Num[int](args.GetAttr("save_steps")),
		SaveTotalLimit: Num[int](args.GetAttr("save_total_limit")),
		LoggingSteps:   Num[int](args.GetAttr("logging_steps")),
		CheckpointDir:  checkpointDir,
	}
	if cfg.Epochs == 0 && cfg.MaxSteps == 0 {
		cfg.Epochs = defaultEpochs
	}
	return cfg
}

// KeyLines puts the backend and compute type in the key (DESIGN §3): a
// result computed on another backend or in another precision differs in its
// last bits, so it is not reused.
func KeyLines(stage.KeyContext, cty.Value) ([]stage.KeyLine, error) {
	return []stage.KeyLine{
		{Label: "env backend", Value: "cpu"},
		{Label: "env compute-type", Value: "f32"},
	}, nil
}

type nopReporter struct{}

func (nopReporter) Progress(int64, int64, string)     {}
func (nopReporter) Logf(string, ...any)               {}
func (nopReporter) Metrics(int64, map[string]float64) {}

// Reporter returns the request's reporter, or one that drops everything.
func Reporter(req *stage.Request) stage.Reporter {
	if req.Reporter == nil {
		return nopReporter{}
	}
	return req.Reporter
}

// Hooks connects a trainer's callbacks to a reporter.
func Hooks(t *train.Trainer, rep stage.Reporter) {
	t.OnMetrics = func(step int, v map[string]float64) { rep.Metrics(int64(step), v) }
	t.OnStep = func(step, total int) { rep.Progress(int64(step), int64(total), "step") }
	t.Logf = rep.Logf
}
